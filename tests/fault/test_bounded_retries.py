"""A delivery that keeps failing transiently is given up, loudly, within bounds (issue 12 item 4).

Before, a "retrying" delivery was taken again every claim period forever: never failed, never
dead-lettered, nobody told. Now it is given up after ANKOMST_DELIVERY_MAX_ATTEMPTS attempts or
ANKOMST_DELIVERY_MAX_HOURS of age (the test's clock is moved for the latter): marked failed, the
reception unit told, the outbox entry dead-lettered with its reason, an alert logged and
counted. The consumers' failure counts are cleaned once their entry is done.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.store import keys
from bot.store.streams import StreamConsumer
from tests.support.world import World, arrival, eventually, running_world

HC = "hc-lugnvik"
HC_MAIL = "hc-lugnvik@regionjh.example.se"
RECEPTION_MAIL = "mottagning@ostersund.example.se"
SETTINGS: dict[str, Any] = {
    "claim_seconds": 1,
    "send_attempts": 2,  # tries per handling
    "retry_base_seconds": 0.01,
    "retry_cap_seconds": 0.02,
}


async def rounds(world: World, count: int = 1) -> None:
    """`count` times: every consumer group takes what is pending or unread, once, and handles
    it (a delivery left retrying is tried again at once). No timers fire."""
    for _ in range(count):
        for consumer in world.services.consumers:
            await consumer.drain_once()


async def hc_email(world: World, case_id: str) -> dict[str, Any]:
    view = await world.case(case_id)
    (hc,) = [r for r in view["recipients"] if r["organisation"] == HC]
    (mail,) = [d for d in hc["deliveries"] if d["channel_kind"] == "email"]
    return dict(mail)


async def dead_letters(redis: Redis) -> list[dict[str, str]]:
    return [fields for _id, fields in await redis.xrange(keys.DEAD_LETTER)]


def given_up_count(world: World) -> float:
    value = world.services.metrics.registry.get_sample_value(
        "ankomst_deliveries_total", {"channel": "email", "outcome": "given_up"}
    )
    return value or 0.0


async def reception_told(world: World) -> bool:
    return any("Lugnvik" in str(m) and m["Message-ID"] for m in world.mails_to(RECEPTION_MAIL)[1:])


async def assert_given_up(world: World, case_id: str, reason: str) -> None:
    redis = world.services.redis
    mail = await hc_email(world, case_id)
    assert mail["status"] == "failed" and reason in mail["error"], mail
    (letter,) = await dead_letters(redis)
    assert letter["stream"] == keys.OUTBOX_EMAIL and reason in letter["error"]
    assert json.loads(letter["fields"])["delivery"].startswith(f"{case_id}:1:{HC}:email")
    assert given_up_count(world) == 1
    # Nothing of the entry is left pending, and no failure count is left behind.
    info = {i["name"]: i for i in await redis.xinfo_groups(keys.OUTBOX_EMAIL)}
    assert info[keys.SENDER_GROUP]["pending"] == 0
    assert not await redis.hlen(keys.stream_failures(keys.OUTBOX_EMAIL))


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path, delivery_max_attempts=4, **SETTINGS) as w:
        yield w


async def test_a_delivery_failing_past_the_attempt_limit_is_given_up_and_reported(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.smtp.reject_recipient(HC_MAIL, 451)  # "try again later", every time
    answer = await world.register(arrival())
    view = await world.settled(answer["id"], timeout=20)

    await assert_given_up(world, answer["id"], "not sent after 4 attempts")
    assert (await hc_email(world, answer["id"]))["attempts"] == 4
    (hc,) = [r for r in view["recipients"] if r["organisation"] == HC]
    chat = [d for d in hc["deliveries"] if d["channel_kind"] == "telegram"]
    assert chat and all(d["status"] == "sent" for d in chat)  # the organisation's other channel
    await eventually(lambda: reception_told(world), 10, "the reception unit to be told")
    alerts = [
        r for r in caplog.records if "ALERT" in r.getMessage() and "given up" in r.getMessage()
    ]
    assert len(alerts) == 1 and alerts[0].levelname == "ERROR"


@pytest.fixture
async def patient_world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(
        redis_url, tmp_path, delivery_max_attempts=1000, delivery_max_hours=0.5, **SETTINGS
    ) as w:
        yield w


async def test_a_delivery_still_failing_past_the_time_limit_is_given_up(
    patient_world: World,
) -> None:
    world = patient_world
    world.smtp.reject_recipient(HC_MAIL, 451)
    answer = await world.register(arrival())
    await rounds(world, 4)
    mail = await hc_email(world, answer["id"])
    assert mail["status"] == "retrying" and int(mail["attempts"]) >= 2
    assert not await dead_letters(world.services.redis)

    world.clock.advance(timedelta(minutes=29))
    await rounds(world, 2)
    assert (await hc_email(world, answer["id"]))["status"] == "retrying"

    world.clock.advance(timedelta(minutes=2))  # 31 minutes after it was queued
    await rounds(world, 2)
    await assert_given_up(world, answer["id"], "not sent within 0.5 h")

    async def told() -> bool:
        await rounds(world)
        return await reception_told(world)

    await eventually(told, 10, "the reception unit to be told")


async def test_a_failure_count_goes_with_its_entry_and_expires(redis: Redis) -> None:
    stream = f"{keys.PREFIX}:test:failures"
    calls: list[str] = []

    async def fails_once(entry_id: str, fields: dict[str, str]) -> bool:
        calls.append(entry_id)
        if len(calls) == 1:
            raise RuntimeError("once")
        return True

    consumer = StreamConsumer(redis, stream, "g", "c", fails_once, reclaim_after_ms=1)
    await redis.xadd(stream, {"n": "1"})
    await consumer.drain_once()
    failures = keys.stream_failures(stream)
    assert await redis.hlen(failures) == 1
    assert 0 < await redis.ttl(failures) <= keys.FAILURES_TTL
    await consumer.drain_once()  # handled this time: acknowledged, its count gone
    assert len(calls) == 2
    assert not await redis.exists(failures)
