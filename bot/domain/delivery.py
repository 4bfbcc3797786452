"""A delivery: one message about one case version, to one organisation, on one channel.

Stored as a hash of strings (bot/store/deliveries.py); `Delivery.from_hash` reads it once at the
store boundary, so the pipeline and the views work with typed fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain.events import (
    ChannelKind,
    DeliveryStatus,
    DeliveryTopic,
    EventType,
    Topic,
    chat_of,
)


def delivery_id(case_id: str, version: int, org_id: str, channel: str, topic: str) -> str:
    """The idempotency key of one delivery."""
    return f"{case_id}:{version}:{org_id}:{channel}:{topic}"


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class Delivery:
    """One delivery as stored."""

    id: str
    case: str
    version: int
    org: str
    channel: str  # "email" or "tg:{chat id}"
    topic: DeliveryTopic
    status: DeliveryStatus
    params: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    queued_at: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    error: str = ""

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> Delivery:
        """Build from the delivery hash; UnknownTopic for a topic no message exists for."""
        return cls(
            id=data["id"],
            case=data["case"],
            version=int(data["version"]),
            org=data["org"],
            channel=data["channel"],
            topic=DeliveryTopic.parse(data["topic"]),
            status=DeliveryStatus(data.get("status") or DeliveryStatus.QUEUED),
            params=json.loads(data.get("params") or "{}"),
            attempts=int(data.get("attempts") or 0),
            queued_at=_time(data.get("queued_at")),
            sent_at=_time(data.get("sent_at")),
            failed_at=_time(data.get("failed_at")),
            error=data.get("error", ""),
        )

    @property
    def channel_kind(self) -> ChannelKind:
        """E-mail or Telegram."""
        return ChannelKind.of(self.channel)

    @property
    def chat_id(self) -> int | None:
        """The chat a Telegram delivery goes to; None for e-mail."""
        return chat_of(self.channel)

    @property
    def is_copy(self) -> bool:
        """Whether this is the reception unit's copy of an arrival message (nothing to
        acknowledge, never superseded)."""
        return bool(self.params.get("copy"))

    @property
    def is_arrival_notice(self) -> bool:
        """Whether this is a recipient's own arrival message of a version (not a copy)."""
        return self.topic.kind is Topic.NOTICE and not self.is_copy

    @property
    def reports_failure(self) -> bool:
        """Whether a failure of this delivery is reported to the reception unit: not when it
        was itself such a report, or two channels that both fail would tell each other forever."""
        return self.topic.kind is not Topic.DELIVERY_FAILED

    def event(self, kind: EventType, at: str, **extra: str) -> dict[str, str]:
        """An event about this delivery (sent, failed) for the event stream."""
        return delivery_event(
            kind, self.case, str(self.version), self.id, self.org, self.channel, at, **extra
        )


def delivery_event(
    kind: EventType,
    case: str,
    version: str,
    delivery: str,
    org: str,
    channel: str,
    at: str,
    **extra: str,
) -> dict[str, str]:
    """The fields of an event about one delivery (its case, version, organisation, channel)."""
    return {
        "type": str(kind),
        "case": case,
        "version": version,
        "at": at,
        "by": "ankomst",
        "via": "system",
        "delivery": delivery,
        "org": org,
        "channel": channel,
        **extra,
    }
