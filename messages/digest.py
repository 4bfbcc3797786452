"""The escalation digest: one message to one organisation listing every case escalated to it
at one instant (reference, arrival date, who has not acknowledged or booked — nothing else)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from messages.dates import STOCKHOLM, swedish_date, swedish_datetime
from messages.models import Contact, Rendered
from messages.render import _checked_url, _markup, _render, _rendered

__all__ = ["DigestCase", "EscalationDigest", "NotAcknowledged", "NotBooked", "render_digest"]


@dataclass(frozen=True)
class NotAcknowledged:
    """A recipient that has not acknowledged: since when it has had the message, how long."""

    organisation: str
    sent_at: datetime
    waited: str


@dataclass(frozen=True)
class NotBooked:
    """A health centre that has not reported a booking by its last day."""

    organisation: str
    deadline: date


@dataclass(frozen=True)
class DigestCase:
    """One overdue case as the digest lists it."""

    reference: str
    municipality: str
    arrival_date: date
    url: str | None  # a signed link to the case page on the board
    not_acknowledged: tuple[NotAcknowledged, ...] = ()
    not_booked: tuple[NotBooked, ...] = ()


@dataclass(frozen=True)
class EscalationDigest:
    """Every case escalated to `recipient` at one instant."""

    recipient: Contact
    cases: tuple[DigestCase, ...]
    basis_ack: str = ""
    basis_booking: str = ""


def _subject(d: EscalationDigest) -> str:
    acks = any(c.not_acknowledged for c in d.cases)
    bookings = any(c.not_booked for c in d.cases)
    if len(d.cases) == 1:
        one = d.cases[0]
        names = ", ".join(
            [a.organisation for a in one.not_acknowledged]
            + [b.organisation for b in one.not_booked]
        )
        what = "Ej bekräftat" if acks and not bookings else "Ingen bokad tid"
        if acks and bookings:
            what = "Ej bekräftat, ingen bokad tid"
        return f"{what}: {names}, {one.reference} ({one.municipality})"
    what = "Ej bekräftat" if acks and not bookings else "Ingen bokad tid"
    if acks and bookings:
        what = "Försenat (ej bekräftat, ingen bokad tid)"
    return f"{what}: {len(d.cases)} ärenden"


def render_digest(d: EscalationDigest, zone: ZoneInfo = STOCKHOLM) -> Rendered:
    """The digest in every form (e-mail text and HTML, Telegram)."""
    context: dict[str, Any] = {
        "subject": _subject(d),
        "recipient": d.recipient,
        "count": len(d.cases),
        "cases": [
            {
                "reference": c.reference,
                "municipality": c.municipality,
                "arrival_date": swedish_date(c.arrival_date),
                "url": _checked_url(c.url, "url"),
                "not_acknowledged": [
                    {
                        "organisation": a.organisation,
                        "sent_at": swedish_datetime(a.sent_at, zone),
                        "waited": a.waited,
                    }
                    for a in c.not_acknowledged
                ],
                "not_booked": [
                    {"organisation": b.organisation, "deadline": swedish_date(b.deadline)}
                    for b in c.not_booked
                ],
            }
            for c in d.cases
        ],
        "basis_ack": d.basis_ack if any(c.not_acknowledged for c in d.cases) else "",
        "basis_booking": d.basis_booking if any(c.not_booked for c in d.cases) else "",
    }

    def telegram(cap: int | None) -> str:
        return _render(_markup, "digest/telegram.html", context, "telegram")

    return _rendered("digest/", context, telegram, 0)
