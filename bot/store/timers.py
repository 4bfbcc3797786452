"""Timers kept in Redis, fired once each however many `serve` processes run.

A timer is a hash (`ankomst:timer:{id}`: kind, case, due time, state, and each payload item as
a field of its own) and a member of the sorted set `ankomst:timers`, scored by its due time;
its case's index (`ankomst:case:{case}:timer_ids`) lists it as a field of a hash (a listpack;
the older layout's set `ankomst:case:{case}:timers` is still read).
The hash is kept small: the id is the key's, kind and case are left out when the id begins with
them (a deadline's id is "{kind}:{case}:…"), the due time is epoch seconds, and each payload
item is its own short field (`_name` -> JSON), so that Redis stores it compactly (a listpack:
no value over 64 bytes). What a deadline says in words is not stored; it is made from the kind
and the payload when it is shown. A timer stored in the older layout (`id`, ISO `due_at`, one
JSON `payload`) reads the same. Every step is one Lua script (bot/store/lua/timer_*.lua):

- create: only if no timer of that id exists (pending, fired or cancelled). Ids are derived from
  what the timer is for, so replaying an event never makes a second timer. Many timers are
  made in one call (`schedule_many`); a caller with more to write in the same step runs the
  shared steps of timer_lib.lua in a script of its own (`timer_args` gives what they take).
- claim: only if the timer is due by the clock. Claiming moves its score forward by the lease,
  so no other process sees it as due while it is being fired. A process that dies mid-fire
  leaves the lease to run out; the timer is then due again and fired by whoever looks next.
  Firing must therefore be idempotent (a notice's delivery id makes a second firing queue
  nothing).
- complete: only by the holder of the claim; the timer leaves the set and is kept as a
  tombstone for a while, so that a replayed event does not bring it back.
- cancel: a pending (or claimed) timer leaves the set and is kept as a tombstone; many at
  once in one call (`cancel_all`).

Nothing lives in a process: after a restart or a stop of every process the timers are all still
there, and one that fell due meanwhile fires late rather than never, with a warning saying how
late. Due-ness is decided only by the injected clock; the loop looks every `poll_seconds` of
real time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bot.domain.clock import Clock
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
from bot.store.scripts import register

log = logging.getLogger(__name__)

PENDING: Final = "pending"
CLAIMED: Final = "claimed"
FIRED: Final = "fired"
CANCELLED: Final = "cancelled"
FAILED: Final = "failed"


# A payload item's field in the timer hash: "_" and its name (its value is the item's JSON).
PAYLOAD_FIELD: Final = "_"


def _score(moment: datetime) -> float:
    return moment.timestamp()


def _due_text(moment: datetime) -> str:
    return repr(_score(moment))


def _due_from(text: str) -> datetime:
    # Epoch seconds; a timer stored before the compact layout has an ISO time.
    if "T" in text:
        return datetime.fromisoformat(text)
    return datetime.fromtimestamp(float(text), UTC)


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
    def from_hash(cls, data: Mapping[str, str], timer_id: str = "") -> Timer:
        """Build from the timer hash (`timer_id`: its id, which the hash does not repeat)."""
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
    """What timer_lib.lua's `timer_make` takes for one timer: its keys (hash, case's index) and
    its args (id, due score, kind, case, the number of payload field/value args, those args);
    the script writes kind, case, due_at (the score) and state itself."""
    if timer.due_at.tzinfo is None:
        raise ValueError("due_at must be timezone-aware")
    payload: list[str] = []
    for name, value in timer.payload.items():
        payload += [
            PAYLOAD_FIELD + name,
            json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str),
        ]
    return (
        [keys.timer(timer.id), keys.case_timers(timer.case)],
        [timer.id, _due_text(timer.due_at), timer.kind, timer.case, str(len(payload)), *payload],
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
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.case_timers(case_id))
        pipe.smembers(keys.case_timers_set(case_id))
        listed, older = await pipe.execute()
    return sorted({*listed, *older})


async def forget_case_timer(redis: Redis, case_id: str, timer_id: str) -> None:
    """Take a timer off its case's index (and the older layout's set), in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hdel(keys.case_timers(case_id), timer_id)
        pipe.srem(keys.case_timers_set(case_id), timer_id)
        await pipe.execute()


async def timers_of_case(redis: Redis, case_id: str) -> list[Timer]:
    """Every timer of a case still stored (any state), by due time."""
    ids = await case_timer_ids(redis, case_id)
    async with redis.pipeline(transaction=False) as pipe:
        for ident in ids:
            pipe.hgetall(keys.timer(ident))
        rows: list[dict[str, str]] = await pipe.execute()
    return sorted(
        (Timer.from_hash(r, i) for i, r in zip(ids, rows, strict=True) if r),
        key=lambda t: (t.due_at, t.id),
    )


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
        self._handlers: dict[str, TimerHandler] = {}
        self._stopping = asyncio.Event()
        self._create = register(redis, "timer_lib", "timer_create")
        self._claim = register(redis, "timer_claim")
        self._complete = register(redis, "timer_complete")
        self._cancel = register(redis, "timer_lib", "timer_cancel")

    def on(self, kind: str, handler: TimerHandler) -> None:
        """Fire timers of `kind` with `handler`."""
        self._handlers[kind] = handler

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
            keys=[keys.TIMERS, *(keys.timer(t) for t in ids)],
            args=[self.clock.now().isoformat(), self.keep_seconds, *ids],
        )
        return int(done)

    async def get(self, timer_id: str) -> Timer | None:
        """A timer by id, in whatever state, or None (never made, or its tombstone expired)."""
        data = await self.redis.hgetall(keys.timer(timer_id))
        return Timer.from_hash(data, timer_id) if data else None

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
        """Take a due timer for firing: (claim token, attempt number), or None if not ours.

        Atomic: of any number of concurrent claimers, exactly one gets a due timer.
        """
        now = self.clock.now()
        token = secrets.token_hex(8)
        attempt = int(
            await self._claim(
                keys=[keys.TIMERS, keys.timer(timer_id)],
                args=[
                    timer_id,
                    repr(_score(now)),
                    repr(_score(now + self.lease)),
                    token,
                    now.isoformat(),
                ],
            )
        )
        return (token, attempt) if attempt else None

    async def complete(self, timer_id: str, token: str, state: str = FIRED) -> bool:
        """Record a claimed timer as done (fired or failed); only the claim's holder can."""
        done = await self._complete(
            keys=[keys.TIMERS, keys.timer(timer_id)],
            args=[timer_id, token, state, self.clock.now().isoformat(), self.keep_seconds],
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
        timer = await self.get(timer_id)
        if timer is None:
            return False
        handler = self._handlers.get(timer.kind)
        if handler is None:
            # Perhaps a newer process made it; leave it to the lease and whoever knows it.
            log.error("timer %s: no handler for kind %r", timer_id, timer.kind)
            return False
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
                await self.complete(timer_id, token, FAILED)
            else:
                log.exception(
                    "timer %s failed (attempt %s); retried after the lease", timer_id, attempt
                )
            return False
        await self.complete(timer_id, token, FIRED)
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
