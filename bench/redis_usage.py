"""What a benchmark's Redis database holds: `MEMORY USAGE` of every key, summed and grouped by
the key's shape in bot/store/keys.py (`ankomst:case:*:history`, `ankomst:delivery:*`, ...), and
the wait for the service to settle before it is measured.

Issue 17 item 4 counts Redis per open case "as `MEMORY USAGE` measures it". To be a figure of
the cases alone and the same from run to run, `settled` waits until every consumer group has
finished every entry and the streams are trimmed, and the caller subtracts what the database
held before the first arrival (API tokens, chat links, the empty streams and their groups).
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from dataclasses import dataclass, field
from typing import Any

from bot.store import keys
from bot.store.trim import TRIMMED, count_after, positions, trim_streams

_SLOT = "\x00"


def _shapes() -> list[tuple[re.Pattern[str], str]]:
    """(regex, label) for every key keys.py names: its functions called with a placeholder for
    each argument, its constants as they are. An id never holds ":" is tried first, then any
    text (delivery and timer ids do), so `case:*` does not swallow `case:*:history`."""
    named: list[str] = [
        value
        for name, value in vars(keys).items()
        if name.isupper() and isinstance(value, str) and value.startswith(keys.PREFIX + ":")
    ]
    for fn in vars(keys).values():
        if inspect.isfunction(fn) and fn.__module__ == keys.__name__:
            shape = fn(*[_SLOT] * len(inspect.signature(fn).parameters))
            if isinstance(shape, str) and shape.startswith(keys.PREFIX + ":"):
                named.append(shape)
    out = []
    for slot in ("[^:]+", ".+"):
        for shape in named:
            regex = re.escape(shape).replace(re.escape(_SLOT), slot).replace(_SLOT, slot)
            out.append((re.compile(regex), shape.replace(_SLOT, "*")))
    out.append((re.compile(re.escape(keys.FSM_PREFIX) + ":.*"), keys.FSM_PREFIX + ":*"))
    return out


_SHAPES = _shapes()


def family(name: str) -> str:
    """The key's shape in keys.py (`ankomst:case:*:history`), or the name itself if none."""
    for regex, label in _SHAPES:
        if regex.fullmatch(name):
            return label
    return name


@dataclass
class Usage:
    """The keys of a database and their `MEMORY USAGE`, in bytes, by key shape."""

    keys: int = 0
    bytes: int = 0
    by_family: dict[str, int] = field(default_factory=dict)
    families: dict[str, int] = field(default_factory=dict)  # keys of each shape

    @property
    def mb(self) -> float:
        return self.bytes / 1024 / 1024

    def minus(self, before: Usage) -> Usage:
        """What was added since `before` (shapes that shrank count as 0)."""
        shapes = set(self.by_family) | set(before.by_family)
        return Usage(
            self.keys - before.keys,
            self.bytes - before.bytes,
            {s: max(0, self.by_family.get(s, 0) - before.by_family.get(s, 0)) for s in shapes},
            {s: max(0, self.families.get(s, 0) - before.families.get(s, 0)) for s in shapes},
        )

    def kb_per_case(self, cases: int) -> float:
        """KB per case of everything counted (issue 17 item 4)."""
        return self.bytes / 1024 / max(1, cases)

    def per_case_kb(self, cases: int, top: int = 12) -> dict[str, float]:
        """KB per case of the `top` largest shapes."""
        ranked = sorted(self.by_family.items(), key=lambda kv: -kv[1])[:top]
        return {s: round(b / 1024 / max(1, cases), 3) for s, b in ranked if b}


async def db_usage(redis: Any) -> Usage:
    """Every key of the db and the sum of their MEMORY USAGE: this db alone, whoever else uses
    the server (`SAMPLES 0`: every element of a collection counted)."""
    names = [name async for name in redis.scan_iter(count=1000)]
    usage = Usage(keys=len(names))
    for start in range(0, len(names), 1000):
        chunk = names[start : start + 1000]
        pipe = redis.pipeline(transaction=False)
        for name in chunk:
            pipe.memory_usage(name, samples=0)
        for name, size in zip(chunk, await pipe.execute(), strict=True):
            shape = family(name)
            usage.bytes += size or 0
            usage.by_family[shape] = usage.by_family.get(shape, 0) + (size or 0)
            usage.families[shape] = usage.families.get(shape, 0) + 1
    return usage


async def _unfinished(redis: Any) -> int:
    """Entries some consumer group of a trimmed stream holds pending or has not read."""
    left = 0
    for stream in TRIMMED:
        for where in (await positions(redis, stream)).values():
            left += await count_after(redis, stream, where.last_delivered, 1_000_000)
            if where.oldest_pending is not None:
                summary = await redis.xpending(stream, where.group)
                left += int(summary.get("pending") or 0)
    return left


async def backlog(redis: Any) -> int:
    """Entries the service's consumer groups hold pending or have not read: `XINFO GROUPS`'
    pending and lag, a few commands whatever the backlog (counted by `_unfinished` where
    Redis cannot tell the lag)."""
    left = 0
    for stream in TRIMMED:
        if not await redis.exists(stream):
            continue
        for info in await redis.xinfo_groups(stream):
            lag = info.get("lag")
            if lag is None:
                return await _unfinished(redis)
            left += int(info.get("pending") or 0) + int(lag)
    return left


async def settled(redis: Any, within: float) -> dict[str, Any]:
    """Wait (at most `within` s) until the service is done: no consumer group has an entry
    pending or unread, the timers stopped changing, and the trimmed streams hold nothing; what
    was still left when it returned.

    The streams are trimmed here, by the service's own `trim_streams`, once every group has
    finished: the service does the same every ANKOMST_STREAM_TRIM_SECONDS (5 s), and waiting
    for it took up to 5 s of each run, twice (after the warm-up and after the deliveries)."""
    started = time.monotonic()
    deadline = started + within
    timers = -1
    while True:
        unfinished = await backlog(redis)
        if unfinished == 0:
            await trim_streams(redis)
        now_timers = await redis.zcard(keys.TIMERS)
        stream_entries = sum([await redis.xlen(s) for s in TRIMMED])
        done = unfinished == 0 and now_timers == timers and stream_entries == 0
        if done or time.monotonic() > deadline:
            return {
                "settle_s": round(time.monotonic() - started, 2),
                "unfinished_entries": unfinished,
                "stream_entries_left": stream_entries,
                "settled": done,
            }
        timers = now_timers
        await asyncio.sleep(0.5)
