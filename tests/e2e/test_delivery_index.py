"""A case's index of its deliveries (issue 17: Redis per open case) is a hash whose fields are
the delivery ids without the case's prefix, each valued its delivery's record packed: a
listpack on Redis 7.0, where the set of full ids and the hash per delivery it replaces took far
more. The older layouts (a set of full ids; a hash per delivery) are still listed and read, by
the functions that list a case's deliveries (`case_delivery_ids`, `case_delivery_rows`), and
so by every reader: the repository, the case view and the erasure. Real servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.domain.delivery import NAMED_BY_ID, SHARED
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
    shorts = {i.removeprefix(f"{case_id}:") for i in made}
    assert set(await redis.hkeys(index)) == {*shorts, SHARED}
    assert await redis_py(redis).object("encoding", index) == "listpack"
    assert not await redis.exists(keys.case_deliveries(case_id))  # the older set: not added to
    assert await case_delivery_ids(redis, case_id) == sorted(made)

    # The point of it: smaller than the same ids as a set (on Redis 7.0), and by far than the
    # layout before it (every record a hash of its own, the index valued "").
    client = redis_py(redis)
    scratch = f"{keys.PREFIX}:test:as-a-set"
    await redis.sadd(scratch, *made)
    hashed = await client.memory_usage(index)
    as_set = await client.memory_usage(scratch)
    before = 0
    store = world.services.fanout.deliveries
    for n, ident in enumerate(made):
        stored = {k: v for k, v in (await store.raw(ident)).items() if k not in NAMED_BY_ID}
        await redis.hset(f"{keys.PREFIX}:test:record:{n}", mapping=stored)
        before += await client.memory_usage(f"{keys.PREFIX}:test:record:{n}") or 0
    await redis.hset(f"{keys.PREFIX}:test:ids", mapping=dict.fromkeys(shorts, ""))
    before += await client.memory_usage(f"{keys.PREFIX}:test:ids") or 0
    assert hashed is not None and as_set is not None
    if await client.object("encoding", scratch) == "hashtable":
        # Redis before 7.2 keeps no set of strings compact; 7.2 and Valkey keep a small one as a
        # listpack, smaller than the ids with their records. The layout before counts everywhere.
        assert hashed < as_set, (hashed, as_set)
    assert hashed * 3 < before, (hashed, before)


async def _to_older_layout(world: World, ident: str) -> None:
    """Store a delivery as the older layout did: a hash of its own, listed in the older set."""
    redis = world.services.redis
    case_id, short = ident.split(":", 1)
    raw = await world.services.fanout.deliveries.raw(ident)
    await redis.hset(keys.delivery(ident), mapping=raw)
    await redis_py(redis).hdel(keys.case_delivery_ids(case_id), short)
    await redis.sadd(keys.case_deliveries(case_id), ident)


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

    # Half of the deliveries as the older layout kept them: a hash each, full ids in a set.
    older = ids[::2]
    for ident in older:
        await _to_older_layout(world, ident)

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
    store = world.services.fanout.deliveries
    ids = await case_delivery_ids(redis, case_id)
    older, newer = ids[0], ids[-1]
    personal = json.dumps({"text": "Storgatan 1 | 100%", "kept": "yes"})
    for ident in (older, newer):
        await store.update(ident, params=personal)
    await _to_older_layout(world, older)
    assert (await store.raw(older))["params"] == personal

    await retention.erase([case_id])

    for ident in (older, newer):
        params = (await store.raw(ident)).get("params")
        assert params is not None and json.loads(params) == {"kept": "yes"}, ident
    assert "Storgatan" not in str(await redis.hgetall(keys.case_delivery_ids(case_id)))
    assert "Storgatan" not in str(await redis.hgetall(keys.delivery(older)))
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
