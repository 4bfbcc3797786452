"""HTTP side of operations: /metrics for Prometheus, and the case bound to every log line an
API request writes."""

from __future__ import annotations

import secrets

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.runtime.logs import log_context
from handlers.http.routes import SERVICES, Handler


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: this process's metrics, queue lengths read from Redis at the scrape."""
    services = request.app[SERVICES]
    if services.metrics is None:
        raise web.HTTPNotFound()
    response = web.Response(body=await services.metrics.exposition())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@web.middleware
async def bind_log_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log lines written while answering carry the request and, if named, the case."""
    context = {"request": secrets.token_hex(4), "method": request.method, "path": request.path}
    for name in ("case_id", "disagreement_id"):
        if name in request.match_info:
            context[name.removesuffix("_id")] = request.match_info[name]
    with log_context(**context):
        return await handler(request)


def add_operations_routes(app: web.Application) -> None:
    """The /metrics route (health checks stay with the other routes)."""
    app.router.add_get("/metrics", metrics)
