"""Arrivals from other systems through the Redis stream `ankomst:intake`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.world import World, arrival, running_world


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path, link_chats=False) as w:
        yield w


async def intake(world: World, body: object, organisation: str = "ostersund-mottagning") -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    entry: str = await world.services.redis.xadd(
        "ankomst:intake", {"organisation": organisation, "arrival": text}
    )
    return entry


async def rejected(world: World) -> list[dict[str, str]]:
    return [fields for _id, fields in await world.services.redis.xrange("ankomst:intake:rejected")]


async def test_an_arrival_on_the_intake_stream_is_registered_and_fanned_out(world: World) -> None:
    await intake(world, arrival(external_ref="SYS-1"))
    await intake(world, arrival(external_ref="SYS-1"))  # delivered twice by the other system
    await world.drain()
    case_id = await world.services.redis.get("ankomst:extref:SYS-1")
    assert case_id, "the intake entry was not registered"
    view = await world.settled(case_id)
    assert view["history"][0]["via"] == "intake"
    assert len(world.mails_to("hc-lugnvik@regionjh.example.se")) == 1
    assert await world.services.redis.scard("ankomst:cases:all") == 1


@pytest.mark.parametrize(
    ("body", "organisation", "field"),
    [
        ("{not json", "ostersund-mottagning", "arrival"),
        (arrival(children=[{"age": 18}]), "ostersund-mottagning", "children[0].age"),
        (arrival(), "nobody", "organisation"),
        (arrival(), "berg-mottagning", "arrival"),
    ],
)
async def test_a_bad_entry_is_moved_aside_with_its_reason(
    world: World, body: object, organisation: str, field: str
) -> None:
    entry = await intake(world, body, organisation)
    await world.drain()
    [moved_entry] = await rejected(world)
    assert moved_entry["entry"] == entry
    assert moved_entry["arrival"] == (body if isinstance(body, str) else json.dumps(body))
    assert any(e["field"] == field for e in json.loads(moved_entry["reason"]))
    pending = await world.services.redis.xpending("ankomst:intake", "intake")
    assert pending["pending"] == 0
    assert await world.services.redis.scard("ankomst:cases:all") == 0
