"""A registration is one round trip (issue 17): case_register.lua checks the external ref, takes
the municipality's next number and writes the case, its version, sets, reference, history and
event at once, so concurrent registrations in one municipality never retry. Counted where
redis-py writes to the socket (one write is one command or one pipeline), on a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bot.domain.actor import Actor
from bot.domain.arrival import ArrivalIn
from bot.domain.clock import ManualClock
from bot.runtime.directory_file import load_directory
from bot.store import Redis, keys
from bot.store.client import redis_py
from bot.store.scripts import source
from bot.usecases.cases import CaseService, Conflict
from tests.support.round_trips import counting_client, writes
from tests.support.world import EXAMPLE_DIRECTORY, arrival

ZONE = ZoneInfo("Europe/Stockholm")
# 23:30 UTC on New Year's Eve is already 2027 in Stockholm: references follow the local year.
NOW = datetime.fromisoformat("2026-12-31T23:30:00+00:00")


@pytest.fixture
async def counted(redis_url: str, redis: object) -> AsyncIterator[Redis]:
    """A client on the test database whose round trips `writes()` counts, with the script
    already loaded (loading it is once per server, not per registration)."""
    client = counting_client(redis_url)
    await client.script_load(source("case_register"))
    try:
        yield client
    finally:
        await client.aclose()


def service(redis: Redis) -> CaseService:
    return CaseService(redis, load_directory(EXAMPLE_DIRECTORY), ManualClock(NOW), ZONE)


def reception(municipality: str) -> Actor:
    return Actor(f"{municipality}-mottagning", who="t1")


async def test_a_registration_is_one_round_trip_and_writes_everything(counted: Redis) -> None:
    cases = service(counted)
    before = writes()
    case, created = await cases.register(ArrivalIn(**arrival()), reception("ostersund"))
    assert writes() - before == 1
    assert created
    assert case.reference == "OSD-2027-0001"

    stored = await cases.store.get(case.id)
    assert stored == case
    assert await counted.hget(keys.case(case.id), "reference") == "OSD-2027-0001"
    assert await counted.get(keys.case_by_reference("OSD-2027-0001")) == case.id
    assert await counted.get(keys.external_ref("MIG-2026-123456")) == case.id
    assert await counted.get(keys.reference_sequence("OSD", 2027)) == "1"
    assert (await cases.store.version(case.id, 1)).facts == case.facts
    assert await cases.store.history(case.id) == [
        {
            "at": NOW.isoformat(),
            "what": "registered",
            "by": "ostersund-mottagning",
            "via": "api",
            "who": "t1",
            "version": 1,
            "reference": "OSD-2027-0001",
        }
    ]
    [(_id, event)] = await counted.xrange(keys.EVENTS)
    assert event == {
        "type": "case.registered",
        "case": case.id,
        "version": "1",
        "at": NOW.isoformat(),
        "by": "ostersund-mottagning",
        "via": "api",
    }
    for key in (keys.ALL_CASES, keys.OPEN_CASES):
        assert await counted.smembers(key) == {case.id}
    listed = [keys.municipality_case_ids("ostersund")]
    listed += [keys.organisation_case_ids(org_id) for org_id in case.parties()]
    for key in listed:
        assert await counted.zrange(key, 0, -1, withscores=True) == [(case.id, NOW.timestamp())]
    assert case.recipients  # the parties above are more than the reception unit
    # Nothing is added to the older layout's sets.
    assert not await counted.exists(
        keys.municipality_cases("ostersund"),
        *(keys.organisation_cases(org_id) for org_id in case.parties()),
    )


async def test_a_replay_returns_the_case_and_other_content_is_a_conflict(
    counted: Redis,
) -> None:
    cases = service(counted)
    first, _ = await cases.register(ArrivalIn(**arrival()), reception("ostersund"))
    keys_before = sorted(await redis_py(counted).keys("*"))

    again, created = await cases.register(ArrivalIn(**arrival()), reception("ostersund"))
    assert (again, created) == (first, False)
    with pytest.raises(Conflict, match="OSD-2027-0001"):
        await cases.register(ArrivalIn(**arrival(details="Annat.")), reception("ostersund"))

    # Neither wrote anything: no number taken, no second event.
    assert sorted(await redis_py(counted).keys("*")) == keys_before
    assert await counted.get(keys.reference_sequence("OSD", 2027)) == "1"
    assert await redis_py(counted).xlen(keys.EVENTS) == 1
    after, _ = await cases.register(
        ArrivalIn(**arrival(external_ref="MIG-2")), reception("ostersund")
    )
    assert after.reference == "OSD-2027-0002"


async def test_concurrent_registrations_go_in_one_round_trip_and_no_number_is_lost(
    counted: Redis,
) -> None:
    # As the benchmark posts them: 32 at once over 8 municipalities, which used to conflict on
    # each municipality's sequence and retry under WATCH. Asked in the same turn of the loop,
    # they go together (`Coalescer`: one Lua call runs each registration in turn, whole).
    cases = service(counted)
    municipalities = list(cases.directory.municipalities)
    assert len(municipalities) == 8

    async def register(n: int) -> tuple[str, str]:
        m = municipalities[n % 8]
        body = arrival(external_ref=f"MIG-RACE-{n}", municipality=m)
        case, created = await cases.register(ArrivalIn(**body), reception(m))
        assert created
        return m, case.reference

    # 32 connections opened first: a connection's handshake is not the registration's.
    await asyncio.gather(*(counted.ping() for _ in range(32)))
    before = writes()
    answers = await asyncio.gather(*(register(n) for n in range(32)))
    assert writes() - before == 1
    for m in municipalities:
        code = cases.directory.municipalities[m].code
        assert sorted(ref for mm, ref in answers if mm == m) == [
            f"{code}-2027-{n:04d}" for n in range(1, 5)
        ]
        for ref in (ref for mm, ref in answers if mm == m):
            case = await cases.store.by_reference(ref)
            assert case.reference == ref and case.municipality == m
            assert (
                json.loads((await counted.lrange(keys.case_history(case.id), 0, 0))[0])["reference"]
                == ref
            )


async def test_the_listings_read_the_sorted_sets_and_the_older_layouts_sets(
    counted: Redis,
) -> None:
    # A case registered by an earlier version is listed in the sets of the older layout; one
    # registered now in the sorted sets. A listing by municipality or organisation shows both,
    # and only what every filter lists and is open when only open cases are asked for.
    cases = service(counted)
    older, _ = await cases.register(ArrivalIn(**arrival()), reception("ostersund"))
    moved = [(keys.municipality_case_ids("ostersund"), keys.municipality_cases("ostersund"))]
    moved += [(keys.organisation_case_ids(o), keys.organisation_cases(o)) for o in older.parties()]
    for new, old in moved:
        await counted.sadd(old, older.id)
        await counted.delete(new)
    newer, _ = await cases.register(
        ArrivalIn(**arrival(external_ref="MIG-2")), reception("ostersund")
    )
    elsewhere, _ = await cases.register(
        ArrivalIn(**arrival(external_ref="MIG-3", municipality="krokom")), reception("krokom")
    )
    [health] = [o for o in older.parties() if o.startswith("hc-")]
    assert health in newer.parties() and health not in elsewhere.parties()
    [krokom_health] = [o for o in elsewhere.parties() if o.startswith("hc-")]
    ids = cases.store.ids

    assert await ids(open_only=False, municipality=None, org=None) == sorted(
        [older.id, newer.id, elsewhere.id]
    )
    assert await ids(open_only=False, municipality="ostersund", org=None) == sorted(
        [older.id, newer.id]
    )
    assert await ids(open_only=False, municipality=None, org=health) == sorted([older.id, newer.id])
    assert await ids(open_only=False, municipality="ostersund", org=health) == sorted(
        [older.id, newer.id]
    )
    assert await ids(open_only=False, municipality="krokom", org=health) == []
    assert await ids(open_only=False, municipality="krokom", org=krokom_health) == [elsewhere.id]
    await counted.srem(keys.OPEN_CASES, older.id)
    assert await ids(open_only=True, municipality="ostersund", org=health) == [newer.id]
    assert await ids(open_only=False, municipality="ostersund", org=health) == sorted(
        [older.id, newer.id]
    )
