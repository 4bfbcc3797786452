"""HTTP routes: the JSON API, the ack-link pages, health checks. Validate, authorise, answer."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.domain.arrival import ArrivalIn, ArrivalPatch, CancelIn, InvalidInput, parse
from bot.domain.calendar import local_today
from bot.domain.case import Case
from bot.runtime.services import Services
from bot.store import RETRY_AFTER_SECONDS, FaultLog, store_unavailable
from bot.usecases.access import Actor, LinkExpired
from bot.usecases.audit import record_read, record_reads, record_refused
from bot.usecases.cases import CaseNotFound, Conflict, Forbidden
from bot.usecases.disagreements import DecisionIn, DisagreementIn, DisagreementNotFound
from bot.usecases.healthcare import BookingIn, ClearanceIn
from bot.usecases.views import case_view, case_view_for, dumps, summary
from handlers.http.dashboard import add_dashboard_routes
from handlers.http.workplace import add_workplace_routes
from messages.models import AckPage, AckPageState
from messages.render import render_ack_page

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)
ACTOR = web.RequestKey("actor", Actor)
MAX_BODY = 64 * 1024
# No request of the API nests deeper than a few levels; anything deeper is refused before any
# code walks it (recursive code would fail on it with RecursionError, a 500).
MAX_JSON_DEPTH = 32

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, title: str, detail: str = "", **extra: Any) -> web.Response:
    """An RFC 9457 problem response."""
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail, **extra}
    return web.Response(status=status, text=dumps(body), content_type="application/problem+json")


def json_response(data: Any, status: int = 200) -> web.Response:
    """A JSON answer."""
    return web.Response(status=status, text=dumps(data), content_type="application/json")


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a problem+json answer; never a traceback to the caller."""
    try:
        return await handler(request)
    except InvalidInput as exc:
        return problem(
            422, "Ogiltiga uppgifter", "En eller flera uppgifter är fel.", errors=exc.errors
        )
    except Forbidden as exc:
        return problem(403, "Inte tillåtet", str(exc))
    except Conflict as exc:
        return problem(409, "Konflikt", str(exc))
    except DisagreementNotFound:
        return problem(404, "Hittades inte", "Det finns ingen sådan oenighet.")
    except CaseNotFound:
        return problem(404, "Hittades inte", "Det finns inget sådant ärende.")
    except web.HTTPRequestEntityTooLarge:
        return problem(413, "För stor förfrågan", f"Högst {MAX_BODY // 1024} KiB.")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "text/html":
            raise  # redirects, and the board's Swedish pages (handlers/http/forms.py)
        return problem(exc.status, exc.reason, exc.text or "")
    except Exception as exc:
        if store_unavailable(exc):
            # The store cannot serve now (unreachable, failing over, full, read-only…): the
            # request was fine and may be sent again. Logged once per fault, not per request.
            _store_faults.fault(exc)
            response = problem(
                503,
                "Tjänsten är tillfälligt otillgänglig",
                "Uppgifterna kunde inte sparas just nu. Försök igen om en stund.",
            )
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response
        log.exception("unexpected error in %s %s", request.method, request.path)
        return problem(500, "Internt fel", "Något gick fel hos oss. Felet är loggat.")


# One log line per store fault the API meets (and again when it changes or every minute it
# lasts), not one per refused request.
_store_faults = FaultLog(log, "HTTP API", repeat_after=60.0)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every /api/ call needs a bearer token naming the acting organisation."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    actor = None
    if scheme.lower() == "bearer" and token.strip():
        actor = await request.app[SERVICES].tokens.actor(token.strip())
    if actor is None:
        response = problem(
            401, "Inloggning krävs", "Ange en giltig token: Authorization: Bearer <token>."
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="ankomst"'
        return response
    request[ACTOR] = actor
    return await handler(request)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; malformed → 400, too large → 413."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError: not JSON, not UTF-8 (both are ValueErrors), or an integer longer than
        # Python converts (4,300 digits); RecursionError: nested deeper than the parser goes.
        raise InvalidInput([{"field": "body", "message": "ska vara giltig JSON"}]) from None
    if _depth_over(data, MAX_JSON_DEPTH):
        raise InvalidInput(
            [{"field": "body", "message": f"får vara nästlad högst {MAX_JSON_DEPTH} nivåer"}]
        )
    return data


def _depth_over(data: Any, limit: int) -> bool:
    """Whether `data` nests lists/objects deeper than `limit` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def actor_of(request: web.Request) -> Actor:
    """Who is calling (set by `authenticate`)."""
    return request[ACTOR]


def today(services: Services) -> Any:
    """The local date now, for date rules."""
    return local_today(services.clock, services.settings.zone)


# -- API -----------------------------------------------------------------------------------


async def create_arrival(request: web.Request) -> web.Response:
    """POST /api/v1/arrivals."""
    services = request.app[SERVICES]
    arrival = parse(ArrivalIn, await read_json(request), today=today(services))
    case, created = await services.cases.register(arrival, actor_of(request))
    body = {
        "id": case.id,
        "reference": case.reference,
        "version": case.version,
        "status": "notifying" if created else case.status,
    }
    if not created:
        body["status"] = (await case_view(services.redis, services.directory, case))["status"]
    response = json_response(body, 201 if created else 200)
    response.headers["Location"] = f"/api/v1/arrivals/{case.id}"
    return response


async def readable_case(request: web.Request, what: str = "read") -> Case:
    """The case of the path once the caller may read it, logged as read (`what`); a refusal
    (403, or 404 for no such case) is logged too — who tried what — and then rises."""
    services = request.app[SERVICES]
    actor = actor_of(request)
    case_id = request.match_info["case_id"]
    try:
        case = await services.cases.store.get(case_id)
        services.cases.require_party(actor, case)
    except (CaseNotFound, Forbidden) as exc:
        reason = "not_found" if isinstance(exc, CaseNotFound) else "forbidden"
        await record_refused(services.redis, actor, case_id, "api", services.clock.now(), reason)
        raise
    await record_read(services.redis, actor, case.id, "api", services.clock.now(), what)
    return case


async def get_arrival(request: web.Request) -> web.Response:
    """GET /api/v1/arrivals/{id}."""
    services = request.app[SERVICES]
    actor = actor_of(request)
    case = await readable_case(request)
    return json_response(
        await case_view_for(services.redis, services.directory, case, actor.org_id)
    )


async def list_arrivals(request: web.Request) -> web.Response:
    """GET /api/v1/arrivals?status=open&municipality=M (reception unit, management)."""
    services = request.app[SERVICES]
    actor = actor_of(request)
    status = request.query.get("status", "open")
    if status not in ("open", "all"):
        raise InvalidInput([{"field": "status", "message": "ska vara open eller all"}])
    asked = request.query.get("municipality")
    try:
        scope = services.cases.policy.list_scope(actor, asked)
    except Forbidden:
        target = f"municipality:{asked or '*'}"
        now = services.clock.now()
        await record_refused(services.redis, actor, target, "api:list", now, "forbidden")
        raise
    ids = await services.cases.store.ids(
        open_only=status == "open", municipality=scope.municipality, org=scope.organisation
    )
    cases = [await services.cases.store.get(i) for i in ids]
    cases.sort(key=lambda c: (c.facts.get("arrival_date", ""), c.reference))
    await record_reads(services.redis, actor, ids, "api:list", services.clock.now())
    return json_response({"arrivals": [summary(c) for c in cases]})


async def change_arrival(request: web.Request) -> web.Response:
    """PATCH /api/v1/arrivals/{id}: a new version told to everyone at once."""
    services = request.app[SERVICES]
    patch = parse(ArrivalPatch, await read_json(request), today=today(services))
    actor = actor_of(request)
    case = await services.cases.change(request.match_info["case_id"], patch, actor)
    # The answer shows the whole case: a read, as a GET would be.
    await record_read(services.redis, actor, case.id, "api:change", services.clock.now())
    return json_response(
        await case_view_for(services.redis, services.directory, case, actor.org_id)
    )


async def cancel_arrival(request: web.Request) -> web.Response:
    """POST /api/v1/arrivals/{id}/cancel."""
    services = request.app[SERVICES]
    body = parse(CancelIn, await read_json(request))
    actor = actor_of(request)
    case = await services.cases.cancel(request.match_info["case_id"], body.reason, actor)
    # The answer shows the whole case: a read, as a GET would be.
    await record_read(services.redis, actor, case.id, "api:cancel", services.clock.now())
    return json_response(
        await case_view_for(services.redis, services.directory, case, actor.org_id)
    )


_ACK_PROBLEMS = {
    "not_recipient": (403, "Inte tillåtet", "Er organisation är inte mottagare i det här ärendet."),
    "cancelled": (409, "Ärendet är inställt", "Det finns inget att bekräfta."),
    "stale": (409, "Ny version finns", "Bekräfta den senaste versionen."),
}


async def acknowledge(request: web.Request) -> web.Response:
    """POST /api/v1/arrivals/{id}/ack: the current version, for the caller's organisation."""
    services = request.app[SERVICES]
    actor = actor_of(request)
    outcome, case = await services.cases.acknowledge(
        request.match_info["case_id"], actor.org_id, actor
    )
    if outcome in _ACK_PROBLEMS:
        status, title, detail = _ACK_PROBLEMS[outcome]
        return problem(status, title, detail)
    return json_response(
        {
            "id": case.id,
            "version": case.version,
            "organisation": actor.org_id,
            "acknowledged": True,
            "already": outcome == "already",
        }
    )


async def health_booking(request: web.Request) -> web.Response:
    """POST /api/v1/arrivals/{id}/health-booking: the health centre reports the booked time."""
    services = request.app[SERVICES]
    body = parse(BookingIn, await read_json(request))
    booking = await services.health.book(request.match_info["case_id"], body, actor_of(request))
    return json_response(booking)


async def clearance(request: web.Request) -> web.Response:
    """POST /api/v1/arrivals/{id}/clearance: yes/no only; any other field is a 422."""
    services = request.app[SERVICES]
    body = parse(ClearanceIn, await read_json(request))
    result = await services.health.clear(request.match_info["case_id"], body, actor_of(request))
    return json_response(result)


async def raise_disagreement(request: web.Request) -> web.Response:
    """POST /api/v1/arrivals/{id}/disagreements."""
    services = request.app[SERVICES]
    body = parse(DisagreementIn, await read_json(request))
    found = await services.disagreements.raise_(
        request.match_info["case_id"], body, actor_of(request)
    )
    response = json_response(found.view(), 201)
    response.headers["Location"] = f"/api/v1/disagreements/{found.id}"
    return response


async def list_disagreements(request: web.Request) -> web.Response:
    """GET /api/v1/arrivals/{id}/disagreements."""
    services = request.app[SERVICES]
    case = await readable_case(request, "read_disagreements")
    found = await services.disagreements.of_case(case.id)
    return json_response({"disagreements": [d.view() for d in found]})


async def get_disagreement(request: web.Request) -> web.Response:
    """GET /api/v1/disagreements/{id}."""
    services = request.app[SERVICES]
    actor = actor_of(request)
    asked = request.match_info["disagreement_id"]
    try:
        found = await services.disagreements.get(asked)
        await services.disagreements.require_visible(actor, found)
    except (CaseNotFound, Forbidden) as exc:
        reason = "not_found" if isinstance(exc, CaseNotFound) else "forbidden"
        target = f"disagreement:{asked}"
        await record_refused(services.redis, actor, target, "api", services.clock.now(), reason)
        raise
    await record_read(
        services.redis, actor, found.case_id, "api", services.clock.now(), "read_disagreement"
    )
    return json_response(found.view())


async def escalate_disagreement(request: web.Request) -> web.Response:
    """POST /api/v1/disagreements/{id}/escalate: a supervisor of a party refers it upwards."""
    services = request.app[SERVICES]
    await read_json(request)
    found = await services.disagreements.escalate(
        request.match_info["disagreement_id"], actor_of(request)
    )
    return json_response(found.view())


async def resolve_disagreement(request: web.Request) -> web.Response:
    """POST /api/v1/disagreements/{id}/resolve: a party or management decides."""
    services = request.app[SERVICES]
    body = parse(DecisionIn, await read_json(request))
    found = await services.disagreements.resolve(
        request.match_info["disagreement_id"], body, actor_of(request)
    )
    return json_response(found.view())


# -- ack links -----------------------------------------------------------------------------


_LINK_STATES: dict[str, AckPageState] = {
    "recorded": "done",
    "already": "already",
    "stale": "stale",
    "cancelled": "cancelled",
    "not_recipient": "invalid",
}


def _page(page: AckPage, status: int = 200) -> web.Response:
    response = web.Response(status=status, text=render_ack_page(page), content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


async def ack_link(request: web.Request) -> web.Response:
    """GET shows the confirm page (link scanners must not acknowledge); POST acknowledges."""
    services = request.app[SERVICES]
    token = request.match_info["token"]
    try:
        claim = services.signer.read_ack_token(token)
    except LinkExpired:
        return _page(AckPage(state="expired"), 410)
    if claim is None or claim.org_id is None:
        return _page(AckPage(state="invalid"), 404)
    try:
        case = await services.cases.store.get(claim.case_id)
    except CaseNotFound:
        return _page(AckPage(state="invalid"), 404)
    org = services.directory.organisations.get(claim.org_id)

    def page(state: AckPageState, post_url: str | None = None) -> AckPage:
        return AckPage(
            state=state,
            reference=case.reference,
            version=claim.version,
            organisation=org.name if org else None,
            post_url=post_url,
            arrival_date=case.arrival_date,
        )

    actor = Actor(org_id=claim.org_id, via="link", who="e-postlänk")
    if request.method != "POST":
        # The page shows the case (reference, arrival date): a read, in the audit trail.
        await record_read(services.redis, actor, case.id, "email-link", services.clock.now())
        if case.status == "cancelled":
            return _page(page("cancelled"))
        if claim.version != case.version:
            return _page(page("stale"))
        acks = await services.cases.store.acks(case.id)
        if f"{claim.version}:{claim.org_id}" in acks:
            return _page(page("already"))
        return _page(page("confirm", f"/a/{token}"))
    outcome, case = await services.cases.acknowledge(case.id, claim.org_id, actor, claim.version)
    state = _LINK_STATES[outcome]
    return _page(page(state), 200 if state in ("done", "already") else 409)


# -- health ----------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    """The process is up."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Redis reachable and workers running."""
    ok, checks = await request.app[SERVICES].ready()
    return json_response({"ready": ok, **checks}, 200 if ok else 503)


def build_web_app(services: Services) -> web.Application:
    """The aiohttp application with every route; one place lists them."""
    from handlers.http.observability import add_operations_routes, bind_log_context

    app = web.Application(
        client_max_size=MAX_BODY, middlewares=[bind_log_context, errors, authenticate]
    )
    add_operations_routes(app)
    app[SERVICES] = services
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post("/api/v1/arrivals", create_arrival)
    app.router.add_get("/api/v1/arrivals", list_arrivals)
    app.router.add_get("/api/v1/arrivals/{case_id}", get_arrival)
    app.router.add_patch("/api/v1/arrivals/{case_id}", change_arrival)
    app.router.add_post("/api/v1/arrivals/{case_id}/cancel", cancel_arrival)
    app.router.add_post("/api/v1/arrivals/{case_id}/ack", acknowledge)
    app.router.add_post("/api/v1/arrivals/{case_id}/health-booking", health_booking)
    app.router.add_post("/api/v1/arrivals/{case_id}/clearance", clearance)
    app.router.add_post("/api/v1/arrivals/{case_id}/disagreements", raise_disagreement)
    app.router.add_get("/api/v1/arrivals/{case_id}/disagreements", list_disagreements)
    app.router.add_get("/api/v1/disagreements/{disagreement_id}", get_disagreement)
    app.router.add_post("/api/v1/disagreements/{disagreement_id}/escalate", escalate_disagreement)
    app.router.add_post("/api/v1/disagreements/{disagreement_id}/resolve", resolve_disagreement)
    app.router.add_get("/a/{token}", ack_link)  # and HEAD, answered as GET without a body
    app.router.add_route("POST", "/a/{token}", ack_link)
    add_dashboard_routes(app)
    add_workplace_routes(app)
    return app
