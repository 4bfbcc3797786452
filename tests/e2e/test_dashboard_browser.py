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
