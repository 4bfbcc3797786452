"""A delivery: one message about one case version, to one organisation, on one channel.

Stored as a hash of strings (bot/store/deliveries.py); `Delivery.from_hash` reads it once at the
store boundary, so the pipeline and the views work with typed fields.

The record holds only what its id (its key) does not say: the id names the case, version,
organisation, channel and topic (`delivery_id`), so they are not stored again, nor an empty
`params` or `attempts` 0. `delivery_row` gives a record back with all of them, and reads records
written before, which hold them, the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

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


# Fields the id names, not stored (records written before hold them too).
NAMED_BY_ID: Final = ("id", "case", "version", "org", "channel", "topic")
# Fields not stored when they hold their default.
DEFAULTS: Final = {"params": "{}", "attempts": "0"}


def id_fields(ident: str) -> dict[str, str]:
    """The fields a delivery id names (`delivery_id`): its case, version, organisation,
    channel ("email" or "tg:{chat id}") and topic (the rest, which may hold ":"); ValueError
    for an id not of that shape. Case ids (hex, "draft-" and hex) and organisation ids (slugs)
    hold no ":"; a chat id is a number."""
    case, version, org, rest = _split(ident, 3)
    if rest.startswith(f"{ChannelKind.EMAIL}:"):
        channel, topic = _split(rest, 1)
    else:
        kind, chat, topic = _split(rest, 2)
        channel = f"{kind}:{chat}"
        if not chat.lstrip("-").isdigit() or chat_of(channel) is None:
            raise ValueError(f"not a delivery id: {ident!r}")
    if not version.isdigit() or not (case and org and topic):
        raise ValueError(f"not a delivery id: {ident!r}")
    return {
        "id": ident,
        "case": case,
        "version": version,
        "org": org,
        "channel": channel,
        "topic": topic,
    }


def _split(text: str, times: int) -> list[str]:
    parts = text.split(":", times)
    if len(parts) != times + 1:
        raise ValueError(f"not a delivery id: {text!r}")
    return parts


def stored_fields(ident: str, fields: Mapping[str, str]) -> dict[str, str]:
    """What of a new delivery's `fields` (every one, as `delivery_row` gives them back) is
    stored under `ident`: not those its id names, nor defaults. Should the id not name them
    (a part holding ":" where none is expected), they are all stored, as before."""
    try:
        named = id_fields(ident)
    except ValueError:
        named = {}
    keep = not named or any(k in fields and fields[k] != v for k, v in named.items())
    return {
        k: v
        for k, v in {"id": ident, **fields}.items()
        if (keep or k not in NAMED_BY_ID) and DEFAULTS.get(k) != v
    }


def delivery_row(ident: str, stored: Mapping[str, str]) -> dict[str, str]:
    """A delivery record as stored under `ident`, with the fields its id names and the
    defaults filled in: every field a reader of rows asks for. A record written before, which
    holds them all, is read as it is (its id need not have the shape `id_fields` parses)."""
    if all(k in stored for k in NAMED_BY_ID):
        return {**DEFAULTS, **stored}
    return {**DEFAULTS, **id_fields(ident), **stored}


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
    def from_hash(cls, ident: str, stored: Mapping[str, str]) -> Delivery:
        """Build from the hash stored under id `ident` (`delivery_row`); UnknownTopic for a
        topic no message exists for."""
        data = delivery_row(ident, stored)
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
