"""The follow-up's figures for a fixture year, computed by hand and compared cell by cell.

Five cases in Östersund, 2026, each acknowledged by every recipient one hour after it was
registered (so each acknowledgement took 1 working hour and 1 wall hour):

  A  Wed 4 Mar 09:00, arrives Fri 6 Mar, 9 + 4 years, ar + prs, interpreter: booked the same day
     for Tue 10 Mar 09:30 — in time; arrival → conversation 4 days.
  B  Mon 9 Mar 09:00, arrives Wed 11 Mar, as A: not booked by the office's close on day 5
     (Mon 16 Mar; day 0, the 9th, is not counted), reminded on day 3 (Thu 12 Mar 08:00) and
     escalated at 17:00 on day 5; booked Tue 17 Mar for Fri 20 Mar 10:00 — late; 9 days.
  C  Mon 13 Apr 09:00, one unaccompanied 16-year-old, so, interpreter: never booked; reminded
     (Thu 16 Apr) and escalated (Mon 20 Apr 17:00) — late and never booked.
  D  Tue 14 Apr 09:00, as A, cancelled at 09:30 — counted as cancelled only.
  E  Tue 1 Dec 09:00, as A: not booked when the report is made (Wed 2 Dec 07:39); its last day
     is Tue 8 Dec — pending.

The report over 2026 is made on Wed 2 Dec 2026 at 07:39. Every municipality of the directory
has a row; only Östersund has cases.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.usecases.report import build_report
from messages.report import render_report_csv_sv, render_report_html
from tests.e2e.test_dashboard_browser import ARGS, CHROMIUM
from tests.support.world import STOCKHOLM, World, arrival, running_world

HC, SCHOOL, PRESCHOOL = "hc-lugnvik", "ostersund-skola", "ostersund-forskola"
SOCIAL = "ostersund-socialtjanst"
RECEPTION = "ostersund-mottagning"


def at(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=STOCKHOLM)


async def move_to(world: World, moment: datetime) -> None:
    world.clock.advance(moment - world.clock.now())
    await world.tick()
    await world.tick()


async def register(world: World, ref: str, **facts: Any) -> str:
    case_id = str((await world.register(arrival(external_ref=ref, **facts)))["id"])
    await world.settled(case_id)
    return case_id


async def ack_all(world: World, case_id: str, orgs: tuple[str, ...]) -> None:
    for org in orgs:
        status, body = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", org)
        assert status == 200, body
    await world.drain()


async def book(world: World, case_id: str, when: str) -> None:
    status, body = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/health-booking",
        HC,
        {"at": when, "interpreter_booked": True},
    )
    assert status == 200, body
    await world.drain()


ZERO: dict[str, Any] = {
    "arrivals": 0,
    "cancelled": 0,
    "children_0": 0,
    "children_1_5": 0,
    "children_6_15": 0,
    "children_16_17": 0,
    "unaccompanied": 0,
    "interpreter_needed": 0,
    "languages": {},
    "notified_same_day_share": None,
    "notified_same_day_known": 0,
    "notice_to_notified_median_hours": None,
    "notice_to_notified_counted": 0,
    "acknowledgements": 0,
    "ack_median_working_hours": None,
    "ack_p90_working_hours": None,
    "ack_median_wall_hours": None,
    "ack_p90_wall_hours": None,
    "booking_within_5_share": None,
    "bookings_counted": 0,
    "bookings_in_time": 0,
    "bookings_late": 0,
    "bookings_never_booked": 0,
    "bookings_pending": 0,
    "arrival_to_health_median_days": None,
    "arrival_to_health_counted": 0,
    "reminders": 0,
    "escalations": 0,
    "disagreements": 0,
    "disagreements_escalated": 0,
    "disagreements_open": 0,
    "disagreement_median_days_open": None,
    "disagreement_max_days_open": None,
}


def acks(n: int) -> dict[str, Any]:
    """n acknowledgements of one hour each (working and wall time)."""
    return {
        "acknowledgements": n,
        "ack_median_working_hours": 1.0,
        "ack_p90_working_hours": 1.0,
        "ack_median_wall_hours": 1.0,
        "ack_p90_wall_hours": 1.0,
    }


# A, B, C and E arrive (D is cancelled): children 9+4 (A, B, E) and 16 (C); all need an
# interpreter; C is unaccompanied; every one reached everyone the day it was registered, at
# the moment it was registered (no notice time: the registration is the notice).
CASES_ABCE = {
    "arrivals": 4,
    "cancelled": 1,
    "children_1_5": 3,
    "children_6_15": 3,
    "children_16_17": 1,
    "unaccompanied": 1,
    "interpreter_needed": 4,
    "languages": {"ar": 3, "prs": 3, "so": 1},
    "notified_same_day_share": 1.0,
    "notified_same_day_known": 4,
    "notice_to_notified_median_hours": 0.0,
    "notice_to_notified_counted": 4,
}
# Bookings: A in time, B late, C never booked (late), E pending: 1 of 3 in time. A's
# conversation 4 days after its arrival, B's 9: median 6.5. B and C reminded and escalated.
BOOKINGS = {
    "booking_within_5_share": 0.333,
    "bookings_counted": 3,
    "bookings_in_time": 1,
    "bookings_late": 2,
    "bookings_never_booked": 1,
    "bookings_pending": 1,
    "arrival_to_health_median_days": 6.5,
    "arrival_to_health_counted": 2,
    "reminders": 2,
    "escalations": 2,
}
EXPECTED_OSTERSUND: dict[str, dict[str, Any]] = {
    # Acknowledgements: A, B, E by health centre, school, preschool; C by health centre,
    # school, social services: 12.
    "alla": ZERO | CASES_ABCE | acks(12) | BOOKINGS,
    "reception_unit": ZERO | CASES_ABCE,
    "health_centre": ZERO | CASES_ABCE | acks(4) | BOOKINGS,
    # The preschool is on A, B, D, E (a 4-year-old), not on C.
    "preschool": ZERO
    | {
        "arrivals": 3,
        "cancelled": 1,
        "children_1_5": 3,
        "children_6_15": 3,
        "interpreter_needed": 3,
        "languages": {"ar": 3, "prs": 3},
        "notified_same_day_share": 1.0,
        "notified_same_day_known": 3,
        "notice_to_notified_median_hours": 0.0,
        "notice_to_notified_counted": 3,
    }
    | acks(3),
    "school": ZERO | CASES_ABCE | acks(4),
    # Social services only on C, the unaccompanied child.
    "social_services": ZERO
    | {
        "arrivals": 1,
        "children_16_17": 1,
        "unaccompanied": 1,
        "interpreter_needed": 1,
        "languages": {"so": 1},
        "notified_same_day_share": 1.0,
        "notified_same_day_known": 1,
        "notice_to_notified_median_hours": 0.0,
        "notice_to_notified_counted": 1,
    }
    | acks(1),
}


async def test_the_follow_up_of_a_fixture_year_matches_the_figures_worked_out_by_hand(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, now=at(3, 4, 9)) as world:
        a = await register(world, "MIG-A", arrival_date="2026-03-06")
        await move_to(world, at(3, 4, 10))
        await ack_all(world, a, (HC, SCHOOL, PRESCHOOL))
        await book(world, a, "2026-03-10T09:30")

        await move_to(world, at(3, 9, 9))
        b = await register(world, "MIG-B", arrival_date="2026-03-11")
        await move_to(world, at(3, 9, 10))
        await ack_all(world, b, (HC, SCHOOL, PRESCHOOL))
        await move_to(world, at(3, 12, 8, 1))  # B's reminder (day 3)
        await move_to(world, at(3, 16, 17, 1))  # B's escalation (day 5 is over)
        await move_to(world, at(3, 17, 10))
        await book(world, b, "2026-03-20T10:00")

        await move_to(world, at(4, 13, 9))
        c = await register(
            world,
            "MIG-C",
            arrival_date="2026-04-15",
            children=[{"age": 16}],
            languages=["so"],
            unaccompanied=True,
        )
        await move_to(world, at(4, 13, 10))
        await ack_all(world, c, (HC, SCHOOL, SOCIAL))

        await move_to(world, at(4, 14, 9))
        d = await register(world, "MIG-D", arrival_date="2026-04-16")
        await move_to(world, at(4, 14, 9, 30))
        status, body = await world.call(
            "POST", f"/api/v1/arrivals/{d}/cancel", RECEPTION, {"reason": "Flyttar inte hit."}
        )
        assert status == 200, body
        await world.drain()
        await move_to(world, at(4, 16, 8, 1))  # C's reminder
        await move_to(world, at(4, 20, 17, 1))  # C's escalation

        await move_to(world, at(12, 1, 9))
        e = await register(world, "MIG-E", arrival_date="2026-12-03")
        await move_to(world, at(12, 1, 10))
        await ack_all(world, e, (HC, SCHOOL, PRESCHOOL))
        await move_to(world, at(12, 2, 7, 39))

        directory = world.services.directory
        report = await build_report(
            redis,
            directory,
            world.services.calendar,
            date(2026, 1, 1),
            date(2026, 12, 31),
            now=world.clock.now(),
        )
        assert report["cases"] == 5
        got = {(r["municipality"], r["kind"]): r for r in report["rows"]}
        expected: dict[tuple[str, str], dict[str, Any]] = {
            (m, "alla"): ZERO | {"municipality": m, "kind": "alla"}
            for m in directory.municipalities
        }
        for kind, figures in EXPECTED_OSTERSUND.items():
            expected[("ostersund", kind)] = figures | {"municipality": "ostersund", "kind": kind}
        assert sorted(got) == sorted(expected)
        for key, figures in expected.items():
            row = dict(got[key])
            assert row.pop("municipality_name") == directory.municipalities[key[0]].name
            assert row == figures, key

        # Per month: March holds A and B, April C and D, December E.
        monthly = await build_report(
            redis,
            directory,
            world.services.calendar,
            date(2026, 1, 1),
            date(2026, 12, 31),
            now=world.clock.now(),
            per_month=True,
        )
        by_month = {
            r["month"]: r
            for r in monthly["rows"]
            if r["municipality"] == "ostersund" and r["kind"] == "alla"
        }
        assert len(by_month) == 12
        assert {m: (r["arrivals"], r["cancelled"]) for m, r in by_month.items()} == {
            f"2026-{n:02d}": {3: (2, 0), 4: (1, 1), 12: (1, 0)}.get(n, (0, 0)) for n in range(1, 13)
        }
        march, april, december = by_month["2026-03"], by_month["2026-04"], by_month["2026-12"]
        assert (march["bookings_in_time"], march["bookings_late"]) == (1, 1)
        assert march["booking_within_5_share"] == 0.5
        assert (april["bookings_never_booked"], april["booking_within_5_share"]) == (1, 0.0)
        assert (december["bookings_pending"], december["booking_within_5_share"]) == (1, None)

        # Swedish Excel's CSV: BOM, semicolons, decimal comma, a row per municipality.
        sv = render_report_csv_sv(report)
        assert sv.startswith("\ufeffKommun;Organisationstyp;Ankomster;Inställda;")
        lines = list(csv.reader(io.StringIO(sv.removeprefix("\ufeff")), delimiter=";"))
        total = next(line for line in lines if line[:2] == ["Östersund", "Alla"])
        header = lines[0]
        assert total[header.index("Hälsosamtal bokat i tid, andel")] == "0,333"
        assert total[header.index("Ankomst → hälsosamtal, median (dagar)")] == "6,5"
        assert total[header.index("Språk")] == "arabiska 3, dari 3, somaliska 1"
        assert len(lines) == 1 + len(expected)

        page = render_report_html(report)
        assert "Skapad 2 december 2026 kl. 07.39." in page
        assert "2026-12-02T" not in page
        assert "6.5" not in page and "33 %" in page and "6,5" in page
        assert "dagen för beskedet" in page or "den dagen räknas inte" in page
        assert json.loads(json.dumps(report)) == report

        # Opened on a 1,366 px screen, no table or chart is wider; printed on A4 likewise.
        for made in (report, monthly):
            path = tmp_path / "uppfoljning.html"
            path.write_text(render_report_html(made), encoding="utf-8")
            await fits_screen_and_a4(path)


async def fits_screen_and_a4(path: Path) -> None:
    try:
        from playwright.async_api import async_playwright
    except ImportError:  # pragma: no cover - depends on the machine
        pytest.skip("the Python package playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    widest = (
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth,"
        " ...[...document.querySelectorAll('table, svg')].map("
        "e => e.getBoundingClientRect().right))"
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 768})
            await page.goto(path.as_uri())
            assert await page.evaluate(widest) <= 1366
            # A4 landscape less the page margins (12 mm each side) at 96 px per inch.
            a4 = int((297 - 24) / 25.4 * 96)
            await page.emulate_media(media="print")
            await page.set_viewport_size({"width": a4, "height": 700})
            assert await page.evaluate(widest) <= a4
            assert (await page.pdf(format="A4", landscape=True))[:4] == b"%PDF"
        finally:
            await browser.close()
