"""An SMTP sink in its own process: aiosmtpd on 127.0.0.1, counting messages and connections.

    python -m bench.smtp_sink_proc [--reply-delay-ms N]
    # prints "SMTP <port> STATS <port>" on stdout, then serves

GET http://127.0.0.1:<stats port>/ answers {"messages": n, "connections": c}; POST /reset zeroes
both. Running apart from the sender keeps the sink's work off the measured event loop (and, for
Apprise's thread, off its GIL).

--reply-delay-ms N holds every SMTP reply (the greeting included) N ms before sending it: one
network round trip to a remote mail server per command, simulated at the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

COUNTS = {"messages": 0, "connections": 0}
REPLY_DELAY = 0.0  # seconds, from --reply-delay-ms


class _Handler:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        COUNTS["messages"] += 1
        return "250 2.0.0 Ok: queued"


class _Session(SMTP):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:
            COUNTS["connections"] += 1
        super().connection_made(transport)

    async def push(self, status: Any) -> None:
        # Every reply the client waits for passes here: the client's next command cannot
        # leave before it, as over a real network with this round-trip time.
        if REPLY_DELAY:
            await asyncio.sleep(REPLY_DELAY)
        await super().push(status)


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(COUNTS)


async def _reset(request: web.Request) -> web.Response:
    COUNTS["messages"] = COUNTS["connections"] = 0
    return web.json_response(COUNTS)


async def main() -> None:
    loop = asyncio.get_running_loop()
    handler = _Handler()

    def factory() -> Any:
        return _Session(handler, hostname="sink.bench", loop=loop)

    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=4096)
    app = web.Application()
    app.router.add_get("/", _stats)
    app.router.add_post("/reset", _reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stats_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    smtp_port = server.sockets[0].getsockname()[1]
    print(f"SMTP {smtp_port} STATS {stats_port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await runner.cleanup()


if __name__ == "__main__":
    if "--reply-delay-ms" in sys.argv:
        REPLY_DELAY = float(sys.argv[sys.argv.index("--reply-delay-ms") + 1]) / 1000
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.exit(0)
