"""The mail server goes away, stutters, hangs up, or refuses one address."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.channels.email import EmailSender
from tests.support.world import World, arrival, eventually, running_world

RECEPTION = "ostersund-mottagning"
HC = "hc-lugnvik"
HC_MAIL = "hc-lugnvik@regionjh.example.se"


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(
        redis_url,
        tmp_path,
        claim_seconds=2,
        send_attempts=3,
        retry_base_seconds=0.05,
        retry_cap_seconds=0.2,
    ) as w:
        yield w


def rows(view: dict[str, object]) -> list[dict[str, object]]:
    parties = [view["reception_unit"], *view["recipients"]]  # type: ignore[list-item]
    return [d for p in parties for d in p["deliveries"]]  # type: ignore[index]


def each_mail_once(world: World) -> None:
    counts = Counter(str(m["Message-ID"]) for m in world.smtp.messages)
    assert counts and max(counts.values()) == 1, counts


async def test_refused_connections_are_retried_and_delivered_when_the_server_is_back(
    world: World,
) -> None:
    world.smtp.refuse_connections()
    answer = await world.register(arrival())
    view: dict[str, object] = {}

    async def retrying() -> bool:
        nonlocal view
        view = await world.case(answer["id"])
        mails = [d for d in rows(view) if d["channel_kind"] == "email"]
        return bool(mails) and all(
            d["status"] == "retrying" and int(d["attempts"]) >= 3 and d["error"]  # type: ignore[call-overload]
            for d in mails
        )

    await eventually(retrying, 15, "e-mail deliveries to show their failed attempts")

    async def chats_sent() -> bool:
        view = await world.case(answer["id"])
        return all(d["status"] == "sent" for d in rows(view) if d["channel_kind"] == "telegram")

    # Chat is not held back by the mail server being away.
    await eventually(chats_sent, 10, "chat messages while the mail server is away")
    assert world.smtp.messages == []
    back = time.monotonic()
    await world.smtp.accept_connections()
    view = await world.settled(answer["id"], timeout=20)
    print(f"mail delivered {time.monotonic() - back:.1f} s after the server came back")
    mails = [d for d in rows(view) if d["channel_kind"] == "email"]
    assert all(d["status"] == "sent" and int(d["attempts"]) > 3 for d in mails)  # type: ignore[call-overload]
    each_mail_once(world)
    assert len(world.smtp.messages) == len(mails)


async def test_421_and_4xx_answers_are_retried_and_each_mail_arrives_once(world: World) -> None:
    world.smtp.fail_next("MAIL", 421, times=2)
    world.smtp.fail_next("RCPT", 451, times=2, text="4.7.1 Try again later")
    answer = await world.register(arrival())
    view = await world.settled(answer["id"], timeout=20)
    assert all(d["status"] == "sent" for d in rows(view))
    assert sum(int(d["attempts"]) for d in rows(view) if d["channel_kind"] == "email") > 4  # type: ignore[call-overload]
    each_mail_once(world)


async def test_a_dropped_idle_connection_is_reopened_and_nothing_arrives_twice(
    world: World,
) -> None:
    first = await world.register(arrival())
    await world.settled(first["id"])
    world.smtp.drop_connections()
    second = await world.register(arrival(external_ref="MIG-2026-222222"))
    view = await world.settled(second["id"])
    assert all(d["status"] == "sent" for d in rows(view))
    each_mail_once(world)
    assert world.smtp.connections_opened >= 2


async def test_a_5xx_for_one_address_fails_only_that_delivery_and_the_reception_unit_is_told(
    world: World,
) -> None:
    world.smtp.reject_recipient(HC_MAIL, 550)
    answer = await world.register(arrival())
    view = await world.settled(answer["id"])
    hc = next(r for r in view["recipients"] if r["organisation"] == HC)
    kinds = {d["channel_kind"]: d for d in hc["deliveries"]}
    assert kinds["email"]["status"] == "failed" and "rejected" in kinds["email"]["error"]
    assert kinds["email"]["attempts"] == 1  # a permanent answer is not retried
    assert kinds["telegram"]["status"] == "sent"  # the organisation's other channel
    others = [d for r in view["recipients"] if r["organisation"] != HC for d in r["deliveries"]]
    assert all(d["status"] == "sent" for d in others)
    told = [m for m in world.mails_to("mottagning@ostersund.example.se") if "Lugnvik" in str(m)]
    assert told, "the reception unit is told of the failed delivery"


def test_backoff_is_capped_exponential_with_full_jitter() -> None:
    sender = EmailSender(
        host="127.0.0.1", port=25, from_addr="a@example.se", base_delay=1.0, max_delay=8.0
    )
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)):
        delays = [sender._backoff(failures) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2 and min(delays) < ceiling / 2  # spread, not fixed
