"""The time rules as pure functions: real Swedish dates, holidays and clock changes, no Redis."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bot.domain import deadline_rules as rules
from bot.domain.calendar import WorkingDayCalendar, local_today
from bot.domain.clock import ManualClock
from bot.domain.deadline_rules import AckDue, BookingDue, DeadlineRules, SameDayDue

STOCKHOLM = ZoneInfo("Europe/Stockholm")
CAL = WorkingDayCalendar(STOCKHOLM)
RULES = DeadlineRules()


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware Stockholm instant, as UTC (what the rules give back)."""
    return datetime(year, month, day, hour, minute, tzinfo=STOCKHOLM).astimezone(UTC)


@pytest.mark.parametrize(
    ("told", "reminder", "escalation"),
    [
        # Wednesday 09:00: two working hours later, and 10:00 Thursday.
        (local(2026, 11, 25, 9), local(2026, 11, 25, 11), local(2026, 11, 26, 10)),
        # 16:00: one hour today, one tomorrow from 08:00; escalation still 10:00 tomorrow.
        (local(2026, 11, 25, 16), local(2026, 11, 26, 9), local(2026, 11, 26, 10)),
        # 16:30: the reminder (09:30) still comes before the escalation.
        (local(2026, 11, 25, 16, 30), local(2026, 11, 26, 9, 30), local(2026, 11, 26, 10)),
        # After closing: counts towards Thursday, so the reminder is 10:00 Thursday and the
        # escalation 10:00 Friday (not the same morning).
        (local(2026, 11, 25, 18), local(2026, 11, 26, 10), local(2026, 11, 27, 10)),
        # Friday evening: Monday counts; escalation Tuesday.
        (local(2026, 11, 27, 18), local(2026, 11, 30, 10), local(2026, 12, 1, 10)),
        # 23 December 16:00: julafton, juldagen, annandag jul and the weekend are closed.
        (local(2026, 12, 23, 16), local(2026, 12, 28, 9), local(2026, 12, 28, 10)),
    ],
)
def test_ack_reminder_after_two_working_hours_and_escalation_at_ten_next_working_day(
    told: datetime, reminder: datetime, escalation: datetime
) -> None:
    due = rules.ack_due(CAL, RULES, told)
    assert due == AckDue(reminder, escalation)
    assert due.deadline == reminder


@pytest.mark.parametrize(("hours", "left_out"), [(9.5, False), (10, True), (12, True)])
def test_a_reminder_at_or_after_the_escalation_is_left_out(hours: float, left_out: bool) -> None:
    # Told Wednesday 09:00: ten working hours is Thursday 10:00, the escalation itself.
    due = rules.ack_due(CAL, DeadlineRules(ack_reminder_hours=hours), local(2026, 11, 25, 9))
    assert due.escalation == local(2026, 11, 26, 10)
    assert (due.reminder is None) is left_out
    assert due.deadline == (due.escalation if left_out else due.reminder)


@pytest.mark.parametrize(
    ("informed", "reminder", "escalation", "last_day"),
    [
        # Told Wednesday 25 November: day 3 is Monday 30 November, day 5 Wednesday 2 December.
        (local(2026, 11, 25, 9), local(2026, 11, 30, 8), local(2026, 12, 2, 17), date(2026, 12, 2)),
        # The time of day does not matter: told at 16:59 counts the same.
        (
            local(2026, 11, 25, 16, 59),
            local(2026, 11, 30, 8),
            local(2026, 12, 2, 17),
            date(2026, 12, 2),
        ),
        # Told on a Saturday: day 0 is Monday 30 November.
        (local(2026, 11, 28, 12), local(2026, 12, 3, 8), local(2026, 12, 7, 17), date(2026, 12, 7)),
        # Told 23 December: over Christmas and New Year (issue-tested in the e2e suite too).
        (local(2026, 12, 23, 9), local(2026, 12, 30, 8), local(2027, 1, 5, 17), date(2027, 1, 5)),
    ],
)
def test_booking_reminder_on_working_day_three_escalation_when_day_five_is_over(
    informed: datetime, reminder: datetime, escalation: datetime, last_day: date
) -> None:
    assert rules.booking_due(CAL, RULES, informed) == BookingDue(reminder, escalation, last_day)


@pytest.mark.parametrize(
    ("registered", "day", "check"),
    [
        (local(2026, 11, 25, 9), date(2026, 11, 25), local(2026, 11, 25, 16, 30)),
        # Registered after the alert time: checked five minutes later, the same day.
        (local(2026, 11, 25, 16, 45), date(2026, 11, 25), local(2026, 11, 25, 16, 50)),
        (local(2026, 11, 25, 18), date(2026, 11, 26), local(2026, 11, 26, 16, 30)),
        (local(2026, 12, 24, 9), date(2026, 12, 28), local(2026, 12, 28, 16, 30)),
    ],
)
def test_same_day_alert_thirty_minutes_before_closing(
    registered: datetime, day: date, check: datetime
) -> None:
    assert rules.same_day_due(CAL, RULES, registered) == SameDayDue(day, check)


@pytest.mark.parametrize(
    ("day", "close"),
    [
        (date(2026, 11, 25), local(2026, 11, 26)),
        # The night the clocks go back: local midnight is still 23:00 UTC the day before.
        (date(2026, 10, 24), datetime(2026, 10, 24, 22, tzinfo=UTC)),
    ],
)
def test_the_same_day_watch_closes_at_local_midnight(day: date, close: datetime) -> None:
    assert rules.same_day_close(CAL, day) == close


@pytest.mark.parametrize(
    ("reached", "day", "same"),
    [
        (local(2026, 11, 25, 16, 59), date(2026, 11, 25), True),
        (local(2026, 11, 25, 23, 59), date(2026, 11, 25), True),
        (local(2026, 11, 26, 0, 1), date(2026, 11, 25), False),
        # Sent the evening before the day it counts towards: in time.
        (local(2026, 11, 25, 19), date(2026, 11, 26), True),
    ],
)
def test_reached_the_same_working_day_by_local_date(
    reached: datetime, day: date, same: bool
) -> None:
    assert rules.reached_same_day(CAL, reached, day) is same


@pytest.mark.parametrize(
    ("raised", "days", "due"),
    [
        # Raised Wednesday 25 November: five working days on is Wednesday 2 December, 17:00.
        (local(2026, 11, 25, 10), 5, local(2026, 12, 2, 17)),
        (local(2026, 11, 25, 10), 1, local(2026, 11, 26, 17)),
        # Raised on a Saturday: day 0 is Monday (the one counting rule), day 1 Tuesday.
        (local(2026, 11, 28, 10), 1, local(2026, 12, 1, 17)),
    ],
)
def test_disagreement_goes_up_after_n_working_days(
    raised: datetime, days: int, due: datetime
) -> None:
    got = rules.disagreement_escalation_due(CAL, DeadlineRules(disagreement_days=days), raised)
    assert got == due


@pytest.mark.parametrize(
    ("now", "today"),
    [
        # 23:30 UTC on 31 December is already New Year's Day in Stockholm.
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), date(2027, 1, 1)),
        (datetime(2026, 12, 31, 22, 59, tzinfo=UTC), date(2026, 12, 31)),
        # Summer time: UTC+2.
        (datetime(2026, 6, 30, 22, 0, tzinfo=UTC), date(2026, 7, 1)),
    ],
)
def test_today_is_the_local_date_by_the_injected_clock(now: datetime, today: date) -> None:
    clock = ManualClock(now)
    assert local_today(clock, STOCKHOLM) == today
    assert CAL.today(clock) == today


def test_the_rules_read_no_clock() -> None:
    # The same inputs give the same instants whatever the time is: nothing here reads a clock.
    told = local(2026, 11, 25, 9)
    assert rules.ack_due(CAL, RULES, told) == rules.ack_due(CAL, RULES, told)
    assert rules.ack_due(CAL, DeadlineRules(ack_escalation_at=time(9)), told).escalation == local(
        2026, 11, 26, 9
    )
