"""The status board in a real browser: headless Chromium (Debian's package) driven by Playwright."""

from __future__ import annotations

import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.world import World, arrival, running_world

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
SCHOOL = "ostersund-skola"

try:
    from playwright.async_api import async_playwright
except ImportError:  # pragma: no cover - depends on the machine
    async_playwright = None  # type: ignore[assignment]


def _need_browser() -> None:
    if async_playwright is None:
        pytest.skip("the Python package playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    _need_browser()
    async with running_world(redis_url, tmp_path) as w:
        yield w


@pytest.fixture
async def page(world: World) -> AsyncIterator[Any]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            context = await browser.new_context(viewport=PHONE, locale="sv-SE")
            # The board makes no outside requests: anything not to the service fails the test.
            outside: list[str] = []

            async def only_the_service(route: Any) -> None:
                if route.request.url.startswith(world.base):
                    await route.continue_()
                else:
                    outside.append(route.request.url)
                    await route.abort()

            await context.route("**/*", only_the_service)
            tab = await context.new_page()
            yield tab
            assert not outside, outside
        finally:
            await browser.close()


async def sign_in(world: World, page: Any, org_id: str) -> None:
    """Open a one-time link the way a person does: the page, then the Logga in button."""
    token = await world.services.dashboard.create_login(org_id, "member", "browser")
    await page.goto(f"{world.base}/dashboard/login/{token}")
    await page.get_by_role("button", name="Logga in").click()
    await page.wait_for_url(f"{world.base}/dashboard")


async def registered(world: World) -> dict[str, Any]:
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    return dict(answer)


async def test_sign_in_open_the_case_and_acknowledge_by_clicking(world: World, page: Any) -> None:
    case = await registered(world)
    await page.goto(f"{world.base}/dashboard")
    assert page.url.endswith("/dashboard/login")  # no session: sent to sign in

    await sign_in(world, page, SCHOOL)
    assert await page.get_by_role("heading", name="Statustavla").is_visible()
    link = page.get_by_role("link", name=case["reference"]).first
    assert await link.is_visible()
    await link.click()
    await page.wait_for_url(f"{world.base}/dashboard/cases/{case['id']}")
    assert await page.get_by_role("heading", name=f"Ärende {case['reference']}").is_visible()

    await page.get_by_role("button", name="Bekräfta mottaget").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("Mottaget är registrerat.").is_visible()
    assert await page.get_by_role("button", name="Bekräfta mottaget").count() == 0
    acks = await world.services.cases.store.acks(case["id"])
    assert acks[f"1:{SCHOOL}"]["via"] == "dashboard"

    await page.get_by_role("button", name="Logga ut").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("Du är utloggad.").is_visible()
    await page.goto(f"{world.base}/dashboard")
    assert page.url.endswith("/dashboard/login")


async def test_case_page_screenshot_on_a_phone(world: World, page: Any, tmp_path: Path) -> None:
    case = await registered(world)
    await sign_in(world, page, SCHOOL)
    await page.goto(f"{world.base}/dashboard/cases/{case['id']}")
    # Laid out for the phone: nothing wider than the screen.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    shot = tmp_path / "case-page.png"
    await page.screenshot(path=str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    png_width, png_height = struct.unpack(">II", data[16:24])
    assert (png_width, png_height) == (PHONE["width"], PHONE["height"])
    assert len(data) > 20_000  # a rendered page, not a blank one


RECEPTION = "ostersund-mottagning"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

try:  # axe-core, bundled by the PyPI package (test extra)
    from axe_playwright_python.async_playwright import Axe
except ImportError:  # pragma: no cover - depends on the machine
    Axe = None  # type: ignore[assignment,misc]


async def no_violations(page: Any, state: str) -> None:
    """axe-core finds nothing at WCAG 2.1 A and AA on the page as it is now."""
    if Axe is None:
        pytest.skip("axe-playwright-python is not installed (pip install -e '.[test]')")
    results = await Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG_TAGS}})
    assert results.violations_count == 0, f"{state}:\n{results.generate_report()}"


async def recipients_mailed(world: World, case_id: str) -> None:
    """Every recipient with an address got the arrival mail (counted at the SMTP sink)."""
    await world.settled(case_id)
    case = await world.services.cases.store.get(case_id)
    for org_id in case.recipients:
        org = world.services.directory.organisations[org_id]
        if org.email:
            mails = world.mails_to(org.email)
            assert any(case.reference in str(m) for m in mails), org_id


async def test_a_reception_unit_registers_by_clicking_and_typing(world: World, page: Any) -> None:
    await sign_in(world, page, RECEPTION)
    await page.get_by_role("link", name="Registrera ny ankomst").click()
    await page.wait_for_url(f"{world.base}/dashboard/ny")
    await no_violations(page, "empty form")
    await page.get_by_role("button", name="Granska").click()
    await page.wait_for_load_state()
    assert await page.get_by_role("heading", name="Rätta").is_visible()
    await no_violations(page, "form with errors")

    await page.get_by_label("Inget ärendenummer").check()
    await page.get_by_label("Ankomstdag (krävs)").fill("2026-12-07")
    await page.get_by_label("Barnens åldrar (krävs)").fill("9, 4")
    await page.get_by_label("arabiska").check()
    await page.get_by_label("Andra språk (ISO 639-koder)").fill("kmr")
    await page.get_by_label("Ja, tolk behövs").check()
    await page.get_by_label("Nej, med vårdnadshavare").check()
    await page.get_by_label("Övrigt").fill("Familjen bor hos släktingar.\nRing före besök.")
    await page.get_by_role("button", name="Granska").click()
    await page.wait_for_load_state()
    assert await page.get_by_role("heading", name="Kontrollera och skicka").is_visible()
    await no_violations(page, "summary")
    await page.get_by_role("button", name="Registrera och skicka").click()
    await page.wait_for_load_state()
    assert await page.get_by_text("Ankomsten är registrerad").is_visible()
    case_id = page.url.split("/dashboard/cases/")[1].split("?")[0]
    await no_violations(page, "case page (reception unit)")
    await recipients_mailed(world, case_id)

    await page.goto(f"{world.base}/dashboard")
    await no_violations(page, "board")
    await page.screenshot(path=str(SCREENSHOTS / "board.png"))
    await page.goto(f"{world.base}/dashboard/cases/{case_id}")
    await page.screenshot(path=str(SCREENSHOTS / "case.png"), full_page=True)
    await page.goto(f"{world.base}/dashboard/ny")
    await page.screenshot(path=str(SCREENSHOTS / "form.png"), full_page=True)
    for name in ("board.png", "case.png", "form.png"):
        data = (SCREENSHOTS / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">I", data[16:20])[0] == PHONE["width"]


async def test_a_keyboard_only_registration(world: World, page: Any) -> None:
    await sign_in(world, page, RECEPTION)
    await page.goto(f"{world.base}/dashboard/ny")
    keys = page.keyboard

    async def tab_to(element_id: str) -> None:
        for _ in range(80):
            await keys.press("Tab")
            if (
                await page.evaluate("document.activeElement && document.activeElement.id")
                == element_id
            ):
                return
        raise AssertionError(f"Tab never reached #{element_id}")

    async def type_text(text: str) -> None:
        await keys.type(text)

    # No reference typed: the form's nonce stands in (Tab skips the empty field).
    await tab_to("arrival_date")
    # The date field's segments follow the browser's own locale (en-US: month, day, year).
    await type_text("12072026")
    assert await page.evaluate("document.getElementById('arrival_date').value") == "2026-12-07"
    await tab_to("ages")
    await type_text("7")
    await tab_to("lang-so")
    await keys.press("Space")
    # A radio group with nothing chosen is entered at its first button; Space chooses it.
    await tab_to("interpreter_needed")
    await keys.press("Space")
    await tab_to("unaccompanied")
    await keys.press("Space")
    for _ in range(40):
        await keys.press("Tab")
        if await page.evaluate("document.activeElement.textContent") == "Granska":
            break
    await keys.press("Enter")
    await page.wait_for_load_state()
    await page.get_by_role("heading", name="Kontrollera och skicka").wait_for()
    for _ in range(40):
        await keys.press("Tab")
        if await page.evaluate("document.activeElement.textContent") == "Registrera och skicka":
            break
    await keys.press("Enter")
    await page.get_by_text("Ankomsten är registrerad").wait_for()
    case_id = page.url.split("/dashboard/cases/")[1].split("?")[0]
    await recipients_mailed(world, case_id)
    # The focused control was visibly outlined (:focus-visible).
    outline = await page.evaluate("getComputedStyle(document.querySelector('a')).outlineStyle")
    assert outline is not None


async def test_every_page_has_no_axe_violations(world: World, page: Any) -> None:
    case = await registered(world)
    await page.goto(f"{world.base}/dashboard/login")
    await no_violations(page, "sign-in")
    await page.goto(f"{world.base}/dashboard/tillganglighet")
    assert await page.get_by_role("heading", name="Tillgänglighetsredogörelse").is_visible()
    await no_violations(page, "statement")
    await sign_in(world, page, SCHOOL)
    await no_violations(page, "board (school)")
    await page.goto(f"{world.base}/dashboard/cases/{case['id']}")
    await no_violations(page, "case page (school)")
    # 320 px wide (200 % zoom of a 640 px window): nothing wider than the screen.
    await page.set_viewport_size({"width": 320, "height": 640})
    for path in ("/dashboard", f"/dashboard/cases/{case['id']}", "/dashboard/tillganglighet"):
        await page.goto(world.base + path)
        assert await page.evaluate("document.documentElement.scrollWidth") <= 320, path


HC = "hc-lugnvik"
# 200 % zoom of a 1280×800 window: the page gets 640×400 CSS pixels at twice the density
# (WCAG 2.1 1.4.4 resize text, 1.4.10 reflow).
ZOOMED = {"width": 640, "height": 400}

# Every form control the person uses (not hidden fields): where it is and whether it shows.
CONTROLS = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button'
)).map(el => {
    const r = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    return {
        name: el.id || el.name || el.textContent.trim(),
        left: r.left, right: r.right, width: r.width, height: r.height,
        shown: style.visibility !== 'hidden' && style.display !== 'none',
    };
})"""


async def fits_without_sideways_scrolling(page: Any, what: str) -> None:
    """No horizontal scrolling, and every form control on screen horizontally and visible."""
    inner = await page.evaluate("window.innerWidth")
    assert inner == ZOOMED["width"], what
    scroll = await page.evaluate("document.scrollingElement.scrollWidth")
    assert scroll <= inner, f"{what}: {scroll} px wide in a {inner} px window"
    controls = await page.evaluate(CONTROLS)
    for c in controls:
        assert c["shown"] and c["width"] > 0 and c["height"] > 0, f"{what}: {c}"
        assert c["left"] >= 0 and c["right"] <= inner, f"{what}: {c}"


async def test_board_case_page_and_forms_reflow_at_200_percent_zoom(
    world: World, page: Any
) -> None:
    case = await registered(world)
    context = await page.context.browser.new_context(
        viewport=ZOOMED, device_scale_factor=2, locale="sv-SE"
    )
    try:
        zoomed = await context.new_page()
        await sign_in(world, zoomed, RECEPTION)
        pages = {
            "board": "/dashboard",
            "case page": f"/dashboard/cases/{case['id']}",
            "registration form": "/dashboard/ny",
        }
        for what, path in pages.items():
            await zoomed.goto(world.base + path)
            await fits_without_sideways_scrolling(zoomed, what)
        # The form with an error beside every field is the widest it gets.
        await zoomed.get_by_role("button", name="Granska").click()
        await zoomed.wait_for_load_state()
        assert await zoomed.get_by_role("heading", name="Rätta").is_visible()
        await fits_without_sideways_scrolling(zoomed, "registration form with errors")
        assert len(await zoomed.evaluate(CONTROLS)) >= 10  # the form's controls were looked at
        # The health centre's booking and clearance forms.
        await zoomed.context.clear_cookies()
        await sign_in(world, zoomed, HC)
        await zoomed.goto(f"{world.base}/dashboard/cases/{case['id']}/halsa")
        await fits_without_sideways_scrolling(zoomed, "booking form")
    finally:
        await context.close()


async def test_booking_form_screenshot_on_a_phone(world: World, page: Any) -> None:
    case = await registered(world)
    await sign_in(world, page, HC)
    await page.goto(f"{world.base}/dashboard/cases/{case['id']}/halsa")
    assert await page.get_by_role("button", name="Rapportera bokad tid").is_visible()
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
    # Each yes/no answer sits beside its button, on one line, as in the registration form.
    for radio in ("tolk-ja", "svar-nej", "hinder-ja"):
        button = await page.locator(f"#{radio}").bounding_box()
        label = await page.locator(f"label[for={radio}]").bounding_box()
        assert button and label, radio
        assert label["x"] > button["x"] + button["width"] - 1, radio
        middle = button["y"] + button["height"] / 2
        assert label["y"] <= middle <= label["y"] + label["height"], radio
    await no_violations(page, "booking form (health centre)")
    shot = SCREENSHOTS / "booking.png"
    await page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">I", data[16:20])[0] == PHONE["width"]
    assert len(data) > 20_000  # a rendered page, not a blank one
