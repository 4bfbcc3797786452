"""A delivery: one message about one case version, to one organisation, on one channel.

Its record is a set of named strings (bot/store/deliveries.py); `Delivery.from_hash` reads it
once at the store boundary, so the pipeline and the views work with typed fields.

The record holds only what its id does not say: the id names the case, version, organisation,
channel and topic (`delivery_id`), so they are not stored again, nor an empty `params` or
`attempts` 0. `delivery_row` gives a record back with all of them, and reads records written
before, which hold them, the same.

A record is stored packed (`pack_items`, `unpack`): the value of its id's field in its case's
delivery index, a few dozen bytes, so that the index stays a listpack (Redis 7.0 keeps a hash
so while no value is over 64 bytes; a hash of its own per delivery took 312-440 bytes). Packed,
it is its fields as items joined by "|", each a one-letter code (`CODES`) and the value:
the status as one letter, a number as its digits, a time as epoch microseconds (the time it
was queued; any other relative to that, which bot/store/lua/delivery_lib.lua works out), an
e-mail's Message-ID as "@" where it is the one its id gives with the case's sender domain
(kept once per case in the index, `SHARED`), the params of a reception unit's copy as "*"
(`COPY_PARAMS`), other text as it is ("|" and "%" escaped). A value
that would not read back the same so is kept as text ("=" first). Records stored before, a hash
of their own, are read the same.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from bot.domain.clock import aware_time
from bot.domain.events import (
    ChannelKind,
    DeliveryStatus,
    DeliveryTopic,
    EventType,
    Topic,
    UnknownTopic,
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


def mail_ids(
    ident: str, case: str, org: str, version: int, topic: DeliveryTopic, from_domain: str
) -> tuple[str, str]:
    """(a delivery's e-mail Message-ID, its case thread's root id) for one recipient: the first
    arrival message starts the thread, everything after answers it (bot/pipeline/rendering.py
    `thread_ids`)."""
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    root = f"<{case}.{org}@{from_domain}>"
    if topic.kind is Topic.ESCALATION_DIGEST:
        # A digest lists several cases: it belongs to no one case's thread.
        return f"<digest.{digest}@{from_domain}>", f"<digest.{digest}@{from_domain}>"
    own = root if version == 1 and topic.kind is Topic.NOTICE and not topic.suffix else None
    return own or f"<{case}.{digest}@{from_domain}>", root


def _own_mail_id(ident: str, from_domain: str) -> str | None:
    """The Message-ID an e-mail delivery of id `ident` is sent with; None if the id is not one
    (`id_fields`) or its topic unknown."""
    try:
        named = id_fields(ident)
        topic = DeliveryTopic.parse(named["topic"])
    except (ValueError, UnknownTopic):
        return None
    if named["channel"] != ChannelKind.EMAIL:
        return None
    own, _ = mail_ids(ident, named["case"], named["org"], int(named["version"]), topic, from_domain)
    return own


# -- packed records ---------------------------------------------------------------------------

# A record field's one-letter code in a packed record; any other field is "_" and its name,
# "=" and its value (a record whose id is not of the usual shape keeps id, case, ... so).
CODES: Final = {
    "status": "s",
    "attempts": "a",
    "queued_at": "q",
    "sending_at": "g",
    "sent_at": "t",
    "failed_at": "f",
    "retry_at": "r",
    "superseded_at": "x",
    "error": "e",
    "message_id": "m",
    "params": "p",
    "relay_attempts": "n",
    "migrated_to": "c",
}
_NAMES: Final = {code: name for name, code in CODES.items()}
_STATUS_CODES: Final = {
    DeliveryStatus.QUEUED: "q",
    DeliveryStatus.SENDING: "g",
    DeliveryStatus.SENT: "s",
    DeliveryStatus.FAILED: "f",
    DeliveryStatus.RETRYING: "r",
    DeliveryStatus.SUPERSEDED: "x",
}
_STATUSES: Final = {code: str(status) for status, code in _STATUS_CODES.items()}
_TIMES: Final = frozenset({"q", "g", "t", "f", "r", "x"})
_NUMBERS: Final = frozenset({"a", "n"})
QUEUED_CODE: Final = "q"  # the time the others are relative to
# The field of a case's delivery index holding what packed records there share: the sender
# domain of their e-mails' Message-IDs. No delivery's short id is "@" (each begins with its
# version).
SHARED: Final = "@"
# The params of a reception unit's copy of a notice, as the fan-out writes them
# (bot/pipeline/fanout.py); packed as "*". In full they made a sent copy's record 63 bytes
# with a 4-digit Telegram message id and a send within 10 s of queueing: one digit more, in
# either, and its case's index was no longer a listpack (issue 17: 1.21 KB an open case for the
# index in the 10,000-case run, 0.84 with every record within 64 bytes).
COPY_PARAMS: Final[Mapping[str, object]] = MappingProxyType({"copy": True})
_COPY_TEXT: Final = json.dumps(dict(COPY_PARAMS))
_COPY_PACKED: Final = "*"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO: Final = timedelta(0)
_MICROSECOND: Final = timedelta(microseconds=1)
_NUMBER: Final = re.compile(r"-?[0-9]+")
_ESCAPED: Final = re.compile(r"%(25|7C)")


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("|", "%7C")


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: "%" if m.group(1) == "25" else "|", text)


def _micros(text: str) -> int | None:
    """An ISO time as epoch microseconds, if it reads back as exactly the same text."""
    moment = aware_time(text)
    if moment is None:
        return None
    # The same text as `_iso(count)` gives exactly when the time is written in UTC ("+00:00"):
    # checked on the parsed time, without building it again.
    if moment.utcoffset() != _ZERO or moment.isoformat() != text:
        return None
    return (moment - _EPOCH) // _MICROSECOND


def _iso(micros: int) -> str:
    return (_EPOCH + timedelta(microseconds=micros)).isoformat()


def pack_items(ident: str, fields: Mapping[str, str]) -> list[str]:
    """`fields` of the record of `ident` as packed items (`unpack` reads them), in order, the
    time it was queued first. A time is its epoch microseconds: any but the time queued after
    "+", which bot/store/lua/delivery_lib.lua stores relative to the time queued. A Message-ID
    its id gives is "@" and the sender domain, which the script keeps once per case."""
    items: list[str] = []
    for name, value in sorted(fields.items(), key=lambda kv: CODES.get(kv[0]) != QUEUED_CODE):
        code = CODES.get(name)
        if code is None:
            if "=" in name or "|" in name or "%" in name:
                raise ValueError(f"delivery {ident}: field {name!r} cannot be packed")
            items.append(f"_{name}={_escape(value)}")
            continue
        items.append(code + _pack_value(ident, code, value))
    return items


def _pack_value(ident: str, code: str, value: str) -> str:
    if code == "s" and value in _STATUS_CODES:
        return _STATUS_CODES[DeliveryStatus(value)]
    if code in _NUMBERS and _NUMBER.fullmatch(value) and str(int(value)) == value:
        return value
    if code in _TIMES:
        micros = _micros(value)
        if micros is not None:
            return str(micros) if code == QUEUED_CODE else f"+{micros}"
    if code == "m" and value.startswith("<") and "@" in value:
        domain = value.rsplit("@", 1)[1].removesuffix(">")
        if domain and "|" not in domain and _own_mail_id(ident, domain) == value:
            return f"@{domain}"
    if code == "p" and value == _COPY_TEXT:
        return _COPY_PACKED
    if code in ("e", "p", "c", "m") and not value.startswith(("=", "@", "+", _COPY_PACKED)):
        return _escape(value)
    return "=" + _escape(value)


class UnreadableDelivery(ValueError):
    """A packed record this code cannot read."""


def unpack(ident: str, packed: str, shared: str | None = None) -> dict[str, str]:
    """A packed record (`pack_items`, as bot/store/lua/delivery_lib.lua stores them) as the
    fields a hash of its own would hold; `shared`: its case's index's `SHARED` value."""
    try:
        items = [i for i in packed.split("|") if i]
        values = {i[0]: i[1:] for i in items if i[0] != "_"}
        base = values.get(QUEUED_CODE, "")
        relative = _NUMBER.fullmatch(base) is not None
        out: dict[str, str] = {}
        for item in items:
            code, value = item[0], item[1:]
            if code == "_":
                name, _, text = value.partition("=")
                out[name] = _unescape(text)
                continue
            out[_NAMES[code]] = _unpack_value(ident, code, value, base if relative else "", shared)
        return out
    except (KeyError, ValueError, IndexError) as exc:
        raise UnreadableDelivery(f"delivery {ident}: {packed!r}") from exc


def _unpack_value(ident: str, code: str, value: str, base: str, shared: str | None) -> str:
    if value.startswith("="):
        return _unescape(value[1:])
    if code == "p" and value == _COPY_PACKED:
        return _COPY_TEXT
    if code == "s":
        return _STATUSES[value]
    if code in _TIMES and code != QUEUED_CODE and base and _NUMBER.fullmatch(value):
        return _iso(int(base) + int(value))
    if code in _TIMES:
        return _iso(int(value))
    if code == "m" and value.startswith("@"):
        domain = value[1:] or shared
        own = _own_mail_id(ident, domain) if domain else None
        if own is None:
            raise ValueError(f"no Message-ID for {ident} with {domain!r}")
        return own
    return _unescape(value)


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
