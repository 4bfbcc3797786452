"""Trimming the consumer-group streams to what every group has finished.

An entry may go once every group has read it (it is at or before each group's last-delivered
id) and none still holds it (it is in no group's pending list). So a stream is trimmed with
`XTRIM MINID` to the oldest entry some group still needs: the oldest pending entry of any group,
or the first entry after the group's last-delivered id, whichever is older. Nothing a group has
not finished is ever removed, so a consumer that crashed, a reclaim or a slow group loses
nothing; a stream with a group missing (a newly added group not created yet) is left alone, so
the new group still reads the stream from its start.

Every `serve` process trims every ANKOMST_STREAM_TRIM_SECONDS (5 s; the privacy loop,
bot/usecases/privacy.py), so a finished entry — an acknowledged outbox entry, an event both
groups have handled — is gone seconds after, not kept until the hourly sweep. Not at XADD
(`MAXLEN`/`MINID` there would cut by length or age, blind to what a group still holds).

The streams without consumer groups — the dead letters, rejected intake entries and the audit
trail — are records people read, and are not trimmed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bot.store import keys, scripts
from bot.store.client import Redis

TRIMMED: Mapping[str, tuple[str, ...]] = {
    keys.EVENTS: (keys.FANOUT_GROUP, keys.DEADLINES_GROUP),
    keys.OUTBOX_EMAIL: (keys.SENDER_GROUP,),
    keys.OUTBOX_TELEGRAM: (keys.SENDER_GROUP,),
    keys.INTAKE: (keys.INTAKE_GROUP,),
}
"""Each trimmed stream and the groups that must all have finished an entry before it goes."""


def _parse(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _after(entry_id: str) -> str:
    """The smallest id after `entry_id`."""
    ms, seq = _parse(entry_id)
    return f"{ms}-{seq + 1}"


@dataclass(frozen=True)
class GroupPosition:
    """Where one group stands on a stream."""

    group: str
    last_delivered: str  # entries after it have not been read by the group
    oldest_pending: str | None  # the oldest entry read and not yet acknowledged

    @property
    def needs_from(self) -> str:
        """The oldest id this group still needs kept."""
        first_unread = _after(self.last_delivered)
        if self.oldest_pending is not None and _parse(self.oldest_pending) < _parse(first_unread):
            return self.oldest_pending
        return first_unread


async def positions(redis: Redis, stream: str) -> dict[str, GroupPosition]:
    """Every group of `stream` and where it stands (empty when the stream does not exist)."""
    if not await redis.exists(stream):
        return {}
    out = {}
    for info in await redis.xinfo_groups(stream):
        name = str(info["name"])
        oldest = None
        if int(info.get("pending") or 0):
            summary = await redis.xpending(stream, name)
            oldest = str(summary["min"]) if summary.get("min") else None
        out[name] = GroupPosition(name, str(info.get("last-delivered-id") or "0-0"), oldest)
    return out


async def count_after(redis: Redis, stream: str, entry_id: str, cap: int) -> int:
    """How many entries of `stream` come after `entry_id`, counted up to `cap` inside Redis
    (a script: the entries are not sent over the wire)."""
    script = scripts.register(redis, "stream_count_after")
    return int(await script(keys=[stream], args=[entry_id, cap]))


async def keep_from(redis: Redis, stream: str, groups: Iterable[str]) -> str | None:
    """The oldest id of `stream` some group in `groups` still needs; None when one of them does
    not exist yet (nothing may go) or the stream does not exist."""
    where = await positions(redis, stream)
    wanted = list(groups)
    if not where or any(g not in where for g in wanted):
        return None
    return min((where[g].needs_from for g in wanted), key=_parse)


async def trim_stream(redis: Redis, stream: str, groups: Iterable[str]) -> int:
    """Remove the entries of `stream` every group in `groups` has finished; returns how many
    went. Exact MINID (not `~`): what stays is exactly what some group still needs."""
    minid = await keep_from(redis, stream, groups)
    if minid is None:
        return 0
    return int(await redis.xtrim(stream, minid=minid, approximate=False))


async def trim_streams(redis: Redis, plan: Mapping[str, tuple[str, ...]] = TRIMMED) -> int:
    """Trim every consumer-group stream (`TRIMMED`); returns how many entries went."""
    return sum([await trim_stream(redis, stream, groups) for stream, groups in plan.items()])


async def unfinished_entries(
    redis: Redis, stream: str, group: str, batch: int = 500
) -> list[tuple[str, dict[str, str]]]:
    """The entries of `stream` that `group` has not finished: those it holds pending and those
    after its last-delivered id (every entry when the group does not exist). Costs what the
    group's backlog holds, not the stream's history."""
    where = (await positions(redis, stream)).get(group)
    out: list[tuple[str, dict[str, str]]] = []
    start = "-"
    if where is not None:
        if where.oldest_pending is not None:
            held = "-"
            while True:
                page = await redis.xpending_range(stream, group, held, "+", batch)
                for item in page:
                    entry_id = str(item["message_id"])
                    out += await redis.xrange(stream, entry_id, entry_id)
                if len(page) < batch:
                    break
                held = "(" + str(page[-1]["message_id"])
        start = "(" + where.last_delivered
    while True:
        entries = await redis.xrange(stream, start, "+", count=batch)
        out += entries
        if len(entries) < batch:
            return out
        start = "(" + entries[-1][0]
