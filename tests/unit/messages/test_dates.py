from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from messages.dates import day_and_month, short_date, swedish_date, swedish_datetime

STOCKHOLM = ZoneInfo("Europe/Stockholm")


def test_swedish_date_has_weekday_day_month_and_year() -> None:
    assert swedish_date(date(2026, 11, 27)) == "fredag 27 november 2026"


def test_swedish_datetime_is_converted_to_the_zone() -> None:
    at = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    assert swedish_datetime(at, STOCKHOLM) == "tisdag 1 december 2026 kl. 09.30"


def test_swedish_datetime_follows_summer_time() -> None:
    at = datetime(2026, 6, 1, 8, 30, tzinfo=UTC)
    assert swedish_datetime(at, STOCKHOLM) == "måndag 1 juni 2026 kl. 10.30"


def test_naive_datetime_is_wall_time_in_the_zone() -> None:
    assert swedish_datetime(datetime(2026, 12, 1, 9, 30), STOCKHOLM).endswith("kl. 09.30")


def test_short_forms() -> None:
    assert short_date(date(2026, 11, 27)) == "27/11"
    assert day_and_month(date(2026, 11, 27)) == "27 november"
