"""Everything sent to people, rendered from plain view data. No I/O beyond reading templates.

Two Jinja environments share the templates under `messages/templates/`: one escapes (e-mail HTML,
Telegram HTML, the acknowledge page), one does not (subjects and plain-text e-mail). Wording
that all forms share lives once, in macros the templates import.
"""

from __future__ import annotations

import functools
import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound
from markupsafe import escape

from messages.dates import STOCKHOLM, day_and_month, swedish_date, swedish_datetime
from messages.deadlines import ordinal
from messages.languages import language_list
from messages.models import (
    AckPage,
    AllAcknowledged,
    ArrivalFacts,
    ArrivalNotice,
    CaseNotice,
    Change,
    ChatDetails,
    Contact,
    Rendered,
)
from messages.telegram import fit_telegram, shorten
from messages.values import (
    FREE_TEXT_FIELDS,
    FREE_TEXT_POINTER,
    channel_name,
    child_words,
    children_summary,
    describe_changes,
    field_word,
    yes_no,
)

__all__ = [
    "chat_leaves_out",
    "clean_header",
    "notice_topics",
    "render_ack_page",
    "render_all_acknowledged",
    "render_arrival",
    "render_case_notice",
]

_TOPIC_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Names a notice's facts may not take: the case's own values and the layout's.
_NOTICE_COMMON = frozenset(
    {
        "reference",
        "municipality",
        "arrival_date",
        "arrival_day",
        "recipient",
        "topic_module",
        "form",
    }
)


def _environment(*, autoescape: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("messages", "templates"),
        # The unescaped environment renders only subjects and text/plain parts, never HTML.
        autoescape=autoescape,  # noqa: S701
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        # Templates are part of the package: each is compiled once, never looked at again.
        auto_reload=False,
    )
    env.filters["channel_name"] = channel_name
    env.filters["paragraphs"] = _paragraphs
    env.filters["ordinal"] = ordinal
    return env


def _paragraphs(text: str) -> list[str]:
    # str methods, not re: on Markup they keep the result Markup, so nothing is escaped twice.
    return [part.strip() for part in text.split("\n\n") if part.strip()]


# Escaping: e-mail HTML, Telegram HTML and the acknowledge page.
_markup = _environment(autoescape=True)
# Not escaping: subjects and plain-text e-mail.
_plain = _environment(autoescape=False)

# Characters that must never reach a header: C0/C1 controls (CR, LF, TAB, ESC …), line and
# paragraph separators, and bidi controls that could make a subject read differently.
_HEADER_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def clean_header(text: str) -> str:
    """One header line: control characters and line breaks become spaces, runs collapse."""
    cleaned = "".join(
        " " if unicodedata.category(ch) in _HEADER_CATEGORIES or ch in _BIDI_CONTROLS else ch
        for ch in text
    )
    return " ".join(cleaned.split())


def _checked_url(url: str | None, what: str) -> str | None:
    """A link we put in a message or form: http(s) or relative, never `javascript:` and kin."""
    if url is None:
        return None
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme not in ("", "http", "https"):
        raise ValueError(f"{what} must be an http(s) URL, got scheme {scheme!r}")
    return url


def _render(env: Environment, name: str, context: Mapping[str, Any], form: str) -> str:
    return env.get_template(name).render(context, form=form).strip("\n")


def _email_forms(prefix: str, context: Mapping[str, Any]) -> tuple[str, str, str]:
    return (
        clean_header(_render(_plain, f"{prefix}subject.txt", context, "subject")),
        _render(_plain, f"{prefix}text.txt", context, "text") + "\n",
        _render(_markup, f"{prefix}email.html", context, "html") + "\n",
    )


# The channel a message is rendered for: its forms are rendered at once (and a problem with
# them raised), the other channel's only if asked for. None: every form at once.
Forms = Literal["email", "telegram"] | None


def _ready(rendered: Rendered, forms: Forms) -> Rendered:
    if forms != "telegram":
        _ = rendered.subject
    if forms != "email":
        _ = rendered.telegram
    return rendered


def _rendered(
    prefix: str,
    context: Mapping[str, Any],
    telegram: Callable[[int | None], str],
    longest: int,
    forms: Forms = None,
) -> Rendered:
    rendered = Rendered.lazy(
        lambda: _email_forms(prefix, context), lambda: fit_telegram(telegram, longest)
    )
    return _ready(rendered, forms)


def chat_leaves_out(chat_details: ChatDetails) -> frozenset[str]:
    """The free-text fields a chat message leaves out (saying FREE_TEXT_POINTER instead):
    all of them with "minimal" chat details, none with "full"."""
    return FREE_TEXT_FIELDS if chat_details == "minimal" else frozenset()


# --- arrivals -------------------------------------------------------------------------------


# An arrival message is the same for every recipient of a version but for a few parts: the
# recipient's name, and what it is asked to do (by its kind of organisation), its booking link
# and how to acknowledge (templates/arrival/_own.jinja). The shared text is rendered once per
# version (and chat details) with a slot for each such part, kept in a small LRU, and each
# recipient's parts are put into the slots. The shared templates see nothing of the recipient
# (StrictUndefined refuses a name they are not given), so what the cache keeps cannot depend
# on who it is for. A slot is made of private-use characters around a random word of this
# process: escaping leaves it as it is, and no text a person typed can name one.
_SLOT_WORD = secrets.token_hex(8)


def _slot(name: str) -> str:
    return f"\ue000{_SLOT_WORD}:{name}\ue001"


_NAME_SLOT = _slot("recipient_name")
_OWN_SLOT = _slot("own")
_OWN_END_SLOT = _slot("own_end")
# A recipient's own parts are rendered once per kind of recipient, with slots for its links.
_ACK_SLOT = _slot("ack_url")
_BOOKING_SLOT = _slot("booking_url")
# Versions whose shared text is kept: a fan-out's deliveries of one version come close together.
SHARED_ARRIVALS = 128
# Recipients' own parts kept: one per kind of message, of organisation, of children (one,
# several, unaccompanied), interpreter or not, link or not, and booking deadline.
OWN_VARIANTS = 512


@dataclass(frozen=True)
class _ArrivalShared:
    """Everything the shared part of an arrival message depends on: its cache key."""

    kind: str
    facts: ArrivalFacts
    version: int
    reception_unit: Contact
    changes: tuple[Change, ...]
    cancel_reason: str | None
    today: date | None
    chat_details: ChatDetails

    @classmethod
    def of(cls, notice: ArrivalNotice, chat_details: ChatDetails) -> _ArrivalShared:
        return cls(
            notice.kind,
            notice.facts,
            notice.version,
            notice.reception_unit,
            notice.changes,
            notice.cancel_reason,
            notice.today,
            chat_details,
        )


class _SharedArrival:
    """The shared part of an arrival message, for every recipient of one version: its view
    data, and its texts with slots for each recipient's own parts, rendered on first use."""

    def __init__(self, shared: _ArrivalShared) -> None:
        self.context = _arrival_context(shared)
        self.left_out = chat_leaves_out(shared.chat_details)
        changes = self.context["changes"]
        self.hidden_changes = [c["field"] in self.left_out for c in changes]
        # The longest free text the Telegram form may have to cut (messages/telegram.py).
        self.longest = max(
            [
                0 if "details" in self.left_out else len(self.context["details"]),
                0 if "cancel_reason" in self.left_out else len(self.context["cancel_reason"]),
                *(
                    max(len(c["old"]), len(c["new"]))
                    for c, hidden in zip(changes, self.hidden_changes, strict=True)
                    if not hidden
                ),
            ]
        )
        self._email: tuple[str, str, str] | None = None
        self._telegram: str | None = None
        # What a recipient's own parts may say of the version (see `own`).
        facts = shared.facts
        self.own_base: dict[str, str | bool] = {
            "kind": shared.kind,
            "interpreter_needed": facts.interpreter_needed,
            "unaccompanied": facts.unaccompanied,
            **child_words(
                len(facts.children),
                unaccompanied=facts.unaccompanied,
                arrived=self.context["arrived"],
            ),
        }

    def own(
        self, kind: str, needs_ack: bool, ack: bool, booking: bool, deadline: str | None
    ) -> _OwnParts:
        """A recipient's own parts, for a recipient of `kind` (with or without an acknowledge
        and a booking link: at `_ACK_SLOT` and `_BOOKING_SLOT`). They are given only a few
        words of the version (`own_base`), so few that the same parts serve the same kind of
        recipient of most cases: kept in an LRU of their own."""
        own = {
            **self.own_base,
            "recipient_kind": kind,
            "needs_ack": needs_ack,
            "ack_url": _ACK_SLOT if ack else None,
            "booking_url": _BOOKING_SLOT if booking else None,
            "booking_deadline": deadline,
        }
        return _own_parts(tuple(own.items()))

    def _slotted(self) -> dict[str, Any]:
        return {
            **self.context,
            "recipient_name": _NAME_SLOT,
            "own": _OWN_SLOT,
            "own_end": _OWN_END_SLOT,
        }

    def email(self) -> tuple[str, str, str]:
        """(subject, text, HTML) with slots: `_NAME_SLOT`, `_OWN_SLOT`."""
        if self._email is None:
            self._email = _email_forms("arrival/", self._slotted())
        return self._email

    def telegram(self, cap: int | None) -> str:
        """The Telegram form with free text cut to `cap`, with slots: `_OWN_SLOT`,
        `_OWN_END_SLOT` (kept for `cap` None, the common case)."""
        if cap is None and self._telegram is not None:
            return self._telegram
        chat = self._slotted()
        chat["show_details"] = "details" not in self.left_out
        chat["show_initials"] = "initials" not in self.left_out
        chat["details"] = shorten(self.context["details"], cap)
        chat["cancel_reason"] = (
            FREE_TEXT_POINTER
            if "cancel_reason" in self.left_out and self.context["cancel_reason"]
            else shorten(self.context["cancel_reason"], cap)
        )
        chat["changes"] = [
            {
                **change,
                "hidden": hidden,
                "old": shorten(change["old"], cap),
                "new": shorten(change["new"], cap),
            }
            for change, hidden in zip(self.context["changes"], self.hidden_changes, strict=True)
        ]
        text = _render_unstripped(_markup, "arrival/telegram.html", chat, "telegram")
        if cap is None:
            self._telegram = text
        return text


class _OwnParts:
    """A recipient's own parts of an arrival message (templates/arrival/_own.jinja), each
    rendered on first use, with its links at `_ACK_SLOT` and `_BOOKING_SLOT`."""

    def __init__(self, context: dict[str, str | bool | None]) -> None:
        self.context = context
        self._text: str | None = None
        self._html: str | None = None
        self._telegram: tuple[str, str] | None = None

    def _module(self, env: Environment) -> Any:
        return env.get_template("arrival/_own.jinja").make_module(self.context)

    @property
    def text(self) -> str:
        """The plain-text e-mail's part."""
        if self._text is None:
            self._text = str(self._module(_plain).text()).strip("\n")
        return self._text

    @property
    def html(self) -> str:
        """The HTML e-mail's part."""
        if self._html is None:
            self._html = str(self._module(_markup).html()).strip("\n")
        return self._html

    @property
    def telegram(self) -> tuple[str, str]:
        """The Telegram message's parts: what to do, and its end."""
        if self._telegram is None:
            module = self._module(_markup)
            self._telegram = (
                str(module.telegram()).strip("\n"),
                str(module.telegram_end()).strip("\n"),
            )
        return self._telegram


@functools.lru_cache(maxsize=OWN_VARIANTS)
def _own_parts(context: tuple[tuple[str, str | bool | None], ...]) -> _OwnParts:
    return _OwnParts(dict(context))


@functools.lru_cache(maxsize=SHARED_ARRIVALS)
def _cached_shared_arrival(shared: _ArrivalShared) -> _SharedArrival:
    return _SharedArrival(shared)


def _shared_arrival(shared: _ArrivalShared) -> _SharedArrival:
    try:
        return _cached_shared_arrival(shared)
    except TypeError:  # a changed value that cannot be a key (a list, a dict): not kept
        return _SharedArrival(shared)


def _render_unstripped(env: Environment, name: str, context: Mapping[str, Any], form: str) -> str:
    return env.get_template(name).render(context, form=form)


def _arrival_context(shared: _ArrivalShared) -> dict[str, Any]:
    facts = shared.facts
    changes = [
        {"field": change.field, "label": label, "old": old, "new": new, "free_text": free_text}
        for change, (label, old, new, free_text) in zip(
            shared.changes, describe_changes(shared.changes), strict=True
        )
    ]
    arrived = shared.today is not None and facts.arrival_date < shared.today
    return {
        "kind": shared.kind,
        "version": shared.version,
        "reference": facts.reference,
        "municipality": facts.municipality,
        "arrival_date": swedish_date(facts.arrival_date),
        "arrival_day": day_and_month(facts.arrival_date),
        "children": children_summary(facts.children),
        "children_with_initials": children_summary(facts.children, initials=True),
        "languages": language_list(facts.languages),
        "interpreter_needed": facts.interpreter_needed,
        "interpreter": yes_no(facts.interpreter_needed),
        "unaccompanied": facts.unaccompanied,
        "details": facts.details.strip(),
        "reception_unit": shared.reception_unit,
        "changes": changes,
        "changed_words": ", ".join(dict.fromkeys(field_word(c.field) for c in shared.changes)),
        "cancel_reason": (shared.cancel_reason or "").strip(),
        "arrived": arrived,
        **child_words(len(facts.children), unaccompanied=facts.unaccompanied, arrived=arrived),
        "show_details": True,
        "show_initials": True,
        "pointer": FREE_TEXT_POINTER,
    }


def render_arrival(
    notice: ArrivalNotice, chat_details: ChatDetails = "minimal", forms: Forms = None
) -> Rendered:
    """The arrival message for one recipient, in every form (those of `forms` at once, the
    others when first asked for).

    E-mail always carries the free text (details, the children's initials, the reason for a
    cancellation); the Telegram form carries it only when `chat_details` is "full", and says
    where to read it otherwise (`chat_leaves_out`). The Telegram form is kept within 4096
    characters by shortening the free text (details, reason, changed values).
    """
    shared = _shared_arrival(_ArrivalShared.of(notice, chat_details))
    ack_url = _checked_url(notice.ack_url, "ack_url")
    booking_url = _checked_url(notice.booking_url, "booking_url")
    own = shared.own(
        notice.recipient_kind,
        notice.needs_ack,
        bool(ack_url),
        bool(booking_url),
        swedish_date(notice.booking_deadline) if notice.booking_deadline else None,
    )
    name = notice.recipient.name

    def email() -> tuple[str, str, str]:
        subject, text, html = shared.email()
        own_text = own.text.replace(_ACK_SLOT, ack_url or "")
        own_html = own.html.replace(_ACK_SLOT, escape(ack_url or ""))
        own_text = own_text.replace(_BOOKING_SLOT, booking_url or "")
        own_html = own_html.replace(_BOOKING_SLOT, escape(booking_url or ""))
        return (
            subject,
            text.replace(_NAME_SLOT, name).replace(_OWN_SLOT, own_text),
            html.replace(_NAME_SLOT, escape(name)).replace(_OWN_SLOT, own_html),
        )

    def telegram() -> str:
        to_do, end = own.telegram

        def fitted(cap: int | None) -> str:
            text = shared.telegram(cap).replace(_OWN_SLOT, to_do).replace(_OWN_END_SLOT, end)
            return text.strip("\n")

        return fit_telegram(fitted, shared.longest)

    return _ready(Rendered.lazy(email, telegram), forms)


# --- all acknowledged -----------------------------------------------------------------------


def render_all_acknowledged(
    n: AllAcknowledged, zone: ZoneInfo = STOCKHOLM, forms: Forms = None
) -> Rendered:
    """To the reception unit: every recipient has acknowledged version `n.version` (the forms
    of `forms` rendered at once, the others when first asked for)."""
    context = {
        "reference": n.reference,
        "municipality": n.municipality,
        "arrival_date": swedish_date(n.arrival_date),
        "arrival_day": day_and_month(n.arrival_date),
        "version": n.version,
        "acknowledged": [
            {"organisation": organisation, "at": swedish_datetime(at, zone)}
            for organisation, at in n.acknowledged
        ],
    }

    def telegram(cap: int | None) -> str:
        return _render(_markup, "all_acknowledged/telegram.html", context, "telegram")

    return _rendered("all_acknowledged/", context, telegram, 0, forms)


# --- case notices ---------------------------------------------------------------------------


def notice_topics() -> tuple[str, ...]:
    """Every topic `render_case_notice` knows: one `templates/notices/<topic>.jinja` each."""
    names = _markup.list_templates(filter_func=lambda name: name.startswith("notices/"))
    return tuple(
        sorted(
            name.removeprefix("notices/").removesuffix(".jinja")
            for name in names
            if name.endswith(".jinja") and not name.removeprefix("notices/").startswith("_")
        )
    )


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)?")


def _notice_value(value: object, zone: ZoneInfo) -> object:
    # Facts that went through JSON arrive as ISO strings; show them as dates all the same.
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        value = date.fromisoformat(value)
    elif isinstance(value, str) and _ISO_DATETIME.fullmatch(value):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return swedish_datetime(value, zone)
    if isinstance(value, date):
        return swedish_date(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_notice_value(item, zone) for item in value]
    return value


def render_case_notice(
    n: CaseNotice, chat_details: ChatDetails = "full", forms: Forms = None
) -> Rendered:
    """A status message about a case, chosen by `n.topic`; its values come from `n.facts`
    (the forms of `forms` rendered at once, the others when first asked for).

    Datetimes are shown in `facts["zone"]` (a ZoneInfo) if given, else Europe/Stockholm; dates
    as Swedish dates. An unknown topic raises ValueError; a fact the topic needs but was not
    given raises jinja2.UndefinedError. With `chat_details` "minimal" the Telegram form says
    FREE_TEXT_POINTER in place of every free-text fact (a disagreement's text, its decision).
    The deliverer (bot/pipeline/rendering.py) always passes ANKOMST_CHAT_DETAILS.
    """
    if not _TOPIC_NAME.fullmatch(n.topic):
        raise ValueError(f"unknown notice topic {n.topic!r}")
    module = f"notices/{n.topic}.jinja"
    try:
        _markup.get_template(module)
    except TemplateNotFound:
        raise ValueError(f"unknown notice topic {n.topic!r}") from None
    zone = n.facts.get("zone", STOCKHOLM)
    if not isinstance(zone, ZoneInfo):
        raise ValueError("facts['zone'] must be a ZoneInfo")
    clashes = sorted(set(n.facts) & _NOTICE_COMMON)
    if clashes:
        raise ValueError(f"facts may not override {', '.join(clashes)}")
    facts = {key: _notice_value(value, zone) for key, value in n.facts.items() if key != "zone"}
    for url in ("ack_url", "case_url"):
        if url in facts:
            facts[url] = _checked_url(str(facts[url]), url)
    count = n.facts.get("children_count")
    context: dict[str, Any] = {
        **child_words(
            count if isinstance(count, int) else None,
            unaccompanied=bool(n.facts.get("unaccompanied")),
            arrived=bool(n.facts.get("arrived")),
        ),
        **facts,
        "topic_module": module,
        "reference": n.reference,
        "municipality": n.municipality,
        "arrival_date": swedish_date(n.arrival_date),
        "arrival_day": day_and_month(n.arrival_date),
        "recipient": n.recipient,
    }
    # Only text given as text is cut for Telegram; formatted dates and times stay whole.
    left_out = chat_leaves_out(chat_details) & {
        key for key, value in n.facts.items() if value not in (None, "")
    }
    free_text = [
        key
        for key, value in n.facts.items()
        if isinstance(value, str)
        and facts.get(key) == value
        and key not in ("ack_url", "case_url")
        and key not in left_out
    ]

    def telegram(cap: int | None) -> str:
        chat = dict(context)
        for key in free_text:
            chat[key] = shorten(context[key], cap)
        for key in left_out:
            chat[key] = FREE_TEXT_POINTER
        return _render(_markup, "notices/_telegram.html", chat, "telegram")

    longest = max([0, *(len(context[key]) for key in free_text)])
    return _rendered("notices/_", context, telegram, longest, forms)


# --- the acknowledge page -------------------------------------------------------------------


def render_ack_page(page: AckPage) -> str:
    """The small HTML page behind an e-mail acknowledge link, for `page.state`.

    Only the "confirm" state has a form, and it POSTs: a GET (a person, or a link scanner)
    never acknowledges anything.
    """
    if page.state == "confirm" and not page.post_url:
        raise ValueError("the confirm page needs a post_url")
    context = {
        "state": page.state,
        "reference": page.reference,
        "organisation": page.organisation,
        "version": page.version,
        "post_url": _checked_url(page.post_url, "post_url"),
        "arrival_date": swedish_date(page.arrival_date) if page.arrival_date else None,
    }
    return _render(_markup, "ack_page.html", context, "html") + "\n"
