"""The board as a workplace (issue 14): the health centre's booking and clearance by form,
disagreements raised, escalated and resolved, signed links from mails through the sign-in, and
the Mottaget button that marks the chat message done — against the running service."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.chat import button, chat_says, press
from tests.support.world import CHATS, World, arrival, eventually, running_world

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
RECEPTION = "ostersund-mottagning"
MANAGEMENT = "ostersund-ledning"
HC_ADDRESS = "hc-lugnvik@regionjh.example.se"
# The world's clock: Wednesday 25 November 2026 09:00; Tuesday 1 December is a working day.
BOOKING = {"date": "2026-12-01", "time": "09:30", "interpreter_booked": "ja"}


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        yield w


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def signed_in(world: World, org_id: str, role: str = "member") -> aiohttp.ClientSession:
    token = await world.services.dashboard.create_login(org_id, role, "test")  # type: ignore[arg-type]
    client = browser()
    async with client.post(f"{world.base}/dashboard/login/{token}", allow_redirects=False) as r:
        assert r.status == 303, await r.text()
    return client


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, str, Any]:
    async with client.get(url, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no form token on the page"
    return found.group(1)


async def post(
    world: World, client: aiohttp.ClientSession, path: str, data: dict[str, str], page_path: str
) -> tuple[int, str, Any]:
    """POST a form the way a browser does: with the form token of the page it came from."""
    _, page, _ = await get(client, world.base + page_path)
    async with client.post(
        world.base + path, data={**data, "csrf": csrf_of(page)}, allow_redirects=False
    ) as response:
        return response.status, await response.text(), response.headers


async def registered(world: World, **overrides: Any) -> dict[str, Any]:
    answer = await world.register(arrival(**overrides))
    await world.settled(answer["id"])
    return dict(answer)


def text_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


# --- the health centre ------------------------------------------------------------------------


async def test_the_health_centre_books_and_clears_by_form_and_the_school_sees_only_the_start(
    world: World,
) -> None:
    case = await registered(world)
    health = f"/dashboard/cases/{case['id']}/halsa"
    async with await signed_in(world, HC) as hc, await signed_in(world, SCHOOL) as school:
        # The case page offers the health centre its forms, and the school none of them.
        _, page, _ = await get(hc, f"{world.base}/dashboard/cases/{case['id']}")
        assert f'href="{health}#bokning"' in page and "Rapportera bokad tid" in page
        _, page, _ = await get(school, f"{world.base}/dashboard/cases/{case['id']}")
        assert "/halsa" not in page and "Anmäl oenighet" in page

        status, _, headers = await post(world, hc, f"{health}/bokning", BOOKING, health)
        assert status == 303 and headers["Location"] == f"{health}?klart=bokning"
        _, page, _ = await get(hc, world.base + headers["Location"])
        assert "Den bokade tiden är rapporterad" in page
        assert "tisdag 1 december 2026 kl. 09.30, tolk bokad" in page
        view = await world.case(case["id"])
        assert view["booking"]["interpreter_booked"] is True
        assert view["booking"]["at"].startswith("2026-12-01T09:30")

        answers = {"all_results_received": "ja", "start_obstacle": "ja"}
        status, _, headers = await post(world, hc, f"{health}/klarbesked", answers, health)
        assert status == 303
        await world.drain()
        view = await world.case(case["id"])
        assert view["clearance"]["start_obstacle"] is True

        # The school learns only whether the start may go ahead: never the booking, never why.
        _, page, _ = await get(school, f"{world.base}/dashboard/cases/{case['id']}")
        assert "Start får vänta" in page
        for hidden in ("tolk bokad", "09.30", "provsvar", "hinder"):
            assert hidden not in page, hidden
        status, page, _ = await get(school, world.base + health)
        assert "Bara hälsocentralen i ärendet kan rapportera" in page
        assert "<form" not in page.split("</header>", 1)[1].split("<footer", 1)[0]
        assert "09.30" not in page


async def test_every_refusal_is_a_swedish_message_on_the_page_with_what_was_typed(
    world: World,
) -> None:
    case = await registered(world)
    health = f"/dashboard/cases/{case['id']}/halsa"
    async with await signed_in(world, HC) as hc, await signed_in(world, SCHOOL) as school:
        # A Saturday: refused by the one booking rule, beside the date, the values kept.
        saturday = {**BOOKING, "date": "2026-11-28"}
        status, page, _ = await post(world, hc, f"{health}/bokning", saturday, health)
        assert status == 422
        assert 'id="date-fel"' in page and "ingen arbetsdag" in page
        assert 'value="2026-11-28"' in page and 'value="09:30"' in page
        assert 'id="tolk-ja" name="interpreter_booked" value="ja" checked' in page
        # Outside office hours: beside the time.
        evening = {**BOOKING, "time": "19:00"}
        status, page, _ = await post(world, hc, f"{health}/bokning", evening, health)
        assert status == 422 and 'id="time-fel"' in page and "kontorstid" in page
        # Nothing answered, garbage typed.
        status, page, _ = await post(
            world, hc, f"{health}/bokning", {"date": "imorgon", "time": "x"}, health
        )
        assert status == 422
        assert "ÅÅÅÅ-MM-DD" in page and "TT:MM" in page and "Svara ja eller nej." in page
        status, page, _ = await post(
            world, hc, f"{health}/klarbesked", {"all_results_received": "ja"}, health
        )
        assert status == 422 and 'id="start_obstacle-fel"' in page
        # The school is not the health centre: a Swedish refusal, not an error page.
        status, page, _ = await post(
            world, school, f"{health}/bokning", BOOKING, f"/dashboard/cases/{case['id']}"
        )
        assert status == 403 and "Bara hälsocentralen i ärendet" in page
        # Empty disagreement text.
        raise_path = f"/dashboard/cases/{case['id']}/oenighet"
        status, page, _ = await post(world, school, raise_path, {"text": "  "}, raise_path)
        assert status == 422 and 'id="text-fel"' in page
    view = await world.case(case["id"])
    assert "booking" not in view or view["booking"] is None
    assert "clearance" not in view or view["clearance"] is None


async def test_a_cancelled_case_refuses_a_booking_on_the_page(world: World) -> None:
    case = await registered(world)
    status, _ = await world.call(
        "POST", f"/api/v1/arrivals/{case['id']}/cancel", RECEPTION, {"reason": "Flyttat."}
    )
    assert status == 200
    health = f"/dashboard/cases/{case['id']}/halsa"
    async with await signed_in(world, HC) as hc:
        status, page, _ = await get(hc, world.base + health)
        assert status == 200 and "Ärendet är inställt." in page


# --- disagreements ----------------------------------------------------------------------------


async def test_a_party_raises_a_supervisor_escalates_and_management_resolves(
    world: World,
) -> None:
    case = await registered(world)
    raise_path = f"/dashboard/cases/{case['id']}/oenighet"
    async with await signed_in(world, SCHOOL) as school:
        text = {"text": "Vi anser att skolstarten bör vänta till januari."}
        status, _, headers = await post(world, school, raise_path, text, raise_path)
        assert status == 303
        where = headers["Location"].split("?")[0]
        ident = where.rsplit("/", 1)[1]
        _, page, _ = await get(school, world.base + headers["Location"])
        assert "Oenigheten är anmäld" in page and "vänta till januari" in page
        # A member of the school may not escalate: no button, and a POST is refused on the page.
        assert "Lyft till ledningen</button>" not in page
        status, page, _ = await post(world, school, f"{where}/lyft", {}, where)
        assert status == 403 and "Bara chefer kan lyfta" in page
    async with await signed_in(world, SCHOOL, "supervisor") as boss:
        _, page, _ = await get(boss, world.base + f"/dashboard/cases/{case['id']}")
        assert f'href="/dashboard/oenigheter/{ident}"' in page
        status, _, headers = await post(world, boss, f"{where}/lyft", {}, where)
        assert status == 303 and headers["Location"].endswith("?klart=lyft")
        status, page, _ = await post(world, boss, f"{where}/lyft", {}, where)
        assert status == 403 and "redan lyft" in page
    async with await signed_in(world, MANAGEMENT) as management:
        _, page, _ = await get(management, world.base + where)
        assert "Lyft till ledningen" in page and "Avgör oenigheten" in page
        status, page, _ = await post(world, management, f"{where}/avgor", {"decision": ""}, where)
        assert status == 422 and 'id="decision-fel"' in page
        decision = {"decision": "Skolstart när klarbesked finns; skolan förbereder."}
        status, _, headers = await post(world, management, f"{where}/avgor", decision, where)
        assert status == 303
        _, page, _ = await get(management, world.base + headers["Location"])
        assert "Oenigheten är avgjord" in page and "Avgör oenigheten</button>" not in page
    d = await world.services.disagreements.get(ident)
    assert d.status == "resolved" and d.resolved_by == MANAGEMENT
    assert d.escalated_by == SCHOOL


# --- signed links from mails ------------------------------------------------------------------


def booking_link(world: World, reference: str) -> str:
    mail = next(m for m in world.mails_to(HC_ADDRESS) if reference in str(m["Subject"]))
    text = text_of(mail)
    found = re.search(r"Rapportera bokad tid: http://ankomst\.example\.se(/dashboard/l/\S+)", text)
    assert found, text
    return found.group(1)


async def test_the_mail_link_leads_through_the_sign_in_to_the_booking_form(world: World) -> None:
    case = await registered(world)
    link = booking_link(world, case["reference"])
    async with browser() as client:
        # Not signed in: to the sign-in page, with where to go afterwards.
        status, _, headers = await get(client, world.base + link)
        assert status == 303
        assert headers["Location"] == f"/dashboard/login?next={link}"
        status, page, _ = await get(client, world.base + headers["Location"])
        assert status == 200 and f'action="/dashboard/login?next={link}"' in page
        async with client.post(
            f"{world.base}/dashboard/login?next={link}", data={"email": HC_ADDRESS}
        ) as response:
            assert response.status == 200

        def login_mail() -> Any:
            return next(
                (
                    m
                    for m in world.mails_to(HC_ADDRESS)
                    if "inloggning" in str(m["Subject"]).lower()
                ),
                None,
            )

        async def mailed() -> bool:
            return login_mail() is not None

        await eventually(mailed, what="the sign-in mail")
        sign_in = re.search(
            r"http://ankomst\.example\.se(/dashboard/login/\S+)", text_of(login_mail())
        )
        assert sign_in and f"?next={link}" in sign_in.group(1)
        status, page, _ = await get(client, world.base + sign_in.group(1))
        assert status == 200 and f"?next={link}" in page
        async with client.post(world.base + sign_in.group(1), allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == link
        status, _, headers = await get(client, world.base + link)
        assert status == 303
        assert headers["Location"] == f"/dashboard/cases/{case['id']}/halsa#bokning"
        status, page, _ = await get(client, world.base + headers["Location"])
        assert status == 200 and "Rapportera bokad tid</button>" in page
    # Following the link changed nothing.
    view = await world.case(case["id"])
    assert not view.get("booking")
    assert [h["what"] for h in view["history"]].count("health_booked") == 0


async def test_a_foreign_forged_or_expired_link_is_refused(world: World) -> None:
    case = await registered(world)
    link = booking_link(world, case["reference"])
    async with await signed_in(world, SCHOOL) as school:
        status, page, _ = await get(school, world.base + link)
        assert status == 403 and "Länken gäller en annan organisation" in page
        status, page, _ = await get(school, world.base + link[:-3] + "xyz")
        assert status == 404 and "Länken är inte giltig" in page
    # Only a page of the board may follow the sign-in.
    async with browser() as client:
        status, page, _ = await get(client, world.base + "/dashboard/login?next=//evil.example")
        assert "evil" not in page
    world.clock.set(world.clock.now() + timedelta(days=31))
    async with await signed_in(world, HC) as hc:
        status, page, _ = await get(hc, world.base + link)
        assert status == 410 and "Länken är för gammal" in page


# --- Telegram: the Mottaget button marks the message done --------------------------------


async def test_pressing_mottaget_edits_the_message_for_everyone_in_the_chat(world: World) -> None:
    case = await registered(world)
    chat = CHATS[HC]
    message = await chat_says(world, chat, case["reference"])
    await press(world, chat, button(message, "Mottaget"))

    edits: list[Any] = []

    async def edited() -> bool:
        edits[:] = [
            c
            for c in world.telegram.calls_to("editMessageText")
            if str(c.params.get("chat_id")) == str(chat)
        ]
        return bool(edits)

    await eventually(edited, what="the acknowledged message to be edited")
    [edit] = edits
    assert "Mottaget</b> av Hälsocentralen Lugnvik 25 november kl. 09.00" in edit.params["text"]
    assert case["reference"] in edit.params["text"]  # the message itself stays
    assert not edit.params.get("reply_markup")  # the button is gone
    view = await world.case(case["id"])
    acked = next(r for r in view["recipients"] if r["organisation"] == HC)["acknowledged"]
    assert acked is not None
