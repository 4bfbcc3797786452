"""A recipient's progress: the one derivation, table-driven over plain facts (no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.deadline_rules import AckDue, BookingDue
from bot.domain.events import DeliveryStatus
from bot.domain.progress import (
    ArrivalMessage,
    CaseProgress,
    Progress,
    ProgressState,
    Reach,
    arrival_messages,
    case_progress,
    everyone_reached_at,
    progress,
)

T0 = datetime(2026, 11, 25, 8, tzinfo=UTC)  # the version was told
SENT_1 = T0 + timedelta(minutes=1)
SENT_2 = T0 + timedelta(minutes=3)
ACKED = T0 + timedelta(minutes=30)
ACK_DUE = AckDue(reminder=T0 + timedelta(hours=2), escalation=T0 + timedelta(hours=26))
BOOK_DUE = BookingDue(
    reminder=T0 + timedelta(days=5), escalation=T0 + timedelta(days=7), last_day=T0.date()
)


def msg(
    status: DeliveryStatus, sent_at: datetime | None = None, version: int = 1
) -> ArrivalMessage:
    return ArrivalMessage(version=version, status=status, sent_at=sent_at)


Q, SENDING, RETRY = DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.RETRYING
SENT, FAILED, SUPERSEDED = DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SUPERSEDED


@pytest.mark.parametrize(
    ("messages", "reach", "state", "in_flight", "first_sent"),
    [
        ([], Reach.NONE, ProgressState.NOT_QUEUED, False, None),
        ([msg(Q)], Reach.PENDING, ProgressState.QUEUED, True, None),
        ([msg(SENDING), msg(RETRY)], Reach.PENDING, ProgressState.QUEUED, True, None),
        ([msg(FAILED), msg(SUPERSEDED)], Reach.FAILED, ProgressState.FAILED, False, None),
        # One channel failed, another is still trying: not failed yet.
        ([msg(FAILED), msg(RETRY)], Reach.PENDING, ProgressState.QUEUED, True, None),
        # E-mail sent, chat still queued: reached, but a message is still on its way.
        ([msg(SENT, SENT_2), msg(Q)], Reach.SENT, ProgressState.REACHED, True, SENT_2),
        # The first of two sent messages counts.
        ([msg(SENT, SENT_2), msg(SENT, SENT_1)], Reach.SENT, ProgressState.REACHED, False, SENT_1),
        # Only the current version's messages count (these are version 2's, not version 1's).
        ([msg(SENT, SENT_1, version=2)], Reach.NONE, ProgressState.NOT_QUEUED, False, None),
    ],
)
def test_reach_comes_from_the_current_versions_arrival_messages(
    messages: list[ArrivalMessage],
    reach: Reach,
    state: ProgressState,
    in_flight: bool,
    first_sent: datetime | None,
) -> None:
    got = progress(version=1, cancelled=False, messages=messages, acknowledged_at=None)
    assert (got.reach, got.state, got.in_flight, got.first_sent_at) == (
        reach,
        state,
        in_flight,
        first_sent,
    )
    assert not got.ack_overdue  # no deadline given: nothing is overdue


@pytest.mark.parametrize(
    ("now", "acked", "cancelled", "state", "overdue"),
    [
        (T0 + timedelta(hours=1), None, False, ProgressState.REACHED, False),
        # The deadline is the reminder's instant: overdue from then on, by the clock.
        (ACK_DUE.reminder - timedelta(seconds=1), None, False, ProgressState.REACHED, False),
        (ACK_DUE.reminder, None, False, ProgressState.OVERDUE, True),
        (T0 + timedelta(days=3), None, False, ProgressState.OVERDUE, True),
        # Acknowledged, or the arrival cancelled: never overdue.
        (T0 + timedelta(days=3), ACKED, False, ProgressState.ACKNOWLEDGED, False),
        (T0 + timedelta(days=3), None, True, ProgressState.CANCELLED, False),
    ],
)
def test_overdue_once_the_acknowledgement_deadline_has_passed_by_the_clock(
    now: datetime,
    acked: datetime | None,
    cancelled: bool,
    state: ProgressState,
    overdue: bool,
) -> None:
    got = progress(
        version=1,
        cancelled=cancelled,
        messages=[msg(SENT, SENT_1)],
        acknowledged_at=acked,
        now=now,
        ack_due=ACK_DUE,
    )
    assert got.state == state
    assert got.ack_overdue is overdue
    assert got.ack_deadline == ACK_DUE.reminder


def test_the_escalation_is_the_deadline_when_there_is_no_reminder() -> None:
    due = AckDue(reminder=None, escalation=T0 + timedelta(hours=26))
    before = progress(
        version=1,
        cancelled=False,
        messages=[],
        acknowledged_at=None,
        now=T0 + timedelta(hours=3),
        ack_due=due,
    )
    after = progress(
        version=1,
        cancelled=False,
        messages=[],
        acknowledged_at=None,
        now=due.escalation,
        ack_due=due,
    )
    assert (before.ack_overdue, before.state) == (False, ProgressState.NOT_QUEUED)
    assert (after.ack_overdue, after.state) == (True, ProgressState.OVERDUE)


@pytest.mark.parametrize(
    ("now", "acked", "booked", "state", "booking_overdue"),
    [
        # Day-3 reminder time is not the deadline: not overdue yet.
        (BOOK_DUE.reminder, ACKED, False, ProgressState.ACKNOWLEDGED, False),
        (BOOK_DUE.escalation, ACKED, False, ProgressState.BOOKING_OVERDUE, True),
        (BOOK_DUE.escalation, ACKED, True, ProgressState.BOOKED, False),
        # Not even acknowledged: the acknowledgement shows first, the booking flag still counts.
        (BOOK_DUE.escalation, None, False, ProgressState.OVERDUE, True),
    ],
)
def test_a_health_centres_booking_is_overdue_when_its_last_day_is_over(
    now: datetime,
    acked: datetime | None,
    booked: bool,
    state: ProgressState,
    booking_overdue: bool,
) -> None:
    got = progress(
        version=1,
        cancelled=False,
        messages=[msg(SENT, SENT_1)],
        acknowledged_at=acked,
        now=now,
        ack_due=ACK_DUE,
        booking_due=BOOK_DUE,
        booked=booked,
    )
    assert (got.state, got.booking_overdue, got.booked) == (state, booking_overdue, booked)
    assert got.booking_deadline == BOOK_DUE.escalation


def test_messages_are_read_from_stored_records_and_from_the_api_view() -> None:
    stored = [
        {
            "org": "school",
            "topic": "notice",
            "version": "2",
            "status": "sent",
            "sent_at": SENT_1.isoformat(),
        },
        {"org": "school", "topic": "ack_reminder/school", "version": "2", "status": "sent"},
        {"org": "hc", "topic": "notice", "version": "2", "status": "queued"},
    ]
    view = [{"topic": "notice", "version": 2, "status": "sent", "sent_at": SENT_1.isoformat()}]
    assert arrival_messages(stored, "school") == [msg(SENT, SENT_1, version=2)]
    assert arrival_messages(stored, "hc") == [msg(Q, version=2)]
    assert arrival_messages(view) == [msg(SENT, SENT_1, version=2)]


def p(reach: Reach, *, in_flight: bool = False, acked: bool = False) -> Progress:
    return Progress(
        state=ProgressState.REACHED,
        reach=reach,
        in_flight=in_flight,
        first_sent_at=None,
        acknowledged_at=ACKED if acked else None,
        ack_deadline=None,
        ack_overdue=False,
        booking_deadline=None,
        booked=False,
        booking_overdue=False,
    )


@pytest.mark.parametrize(
    ("cancelled", "recipients", "copies", "status"),
    [
        (True, [p(Reach.SENT, acked=True)], [], CaseProgress.CANCELLED),
        # Nothing queued for anyone: still notifying.
        (False, [p(Reach.NONE)], [p(Reach.NONE)], CaseProgress.NOTIFYING),
        # The reception unit's copy still on its way keeps the case notifying.
        (False, [p(Reach.SENT)], [p(Reach.PENDING, in_flight=True)], CaseProgress.NOTIFYING),
        (False, [p(Reach.SENT), p(Reach.FAILED)], [p(Reach.SENT)], CaseProgress.NOTIFIED),
        # A recipient with no channel does not hold the case back once the others are done.
        (False, [p(Reach.SENT), p(Reach.NONE)], [p(Reach.SENT)], CaseProgress.NOTIFIED),
        (False, [p(Reach.SENT, acked=True), p(Reach.SENT)], [], CaseProgress.NOTIFIED),
        (
            False,
            [p(Reach.SENT, acked=True), p(Reach.FAILED, acked=True)],
            [],
            CaseProgress.ACKNOWLEDGED,
        ),
    ],
)
def test_the_case_status_follows_its_recipients_progress(
    cancelled: bool, recipients: list[Progress], copies: list[Progress], status: CaseProgress
) -> None:
    assert case_progress(cancelled=cancelled, recipients=recipients, copies=copies) == status


@pytest.mark.parametrize(
    ("firsts", "everyone"),
    [
        ([], None),
        ([SENT_1, None], None),
        ([SENT_2, SENT_1], SENT_2),
        ([SENT_1], SENT_1),
    ],
)
def test_everyone_reached_when_the_last_recipient_first_was(
    firsts: list[datetime | None], everyone: datetime | None
) -> None:
    assert everyone_reached_at(firsts) == everyone
