"""An SMTP sink in its own process: aiosmtpd on 127.0.0.1, counting messages and connections.

    python -m bench.smtp_sink_proc [--reply-delay-ms N]
    # prints "SMTP <port> STATS <port>" on stdout, then serves

GET http://127.0.0.1:<stats port>/ answers {"messages": n, "connections": c}; POST /reset zeroes
both. Running apart from the sender keeps the sink's work off the measured event loop (and, for
Apprise's thread, off its GIL).

--reply-delay-ms N holds every SMTP reply the client waits on (the greeting included) N ms
before sending it: one network round trip to a remote mail server per exchange, simulated at
the server.

It offers PIPELINING (RFC 2920), as Postfix and Exchange do: a client that uses it sends MAIL,
RCPT and DATA together (Ankomst does; aiosmtplib's `sendmail` and smtplib, which the peers and
Apprise use, send them one by one).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Mapping
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.common import serve_stats
from tests.support.smtp_sink import OffersPipelining

COUNTS = {"messages": 0, "connections": 0}
REPLY_DELAY = 0.0  # seconds, from --reply-delay-ms


class _Handler(OffersPipelining):
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        COUNTS["messages"] += 1
        return "250 2.0.0 Ok: queued"


class _Session(SMTP):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:
            COUNTS["connections"] += 1
        super().connection_made(transport)

    async def push(self, status: Any) -> None:
        # Every reply passes here. The one the client waits for is held: its next command
        # cannot leave before it, as over a real network with this round-trip time. Not held:
        # a line of a reply with more to come ("250-"), and the reply to a command that came
        # with others still unread (PIPELINING): over a network those go back together, one
        # round trip for all (asyncio's StreamReader keeps what is unread in `_buffer`).
        if REPLY_DELAY and str(status)[3:4] != "-" and not self._reader._buffer:  # type: ignore[attr-defined]
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
