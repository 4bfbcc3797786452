"""A case's index of its deliveries (issue 17: Redis per open case) is a hash whose fields are
the delivery ids without the case's prefix: a listpack on Redis 7.0, where the set of full ids
it replaces is a hashtable. The older layout's set is still listed, by the one function that
lists a case's deliveries (`case_delivery_ids`), and so by every reader: the repository, the
case view and the erasure. Real servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import keys
from bot.store.client import redis_py
from bot.store.deliveries import case_delivery_ids
from bot.usecases.views import deliveries
from tests.support.world import World, arrival, running_world


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path, retention_days=90) as w:
        yield w


async def test_new_deliveries_are_indexed_in_a_listpack_by_their_short_ids(world: World) -> None:
    answer = await world.register(arrival())
    case_id = answer["id"]
    await world.settled(case_id)
    redis = world.services.redis
    made = [d.id for d in await world.services.fanout.deliveries.of_case(case_id)]
    assert len(made) >= 4

    index = keys.case_delivery_ids(case_id)
    assert await redis.hgetall(index) == {i.removeprefix(f"{case_id}:"): "" for i in made}
    assert await redis_py(redis).object("encoding", index) == "listpack"
    assert not await redis.exists(keys.case_deliveries(case_id))  # the older set: not added to
    assert await case_delivery_ids(redis, case_id) == sorted(made)

    # The point of it: smaller than the same ids as a set.
    scratch = f"{keys.PREFIX}:test:as-a-set"
    await redis.sadd(scratch, *made)
    hashed = await redis_py(redis).memory_usage(index)
    as_set = await redis_py(redis).memory_usage(scratch)
    assert hashed is not None and as_set is not None
    assert hashed < as_set, (hashed, as_set)


async def test_an_index_in_the_older_layout_is_still_listed_by_every_reader(
    world: World,
) -> None:
    answer = await world.register(arrival())
    case_id = answer["id"]
    await world.settled(case_id)
    redis = world.services.redis
    store = world.services.fanout.deliveries
    before = await store.of_case(case_id)
    rows = await deliveries(redis, case_id)
    ids = sorted(d.id for d in before)

    # Half of the deliveries indexed as the older layout kept them: full ids in a set.
    older = ids[::2]
    await redis_py(redis).hdel(
        keys.case_delivery_ids(case_id), *(i.split(":", 1)[1] for i in older)
    )
    await redis.sadd(keys.case_deliveries(case_id), *older)

    assert await case_delivery_ids(redis, case_id) == ids
    assert await store.of_case(case_id) == before
    assert await deliveries(redis, case_id) == rows


async def test_erasure_scrubs_deliveries_indexed_in_either_layout(world: World) -> None:
    answer = await world.register(arrival())
    case_id = answer["id"]
    await world.settled(case_id)
    redis = world.services.redis
    retention = world.services.retention
    assert retention is not None
    ids = await case_delivery_ids(redis, case_id)
    older, newer = ids[0], ids[-1]
    await redis_py(redis).hdel(keys.case_delivery_ids(case_id), older.split(":", 1)[1])
    await redis.sadd(keys.case_deliveries(case_id), older)
    personal = json.dumps({"text": "Storgatan 1", "kept": "yes"})
    for ident in (older, newer):
        await redis.hset(keys.delivery(ident), "params", personal)

    await retention.erase([case_id])

    for ident in (older, newer):
        params = await redis.hget(keys.delivery(ident), "params")
        assert params is not None and json.loads(params) == {"kept": "yes"}, ident
    # The index stays (an erased case still shows who was told what, when), in both layouts.
    assert await case_delivery_ids(redis, case_id) == ids


async def test_a_delivery_not_of_its_case_is_refused_before_anything_is_written(
    world: World,
) -> None:
    store = world.services.fanout.deliveries
    redis = world.services.redis
    fields = {"status": "queued", "params": "{}"}
    with pytest.raises(ValueError, match="not of case"):
        await store.create("other:1:org:email:notice", "c1", keys.OUTBOX_EMAIL, fields)
    with pytest.raises(ValueError, match="not of case"):
        await store.create_many(
            "c1",
            [
                ("c1:1:org:email:notice", keys.OUTBOX_EMAIL, fields),
                ("c10:1:org:email:notice", keys.OUTBOX_EMAIL, fields),
            ],
        )
    assert await case_delivery_ids(redis, "c1") == []
    assert not await redis.exists(keys.delivery("c1:1:org:email:notice"))
