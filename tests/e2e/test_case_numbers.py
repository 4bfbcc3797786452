"""Case references are numbered without gaps, also when registrations race (issue 11: the INCR
outside the transaction burned a number on every WATCH retry)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.world import World, arrival, running_world


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path, link_chats=False) as w:
        yield w


async def post(world: World, external_ref: str) -> tuple[int, dict[str, str]]:
    status, answer = await world.call(
        "POST", "/api/v1/arrivals", "ostersund-mottagning", arrival(external_ref=external_ref)
    )
    return status, answer


async def test_racing_replays_burn_no_case_number(world: World) -> None:
    # Eight posts of one arrival at once: one case, and its replays retry under WATCH.
    answers = await asyncio.gather(*(post(world, "MIG-RACE-1") for _ in range(8)))
    assert {a["id"] for _s, a in answers} == {answers[0][1]["id"]}
    assert answers[0][1]["reference"].endswith("-0001")
    _status, after = await post(world, "MIG-RACE-2")
    assert after["reference"].endswith("-0002")


async def test_racing_registrations_are_numbered_without_gaps(world: World) -> None:
    answers = await asyncio.gather(*(post(world, f"MIG-MANY-{n}") for n in range(6)))
    assert all(status == 201 for status, _a in answers)
    numbers = sorted(int(a["reference"].rsplit("-", 1)[1]) for _s, a in answers)
    assert numbers == [1, 2, 3, 4, 5, 6]
