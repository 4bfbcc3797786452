"""A case's hash keeps only short values (issue 17: Redis per open case), so Redis 7.0 keeps it
as a listpack: the current facts are the current version's snapshot's (read with the hash in
one round trip, bot/store/cases.py `read_case`) and the recipients are comma-joined. A case
stored before (its facts in its hash as JSON, its recipients a JSON list) is still read by every
reader: the store, the deadline scripts, the metrics, the change, the report and the erasure.
Real servers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path

import pytest

from bot.domain.actor import Actor
from bot.domain.arrival import ArrivalPatch
from bot.domain.case import Case, parse_recipients, recipients_text
from bot.store import keys
from bot.store.cases import CaseStore
from bot.store.client import redis_py
from bot.usecases.report import case_statistics
from tests.support.world import World, arrival, running_world

UNIT = Actor(org_id="ostersund-mottagning")


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path, retention_days=90) as w:
        yield w


def test_recipients_are_comma_joined_and_a_json_list_is_still_read() -> None:
    orgs = ("hc-ostersund", "ostersund-forskola", "ostersund-skola")
    assert recipients_text(orgs) == "hc-ostersund,ostersund-forskola,ostersund-skola"
    assert parse_recipients(recipients_text(orgs)) == orgs
    assert parse_recipients(json.dumps(list(orgs))) == orgs
    assert parse_recipients("") == parse_recipients(None) == ()
    with pytest.raises(ValueError, match="not an organisation id"):
        recipients_text(("a,b",))


async def older_layout(world: World, case_id: str) -> None:
    """Store the case's hash as before: the facts in it as JSON, the recipients a JSON list."""
    redis = world.services.redis
    case = await world.services.cases.store.get(case_id)
    await redis.hset(
        keys.case(case_id),
        mapping={
            "facts": json.dumps(case.facts, ensure_ascii=False),
            "recipients": json.dumps(list(case.recipients)),
        },
    )


async def test_a_new_case_hash_is_a_listpack_without_the_facts(world: World) -> None:
    answer = await world.register(arrival(external_ref="MIG-2026-654321"))
    case_id = answer["id"]
    view = await world.settled(case_id)
    orgs = tuple(r["organisation"] for r in view["recipients"])
    assert len(orgs) == 3
    redis = world.services.redis
    data = await redis.hgetall(keys.case(case_id))
    assert "facts" not in data
    assert data["recipients"] == ",".join(orgs)
    assert max(len(v.encode()) for v in data.values()) <= 64, data
    assert await redis_py(redis).object("encoding", keys.case(case_id)) == "listpack"

    store = world.services.cases.store
    case = await store.get(case_id)
    assert case.facts == (await store.version(case_id, 1)).facts
    assert case.facts["details"] == arrival()["details"]
    assert case.recipients == orgs

    changed = await world.services.cases.change(
        case_id, ArrivalPatch(arrival_date=date(2026, 11, 30)), UNIT
    )
    assert changed.version == 2
    read, version = await store.with_version(case_id, 1)
    assert read == changed and read.facts["arrival_date"] == "2026-11-30"
    assert version is not None and version.facts["arrival_date"] == "2026-11-27"
    assert await redis_py(redis).object("encoding", keys.case(case_id)) == "listpack"

    # The deliverer's claim reads the hash and the delivery's version: the facts are the
    # current version's when that is the one read, else not known (left empty).
    stored = await redis.hgetall(keys.case(case_id))
    v1 = await redis.hget(keys.case_versions(case_id), "1")
    v2 = await redis.hget(keys.case_versions(case_id), "2")
    assert CaseStore.parse_with_version(case_id, stored, v2)[0] == changed
    older, said = CaseStore.parse_with_version(case_id, stored, v1)
    assert older.facts == {} and said is not None and said.number == 1


async def test_a_case_stored_before_is_read_by_every_reader(world: World) -> None:
    answer = await world.register(arrival(external_ref="MIG-2026-777777"))
    case_id = answer["id"]
    redis = world.services.redis
    store = world.services.cases.store
    registered = await store.get(case_id)
    await older_layout(world, case_id)  # before the deliveries reach anyone
    assert await store.get(case_id) == registered
    assert await store.with_version(case_id, 1) == (registered, await store.version(case_id, 1))

    # deadline_reached.lua found every recipient in the JSON list: each reach is recorded.
    await world.settled(case_id)
    reached = await redis.hgetall(keys.case_reached(case_id))
    assert {f"1:{o}" for o in registered.recipients} <= set(reached)
    # deadline_index.lua (the metrics' open deadlines) reads the JSON list too.
    await world.services.metrics.keep_deadlines(case_id)
    members = set(await redis.zrange(keys.ACK_DEADLINES, 0, -1))
    assert {keys.deadline_member(case_id, o) for o in registered.recipients} <= members
    record = await case_statistics(
        redis, world.services.directory, world.services.calendar, case_id
    )
    assert record is not None and record["arrival_date"] == "2026-11-27"
    assert {p["org"] for p in record["parties"]} == set(registered.parties())

    # A new version moves it to the new layout: the facts leave the hash.
    changed = await world.services.cases.change(
        case_id, ArrivalPatch(arrival_date=date(2026, 11, 30)), UNIT
    )
    data = await redis.hgetall(keys.case(case_id))
    assert "facts" not in data
    assert parse_recipients(data["recipients"]) == registered.recipients
    assert not data["recipients"].startswith("[")
    assert await store.get(case_id) == changed
    assert changed.facts == {**registered.facts, "arrival_date": "2026-11-30"}


async def test_erasure_scrubs_the_facts_held_in_either_layout(world: World) -> None:
    redis = world.services.redis
    retention = world.services.retention
    ids = []
    for n, older in enumerate((False, True)):
        answer = await world.register(arrival(external_ref=f"MIG-2026-88888{n}"))
        ids.append(answer["id"])
        if older:
            await older_layout(world, answer["id"])
        await world.settled(answer["id"])
    await retention.erase(ids)
    for case_id in ids:
        data = await redis.hgetall(keys.case(case_id))
        versions = await redis.hgetall(keys.case_versions(case_id))
        texts = [data.get("facts", ""), *versions.values()]
        assert not any("Storgatan" in t or "A.K." in t for t in texts), texts
        case = await world.services.cases.store.get(case_id)
        assert isinstance(case, Case) and case.facts["arrival_date"] == "2026-11-27"
        assert datetime.fromisoformat(data["erased_at"])
