"""The workplace in a real browser (headless Chromium, Playwright): the health centre follows
the link in its mail, signs in, reports a booking and a clearance, and the school sees only
"Start kan ske"; a supervisor escalates a disagreement and management resolves it. axe-core
checks every page and state on the way (WCAG 2.1 A and AA)."""

from __future__ import annotations

import re
from typing import Any

from tests.e2e.test_dashboard_browser import no_violations, page, registered, world
from tests.support.world import World, eventually

__all__ = ["page", "world"]  # the fixtures, shared with the board's browser tests

HC_ADDRESS = "hc-lugnvik@regionjh.example.se"
SCHOOL = "ostersund-skola"
MANAGEMENT = "ostersund-ledning"


def text_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


async def sign_in_as(world: World, page: Any, org_id: str, role: str = "member") -> None:
    token = await world.services.dashboard.create_login(org_id, role, "browser")  # type: ignore[arg-type]
    await page.goto(f"{world.base}/dashboard/login/{token}")
    await page.get_by_role("button", name="Logga in").click()
    await page.wait_for_url(f"{world.base}/dashboard")


async def test_the_health_centre_follows_its_mail_signs_in_books_and_clears(
    world: World, page: Any
) -> None:
    case = await registered(world)
    mail = next(m for m in world.mails_to(HC_ADDRESS) if case["reference"] in str(m["Subject"]))
    found = re.search(r"Rapportera bokad tid: (\S+)", text_of(mail))
    assert found
    link = found.group(1).replace("http://ankomst.example.se", world.base)

    # Not signed in: the link leads to the sign-in form, which mails a link that leads back.
    await page.goto(link)
    assert "/dashboard/login?next=" in page.url
    await no_violations(page, "sign-in with next")
    await page.get_by_label("Organisationens e-postadress").fill(HC_ADDRESS)
    await page.get_by_role("button", name="Skicka länk").click()
    await page.wait_for_load_state()

    def login_mail() -> Any:
        return next(
            (m for m in world.mails_to(HC_ADDRESS) if "Inloggningslänk" in str(m["Subject"])),
            None,
        )

    async def mailed() -> bool:
        return login_mail() is not None

    await eventually(mailed, what="the sign-in mail")
    sign_in = re.search(r"(http://\S+/dashboard/login/\S+)", text_of(login_mail()))
    assert sign_in
    await page.goto(sign_in.group(1).replace("http://ankomst.example.se", world.base))
    await page.get_by_role("button", name="Logga in").click()
    await page.wait_for_url(re.compile(r".*/dashboard/cases/[^/]+/halsa(#bokning)?$"))
    await no_violations(page, "health centre's forms")

    # A Saturday first: the refusal stands beside the date, what was typed is kept.
    await page.get_by_label("Datum").fill("2026-11-28")
    await page.get_by_label("Klockslag").fill("09:30")
    await page.locator("#tolk-ja").check()
    await page.get_by_role("button", name="Rapportera bokad tid").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("ingen arbetsdag", exact=False).first.is_visible()
    assert await page.get_by_label("Klockslag").input_value() == "09:30"
    await no_violations(page, "booking form with errors")

    await page.get_by_label("Datum").fill("2026-12-01")
    await page.get_by_role("button", name="Rapportera bokad tid").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("Den bokade tiden är rapporterad").is_visible()

    await page.locator("#svar-ja").check()
    await page.locator("#hinder-nej").check()
    await page.get_by_role("button", name="Lämna klarbesked").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("Klarbeskedet är lämnat", exact=False).is_visible()
    view = await world.case(case["id"])
    assert view["booking"]["interpreter_booked"] is True
    assert view["clearance"]["may_start"] is True

    # The school sees only that the start may go ahead.
    await page.context.clear_cookies()
    await sign_in_as(world, page, SCHOOL)
    await page.goto(f"{world.base}/dashboard/cases/{case['id']}")
    body = await page.inner_text("main")
    assert "Start kan ske" in body
    assert "tolk bokad" not in body and "09.30" not in body


async def test_a_supervisor_escalates_and_management_resolves(world: World, page: Any) -> None:
    case = await registered(world)
    await sign_in_as(world, page, SCHOOL)
    await page.goto(f"{world.base}/dashboard/cases/{case['id']}")
    await page.get_by_role("link", name="Anmäl oenighet").click()
    await no_violations(page, "raise form")
    await page.get_by_role("button", name="Anmäl oenighet").click()
    await page.wait_for_load_state()
    await no_violations(page, "raise form with errors")
    await page.get_by_label("Vad är ni oeniga om?").fill("Skolstarten bör vänta till januari.")
    await page.get_by_role("button", name="Anmäl oenighet").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("Oenigheten är anmäld").is_visible()
    where = page.url.split("?")[0]

    await page.context.clear_cookies()
    await sign_in_as(world, page, SCHOOL, "supervisor")
    await page.goto(where)
    await no_violations(page, "disagreement (supervisor)")
    await page.get_by_role("button", name="Lyft till ledningen").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("lyft till ledningen för varje part").is_visible()

    await page.context.clear_cookies()
    await sign_in_as(world, page, MANAGEMENT)
    await page.goto(where)
    await page.get_by_label("Beslut").fill("Start i januari; skolan förbereder.")
    await page.get_by_role("button", name="Avgör oenigheten").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("Oenigheten är avgjord").is_visible()
    await no_violations(page, "disagreement resolved")
    ident = where.rsplit("/", 1)[1]
    assert (await world.services.disagreements.get(ident)).status == "resolved"
