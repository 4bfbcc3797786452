"""The rules behind "Reasons" (issue 13), table by table: a cancellation's reason, the booking
rules, and the wording of the notice a date change past the booking sends."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bot.domain.arrival import CancelIn, InvalidInput, check_cancel_reason, parse
from bot.domain.calendar import WorkingDayCalendar
from bot.usecases.healthcare import booking_problem
from messages.models import CaseNotice, Contact
from messages.render import render_case_notice

ZONE = ZoneInfo("Europe/Stockholm")
CALENDAR = WorkingDayCalendar(ZONE, time(8), time(17))
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=ZONE)  # a Wednesday
MISSING = "Ange varför ankomsten ställs in."


@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": " \n\t "}])
def test_a_cancellation_without_a_reason_is_refused_naming_reason(body: dict[str, str]) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse(CancelIn, body)
    assert refused.value.errors == [{"field": "reason", "message": MISSING}]


def test_a_reason_is_checked_like_all_free_text() -> None:
    assert check_cancel_reason("  Flyttat till Krokom. ") == "Flyttat till Krokom."
    for bad, why in (
        ("Har fått diagnos", "medicinska"),
        ("pnr 20101010-1234", "personnummer|person- eller samordningsnummer"),
        ("x" * 501, "högst 500"),
    ):
        with pytest.raises(ValueError, match=why):
            check_cancel_reason(bad)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZONE)


@pytest.mark.parametrize(
    ("when", "words"),
    [
        ("2026-11-25T08:59", "redan passerat"),
        ("2026-11-01T10:00", "redan passerat"),
        ("2027-12-01T10:00", "mer än ett år fram"),
        ("2026-11-28T10:00", "Lördag 28 november 2026 är ingen arbetsdag"),
        ("2026-12-25T10:00", "Fredag 25 december 2026 (Juldagen) är ingen arbetsdag"),
        ("2026-12-01T07:59", "utanför kontorstid (08.00–17.00)"),
        ("2026-12-01T17:00", "utanför kontorstid"),
        ("2026-12-01T08:00", None),
        ("2026-12-01T16:59", None),
        ("2026-11-25T09:00", None),  # now itself: later today is fine
    ],
)
def test_the_booking_rules(when: str, words: str | None) -> None:
    problem = booking_problem(at(when), NOW, CALENDAR)
    if words is None:
        assert problem is None
    else:
        assert problem is not None and words in problem


def test_a_closed_day_of_the_region_is_no_working_day() -> None:
    closed = WorkingDayCalendar(ZONE, extra_closed=[date(2026, 12, 1)])
    problem = booking_problem(at("2026-12-01T10:00"), NOW, closed)
    assert problem is not None and "Stängt (regionalt beslut)" in problem


def test_the_same_booking_again_is_refused_but_a_new_interpreter_answer_is_not() -> None:
    current = {"at": "2026-12-01T09:30:00+01:00", "interpreter_booked": True}
    same = booking_problem(at("2026-12-01T09:30"), NOW, CALENDAR, True, current)
    assert same is not None and "redan registrerad" in same
    assert booking_problem(at("2026-12-01T09:30"), NOW, CALENDAR, False, current) is None
    assert booking_problem(at("2026-12-01T10:30"), NOW, CALENDAR, True, current) is None


def test_the_health_centre_is_asked_to_rebook_and_the_reception_unit_is_told_it_will() -> None:
    facts = {
        "organisation": "Lugnviks hälsocentral",
        "booked_at": datetime(2026, 12, 1, 9, 30, tzinfo=ZONE),
        "arrival_on": "2026-12-03",
        "previous_arrival_on": "2026-11-27",
    }

    def to(name: str) -> str:
        notice = CaseNotice(
            "booking_before_arrival",
            "OSD-2026-0001",
            "Östersund",
            date(2026, 12, 3),
            Contact(name),
            facts,
        )
        return " ".join(render_case_notice(notice).text.split())

    sentence = (
        "Den bokade tiden för hälsosamtalet (tisdag 1 december 2026 kl. 09.30) ligger nu före "
        "ankomstdagen (torsdag 3 december 2026)."
    )
    health_centre = to("Lugnviks hälsocentral")
    assert f"{sentence} Boka om och meddela den nya tiden." in health_centre
    reception = to("Östersunds kommun, mottagningsenheten")
    assert f"{sentence} Lugnviks hälsocentral har fått samma besked och behöver boka om." in (
        reception
    )
