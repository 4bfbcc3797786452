"""The booked health conversation's .ics: a VTIMEZONE for ANKOMST_TIMEZONE, read back at the
same instant by icalendar and by vobject (an independent parser), in winter and in summer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import pytest
import vobject

from bot.domain.delivery import Delivery, DeliveryStatus
from bot.domain.events import DeliveryTopic
from bot.pipeline.rendering import booking_ics

STOCKHOLM = ZoneInfo("Europe/Stockholm")
NOW = datetime(2026, 12, 2, 6, 39, tzinfo=UTC)


def ics_for(booked_at: str, zone: ZoneInfo = STOCKHOLM) -> bytes:
    delivery = Delivery(
        id="d1",
        case="c1",
        version=1,
        org="ostersund-mottagning",
        channel="email",
        topic=DeliveryTopic.parse("health_booking/2"),
        status=DeliveryStatus.QUEUED,
        params={"booked_at": booked_at, "organisation": "Lugnviks hälsocentral"},
    )
    return booking_ics(delivery, "OSD-2026-0001", "ankomst.example.se", NOW, zone).data


@pytest.mark.parametrize(
    ("booked_at", "offset_hours"),
    [
        ("2026-12-08T09:30:00+01:00", 1),  # winter: CET
        ("2026-06-16T09:30:00+02:00", 2),  # summer: CEST
        ("2026-06-16T07:30:00+00:00", 2),  # the same summer instant given in UTC
    ],
)
def test_the_booking_reads_back_at_the_same_instant_in_two_parsers(
    booked_at: str, offset_hours: int
) -> None:
    instant = datetime.fromisoformat(booked_at)
    text = ics_for(booked_at)
    assert b"BEGIN:VTIMEZONE" in text and b"TZID:Europe/Stockholm" in text
    assert b"DTSTART;TZID=Europe/Stockholm:" in text
    assert b"UTC+01:00" not in text

    calendar = icalendar.Calendar.from_ical(text)
    event = next(iter(calendar.walk("VEVENT")))
    start = event.decoded("dtstart")
    assert start.tzinfo is not None  # not a floating time
    assert start == instant
    assert start.utcoffset() == timedelta(hours=offset_hours)
    assert event.decoded("dtend") - start == timedelta(hours=1)
    assert calendar.walk("VTIMEZONE")

    parsed = vobject.readOne(text.decode())
    other = parsed.vevent.dtstart.value
    assert other.tzinfo is not None
    assert other == instant
    assert other.utcoffset() == timedelta(hours=offset_hours)
    assert parsed.vevent.dtend.value - other == timedelta(hours=1)


def test_a_booking_without_an_offset_is_wall_time_in_the_zone() -> None:
    text = ics_for("2026-07-01T10:00:00", ZoneInfo("Europe/Helsinki"))
    assert b"TZID:Europe/Helsinki" in text
    start = next(iter(icalendar.Calendar.from_ical(text).walk("VEVENT"))).decoded("dtstart")
    assert start == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
