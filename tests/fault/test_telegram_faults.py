"""The Bot API server throttles, errs, blocks, forgets chats and migrates groups."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.world import CHATS, World, arrival, running_world

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
RECEPTION = "ostersund-mottagning"


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path, claim_seconds=2) as w:
        yield w


def party(view: dict[str, object], org: str) -> dict[str, dict[str, object]]:
    parties = [view["reception_unit"], *view["recipients"]]  # type: ignore[list-item]
    found = next(p for p in parties if p["organisation"] == org)  # type: ignore[index]
    return {d["channel_kind"]: d for d in found["deliveries"]}  # type: ignore[index]


def notices(world: World, chat: int, reference: str) -> list[object]:
    return [c for c in world.telegram.sent_to(chat) if reference in (c.text or "")]


async def test_retry_after_is_honoured_for_that_chat_while_other_chats_go_on(
    world: World,
) -> None:
    world.telegram.throttle_next(retry_after=3, chat_id=CHATS[HC])
    answer = await world.register(arrival())
    view = await world.settled(answer["id"], timeout=20)
    reference = answer["reference"]
    throttled = next(c for c in world.telegram.calls_to("sendMessage") if c.status == 429)
    hc = notices(world, CHATS[HC], reference)
    assert len(hc) == 1
    assert hc[0].at - throttled.at >= 3.0 - 0.05  # type: ignore[attr-defined]
    # The other chats were not held back by one chat's 429.
    for org in (SCHOOL, RECEPTION):
        (other,) = notices(world, CHATS[org], reference)
        assert other.at < throttled.at + 1.0  # type: ignore[attr-defined]
    assert party(view, HC)["telegram"]["status"] == "sent"
    assert party(view, HC)["telegram"]["attempts"] == 2


async def test_server_errors_are_retried_and_the_message_arrives_once(world: World) -> None:
    world.telegram.fail_next("sendMessage", times=2, status=502, chat_id=CHATS[SCHOOL])
    world.telegram.fail_next("sendMessage", times=1, status=500, chat_id=CHATS[HC])
    answer = await world.register(arrival())
    view = await world.settled(answer["id"], timeout=20)
    for org in (SCHOOL, HC):
        assert len(notices(world, CHATS[org], answer["reference"])) == 1
        assert party(view, org)["telegram"]["status"] == "sent"
    assert party(view, SCHOOL)["telegram"]["attempts"] == 3


@pytest.mark.parametrize("fault", ["block_chat", "forget_chat"])
async def test_a_blocked_or_unknown_chat_fails_for_good_but_the_mail_goes_and_reception_is_told(
    world: World, fault: str
) -> None:
    getattr(world.telegram, fault)(CHATS[HC])
    answer = await world.register(arrival())
    view = await world.settled(answer["id"])
    hc = party(view, HC)
    assert hc["telegram"]["status"] == "failed" and hc["telegram"]["error"]
    assert hc["telegram"]["attempts"] == 1  # permanent: not retried
    assert hc["email"]["status"] == "sent"
    assert len(world.mails_to("hc-lugnvik@regionjh.example.se")) == 1
    told = [c for c in world.telegram.sent_to(CHATS[RECEPTION]) if "Lugnvik" in (c.text or "")]
    assert told, "the reception unit is told in its chat"
    assert any("Lugnvik" in str(m) for m in world.mails_to("mottagning@ostersund.example.se"))


async def test_a_group_that_became_a_supergroup_gets_this_and_the_next_message_at_its_new_id(
    world: World,
) -> None:
    new_id = -1009876543210
    world.telegram.migrate_chat(CHATS[SCHOOL], new_id)
    first = await world.register(arrival())
    view = await world.settled(first["id"])
    school = party(view, SCHOOL)["telegram"]
    assert school["status"] == "sent"
    assert len(notices(world, new_id, first["reference"])) == 1
    link = await world.services.chats.link_of(new_id)
    assert link is not None and link.org_id == SCHOOL
    assert await world.services.chats.chats_of(SCHOOL) == [new_id]

    calls_to_old = len(world.telegram.sent_to(CHATS[SCHOOL]))
    second = await world.register(arrival(external_ref="MIG-2026-777777"))
    await world.settled(second["id"])
    assert len(notices(world, new_id, second["reference"])) == 1
    assert len(world.telegram.sent_to(CHATS[SCHOOL])) == calls_to_old  # old id not tried again
