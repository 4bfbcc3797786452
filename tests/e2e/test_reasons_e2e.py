"""Irreversible or misleading actions need a reason or are refused (issue 13, "Reasons"):
a cancellation without a reason, a booking in the past / outside office hours / on a closed day
/ identical to the current one — on the API and in chat — and a date change that moves the
arrival after the booked health conversation tells the health centre and the reception unit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.store import keys
from tests.support.world import CHATS, World, arrival, running_world

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
PRESCHOOL = "ostersund-forskola"
RECEPTION = "ostersund-mottagning"
ADDRESS = {
    HC: "hc-lugnvik@regionjh.example.se",
    SCHOOL: "skola@ostersund.example.se",
    PRESCHOOL: "forskola@ostersund.example.se",
    RECEPTION: "mottagning@ostersund.example.se",
}
# The world's clock stands at Wednesday 25 November 2026 09:00; the arrival is Friday 27th.
BOOKED = {"at": "2026-12-01T09:30", "interpreter_booked": True}
REBOOK = "Den bokade tiden för hälsosamtalet (tisdag 1 december 2026 kl. 09.30) ligger nu före"


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        yield w


def text_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


async def registered(world: World) -> str:
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    return str(answer["id"])


async def footprint(world: World, case_id: str) -> tuple[Any, ...]:
    """What a refused request must leave untouched: the case, its history, every stream."""
    redis = world.services.redis
    return (
        await redis.hgetall(keys.case(case_id)),
        await redis.lrange(keys.case_history(case_id), 0, -1),
        await redis.xlen(keys.EVENTS),
        await redis.hlen(keys.case_versions(case_id)),
    )


def field_messages(problem: Any) -> dict[str, str]:
    return {e["field"]: e["message"] for e in problem["errors"]}


# -- cancellation needs a reason --------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": "   \n "}, None])
async def test_a_cancellation_without_a_reason_is_refused_and_nothing_is_written(
    world: World, body: Any
) -> None:
    case_id = await registered(world)
    before = await footprint(world, case_id)
    mails = len(world.smtp.messages)
    status, problem = await world.call(
        "POST", f"/api/v1/arrivals/{case_id}/cancel", RECEPTION, body
    )
    assert status == 422, problem
    assert problem["status"] == 422
    assert field_messages(problem) == {"reason": "Ange varför ankomsten ställs in."}
    await world.drain()
    assert await footprint(world, case_id) == before
    assert len(world.smtp.messages) == mails
    view = await world.case(case_id)
    assert view["status"] != "cancelled" and view["version"] == 1
    # The case can still change: nothing final happened.
    status, _ = await world.call(
        "PATCH", f"/api/v1/arrivals/{case_id}", RECEPTION, {"arrival_date": "2026-11-30"}
    )
    assert status == 200


async def test_the_use_case_itself_refuses_an_empty_reason(world: World) -> None:
    from bot.domain.actor import Actor
    from bot.domain.arrival import InvalidInput

    case_id = await registered(world)
    with pytest.raises(InvalidInput) as refused:
        await world.services.cases.cancel(case_id, " ", Actor(RECEPTION, "intake", "intake:1"))
    assert refused.value.errors == [
        {"field": "reason", "message": "Ange varför ankomsten ställs in."}
    ]


async def test_chat_asks_for_a_reason_and_offers_no_way_around_it(world: World) -> None:
    case_id = await registered(world)
    reference = (await world.case(case_id))["reference"]
    chat = CHATS[RECEPTION]
    world.telegram.push_update(world.telegram.message_update(chat, f"/stall_in {reference}"))
    await world.drain()
    ask = await _chat_says(world, chat, "Skriv kort varför")
    assert not (ask.params.get("reply_markup") or {}).get("inline_keyboard")
    world.telegram.push_update(world.telegram.message_update(chat, "Har fått diagnos"))
    await _chat_says(world, chat, "Det går inte att spara: får inte innehålla medicinska")
    assert (await world.case(case_id))["status"] != "cancelled"


async def _chat_says(world: World, chat_id: int, words: str) -> Any:
    from tests.support.world import eventually

    found: list[Any] = []

    async def seen() -> bool:
        found[:] = [c for c in world.telegram.sent_to(chat_id) if words in (c.text or "")]
        return bool(found)

    await eventually(seen, 10.0, f"{words!r} in chat {chat_id}")
    return found[-1]


# -- a date change after the booking ----------------------------------------------------------


async def test_moving_the_arrival_after_the_booking_tells_health_centre_and_reception(
    world: World,
) -> None:
    case_id = await registered(world)
    status, _ = await world.call("POST", f"/api/v1/arrivals/{case_id}/health-booking", HC, BOOKED)
    assert status == 200
    await world.settled(case_id)
    school_before = len(world.mails_to(ADDRESS[SCHOOL]))
    status, view = await world.call(
        "PATCH", f"/api/v1/arrivals/{case_id}", RECEPTION, {"arrival_date": "2026-12-03"}
    )
    assert status == 200 and view["version"] == 2
    await world.settled(case_id)
    for org in (HC, RECEPTION):
        told = [m for m in world.mails_to(ADDRESS[org]) if "Boka om" in str(m["Subject"])]
        assert len(told) == 1, org
        text = " ".join(text_of(told[0]).split())
        assert f"{REBOOK} ankomstdagen (torsdag 3 december 2026)." in text
        assert "från fredag 27 november 2026 till torsdag 3 december 2026" in text
    to_hc = next(m for m in world.mails_to(ADDRESS[HC]) if "Boka om" in str(m["Subject"]))
    assert "Boka om och meddela den nya tiden." in " ".join(text_of(to_hc).split())
    # The school and the preschool get the ÄNDRAT notice only: never the booking.
    for org in (SCHOOL, PRESCHOOL):
        for mail in world.mails_to(ADDRESS[org]):
            assert "hälsosamtal" not in text_of(mail).lower() or "Boka om" not in text_of(mail)
            assert "Boka om" not in str(mail["Subject"])
            assert "kl. 09.30" not in text_of(mail)
    assert len(world.mails_to(ADDRESS[SCHOOL])) == school_before + 1  # the ÄNDRAT notice
    # In chat too, to the health centre and the reception unit and no one else.
    for org, chat_id in CHATS.items():
        said = [c for c in world.telegram.sent_to(chat_id) if REBOOK in (c.text or "")]
        assert len(said) == (1 if org in (HC, RECEPTION) else 0), org


async def test_a_change_that_keeps_the_arrival_before_the_booking_says_nothing_of_it(
    world: World,
) -> None:
    case_id = await registered(world)
    await world.call("POST", f"/api/v1/arrivals/{case_id}/health-booking", HC, BOOKED)
    await world.settled(case_id)
    for day in ("2026-11-30", "2026-12-01"):  # before, and on the booked day itself
        status, _ = await world.call(
            "PATCH", f"/api/v1/arrivals/{case_id}", RECEPTION, {"arrival_date": day}
        )
        assert status == 200
        await world.settled(case_id)
    for org in (HC, RECEPTION):
        assert not [m for m in world.mails_to(ADDRESS[org]) if "Boka om" in str(m["Subject"])]


# -- the booking rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at", "words"),
    [
        ("2026-11-24T10:00", "redan passerat"),  # yesterday
        ("2026-11-25T08:30", "redan passerat"),  # earlier today
        ("2026-12-01T07:30", "utanför kontorstid (08.00–17.00)"),
        ("2026-12-01T17:00", "utanför kontorstid"),  # the office closes at 17.00
        ("2026-12-01T19:15", "utanför kontorstid"),
        ("2026-11-28T10:00", "Lördag 28 november 2026 är ingen arbetsdag"),
        ("2026-12-24T10:00", "(Julafton) är ingen arbetsdag"),
        ("2028-01-10T10:00", "mer än ett år fram"),
    ],
)
async def test_a_booking_that_cannot_be_right_is_refused(world: World, at: str, words: str) -> None:
    case_id = await registered(world)
    before = await footprint(world, case_id)
    status, problem = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/health-booking",
        HC,
        {"at": at, "interpreter_booked": True},
    )
    assert status == 422, problem
    assert list(field_messages(problem)) == ["at"]
    assert words in field_messages(problem)["at"]
    assert await footprint(world, case_id) == before


async def test_the_same_booking_again_is_refused_not_announced_again(world: World) -> None:
    case_id = await registered(world)
    status, _ = await world.call("POST", f"/api/v1/arrivals/{case_id}/health-booking", HC, BOOKED)
    assert status == 200
    await world.settled(case_id)
    before = await footprint(world, case_id)
    mails = len(world.mails_to(ADDRESS[RECEPTION]))
    for same in (BOOKED, {**BOOKED, "at": "2026-12-01T09:30:00+01:00"}):
        status, problem = await world.call(
            "POST", f"/api/v1/arrivals/{case_id}/health-booking", HC, same
        )
        assert status == 422, problem
        assert "redan registrerad" in field_messages(problem)["at"]
    await world.drain()
    assert await footprint(world, case_id) == before
    assert len(world.mails_to(ADDRESS[RECEPTION])) == mails
    # The same time with a new interpreter answer is news, and is told.
    status, again = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/health-booking",
        HC,
        {**BOOKED, "interpreter_booked": False},
    )
    assert status == 200 and again["number"] == 2


async def test_chat_refuses_a_booking_outside_office_hours_and_keeps_asking(world: World) -> None:
    case_id = await registered(world)
    reference = (await world.case(case_id))["reference"]
    chat = CHATS[HC]
    arrival_message = await _chat_says(world, chat, reference)
    data = next(
        b["callback_data"]
        for row in arrival_message.params["reply_markup"]["inline_keyboard"]
        for b in row
        if b["text"].startswith("Boka")
    )
    world.telegram.push_update(world.telegram.callback_update(chat, data))
    await _chat_says(world, chat, "skriv dag och tid")
    world.telegram.push_update(world.telegram.message_update(chat, "1/12 18.30"))
    refusal = await _chat_says(world, chat, "utanför kontorstid")
    assert "Det gick inte att spara" in (refusal.text or "")
    world.telegram.push_update(world.telegram.message_update(chat, "28/11 10.00"))
    await _chat_says(world, chat, "ingen arbetsdag")
    # The dialogue is still open: a good time goes on to the interpreter question.
    world.telegram.push_update(world.telegram.message_update(chat, "1/12 9.30"))
    await _chat_says(world, chat, "tolk bokad")
    assert (await world.case(case_id, HC))["booking"] is None
