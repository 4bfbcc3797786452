"""The one optimistic-transaction loop: WATCH, read, decide, MULTI/EXEC, again on a conflict."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import WatchError

from bot.store.client import Pipeline, Redis

T = TypeVar("T")

__all__ = ["Pipeline", "optimistic"]


async def optimistic(
    redis: Redis, watched: list[str], attempt: Callable[[Pipeline], Awaitable[T]]
) -> T:
    """Run `attempt` under WATCH of `watched` until its MULTI/EXEC commits untouched.

    Every use case that reads state, decides and writes goes through here, so a concurrent
    writer makes it read and decide again instead of overwriting what it did not see. `attempt`
    reads through `pipe` (immediate while watching), then calls `pipe.multi()` and queues its
    writes; it must take nothing that cannot be given back before `execute()` succeeds.
    """
    while True:
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*watched)
                return await attempt(pipe)
            except WatchError:
                continue  # someone wrote a watched key meanwhile: read and decide again
