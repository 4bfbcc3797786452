"""The scheduler on real Redis: timers made once, fired once by the clock, late not never."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from bot.domain.clock import ManualClock
from bot.store import keys
from bot.store.timers import (
    CANCELLED,
    FAILED,
    FIRED,
    PENDING,
    NewTimer,
    Scheduler,
    Timer,
    case_timer_ids,
    describe_duration,
)

NINE = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # 09:00 in Stockholm
TOLD = (NINE - timedelta(hours=1, microseconds=3)).isoformat()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NINE)


@pytest.fixture(params=["own hash", "packed"])
def t1(request: pytest.FixtureRequest) -> str:
    """The id of a timer of kind "remind" for case "c1": one that does not say its case (the
    timer has a hash of its own), and one that does (the timer is packed in the case's index)."""
    return "t1" if request.param == "own hash" else "remind:c1:1"


async def stored_apart(redis: Redis, timer_id: str) -> bool:
    """Whether the timer has a hash of its own (else it is packed in its case's index)."""
    return bool(await redis.exists(keys.timer(timer_id)))


class Recorder:
    """A handler that counts what it fired."""

    def __init__(self) -> None:
        self.fired: Counter[str] = Counter()

    async def __call__(self, timer: Timer) -> None:
        await asyncio.sleep(0)  # let other claimers run in between
        self.fired[timer.id] += 1


def scheduler(redis: Redis, clock: ManualClock, handler: Recorder, **kw: float) -> Scheduler:
    s = Scheduler(redis, clock, lease_seconds=kw.pop("lease", 120), **kw)  # type: ignore[arg-type]
    s.on("remind", handler)
    return s


@pytest.fixture
async def clients(redis_url: str, redis: Redis) -> AsyncIterator[list[Redis]]:
    """Eight connections of their own, as eight `serve` processes would have."""
    made = [Redis.from_url(redis_url, decode_responses=True) for _ in range(8)]
    try:
        yield made
    finally:
        for client in made:
            await client.aclose()


async def test_a_timer_is_made_once_however_often_it_is_scheduled(
    redis: Redis, clock: ManualClock
) -> None:
    s = scheduler(redis, clock, Recorder())
    due = NINE + timedelta(hours=2)
    assert await s.schedule("remind:c1:1:hc", "remind", "c1", due, {"n": 1}) is True
    # A replayed event asks again, even with another time: nothing changes.
    assert await s.schedule("remind:c1:1:hc", "remind", "c1", due + timedelta(hours=5)) is False
    assert await redis.zcard(keys.TIMERS) == 1
    timer = await s.get("remind:c1:1:hc")
    assert timer is not None and timer.due_at == due and timer.payload == {"n": 1}
    assert [t.id for t in await s.of_case("c1")] == ["remind:c1:1:hc"]


async def test_a_timer_fires_when_the_clock_says_so_and_only_once(
    redis: Redis, clock: ManualClock, t1: str
) -> None:
    handler = Recorder()
    s = scheduler(redis, clock, handler)
    await s.schedule(t1, "remind", "c1", NINE + timedelta(hours=2))
    assert await s.run_due() == 0
    clock.advance(timedelta(hours=1, minutes=59, seconds=59))
    assert await s.run_due() == 0
    clock.advance(timedelta(seconds=1))
    assert await s.run_due() == 1
    assert await s.run_due() == 0
    clock.advance(timedelta(days=30))
    assert await s.run_due() == 0
    assert handler.fired == Counter({t1: 1})
    timer = await s.get(t1)
    assert timer is not None and timer.state == FIRED and not timer.pending
    assert await redis.zcard(keys.TIMERS) == 0
    # The fired timer is kept as a tombstone: scheduling it again makes nothing.
    assert await s.schedule(t1, "remind", "c1", NINE) is False
    if await stored_apart(redis, t1):
        assert await redis.ttl(keys.timer(t1)) > 0  # a hash of its own expires in time
    else:
        assert (await redis.hget(keys.case_timers("c1"), t1) or "").startswith("f1|")


async def test_a_kind_without_tombstones_is_forgotten_whole_once_done(
    redis: Redis, clock: ManualClock, t1: str
) -> None:
    """`on(..., tombstone=False)`: a fired timer leaves nothing (due set, index, own hash), so
    the same id may be made again; one whose handler fails stays until it is given up, and is
    then forgotten too. Another kind's timers keep their tombstones."""
    handler = Recorder()
    s = Scheduler(redis, clock, lease_seconds=60, max_attempts=2)
    s.on("remind", handler, tombstone=False)
    s.on("other", handler)
    await s.schedule(t1, "remind", "c1", NINE)
    await s.schedule("other:c1:1", "other", "c1", NINE)
    assert await s.run_due() == 2
    assert handler.fired == Counter({t1: 1, "other:c1:1": 1})
    assert await s.get(t1) is None
    assert not await redis.exists(keys.timer(t1))
    assert await redis.hexists(keys.case_timers("c1"), t1) == 0
    assert await redis.zrange(keys.TIMERS, 0, -1) == []
    other = await s.get("other:c1:1")
    assert other is not None and other.state == FIRED
    # Nothing stops it being made again: the kind's handler must be idempotent on its own.
    assert await s.schedule(t1, "remind", "c1", NINE) is True

    calls = 0

    async def broken(timer: Timer) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("template missing")

    s.on("remind", broken, tombstone=False)
    await s.run_due()
    failing = await s.get(t1)
    assert failing is not None and failing.pending  # kept for the retry after the lease
    clock.advance(timedelta(seconds=60))
    await s.run_due()
    assert calls == 2
    assert await s.get(t1) is None  # given up: forgotten, not kept as failed
    assert await redis.zcard(keys.TIMERS) == 0


@pytest.mark.parametrize("packed", [False, True])
async def test_many_claimers_at_once_fire_every_timer_exactly_once(
    redis: Redis, clients: list[Redis], clock: ManualClock, packed: bool
) -> None:
    handler = Recorder()
    processes = [scheduler(client, clock, handler) for client in clients]
    ids = [f"remind:c{i % 7}:{i}" if packed else f"t{i}" for i in range(60)]
    for i, ident in enumerate(ids):
        await processes[0].schedule(ident, "remind", f"c{i % 7}", NINE + timedelta(minutes=i))
    assert all([await stored_apart(redis, i) != packed for i in ids])
    clock.advance(timedelta(hours=2))
    fired = await asyncio.gather(*(p.run_due() for p in processes for _ in range(3)))
    assert sum(fired) == 60
    assert handler.fired == Counter(dict.fromkeys(ids, 1))


async def test_of_many_concurrent_claims_on_one_due_timer_exactly_one_wins(
    redis: Redis, clients: list[Redis], clock: ManualClock, t1: str
) -> None:
    processes = [scheduler(client, clock, Recorder()) for client in clients]
    await processes[0].schedule(t1, "remind", "c1", NINE)
    claims = await asyncio.gather(*(p.claim(t1) for p in processes for _ in range(5)))
    assert len([c for c in claims if c is not None]) == 1


async def test_a_timer_not_yet_due_cannot_be_claimed(
    redis: Redis, clock: ManualClock, t1: str
) -> None:
    s = scheduler(redis, clock, Recorder())
    await s.schedule(t1, "remind", "c1", NINE + timedelta(seconds=1))
    assert await s.claim(t1) is None
    assert await s.claim("no-such-timer") is None


async def test_a_late_firing_says_in_the_log_how_late(
    redis: Redis, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    handler = Recorder()
    s = scheduler(redis, clock, handler, late_after_seconds=60)
    await s.schedule("on-time", "remind", "c1", NINE)
    await s.schedule("late", "remind", "c1", NINE - timedelta(hours=2, minutes=30))
    with caplog.at_level(logging.WARNING, logger="bot.store.timers"):
        assert await s.run_due() == 2
    late = [r.getMessage() for r in caplog.records if "late" in r.getMessage()]
    assert len(late) == 1
    assert late[0].startswith("timer late fired 2 h 30 min late")
    assert s.stats.late == 1


def test_durations_in_the_log_read_plainly() -> None:
    assert describe_duration(timedelta(seconds=42)) == "42 s"
    assert describe_duration(timedelta(hours=2, minutes=30)) == "2 h 30 min"
    assert describe_duration(timedelta(days=3, hours=1, seconds=5)) == "3 d 1 h"
    assert describe_duration(timedelta(0)) == "0 s"


async def test_a_timer_whose_claimer_died_mid_fire_is_fired_after_the_lease(
    redis_url: str, redis: Redis, clock: ManualClock, t1: str
) -> None:
    handler = Recorder()
    crashed = scheduler(Redis.from_url(redis_url, decode_responses=True), clock, handler, lease=120)
    await crashed.schedule(t1, "remind", "c1", NINE)
    assert await crashed.claim(t1) is not None  # ... and the process dies here
    await crashed.redis.aclose()

    survivor = scheduler(redis, clock, handler, lease=120)
    assert await survivor.run_due() == 0  # still leased to the dead process
    clock.advance(timedelta(seconds=119))
    assert await survivor.run_due() == 0
    clock.advance(timedelta(seconds=1))
    assert await survivor.run_due() == 1
    timer = await survivor.get(t1)
    assert timer is not None and timer.state == FIRED and timer.attempts == 2
    assert handler.fired == Counter({t1: 1})


async def test_only_the_holder_of_the_claim_completes_a_timer(
    redis: Redis, clock: ManualClock, t1: str
) -> None:
    s = scheduler(redis, clock, Recorder())
    await s.schedule(t1, "remind", "c1", NINE)
    first = await s.claim(t1)
    assert first is not None
    clock.advance(timedelta(minutes=5))  # the lease runs out; another process takes it over
    second = await s.claim(t1)
    assert second is not None and second[1] == 2
    assert await s.complete(t1, first[0]) is False
    assert await s.complete(t1, second[0]) is True


async def test_timers_outlive_the_scheduler_that_made_them(
    redis_url: str, redis: Redis, clock: ManualClock, t1: str
) -> None:
    before = Redis.from_url(redis_url, decode_responses=True)
    await scheduler(before, clock, Recorder()).schedule(t1, "remind", "c1", NINE)
    await before.aclose()
    clock.advance(timedelta(days=3))  # everything was down for three days
    handler = Recorder()
    assert await scheduler(redis, clock, handler).run_due() == 1
    assert handler.fired == Counter({t1: 1})


async def test_a_cancelled_timer_never_fires_and_is_not_made_again(
    redis: Redis, clock: ManualClock, t1: str
) -> None:
    handler = Recorder()
    s = scheduler(redis, clock, handler)
    await s.schedule(t1, "remind", "c1", NINE + timedelta(hours=1))
    assert await s.cancel(t1) is True
    assert await s.cancel(t1) is False
    assert await s.schedule(t1, "remind", "c1", NINE + timedelta(hours=1)) is False
    clock.advance(timedelta(days=1))
    assert await s.run_due() == 0
    timer = await s.get(t1)
    assert timer is not None and timer.state == CANCELLED
    assert handler.fired == Counter()


async def test_a_failing_timer_is_retried_after_the_lease_then_given_up(
    redis: Redis, clock: ManualClock, t1: str
) -> None:
    calls = 0

    async def broken(timer: Timer) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("template missing")

    s = Scheduler(redis, clock, lease_seconds=60, max_attempts=3)
    s.on("remind", broken)
    await s.schedule(t1, "remind", "c1", NINE)
    for _ in range(5):
        await s.run_due()
        clock.advance(timedelta(seconds=60))
    assert calls == 3
    timer = await s.get(t1)
    assert timer is not None and timer.state == FAILED
    assert await redis.zcard(keys.TIMERS) == 0


async def test_the_loop_fires_by_the_clock_not_by_real_time(
    redis: Redis, clock: ManualClock, t1: str
) -> None:
    handler = Recorder()
    s = scheduler(redis, clock, handler, poll_seconds=0.01)
    await s.schedule(t1, "remind", "c1", NINE + timedelta(hours=2))
    task = asyncio.create_task(s.run())
    try:
        await asyncio.sleep(0.1)  # many rounds of real time: the clock has not moved
        assert handler.fired == Counter()
        assert s.stats.alive
        clock.advance(timedelta(hours=2))
        async with asyncio.timeout(5):
            while not handler.fired:
                await asyncio.sleep(0.01)
    finally:
        await s.stop()
        await asyncio.wait_for(task, 5)
    assert handler.fired == Counter({t1: 1})
    assert not s.stats.alive


async def test_due_times_must_be_aware(redis: Redis, clock: ManualClock) -> None:
    s = scheduler(redis, clock, Recorder())
    with pytest.raises(ValueError, match="aware"):
        await s.schedule("t1", "remind", "c1", datetime(2026, 11, 25, 9))


@pytest.mark.parametrize(
    ("ident", "payload"),
    [
        (
            "ack_escalation:9dc00c8a49aedbe0:1:ostersund-skola",
            {"version": 1, "organisation": "ostersund-skola", "told_at": TOLD},
        ),
        (
            "booking_escalation:9dc00c8a49aedbe0:hc-ostersund-centrum",
            {"organisation": "hc-ostersund-centrum", "informed_at": TOLD, "deadline": "2026-12-04"},
        ),
        ("same_day_check:9dc00c8a49aedbe0:2", {"version": 2, "day": "2026-11-25"}),
        ("same_day_close:9dc00c8a49aedbe0", {"version": 1, "day": "2026-11-25"}),
        ("disagreement_escalation:9dc00c8a49aedbe0:d7", {"disagreement": "d7", "days": 3}),
    ],
)
async def test_a_timer_is_stored_compactly_without_its_words(
    redis: Redis, clock: ManualClock, ident: str, payload: dict[str, object]
) -> None:
    """A deadline's timer is a short value in its case's index, in every state, so that Redis
    keeps the index as a listpack; it reads back exactly as it was made."""
    kind, case = ident.split(":")[:2]
    handler = Recorder()
    s = scheduler(redis, clock, handler, lease=60)
    s.on(kind, handler)
    index = keys.case_timers(case)
    due = NINE + timedelta(hours=2, microseconds=7)
    assert await s.schedule(ident, kind, case, due, payload)
    assert not await stored_apart(redis, ident)
    packed = await redis.hget(index, ident)
    assert packed is not None and packed.startswith("p0|")
    # Neither the item names nor what the id says are repeated.
    assert not any(name in packed for name in payload)
    assert ident.split(":", 2)[1] not in packed
    timer = await s.get(ident)
    assert timer is not None
    assert (timer.id, timer.kind, timer.case) == (ident, kind, case)
    assert (timer.due_at, dict(timer.payload), timer.state) == (due, payload, PENDING)
    assert [t.id for t in await s.of_case(case)] == [ident]
    clock.advance(timedelta(hours=3))
    for _ in range(998):  # claimed again and again (each lease ran out): still short
        assert await s.claim(ident) is not None
        clock.advance(timedelta(seconds=60))
    claim = await s.claim(ident)
    assert claim is not None and claim[1] == 999
    assert len((await redis.hget(index, ident) or "").encode()) <= 64
    assert await redis.object("encoding", index) == "listpack"
    assert await s.complete(ident, claim[0], FAILED)
    timer = await s.get(ident)
    assert timer is not None
    assert (timer.due_at, dict(timer.payload), timer.state, timer.attempts) == (
        due,
        payload,
        FAILED,
        999,
    )
    assert await redis.object("encoding", index) == "listpack"


async def test_a_timer_with_a_hash_of_its_own_is_read_claimed_completed_and_cancelled(
    redis: Redis, clock: ManualClock
) -> None:
    """The layout before the packed one: a hash per timer (its id saying kind and case), the
    case's index listing it with "" — as a deployment has them in Redis."""
    handler = Recorder()
    s = scheduler(redis, clock, handler, lease=60)
    ids = [f"remind:c1:{n}" for n in range(3)]
    for ident in ids:
        await redis.hset(
            keys.timer(ident),
            mapping={"due_at": repr(NINE.timestamp()), "state": "pending", "_n": "1"},
        )
        await redis.zadd(keys.TIMERS, {ident: NINE.timestamp()})
        await redis.hset(keys.case_timers("c1"), ident, "")
    first, second, third = ids
    timer = await s.get(first)
    assert timer is not None
    assert (timer.kind, timer.case, timer.due_at, dict(timer.payload)) == (
        "remind",
        "c1",
        NINE,
        {"n": 1},
    )
    # Made again (a replayed event): nothing changes, and nothing is packed beside it.
    assert await s.schedule(first, "remind", "c1", NINE, {"n": 2}) is False
    assert await redis.hget(keys.case_timers("c1"), first) == ""
    assert [t.id for t in await s.of_case("c1")] == ids
    assert await s.cancel(third) is True
    claim = await s.claim(first)
    assert claim is not None and claim[1] == 1
    clock.advance(timedelta(seconds=60))
    later = await s.claim(first)  # the lease ran out: taken over
    assert later is not None and later[1] == 2
    assert await s.complete(first, claim[0]) is False
    assert await s.complete(first, later[0]) is True
    assert await s.run_due() == 1
    assert handler.fired == Counter({second: 1})
    states = {t.id: t.state for t in await s.of_case("c1")}
    assert states == {first: FIRED, second: FIRED, third: CANCELLED}
    for ident in ids:
        assert await redis.ttl(keys.timer(ident)) > 0  # the tombstones expire in time
        assert await redis.hget(keys.case_timers("c1"), ident) == ""
    assert await redis.zcard(keys.TIMERS) == 0


async def test_a_timer_stored_in_the_older_layout_reads_cancels_and_fires_the_same(
    redis: Redis, clock: ManualClock
) -> None:
    handler = Recorder()
    s = scheduler(redis, clock, handler)
    for ident in ("old1", "old2"):
        await redis.hset(
            keys.timer(ident),
            mapping={
                "id": ident,
                "kind": "remind",
                "case": "c1",
                "due_at": NINE.isoformat(),
                "payload": json.dumps({"n": 1, "then": "Något händer."}),
                "state": "pending",
                "attempts": "0",
                "created_at": NINE.isoformat(),
            },
        )
        await redis.zadd(keys.TIMERS, {ident: NINE.timestamp()})
        await redis.sadd(keys.case_timers_set("c1"), ident)
    timer = await s.get("old1")
    assert timer is not None and timer.due_at == NINE
    assert dict(timer.payload) == {"n": 1, "then": "Något händer."}
    # A timer made now for the same case goes to the case's index hash; the case lists all.
    assert await s.schedule("new1", "remind", "c1", NINE + timedelta(hours=1))
    assert await redis.hkeys(keys.case_timers("c1")) == ["new1"]
    assert await case_timer_ids(redis, "c1") == ["new1", "old1", "old2"]
    assert [t.id for t in await s.of_case("c1")] == ["old1", "old2", "new1"]
    assert await s.cancel("old1") is True
    assert await s.run_due() == 1
    assert handler.fired == Counter({"old2": 1})


async def test_a_timer_of_the_older_layout_without_tombstones_leaves_its_set_too(
    redis: Redis, clock: ManualClock
) -> None:
    handler = Recorder()
    s = Scheduler(redis, clock, lease_seconds=60)
    s.on("remind", handler, tombstone=False)
    await redis.hset(
        keys.timer("old1"),
        mapping={
            "id": "old1",
            "kind": "remind",
            "case": "c1",
            "due_at": NINE.isoformat(),
            "payload": "{}",
            "state": "pending",
            "attempts": "0",
        },
    )
    await redis.zadd(keys.TIMERS, {"old1": NINE.timestamp()})
    await redis.sadd(keys.case_timers_set("c1"), "old1")

    assert await s.run_due() == 1

    assert handler.fired == Counter({"old1": 1})
    assert not await redis.exists(keys.timer("old1"), keys.case_timers_set("c1"))
    assert await case_timer_ids(redis, "c1") == []


@pytest.mark.parametrize("packed", [False, True])
async def test_many_timers_are_made_and_cancelled_in_one_call_each(
    redis: Redis, clock: ManualClock, packed: bool
) -> None:
    s = scheduler(redis, clock, Recorder())
    t1, t2, t3 = ("remind:c1:1", "remind:c1:2", "remind:c2:3") if packed else ("t1", "t2", "t3")
    await s.schedule(t1, "remind", "c1", NINE + timedelta(hours=1))
    made = await s.schedule_many(
        [
            NewTimer(t1, "remind", "c1", NINE + timedelta(hours=5)),  # exists: left as it is
            NewTimer(t2, "remind", "c1", NINE + timedelta(hours=2), {"n": 2}),
            NewTimer(t3, "remind", "c2", NINE + timedelta(hours=3)),
        ]
    )
    assert made == 2
    assert await s.schedule_many([]) == 0
    assert [await stored_apart(redis, t) for t in (t1, t2, t3)] == [not packed] * 3
    timer = await s.get(t1)
    assert timer is not None and timer.due_at == NINE + timedelta(hours=1)
    assert [t.id for t in await s.of_case("c1")] == [t1, t2]
    assert await redis.zcard(keys.TIMERS) == 3
    # Twice the same id, one never made: each pending timer is cancelled once.
    assert await s.cancel_all([t1, t2, t1, "nope", "remind:c1:9"]) == 2
    assert await s.cancel_all([t1, t2, t3]) == 1
    assert await s.cancel_all([]) == 0
    assert await redis.zcard(keys.TIMERS) == 0
    assert {t.state for t in await s.of_case("c1")} == {CANCELLED}
    timer = await s.get(t2)
    assert timer is not None and dict(timer.payload) == {"n": 2}


@pytest.mark.parametrize(
    ("ident", "kind", "case", "apart"),
    [
        ("remind:c1", "remind", "c1", False),
        ("remind:c1:2:hc:x", "remind", "c1", False),
        ("remind:", "remind", "", False),
        ("t1", "remind", "c1", True),  # the id says neither
        ("remind:c10:1", "remind", "c1", True),  # begins with the kind and case, no ':' after
        ("remind:c1:1", "remind:x", "c1", True),  # a kind holding ':'
        ("a:b:c:1", "a", "b:c", True),  # a case holding ':'
        ("remind:c1:1", "remind", "", True),  # no case, though the id has a second part
        ("escalation_digest:org:1", "escalation_digest", "digests", True),  # a digest's, older
        ("escalation_digest:digests:org:1", "escalation_digest", "digests", False),
    ],
)
async def test_a_timer_is_packed_in_its_cases_index_where_its_id_says_kind_and_case(
    redis: Redis, clock: ManualClock, ident: str, kind: str, case: str, apart: bool
) -> None:
    """Where the id does not say them, the timer has a hash of its own that keeps them, and
    its case's index lists it with the value ""."""
    handler = Recorder()
    s = scheduler(redis, clock, handler)
    s.on(kind, handler)
    assert await s.schedule(ident, kind, case, NINE, {"n": 1})
    stored = await redis.hgetall(keys.timer(ident))
    assert bool(stored) == apart
    assert ("kind" in stored, "case" in stored) == (apart, apart)
    listed = await redis.hget(keys.case_timers(case), ident)
    assert (listed == "") == apart
    timer = await s.get(ident)
    assert timer is not None and (timer.id, timer.kind, timer.case) == (ident, kind, case)
    assert dict(timer.payload) == {"n": 1}
    assert [t.id for t in await s.of_case(case)] == [ident]
    assert await s.run_due() == 1
    assert handler.fired == Counter({ident: 1})
    timer = await s.get(ident)
    assert timer is not None and timer.state == FIRED and timer.attempts == 1
    assert await s.schedule(ident, kind, case, NINE) is False


async def test_a_payload_too_long_to_pack_gets_a_hash_of_its_own(
    redis: Redis, clock: ManualClock
) -> None:
    s = scheduler(redis, clock, Recorder())
    payload = {"note": "x" * 60}
    assert await s.schedule("remind:c1:long", "remind", "c1", NINE, payload)
    assert await stored_apart(redis, "remind:c1:long")
    assert await redis.hget(keys.case_timers("c1"), "remind:c1:long") == ""
    assert await redis.object("encoding", keys.case_timers("c1")) == "listpack"
    timer = await s.get("remind:c1:long")
    assert timer is not None and (timer.kind, timer.case, dict(timer.payload)) == (
        "remind",
        "c1",
        payload,
    )


async def test_a_timer_this_code_cannot_read_is_left_to_the_lease(
    redis: Redis, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Packed by a process that knows its kind's items otherwise: the others fire all the same."""
    handler = Recorder()
    s = scheduler(redis, clock, handler)
    s.on("ack_reminder", handler)
    odd = "ack_reminder:c1:1:hc"
    await redis.hset(keys.case_timers("c1"), odd, f"p0|{NINE.timestamp()!r}||")
    await redis.zadd(keys.TIMERS, {odd: NINE.timestamp()})
    await s.schedule("remind:c1:1", "remind", "c1", NINE)
    with caplog.at_level(logging.ERROR, logger="bot.store.timers"):
        assert await s.run_due() == 1
    assert handler.fired == Counter({"remind:c1:1": 1})
    assert any("cannot be read" in r.getMessage() for r in caplog.records)
    assert await redis.zscore(keys.TIMERS, odd) == (NINE + timedelta(seconds=120)).timestamp()
