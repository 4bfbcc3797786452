"""The audit trail: every read of a case, every refused read, and every state change — with who
(organisation, role, token label or chat), when and through which channel.

Reads and refusals go to the stream `ankomst:audit` (kept: no consumer group, never trimmed);
state changes are already written, with who and when, as the history lines of each case (kept
when personal data are erased). `export` merges both into JSON lines, oldest first, and names an
API token by its label and organisation. Neither carries a personal field of the children.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Final

from bot.domain.actor import Actor
from bot.store import Redis, keys
from bot.usecases.access import TokenInfo, token_records

# What a refused read asked for is written as given, but never longer than this.
TARGET_MAX = 64


def _entry(actor: Actor, at: datetime, via: str, chat_id: int | None) -> dict[str, str]:
    """Who, when, through what: the fields every audit entry has."""
    fields = {
        "at": at.isoformat(),
        "by": actor.org_id,
        "role": actor.role,
        "who": actor.who,
        "via": via,
    }
    if actor.label:
        fields["label"] = actor.label
    if chat_id is not None:
        fields["chat"] = str(chat_id)
    return fields


async def record_read(
    redis: Redis,
    actor: Actor,
    case_id: str,
    via: str,
    at: datetime,
    what: str = "read",
    *,
    chat_id: int | None = None,
) -> None:
    """Log that `actor` read case `case_id` through `via` at `at`.

    `via` names the path, its channel first: "api", "api:list", "api:change", "dashboard",
    "telegram:list", ... Call it after the access check, for each case shown; `chat_id` names
    the chat a case was shown in.
    """
    await record_reads(redis, actor, [case_id], via, at, what, chat_id=chat_id)


async def record_reads(
    redis: Redis,
    actor: Actor,
    case_ids: Iterable[str],
    via: str,
    at: datetime,
    what: str = "read",
    *,
    chat_id: int | None = None,
) -> None:
    """`record_read` for several cases at once (a list shown), in one round trip."""
    base = _entry(actor, at, via, chat_id)
    async with redis.pipeline(transaction=False) as pipe:
        for case_id in case_ids:
            pipe.xadd(keys.AUDIT, {**base, "what": what, "case": case_id})
        await pipe.execute()


async def record_refused(
    redis: Redis,
    actor: Actor,
    target: str,
    via: str,
    at: datetime,
    reason: str,
    *,
    chat_id: int | None = None,
) -> None:
    """Log a refused read: `actor` asked for `target` (a case id, `disagreement:ID`,
    `municipality:M`) through `via` and was refused for `reason` (`forbidden`, `not_found`).

    Who tried what is kept even when the answer does not say whether the case exists.
    """
    fields = _entry(actor, at, via, chat_id)
    fields.update(what="refused", case=target[:TARGET_MAX], reason=reason)
    await redis.xadd(keys.AUDIT, fields)


# Audit entries that are no read and keep their own kind in the export: a refused read, and a
# notice draft thrown away (bot/usecases/notices.py: who, when, which draft).
REFUSED: Final = "refused"
DRAFT_DISCARDED: Final = "draft_discarded"
OWN_KINDS: Final = frozenset({REFUSED, DRAFT_DISCARDED})


async def reads(redis: Redis, batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
    """Every logged read, refused read and discarded draft, oldest first (`kind` "read",
    "refused" or "draft_discarded")."""
    start = "-"
    while True:
        entries = await redis.xrange(keys.AUDIT, start, "+", count=batch)
        for entry_id, fields in entries:
            what = fields.get("what")
            kind = what if what in OWN_KINDS else "read"
            yield {"kind": kind, "entry": entry_id, **fields}
        if len(entries) < batch:
            return
        start = "(" + entries[-1][0]


async def changes(redis: Redis, case_id: str | None = None) -> list[dict[str, Any]]:
    """Every state change of every case (or of `case_id`): its history lines, with the case."""
    out = []
    case_ids = [case_id] if case_id is not None else sorted(await redis.smembers(keys.ALL_CASES))
    for one in case_ids:
        for line in await redis.lrange(keys.case_history(one), 0, -1):
            entry = json.loads(line)
            # The trail says who did what when; the content itself stays with the case.
            entry.pop("changes", None)
            entry.pop("reason", None)
            out.append({"kind": "change", "case": one, **entry})
    return out


@dataclass(frozen=True)
class AuditFilter:
    """Which rows `export` gives: of one case, by one organisation, within local dates
    (inclusive, in `zone`). None means no limit."""

    case_id: str | None = None
    org_id: str | None = None
    start: date | None = None
    end: date | None = None
    zone: tzinfo = UTC  # the CLI passes ANKOMST_TIMEZONE

    def window(self) -> tuple[datetime | None, datetime | None]:
        """The instants [from, to) the dates stand for."""
        lo = datetime.combine(self.start, time(), self.zone) if self.start else None
        hi = datetime.combine(self.end + timedelta(days=1), time(), self.zone) if self.end else None
        return lo, hi

    def keeps(self, row: dict[str, Any], at: datetime) -> bool:
        """Whether `row` (made at `at`) is asked for."""
        lo, hi = self.window()
        return (
            (self.case_id is None or row.get("case") == self.case_id)
            and (self.org_id is None or row.get("by") == self.org_id)
            and (lo is None or at >= lo)
            and (hi is None or at < hi)
        )


async def case_id_for(redis: Redis, given: str) -> str | None:
    """The case id `given` names: a case id, or a human reference (OSD-2026-0001)."""
    if await redis.sismember(keys.ALL_CASES, given):
        return given
    found = await redis.get(keys.case_by_reference(given))
    return str(found) if found else None


def _name_token(row: dict[str, Any], tokens: dict[str, TokenInfo]) -> None:
    """Give a row done with an API token the token's label (and role), from its record."""
    who = str(row.get("who", ""))
    if not who.startswith("token:"):
        return
    info = tokens.get(who.removeprefix("token:"))
    if info is not None:
        row.setdefault("label", info.label)
        row.setdefault("role", info.role)


async def export(redis: Redis, only: AuditFilter | None = None) -> AsyncIterator[str]:
    """The audit trail as JSON lines, oldest first: reads, refused reads and state changes
    merged, each naming an API token by its label and organisation (`by`)."""
    only = only or AuditFilter()
    tokens = {info.id: info for info in await token_records(redis)}
    rows: list[tuple[datetime, str, dict[str, Any]]] = []
    async for row in reads(redis):
        at = datetime.fromisoformat(row["at"])
        if only.keeps(row, at):
            rows.append((at, row["kind"], row))
    for row in await changes(redis, only.case_id):
        at = datetime.fromisoformat(row["at"])
        if only.keeps(row, at):
            rows.append((at, row["kind"], row))
    rows.sort(key=lambda r: (r[0], r[1]))
    for _, _, row in rows:
        _name_token(row, tokens)
        yield json.dumps(row, ensure_ascii=False)
