"""A recipient's progress on a case: the ONE derivation of where it stands.

The API's case status, the board's recipient rows and their "Försenad" mark, the deadline
worker's same-day check and reminder texts, the "reached everyone" record and the overdue gauges
of /metrics all ask `progress` (or `case_progress` / `everyone_reached_at`, which are built on
the same facts) instead of reading delivery records their own way.

Inputs are plain facts already read from the store: the organisation's arrival-message
deliveries (topic `notice`), its acknowledgement of the current version, the acknowledgement and
booking deadlines computed by `bot.domain.deadline_rules`, and the injected clock's `now`.

Overdue is judged by the clock, not by whether a reminder has gone out: a recipient is overdue
once its acknowledgement deadline (the first chase: the reminder, else the escalation) has
passed and it has not acknowledged; a health centre's booking is overdue once its last day to
book is over and no booking is reported. (Before, the board read "overdue" from reminder lines
in the history and /metrics from fired reminder timers — both lag the deadline by however long
the timer worker takes, and /metrics counted a booking overdue from the day-3 reminder on,
before its deadline.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bot.domain.deadline_rules import AckDue, BookingDue
from bot.domain.events import DONE, DeliveryStatus, Topic

__all__ = [
    "ArrivalMessage",
    "CaseProgress",
    "Progress",
    "ProgressState",
    "Reach",
    "arrival_messages",
    "case_progress",
    "everyone_reached_at",
    "progress",
]


class Reach(StrEnum):
    """How far the current version's arrival message got to one organisation."""

    NONE = "none"  # nothing was queued: no e-mail address and no linked chat
    PENDING = "pending"  # queued, being sent or retried; nothing sent yet
    FAILED = "failed"  # every attempt failed (or was superseded); nothing sent
    SENT = "sent"  # at least one channel carried it


class ProgressState(StrEnum):
    """Where a recipient stands, most telling first: what the board and the API show."""

    CANCELLED = "cancelled"  # the arrival is off; nothing more is asked of anyone
    NOT_QUEUED = "not_queued"  # nothing could be queued (no channel)
    QUEUED = "queued"  # on its way
    FAILED = "failed"  # could not be delivered
    REACHED = "reached"  # delivered, not yet acknowledged, still in time
    OVERDUE = "overdue"  # not acknowledged and the acknowledgement deadline has passed
    ACKNOWLEDGED = "acknowledged"  # acknowledged the current version
    BOOKING_OVERDUE = "booking_overdue"  # health centre: acknowledged, last day to book is over
    BOOKED = "booked"  # health centre: acknowledged and a booking is reported


_REACH_STATE = {
    Reach.NONE: ProgressState.NOT_QUEUED,
    Reach.PENDING: ProgressState.QUEUED,
    Reach.FAILED: ProgressState.FAILED,
    Reach.SENT: ProgressState.REACHED,
}


@dataclass(frozen=True)
class ArrivalMessage:
    """One delivery of an arrival message: only what progress needs of the record."""

    version: int
    status: DeliveryStatus
    sent_at: datetime | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> ArrivalMessage | None:
        """From a stored delivery hash or the API's delivery view; None for another topic.

        The stored hash has `version` as text and the full topic ("notice"); the API view has
        an int and the topic's kind; both read the same.
        """
        kind = str(record.get("topic", "")).partition("/")[0]
        if kind != Topic.NOTICE:
            return None
        sent = record.get("sent_at")
        return cls(
            version=int(str(record.get("version", "0") or 0)),
            status=DeliveryStatus(str(record.get("status", DeliveryStatus.QUEUED))),
            sent_at=datetime.fromisoformat(str(sent)) if sent else None,
        )

    @property
    def sent(self) -> bool:
        """Whether this message reached its channel."""
        return self.status == DeliveryStatus.SENT and self.sent_at is not None


def arrival_messages(
    records: Iterable[Mapping[str, object]], org: str | None = None
) -> list[ArrivalMessage]:
    """The arrival messages among delivery `records` (of organisation `org`, when given; the
    stored hash names it under "org")."""
    out = []
    for record in records:
        if org is not None and record.get("org") != org:
            continue
        message = ArrivalMessage.from_record(record)
        if message is not None:
            out.append(message)
    return out


@dataclass(frozen=True)
class Progress:
    """Where one organisation stands on one version of a case."""

    state: ProgressState
    reach: Reach
    in_flight: bool  # some arrival message of the version is still queued, sending or retrying
    first_sent_at: datetime | None  # when the version's arrival message first reached it
    acknowledged_at: datetime | None
    ack_deadline: datetime | None  # None when not chased (or not asked)
    ack_overdue: bool
    booking_deadline: datetime | None  # health centres told of the arrival
    booked: bool
    booking_overdue: bool


def progress(
    *,
    version: int,
    cancelled: bool,
    messages: Iterable[ArrivalMessage],
    acknowledged_at: datetime | None,
    now: datetime | None = None,
    ack_due: AckDue | None = None,
    booking_due: BookingDue | None = None,
    booked: bool = False,
) -> Progress:
    """The one derivation of an organisation's progress on `version` of a case.

    `messages` are the organisation's arrival messages (any version; only `version`'s count).
    `acknowledged_at` is its acknowledgement of `version`. Overdue needs `now` and the deadline
    (`ack_due`, `booking_due`); without them nothing is overdue. `booked` is whether the health
    centre's booking is reported.
    """
    current = [m for m in messages if m.version == version]
    sent = [m.sent_at for m in current if m.sent and m.sent_at is not None]
    if sent:
        reach = Reach.SENT
    elif current and all(
        m.status in (DeliveryStatus.FAILED, DeliveryStatus.SUPERSEDED) for m in current
    ):
        reach = Reach.FAILED
    elif current:
        reach = Reach.PENDING
    else:
        reach = Reach.NONE
    ack_deadline = ack_due.deadline if ack_due is not None else None
    ack_overdue = (
        not cancelled
        and acknowledged_at is None
        and now is not None
        and ack_deadline is not None
        and now >= ack_deadline
    )
    booking_deadline = booking_due.escalation if booking_due is not None else None
    booking_overdue = (
        not cancelled
        and not booked
        and now is not None
        and booking_deadline is not None
        and now >= booking_deadline
    )
    if cancelled:
        state = ProgressState.CANCELLED
    elif acknowledged_at is None:
        state = ProgressState.OVERDUE if ack_overdue else _REACH_STATE[reach]
    elif booked:
        state = ProgressState.BOOKED
    elif booking_overdue:
        state = ProgressState.BOOKING_OVERDUE
    else:
        state = ProgressState.ACKNOWLEDGED
    return Progress(
        state=state,
        reach=reach,
        in_flight=any(m.status not in DONE for m in current),
        first_sent_at=min(sent) if sent else None,
        acknowledged_at=acknowledged_at,
        ack_deadline=ack_deadline,
        ack_overdue=ack_overdue,
        booking_deadline=booking_deadline,
        booked=booked,
        booking_overdue=booking_overdue,
    )


class CaseProgress(StrEnum):
    """A case's status as the API reports it: notifying → notified → acknowledged."""

    NOTIFYING = "notifying"
    NOTIFIED = "notified"
    ACKNOWLEDGED = "acknowledged"
    CANCELLED = "cancelled"


def case_progress(
    *, cancelled: bool, recipients: Sequence[Progress], copies: Sequence[Progress] = ()
) -> CaseProgress:
    """The case's status from its recipients' progress (and the reception unit's copy).

    Notifying while any arrival message of the version is still on its way, or none was queued
    at all; acknowledged when every recipient has acknowledged; else notified.
    """
    if cancelled:
        return CaseProgress.CANCELLED
    everyone = [*recipients, *copies]
    if any(p.in_flight for p in everyone) or all(p.reach == Reach.NONE for p in everyone):
        return CaseProgress.NOTIFYING
    if all(p.acknowledged_at is not None for p in recipients):
        return CaseProgress.ACKNOWLEDGED
    return CaseProgress.NOTIFIED


def everyone_reached_at(first_reached: Sequence[datetime | None]) -> datetime | None:
    """When the last of the recipients was first reached (each recipient's first arrival
    message); None while one has not been, or when there is nobody."""
    if not first_reached or any(t is None for t in first_reached):
        return None
    return max(t for t in first_reached if t is not None)
