from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from messages import deadlines as words
from messages.models import CaseNotice, Contact
from messages.render import render_case_notice

SENT = datetime(2026, 11, 26, 13, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(hours=2), "2 arbetstimmar"),
        (timedelta(hours=1, minutes=30), "1 arbetstimme och 30 minuter"),
        (timedelta(minutes=45), "45 minuter"),
        (timedelta(minutes=1), "1 minut"),
        (timedelta(0), "0 minuter"),
        (timedelta(hours=4, seconds=59), "4 arbetstimmar"),
    ],
)
def test_working_time_reads_as_swedish(delta: timedelta, expected: str) -> None:
    assert words.working_time(delta) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, "en arbetsdag"), (3, "tre arbetsdagar"), (5, "fem arbetsdagar"), (12, "12 arbetsdagar")],
)
def test_counts_are_written_in_words_up_to_ten(n: int, expected: str) -> None:
    assert words.count(n, "arbetsdag", "arbetsdagar") == expected


def test_the_basis_of_each_deadline_is_stated() -> None:
    assert words.ack_basis(2.0, time(10)) == (
        "Enligt överenskommelsen ska mottagandet bekräftas inom två arbetstimmar, "
        "och senast kl. 10.00 nästa arbetsdag."
    )
    assert "1,5 arbetstimmar" in words.ack_basis(1.5, time(9, 30))
    assert words.booking_basis(5) == (
        "Enligt överenskommelsen ska hälsocentralen boka tid för hälsosamtal inom fem arbetsdagar "
        "från att den fick besked (dagen för beskedet räknas inte)."
    )


def notice(topic: str, facts: dict[str, object]) -> CaseNotice:
    return CaseNotice(
        topic=topic,
        reference="OSD-2026-0001",
        municipality="Östersund",
        arrival_date=date(2026, 11, 27),
        recipient=Contact("Mottagningsenheten Östersund"),
        facts=facts,
    )


@pytest.mark.parametrize(
    ("topic", "facts"),
    [
        ("ack_reminder", {"organisation": "Skolan", "sent_at": SENT, "waited": "2 arbetstimmar"}),
        ("ack_escalation", {"organisation": "Skolan", "sent_at": SENT, "waited": "4 arbetstimmar"}),
        ("ack_overdue_reception", {"organisation": "Skolan", "sent_at": SENT, "waited": "4 h"}),
    ],
)
def test_acknowledgement_messages_carry_their_basis(topic: str, facts: dict[str, object]) -> None:
    basis = words.ack_basis(2.0, time(10))
    r = render_case_notice(notice(topic, {**facts, "basis": basis}))
    for part in (r.text, r.telegram):
        assert basis in part
        assert str(facts["waited"]) in part


def test_a_booking_message_follows_the_configured_number_of_days() -> None:
    facts = {
        "organisation": "Hälsocentralen",
        "informed_at": SENT,
        "deadline": date(2026, 12, 3),
        "basis": words.booking_basis(7),
        "waited": "fyra arbetsdagar",
        "working_day": 4,
    }
    r = render_case_notice(notice("booking_reminder", facts))
    assert "inom sju arbetsdagar" in r.text and "fem" not in r.text
    # The reminder comes as working day 4 begins (the day told is day 0, not counted): it is
    # the fourth working day, not four that have passed.
    assert "I dag är den fjärde arbetsdagen sedan beskedet." in r.text
    assert "Det har gått" not in r.text
