"""The audit trail: every read of a case (who, when, through what), and every state change.

Reads go to the stream `ankomst:audit`; state changes are already written, with who and when,
as the history lines of each case (kept when personal data are erased). `export` merges both
into JSON lines, oldest first. Neither carries a personal field of the children.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from bot.store import Redis, keys


async def record_read(
    redis: Redis,
    actor_org: str,
    who: str,
    case_id: str,
    via: str,
    at: datetime,
    what: str = "read",
) -> None:
    """Log that `actor_org` (person or token `who`) read case `case_id` through `via` at `at`.

    `via` names the path: "api", "api:list", "dashboard", ... Call it after the access check,
    for each case shown.
    """
    await record_reads(redis, actor_org, who, [case_id], via, at, what)


async def record_reads(
    redis: Redis,
    actor_org: str,
    who: str,
    case_ids: Iterable[str],
    via: str,
    at: datetime,
    what: str = "read",
) -> None:
    """`record_read` for several cases at once (a list shown), in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for case_id in case_ids:
            pipe.xadd(
                keys.AUDIT,
                {
                    "at": at.isoformat(),
                    "what": what,
                    "case": case_id,
                    "by": actor_org,
                    "who": who,
                    "via": via,
                },
            )
        await pipe.execute()


async def reads(redis: Redis, batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
    """Every logged read, oldest first."""
    start = "-"
    while True:
        entries = await redis.xrange(keys.AUDIT, start, "+", count=batch)
        for entry_id, fields in entries:
            yield {"kind": "read", "entry": entry_id, **fields}
        if len(entries) < batch:
            return
        start = "(" + entries[-1][0]


async def changes(redis: Redis) -> list[dict[str, Any]]:
    """Every state change of every case (its history lines), with the case id."""
    out = []
    for case_id in sorted(await redis.smembers(keys.ALL_CASES)):
        for line in await redis.lrange(keys.case_history(case_id), 0, -1):
            entry = json.loads(line)
            # The trail says who did what when; the content itself stays with the case.
            entry.pop("changes", None)
            entry.pop("reason", None)
            out.append({"kind": "change", "case": case_id, **entry})
    return out


async def export(redis: Redis) -> AsyncIterator[str]:
    """The audit trail as JSON lines, oldest first: reads and state changes merged."""
    rows = [r async for r in reads(redis)] + await changes(redis)
    rows.sort(key=lambda r: (datetime.fromisoformat(r["at"]), r["kind"]))
    for row in rows:
        yield json.dumps(row, ensure_ascii=False)
