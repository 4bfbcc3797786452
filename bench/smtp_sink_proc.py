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
import sys
from collections.abc import Mapping
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.common import serve_stats

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


def _counts(query: Mapping[str, str]) -> dict[str, int]:
    return COUNTS


def _reset() -> None:
    COUNTS["messages"] = COUNTS["connections"] = 0


async def main() -> None:
    loop = asyncio.get_running_loop()
    handler = _Handler()

    def factory() -> Any:
        return _Session(handler, hostname="sink.bench", loop=loop)

    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=4096)
    smtp_port = server.sockets[0].getsockname()[1]
    await serve_stats(f"SMTP {smtp_port}", _counts, _reset)
    server.close()


if __name__ == "__main__":
    if "--reply-delay-ms" in sys.argv:
        REPLY_DELAY = float(sys.argv[sys.argv.index("--reply-delay-ms") + 1]) / 1000
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    sys.exit(0)
