"""A case: its model, how it is stored, and the schema of its history lines and events.

Pure: the store (bot/store/cases.py) reads and writes these shapes; the use cases
(bot/usecases/cases.py) decide when.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from bot.domain.actor import Actor
from bot.domain.arrival import ArrivalIn
from bot.domain.events import DeliveryTopic, EventType, Topic

CaseStatus = Literal["open", "cancelled"]
AckOutcome = Literal["recorded", "already", "stale", "cancelled", "not_recipient"]


class CaseNotFound(Exception):
    """No case with that id (or reference)."""


class Conflict(Exception):
    """The request contradicts what is stored; the message says how, in Swedish."""


@dataclass(frozen=True)
class Version:
    """What one version of a case said, and why it came to be."""

    number: int
    kind: Literal["new", "changed", "cancelled"]
    facts: dict[str, Any]
    at: datetime
    by: str
    via: str
    changes: tuple[dict[str, Any], ...] = ()
    reason: str = ""

    def to_json(self) -> str:
        """Serialise for the versions hash."""
        return json.dumps(
            {
                "number": self.number,
                "kind": self.kind,
                "facts": self.facts,
                "at": self.at.isoformat(),
                "by": self.by,
                "via": self.via,
                "changes": list(self.changes),
                "reason": self.reason,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Version:
        """Read back from the versions hash."""
        data = json.loads(text)
        return cls(
            number=int(data["number"]),
            kind=data["kind"],
            facts=data["facts"],
            at=datetime.fromisoformat(data["at"]),
            by=data["by"],
            via=data["via"],
            changes=tuple(data.get("changes", ())),
            reason=data.get("reason", ""),
        )


# A case's recipients in its hash: organisation ids joined by this (an id is a slug, never a
# comma: bot/domain/directory.py), so 5-6 recipients stay within the 64 bytes Redis keeps a
# hash compact for (hash-max-listpack-value). Older cases hold a JSON list: both are read.
RECIPIENTS_SEP = ","


def recipients_text(orgs: tuple[str, ...] | list[str]) -> str:
    """The case hash's `recipients` value of these organisation ids."""
    if any(RECIPIENTS_SEP in o or not o for o in orgs):
        raise ValueError(f"not an organisation id: {orgs!r}")
    return RECIPIENTS_SEP.join(orgs)


def parse_recipients(text: str | None) -> tuple[str, ...]:
    """The organisation ids of a case hash's `recipients` value (joined, or an older case's
    JSON list); none for a missing or empty value."""
    if not text:
        return ()
    if text.startswith("["):
        return tuple(json.loads(text))
    return tuple(text.split(RECIPIENTS_SEP))


@dataclass(frozen=True)
class Case:
    """A case as stored: the current facts and who is on it.

    The case hash (`to_hash`) keeps every value short, so Redis keeps it compact (a listpack,
    values of at most 64 bytes): the current facts are not in it but in the current version's
    snapshot (the versions hash, field `version`), which the store reads with the hash in one
    round trip (bot/store/cases.py `read_case`). A case stored before holds them in its hash as
    `facts` (JSON): that wins when present (`from_hash`); a new version deletes it.
    """

    id: str
    reference: str
    external_ref: str
    municipality: str
    reception_unit: str
    status: CaseStatus
    version: int
    created_at: datetime
    updated_at: datetime
    recipients: tuple[str, ...]
    facts: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""

    @property
    def arrival_date(self) -> date:
        """The current arrival date."""
        return date.fromisoformat(self.facts["arrival_date"])

    @property
    def ages(self) -> list[int]:
        """The children's ages."""
        return [int(c["age"]) for c in self.facts["children"]]

    def parties(self) -> tuple[str, ...]:
        """Every organisation on the case: the reception unit and the recipients."""
        return (self.reception_unit, *self.recipients)

    @classmethod
    def from_hash(cls, data: dict[str, str], facts: dict[str, Any] | None = None) -> Case:
        """Build from the case hash and the current version's `facts` (an older case's hash
        holds them itself, and those are taken; none given and none held: empty, which only a
        reader that uses no facts may accept — bot/store/cases.py `parse_with_version`)."""
        held = data.get("facts")
        return cls(
            id=data["id"],
            reference=data["reference"],
            external_ref=data["external_ref"],
            municipality=data["municipality"],
            reception_unit=data["reception_unit"],
            status="cancelled" if data["status"] == "cancelled" else "open",
            version=int(data["version"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            recipients=parse_recipients(data.get("recipients")),
            facts=json.loads(held) if held else dict(facts or {}),
            content_hash=data.get("content_hash", ""),
        )

    def to_hash(self) -> dict[str, str]:
        """Fields for the case hash (the facts go in the version's snapshot instead)."""
        return {
            "id": self.id,
            "reference": self.reference,
            "external_ref": self.external_ref,
            "municipality": self.municipality,
            "reception_unit": self.reception_unit,
            "status": self.status,
            "version": str(self.version),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "recipients": recipients_text(self.recipients),
            "content_hash": self.content_hash,
        }


def content_hash(arrival: ArrivalIn) -> str:
    """A fingerprint of what was registered, to tell a replay from a different request."""
    canonical = json.dumps(arrival.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def history_entry(what: str, actor: Actor, at: datetime, version: int, **extra: Any) -> str:
    """One line of a case's history: who, what, when, through which channel."""
    entry = {
        "at": at.isoformat(),
        "what": what,
        "by": actor.org_id,
        "via": actor.via,
        "who": actor.who,
        "version": version,
    }
    entry.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(entry, ensure_ascii=False)


def event_fields(
    kind: EventType, case_id: str, version: int, actor: Actor, at: datetime, **extra: str
) -> dict[str, str]:
    """The fields of one event on the stream."""
    return {
        "type": str(kind),
        "case": case_id,
        "version": str(version),
        "at": at.isoformat(),
        "by": actor.org_id,
        "via": actor.via,
        **extra,
    }


def notice_event(
    case_id: str,
    version: int,
    actor: Actor,
    at: datetime,
    topic: Topic | DeliveryTopic | str,
    orgs: list[str],
    params: dict[str, Any],
) -> dict[str, str]:
    """An event the fan-out turns into one status message per channel of each organisation.

    A topic given as text is parsed, so an unknown one is refused here (UnknownTopic) rather
    than by the sender, after the event is stored.
    """
    if isinstance(topic, str) and not isinstance(topic, Topic):
        topic = DeliveryTopic.parse(topic)
    return event_fields(
        EventType.NOTICE,
        case_id,
        version,
        actor,
        at,
        topic=str(topic),
        orgs=json.dumps(orgs),
        params=json.dumps(params, ensure_ascii=False, default=str),
    )
