"""The Bot API server of the tests in its own process: FakeTelegramAPI on 127.0.0.1, counting.

    python -m bench.botapi_proc [--enforce-limits] [--latency-ms N]
    # prints "API <base url> STATS <port>" on stdout, then serves

GET http://127.0.0.1:<stats port>/ answers {"sent": n, "calls": c, "telegram_429": k}: the
messages delivered (successful sendMessage calls), every call answered, the calls answered
429; with ?violations=1 also "limit_violations", the delivered messages that broke Telegram's
limits by the server's clock (FakeTelegramAPI.limit_violations). Running apart from the
benchmark keeps the server's work off the load generator's event loop and its core.

--enforce-limits answers 429 past Telegram's limits (FakeTelegramAPI(enforce_limits=True));
--latency-ms N holds every request N ms before it is handled: a round trip to
api.telegram.org, simulated at the server (FakeTelegramAPI(latency=N / 1000)).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Mapping

# Importing bot, before tests.support imports aiogram, defers the build of aiogram's ~900 models
# to their first use (bot/channels/telegram_types.py): the server uses none, and starts in a
# second or two, not ten on a busy machine.
import bot  # noqa: F401
from bench.common import serve_stats
from tests.support.telegram_api import FakeTelegramAPI


class _Counts:
    """The counts of `api.calls`, kept up to date from where the last read ended: a poll
    every 20 ms does not go over every call again."""

    def __init__(self, api: FakeTelegramAPI) -> None:
        self.api = api
        self.seen = 0
        self.counts = {"sent": 0, "calls": 0, "telegram_429": 0}

    def __call__(self, query: Mapping[str, str]) -> dict[str, int]:
        new = self.api.calls[self.seen :]
        self.seen += len(new)
        self.counts["calls"] = self.seen
        self.counts["sent"] += sum(1 for c in new if c.method == "sendMessage" and c.ok)
        self.counts["telegram_429"] += sum(1 for c in new if c.status == 429)
        if query.get("violations"):
            return {**self.counts, "limit_violations": len(self.api.limit_violations())}
        return self.counts


async def main(enforce_limits: bool, latency_ms: float) -> None:
    api = FakeTelegramAPI(enforce_limits=enforce_limits, latency=latency_ms / 1000)
    await api.start()
    try:
        await serve_stats(f"API {api.base_url}", _Counts(api))
    finally:
        await api.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.botapi_proc", description=__doc__)
    parser.add_argument("--enforce-limits", action="store_true", help="429 past Telegram's limits")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="ms held per request")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.enforce_limits, args.latency_ms))
    sys.exit(0)
