"""Everything sent to people, rendered from plain view data. No I/O beyond reading templates.

Two Jinja environments share the templates under `messages/templates/`: one escapes (e-mail HTML,
Telegram HTML, the acknowledge page), one does not (subjects and plain-text e-mail). Wording
that all forms share lives once, in macros the templates import.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound

from messages.dates import STOCKHOLM, day_and_month, swedish_date, swedish_datetime
from messages.deadlines import ordinal
from messages.languages import language_list
from messages.models import (
    AckPage,
    AllAcknowledged,
    ArrivalNotice,
    CaseNotice,
    ChatDetails,
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


def _rendered(
    prefix: str,
    context: Mapping[str, Any],
    telegram: Callable[[int | None], str],
    longest: int,
) -> Rendered:
    return Rendered(
        subject=clean_header(_render(_plain, f"{prefix}subject.txt", context, "subject")),
        text=_render(_plain, f"{prefix}text.txt", context, "text") + "\n",
        html=_render(_markup, f"{prefix}email.html", context, "html") + "\n",
        telegram=fit_telegram(telegram, longest),
    )


def chat_leaves_out(chat_details: ChatDetails) -> frozenset[str]:
    """The free-text fields a chat message leaves out (saying FREE_TEXT_POINTER instead):
    all of them with "minimal" chat details, none with "full"."""
    return FREE_TEXT_FIELDS if chat_details == "minimal" else frozenset()


# --- arrivals -------------------------------------------------------------------------------


def _arrival_context(notice: ArrivalNotice) -> dict[str, Any]:
    facts = notice.facts
    changes = [
        {"field": change.field, "label": label, "old": old, "new": new, "free_text": free_text}
        for change, (label, old, new, free_text) in zip(
            notice.changes, describe_changes(notice.changes), strict=True
        )
    ]
    return {
        "kind": notice.kind,
        "version": notice.version,
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
        "recipient": notice.recipient,
        "recipient_kind": notice.recipient_kind,
        "reception_unit": notice.reception_unit,
        "needs_ack": notice.needs_ack,
        "ack_url": _checked_url(notice.ack_url, "ack_url"),
        "booking_url": _checked_url(notice.booking_url, "booking_url"),
        "booking_deadline": (
            swedish_date(notice.booking_deadline) if notice.booking_deadline else None
        ),
        "changes": changes,
        "changed_words": ", ".join(dict.fromkeys(field_word(c.field) for c in notice.changes)),
        "cancel_reason": (notice.cancel_reason or "").strip(),
        "arrived": notice.today is not None and facts.arrival_date < notice.today,
        **child_words(
            len(facts.children),
            unaccompanied=facts.unaccompanied,
            arrived=notice.today is not None and facts.arrival_date < notice.today,
        ),
        "show_details": True,
        "show_initials": True,
        "pointer": FREE_TEXT_POINTER,
    }


def render_arrival(notice: ArrivalNotice, chat_details: ChatDetails = "minimal") -> Rendered:
    """The arrival message for one recipient, in every form.

    E-mail always carries the free text (details, the children's initials, the reason for a
    cancellation); the Telegram form carries it only when `chat_details` is "full", and says
    where to read it otherwise (`chat_leaves_out`). The Telegram form is kept within 4096
    characters by shortening the free text (details, reason, changed values).
    """
    context = _arrival_context(notice)
    left_out = chat_leaves_out(chat_details)
    hidden_changes = [c["field"] in left_out for c in context["changes"]]

    def telegram(cap: int | None) -> str:
        chat = dict(context)
        chat["show_details"] = "details" not in left_out
        chat["show_initials"] = "initials" not in left_out
        chat["details"] = shorten(context["details"], cap)
        chat["cancel_reason"] = (
            FREE_TEXT_POINTER
            if "cancel_reason" in left_out and context["cancel_reason"]
            else shorten(context["cancel_reason"], cap)
        )
        chat["changes"] = [
            {
                **change,
                "hidden": hidden,
                "old": shorten(change["old"], cap),
                "new": shorten(change["new"], cap),
            }
            for change, hidden in zip(context["changes"], hidden_changes, strict=True)
        ]
        return _render(_markup, "arrival/telegram.html", chat, "telegram")

    longest = max(
        [
            0 if "details" in left_out else len(context["details"]),
            0 if "cancel_reason" in left_out else len(context["cancel_reason"]),
            *(
                max(len(c["old"]), len(c["new"]))
                for c, hidden in zip(context["changes"], hidden_changes, strict=True)
                if not hidden
            ),
        ]
    )
    return _rendered("arrival/", context, telegram, longest)


# --- all acknowledged -----------------------------------------------------------------------


def render_all_acknowledged(n: AllAcknowledged, zone: ZoneInfo = STOCKHOLM) -> Rendered:
    """To the reception unit: every recipient has acknowledged version `n.version`."""
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

    return _rendered("all_acknowledged/", context, telegram, 0)


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


def render_case_notice(n: CaseNotice, chat_details: ChatDetails = "full") -> Rendered:
    """A status message about a case, chosen by `n.topic`; its values come from `n.facts`.

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
    return _rendered("notices/_", context, telegram, longest)


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
