"""The routine's time rules (CONTRACT.md "Time rules"): pure functions of a calendar and instants.

`bot.pipeline.deadlines` turns events into timers at the instants computed here; progress
(`bot.domain.progress`) asks the same functions when a recipient's deadline has passed. Nothing
here reads a clock or Redis: every instant comes in as an argument (timezone-aware) and goes out
as aware UTC.

Counting working days — the one rule
------------------------------------
Day 0 is the local date something happened (the health centre was told, a disagreement was
raised); when that date is not a working day, day 0 is the next working day. Day 0 is never
counted: "day n" is the n-th working day after day 0 (`WorkingDayCalendar.add_working_days`).
A deadline of n working days ends when the office closes on day n; a reminder "on day n" comes
when the office opens on day n. So for a health centre told Wednesday 25 November 2026 at 09:00
(five days to book, reminder on day three): day 3 is Monday 30 November, the reminder comes at
08:00 that day, day 5 is Wednesday 2 December, the last day to book, and the escalation comes
when it is over, at 17:00. (issue 16 reads the reminder as counting the day told as day 1: it
is the wording "Det har gått tre arbetsdagar" at the start of day 3 that says so, not the count;
the instants above are what the tests assert and stay.)

Working hours are counted by `WorkingDayCalendar.add_working_hours`: office time of working days
only, starting at the next office opening when the instant lies outside office hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import NamedTuple

from bot.domain.calendar import WorkingDayCalendar

__all__ = [
    "AckDue",
    "BookingDue",
    "DeadlineRules",
    "SameDayDue",
    "ack_due",
    "booking_due",
    "disagreement_escalation_due",
    "reached_same_day",
    "same_day_close",
    "same_day_due",
]


@dataclass(frozen=True)
class DeadlineRules:
    """The settable numbers of the time rules (defaults as in CONTRACT.md)."""

    ack_reminder_hours: float = 2.0
    ack_escalation_at: time = time(10)
    booking_days: int = 5
    booking_reminder_days: int = 3
    same_day_alert_minutes: int = 30
    same_day_grace_minutes: int = 5
    disagreement_days: int = 5


# The three answers are named tuples: unpacked where a worker needs the parts, compared whole in
# tests.
class AckDue(NamedTuple):
    """When a recipient that has not acknowledged is reminded, and when it is escalated."""

    reminder: datetime | None  # None when it would come at or after the escalation
    escalation: datetime

    @property
    def deadline(self) -> datetime:
        """When the acknowledgement is late: the first of the two chases."""
        return self.reminder if self.reminder is not None else self.escalation


class BookingDue(NamedTuple):
    """When a health centre that has not booked is reminded and escalated, and its last day."""

    reminder: datetime
    escalation: datetime  # office end of `last_day`: the booking is late once this has passed
    last_day: date


class SameDayDue(NamedTuple):
    """The working day an arrival must reach every recipient, and when that is checked."""

    day: date
    check: datetime


def ack_due(calendar: WorkingDayCalendar, rules: DeadlineRules, told_at: datetime) -> AckDue:
    """The acknowledgement chases of a version registered (told) at `told_at`.

    The reminder is `ack_reminder_hours` working hours after `told_at`. The escalation is at
    `ack_escalation_at` on the working day after the one the telling counts towards (a message
    on Saturday or at 18:00 counts towards the next working day, so the escalation is not the
    same morning as the reminder). A reminder that would fall at or after the escalation is left
    out.
    """
    escalation = calendar.at_local(
        calendar.next_working_day(calendar.counting_day(told_at)), rules.ack_escalation_at
    )
    reminder = calendar.add_working_hours(told_at, rules.ack_reminder_hours)
    return AckDue(reminder if reminder < escalation else None, escalation)


def booking_due(
    calendar: WorkingDayCalendar, rules: DeadlineRules, informed_at: datetime
) -> BookingDue:
    """The booking chases of a health centre told at `informed_at` (see the module docstring).

    The reminder is at office start on working day `booking_reminder_days`, the escalation at
    office end on working day `booking_days` — the last day to book, as the health centre's
    message names it.
    """
    day0 = calendar.working_day_on_or_after(calendar.local_date(informed_at))
    last_day = calendar.add_working_days(day0, rules.booking_days)
    reminder = calendar.office_start_on(
        calendar.add_working_days(day0, rules.booking_reminder_days)
    )
    return BookingDue(reminder, calendar.office_end_on(last_day), last_day)


def same_day_due(
    calendar: WorkingDayCalendar, rules: DeadlineRules, registered_at: datetime
) -> SameDayDue:
    """The day an arrival registered at `registered_at` must reach everyone, and the check.

    The day is the working day the registration counts towards: the registration day itself if
    it is a working day and the office is open or yet to open; else the next working day. The
    check (an alert to the reception unit if someone is still not reached) is
    `same_day_alert_minutes` before office end on that day, or, for a registration made later
    than that, `same_day_grace_minutes` after the registration.
    """
    day = calendar.counting_day(registered_at)
    check = calendar.office_end_on(day) - timedelta(minutes=rules.same_day_alert_minutes)
    return SameDayDue(
        day, max(check, registered_at + timedelta(minutes=rules.same_day_grace_minutes))
    )


def same_day_close(calendar: WorkingDayCalendar, day: date) -> datetime:
    """When the same-day watch of `day` is over: local midnight after it."""
    return calendar.at_local(day + timedelta(days=1), time(0))


def reached_same_day(calendar: WorkingDayCalendar, reached_at: datetime, day: date) -> bool:
    """Whether everyone reached at `reached_at` counts as reached within the same working day
    `day` (or earlier: a registration made before office hours may be sent the evening before)."""
    return calendar.local_date(reached_at) <= day


def disagreement_escalation_due(
    calendar: WorkingDayCalendar, rules: DeadlineRules, raised_at: datetime
) -> datetime:
    """When a disagreement still open goes up by itself (§7): office end on working day
    `disagreement_days` after the day it was raised (day 0, counted as the module says: one
    raised on a closed day counts from the next working day, as a health centre told then)."""
    day0 = calendar.working_day_on_or_after(calendar.local_date(raised_at))
    return calendar.office_end_on(calendar.add_working_days(day0, rules.disagreement_days))
