"""Timers kept in Redis, fired once each however many `serve` processes run.

A timer is a member of the sorted set `ankomst:timers` (its id, scored by its due time) and a
field of its case's index, the hash `ankomst:case:{case}:timer_ids`: the id is the field and
the timer packed is the value (`pack`): a state code and the attempts, "|", the due time in
epoch seconds, "|", the payload. A deadline's id is "{kind}:{case}:…", so the value need not
say kind or case; a payload of a kind listed in `bot.domain.deadline_kinds.PAYLOAD_ITEMS` is
its items' values in order, the names left out, a value the id says left empty (an
acknowledgement reminder's id says its version and organisation) and an ISO time as epoch
seconds; any other payload is its JSON. So a timer is a value of some 40 bytes and the index
stays a listpack (Redis 7.0 keeps a hash so while no value is over 64 bytes: a packed timer is
kept under that with room for 999 attempts, `PACKED_MAX`): with the benchmark's open cases the
index grew by about 40 bytes a timer (MEMORY USAGE), where a hash of its own took about 260.

A timer whose id does not say its kind and case (a digest's made before its id said them:
"escalation_digest:{org}:{when}", filed under the pseudo-case "digests"; a notice draft's), or
whose packed value would be too long, has a hash of its own instead, `ankomst:timer:{id}` (due
time, state, attempts, each payload item as a field `_name` -> JSON, and kind and case unless
the id says them), listed in its case's index with the value "". That is also how every timer
was stored before (and, older still, listed in the set `ankomst:case:{case}:timers`, an ISO
`due_at` and one JSON `payload`): such timers are read, claimed, completed and cancelled the
same (`timer_keys` names both places; the scripts look for the hash first). Every step is one
Lua script (bot/store/lua/timer_*.lua, with the steps of timer_lib.lua, its one reader of the
packing):

- create: only if no timer of that id exists (pending, fired or cancelled). Ids are derived from
  what the timer is for, so replaying an event never makes a second timer. Many timers are
  made in one call (`schedule_many`); a caller with more to write in the same step runs the
  shared steps of timer_lib.lua in a script of its own (`timer_args` gives what they take).
- claim: only if the timer is due by the clock. Claiming moves its score forward by the lease,
  so no other process sees it as due while it is being fired, and counts an attempt; the
  attempt number is the claim (a later claim has a higher one). A process that dies mid-fire
  leaves the lease to run out; the timer is then due again and fired by whoever looks next.
  Firing must therefore be idempotent (a notice's delivery id makes a second firing queue
  nothing).
- complete: only by the holder of the claim; the timer leaves the set and is kept as a
  tombstone, so that a replayed event does not bring it back. A kind whose handler is
  idempotent without one is forgotten whole instead (`Scheduler.on(..., tombstone=False)`:
  the digests, filed under no case, whose own record says they went out).
- cancel: a pending (or claimed) timer leaves the set and is kept as a tombstone; many at
  once in one call (`cancel_all`).

A tombstone in its case's index stays as long as the index: a hash field cannot expire on its
own before Redis 7.4, and a case's keys are never deleted (erasure, bot/usecases/privacy.py,
scrubs personal fields and keeps the case and its index). A tombstone with a hash of its own
expires `keep_seconds` after it was made one, its field in the index (valued "") staying.

Nothing lives in a process: after a restart or a stop of every process the timers are all still
there, and one that fell due meanwhile fires late rather than never, with a warning saying how
late. Due-ness is decided only by the injected clock; the loop looks every `poll_seconds` of
real time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot.domain.clock import Clock, aware_time
from bot.domain.deadline_kinds import PAYLOAD_ITEMS
from bot.store import keys
from bot.store.client import Redis
from bot.store.faults import (
    DEFAULT_STALE_SECONDS,
    Backoff,
    FaultLog,
    Heartbeat,
    pause,
    store_unavailable,
)
from bot.store.packed_index import listing, own_hashes
from bot.store.scripts import register

log = logging.getLogger(__name__)

PENDING: Final = "pending"
CLAIMED: Final = "claimed"
FIRED: Final = "fired"
CANCELLED: Final = "cancelled"
FAILED: Final = "failed"


# A packed timer's state, as one letter (timer_lib.lua `TIMER_CODE` reads the same).
STATE_CODES: Final = {PENDING: "p", CLAIMED: "c", FIRED: "f", CANCELLED: "x", FAILED: "e"}
_STATES: Final = {code: state for state, code in STATE_CODES.items()}

# A packed timer is made only this long (bytes), so that with up to 999 attempts it stays within
# Redis 7.0's hash-max-listpack-value (64): one longer would turn its case's index into a
# hashtable for good.
PACKED_MAX: Final = 62

# A payload item's field in a timer's own hash: "_" and its name (its value is the item's JSON).
PAYLOAD_FIELD: Final = "_"


def _score(moment: datetime) -> float:
    return moment.timestamp()


def _due_text(moment: datetime) -> str:
    return repr(_score(moment))


def _epoch_text(moment: datetime) -> str:
    """Epoch seconds, as short as they read back the same ("1764057600", "1764057600.25")."""
    return _due_text(moment).removesuffix(".0")


def _due_from(text: str) -> datetime:
    # Epoch seconds; a timer stored before the compact layout has an ISO time.
    if "T" in text:
        return datetime.fromisoformat(text)
    return datetime.fromtimestamp(float(text), UTC)


def _iso_of(epoch: str) -> str:
    return datetime.fromtimestamp(float(epoch), UTC).isoformat()


def _says_kind_and_case(timer_id: str, kind: str, case: str) -> bool:
    """Whether the id is "{kind}:{case}" or begins "{kind}:{case}:" (neither holding ':'), so
    that `_case_of` finds the case from the id alone."""
    if ":" in kind or ":" in case:
        return False
    head = f"{kind}:{case}"
    return timer_id == head or timer_id.startswith(head + ":")


def _case_of(timer_id: str) -> str:
    """The case a timer's id names, where a packed timer of that id would be filed."""
    return [*timer_id.split(":", 2), ""][1]


def timer_keys(timer_id: str) -> list[str]:
    """Where timer `timer_id` may be, as timer_lib.lua's steps take it: its own hash (the older
    layout, or an id that does not say its case), and the index of the case its id names."""
    return [keys.timer(timer_id), keys.case_timers(_case_of(timer_id))]


def _item_text(value: Any, kind: type) -> str | None:
    """A payload item's text by its type in `PAYLOAD_ITEMS`, None if it is not of that type."""
    if kind is int:
        return str(value) if type(value) is int else None
    return value if isinstance(value, str) else None


def _pack_items(kind: str, timer_id: str, payload: Mapping[str, Any]) -> str | None:
    """The payload as its items' values in the order `PAYLOAD_ITEMS` gives for the kind, joined
    by "|": empty for a value that is the id's next part after kind and case, epoch seconds for
    an ISO time; None unless it reads back the same (`_unpack_payload`)."""
    layout = PAYLOAD_ITEMS.get(kind)
    if layout is None or sorted(payload) != sorted(name for name, _ in layout):
        return None
    said = timer_id.split(":")[2:]
    fields: list[str] = []
    for name, item in layout:
        text = _item_text(payload[name], item)
        if text is None:
            return None
        if said and text == said[0]:
            said.pop(0)
            fields.append("")
            continue
        if item is datetime:
            moment = aware_time(text)
            if moment is None:
                return None
            text = _epoch_text(moment)
        if text == "" or "|" in text:
            return None
        fields.append(text)
    packed = "|".join(fields)
    if packed.startswith("{"):
        return None
    try:
        same = _unpack_payload(kind, timer_id, packed) == dict(payload)
    except (ValueError, KeyError, StopIteration):
        return None
    return packed if same else None


def _unpack_payload(kind: str, timer_id: str, text: str) -> dict[str, Any]:
    """A packed timer's payload (`_pack_items`, or JSON when it begins with "{")."""
    if text.startswith("{"):
        loaded: dict[str, Any] = json.loads(text)
        return loaded
    layout = PAYLOAD_ITEMS[kind]
    said = iter(timer_id.split(":")[2:])
    fields = text.split("|")
    if len(fields) != len(layout):
        raise ValueError(f"timer {timer_id}: {len(fields)} payload items for {kind}")
    payload: dict[str, Any] = {}
    for (name, item), field_ in zip(layout, fields, strict=True):
        raw = next(said) if field_ == "" else field_
        if item is int:
            payload[name] = int(raw)
        elif item is datetime and field_ != "":
            payload[name] = _iso_of(raw)
        else:
            payload[name] = raw
    return payload


def pack(
    timer_id: str,
    kind: str,
    case: str,
    due_at: datetime,
    payload: Mapping[str, Any],
    state: str = PENDING,
    attempts: int = 0,
) -> str | None:
    """A timer as its value in its case's index (`Timer.from_packed` reads it back), or None
    where it has a hash of its own: its id does not say its kind and case, or the value would
    be over `PACKED_MAX` bytes."""
    if not _says_kind_and_case(timer_id, kind, case):
        return None
    items = _pack_items(kind, timer_id, payload)
    if items is None:
        items = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    packed = f"{STATE_CODES[state]}{attempts}|{_epoch_text(due_at)}|{items}"
    return packed if len(packed.encode()) <= PACKED_MAX else None


class UnreadableTimer(ValueError):
    """A packed timer this code cannot read (see `Timer.from_packed`)."""


@dataclass(frozen=True)
class Timer:
    """One timer as stored."""

    id: str
    kind: str
    case: str
    due_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)
    state: str = PENDING
    attempts: int = 0

    @property
    def pending(self) -> bool:
        """Whether it has still to fire (claimed counts: it may yet be retried)."""
        return self.state in (PENDING, CLAIMED)

    @classmethod
    def from_packed(cls, timer_id: str, packed: str) -> Timer:
        """Build from its value in its case's index (`pack`); UnreadableTimer if this code
        does not know how it was packed (a payload of a kind whose items have changed)."""
        kind, case = [*timer_id.split(":", 2), ""][:2]
        try:
            head, due, items = packed.split("|", 2)
            return cls(
                id=timer_id,
                kind=kind,
                case=case,
                due_at=_due_from(due),
                payload=_unpack_payload(kind, timer_id, items),
                state=_STATES[head[0]],
                attempts=int(head[1:]),
            )
        except (ValueError, KeyError, IndexError, StopIteration) as exc:
            raise UnreadableTimer(f"timer {timer_id}: {packed!r}") from exc

    @classmethod
    def from_hash(cls, data: Mapping[str, str], timer_id: str = "") -> Timer:
        """Build from a timer's own hash (`timer_id`: its id, which the hash does not repeat)."""
        if "payload" in data:
            payload = json.loads(data["payload"] or "{}")
        else:
            payload = {
                name[1:]: json.loads(value)
                for name, value in data.items()
                if name.startswith(PAYLOAD_FIELD)
            }
        ident = data.get("id") or timer_id
        if "kind" in data:
            kind, case = data["kind"], data.get("case", "")
        else:
            # Left out when the id says them: "{kind}:{case}" or "{kind}:{case}:…".
            kind, case = [*ident.split(":", 2), ""][:2]
        return cls(
            id=ident,
            kind=kind,
            case=case,
            due_at=_due_from(data["due_at"]),
            payload=payload,
            state=data.get("state", PENDING),
            attempts=int(data.get("attempts", "0")),
        )


@dataclass(frozen=True)
class NewTimer:
    """A timer to make (see `Scheduler.schedule`)."""

    id: str
    kind: str
    case: str
    due_at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)


def timer_args(timer: NewTimer) -> tuple[list[str], list[str]]:
    """What timer_lib.lua's `timer_make` takes for one timer: its keys (its hash, its case's
    index) and its args (id, due score, its packed value or "", then the number of field/value
    args for its own hash when it has one, those args)."""
    if timer.due_at.tzinfo is None:
        raise ValueError("due_at must be timezone-aware")
    due = _due_text(timer.due_at)
    packed = pack(timer.id, timer.kind, timer.case, timer.due_at, timer.payload)
    fields: list[str] = []
    if packed is None:
        fields = ["due_at", due, "state", PENDING]
        if not _says_kind_and_case(timer.id, timer.kind, timer.case):
            fields += ["kind", timer.kind, "case", timer.case]
        for name, value in timer.payload.items():
            fields += [
                PAYLOAD_FIELD + name,
                json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str),
            ]
    return (
        [keys.timer(timer.id), keys.case_timers(timer.case)],
        [timer.id, due, packed or "", str(len(fields)), *fields],
    )


TimerHandler = Callable[[Timer], Awaitable[None]]
"""Fires one timer. Must be idempotent: a timer may fire again after a crash mid-fire."""


def describe_duration(delta: timedelta) -> str:
    """A duration for a log line: "2 d 3 h 5 min", "42 s"."""
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d"] if days else []
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs and not days:
        parts.append(f"{secs} s")
    return " ".join(parts) or "0 s"


async def case_timer_ids(redis: Redis, case_id: str) -> list[str]:
    """The ids of every timer made for a case (any state; a tombstone's may have expired), in
    one round trip: its index hash, and the set the older layout kept."""
    listed, older = await listing(redis, keys.case_timers(case_id), keys.case_timers_set(case_id))
    return sorted({*listed, *older})


async def timers_of_case(redis: Redis, case_id: str) -> list[Timer]:
    """Every timer of a case still stored (any state), by due time."""
    listed, older = await listing(redis, keys.case_timers(case_id), keys.case_timers_set(case_id))
    found = [Timer.from_packed(i, v) for i, v in listed.items() if v]
    own = sorted({*(i for i, v in listed.items() if not v), *older} - {t.id for t in found})
    rows = await own_hashes(redis, own, keys.timer)
    found += (Timer.from_hash(r, i) for i, r in rows.items())
    return sorted(found, key=lambda t: (t.due_at, t.id))


@dataclass
class SchedulerStats:
    """What the scheduler has done, for /readyz and tests."""

    fired: int = 0
    late: int = 0
    failed: int = 0
    heartbeat: Heartbeat = field(default_factory=Heartbeat)

    @property
    def alive(self) -> bool:
        """The loop runs and has taken a turn lately (readiness asks with its own window)."""
        return self.heartbeat.alive(DEFAULT_STALE_SECONDS)


class Scheduler:
    """Creates, cancels, claims and fires timers; `run()` is the loop `serve` starts."""

    def __init__(
        self,
        redis: Redis,
        clock: Clock,
        *,
        poll_seconds: float = 1.0,
        lease_seconds: float = 120.0,
        late_after_seconds: float = 60.0,
        keep_seconds: int = 90 * 86400,
        max_attempts: int = 10,
        batch: int = 100,
    ) -> None:
        self.redis = redis
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.late_after = timedelta(seconds=late_after_seconds)
        self.keep_seconds = keep_seconds
        self.max_attempts = max_attempts
        self.batch = batch
        self.stats = SchedulerStats()
        # Each kind's handler, and whether its timers are kept as tombstones once done (`on`).
        self._handlers: dict[str, tuple[TimerHandler, bool]] = {}
        self._stopping = asyncio.Event()
        self._create = register(redis, "timer_lib", "timer_create")
        self._claim = register(redis, "timer_lib", "timer_claim")
        self._complete = register(redis, "timer_lib", "timer_complete")
        self._cancel = register(redis, "timer_lib", "timer_cancel")

    def on(self, kind: str, handler: TimerHandler, *, tombstone: bool = True) -> None:
        """Fire timers of `kind` with `handler`. With `tombstone` False a timer of that kind
        is forgotten whole once done (fired or given up) instead of kept as a tombstone: for a
        kind whose firing stays idempotent without one (the handler's own record says it is
        done), so that a kind filed under no case leaves nothing behind."""
        self._handlers[kind] = (handler, tombstone)

    # -- timers -----------------------------------------------------------------------------

    async def schedule(
        self,
        timer_id: str,
        kind: str,
        case_id: str,
        due_at: datetime,
        payload: Mapping[str, Any] | None = None,
    ) -> bool:
        """Create a timer unless one of that id exists (in any state); True if created."""
        made = await self.schedule_many([NewTimer(timer_id, kind, case_id, due_at, payload or {})])
        return made == 1

    async def schedule_many(self, timers: Iterable[NewTimer]) -> int:
        """Create each timer unless one of its id exists (in any state), all in one round
        trip; returns how many were created."""
        keys_: list[str] = [keys.TIMERS]
        args: list[str] = []
        for timer in timers:
            k, a = timer_args(timer)
            keys_ += k
            args += a
        if not args:
            return 0
        return int(await self._create(keys=keys_, args=args))

    async def cancel(self, timer_id: str) -> bool:
        """Cancel a timer that has not fired; True if it was pending."""
        return await self.cancel_all([timer_id]) == 1

    async def cancel_all(self, timer_ids: Iterable[str]) -> int:
        """Cancel each of `timer_ids` still pending, in one round trip; returns how many were."""
        ids = list(dict.fromkeys(timer_ids))
        if not ids:
            return 0
        done = await self._cancel(
            keys=[keys.TIMERS, *(k for t in ids for k in timer_keys(t))],
            args=[self.clock.now().isoformat(), self.keep_seconds, *ids],
        )
        return int(done)

    async def get(self, timer_id: str) -> Timer | None:
        """A timer by id, in whatever state, or None (never made, or its tombstone expired)."""
        own, index = timer_keys(timer_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(own)
            pipe.hget(index, timer_id)
            data, packed = await pipe.execute()
        if data:
            return Timer.from_hash(data, timer_id)
        return Timer.from_packed(timer_id, packed) if packed else None

    async def of_case(self, case_id: str) -> list[Timer]:
        """Every timer of a case still stored, by due time."""
        return await timers_of_case(self.redis, case_id)

    async def next_due(self) -> datetime | None:
        """When the earliest timer (or lease) falls due, or None if there is none."""
        first = await self.redis.zrange(keys.TIMERS, 0, 0, withscores=True)
        if not first:
            return None
        return datetime.fromtimestamp(float(first[0][1]), UTC)

    # -- firing -----------------------------------------------------------------------------

    async def claim(self, timer_id: str) -> tuple[str, int] | None:
        """Take a due timer for firing: (claim, attempt number), or None if not ours. The claim
        is the attempt number, as text: a later claim (after the lease ran out) has a higher.

        Atomic: of any number of concurrent claimers, exactly one gets a due timer.
        """
        now = self.clock.now()
        attempt = int(
            await self._claim(
                keys=[keys.TIMERS, *timer_keys(timer_id)],
                args=[timer_id, repr(_score(now)), repr(_score(now + self.lease))],
            )
        )
        return (str(attempt), attempt) if attempt else None

    async def complete(
        self, timer_id: str, token: str, state: str = FIRED, *, forget_under: str | None = None
    ) -> bool:
        """Record a claimed timer as done (fired or failed); only the claim's holder can. With
        `forget_under`, the case the timer is listed under (its hash says it: one with a hash
        of its own may be listed under a case its id does not say), it is forgotten whole
        instead of kept as a tombstone: its hash, its field in that case's index and its id in
        the older layout's set."""
        own, index = timer_keys(timer_id)
        forgotten: list[str] = []
        if forget_under is not None:
            index = keys.case_timers(forget_under)
            forgotten = [keys.case_timers_set(forget_under)]
        done = await self._complete(
            keys=[keys.TIMERS, own, index, *forgotten],
            args=[
                timer_id,
                token,
                state,
                self.clock.now().isoformat(),
                0 if forget_under is not None else self.keep_seconds,
            ],
        )
        return bool(done)

    async def run_due(self) -> int:
        """Fire every timer due by the clock now; returns how many this call fired.

        Tests call this for one deterministic tick; `run()` calls it in a loop.
        """
        fired = 0
        while True:
            now = self.clock.now()
            ids = await self.redis.zrangebyscore(
                keys.TIMERS, "-inf", repr(_score(now)), start=0, num=self.batch
            )
            progressed = False
            for timer_id in ids:
                claimed = await self.claim(timer_id)
                if claimed is None:
                    continue  # another process has it, or it was cancelled meanwhile
                progressed = True
                if await self._fire(timer_id, *claimed):
                    fired += 1
            if not progressed:
                return fired

    async def _fire(self, timer_id: str, token: str, attempt: int) -> bool:
        try:
            timer = await self.get(timer_id)
        except UnreadableTimer:
            # Packed by a process that knows its kind's items otherwise: as for a kind without
            # a handler, leave it to the lease and whoever can read it.
            log.exception("timer %s cannot be read", timer_id)
            return False
        if timer is None:
            return False
        found = self._handlers.get(timer.kind)
        if found is None:
            # Perhaps a newer process made it; leave it to the lease and whoever knows it.
            log.error("timer %s: no handler for kind %r", timer_id, timer.kind)
            return False
        handler, tombstone = found
        forget_under = None if tombstone else timer.case
        late = self.clock.now() - timer.due_at
        if late > self.late_after:
            self.stats.late += 1
            log.warning(
                "timer %s fired %s late (due %s)",
                timer_id,
                describe_duration(late),
                timer.due_at.isoformat(),
            )
        try:
            await handler(timer)
        except Exception as exc:
            if store_unavailable(exc):
                # Not the timer's fault: no attempt is used up; the lease runs out and the
                # timer is tried again once the store takes writes.
                raise
            self.stats.failed += 1
            if attempt >= self.max_attempts:
                log.exception("timer %s failed %s times; given up", timer_id, attempt)
                await self.complete(timer_id, token, FAILED, forget_under=forget_under)
            else:
                log.exception(
                    "timer %s failed (attempt %s); retried after the lease", timer_id, attempt
                )
            return False
        await self.complete(timer_id, token, FIRED, forget_under=forget_under)
        self.stats.fired += 1
        return True

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Fire due timers every `poll_seconds` until stopped. No fault ends it: a lost or
        refusing store (or an error of our own) is logged once per distinct fault, backed off
        (exponential, jittered, at most 10 s) and tried again."""
        faults = FaultLog(log, "scheduler")
        backoff = Backoff()
        heartbeat = self.stats.heartbeat
        heartbeat.start()
        try:
            while not self._stopping.is_set():
                heartbeat.beat()
                try:
                    await self.run_due()
                except Exception as exc:
                    faults.fault(exc)
                    wait = backoff.next()
                else:
                    faults.ok()
                    backoff.reset()
                    wait = self.poll_seconds
                await pause(self._stopping, wait, heartbeat)
        finally:
            heartbeat.stop()

    async def stop(self) -> None:
        """Stop after the current round."""
        self._stopping.set()
