"""The status board against the running service: sign-in, sessions, who sees what, acknowledging."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.usecases.sessions import COOKIE
from tests.support.world import World, arrival, eventually, running_world

SCHOOL = "ostersund-skola"
SCHOOL_CHAT = 1003


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        yield w


def browser() -> aiohttp.ClientSession:
    # The service listens on 127.0.0.1; aiohttp keeps cookies from IP hosts only when unsafe.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def signed_in(world: World, org_id: str, role: str = "member") -> aiohttp.ClientSession:
    """A browser session signed in as `org_id` through a one-time link."""
    token = await world.services.dashboard.create_login(org_id, role, "test")  # type: ignore[arg-type]
    client = browser()
    async with client.post(
        f"{world.base}/dashboard/login/{token}", allow_redirects=False
    ) as response:
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == "/dashboard"
    return client


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, str, Any]:
    async with client.get(url, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers


async def registered(world: World, **overrides: Any) -> dict[str, Any]:
    answer = await world.register(arrival(**overrides))
    await world.settled(answer["id"])
    return dict(answer)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no form token on the page"
    return found.group(1)


async def test_without_a_session_every_page_sends_you_to_sign_in(world: World) -> None:
    case = await registered(world)
    async with browser() as client:
        for path in ("/dashboard", f"/dashboard/cases/{case['id']}"):
            status, _, headers = await get(client, world.base + path)
            assert status == 303
            assert headers["Location"] == "/dashboard/login"
        async with client.post(
            f"{world.base}/dashboard/cases/{case['id']}/ack",
            data={"version": "1"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
        status, page, headers = await get(client, world.base + "/dashboard/login")
        assert status == 200 and "Logga in" in page
        assert 'name="viewport"' in page
        assert headers["Cache-Control"] == "no-store"
    assert not await world.services.cases.store.acks(case["id"])


async def test_a_sign_in_link_works_once_and_a_get_does_not_use_it(world: World) -> None:
    token = await world.services.dashboard.create_login(SCHOOL, "member", "test")
    url = f"{world.base}/dashboard/login/{token}"
    async with browser() as client:
        # A mail scanner's GET shows the button and leaves the link usable.
        for _ in range(2):
            status, page, _ = await get(client, url)
            assert status == 200
            assert '<button type="submit" class="primary">Logga in</button>' in page
        async with client.post(url, allow_redirects=False) as response:
            assert response.status == 303
            cookie = response.cookies[COOKIE]
            assert cookie["httponly"]
            assert cookie["samesite"] == "Lax"
            assert cookie["path"] == "/dashboard"
            assert not cookie["secure"]  # PUBLIC_URL is http:// in the tests
        status, page, _ = await get(client, world.base + "/dashboard")
        assert status == 200 and "Statustavla" in page
    async with browser() as other:
        async with other.post(url, allow_redirects=False) as response:
            assert response.status == 410
            assert "gäller inte längre" in await response.text()
            assert COOKIE not in response.cookies
        status, _, _ = await get(other, url)
        assert status == 410


async def test_a_sign_in_link_expires(world: World) -> None:
    token = await world.services.dashboard.create_login(SCHOOL, "member", "test")
    [key] = [k async for k in world.services.redis.scan_iter("ankomst:dashboard:login:*")]
    ttl = await world.services.redis.ttl(key)
    assert 0 < ttl <= 15 * 60
    assert token not in key  # stored by hash only
    await world.services.redis.delete(key)  # what the TTL does after 15 minutes
    async with (
        browser() as client,
        client.post(f"{world.base}/dashboard/login/{token}", allow_redirects=False) as response,
    ):
        assert response.status == 410


async def test_each_organisation_sees_only_its_own_cases(world: World) -> None:
    case = await registered(world)
    ref, path = case["reference"], f"/dashboard/cases/{case['id']}"
    berg_case = await world.register(
        arrival(external_ref="MIG-2026-999999", municipality="berg"), "berg-mottagning"
    )
    seen: dict[str, tuple[bool, int]] = {}
    for org_id in (SCHOOL, "berg-skola", "ostersund-ledning", "berg-ledning", "hc-lugnvik"):
        async with await signed_in(world, org_id) as client:
            _, board, _ = await get(client, world.base + "/dashboard")
            status, page, _ = await get(client, world.base + path)
            seen[org_id] = (ref in board, status)
            if status == 200:
                assert ref in page and "Historik" in page
            else:
                assert "hittades inte" in page and "Storgatan" not in page
    assert seen[SCHOOL] == (True, 200)
    assert seen["hc-lugnvik"] == (True, 200)
    assert seen["ostersund-ledning"] == (True, 200)  # management: its municipality's cases
    assert seen["berg-skola"] == (False, 404)
    assert seen["berg-ledning"] == (False, 404)
    async with await signed_in(world, "berg-ledning") as client:
        _, board, _ = await get(client, world.base + "/dashboard")
        assert berg_case["reference"] in board
    # Every case shown was logged as read (who, which case, through the board); refused reads
    # show nothing and are logged as refused (who tried which case), never as reads.
    entries = [fields for _, fields in await world.services.redis.xrange("ankomst:audit")]
    reads = [r for r in entries if r["what"] != "refused"]
    board_reads = {(r["by"], r["case"], r["via"]) for r in reads if r["via"].startswith("dash")}
    refused = {(r["by"], r["case"], r["reason"]) for r in entries if r["what"] == "refused"}
    assert refused == {(o, case["id"], "forbidden") for o in ("berg-skola", "berg-ledning")}
    assert (SCHOOL, case["id"], "dashboard") in board_reads
    assert (SCHOOL, case["id"], "dashboard:list") in board_reads
    assert ("ostersund-ledning", case["id"], "dashboard") in board_reads
    assert not {r for r in board_reads if r[0].startswith("berg") and r[1] == case["id"]}
    assert all(r["who"] == "test" for r in reads if r["via"].startswith("dash"))


async def test_a_forged_expired_or_signed_out_session_is_refused(world: World) -> None:
    client = await signed_in(world, SCHOOL)
    async with client:
        value = next(c.value for c in client.cookie_jar if c.key == COOKIE)
    base = world.base + "/dashboard"

    async def with_cookie(cookie: str) -> int:
        async with (
            browser() as c,
            c.get(
                base, headers={"Cookie": f"{COOKIE}={cookie}"}, allow_redirects=False
            ) as response,
        ):
            return response.status

    assert await with_cookie(value) == 200
    sid, _, rest = value.partition(".")
    assert await with_cookie("x" + value) == 303
    assert await with_cookie(sid + "." + rest[::-1]) == 303
    assert await with_cookie('"nonsense"') == 303
    # Past the session's lifetime (8 hours) the signature is too old.
    world.clock.advance(timedelta(hours=8, minutes=1))
    assert await with_cookie(value) == 303
    world.clock.advance(-timedelta(hours=8, minutes=1))
    assert await with_cookie(value) == 200
    # Signing out ends it everywhere: the same cookie no longer works.
    async with browser() as c:
        c.cookie_jar.update_cookies({COOKIE: value})
        _, page, _ = await get(c, base)
        async with c.post(
            world.base + "/dashboard/logout", data={"csrf": csrf_of(page)}, allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"].startswith("/dashboard/login")
    assert await with_cookie(value) == 303


async def test_the_acknowledge_button_acknowledges_for_the_organisation(world: World) -> None:
    case = await registered(world)
    path = f"{world.base}/dashboard/cases/{case['id']}"
    async with await signed_in(world, SCHOOL) as client:
        _, board, _ = await get(client, world.base + "/dashboard")
        assert "Väntar" in board
        status, page, _ = await get(client, path)
        assert status == 200 and "Bekräfta mottaget" in page
        token = csrf_of(page)
        # Without the session's form token nothing happens (another site cannot post it).
        async with client.post(
            path + "/ack", data={"version": "1", "csrf": "wrong"}, allow_redirects=False
        ) as response:
            assert response.status == 403
        assert not await world.services.cases.store.acks(case["id"])
        async with client.post(
            path + "/ack", data={"version": "1", "csrf": token}, allow_redirects=False
        ) as response:
            assert response.status == 303
            location = response.headers["Location"]
        status, page, _ = await get(client, world.base + location)
        assert "Mottaget är registrerat" in page
        assert "Bekräfta mottaget" not in page
        assert "✓ Bekräftat" in page
        acks = await world.services.cases.store.acks(case["id"])
        # The same form sent again (a double click, the browser sending it once more): the
        # person is told it is recorded, as it is, and nothing is written twice.
        async with client.post(
            path + "/ack", data={"version": "1", "csrf": token}, allow_redirects=False
        ) as response:
            assert response.headers["Location"] == location
    assert await world.services.cases.store.acks(case["id"]) == acks
    assert acks[f"1:{SCHOOL}"]["via"] == "dashboard"
    history = await world.services.cases.store.history(case["id"])
    assert [h["via"] for h in history if h["what"] == "acknowledged"] == ["dashboard"]
    # Someone else at the school, signed in apart, is told it was already done.
    async with await signed_in(world, SCHOOL) as client:
        _, page, _ = await get(client, path)
        async with client.post(
            path + "/ack", data={"version": "1", "csrf": csrf_of(page)}, allow_redirects=False
        ) as response:
            assert response.headers["Location"].endswith("?kvittens=already")
        _, page, _ = await get(client, world.base + response.headers["Location"])
        assert "Er organisation hade redan bekräftat den här versionen." in page
    # Management sees the case but has nothing to acknowledge on it.
    async with await signed_in(world, "ostersund-ledning") as client:
        _, page, _ = await get(client, path)
        assert "Bekräfta mottaget" not in page


async def test_sign_in_by_e_mail_sends_a_link_and_does_not_reveal_the_directory(
    world: World,
) -> None:
    address = "skola@ostersund.example.se"
    before = len(world.mails_to(address))
    answers = []
    async with browser() as client:
        for typed in (address.upper(), "nobody@example.se", "not an address"):
            async with client.post(
                world.base + "/dashboard/login", data={"email": typed}
            ) as response:
                answers.append((response.status, await response.text()))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 200 and "Om adressen tillhör" in answers[0][1]

    async def mailed() -> bool:
        return len(world.mails_to(address)) > before

    await eventually(mailed, 10, "the sign-in mail")
    assert not world.mails_to("nobody@example.se")
    mail = world.mails_to(address)[-1]
    text = str(mail.get_body(preferencelist=("plain",)).get_content())
    link = re.search(r"http://ankomst\.example\.se(/dashboard/login/\S+)", text)
    assert link, text
    async with browser() as client:
        async with client.post(world.base + link.group(1), allow_redirects=False) as response:
            assert response.status == 303
        status, page, _ = await get(client, world.base + "/dashboard")
        assert status == 200 and "Lugnviksskolan" in page


async def test_tavla_in_a_linked_chat_replies_with_a_link_that_signs_in(world: World) -> None:
    case = await registered(world)
    before = len(world.telegram.sent_to(SCHOOL_CHAT))
    world.telegram.push_update(world.telegram.message_update(SCHOOL_CHAT, "/tavla"))

    async def replied() -> bool:
        return any(
            "/dashboard/login/" in (c.text or "")
            for c in world.telegram.sent_to(SCHOOL_CHAT)[before:]
        )

    await eventually(replied, 10, "the /tavla reply")
    reply = [
        c for c in world.telegram.sent_to(SCHOOL_CHAT) if "/dashboard/login/" in (c.text or "")
    ][-1]
    link = re.search(
        r"http://ankomst\.example\.se(/dashboard/login/[A-Za-z0-9_-]+)", reply.text or ""
    )
    assert link
    async with browser() as client:
        async with client.post(world.base + link.group(1), allow_redirects=False) as response:
            assert response.status == 303
        _, page, _ = await get(client, world.base + "/dashboard")
        assert case["reference"] in page
    # An unlinked chat gets no link.
    world.telegram.push_update(world.telegram.message_update(4242, "/tavla"))

    async def refused() -> bool:
        return bool(world.telegram.sent_to(4242))

    await eventually(refused, 10, "the refusal")
    assert all("/dashboard/login/" not in (c.text or "") for c in world.telegram.sent_to(4242))


async def test_the_board_shows_deadlines_and_escalations(world: World) -> None:
    case = await registered(world)
    async with await signed_in(world, "ostersund-ledning") as client:
        _, page, _ = await get(client, world.base + "/dashboard")
        assert "Tidsgränser" in page and "Bekräftelse" in page
    # Two working days on, the unacknowledged recipients have been reminded and escalated.
    world.clock.advance(timedelta(days=1, hours=2))
    await world.tick()
    await world.tick()
    history = await world.services.cases.store.history(case["id"])
    escalated = [h for h in history if h["what"] == "ack_escalation"]
    assert escalated, json.dumps(history, ensure_ascii=False)
    async with await signed_in(world, "ostersund-ledning") as client:
        _, page, _ = await get(client, world.base + "/dashboard")
        assert "Eskalerat: inte bekräftat i tid" in page
        assert "Försenad" in page


RECEPTION = "ostersund-mottagning"


def form_body(csrf: str, **overrides: Any) -> dict[str, Any]:
    """The registration form as a browser posts it (a valid one unless overridden)."""
    body: dict[str, Any] = {
        "csrf": csrf,
        "nonce": "0123456789abcdef",
        "ref_mode": "none",
        "external_ref": "",
        "arrival_date": "2026-12-07",
        "ages": "9, 4",
        "lang": "ar",
        "other_languages": "",
        "interpreter_needed": "ja",
        "unaccompanied": "nej",
        "details": "Rad ett\nRad två",
        "mottagare": "standard",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


async def post(
    client: aiohttp.ClientSession, url: str, data: dict[str, Any]
) -> tuple[int, str, Any]:
    async with client.post(url, data=data, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers


async def test_the_registration_form_shows_each_error_beside_its_field_and_keeps_the_values(
    world: World,
) -> None:
    async with await signed_in(world, RECEPTION) as client:
        status, page, _ = await get(client, world.base + "/dashboard/ny")
        assert status == 200 and "Ny ankomst" in page
        csrf = csrf_of(page)
        status, page, _ = await post(
            client,
            world.base + "/dashboard/ny",
            form_body(
                csrf,
                arrival_date="2020-01-01",
                ages="9, tjugo",
                lang=None,
                other_languages="",
                interpreter_needed=None,
                details="Ring 19121212-1212",
            ),
        )
        assert status == 400
        # Each error beside its field, linked by aria-describedby, listed in the summary.
        for field in ("arrival_date", "ages", "languages", "interpreter_needed", "details"):
            assert f'id="{field}-fel"' in page, field
            assert f'href="#{field}"' in page, field
        assert 'aria-describedby="arrival_date-tips arrival_date-fel"' in page
        assert "bakåt i tiden" in page and "person- eller samordningsnummer" in page
        assert "Välj ja eller nej." in page
        # What was typed is kept.
        assert 'value="9, tjugo"' in page and ">Ring 19121212-1212</textarea>" in page
    assert not await world.services.cases.store.ids(open_only=False, municipality=None, org=None)


async def test_the_summary_confirms_and_a_double_submit_registers_once(world: World) -> None:
    async with await signed_in(world, RECEPTION) as client:
        _, page, _ = await get(client, world.base + "/dashboard/ny")
        csrf = csrf_of(page)
        status, page, _ = await post(client, world.base + "/dashboard/ny", form_body(csrf))
        assert status == 200 and "Kontrollera och skicka" in page
        assert "Hälsocentralen" in page or "Lugnvik" in page
        assert not await world.services.cases.store.ids(
            open_only=False, municipality=None, org=None
        )
        answers = [
            await post(client, world.base + "/dashboard/ny/bekrafta", form_body(csrf))
            for _ in range(2)
        ]
        assert [a[0] for a in answers] == [303, 303]
        assert answers[0][2]["Location"] == answers[1][2]["Location"]
        ids = await world.services.cases.store.ids(open_only=False, municipality=None, org=None)
        assert len(ids) == 1
        case = await world.services.cases.store.get(ids[0])
        assert case.facts["details"] == "Rad ett\nRad två"
        assert case.facts["languages"] == ["ar"]
        status, page, _ = await get(client, world.base + answers[0][2]["Location"])
        assert "Ankomsten är registrerad" in page
        assert "Ändra datum" in page and "Ställ in ankomsten" in page


async def test_a_post_without_or_with_another_sessions_token_is_refused_and_changes_nothing(
    world: World,
) -> None:
    case = await registered(world)
    other = await signed_in(world, SCHOOL)
    async with other, await signed_in(world, RECEPTION) as client:
        _, school_page, _ = await get(other, f"{world.base}/dashboard/cases/{case['id']}")
        foreign = csrf_of(school_page)
        attempts = [
            ("/dashboard/ny/bekrafta", form_body("")),
            ("/dashboard/ny/bekrafta", form_body(foreign)),
            (f"/dashboard/cases/{case['id']}/installd", {"reason": "Flyttar", "csrf": foreign}),
            (f"/dashboard/cases/{case['id']}/datum", {"arrival_date": "2026-12-09"}),
            (f"/dashboard/cases/{case['id']}/ack", {"version": "1", "csrf": foreign}),
        ]
        for path, data in attempts:
            status, page, _ = await post(client, world.base + path, data)
            assert status == 403, path
            assert "Formuläret gäller inte längre" in page and 'lang="sv"' in page
    ids = await world.services.cases.store.ids(open_only=False, municipality=None, org=None)
    assert ids == [case["id"]]
    stored = await world.services.cases.store.get(case["id"])
    assert stored.version == 1 and stored.status != "cancelled"


async def test_date_change_and_cancel_use_the_core_rules(world: World) -> None:
    case = await registered(world)
    async with await signed_in(world, SCHOOL) as school:
        _, page, _ = await get(school, f"{world.base}/dashboard/cases/{case['id']}")
        assert "Ställ in ankomsten" not in page  # only the reception unit
        status, page, _ = await post(
            school,
            f"{world.base}/dashboard/cases/{case['id']}/installd",
            {"reason": "x", "csrf": csrf_of(page)},
        )
        assert status == 403 and "mottagningsenheten" in page
    async with await signed_in(world, RECEPTION) as client:
        _, page, _ = await get(client, f"{world.base}/dashboard/cases/{case['id']}")
        # The forms stand once, in the page's main part: no id twice, nothing in the header.
        assert page.count('id="arrival_date"') == 1 and page.count('id="reason"') == 1
        assert "Ändra datum" not in page.split("<main", 1)[0]
        csrf = csrf_of(page)
        url = f"{world.base}/dashboard/cases/{case['id']}"
        status, page, _ = await post(client, url + "/installd", {"csrf": csrf, "reason": " "})
        assert status == 400 and 'id="reason-fel"' in page and "Ange varför" in page
        status, page, headers = await post(
            client, url + "/datum", {"csrf": csrf, "arrival_date": "2026-12-09"}
        )
        assert status == 303, page
        _, page, _ = await get(client, world.base + headers["Location"])
        assert "Det nya datumet är sparat" in page
        assert "→" in page and "9 december 2026" in page  # the history says old → new
        status, _, _ = await post(
            client, url + "/installd", {"csrf": csrf, "reason": "Familjen\nflyttar"}
        )
        assert status == 303
    stored = await world.services.cases.store.get(case["id"])
    assert stored.status == "cancelled" and stored.version == 3


async def test_a_draft_prefills_the_form(world: World) -> None:
    from bot.store import keys

    await world.services.redis.hset(
        keys.notice_draft("d1"),
        mapping={"arrival_date": "2026-12-08", "ages": "7", "languages": "so,kmr"},
    )
    async with await signed_in(world, RECEPTION) as client:
        _, page, _ = await get(client, world.base + "/dashboard/ny?draft=d1")
        assert 'value="2026-12-08"' in page and 'value="7"' in page
        assert 'value="so" checked' in page and 'value="kmr"' in page
        _, page, _ = await get(client, world.base + "/dashboard/ny?draft=saknas")
        assert "Utkastet finns inte längre" in page and 'value="2026-12-08"' not in page


async def test_the_sign_in_form_is_limited_per_address_and_per_client(world: World) -> None:
    async with browser() as client:
        answers = [
            await post(client, world.base + "/dashboard/login", {"email": "x@example.se"})
            for _ in range(6)
        ]
        assert [a[0] for a in answers] == [200] * 5 + [429]
        assert "För många försök" in answers[5][1]
        # Other addresses from the same client count against the client's limit (20 in the
        # window; the six above are counted too).
        statuses = [
            (await post(client, world.base + "/dashboard/login", {"email": f"a{i}@example.se"}))[0]
            for i in range(16)
        ]
        assert statuses[-1] == 429 and statuses.count(200) == 14
    ttls = [
        await world.services.redis.ttl(key)
        async for key in world.services.redis.scan_iter("ankomst:dashboard:attempts:*")
    ]
    assert ttls and all(0 < t <= 15 * 60 for t in ttls)


async def _signed_in_by_mail(
    world: World, address: str, typed: str | None = None
) -> aiohttp.ClientSession:
    """Sign in the way a person without a chat does: type the address, follow the mailed link."""
    before = len(world.mails_to(address))
    async with browser() as client:
        await post(client, world.base + "/dashboard/login", {"email": typed or address})

    async def mailed() -> bool:
        return len(world.mails_to(address)) > before

    await eventually(mailed, 10, f"the sign-in mail to {address}")
    mail = world.mails_to(address)[-1]
    text = str(mail.get_body(preferencelist=("plain",)).get_content())
    link = re.search(r"http://ankomst\.example\.se(/dashboard/login/\S+)", text)
    assert link, text
    client = browser()
    async with client.post(world.base + link.group(1), allow_redirects=False) as response:
        assert response.status == 303
    return client


async def test_a_supervisor_address_in_the_directory_signs_in_as_supervisor_by_mail(
    world: World,
) -> None:
    """A rektor without a chat signs in with the address the directory lists under
    `supervisor_emails` and may escalate; the school's functional mailbox may not."""
    from bot.domain.actor import Actor
    from bot.usecases.disagreements import DisagreementIn

    case = await registered(world)
    school = Actor(org_id=SCHOOL, via="dashboard")
    raised = await world.services.disagreements.raise_(
        case["id"], DisagreementIn(text="Skolstarten bör vänta till januari."), school
    )
    where = f"/dashboard/oenigheter/{raised.id}"
    async with await _signed_in_by_mail(world, "skola@ostersund.example.se") as member:
        _, page, _ = await get(member, world.base + where)
        assert "Lyft till ledningen</button>" not in page
    # Typed as people type it: capitals and spaces around.
    rektor = "rektor.lugnvik@ostersund.example.se"
    async with await _signed_in_by_mail(
        world, rektor, " Rektor.Lugnvik@Ostersund.example.se "
    ) as boss:
        _, page, _ = await get(boss, world.base + where)
        assert "Lyft till ledningen</button>" in page
        status, _, headers = await post(boss, world.base + f"{where}/lyft", {"csrf": csrf_of(page)})
        assert status == 303 and headers["Location"].endswith("?klart=lyft")
    d = await world.services.disagreements.get(raised.id)
    assert d.status == "escalated" and d.escalated_by == SCHOOL
    # The audit trail tells a supervisor's mailed sign-in from the mailbox's.
    sessions = [
        await world.services.redis.hgetall(key)
        async for key in world.services.redis.scan_iter("ankomst:dashboard:session:*")
    ]
    assert {(s["role"], s["who"]) for s in sessions} >= {
        ("member", "e-postlänk"),
        ("supervisor", "e-postlänk (chef)"),
    }


async def notice_draft(world: World) -> str:
    """A draft as the mailbox listener makes it from a notice that came now (a Wednesday)."""
    from bot.domain.notice import NoticeDraft

    draft = NoticeDraft(
        external_ref="mv-0123456789abcdef01234567",
        arrival_date=date(2026, 12, 7),
        ages=(9, 4),
        languages=("ar",),
        unaccompanied=False,
        interpreter_needed=True,
        people=4,
    )
    draft_id, _ = await world.services.drafts.make(draft, RECEPTION, world.clock.now())
    await world.drain()
    return draft_id


def hidden_fields(page: str, action: str) -> dict[str, Any]:
    """The hidden fields of the page's form posting to `action`, as the browser posts them."""
    form = page.split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


async def test_a_draft_confirmed_in_the_browser_confirms_the_draft(world: World) -> None:
    from bot.store import keys
    from bot.usecases.notices import CONFIRMED, NOTICE_RECEIVED_AT

    draft_id = await notice_draft(world)
    async with await signed_in(world, RECEPTION) as client:
        status, page, _ = await get(client, f"{world.base}/dashboard/ny?draft={draft_id}")
        assert status == 200
        assert "Utkast från en avisering som kom onsdag 25 november 2026 kl. 09.00" in page
        assert f'<input type="hidden" name="draft" value="{draft_id}">' in page
        assert 'value="9, 4"' in page and 'value="2026-12-07"' in page
        assert "Kasta avisering" in page
        csrf = csrf_of(page)
        body = form_body(
            csrf,
            ref_mode="ref",
            external_ref="mv-0123456789abcdef01234567",
            details="",
            draft=draft_id,
        )
        status, summary, _ = await post(client, world.base + "/dashboard/ny", body)
        assert status == 200 and "Kontrollera och skicka" in summary
        assert "Utkast från en avisering som kom" in summary
        carried = hidden_fields(summary, "/dashboard/ny/bekrafta")
        assert carried["draft"] == draft_id
        status, _, headers = await post(client, world.base + "/dashboard/ny/bekrafta", carried)
        assert status == 303, headers
        s = world.services
        stored = await s.drafts.get(draft_id)
        assert stored["status"] == CONFIRMED
        assert headers["Location"] == f"/dashboard/cases/{stored['case']}?kvittens=registered"
        received = await s.redis.hget(keys.case(stored["case"]), NOTICE_RECEIVED_AT)
        assert received == stored["received_at"]
        assert (await s.drafts.history(draft_id))[-1]["via"] == "dashboard"
        # Once confirmed, the link shows what became of it, not the form.
        status, page, _ = await get(client, f"{world.base}/dashboard/ny?draft={draft_id}")
        case = await s.cases.store.get(stored["case"])
        assert status == 409 and "redan bekräftad" in page and case.reference in page
        assert 'action="/dashboard/ny"' not in page
    # The same-day alert timers no longer fire.
    world.clock.set(world.clock.now().replace(hour=18))
    await world.tick()
    assert not any(
        "Ej skickad" in str(m["Subject"]) for m in world.mails_to("mottagning@ostersund.example.se")
    )


async def test_a_draft_is_discarded_in_the_browser_with_a_reason(world: World) -> None:
    from bot.store import keys
    from bot.usecases.audit import export
    from bot.usecases.notices import DISCARDED, NEW

    draft_id = await notice_draft(world)
    async with await signed_in(world, RECEPTION) as client:
        _, page, _ = await get(client, f"{world.base}/dashboard/ny?draft={draft_id}")
        discard = hidden_fields(page, "/dashboard/ny/kasta")
        assert discard["draft"] == draft_id
        status, page, _ = await post(
            client, world.base + "/dashboard/ny/kasta", {**discard, "reason": "  "}
        )
        assert status == 400 and 'id="reason-fel"' in page and "Ange varför" in page
        assert 'aria-describedby="reason-tips reason-fel"' in page
        assert (await world.services.drafts.get(draft_id))["status"] == NEW
        status, _, headers = await post(
            client,
            world.base + "/dashboard/ny/kasta",
            {**discard, "reason": "Dubblett av en avisering vi redan har"},
        )
        assert status == 303 and headers["Location"] == "/dashboard?kvittens=draft_discarded"
        _, board, _ = await get(client, world.base + headers["Location"])
        assert "Aviseringen är kastad" in board
        assert (await world.services.drafts.get(draft_id))["status"] == DISCARDED
        status, page, _ = await get(client, f"{world.base}/dashboard/ny?draft={draft_id}")
        assert status == 409 and "redan kastad" in page and "Kasta avisering" not in page
        # Confirming a discarded draft through a form left open is refused in words.
        carried = form_body(
            discard["csrf"], ref_mode="ref", external_ref="mv-0123456789abcdef01234567"
        )
        status, page, _ = await post(
            client, world.base + "/dashboard/ny/bekrafta", {**carried, "draft": draft_id}
        )
        assert status == 409 and "redan kastad" in page
    assert not await world.services.cases.store.ids(open_only=False, municipality=None, org=None)
    audit = [f for _, f in await world.services.redis.xrange(keys.AUDIT)]
    assert [f["what"] for f in audit if f.get("draft") == draft_id] == ["draft_discarded"]
    # `ankomst audit export` names it as what it is, not a read.
    rows = [json.loads(line) async for line in export(world.services.redis)]
    assert [r["kind"] for r in rows if r.get("draft") == draft_id] == ["draft_discarded"]
