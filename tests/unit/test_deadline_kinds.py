"""What the case view says happens when a deadline falls due: made from the timer's kind and
payload with the directory's names (timers do not store the sentence)."""

from __future__ import annotations

from pathlib import Path

from bot.domain.deadline_kinds import (
    ACK_ESCALATION,
    ACK_REMINDER,
    BOOKING_ESCALATION,
    BOOKING_REMINDER,
    DISAGREEMENT_ESCALATION,
    ESCALATION_DIGEST,
    SAME_DAY_CHECK,
    SAME_DAY_CLOSE,
    name_of,
    supervisor_of,
    what_then,
)
from bot.runtime.directory_file import load_directory
from messages import deadlines as words

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "directory.example.toml"
DIRECTORY = load_directory(EXAMPLE)
HC = "hc-lugnvik"
REGION = "region-primarvard"


def test_each_chase_names_the_organisation_and_whom_it_goes_up_to() -> None:
    assert supervisor_of(DIRECTORY, HC) == REGION
    hc, region = name_of(DIRECTORY, HC), name_of(DIRECTORY, REGION)
    assert hc != HC and region != REGION  # names, not ids
    ack = {"version": 1, "organisation": HC, "told_at": "2026-11-25T08:00:00+00:00"}
    booking = {"organisation": HC, "informed_at": "2026-11-25T08:00:00+00:00"}
    booking["deadline"] = "2026-12-02"
    assert what_then(DIRECTORY, ACK_REMINDER, ack) == words.then_ack_reminder(hc)
    assert what_then(DIRECTORY, ACK_ESCALATION, ack) == words.then_ack_escalation(hc, region)
    assert region in str(what_then(DIRECTORY, ACK_ESCALATION, ack))
    reminder = what_then(DIRECTORY, BOOKING_REMINDER, booking)
    assert reminder is not None and "2 december 2026" in reminder
    assert what_then(DIRECTORY, BOOKING_ESCALATION, booking) == words.then_booking_escalation(
        hc, region
    )
    assert what_then(DIRECTORY, SAME_DAY_CHECK, {"version": 1}) == words.then_same_day()
    assert what_then(DIRECTORY, DISAGREEMENT_ESCALATION, {"days": 5}) == (
        words.disagreement_then(5)
    )


def test_an_organisation_without_a_supervisor_or_gone_from_the_directory_is_still_worded() -> None:
    gone = {"version": 1, "organisation": "no-longer-listed"}
    assert supervisor_of(DIRECTORY, "no-longer-listed") is None
    assert what_then(DIRECTORY, ACK_ESCALATION, gone) == words.then_ack_escalation(
        "no-longer-listed", None
    )


def test_bookkeeping_timers_say_nothing_and_a_stored_sentence_is_kept() -> None:
    assert what_then(DIRECTORY, SAME_DAY_CLOSE, {"version": 1}) is None
    assert what_then(DIRECTORY, ESCALATION_DIGEST, {"organisation": HC, "stamp": 1}) is None
    assert what_then(DIRECTORY, "some_other_kind", {}) is None
    # A timer made while the sentence was stored with it says what it said then.
    stored = {"version": 1, "organisation": HC, "then": "Något annat."}
    assert what_then(DIRECTORY, ACK_REMINDER, stored) == "Något annat."
