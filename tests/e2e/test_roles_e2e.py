"""Every role's part after the first message: booking and clearance, disagreements up one
management level, and the Telegram flows — through the API and the chat alike."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.world import CHATS, World, arrival, eventually, running_world

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
PRESCHOOL = "ostersund-forskola"
RECEPTION = "ostersund-mottagning"
ADDRESS = {
    HC: "hc-lugnvik@regionjh.example.se",
    SCHOOL: "skola@ostersund.example.se",
    PRESCHOOL: "forskola@ostersund.example.se",
    RECEPTION: "mottagning@ostersund.example.se",
    "ostersund-ledning": "kommunledning@ostersund.example.se",
}
SCHOOL_BOSS_CHAT = 2003


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        await w.link_chat(SCHOOL, SCHOOL_BOSS_CHAT, "supervisor")
        yield w


def text_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


async def registered(world: World, **overrides: Any) -> str:
    answer = await world.register(arrival(**overrides))
    await world.settled(answer["id"])
    return str(answer["id"])


async def supervisor_token(world: World, org_id: str) -> dict[str, str]:
    token = await world.services.tokens.create(org_id, "supervisor")
    return {"Authorization": f"Bearer {token}"}


def buttons(call: Any) -> list[dict[str, str]]:
    markup = call.params.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def button(call: Any, text: str) -> str:
    return next(b["callback_data"] for b in buttons(call) if b["text"].startswith(text))


async def chat_says(world: World, chat_id: int, words: str, timeout: float = 10.0) -> Any:
    found: list[Any] = []

    async def seen() -> bool:
        found[:] = [c for c in world.telegram.sent_to(chat_id) if words in (c.text or "")]
        return bool(found)

    await eventually(seen, timeout, f"{words!r} in chat {chat_id}")
    return found[-1]


async def say(world: World, chat_id: int, text: str) -> None:
    world.telegram.push_update(world.telegram.message_update(chat_id, text))


async def press(world: World, chat_id: int, data: str) -> None:
    before = len(world.telegram.calls_to("answerCallbackQuery"))
    world.telegram.push_update(world.telegram.callback_update(chat_id, data))

    async def answered() -> bool:
        return len(world.telegram.calls_to("answerCallbackQuery")) > before

    await eventually(answered, 10.0, "the button press to be answered")


# -- the health centre, through the API -------------------------------------------------------


async def test_a_booking_tells_the_reception_unit_with_a_calendar_file(world: World) -> None:
    case_id = await registered(world)
    status, booking = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/health-booking",
        HC,
        {"at": "2026-12-01T09:30", "interpreter_booked": True},
    )
    assert status == 200 and booking["number"] == 1
    await world.drain()
    mail = world.mails_to(ADDRESS[RECEPTION])[-1]
    assert "tisdag 1 december 2026 kl. 09.30" in text_of(mail)
    ics = [p for p in mail.walk() if p.get_content_type() == "text/calendar"]
    assert ics and "DTSTART" in ics[0].get_content()
    assert "tisdag 1 december 2026" in (
        (await chat_says(world, CHATS[RECEPTION], "Tolk: bokad")).text
    )

    status, again = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/health-booking",
        HC,
        {"at": "2026-12-02T13:00", "interpreter_booked": False},
    )
    assert status == 200 and again["number"] == 2 and again["replaces"]
    await world.drain()
    later = text_of(world.mails_to(ADDRESS[RECEPTION])[-1])
    assert "ersätter" in later and "onsdag 2 december 2026 kl. 13.00" in later
    history = (await world.case(case_id))["history"]
    assert [h["what"] for h in history].count("health_booked") == 2


async def test_only_the_health_centre_on_the_case_reports(world: World) -> None:
    case_id = await registered(world)
    for org in (
        SCHOOL,
        RECEPTION,
        "hc-hede" if "hc-hede" in world.services.directory.organisations else "berg-skola",
    ):
        status, problem = await world.call(
            "POST",
            f"/api/v1/arrivals/{case_id}/clearance",
            org,
            {"all_results_received": True, "start_obstacle": False},
        )
        assert status == 403 and problem["detail"], org


async def test_clearance_takes_two_booleans_and_nothing_else(world: World) -> None:
    case_id = await registered(world)
    status, problem = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/clearance",
        HC,
        {"all_results_received": True, "start_obstacle": False, "diagnosis": "TBC"},
    )
    assert status == 422 and problem["errors"][0]["field"] == "diagnosis"
    view = await world.case(case_id)
    assert view["start"]["preschool"] == "waiting"
    assert await world.services.redis.hget(f"ankomst:case:{case_id}", "clearance") is None


async def test_clearance_reaches_school_and_preschool_as_yes_or_no_only(world: World) -> None:
    case_id = await registered(world)
    status, _ = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/clearance",
        HC,
        {"all_results_received": True, "start_obstacle": True},
    )
    assert status == 200
    await world.drain()
    for org in (SCHOOL, PRESCHOOL, RECEPTION):
        text = text_of(world.mails_to(ADDRESS[org])[-1])
        assert "måste vänta" in text and "Kontakta Hälsocentralen Lugnvik" in text
    assert world.mails_to(ADDRESS[HC])[-1]["Subject"] == world.mails_to(ADDRESS[HC])[0]["Subject"]
    view = await world.case(case_id)
    assert view["start"] == {"school": "must_wait", "preschool": "must_wait"}


# -- disagreements ---------------------------------------------------------------------------


async def test_a_disagreement_goes_up_to_the_management_of_every_party(world: World) -> None:
    case_id = await registered(world)
    status, raised = await world.call(
        "POST", f"/api/v1/arrivals/{case_id}/disagreements", SCHOOL, {"text": "Vem bokar tolk?"}
    )
    assert status == 201 and raised["status"] == "open"
    await world.drain()
    assert "Vem bokar tolk?" in text_of(world.mails_to(ADDRESS[HC])[-1])
    assert "Vem bokar tolk?" in text_of(world.mails_to(ADDRESS[RECEPTION])[-1])

    # A member cannot escalate; a supervisor of a party can.
    status, problem = await world.call(
        "POST", f"/api/v1/disagreements/{raised['id']}/escalate", SCHOOL
    )
    assert status == 403 and "chef" in problem["detail"].lower()
    status, escalated = await world.call(
        "POST",
        f"/api/v1/disagreements/{raised['id']}/escalate",
        headers=await supervisor_token(world, SCHOOL),
    )
    assert status == 200 and escalated["status"] == "escalated"
    assert set(escalated["referred_to"]) == {"ostersund-ledning", "region-primarvard"}
    await world.drain()
    assert "Vem bokar tolk?" in text_of(world.mails_to(ADDRESS["ostersund-ledning"])[-1])

    status, resolved = await world.call(
        "POST",
        f"/api/v1/disagreements/{raised['id']}/resolve",
        "ostersund-ledning",
        {"decision": "Skolan bokar tolk."},
    )
    assert status == 200 and resolved["status"] == "resolved"
    await world.drain()
    for org in (SCHOOL, HC, RECEPTION, PRESCHOOL):
        assert "Skolan bokar tolk." in text_of(world.mails_to(ADDRESS[org])[-1]), org
    status, listed = await world.call("GET", f"/api/v1/arrivals/{case_id}/disagreements", SCHOOL)
    assert status == 200 and [d["id"] for d in listed["disagreements"]] == [raised["id"]]
    status, _ = await world.call("GET", f"/api/v1/disagreements/{raised['id']}", "berg-skola")
    assert status == 403


# -- Telegram flows ----------------------------------------------------------------------------


async def test_a_reception_unit_registers_by_chat_and_every_recipient_is_told(world: World) -> None:
    chat = CHATS[RECEPTION]
    await say(world, chat, "/ny")
    first = await chat_says(world, chat, "Migrationsverkets")
    await press(world, chat, button(first, "Hoppa över"))
    picker = await chat_says(world, chat, "Vilket datum")
    await say(world, chat, "32/13")
    await chat_says(world, chat, "Skriv datumet som")
    await say(world, chat, "27/11")
    await chat_says(world, chat, "Hur gamla")
    await say(world, chat, "nio")
    await chat_says(world, chat, "Skriv varje barns ålder")
    await say(world, chat, "9, 4")
    languages = await chat_says(world, chat, "Vilka språk")
    await press(world, chat, button(languages, "arabiska"))
    await say(world, chat, "prs")
    await chat_says(world, chat, "Valda språk")
    await press(world, chat, button(languages, "Klar"))
    interpreter = await chat_says(world, chat, "Behövs tolk")
    await press(world, chat, button(interpreter, "Ja"))
    alone = await chat_says(world, chat, "ensamkommande")
    await press(world, chat, button(alone, "Nej"))
    await chat_says(world, chat, "Övriga uppgifter")
    await say(world, chat, "Bor på Storgatan 1.")
    summary = await chat_says(world, chat, "Stämmer det här")
    assert "arabiska, dari" in (summary.text or "") and "9 år, 4 år" in (summary.text or "")
    assert picker is not None
    await press(world, chat, button(summary, "Registrera"))
    done = await chat_says(world, chat, "Registrerat")
    reference = re.search(r"OSD-\d{4}-\d{4}", done.text or "")
    assert reference is not None
    for org in (HC, SCHOOL, PRESCHOOL):
        message = await chat_says(world, CHATS[org], reference.group(0))
        assert "fredag 27 november 2026" in (message.text or "")
    await world.drain()
    assert len(world.mails_to(ADDRESS[HC])) == 1


async def test_only_a_reception_unit_may_register_by_chat(world: World) -> None:
    await say(world, CHATS[SCHOOL], "/ny")
    await chat_says(world, CHATS[SCHOOL], "Bara kommunens mottagningsenhet")


async def test_a_health_centre_books_and_clears_by_buttons(world: World) -> None:
    case_id = await registered(world)
    reference = (await world.case(case_id))["reference"]
    arrival_message = await chat_says(world, CHATS[HC], reference)
    await press(world, CHATS[HC], button(arrival_message, "Boka"))
    await chat_says(world, CHATS[HC], "skriv dag och tid")
    await say(world, CHATS[HC], "1/12 9.30")
    interpreter = await chat_says(world, CHATS[HC], "tolk bokad")
    await press(world, CHATS[HC], button(interpreter, "Ja"))
    booked = await chat_says(world, CHATS[HC], "Bokning registrerad")
    assert "tisdag 1 december 2026 kl. 09.30" in (booked.text or "")
    await chat_says(world, CHATS[RECEPTION], "Hälsosamtal")

    await press(world, CHATS[HC], button(booked, "Alla provsvar klara"))
    told = await chat_says(world, CHATS[SCHOOL], "kan ske")
    text = (told.text or "").lower()
    assert "kan ske" in text
    assert not any(word in text for word in ("positiv", "negativ", "tbc", "tuberkulos", "smitta"))
    view = await world.case(case_id)
    assert view["start"]["school"] == "may_start"


async def test_a_non_supervisor_cannot_escalate_by_chat_but_a_supervisor_can(world: World) -> None:
    case_id = await registered(world)
    reference = (await world.case(case_id))["reference"]
    await say(world, CHATS[SCHOOL], f"/oenighet {reference}")
    await chat_says(world, CHATS[SCHOOL], "beskriv kort")
    await say(world, CHATS[SCHOOL], "Vem bokar tolk?")
    member_reply = await chat_says(world, CHATS[SCHOOL], "anmäld")
    assert not buttons(member_reply)  # a member's chat gets no Eskalera button

    disagreements = (await world.call("GET", f"/api/v1/arrivals/{case_id}/disagreements", SCHOOL))[
        1
    ]
    ident = disagreements["disagreements"][0]["id"]
    # A forged press from the member chat is refused: members cannot escalate.
    from bot.pipeline.buttons import escalate_row

    data = escalate_row(world.services.signer, ident)[0].callback_data
    assert data is not None
    await press(world, CHATS[SCHOOL], data)
    answers = world.telegram.calls_to("answerCallbackQuery")
    assert "chef" in answers[-1].params.get("text", "").lower()
    assert (await world.services.disagreements.get(ident)).status == "open"

    await press(world, SCHOOL_BOSS_CHAT, data)
    await chat_says(world, SCHOOL_BOSS_CHAT, "lyft till")
    assert (await world.services.disagreements.get(ident)).status == "escalated"


async def test_the_command_menu_is_set_per_role(world: World) -> None:
    menus = world.telegram.commands

    def names(key_part: str) -> set[str]:
        found = [v for k, v in menus.items() if key_part in k]
        assert found, (key_part, list(menus))
        return {c["command"] for c in found[-1]}

    assert {"start", "help"} <= names("default")
    assert {"ny", "andra", "stall_in", "arenden"} <= names(str(CHATS[RECEPTION]))
    school = names(str(CHATS[SCHOOL]))
    assert "ny" not in school and {"arenden", "oenighet"} <= school


async def test_an_open_disagreement_goes_up_by_itself_after_five_working_days(
    world: World,
) -> None:
    from datetime import timedelta

    case_id = await registered(world)
    status, raised = await world.call(
        "POST", f"/api/v1/arrivals/{case_id}/disagreements", HC, {"text": "Vem bokar tolk?"}
    )
    assert status == 201
    await world.tick()
    # Raised Wednesday 25 November: five working days on is Wednesday 2 December.
    world.clock.advance(timedelta(days=6))  # Tuesday 1 December, 09:00
    await world.tick()
    assert (await world.services.disagreements.get(raised["id"])).status == "open"
    world.clock.advance(timedelta(days=1, hours=9))  # Wednesday 2 December, 18:00
    await world.tick()
    found = await world.services.disagreements.get(raised["id"])
    assert found.status == "escalated" and found.escalated_by == "automatic"
    assert "inom 5 arbetsdagar" in text_of(world.mails_to(ADDRESS["ostersund-ledning"])[-1])


async def test_a_reception_unit_changes_the_date_and_cancels_by_chat(world: World) -> None:
    case_id = await registered(world)
    reference = (await world.case(case_id))["reference"]
    chat = CHATS[RECEPTION]
    await say(world, chat, f"/andra {reference}")
    picker = await chat_says(world, chat, "nya datumet")
    await press(world, chat, button(picker, "tis 1/12"))
    confirm = await chat_says(world, chat, "Ändra")
    await press(world, chat, button(confirm, "Ändra"))
    await chat_says(world, chat, "Ändrat:")
    changed = await chat_says(world, CHATS[SCHOOL], "ÄNDRAT")
    assert "tisdag 1 december 2026" in (changed.text or "")
    assert (await world.case(case_id))["version"] == 2

    await say(world, CHATS[SCHOOL], "/arenden")
    listing = await chat_says(world, CHATS[SCHOOL], "Öppna ärenden")
    assert reference in (listing.text or "") and "inte bekräftat" in (listing.text or "")

    await say(world, chat, f"/stall_in {reference}")
    ask = await chat_says(world, chat, "Ställa in")
    await say(world, chat, "Familjen har flyttat.")
    confirm = await chat_says(world, chat, "Alla mottagare får besked (INSTÄLLD)")
    await press(world, chat, button(confirm, "Ställ in"))
    await chat_says(world, chat, "Inställt:")
    assert ask is not None
    cancelled = await chat_says(world, CHATS[HC], "INSTÄLLD")
    assert "Familjen har flyttat." in (cancelled.text or "") or reference in (cancelled.text or "")
    assert (await world.case(case_id))["status"] == "cancelled"


async def test_every_chat_of_a_version_gets_its_own_buttons_and_a_new_version_new_ones(
    world: World,
) -> None:
    """The rows are made once per version and shared by its chats (issue 17): Boka only in
    the health centre's chat, and Mottaget naming the version each chat is told of."""
    case_id = await registered(world)
    reference = (await world.case(case_id))["reference"]
    first = {org: await chat_says(world, CHATS[org], reference) for org in (HC, SCHOOL, PRESCHOOL)}
    assert [b["text"] for b in buttons(first[HC])] == ["Mottaget", "Boka hälsosamtal"]
    assert [b["text"] for b in buttons(first[SCHOOL])] == ["Mottaget"]
    assert [b["text"] for b in buttons(first[PRESCHOOL])] == ["Mottaget"]
    ack = button(first[SCHOOL], "Mottaget")
    assert button(first[HC], "Mottaget") == button(first[PRESCHOOL], "Mottaget") == ack

    status, _ = await world.call(
        "PATCH", f"/api/v1/arrivals/{case_id}", RECEPTION, {"arrival_date": "2026-11-30"}
    )
    assert status == 200
    await world.settled(case_id)
    second = {
        org: [c for c in world.telegram.sent_to(CHATS[org]) if reference in (c.text or "")][-1]
        for org in (HC, SCHOOL)
    }
    assert [b["text"] for b in buttons(second[HC])] == ["Mottaget", "Boka hälsosamtal"]
    assert [b["text"] for b in buttons(second[SCHOOL])] == ["Mottaget"]
    assert button(second[SCHOOL], "Mottaget") == button(second[HC], "Mottaget") != ack
    assert button(second[HC], "Boka") == button(first[HC], "Boka")  # names the case only
