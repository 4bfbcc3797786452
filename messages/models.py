"""What the renderers take: plain, immutable view data built by bot/. No I/O here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

OrgKind = Literal[
    "reception_unit", "health_centre", "school", "preschool", "social_services", "management"
]
NoticeKind = Literal["new", "changed", "cancelled"]
ChatDetails = Literal["minimal", "full"]


class Rendered:
    """One message in every form a channel may need:

    - `subject`: e-mail subject (plain text, one line, no CR/LF)
    - `text`: e-mail plain-text part
    - `html`: e-mail HTML part (everything user-given escaped)
    - `telegram`: Telegram HTML parse mode (escaped), at most 4096 characters

    Made from the four texts, or by `Rendered.lazy` from two functions: the e-mail's three
    forms and the chat form are then each made when first asked for, so a mail never renders
    the chat message nor a chat message the mail. Immutable either way.
    """

    __slots__ = ("_email", "_make_email", "_make_telegram", "_telegram")

    def __init__(self, subject: str, text: str, html: str, telegram: str) -> None:
        self._email: tuple[str, str, str] | None = (subject, text, html)
        self._telegram: str | None = telegram
        self._make_email: Callable[[], tuple[str, str, str]] | None = None
        self._make_telegram: Callable[[], str] | None = None

    @classmethod
    def lazy(
        cls, email: Callable[[], tuple[str, str, str]], telegram: Callable[[], str]
    ) -> Rendered:
        """The message whose e-mail forms (subject, text, HTML) `email()` makes and whose chat
        form `telegram()` makes, each called at most once, on first use."""
        rendered = cls.__new__(cls)
        rendered._email = rendered._telegram = None
        rendered._make_email, rendered._make_telegram = email, telegram
        return rendered

    def _email_forms(self) -> tuple[str, str, str]:
        if self._email is None:
            assert self._make_email is not None
            self._email = self._make_email()
            self._make_email = None
        return self._email

    @property
    def subject(self) -> str:
        """The e-mail subject."""
        return self._email_forms()[0]

    @property
    def text(self) -> str:
        """The e-mail plain-text part."""
        return self._email_forms()[1]

    @property
    def html(self) -> str:
        """The e-mail HTML part."""
        return self._email_forms()[2]

    @property
    def telegram(self) -> str:
        """The Telegram message."""
        if self._telegram is None:
            assert self._make_telegram is not None
            self._telegram = self._make_telegram()
            self._make_telegram = None
        return self._telegram

    def _forms(self) -> tuple[str, str, str, str]:
        return (*self._email_forms(), self.telegram)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Rendered):
            return NotImplemented
        return self._forms() == other._forms()

    def __hash__(self) -> int:
        return hash(self._forms())

    def __repr__(self) -> str:
        subject, text, html, telegram = self._forms()
        return f"Rendered({subject=!r}, {text=!r}, {html=!r}, {telegram=!r})"


@dataclass(frozen=True)
class Child:
    """One child in an arrival: age, and initials only if the reception unit gave them."""

    age: int
    initials: str | None = None


@dataclass(frozen=True)
class Contact:
    """How to reach an organisation."""

    name: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class ArrivalFacts:
    """The facts of one version of a case."""

    reference: str  # e.g. "OSD-2026-0001"
    municipality: str  # display name, e.g. "Östersund"
    arrival_date: date
    children: tuple[Child, ...]
    languages: tuple[str, ...]  # ISO 639 codes as given
    interpreter_needed: bool
    unaccompanied: bool
    details: str


@dataclass(frozen=True)
class Change:
    """One changed field of a date change / correction, old -> new (raw values)."""

    field: str  # "arrival_date" | "languages" | "children" | "interpreter_needed" | ...
    old: object
    new: object


@dataclass(frozen=True)
class ArrivalNotice:
    """The message a recipient (or the reception unit's copy) gets for one version of a case."""

    kind: NoticeKind
    facts: ArrivalFacts
    version: int
    recipient: Contact
    recipient_kind: OrgKind
    reception_unit: Contact
    needs_ack: bool  # False for the reception unit's own copy
    ack_url: str | None = None  # e-mail acknowledge link (PUBLIC_URL/a/{token})
    booking_deadline: date | None = None  # health centre: last day to book
    booking_url: str | None = None  # health centre, e-mail: signed link to its booking form
    changes: tuple[Change, ...] = ()
    cancel_reason: str | None = None
    today: date | None = None  # the local date it is sent: a past arrival date reads "kom"


@dataclass(frozen=True)
class AllAcknowledged:
    """Told to the reception unit when every recipient has acknowledged a version."""

    reference: str
    municipality: str
    arrival_date: date
    version: int
    acknowledged: tuple[tuple[str, datetime], ...]  # (organisation name, when) in order


@dataclass(frozen=True)
class CaseNotice:
    """A status message about a case (reminder, escalation, alert, booking, clearance, ...).

    `topic` selects the template; `facts` holds the template's own named values.
    """

    topic: str
    reference: str
    municipality: str
    arrival_date: date
    recipient: Contact
    facts: dict[str, object] = field(default_factory=dict)


AckPageState = Literal["confirm", "done", "already", "stale", "cancelled", "invalid", "expired"]


@dataclass(frozen=True)
class AckPage:
    """The page behind an e-mail acknowledge link."""

    state: AckPageState
    reference: str | None = None
    organisation: str | None = None
    version: int | None = None
    post_url: str | None = None  # where the confirm button POSTs
    arrival_date: date | None = None
