"""Erasure of personal data a set time after a case is closed; the statistics stay.

Personal fields: the children's initials and the free-text details of the arrival, the reason
given for a cancellation, the texts and decisions of disagreements (free text about the family),
and the external reference (the Migration Agency's case number, which points at the family).
What stays: ages, dates, languages, who did what when, and the anonymous statistics record
(bot/usecases/report.py), which is frozen just before the erasure.

A case is closed when it was cancelled, or when the health centre has reported clearance, no
deadline timer of it is pending and no disagreement on it is unresolved. The moment it closed is
recorded once on the case (`closed_at`); `retention_days` later the sweep erases it. The sweep
runs in every `serve` process every `sweep_seconds` of real time and decides only by the
injected clock; erasing twice does no harm.

Between sweeps the same loop trims the consumer-group streams every `trim_seconds`
(bot/store/trim.py): an entry goes once every group has finished it, so the events and the
outboxes hold seconds of work, not an hour of finished entries (issue 17: Redis per open case).

Notice drafts (bot/usecases/notices.py) are deleted whole — the draft, its unit index entry and
its history — `retention_days` after they were confirmed or discarded, or after their notice came
if never handled (`keys.NOTICE_DRAFT_RETENTION`); a confirmed draft's case keeps when the notice
came, and the audit stream who discarded which draft.

Chat dialogues (aiogram's FSM state, `ankomst:fsm:*`) are not swept: they are cleared when a
dialogue ends and expire by Redis TTL `ANKOMST_CHAT_STATE_HOURS` after their last step, which the
settings keep no longer than the retention time (handlers/telegram/__init__.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.domain.calendar import WorkingDayCalendar
from bot.domain.clock import Clock
from bot.domain.directory import Directory
from bot.domain.personal import PERSONAL_KEYS
from bot.store import Redis, WatchError, keys
from bot.store.deliveries import DeliveryStore, case_delivery_rows
from bot.store.faults import DEFAULT_STALE_SECONDS, Backoff, FaultLog, Heartbeat, pause
from bot.store.timers import timers_of_case
from bot.store.trim import trim_stream, trim_streams, unfinished_entries
from bot.usecases.report import case_statistics, freeze_statistics

log = logging.getLogger(__name__)


def scrub(value: Any) -> Any:
    """`value` with every personal key taken out, at any depth."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in PERSONAL_KEYS}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def scrub_changes(changes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """A version's changes with the old and new values of personal fields taken out."""
    out = []
    for change in changes:
        if change.get("field") in PERSONAL_KEYS:
            out.append({"field": change["field"], "old": None, "new": None})
        else:
            out.append(scrub(change))
    return out


def _scrub_entry(entry: dict[str, Any]) -> dict[str, Any]:
    changes = entry.get("changes")
    clean: dict[str, Any] = scrub({k: v for k, v in entry.items() if k != "changes"})
    if changes is not None:
        clean["changes"] = scrub_changes(changes)
    return clean


def carries_personal(fields: dict[str, str]) -> bool:
    """Whether a stream entry holds a personal field, at the top or inside a JSON value."""
    return any(k in PERSONAL_KEYS or _has_personal(v) for k, v in fields.items())


Handler = Callable[[str, dict[str, str]], Awaitable[bool]]


def note_personal_entries(redis: Redis, handle: Handler) -> Handler:
    """Wrap the fan-out's event handler: before an event that carries personal fields is
    handled (and so before it can be acknowledged and trimmed), its entry id is noted on its
    case (`keys.case_personal_entries`), so erasure deletes exactly those entries instead of
    reading the event stream's history."""

    async def noted(entry_id: str, event: dict[str, str]) -> bool:
        case_id = event.get("case", "")
        if case_id and carries_personal(event):
            await redis.sadd(keys.case_personal_entries(case_id), entry_id)
        return await handle(entry_id, event)

    return noted


def _has_personal(text: str | None) -> bool:
    # Only a JSON object can hold a personal key (`scrub` takes keys out of objects, at any
    # depth): a value that is not an object or array is not parsed. Most stream fields are
    # ids, times and kinds, and a failed parse (an exception) was most of this hook's cost.
    if not text or text.lstrip()[:1] not in ("{", "["):
        return False
    try:
        value = json.loads(text)
    except (ValueError, TypeError):
        return False
    return bool(scrub(value) != value)


@dataclass
class RetentionStats:
    """What the sweep has done, for /readyz and metrics."""

    erased: int = 0
    drafts_erased: int = 0
    sweeps: int = 0
    trims: int = 0  # rounds of trimming the streams (with a sweep or between)
    trimmed: int = 0  # stream entries every group had finished, removed
    heartbeat: Heartbeat = field(default_factory=Heartbeat)

    @property
    def alive(self) -> bool:
        """The loop runs and has taken a turn lately (readiness asks with its own window)."""
        return self.heartbeat.alive(DEFAULT_STALE_SECONDS)


class Retention:
    """Finds closed cases and erases their personal data `retention_days` after closing."""

    def __init__(
        self,
        redis: Redis,
        directory: Directory,
        calendar: WorkingDayCalendar,
        clock: Clock,
        *,
        retention_days: int = 90,
        sweep_seconds: float = 3600.0,
        trim_seconds: float | None = None,
        booking_days: int = 5,
    ) -> None:
        self.redis = redis
        self.directory = directory
        self.calendar = calendar
        self.clock = clock
        self.retention = timedelta(days=retention_days)
        self.sweep_seconds = sweep_seconds
        # None: only with each sweep. Never less often than the sweep.
        self.trim_seconds = min(trim_seconds or sweep_seconds, sweep_seconds)
        self.booking_days = booking_days
        self.stats = RetentionStats()
        self._stopping = asyncio.Event()

    async def closed_at(self, case_id: str) -> datetime | None:
        """When the case closed (recorded once), or None while it is still open."""
        data = await self.redis.hgetall(keys.case(case_id))
        if not data:
            return None
        if data.get("closed_at"):
            return datetime.fromisoformat(data["closed_at"])
        moments = [datetime.fromisoformat(data["updated_at"])]
        if data.get("status") != "cancelled":
            if not data.get("clearance"):
                return None
            moments.append(datetime.fromisoformat(json.loads(data["clearance"])["reported_at"]))
            timers = await timers_of_case(self.redis, case_id)
            if any(t.pending for t in timers):
                return None
            for ident in await self.redis.smembers(keys.case_disagreements(case_id)):
                d = await self.redis.hgetall(keys.disagreement(ident))
                if d and d.get("status") != "resolved":
                    return None
                if d.get("resolved_at"):
                    moments.append(datetime.fromisoformat(d["resolved_at"]))
        closed = max(moments)
        await self.redis.hsetnx(keys.case(case_id), "closed_at", closed.isoformat())
        recorded = await self.redis.hget(keys.case(case_id), "closed_at")
        return datetime.fromisoformat(recorded) if recorded else closed

    async def due(self) -> list[str]:
        """Cases closed at least `retention_days` ago whose personal data are still stored."""
        now = self.clock.now()
        out = []
        for case_id in sorted(await self.redis.sdiff(keys.ALL_CASES, keys.ERASED_CASES)):
            closed = await self.closed_at(case_id)
            if closed is not None and now - closed >= self.retention:
                out.append(case_id)
        return out

    async def sweep(self) -> list[str]:
        """Trim the consumer-group streams to what every group has finished, then erase every
        case that is due; returns their ids. Tests call this for one round."""
        await self.trim()
        ids = await self.due()
        if ids:
            await self.erase(ids)
        drafts = await self.due_drafts()
        if drafts:
            await self.erase_drafts(drafts)
        self.stats.sweeps += 1
        return ids

    async def trim(self) -> int:
        """Trim the consumer-group streams to what every group has finished (never an entry a
        group holds pending or has not read); returns how many entries went."""
        gone = await trim_streams(self.redis)
        self.stats.trims += 1
        self.stats.trimmed += gone
        return gone

    async def due_drafts(self) -> list[str]:
        """Notice drafts confirmed or discarded at least `retention_days` ago, or unhandled
        that long after their notice came."""
        limit = (self.clock.now() - self.retention).timestamp()
        return list(await self.redis.zrangebyscore(keys.NOTICE_DRAFT_RETENTION, "-inf", limit))

    async def erase_drafts(self, draft_ids: Iterable[str]) -> None:
        """Delete these notice drafts: the draft, its history and its unit's index entry."""
        ids = list(draft_ids)
        for draft_id in ids:
            unit = await self.redis.hget(keys.notice_draft(draft_id), "reception_unit")
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(keys.notice_draft(draft_id), keys.notice_draft_history(draft_id))
                if unit:
                    pipe.zrem(keys.notice_drafts(unit), draft_id)
                pipe.zrem(keys.NOTICE_DRAFT_RETENTION, draft_id)
                await pipe.execute()
        self.stats.drafts_erased += len(ids)
        log.info("deleted %d notice draft(s) after the retention time", len(ids))

    async def erase(self, case_ids: Iterable[str]) -> None:
        """Erase the personal fields of these cases everywhere Redis holds them."""
        ids = list(case_ids)
        refs: set[str] = set()
        for case_id in ids:
            record = await case_statistics(
                self.redis, self.directory, self.calendar, case_id, booking_days=self.booking_days
            )
            if record is not None and not await self.redis.exists(keys.case_stats(case_id)):
                await freeze_statistics(self.redis, record)
            ref = await self._erase_case(case_id)
            if ref:
                refs.add(ref)
            await self._erase_deliveries(case_id)
            await self._erase_disagreements(case_id)
        await self._erase_stream_entries(set(ids), refs)
        async with self.redis.pipeline(transaction=True) as pipe:
            for case_id in ids:
                pipe.sadd(keys.ERASED_CASES, case_id)
            await pipe.execute()
        self.stats.erased += len(ids)
        log.info("erased personal data of %d case(s)", len(ids), extra={"cases": ids})

    async def _erase_case(self, case_id: str) -> str:
        """The case hash, its versions and its history; returns the external reference."""
        case_key = keys.case(case_id)
        versions_key = keys.case_versions(case_id)
        history_key = keys.case_history(case_id)
        while True:
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(case_key, versions_key, history_key)
                    data = await pipe.hgetall(case_key)
                    versions = await pipe.hgetall(versions_key)
                    history = await pipe.lrange(history_key, 0, -1)
                    ref = data.get("external_ref", "")
                    pipe.multi()
                    if data:
                        # The facts are in the versions (scrubbed below); a case stored before
                        # holds the current ones in its hash too.
                        held = data.get("facts")
                        facts = scrub(json.loads(held)) if held else None
                        fields = {"facts": json.dumps(facts, ensure_ascii=False)} if held else {}
                        pipe.hset(
                            case_key,
                            mapping={
                                **fields,
                                "external_ref": "",
                                "content_hash": "",
                                "erased_at": self.clock.now().isoformat(),
                            },
                        )
                    if ref:
                        pipe.delete(keys.external_ref(ref))
                    for number, text in versions.items():
                        version = json.loads(text)
                        version["facts"] = scrub(version.get("facts", {}))
                        version["changes"] = scrub_changes(version.get("changes", []))
                        version["reason"] = ""
                        pipe.hset(versions_key, number, json.dumps(version, ensure_ascii=False))
                    if history:
                        pipe.delete(history_key)
                        pipe.rpush(
                            history_key,
                            *(
                                json.dumps(_scrub_entry(json.loads(x)), ensure_ascii=False)
                                for x in history
                            ),
                        )
                    await pipe.execute()
                    return str(ref)
                except WatchError:
                    continue

    async def _erase_deliveries(self, case_id: str) -> None:
        # Packed in the case's index or a hash of their own (the older layouts): the store
        # reads and writes either.
        store = DeliveryStore(self.redis)
        for ident, stored in await case_delivery_rows(self.redis, case_id):
            params = stored.get("params")
            if params is not None and _has_personal(params):
                clean = json.dumps(scrub(json.loads(params)), ensure_ascii=False)
                await store.update(ident, params=clean)

    async def _erase_disagreements(self, case_id: str) -> None:
        for ident in await self.redis.smembers(keys.case_disagreements(case_id)):
            key = keys.disagreement(ident)
            if await self.redis.exists(key):
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hset(key, "text", "")
                    pipe.hdel(key, "decision")
                    await pipe.execute()

    async def _erase_stream_entries(self, case_ids: set[str], refs: set[str]) -> None:
        """Entries that carry a personal field of these cases, found without reading a stream's
        history: the event entries noted per case when the fan-out read them, plus what the
        fan-out has not finished yet (pending or unread, so maybe not noted); the arrivals still
        unfinished on the intake (the finished ones are trimmed first); dead letters and
        rejected intake entries (records of failures, kept until erased, read whole)."""

        def about(fields: dict[str, str]) -> bool:
            return fields.get("case") in case_ids and carries_personal(fields)

        def dead_letter(fields: dict[str, str]) -> bool:
            try:
                inner = json.loads(fields.get("fields") or "{}")
            except ValueError:
                return False
            delivery = str(inner.get("delivery", ""))
            return inner.get("case") in case_ids or delivery.split(":", 1)[0] in case_ids

        def intake(fields: dict[str, str]) -> bool:
            try:
                arrival = json.loads(fields.get("arrival") or "{}")
            except ValueError:
                return False
            return isinstance(arrival, dict) and arrival.get("external_ref") in refs

        noted = [keys.case_personal_entries(case_id) for case_id in sorted(case_ids)]
        doomed = set(await self.redis.sunion(noted)) if noted else set()
        unfinished = await unfinished_entries(self.redis, keys.EVENTS, keys.FANOUT_GROUP)
        doomed |= {entry_id for entry_id, fields in unfinished if about(fields)}
        if doomed:
            await self.redis.xdel(keys.EVENTS, *sorted(doomed))
        if noted:
            await self.redis.delete(*noted)
        if refs:
            await trim_stream(self.redis, keys.INTAKE, (keys.INTAKE_GROUP,))
            arrivals = await unfinished_entries(self.redis, keys.INTAKE, keys.INTAKE_GROUP)
            gone = [entry_id for entry_id, fields in arrivals if intake(fields)]
            if gone:
                await self.redis.xdel(keys.INTAKE, *gone)
        for stream, which in ((keys.DEAD_LETTER, dead_letter), (keys.INTAKE_REJECTED, intake)):
            if stream == keys.INTAKE_REJECTED and not refs:
                continue
            start = "-"
            while True:
                entries = await self.redis.xrange(stream, start, "+", count=500)
                gone = [entry_id for entry_id, fields in entries if which(fields)]
                if gone:
                    await self.redis.xdel(stream, *gone)
                if len(entries) < 500:
                    break
                start = "(" + entries[-1][0]

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Sweep every `sweep_seconds` and trim the streams every `trim_seconds` between, until
        stopped. No fault ends it: a lost or refusing store (or an error of our own) is logged
        once per distinct fault, backed off (exponential, jittered, at most 10 s) and tried
        again (a failed sweep is tried again whole)."""
        faults = FaultLog(log, "privacy sweep")
        backoff = Backoff()
        heartbeat = self.stats.heartbeat
        heartbeat.start()
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        try:
            while not self._stopping.is_set():
                heartbeat.beat()
                try:
                    if loop.time() >= next_sweep:
                        await self.sweep()
                        next_sweep = loop.time() + self.sweep_seconds
                    else:
                        await self.trim()
                except Exception as exc:
                    faults.fault(exc)
                    wait = min(backoff.next(), self.trim_seconds)
                else:
                    faults.ok()
                    backoff.reset()
                    wait = min(self.trim_seconds, max(0.0, next_sweep - loop.time()))
                await pause(self._stopping, wait, heartbeat)
        finally:
            heartbeat.stop()

    async def stop(self) -> None:
        """Stop after the current round."""
        self._stopping.set()
