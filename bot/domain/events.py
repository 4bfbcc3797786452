"""The names Ankomst writes into its records: event types, delivery topics, statuses, channels.

Each is a StrEnum whose values are the strings already stored, so a member compares equal to
(and serialises as) the stored text and nothing in Redis changes. A delivery topic may carry a
suffix ("health_booking/2", "disagreement_raised/{id}"): `DeliveryTopic` parses and formats that
form, so no caller takes it apart with `split`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class EventType(StrEnum):
    """The `type` field of an entry on the event stream (`ankomst:events`)."""

    CASE_REGISTERED = "case.registered"
    CASE_CHANGED = "case.changed"
    CASE_CANCELLED = "case.cancelled"
    CASE_ACKNOWLEDGED = "case.acknowledged"
    CASE_ALL_ACKNOWLEDGED = "case.all_acknowledged"
    CASE_HEALTH_BOOKED = "case.health_booked"
    CASE_CLEARED = "case.cleared"
    DELIVERY_SENT = "delivery.sent"
    DELIVERY_FAILED = "delivery.failed"
    DISAGREEMENT_RAISED = "disagreement.raised"
    DISAGREEMENT_ESCALATED = "disagreement.escalated"
    DISAGREEMENT_RESOLVED = "disagreement.resolved"
    # A status message decided elsewhere (deadlines, health centre, disagreements): the fan-out
    # delivers it to the organisations the event names, under the topic it names.
    NOTICE = "notice"


# The events that make a new version of a case, each to be told to every party.
VERSION_EVENTS: Final = frozenset(
    {EventType.CASE_REGISTERED, EventType.CASE_CHANGED, EventType.CASE_CANCELLED}
)


class Topic(StrEnum):
    """What a delivery is about; also the name of its message template."""

    NOTICE = "notice"  # the arrival message of a version (new / ÄNDRAT / INSTÄLLD)
    ALL_ACKNOWLEDGED = "all_acknowledged"
    DELIVERY_FAILED = "delivery_failed"
    ACK_REMINDER = "ack_reminder"
    ACK_ESCALATION = "ack_escalation"
    ACK_OVERDUE_RECEPTION = "ack_overdue_reception"
    BOOKING_REMINDER = "booking_reminder"
    BOOKING_ESCALATION = "booking_escalation"
    HEALTH_BOOKING = "health_booking"
    # A date change moved the arrival after the booked health conversation: rebook.
    BOOKING_BEFORE_ARRIVAL = "booking_before_arrival"
    CLEARANCE = "clearance"
    SAME_DAY_ALERT = "same_day_alert"
    DISAGREEMENT_RAISED = "disagreement_raised"
    DISAGREEMENT_ESCALATED = "disagreement_escalated"
    DISAGREEMENT_RESOLVED = "disagreement_resolved"
    # One message per organisation listing every case escalated to it at one instant
    # (suffix: that instant, epoch seconds); anchored on one of the cases for delivery.
    ESCALATION_DIGEST = "escalation_digest"

    # A notice from Migrationsverket became a draft: the reception unit reviews and sends it.
    # Its deliveries are about a draft, not a case (`DRAFT_TOPICS`).
    NOTICE_DRAFT = "notice_draft"
    # A draft still not confirmed at the same-day alert time (reception unit), or at office end
    # (its supervisor too).
    NOTICE_DRAFT_ALERT = "notice_draft_alert"

    def at(self, suffix: object) -> DeliveryTopic:
        """This topic with a suffix: `Topic.HEALTH_BOOKING.at(2)` is "health_booking/2"."""
        return DeliveryTopic(self, str(suffix))


# Topics whose delivery's `case` names a notice draft (`draft_case_id`), not a case.
DRAFT_TOPICS: Final = frozenset({Topic.NOTICE_DRAFT, Topic.NOTICE_DRAFT_ALERT})
DRAFT_CASE_PREFIX: Final = "draft-"


def draft_case_id(draft_id: str) -> str:
    """What a notice draft's events and deliveries carry as their `case`."""
    return f"{DRAFT_CASE_PREFIX}{draft_id}"


class UnknownTopic(ValueError):
    """A stored topic names no message Ankomst knows."""


@dataclass(frozen=True)
class DeliveryTopic:
    """A delivery's topic as stored: the kind and an optional suffix after a "/".

    The suffix keeps deliveries of the same kind apart within one case version: the booking's
    sequence number, the disagreement's id, the organisation a reminder is about.
    """

    kind: Topic
    suffix: str = ""

    @classmethod
    def parse(cls, text: str) -> DeliveryTopic:
        """Read a stored topic; UnknownTopic if its kind is not one of `Topic`."""
        kind, _, suffix = text.partition("/")
        try:
            return cls(Topic(kind), suffix)
        except ValueError:
            raise UnknownTopic(f"unknown delivery topic {text!r}") from None

    def __str__(self) -> str:
        return f"{self.kind}/{self.suffix}" if self.suffix else str(self.kind)

    @property
    def sequence(self) -> int:
        """The number in the suffix (a health booking's: 1 for the first); 1 when none."""
        return int(self.suffix) if self.suffix.isdigit() and int(self.suffix) > 0 else 1


class DeliveryStatus(StrEnum):
    """Where a delivery stands."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    RETRYING = "retrying"
    SUPERSEDED = "superseded"

    @property
    def done(self) -> bool:
        """Whether nothing more will happen to the delivery."""
        return self in DONE


DONE: Final = frozenset({DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SUPERSEDED})


class ChannelKind(StrEnum):
    """The two kinds of channel a delivery goes out on."""

    EMAIL = "email"
    TELEGRAM = "telegram"

    @classmethod
    def of(cls, channel: str) -> ChannelKind:
        """The kind of a stored channel name ("email" or "tg:{chat id}")."""
        return cls.EMAIL if channel == cls.EMAIL else cls.TELEGRAM


_TELEGRAM_PREFIX: Final = "tg:"


def telegram_channel(chat_id: int) -> str:
    """The channel name of one Telegram chat."""
    return f"{_TELEGRAM_PREFIX}{chat_id}"


def chat_of(channel: str) -> int | None:
    """The chat id of a Telegram channel name, else None."""
    if not channel.startswith(_TELEGRAM_PREFIX):
        return None
    return int(channel.removeprefix(_TELEGRAM_PREFIX))
