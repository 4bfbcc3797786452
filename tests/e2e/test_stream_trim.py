"""Streams are trimmed to what every consumer group has finished; erasure reads no history.

Also: /metrics' overdue gauges, kept as things happen, agree with a rebuild from the open cases.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.store import keys
from bot.store.trim import TRIMMED, keep_from, trim_stream, trim_streams
from tests.support.world import arrival, eventually, running_world

RECEPTION = "ostersund-mottagning"
HC = "hc-lugnvik"
STREAM = "test:trim"


async def test_trim_keeps_what_any_group_has_not_finished(redis: Redis) -> None:
    ids = [await redis.xadd(STREAM, {"n": str(n)}) for n in range(6)]
    await redis.xgroup_create(STREAM, "a", id="0")
    await redis.xgroup_create(STREAM, "b", id="0")
    # a missing group: nothing may go, the new group must still read the stream from its start
    assert await trim_stream(redis, STREAM, ("a", "b", "c")) == 0
    # a reads four and finishes all but the second; b reads none
    read = await redis.xreadgroup("a", "a1", {STREAM: ">"}, count=4)
    got = [entry_id for entry_id, _ in read[0][1]]
    await redis.xack(STREAM, "a", got[0], got[2], got[3])
    assert await trim_stream(redis, STREAM, ("a", "b")) == 0  # b has read nothing
    await redis.xreadgroup("b", "b1", {STREAM: ">"})
    await redis.xack(STREAM, "b", *ids)
    # b is done with all six; a holds the second pending and has not read the last two
    assert await keep_from(redis, STREAM, ("a", "b")) == ids[1]
    assert await trim_stream(redis, STREAM, ("a", "b")) == 1
    assert [e for e, _ in await redis.xrange(STREAM)] == ids[1:]
    await redis.xack(STREAM, "a", got[1])
    assert await trim_stream(redis, STREAM, ("a", "b")) == 3  # a has not read ids[4:]
    assert [e for e, _ in await redis.xrange(STREAM)] == ids[4:]
    # the groups still work on what is left and on what comes
    rest = await redis.xreadgroup("a", "a1", {STREAM: ">"})
    assert [e for e, _ in rest[0][1]] == ids[4:]
    await redis.xack(STREAM, "a", *ids[4:])
    new = await redis.xadd(STREAM, {"n": "6"})
    assert await trim_stream(redis, STREAM, ("a", "b")) == 2
    assert [e for e, _ in await redis.xrange(STREAM)] == [new]
    for group in await redis.xinfo_groups(STREAM):
        assert group["pending"] == 0


async def test_a_run_with_trimming_leaves_short_streams_and_working_groups(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        first = [(await world.register(arrival(external_ref=f"MIG-T-{n}")))["id"] for n in range(4)]
        for case_id in first:
            await world.settled(case_id)
        await world.drain()
        before = {s: await redis.xlen(s) for s in (keys.EVENTS, keys.OUTBOX_EMAIL)}
        assert before[keys.EVENTS] > 8 and before[keys.OUTBOX_EMAIL] >= 16
        assert world.services.retention is not None
        await world.services.retention.sweep()  # the periodic sweep trims first
        for stream in (keys.EVENTS, keys.OUTBOX_EMAIL, keys.OUTBOX_TELEGRAM):
            assert await redis.xlen(stream) == 0, stream
        # every group carries on: a new arrival is fanned out, sent and acknowledged
        mails = len(world.mails_to("hc-lugnvik@regionjh.example.se"))
        case_id = (await world.register(arrival(external_ref="MIG-T-9")))["id"]
        await world.settled(case_id)
        status, _ = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", HC)
        assert status == 200
        await world.drain()
        assert len(world.mails_to("hc-lugnvik@regionjh.example.se")) == mails + 1
        await trim_streams(redis)
        for stream, group in (
            (keys.EVENTS, keys.FANOUT_GROUP),
            (keys.EVENTS, keys.DEADLINES_GROUP),
            (keys.OUTBOX_EMAIL, keys.SENDER_GROUP),
            (keys.OUTBOX_TELEGRAM, keys.SENDER_GROUP),
        ):
            assert await redis.xlen(stream) == 0
            info = {g["name"]: g for g in await redis.xinfo_groups(stream)}[group]
            assert info["pending"] == 0


async def test_the_service_trims_between_sweeps_and_never_an_entry_still_held(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, stream_trim_seconds=0.05) as world:
        retention = world.services.retention
        assert retention is not None
        sweeps = retention.stats.sweeps
        for n in range(2):
            case_id = (await world.register(arrival(external_ref=f"MIG-T-{n}")))["id"]
            await world.settled(case_id)
        await world.drain()
        # An outbox entry a sender has read and not acknowledged (its send under way): taken
        # with the senders' group in the same MULTI as it is added, so no worker of the service
        # gets it first (the claim time, 60 s, is far beyond the test: nobody reclaims it; and
        # from here on the test drains nothing, which would take it over).
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(keys.OUTBOX_EMAIL, {"delivery": "held-by-a-test-sender"})
            pipe.xreadgroup(keys.SENDER_GROUP, "test-sender", {keys.OUTBOX_EMAIL: ">"}, count=1)
            held, _read = await pipe.execute()
        # A later arrival, sent by the service's own workers behind the held entry.
        later = (await world.register(arrival(external_ref="MIG-T-9")))["id"]

        async def sent() -> bool:
            view = await world.case(later)
            rows = [d for p in view["recipients"] for d in p["deliveries"]]
            return bool(rows) and all(d["status"] == "sent" for d in rows)

        await eventually(sent, 10.0, "the later arrival's deliveries")
        rounds = retention.stats.trims

        async def trimmed() -> bool:
            # Two rounds after the work was done: the second saw every group finished.
            if retention.stats.trims < rounds + 2:
                return False
            lengths = {s: await redis.xlen(s) for s in TRIMMED}
            return lengths[keys.EVENTS] == 0 and lengths[keys.OUTBOX_TELEGRAM] == 0

        await eventually(trimmed, 10.0, "the service to trim its streams")
        assert retention.stats.sweeps == sweeps  # trimmed between sweeps, not by one
        # the held entry stays, and what came after it (sent, acknowledged) only behind it
        left = [entry_id for entry_id, _ in await redis.xrange(keys.OUTBOX_EMAIL)]
        assert left[0] == held and len(left) > 1
        pending = await redis.xpending(keys.OUTBOX_EMAIL, keys.SENDER_GROUP)
        assert (pending["pending"], pending["min"]) == (1, held)
        await redis.xack(keys.OUTBOX_EMAIL, keys.SENDER_GROUP, held)

        async def emptied() -> bool:
            return await redis.xlen(keys.OUTBOX_EMAIL) == 0

        await eventually(emptied, 10.0, "the outbox to be trimmed once acknowledged")


async def test_erasure_deletes_the_noted_event_entries_without_reading_history(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        services = world.services
        assert services.retention is not None
        other = (await world.register(arrival(external_ref="MIG-T-1")))["id"]
        case_id = (await world.register(arrival(external_ref="MIG-T-2")))["id"]
        await world.settled(case_id)
        # Events that carry a personal field (today's notices carry none of the free texts,
        # but an entry that did must not outlive the erasure): one the fan-out reads ...
        await redis.xadd(keys.EVENTS, {"type": "test.note", "case": case_id, "reason": "Hemligt"})
        await world.drain()
        everything = str(await redis.xrange(keys.EVENTS))
        assert "Hemligt" in everything  # not trimmed here: only erasure may take it
        assert await redis.scard(keys.case_personal_entries(case_id)) == 1
        # ... and one it has not read yet (so not noted): erasure finds it among the unread
        unread = {"type": "notice", "case": case_id, "params": '{"text": "Hemligt igen"}'}
        await redis.xadd(keys.EVENTS, unread)
        read_from_start: list[Any] = []
        xrange = services.redis.xrange

        async def watched_xrange(name: str, min: str = "-", *args: Any, **kw: Any) -> Any:
            if name == keys.EVENTS and min == "-":
                read_from_start.append((name, min))
            return await xrange(name, min, *args, **kw)

        services.redis.xrange = watched_xrange  # type: ignore[method-assign]
        try:
            await services.retention.erase([case_id])
        finally:
            services.redis.xrange = xrange  # type: ignore[method-assign]
        assert read_from_start == []
        left = str(await redis.xrange(keys.EVENTS))
        assert "Hemligt" not in left
        assert not await redis.exists(keys.case_personal_entries(case_id))
        assert other in left  # another case's entries stay


async def test_overdue_gauges_kept_as_things_happen_match_a_rebuild(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        metrics = world.services.metrics
        kept = (await world.register(arrival(external_ref="MIG-T-1")))["id"]
        cancelled = (await world.register(arrival(external_ref="MIG-T-2")))["id"]
        for case_id in (kept, cancelled):
            await world.settled(case_id)
        await world.drain()
        status, _ = await world.call("POST", f"/api/v1/arrivals/{kept}/ack", HC)
        assert status == 200
        status, _ = await world.call(
            "POST", f"/api/v1/arrivals/{cancelled}/cancel", RECEPTION, {"reason": "Avflyttade"}
        )
        assert status == 200
        await world.drain()
        world.clock.advance(timedelta(days=10))  # past every ack and booking deadline
        await metrics.refresh()
        ack = metrics.overdue.labels("acknowledgement")._value.get()
        booking = metrics.overdue.labels("booking")._value.get()
        # kept: school and preschool have not acknowledged; the health centre has not booked
        assert (ack, booking) == (2, 1)
        kept_sets = [await redis.zrange(k, 0, -1, withscores=True) for k in _SETS]
        assert all(not m.startswith(cancelled) for s in kept_sets for m, _ in s)
        await redis.delete(*_SETS, keys.DEADLINES_INDEXED)
        await metrics.refresh()  # the first scrape after an upgrade builds the sets
        assert [await redis.zrange(k, 0, -1, withscores=True) for k in _SETS] == kept_sets
        status, _ = await world.call(
            "POST",
            f"/api/v1/arrivals/{kept}/health-booking",
            HC,
            {"at": "2026-12-08T09:30", "interpreter_booked": False},
        )
        assert status == 200
        await world.drain()
        await metrics.refresh()
        assert metrics.overdue.labels("booking")._value.get() == 0


_SETS = (keys.ACK_DEADLINES, keys.BOOKING_DEADLINES)
