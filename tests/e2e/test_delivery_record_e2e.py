"""A delivery's record in Redis holds only what its id does not name (issue 17: Redis per open
case), and every reader still gets the case, version, organisation, channel and topic: the
repository, the case view, the dead-letter path's raw read, the tests' scan. A record written
the old way, every field in it, reads the same. Real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.domain.delivery import NAMED_BY_ID, delivery_row
from bot.domain.events import DeliveryStatus, Topic
from bot.store import keys
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
    for d in made:
        stored = await redis.hgetall(keys.delivery(d.id))
        assert not set(stored) & set(NAMED_BY_ID), stored
        assert stored.get("params") != "{}" and stored.get("attempts") != "0", stored
        assert stored["status"] == "sent" and stored["sent_at"]
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
    stored = await redis.hgetall(keys.delivery(first.id))
    whole = delivery_row(first.id, stored)
    assert set(whole) > set(stored)
    await redis.delete(keys.delivery(first.id))
    await redis.hset(keys.delivery(first.id), mapping=whole)  # as written before
    assert await store.get(first.id) == first
    assert await store.of_case(answer["id"]) == before
    assert await store.raw(first.id) == whole
    [row] = [r for r in await deliveries(redis, answer["id"]) if r["id"] == first.id]
    assert row == whole
