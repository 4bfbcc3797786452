"""Dates and times the way a Swedish municipal letter writes them."""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_time

STOCKHOLM = ZoneInfo("Europe/Stockholm")


# Babel formats a date in tens of microseconds, and every recipient of a case version is sent
# the same few dates: the formatted text is kept (a date is hashable, and a `datetime` never
# equals a `date`, so the two never share an entry).
@lru_cache(maxsize=1024)
def swedish_date(d: date) -> str:
    """Weekday, day, month and year: "fredag 27 november 2026"."""
    return format_date(d, "EEEE d MMMM y", locale="sv")


@lru_cache(maxsize=1024)
def day_and_month(d: date) -> str:
    """Day and month, for subjects: "27 november"."""
    return format_date(d, "d MMMM", locale="sv")


def short_date(d: date) -> str:
    """Day/month, for tight spaces: "27/11"."""
    return f"{d.day}/{d.month}"


def swedish_datetime(dt: datetime, zone: ZoneInfo = STOCKHOLM) -> str:
    """Date and time in `zone`: "tisdag 1 december 2026 kl. 09.30".

    An aware datetime is converted to `zone`; a naive one is taken to be wall time in `zone`
    already (as in a booking time typed by a person).
    """
    local = dt.astimezone(zone) if dt.tzinfo is not None else dt.replace(tzinfo=zone)
    return f"{swedish_date(local.date())} kl. {format_time(local, 'HH.mm', locale='sv')}"
