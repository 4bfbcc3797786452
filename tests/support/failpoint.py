"""Test only: `ankomst serve` whose deliveries die at one step, for tests/fault/.

`python -m tests.support.failpoint POINT` runs the real `serve` (handlers.main.serve, with the
settings from the environment as `ankomst serve` reads them) with a `DeliveryHooks` that makes
the first delivery to reach POINT (after_claim, after_send or after_record) kill its own
process with SIGKILL, once per Redis database: a marker, `failpoint_key(POINT)`, is set with
NX and records the delivery's id. Production code holds no trace of it: the Deliverer only
calls the hooks it is given, and `ankomst serve` gives none.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Literal, get_args

from redis.asyncio import Redis

from bot.pipeline.delivery import DeliveryHooks
from bot.runtime.logs import configure_logging
from bot.runtime.settings import load_or_exit
from bot.store import keys
from handlers.main import serve

Point = Literal["after_claim", "after_send", "after_record"]
POINTS: tuple[Point, ...] = get_args(Point)

log = logging.getLogger("ankomst.failpoint")


def failpoint_key(point: str) -> str:
    """Marker of a failpoint that has fired (value: the delivery it fired on)."""
    return f"{keys.PREFIX}:failpoint:{point}"


def command(point: Point) -> tuple[str, ...]:
    """The `python -m` arguments of a `serve` that dies at `point` (for ServeProcess)."""
    return ("tests.support.failpoint", point)


def kill_at(point: Point, redis_url: str) -> DeliveryHooks:
    """Hooks that SIGKILL this process the first time any process reaches `point`."""
    redis = Redis.from_url(redis_url, decode_responses=True)

    async def die(ident: str) -> None:
        if await redis.set(failpoint_key(point), ident, nx=True):
            log.warning("failpoint %s on %s: killing this process", point, ident)
            os.kill(os.getpid(), signal.SIGKILL)

    hooks: dict[str, Callable[[str], Awaitable[None]]] = {point: die}
    return DeliveryHooks(**hooks)


def main(argv: list[str]) -> int:
    """Serve with the failpoint named by argv[0] installed."""
    if len(argv) != 1 or argv[0] not in POINTS:
        print(f"usage: python -m tests.support.failpoint {{{','.join(POINTS)}}}", file=sys.stderr)
        return 2
    point: Point = argv[0]  # type: ignore[assignment]
    settings = load_or_exit()
    if settings.redis_url is None:
        print("the failpoint needs ANKOMST_REDIS_URL (the test's Redis)", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(serve(settings, delivery_hooks=kill_at(point, settings.redis_url)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
