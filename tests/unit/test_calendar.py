"""Working days, office hours and deadlines over real Swedish dates and clock changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.calendar import EXTRA_CLOSED_NAME, WorkingDayCalendar

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware datetime in Stockholm local time."""
    return datetime(year, month, day, hour, minute, tzinfo=STOCKHOLM)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """An aware datetime in UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def cal() -> WorkingDayCalendar:
    return WorkingDayCalendar(STOCKHOLM)


@pytest.mark.parametrize(
    ("day", "working", "name"),
    [
        (date(2026, 12, 23), True, None),
        (date(2026, 12, 24), False, "Julafton"),
        (date(2026, 12, 25), False, "Juldagen"),
        (date(2026, 12, 28), True, None),
        (date(2026, 12, 31), False, "Nyårsafton"),
        (date(2027, 1, 1), False, "Nyårsdagen"),
        (date(2027, 1, 6), False, "Trettondedag jul"),
        (date(2026, 6, 19), False, "Midsommarafton"),
        (date(2026, 6, 18), True, None),
        (date(2027, 3, 25), True, None),
        (date(2027, 3, 26), False, "Långfredagen"),
        (date(2027, 3, 28), False, "Påskdagen"),
        (date(2027, 3, 29), False, "Annandag påsk"),
        (date(2027, 3, 30), True, None),
        (date(2026, 11, 28), False, None),  # an ordinary Saturday
        (date(2026, 11, 29), False, None),  # an ordinary Sunday has no holiday name
        (date(2028, 6, 23), False, "Midsommarafton"),
        (date(2028, 12, 25), False, "Juldagen"),
    ],
)
def test_working_days_exclude_weekends_public_and_de_facto_holidays(
    cal: WorkingDayCalendar, day: date, working: bool, name: str | None
) -> None:
    assert cal.is_working_day(day) is working
    assert cal.holiday_name(day) == name


def test_later_years_are_covered_on_first_lookup() -> None:
    cal = WorkingDayCalendar(STOCKHOLM)
    # Asked for out of order, with nothing looked up before.
    assert not cal.is_working_day(date(2028, 12, 24))
    assert not cal.is_working_day(date(2027, 12, 31))
    assert cal.holiday_name(date(2029, 6, 6)) == "Nationaldagen"
    assert cal.is_working_day(date(2026, 12, 22))


@pytest.mark.parametrize(
    ("day", "next_day"),
    [
        (date(2026, 11, 26), date(2026, 11, 27)),
        (date(2026, 11, 27), date(2026, 11, 30)),  # Friday -> Monday
        (date(2026, 12, 23), date(2026, 12, 28)),  # over julafton and Christmas
        (date(2026, 12, 30), date(2027, 1, 4)),  # over nyårsafton and New Year's Day
        (date(2027, 1, 5), date(2027, 1, 7)),  # over trettondedag jul
        (date(2027, 3, 25), date(2027, 3, 30)),  # over Easter
        (date(2026, 6, 18), date(2026, 6, 22)),  # over midsommar
    ],
)
def test_next_working_day_is_strictly_after(
    cal: WorkingDayCalendar, day: date, next_day: date
) -> None:
    assert cal.next_working_day(day) == next_day


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 27), date(2026, 11, 27)),
        (date(2026, 11, 28), date(2026, 11, 30)),
        (date(2026, 12, 24), date(2026, 12, 28)),
    ],
)
def test_working_day_on_or_after(cal: WorkingDayCalendar, day: date, expected: date) -> None:
    assert cal.working_day_on_or_after(day) == expected


@pytest.mark.parametrize(
    ("day", "n", "expected"),
    [
        (date(2026, 11, 27), 0, date(2026, 11, 27)),
        (date(2026, 11, 28), 0, date(2026, 11, 30)),  # n=0 on a Saturday: the Monday
        (date(2026, 11, 27), 1, date(2026, 11, 30)),
        (date(2026, 11, 28), 1, date(2026, 11, 30)),  # first working day after a Saturday
        (date(2026, 11, 23), 5, date(2026, 11, 30)),
        (date(2026, 12, 23), 5, date(2027, 1, 5)),
        (date(2027, 3, 24), 2, date(2027, 3, 30)),
    ],
)
def test_add_working_days(cal: WorkingDayCalendar, day: date, n: int, expected: date) -> None:
    assert cal.add_working_days(day, n) == expected


def test_add_working_days_refuses_negative_counts(cal: WorkingDayCalendar) -> None:
    with pytest.raises(ValueError, match="n must be >= 0"):
        cal.add_working_days(date(2026, 11, 27), -1)


@pytest.mark.parametrize(
    ("informed_at", "expected"),
    [
        # 24 julafton, 25-27, 31 nyårsafton, 1 Jan and weekends closed; 28-30 Dec, 4-5 Jan count.
        (local(2026, 12, 23, 15), date(2027, 1, 5)),
        (local(2026, 11, 23, 9), date(2026, 11, 30)),
        # Told late in the evening: the local date counts, not office hours.
        (local(2026, 11, 23, 22, 30), date(2026, 11, 30)),
        # Told on a Saturday: Monday is day 0.
        (local(2026, 11, 28, 10), date(2026, 12, 7)),
        # 23:30 UTC on Thursday is already Friday in Stockholm.
        (utc(2026, 11, 26, 23, 30), date(2026, 12, 4)),
    ],
)
def test_booking_deadline_is_five_working_days_from_the_local_date(
    cal: WorkingDayCalendar, informed_at: datetime, expected: date
) -> None:
    assert cal.booking_deadline(informed_at, 5) == expected


def test_extra_closed_days_are_not_working_days() -> None:
    cal = WorkingDayCalendar(STOCKHOLM, extra_closed=[date(2026, 12, 28)])
    assert not cal.is_working_day(date(2026, 12, 28))
    assert cal.holiday_name(date(2026, 12, 28)) == EXTRA_CLOSED_NAME
    assert cal.next_working_day(date(2026, 12, 23)) == date(2026, 12, 29)
    # 29, 30 Dec, 4, 5 Jan, then 7 Jan (6 Jan is trettondedag jul).
    assert cal.booking_deadline(local(2026, 12, 23, 15), 5) == date(2027, 1, 7)
    assert cal.holiday_name(date(2026, 12, 24)) == "Julafton"


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        # Friday-evening registration: counting starts Monday 08:00.
        (local(2026, 11, 27, 18), 2, local(2026, 11, 30, 10)),
        (local(2026, 11, 27, 16), 2, local(2026, 11, 30, 9)),
        (local(2026, 11, 26, 7), 1, local(2026, 11, 26, 9)),  # before office hours
        (local(2026, 11, 26, 10), 2, local(2026, 11, 26, 12)),
        (local(2026, 11, 26, 15), 2, local(2026, 11, 26, 17)),  # up to closing exactly
        (local(2026, 11, 26, 10, 30), 0.5, local(2026, 11, 26, 11)),
        (local(2026, 11, 26, 10), 9, local(2026, 11, 27, 10)),  # a working day, over a night
        (local(2026, 11, 26, 10), 18, local(2026, 11, 30, 10)),  # 7 h + 9 h + 2 h
        (local(2026, 11, 28, 12), 0, local(2026, 11, 30, 8)),  # Saturday: next opening
        (local(2026, 12, 23, 16), 2, local(2026, 12, 28, 9)),  # over Christmas
        # Summer time starts Sun 2027-03-28; Easter closes Fri 26 and Mon 29.
        (local(2027, 3, 25, 16), 3, utc(2027, 3, 30, 8)),
        # Summer time ends Sun 2026-10-25: Friday 16:00 CEST + 2 h = Monday 09:00 CET.
        (local(2026, 10, 23, 16), 2, utc(2026, 10, 26, 8)),
    ],
)
def test_add_working_hours_counts_only_office_hours_of_working_days(
    cal: WorkingDayCalendar, start: datetime, hours: float, expected: datetime
) -> None:
    result = cal.add_working_hours(start, hours)
    assert result == expected
    assert result.tzinfo is UTC


def test_add_working_hours_across_the_spring_change_gives_correct_utc(
    cal: WorkingDayCalendar,
) -> None:
    # Thursday 16:00 CET is 15:00 UTC; Tuesday 10:00 CEST is 08:00 UTC.
    result = cal.add_working_hours(utc(2027, 3, 25, 15), 3)
    assert result == utc(2027, 3, 30, 8)
    assert result.astimezone(STOCKHOLM).utcoffset() == timedelta(hours=2)


def test_add_working_hours_refuses_naive_and_negative_input(cal: WorkingDayCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add_working_hours(datetime(2026, 11, 27, 10), 2)
    with pytest.raises(ValueError, match=">= 0"):
        cal.add_working_hours(local(2026, 11, 27, 10), -1)
    with pytest.raises(ValueError, match="finite"):
        cal.add_working_hours(local(2026, 11, 27, 10), float("inf"))


@pytest.mark.parametrize(
    ("day", "wall", "expected"),
    [
        (date(2026, 11, 27), time(10), utc(2026, 11, 27, 9)),  # CET, UTC+1
        (date(2026, 6, 18), time(10), utc(2026, 6, 18, 8)),  # CEST, UTC+2
        # The night summer time starts, 02:00 -> 03:00: 02:30 does not exist and is moved
        # forward by the gap, to 03:30 CEST.
        (date(2027, 3, 28), time(2, 30), utc(2027, 3, 28, 1, 30)),
        (date(2027, 3, 28), time(2), utc(2027, 3, 28, 1)),
        (date(2027, 3, 28), time(3), utc(2027, 3, 28, 1)),
        (date(2027, 3, 28), time(1, 59), utc(2027, 3, 28, 0, 59)),
        # The night summer time ends, 03:00 -> 02:00: 02:30 happens twice; the first counts.
        (date(2026, 10, 25), time(2, 30), utc(2026, 10, 25, 0, 30)),
        (date(2026, 10, 25), time(3, 30), utc(2026, 10, 25, 2, 30)),
    ],
)
def test_at_local_is_dst_correct(
    cal: WorkingDayCalendar, day: date, wall: time, expected: datetime
) -> None:
    result = cal.at_local(day, wall)
    assert result == expected
    assert result.tzinfo is UTC


def test_a_time_in_the_spring_gap_lands_after_the_gap(cal: WorkingDayCalendar) -> None:
    result = cal.at_local(date(2027, 3, 28), time(2, 30)).astimezone(STOCKHOLM)
    assert (result.hour, result.minute) == (3, 30)
    assert result.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (local(2026, 11, 26, 9), local(2026, 11, 27, 10)),
        (local(2026, 11, 27, 14), local(2026, 11, 30, 10)),  # Friday -> Monday
        (local(2026, 11, 28, 14), local(2026, 11, 30, 10)),  # Saturday -> Monday
        (local(2026, 12, 23, 12), local(2026, 12, 28, 10)),
        (local(2027, 3, 25, 12), utc(2027, 3, 30, 8)),  # over Easter and into summer time
    ],
)
def test_next_working_day_at_ten_is_the_escalation_time(
    cal: WorkingDayCalendar, moment: datetime, expected: datetime
) -> None:
    assert cal.next_working_day_at(moment, time(10)) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (local(2026, 11, 27, 8), local(2026, 11, 27, 16, 59), True),
        (local(2026, 11, 27, 8), local(2026, 11, 30, 8), False),
        (local(2026, 11, 28, 8), local(2026, 11, 28, 9), False),  # same day, but Saturday
        (local(2026, 12, 24, 8), local(2026, 12, 24, 9), False),  # same day, but julafton
        # Same UTC date, different local dates (23:30 and 00:30 Stockholm).
        (utc(2026, 11, 26, 22, 30), utc(2026, 11, 26, 23, 30), False),
    ],
)
def test_same_working_day(cal: WorkingDayCalendar, a: datetime, b: datetime, same: bool) -> None:
    assert cal.same_working_day(a, b) is same


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (local(2026, 11, 27, 8), True),
        (local(2026, 11, 27, 16, 59), True),
        (local(2026, 11, 27, 17), False),
        (local(2026, 11, 27, 7, 59), False),
        (local(2026, 11, 28, 10), False),
        (local(2026, 12, 24, 10), False),
    ],
)
def test_is_within_office_hours(cal: WorkingDayCalendar, moment: datetime, inside: bool) -> None:
    assert cal.is_within_office_hours(moment) is inside


def test_office_end_and_local_date(cal: WorkingDayCalendar) -> None:
    assert cal.office_end_on(date(2026, 11, 27)) == utc(2026, 11, 27, 16)
    assert cal.office_end_on(date(2026, 6, 18)) == utc(2026, 6, 18, 15)
    assert cal.office_start_on(date(2026, 6, 18)) == utc(2026, 6, 18, 6)
    assert cal.local_date(utc(2026, 11, 26, 23, 30)) == date(2026, 11, 27)


def test_office_hours_are_configurable() -> None:
    cal = WorkingDayCalendar(STOCKHOLM, office_start=time(9), office_end=time(15))
    assert cal.add_working_hours(local(2026, 11, 27, 14), 2) == local(2026, 11, 30, 10)
    with pytest.raises(ValueError, match="before"):
        WorkingDayCalendar(STOCKHOLM, office_start=time(17), office_end=time(8))


def test_a_datetime_is_not_taken_for_a_date(cal: WorkingDayCalendar) -> None:
    with pytest.raises(TypeError, match="local_date"):
        cal.is_working_day(local(2026, 11, 27, 10))


@settings(max_examples=200, deadline=None, database=None)
@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1),
        max_value=datetime(2028, 12, 31),
        timezones=st.just(STOCKHOLM),
    ),
    first=st.integers(min_value=0, max_value=60 * 40),
    second=st.integers(min_value=1, max_value=60 * 40),
)
def test_working_hours_land_in_office_hours_and_add_up(
    start: datetime, first: int, second: int
) -> None:
    cal = WorkingDayCalendar(STOCKHOLM)
    total = cal.add_working_hours(start, (first + second) / 60)
    assert total >= start
    assert cal.is_within_office_hours(total) or total == cal.office_end_on(cal.local_date(total))
    # Counting in two steps ends where counting in one does.
    stepwise = cal.add_working_hours(cal.add_working_hours(start, first / 60), second / 60)
    assert abs(stepwise - total) < timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (local(2026, 11, 25, 7), date(2026, 11, 25)),  # before opening: that day
        (local(2026, 11, 25, 16, 59), date(2026, 11, 25)),
        (local(2026, 11, 25, 17), date(2026, 11, 26)),  # closed: the next working day
        (local(2026, 11, 27, 18), date(2026, 11, 30)),  # Friday evening -> Monday
        (local(2026, 11, 28, 10), date(2026, 11, 30)),  # Saturday -> Monday
        (local(2026, 12, 24, 9), date(2026, 12, 28)),  # julafton -> Monday after Christmas
        (local(2026, 6, 19, 9), date(2026, 6, 22)),  # midsommarafton -> Monday
        (local(2027, 3, 28, 2, 30), date(2027, 3, 30)),  # the night summer time starts, Easter
    ],
)
def test_counting_day_is_the_working_day_a_moment_counts_towards(
    cal: WorkingDayCalendar, moment: datetime, expected: date
) -> None:
    assert cal.counting_day(moment) == expected


@pytest.mark.parametrize(
    ("start", "end", "hours"),
    [
        (local(2026, 11, 26, 10), local(2026, 11, 26, 12), 2),
        (local(2026, 11, 26, 12), local(2026, 11, 26, 10), 0),  # the wrong way round
        (local(2026, 11, 26, 7), local(2026, 11, 26, 8), 0),
        (local(2026, 11, 27, 16), local(2026, 11, 30, 9), 2),  # over a weekend
        (local(2026, 12, 23, 15), local(2026, 12, 28, 10), 4),  # over Christmas
        (local(2026, 11, 26, 10), local(2026, 11, 27, 10), 9),
        (local(2027, 3, 25, 16), utc(2027, 3, 30, 8), 3),  # Easter and summer time
        (local(2026, 11, 28, 10), local(2026, 11, 28, 15), 0),  # a Saturday
    ],
)
def test_working_time_between_counts_office_hours_only(
    cal: WorkingDayCalendar, start: datetime, end: datetime, hours: float
) -> None:
    assert cal.working_time_between(start, end) == timedelta(hours=hours)


@settings(max_examples=100, deadline=None, database=None)
@given(
    start=st.datetimes(
        min_value=datetime(2026, 1, 1),
        max_value=datetime(2028, 12, 31),
        timezones=st.just(STOCKHOLM),
    ),
    minutes=st.integers(min_value=1, max_value=60 * 60),
)
def test_working_time_between_undoes_add_working_hours(start: datetime, minutes: int) -> None:
    cal = WorkingDayCalendar(STOCKHOLM)
    end = cal.add_working_hours(start, minutes / 60)
    assert abs(cal.working_time_between(start, end) - timedelta(minutes=minutes)) < timedelta(
        milliseconds=1
    )


def test_remembered_answers_are_the_answers_worked_out_and_stay_so_past_the_limit() -> None:
    # A calendar keeps what it has worked out (issue 17); more days than it keeps (4,096):
    # each answer, asked again from memory or after the memory was cleared, is the same as
    # a fresh calendar's.
    remembering = WorkingDayCalendar(STOCKHOLM)
    days = [date(2026, 1, 1) + timedelta(days=i) for i in range(5000)]
    first = [remembering.is_working_day(d) for d in days]
    again = [remembering.is_working_day(d) for d in reversed(days)][::-1]
    fresh = WorkingDayCalendar(STOCKHOLM)
    assert first == again == [fresh.is_working_day(d) for d in days]
    assert first[days.index(date(2026, 12, 24))] is False  # julafton
    times = [time(8), time(2, 30), time(17)]
    instants = [remembering.at_local(d, t) for d in days for t in times]
    assert instants == [remembering.at_local(d, t) for d in days for t in times]
    assert remembering.at_local(date(2027, 3, 28), time(2, 30)) == utc(2027, 3, 28, 1, 30)

    # Working days added (the booking deadline's five, the next working day): worked out a day
    # at a time by a calendar that keeps nothing of them, against the kept answers.
    def stepped(day: date, n: int) -> date:
        for _ in range(n):
            day += timedelta(days=1)
            while not fresh.is_working_day(day):
                day += timedelta(days=1)
        return day

    counts = (1, 5, 12)
    added = [remembering.add_working_days(d, n) for d in days for n in counts]
    assert added == [stepped(d, n) for d in days for n in counts]
    assert added == [remembering.add_working_days(d, n) for d in days for n in counts]
    assert [remembering.next_working_day(d) for d in days] == added[:: len(counts)]
    assert remembering.add_working_days(date(2026, 12, 23), 1) == date(2026, 12, 28)
