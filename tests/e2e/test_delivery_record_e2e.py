"""A delivery's record in Redis holds only what its id does not name (issue 17: Redis per open
case), packed as the value of its field in its case's delivery index (a listpack), and every
reader still gets the case, version, organisation, channel and topic: the repository, the case
view, the dead-letter path's raw read, the tests' scan. A record written the old ways (a hash
of its own, every field in it, listed with "" or in the older set) reads the same, and is
claimed, marked and finished the same. Real servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.domain.delivery import COPY_PARAMS, NAMED_BY_ID, SHARED, delivery_row, unpack
from bot.domain.events import DeliveryStatus, Topic
from bot.pipeline.rendering import thread_ids
from bot.runtime.services import from_domain
from bot.store import Redis, keys
from bot.store.client import redis_py
from bot.store.deliveries import DeliveryStore, case_delivery_ids
from bot.usecases.views import deliveries
from tests.support.process import all_deliveries
from tests.support.world import World, arrival, running_world


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        yield w


async def test_records_hold_only_what_the_id_does_not_name_and_read_whole(world: World) -> None:
    answer = await world.register(arrival())
    view = await world.settled(answer["id"])
    redis = world.services.redis
    store = world.services.fanout.deliveries
    made = await store.of_case(answer["id"])
    assert len(made) >= 4 and all(d.status is DeliveryStatus.SENT for d in made)
    index_key = keys.case_delivery_ids(answer["id"])
    index = await redis.hgetall(index_key)
    assert index[SHARED] == from_domain(world.services.settings)  # the senders', once
    for d in made:
        packed = index[d.id.removeprefix(f"{d.case}:")]
        # Short: a sent delivery's record keeps its case's index a listpack.
        assert len(packed.encode()) <= 64, packed
        # The fan-out's params of a reception unit's copy are packed as one mark.
        assert ("|p*|" in packed) == d.is_copy, packed
        assert not await redis.exists(keys.delivery(d.id))
        stored = unpack(d.id, packed, index[SHARED])
        assert not set(stored) & set(NAMED_BY_ID), stored
        assert stored.get("params") != "{}" and stored.get("attempts") != "0", stored
        assert stored["status"] == "sent" and stored["sent_at"]
        # Times are stored as numbers and read back as the ISO text they were written as.
        assert "T" not in packed and d.sent_at is not None
        assert stored["sent_at"] == d.sent_at.isoformat()
        if d.channel == "email":
            assert "<" not in packed  # the Message-ID is told from the id and the domain
            assert stored["message_id"] == thread_ids(d, index[SHARED])[0]
        assert d.case == answer["id"] and d.version == 1
        assert d.id.startswith(f"{d.case}:1:{d.org}:{d.channel}:{d.topic}")
        assert await store.get(d.id) == d
        raw = await store.raw(d.id)
        assert {k: raw[k] for k in ("case", "version", "org", "channel")} == {
            "case": d.case,
            "version": "1",
            "org": d.org,
            "channel": d.channel,
        }
    assert await redis_py(redis).object("encoding", index_key) == "listpack"
    rows = await deliveries(redis, answer["id"])
    assert [(r["id"], r["org"], r["channel"], r["topic"]) for r in rows] == [
        (d.id, d.org, d.channel, str(d.topic)) for d in made
    ]
    everything = await all_deliveries(redis)
    assert {everything[d.id]["case"] for d in made} == {answer["id"]}
    assert view["status"] == "notified"


async def test_a_record_written_the_old_way_reads_the_same(world: World) -> None:
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    redis = world.services.redis
    store = world.services.fanout.deliveries
    before = await store.of_case(answer["id"])
    [first, *_] = [d for d in before if d.topic.kind is Topic.NOTICE]
    rows = await deliveries(redis, answer["id"])
    whole = delivery_row(first.id, await store.raw(first.id))
    # As written before: a hash of its own with every field, listed with "".
    await redis.hset(keys.delivery(first.id), mapping=whole)
    await redis.hset(keys.case_delivery_ids(first.case), first.id.split(":", 1)[1], "")
    assert await store.get(first.id) == first
    assert await store.of_case(answer["id"]) == before
    assert await store.raw(first.id) == whole
    assert await deliveries(redis, answer["id"]) == rows


def _record(ident: str, **fields: str) -> dict[str, str]:
    return {"status": "queued", "queued_at": "2026-11-25T08:00:00.000001+00:00", **fields}


async def test_a_copy_sent_an_hour_late_with_a_long_message_id_keeps_the_index_a_listpack(
    redis: Redis,
) -> None:
    """A reception unit's copy to a Telegram chat, sent an hour after it was queued, with a
    10-digit message id (a busy group's): its record is within the 64 bytes that keep its case's
    index a listpack on Redis 7.0. With its params in full it took 75."""
    store = DeliveryStore(redis)
    case = "4c3c14a9dcaeda04"
    ident = f"{case}:1:ostersund-mottagning:tg:-1001234567890:notice"
    fields = _record(ident, params=json.dumps(dict(COPY_PARAMS)))
    assert await store.create(ident, case, keys.OUTBOX_TELEGRAM, fields)
    await store.update(ident, status="sending", sending_at="2026-11-25T09:00:00.123456+00:00")
    sent = {
        "status": "sent",
        "sent_at": "2026-11-25T09:00:01.234567+00:00",
        "attempts": "1",
        "message_id": "1234567890",
    }
    await store.finish(ident, sent, token="")
    packed = await redis.hget(keys.case_delivery_ids(case), ident.split(":", 1)[1]) or ""
    assert len(packed.encode()) <= 64, packed
    assert await redis_py(redis).object("encoding", keys.case_delivery_ids(case)) == "listpack"
    d = await store.get(ident)
    assert d is not None and d.is_copy and d.params == dict(COPY_PARAMS)
    assert await store.raw(ident) == delivery_row(
        ident, {**fields, "sending_at": "2026-11-25T09:00:00.123456+00:00", **sent}
    )


@pytest.mark.parametrize("layout", ["packed", "hash", "set"])
async def test_a_record_in_any_layout_is_made_once_claimed_marked_and_finished(
    redis: Redis, layout: str
) -> None:
    """The store's every step on a record packed in its case's index, and on one of the older
    layouts: a hash of its own listed in the index with "", or in the older set."""
    store = DeliveryStore(redis)
    case = "4c3c14a9dcaeda04"
    ident = f"{case}:1:ostersund-skola:email:notice"
    short = ident.split(":", 1)[1]
    fields = _record(ident, params='{"copy": true}')
    if layout == "packed":
        assert await store.create(ident, case, keys.OUTBOX_EMAIL, fields)
    else:
        await redis.hset(keys.delivery(ident), mapping=delivery_row(ident, fields))
        if layout == "hash":
            await redis.hset(keys.case_delivery_ids(case), short, "")
        else:
            await redis.sadd(keys.case_deliveries(case), ident)
    assert not await store.create(ident, case, keys.OUTBOX_EMAIL, _record(ident))
    assert await case_delivery_ids(redis, case) == [ident]

    claimed, d, _ = await store.claim(ident, "t1", 60_000, None)
    assert claimed and d is not None and d.status is DeliveryStatus.QUEUED and d.is_copy
    again, _, _ = await store.claim(ident, "t2", 60_000, None)
    assert not again
    await store.update(ident, status="sending", sending_at="2026-11-25T08:00:01.5+00:00")
    assert (await store.raw(ident))["status"] == "sending"
    assert await store.add_relay_attempts(ident, 2) == 2
    assert await store.add_relay_attempts(ident, 1) == 3
    error = "+550 5.1.1 <mottagning@ostersund.example.se>: no such user | 100% sure"
    await store.finish(
        ident,
        {
            "status": "failed",
            "failed_at": "2026-11-25T09:00:00+01:00",  # not UTC: kept as it was written
            "attempts": "3",
            "error": error,
        },
        {"type": "delivery.failed", "delivery": ident},
        token="t1",
        dead_letter={"stream": keys.OUTBOX_EMAIL, "entry": "1-0", "error": "x", "fields": "{}"},
    )
    row = await store.raw(ident)
    assert row == delivery_row(
        ident,
        {
            **fields,
            "status": "failed",
            "sending_at": "2026-11-25T08:00:01.5+00:00",
            "relay_attempts": "3",
            "failed_at": "2026-11-25T09:00:00+01:00",
            "attempts": "3",
            "error": error,
        },
    )
    d = await store.get(ident)
    assert d is not None and d.status is DeliveryStatus.FAILED and d.error == error
    assert [f["delivery"] for _, f in await redis.xrange(keys.EVENTS)] == [ident]
    assert len(await redis.xrange(keys.DEAD_LETTER)) == 1
    assert not await redis.exists(keys.delivery_claim(ident))  # given back
    assert await store.of_case(case) == [d]
    assert await redis.exists(keys.delivery(ident)) == (layout != "packed")
    if layout == "packed":  # an error this long is a longer value: still read whole
        assert "no such user" in (await redis.hget(keys.case_delivery_ids(case), short) or "")
    # Nothing is written for a delivery that was never made.
    other = f"{case}:1:ostersund-skola:email:clearance"
    await store.finish(other, {"status": "sent"}, token="")
    await store.update(other, status="sending")
    assert await store.get(other) is None
    assert await case_delivery_ids(redis, case) == [ident]
