"""Each role sees only what it must, on every surface (issue 13, item 1): after a booking and a
clearance that says "must wait", the school and the preschool learn *that* start must wait —
never the clearance's fields, never the booked time or the interpreter — through the API, the
board, chat and mail alike; the health centre and the reception unit see both. Social services
and management see the case and what concerns them, nothing of the health centre's reports; a
disagreement's text reaches by mail only the parties of its case and the managements it is
referred to (chat carries no free text in the default `minimal` mode). The follow-up report is
anonymous: no case reference, initials or free text of any case.

Table-driven: one row per role, one test per surface, the same expectations for all surfaces.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest

from bot.domain.actor import SYSTEM
from bot.domain.case import notice_event
from bot.domain.events import DeliveryTopic, Topic
from bot.store import keys
from bot.usecases.report import build_report
from bot.usecases.views import deliveries
from tests.support.world import CHATS, World, arrival, eventually, running_world

RECEPTION = "ostersund-mottagning"
HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
PRESCHOOL = "ostersund-forskola"
SOCIAL = "ostersund-socialtjanst"
MANAGEMENT = "ostersund-ledning"
# The health centre's supervisor: a management a disagreement on its case is referred to.
REGION = "region-primarvard"

BOOKED = {"at": "2026-12-09T09:30", "interpreter_booked": True}
CLEARANCE = {"all_results_received": True, "start_obstacle": True}
# How the booking reads on each surface; none of it may reach a role that must not see it.
BOOKING_TRACES = ("2026-12-09T09:30", "interpreter_booked", "booked_for")
BOOKING_WORDS = ("9 december 2026 kl. 09.30", "tolk bokad")
CLEARANCE_TRACES = ("all_results_received", "start_obstacle")
# How the booking reads in a mail (the .ics included) and in a chat message.
BOOKING_MAIL_TRACES = (
    *BOOKING_WORDS,
    "09.30",
    "09:30",
    "Tolk: bokad",
    "Hälsosamtal",
    "hälsosamtal",
    "halsosamtal.ics",
    "text/calendar",
    "BEGIN:VCALENDAR",
)
# Free texts of two disagreements (recognisable, so a leak is found wherever it goes).
DISPUTE_ESCALATED = "Oenighet-ETT om tolkbehovet vid skolstarten"
DISPUTE_AMONG_PARTIES = "Oenighet-TVÅ om förskoleplatsens startdag"


@dataclass(frozen=True)
class Role:
    """What one organisation must (not) see of the case."""

    org_id: str
    sees_health: bool  # the booking and the clearance record
    may_list: bool  # the API's case list
    told_start: bool = False  # told whether start may go ahead ("Start får vänta")


ROLES = (
    Role(RECEPTION, sees_health=True, may_list=True, told_start=True),
    Role(HC, sees_health=True, may_list=False),
    Role(SCHOOL, sees_health=False, may_list=False, told_start=True),
    Role(PRESCHOOL, sees_health=False, may_list=False, told_start=True),
    Role(SOCIAL, sees_health=False, may_list=False),
    Role(MANAGEMENT, sees_health=False, may_list=True),
)
IN_CHAT = tuple(r for r in ROLES if r.org_id in CHATS)
ids = [r.org_id for r in ROLES]


@dataclass
class Booked:
    world: World
    case_id: str
    reference: str


@pytest.fixture
async def booked(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[Booked]:
    """One case with a booked health conversation and a clearance that says "must wait"; social
    services are on it too (as for an unaccompanied child)."""
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival(recipients=[HC, PRESCHOOL, SCHOOL, SOCIAL]))
        await world.settled(answer["id"])
        path = f"/api/v1/arrivals/{answer['id']}"
        status, _ = await world.call("POST", f"{path}/health-booking", HC, BOOKED)
        assert status == 200
        status, _ = await world.call("POST", f"{path}/clearance", HC, CLEARANCE)
        assert status == 200
        await world.drain()
        yield Booked(world, answer["id"], answer["reference"])


def assert_health_seen(role: Role, text: str, *, raw: bool) -> None:
    """The health centre's reports are on `text` exactly when the role may see them."""
    traces = (BOOKING_TRACES + CLEARANCE_TRACES) if raw else BOOKING_WORDS
    for trace in traces:
        assert (trace in text) is role.sees_health, (role.org_id, trace)


# -- the API -----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES, ids=ids)
async def test_api_case(booked: Booked, role: Role) -> None:
    status, view = await booked.world.call("GET", f"/api/v1/arrivals/{booked.case_id}", role.org_id)
    assert status == 200, view
    assert view["start"] == {"school": "must_wait", "preschool": "must_wait"}
    assert ("clearance" in view, "booking" in view) == (role.sees_health, role.sees_health)
    assert_health_seen(role, json.dumps(view, ensure_ascii=False), raw=True)
    if role.sees_health:
        assert view["clearance"]["start_obstacle"] is True
        assert view["booking"]["interpreter_booked"] is True


@pytest.mark.parametrize("role", ROLES, ids=ids)
async def test_api_list(booked: Booked, role: Role) -> None:
    status, answer = await booked.world.call("GET", "/api/v1/arrivals", role.org_id)
    if not role.may_list:
        assert status == 403 and answer["detail"].startswith("Bara mottagningsenheter")
        return
    assert status == 200
    assert [a["reference"] for a in answer["arrivals"]] == [booked.reference]
    text = json.dumps(answer, ensure_ascii=False)
    for trace in BOOKING_TRACES + CLEARANCE_TRACES:
        assert trace not in text  # a list line carries no health report for anyone


# -- the board ---------------------------------------------------------------------------------


async def board_pages(world: World, org_id: str, case_id: str) -> tuple[str, str]:
    token = await world.services.dashboard.create_login(org_id, "member", "test")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as client:
        async with client.post(
            f"{world.base}/dashboard/login/{token}", allow_redirects=False
        ) as response:
            assert response.status == 303
        async with client.get(f"{world.base}/dashboard") as response:
            assert response.status == 200
            board = await response.text()
        async with client.get(f"{world.base}/dashboard/cases/{case_id}") as response:
            assert response.status == 200
            page = await response.text()
    return board, page


@pytest.mark.parametrize("role", ROLES, ids=ids)
async def test_board(booked: Booked, role: Role) -> None:
    board, page = await board_pages(booked.world, role.org_id, booked.case_id)
    assert booked.reference in board and booked.reference in page
    assert "Start får vänta" in page
    assert_health_seen(role, page, raw=False)
    for text in (board, page):
        for trace in BOOKING_TRACES + CLEARANCE_TRACES:
            assert trace not in text
    if not role.sees_health:
        assert "Hälsosamtal</dt>" not in page
        for trace in BOOKING_WORDS:
            assert trace not in board


# -- chat --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", IN_CHAT, ids=[r.org_id for r in IN_CHAT])
async def test_chat_case_list(booked: Booked, role: Role) -> None:
    world, chat = booked.world, CHATS[role.org_id]
    before = len(world.telegram.sent_to(chat))
    world.telegram.push_update(world.telegram.message_update(chat, "/arenden"))
    found: list[str] = []

    async def listed() -> bool:
        found[:] = [
            c.text or ""
            for c in world.telegram.sent_to(chat)[before:]
            if "Öppna ärenden" in (c.text or "")
        ]
        return bool(found)

    await eventually(listed, 10.0, f"/arenden in chat {chat}")
    line = next(x for x in found[-1].splitlines() if booked.reference in x)
    assert "start får vänta" in line
    assert ("hälsosamtal onsdag 9 december 2026 kl. 09.30" in line) is role.sees_health
    # Nothing the role may not see reached its chat at any time, not only in the list.
    if not role.sees_health:
        for call in world.telegram.sent_to(chat):
            for trace in (*BOOKING_WORDS, "provsvar klara", "hälsosamtal onsdag"):
                assert trace not in (call.text or ""), (role.org_id, call.text)


async def test_the_board_and_the_api_refuse_an_organisation_not_on_the_case(
    booked: Booked,
) -> None:
    status, problem = await booked.world.call(
        "GET", f"/api/v1/arrivals/{booked.case_id}", "berg-skola"
    )
    assert status == 403 and problem["detail"] == "Er organisation är inte part i det här ärendet."


# -- chat's one error handler --------------------------------------------------------------------


async def said(world: World, chat: int, text: str, words: str) -> str:
    """Say `text` in `chat` and wait for a reply containing `words`."""
    before = len(world.telegram.sent_to(chat))
    world.telegram.push_update(world.telegram.message_update(chat, text))
    found: list[str] = []

    async def replied() -> bool:
        found[:] = [
            c.text or "" for c in world.telegram.sent_to(chat)[before:] if words in (c.text or "")
        ]
        return bool(found)

    await eventually(replied, 10.0, f"{words!r} in chat {chat}")
    return found[-1]


async def test_chat_turns_the_cores_refusals_into_swedish_replies(booked: Booked) -> None:
    world = booked.world
    # Forbidden, from the policy, before any dialogue starts.
    await said(
        world, CHATS[SCHOOL], f"/andra {booked.reference}", "Bara kommunens mottagningsenhet"
    )
    await said(world, CHATS[SCHOOL], f"/stall_in {booked.reference}", "Bara kommunens")
    unchanged = await world.services.cases.store.get(booked.case_id)
    assert (unchanged.version, unchanged.status) == (1, "open")
    # InvalidInput, from the health centre's own time rule, keeps the dialogue open: the same
    # chat then answers with a good time and is asked the next question.
    arrival_message = next(
        c for c in world.telegram.sent_to(CHATS[HC]) if booked.reference in (c.text or "")
    )
    markup = arrival_message.params.get("reply_markup") or {}
    book = next(
        b["callback_data"]
        for row in markup.get("inline_keyboard", [])
        for b in row
        if b["text"].startswith("Boka")
    )
    world.telegram.push_update(world.telegram.callback_update(CHATS[HC], book))
    await eventually(
        lambda: _has(world, CHATS[HC], "skriv dag och tid"), 10.0, "the booking question"
    )
    reply = await said(world, CHATS[HC], "2026-01-02 09:30", "Tiden har redan passerat")
    assert reply.startswith("Det gick inte att spara")
    await said(world, CHATS[HC], "10/12 13.00", "tolk bokad")
    # Conflict: once the case is cancelled, the booking button is answered with why.
    status, _ = await world.call(
        "POST", f"/api/v1/arrivals/{booked.case_id}/cancel", RECEPTION, {"reason": "Flyttat."}
    )
    assert status == 200
    before = len(world.telegram.calls_to("answerCallbackQuery"))
    world.telegram.push_update(world.telegram.callback_update(CHATS[HC], book))

    async def answered() -> bool:
        return len(world.telegram.calls_to("answerCallbackQuery")) > before

    await eventually(answered, 10.0, "the press to be answered")
    answer = world.telegram.calls_to("answerCallbackQuery")[-1].params
    assert answer.get("text") == "Ärendet är inställt." and answer.get("show_alert")


async def _has(world: World, chat: int, words: str) -> bool:
    return any(words in (c.text or "") for c in world.telegram.sent_to(chat))


# -- mail, and every chat message ----------------------------------------------------------------

# Who reads each disagreement's text by mail: the parties of its case (the one who raised it
# learns of it again only when it is referred upwards) and the managements it is referred to.
DISPUTE_READERS = {
    DISPUTE_ESCALATED: {RECEPTION, HC, SCHOOL, PRESCHOOL, SOCIAL, MANAGEMENT, REGION},
    DISPUTE_AMONG_PARTIES: {RECEPTION, HC, PRESCHOOL},
}


# Chats of supervisors, linked where a test needs them: a party's and a non-party's.
SUPERVISOR_CHATS = {SCHOOL: 2003, MANAGEMENT: 2006}


@dataclass
class Told:
    """Everything each organisation was sent, after the case's booking, clearance and two
    disagreements: one referred to management, one (on a second case, without social services)
    among its parties."""

    booked: Booked
    second_reference: str
    mails: dict[str, str]  # organisation -> every mail it got, subjects, bodies and files
    chats: dict[str, str]  # organisation -> every message and button sent to its chat


def mail_text(message: EmailMessage) -> str:
    """A received mail as one text: its subject, every text part and every file (decoded)."""
    out = [str(message["Subject"])]
    for part in message.walk():
        if part.is_multipart():
            continue
        out.append(part.get_content_type())
        if part.get_filename():
            out.append(part.get_filename() or "")
        content = part.get_content()
        out.append(content if isinstance(content, str) else content.decode("utf-8", "replace"))
    return "\n".join(out)


async def supervisor_call(world: World, org_id: str, path: str) -> tuple[int, object]:
    token = await world.token(org_id, "supervisor")
    return await world.call("POST", path, None, {}, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def told(booked: Booked) -> Told:
    world = booked.world
    # The health centre and the school disagree; the health centre's supervisor refers it up.
    status, raised = await world.call(
        "POST",
        f"/api/v1/arrivals/{booked.case_id}/disagreements",
        HC,
        {"text": DISPUTE_ESCALATED},
    )
    assert status == 201, raised
    status, escalated = await supervisor_call(
        world, HC, f"/api/v1/disagreements/{raised['id']}/escalate"
    )
    assert status == 200, escalated
    # A second case of the same municipality, without social services: its disagreement
    # stays among its parties.
    second = await world.register(arrival(external_ref="MIG-2026-654321"))
    await world.settled(second["id"])
    status, raised = await world.call(
        "POST",
        f"/api/v1/arrivals/{second['id']}/disagreements",
        SCHOOL,
        {"text": DISPUTE_AMONG_PARTIES},
    )
    assert status == 201, raised
    await world.drain()
    directory = world.services.directory
    mails = {
        org.id: "\n\n".join(mail_text(m) for m in world.mails_to(org.email))
        for org in directory.organisations.values()
        if org.email
    }
    chats = {
        org_id: "\n\n".join(
            (c.text or "") + json.dumps(c.params.get("reply_markup") or {}, ensure_ascii=False)
            for c in world.telegram.sent_to(chat)
        )
        for org_id, chat in CHATS.items()
    }
    return Told(booked, second["reference"], mails, chats)


@pytest.mark.parametrize("role", ROLES, ids=ids)
async def test_mail_and_chat(told: Told, role: Role) -> None:
    mails, chat = told.mails[role.org_id], told.chats.get(role.org_id, "")
    assert told.booked.reference in mails  # it is on the case: its arrival mail at least
    if not role.sees_health:
        for trace in (*BOOKING_TRACES, *BOOKING_MAIL_TRACES, *CLEARANCE_TRACES):
            assert trace not in mails, (role.org_id, "mail", trace)
            assert trace not in chat, (role.org_id, "chat", trace)
    # Whether start may go ahead is told to the reception unit, the school and the preschool:
    # "start får vänta", and nothing of why.
    assert ("Start får vänta" in mails) is role.told_start, role.org_id
    for trace in CLEARANCE_TRACES:
        assert trace not in mails and trace not in chat, (role.org_id, trace)
    for text, readers in DISPUTE_READERS.items():
        assert (text in mails) is (role.org_id in readers), (role.org_id, text)
        assert text not in chat, (role.org_id, "chat carries no free text in minimal mode")
    # Buttons as the policy allows: Boka for the health centre on the case; Eskalera in no
    # member's chat.
    assert ('"Boka hälsosamtal"' in chat) is (role.org_id == HC), role.org_id
    assert '"Eskalera"' not in chat, role.org_id


async def test_a_disagreements_text_reaches_no_one_else(told: Told) -> None:
    for text, readers in DISPUTE_READERS.items():
        assert {org for org, mails in told.mails.items() if text in mails} == readers, text
    # Nothing of either case reached an organisation on neither case nor referred to.
    concerned = set().union(*DISPUTE_READERS.values())
    for org_id, mails in told.mails.items():
        if org_id not in concerned:
            assert mails == "", org_id
    # The booking reached the reception unit only (the health centre made it).
    booked = {org for org, mails in told.mails.items() if "halsosamtal.ics" in mails}
    assert booked == {RECEPTION}


async def test_the_fan_out_asks_the_policy_whoever_planned_a_notice(booked: Booked) -> None:
    """A planner that names too many organisations (a bug) still tells no one the policy keeps
    a notice from: the fan-out asks `Policy.may_be_told` for every organisation."""
    world = booked.world
    # Supervisors' chats: the school's (a party) and management's (not a party).
    for org_id, chat in SUPERVISOR_CHATS.items():
        await world.link_chat(org_id, chat, "supervisor")
    status, raised = await world.call(
        "POST",
        f"/api/v1/arrivals/{booked.case_id}/disagreements",
        HC,
        {"text": DISPUTE_ESCALATED},
    )
    assert status == 201, raised
    everyone = [RECEPTION, HC, SCHOOL, PRESCHOOL, SOCIAL, MANAGEMENT, "berg-skola", "hc-hede"]
    planned: dict[DeliveryTopic, tuple[dict[str, object], set[str]]] = {
        Topic.HEALTH_BOOKING.at(9): (
            {"organisation": "Hälsocentralen Lugnvik", "booked_at": "2026-12-09T09:30:00+01:00"},
            {RECEPTION, HC},
        ),
        Topic.CLEARANCE.at(9): (
            {"organisation": "Hälsocentralen Lugnvik", "may_start": False},
            {RECEPTION, HC, SCHOOL, PRESCHOOL},
        ),
        # Management of the parties may see it (it may have to decide); no one off the case.
        Topic.DISAGREEMENT_RAISED.at(raised["id"]): (
            {"raised_by": "Hälsocentralen Lugnvik"},
            {RECEPTION, HC, SCHOOL, PRESCHOOL, SOCIAL, MANAGEMENT},
        ),
    }
    now = world.clock.now()
    for topic, (params, _) in planned.items():
        event = notice_event(booked.case_id, 1, SYSTEM, now, topic, everyone, params)
        await world.services.redis.xadd(keys.EVENTS, event)
    await world.drain()
    rows = await deliveries(world.services.redis, booked.case_id)
    for topic, (_, allowed) in planned.items():
        assert {r["org"] for r in rows if r["topic"] == str(topic)} == allowed, topic
    school_mail = "\n".join(mail_text(m) for m in world.mails_to("skola@ostersund.example.se"))
    assert "Oenighet-ETT" in school_mail and "kl. 09.30" not in school_mail
    # Eskalera only where the policy lets the chat's person escalate: a party's supervisor.
    for org_id, chat in SUPERVISOR_CHATS.items():
        sent = world.telegram.sent_to(chat)
        told = [c for c in sent if "Oenighet" in (c.text or "") or "oenighet" in (c.text or "")]
        assert told, org_id  # both were told of the disagreement
        assert any("Eskalera" in json.dumps(c.params.get("reply_markup") or {}) for c in told) is (
            org_id == SCHOOL
        ), org_id


async def test_the_report_is_anonymous(told: Told) -> None:
    world = told.booked.world
    services = world.services
    report = await build_report(
        services.redis,
        services.directory,
        services.calendar,
        date(2026, 1, 1),
        date(2026, 12, 31),
        now=world.clock.now(),
    )
    assert report["cases"] == 2
    text = json.dumps(report, ensure_ascii=False)
    case = await services.cases.store.get(told.booked.case_id)
    for trace in (
        told.booked.reference,
        told.second_reference,
        told.booked.case_id,
        case.external_ref or "",
        "MIG-2026",
        "A.K.",
        "initials",
        str(case.facts["details"]),
        "Storgatan",
        DISPUTE_ESCALATED,
        DISPUTE_AMONG_PARTIES,
        *BOOKING_TRACES,
        *CLEARANCE_TRACES,
    ):
        assert trace and trace not in text, trace
