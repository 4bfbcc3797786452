"""An entry that fails every time goes to the dead-letter stream and holds no one else up."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.pipeline.fanout import EMAIL, Planned
from bot.store import keys
from tests.support.world import World, arrival, eventually, running_world


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    # Claim time 1 s: a failed entry is taken again after 1 s, five times, then given up.
    async with running_world(redis_url, tmp_path, claim_seconds=1) as w:
        yield w


async def dead_letters(redis: Redis) -> list[dict[str, str]]:
    return [fields for _id, fields in await redis.xrange(keys.DEAD_LETTER)]


async def test_a_poison_event_is_dead_lettered_with_its_error_and_the_others_go_on(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    redis = world.services.redis
    await redis.xadd(
        keys.EVENTS,
        {
            "type": "notice",
            "case": "no-such-case",
            "topic": "same_day_alert",
            "orgs": "{not json",
            "version": "1",
        },
    )
    answer = await world.register(arrival())
    view = await world.settled(answer["id"])
    assert all(d["status"] == "sent" for p in view["recipients"] for d in p["deliveries"])

    async def given_up() -> bool:
        return any(d["stream"] == keys.EVENTS for d in await dead_letters(redis))

    await eventually(given_up, 20, "the poison event to be dead-lettered")
    (letter,) = [d for d in await dead_letters(redis) if d["stream"] == keys.EVENTS]
    assert "JSONDecodeError" in letter["error"]
    assert json.loads(letter["fields"])["case"] == "no-such-case"
    assert any("dead-letter" in r.getMessage() for r in caplog.records)  # the alert, in the log
    await world.drain()  # nothing left pending: the poison entry is acknowledged


async def test_a_delivery_that_always_fails_is_given_up_marked_failed_and_reception_is_told(
    world: World,
) -> None:
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    redis = world.services.redis
    # A delivery whose message cannot be rendered: its handler raises every time.
    await world.services.fanout.create(
        answer["id"], 1, [Planned("ostersund-skola", EMAIL, "no_such_topic", {})]
    )
    ident = f"{answer['id']}:1:ostersund-skola:{EMAIL}:no_such_topic"
    store = world.services.fanout.deliveries

    async def failed() -> bool:
        return (await store.raw(ident)).get("status") == "failed"

    await eventually(failed, 20, "the poison delivery to be given up")
    (letter,) = await dead_letters(redis)
    assert letter["stream"] == keys.OUTBOX_EMAIL and "no_such_topic" in letter["error"]
    assert "no_such_topic" in (await store.raw(ident)).get("error", "")

    async def told() -> bool:
        return any(
            "Skolan" in str(m) or "skola" in str(m["Subject"]).lower()
            for m in world.mails_to("mottagning@ostersund.example.se")[1:]
        )

    await eventually(told, 10, "the reception unit to be told")
    view = await world.settled(answer["id"])
    assert view["status"]
