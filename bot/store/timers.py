"""Timers kept in Redis, fired once each however many `serve` processes run.

A timer is a hash (`ankomst:timer:{id}`: kind, case, due time, payload, state) and a member of
the sorted set `ankomst:timers`, scored by its due time. Every step is one Lua script:

- create: only if no timer of that id exists (pending, fired or cancelled). Ids are derived from
  what the timer is for, so replaying an event never makes a second timer.
- claim: only if the timer is due by the clock. Claiming moves its score forward by the lease,
  so no other process sees it as due while it is being fired. A process that dies mid-fire
  leaves the lease to run out; the timer is then due again and fired by whoever looks next.
  Firing must therefore be idempotent (a notice's delivery id makes a second firing queue
  nothing).
- complete: only by the holder of the claim; the timer leaves the set and is kept as a
  tombstone for a while, so that a replayed event does not bring it back.
- cancel: a pending (or claimed) timer leaves the set and is kept as a tombstone.

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
    def from_hash(cls, data: Mapping[str, str]) -> Timer:
        """Build from the timer hash."""
        return cls(
            id=data["id"],
            kind=data["kind"],
            case=data.get("case", ""),
            due_at=datetime.fromisoformat(data["due_at"]),
            payload=json.loads(data.get("payload") or "{}"),
            state=data.get("state", PENDING),
            attempts=int(data.get("attempts", "0")),
        )


TimerHandler = Callable[[Timer], Awaitable[None]]
"""Fires one timer. Must be idempotent: a timer may fire again after a crash mid-fire."""


def _score(moment: datetime) -> float:
    return moment.timestamp()


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


async def timers_of_case(redis: Redis, case_id: str) -> list[Timer]:
    """Every timer of a case still stored (any state), by due time."""
    ids = sorted(await redis.smembers(keys.case_timers(case_id)))
    async with redis.pipeline(transaction=False) as pipe:
        for ident in ids:
            pipe.hgetall(keys.timer(ident))
        rows: list[dict[str, str]] = await pipe.execute()
    return sorted((Timer.from_hash(r) for r in rows if r), key=lambda t: (t.due_at, t.id))


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
        self._create = register(redis, "timer_create")
        self._claim = register(redis, "timer_claim")
        self._complete = register(redis, "timer_complete")
        self._cancel = register(redis, "timer_cancel")

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
        if due_at.tzinfo is None:
            raise ValueError("due_at must be timezone-aware")
        fields = {
            "id": timer_id,
            "kind": kind,
            "case": case_id,
            "due_at": due_at.astimezone(UTC).isoformat(),
            "payload": json.dumps(dict(payload or {}), ensure_ascii=False, default=str),
            "state": PENDING,
            "attempts": "0",
            "created_at": self.clock.now().isoformat(),
        }
        flat = [x for pair in fields.items() for x in pair]
        created = await self._create(
            keys=[keys.TIMERS, keys.timer(timer_id), keys.case_timers(case_id)],
            args=[timer_id, repr(_score(due_at)), *flat],
        )
        return bool(created)

    async def cancel(self, timer_id: str) -> bool:
        """Cancel a timer that has not fired; True if it was pending."""
        done = await self._cancel(
            keys=[keys.TIMERS, keys.timer(timer_id)],
            args=[timer_id, self.clock.now().isoformat(), self.keep_seconds],
        )
        return bool(done)

    async def cancel_all(self, timer_ids: Iterable[str]) -> int:
        """Cancel each of `timer_ids` still pending; returns how many were."""
        return sum([await self.cancel(t) for t in timer_ids])

    async def get(self, timer_id: str) -> Timer | None:
        """A timer by id, in whatever state, or None (never made, or its tombstone expired)."""
        data = await self.redis.hgetall(keys.timer(timer_id))
        return Timer.from_hash(data) if data else None

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
