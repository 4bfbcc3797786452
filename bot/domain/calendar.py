"""Working days and office hours in one time zone: the one place deadlines are computed from.

Working days exclude weekends, Swedish public holidays, the de-facto holidays (midsommarafton,
julafton, nyårsafton) and any extra closed days of the region (CONTRACT.md "Time rules").
Every instant going in must be timezone-aware; every instant coming out is aware UTC. Dates
are local dates in the calendar's zone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, TypeVar
from zoneinfo import ZoneInfo

import holidays
from holidays import HolidayBase

from bot.domain.clock import Clock

__all__ = ["EXTRA_CLOSED_NAME", "WorkingDayCalendar", "local_today"]


def local_today(clock: Clock, zone: ZoneInfo) -> date:
    """Today's date in local time: the one place "today" is read, so every rule that speaks of
    today (an arrival date not in the past, a booking within 30 days, a reference's year) reads
    the same injected clock in the same zone."""
    return clock.now().astimezone(zone).date()


# What `holiday_name` says for a day closed only by the region's own decision.
EXTRA_CLOSED_NAME: Final = "Stängt (regionalt beslut)"

# No real calendar has a year without working days; a longer search means a misconfiguration
# (e.g. a huge extra_closed list), better refused than looped over.
_MAX_SEARCH_DAYS: Final = 366
_K = TypeVar("_K")
_V = TypeVar("_V")
# How many answers a calendar keeps of each kind (`_remember`): years of days.
_REMEMBERED: Final = 4096


def _remember(answers: dict[_K, _V], key: _K, value: _V) -> None:
    if len(answers) >= _REMEMBERED:
        answers.clear()
    answers[key] = value


class WorkingDayCalendar:
    """Swedish working days and office hours in `zone`."""

    def __init__(
        self,
        zone: ZoneInfo,
        office_start: time = time(8),
        office_end: time = time(17),
        extra_closed: Iterable[date] = (),
    ) -> None:
        if office_start.tzinfo is not None or office_end.tzinfo is not None:
            raise ValueError("office hours are local wall-clock times; give them without tzinfo")
        if not office_start < office_end:
            raise ValueError(f"office_start {office_start} must be before office_end {office_end}")
        self.zone = zone
        self.office_start = office_start
        self.office_end = office_end
        self.extra_closed: frozenset[date] = frozenset(extra_closed)
        # This is holidays.Sweden, looked up by country code because only that is typed.
        # Without the de_facto category julafton, midsommarafton and nyårsafton would count as
        # working days. Sundays are left out explicitly (older releases listed every Sunday as a
        # holiday); weekends are closed anyway. The object fills in years on first lookup, so
        # 2027, 2028, ... work without being named here.
        self._holidays: HolidayBase = holidays.country_holidays(
            "SE", categories=("public", "de_facto"), language="sv", include_sundays=False
        )
        # Answers already worked out: every event's deadlines ask about the same few days and
        # times, and the holidays lookup and the zone arithmetic were about 2 % of a delivery's
        # CPU under load (issue 17, py-spy). Pure functions of the day (and time): kept until
        # `_REMEMBERED` of them, then forgotten at once.
        self._working: dict[date, bool] = {}
        self._instants: dict[tuple[date, time], datetime] = {}
        # (day, n) -> the n-th working day after it: every delivery's booking deadline counts
        # five working days from one of a few days, a step at a time (about 1.5 % of its CPU in a
        # cProfile of the service; issue 17).
        self._added: dict[tuple[date, int], date] = {}

    # --- days ---------------------------------------------------------------------------------

    def is_working_day(self, d: date) -> bool:
        """Whether `d` is a working day: a weekday that is neither a holiday nor closed."""
        d = _as_date(d)
        known = self._working.get(d)
        if known is None:
            known = d.weekday() < 5 and d not in self.extra_closed and d not in self._holidays
            _remember(self._working, d, known)
        return known

    def holiday_name(self, d: date) -> str | None:
        """The Swedish name of the holiday on `d` (or EXTRA_CLOSED_NAME), else None.

        Ordinary weekends have no name.
        """
        d = _as_date(d)
        name: str | None = self._holidays.get(d)
        if name:
            return name
        if d in self.extra_closed:
            return EXTRA_CLOSED_NAME
        return None

    def next_working_day(self, d: date) -> date:
        """The first working day strictly after `d`."""
        return self.add_working_days(d, 1)

    def working_day_on_or_after(self, d: date) -> date:
        """`d` itself if it is a working day, else the next working day."""
        day = _as_date(d)
        for _ in range(_MAX_SEARCH_DAYS):
            if self.is_working_day(day):
                return day
            day += timedelta(days=1)
        raise ValueError(f"no working day within {_MAX_SEARCH_DAYS} days of {d}")

    def add_working_days(self, d: date, n: int) -> date:
        """The n-th working day after `d`; n = 0 gives `working_day_on_or_after(d)`."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        day = _as_date(d)
        if n == 0:
            return self.working_day_on_or_after(day)
        key = (day, n)
        known = self._added.get(key)
        if known is None:
            known = day
            for _ in range(n):
                known = self.working_day_on_or_after(known + timedelta(days=1))
            _remember(self._added, key, known)
        return known

    def booking_deadline(self, informed_at: datetime, days: int) -> date:
        """The last day the health centre may book: `days` working days after it was told.

        Counted from the local date it was told (the time of day does not matter); if that date
        is not a working day, the next working day is day 0.
        """
        day0 = self.working_day_on_or_after(self.local_date(informed_at))
        return self.add_working_days(day0, days)

    # --- instants -----------------------------------------------------------------------------

    def today(self, clock: Clock) -> date:
        """Today's local date by `clock` in the calendar's zone (see `local_today`)."""
        return local_today(clock, self.zone)

    def local_date(self, moment: datetime) -> date:
        """The local date of an aware instant in the calendar's zone."""
        return _aware(moment).astimezone(self.zone).date()

    def at_local(self, d: date, t: time) -> datetime:
        """The instant (aware UTC) at local wall-clock time `t` on local date `d`.

        Clock changes: a time that does not exist (the spring-forward gap, e.g. 02:30 on the
        last Sunday of March) is moved forward by the length of the gap (02:30 -> 03:30 CEST),
        so it never lands before the gap. A time that occurs twice (the autumn fall-back hour)
        is taken at its first occurrence (fold=0).
        """
        key = (_as_date(d), t)
        known = self._instants.get(key)
        if known is None:
            known = self._at_local(*key)
            _remember(self._instants, key, known)
        return known

    def _at_local(self, d: date, t: time) -> datetime:
        naive = datetime.combine(d, t.replace(tzinfo=None))
        first = naive.replace(tzinfo=self.zone, fold=0)
        # A wall time that does not survive the round trip through UTC is in a gap.
        if first.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) != naive:
            # For a gap, PEP 495 reads fold=0 with the offset before the change and fold=1 with
            # the offset after it; the later of the two instants is the one after the gap
            # whichever way the zone's clocks move.
            second = naive.replace(tzinfo=self.zone, fold=1)
            return max(first.astimezone(UTC), second.astimezone(UTC))
        return first.astimezone(UTC)

    def office_start_on(self, d: date) -> datetime:
        """The instant (aware UTC) the office opens on local date `d`."""
        return self.at_local(d, self.office_start)

    def office_end_on(self, d: date) -> datetime:
        """The instant (aware UTC) the office closes on local date `d`."""
        return self.at_local(d, self.office_end)

    def is_within_office_hours(self, moment: datetime) -> bool:
        """Whether `moment` falls in office hours (start inclusive, end exclusive) of a working
        day."""
        local = _aware(moment).astimezone(self.zone)
        return (
            self.is_working_day(local.date())
            and self.office_start <= local.time() < self.office_end
        )

    def add_working_hours(self, start: datetime, hours: float) -> datetime:
        """The instant `hours` office hours after `start`, counting only working-day office hours.

        Before office hours the count starts at office start; after them (or on a closed day)
        at the next working day's office start. Elapsed time is real time, so a clock change
        never stretches or shrinks a working day.
        """
        if not math.isfinite(hours) or hours < 0:
            raise ValueError(f"hours must be a finite number >= 0, got {hours}")
        remaining = timedelta(hours=hours)
        cursor = _aware(start).astimezone(UTC)
        for _ in range(_MAX_SEARCH_DAYS * 10):
            cursor = self._next_office_moment(cursor)
            available = self.office_end_on(self.local_date(cursor)) - cursor
            if remaining <= available:
                return cursor + remaining
            remaining -= available
            cursor = self.office_start_on(self.next_working_day(self.local_date(cursor)))
        raise ValueError(f"{hours} working hours from {start} is too far ahead")

    def counting_day(self, moment: datetime) -> date:
        """The working day whose office hours `moment` counts towards.

        Its own local date when that is a working day and the office has not yet closed;
        otherwise (after closing, on a weekend or holiday) the next working day. A
        registration on Saturday, or at 18:00, is handled as if made when the office next
        opens.
        """
        local = _aware(moment).astimezone(self.zone)
        if self.is_working_day(local.date()) and local.time() < self.office_end:
            return local.date()
        return self.next_working_day(local.date())

    def working_time_between(self, start: datetime, end: datetime) -> timedelta:
        """How much office time of working days lies between `start` and `end` (>= 0)."""
        cursor = _aware(start).astimezone(UTC)
        end = _aware(end).astimezone(UTC)
        total = timedelta()
        for _ in range(_MAX_SEARCH_DAYS * 10):
            cursor = self._next_office_moment(cursor)
            if cursor >= end:
                return total
            closing = self.office_end_on(self.local_date(cursor))
            if end <= closing:
                return total + (end - cursor)
            total += closing - cursor
            cursor = self.office_start_on(self.next_working_day(self.local_date(cursor)))
        raise ValueError(f"{start} to {end} is too long a span")

    def next_working_day_at(self, moment: datetime, t: time) -> datetime:
        """Local time `t` on the first working day strictly after `moment`'s local date."""
        return self.at_local(self.next_working_day(self.local_date(moment)), t)

    def same_working_day(self, a: datetime, b: datetime) -> bool:
        """Whether `a` and `b` fall on the same local date and that date is a working day."""
        day = self.local_date(a)
        return day == self.local_date(b) and self.is_working_day(day)

    def _next_office_moment(self, moment: datetime) -> datetime:
        """`moment` if within office hours, else the next office start (aware UTC)."""
        local = moment.astimezone(self.zone)
        day = local.date()
        if self.is_working_day(day):
            if local.time() < self.office_start:
                return self.office_start_on(day)
            if local.time() < self.office_end:
                return moment
        return self.office_start_on(self.next_working_day(day))


def _as_date(d: date) -> date:
    # datetime is a date subclass; letting one through would silently drop its time zone.
    if isinstance(d, datetime):
        raise TypeError("expected a date, got a datetime; use local_date() first")
    return d


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {moment}")
    return moment
