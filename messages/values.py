"""Case values as a Swedish reader sees them: ages, yes/no, field names, changed values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime

from messages.dates import swedish_date, swedish_datetime
from messages.languages import language_list
from messages.models import Change, Child

# What each changeable field is called in a message, as a label and as a word for a subject.
FIELD_LABELS: dict[str, str] = {
    "arrival_date": "Ankomstdatum",
    "languages": "Språk",
    "interpreter_needed": "Tolk behövs",
    "children": "Barn",
    "unaccompanied": "Ensamkommande",
    "details": "Övriga uppgifter",
    "municipality": "Kommun",
    "recipients": "Mottagare",
}
FIELD_WORDS: dict[str, str] = {
    "arrival_date": "datum",
    "languages": "språk",
    "interpreter_needed": "tolk",
    "children": "barn",
    "unaccompanied": "ensamkommande",
    "details": "uppgifter",
    "municipality": "kommun",
    "recipients": "mottagare",
}
# What a person typed into a case, never a value Ankomst made: an e-mail carries it and the
# board shows it, but a chat message only with ANKOMST_CHAT_DETAILS=full (Telegram is a service
# outside the EU). This is the one list of it; names are the message models' fields and facts:
# an arrival's details (also as a changed field), the children's initials, the reason for a
# cancellation, a disagreement's text and its decision. The booking and clearance are not here:
# they are a time and yes/no answers, never typed text.
FREE_TEXT_FIELDS = frozenset({"details", "initials", "cancel_reason", "text", "decision"})
# What a chat message says instead of a free text it leaves out.
FREE_TEXT_POINTER = "Läs mer i e-posten eller på tavlan."

CHANNEL_NAMES: dict[str, str] = {"email": "e-post", "e-mail": "e-post", "telegram": "Telegram"}


def yes_no(value: bool) -> str:
    """ "ja" or "nej"."""
    return "ja" if value else "nej"


def age(years: int) -> str:
    """A child's age: "9 år", "under 1 år"."""
    return "under 1 år" if years < 1 else f"{years} år"


def _child_age(child: object) -> int | None:
    if isinstance(child, Child):
        return child.age
    if isinstance(child, Mapping):
        value = child.get("age")
        return value if isinstance(value, int) else None
    if isinstance(child, int) and not isinstance(child, bool):
        return child
    return None


def children_summary(children: Iterable[object], *, initials: bool = False) -> str:
    """How many children and their ages: "2 barn: 9 år, 4 år" (initials in brackets if asked)."""
    parts: list[str] = []
    for child in children:
        years = _child_age(child)
        text = age(years) if years is not None else str(child)
        if initials and isinstance(child, Child) and child.initials:
            text = f"{text} ({child.initials})"
        parts.append(text)
    return f"{len(parts)} barn: {', '.join(parts)}" if parts else "inga barn angivna"


def field_label(name: str) -> str:
    """The Swedish label of a case field (the field's own name if unknown)."""
    return FIELD_LABELS.get(name, name)


def field_word(name: str) -> str:
    """The short Swedish word for a field, as used in a subject ("ÄNDRAT datum: …")."""
    return FIELD_WORDS.get(name, name)


def channel_name(channel: str) -> str:
    """The Swedish name of a delivery channel: "e-post", "Telegram"."""
    return CHANNEL_NAMES.get(channel.lower(), channel)


def change_value(name: str, value: object) -> str:
    """A raw old or new value of a changed field, formatted for a Swedish reader."""
    if value is None or value == "":
        return "(inget angivet)"
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, datetime):
        return swedish_datetime(value)
    if isinstance(value, date):
        return swedish_date(value)
    if name == "arrival_date" and isinstance(value, str):
        try:
            return swedish_date(date.fromisoformat(value))
        except ValueError:
            return value
    if name == "languages" and isinstance(value, (list, tuple)):
        return language_list(str(code) for code in value)
    if name == "children" and isinstance(value, (list, tuple)):
        return children_summary(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(str(item) for item in value)
    return str(value)


def describe_changes(changes: Iterable[Change]) -> list[tuple[str, str, str, bool]]:
    """Each change as (label, old, new, is_free_text), values formatted."""
    return [
        (
            field_label(change.field),
            change_value(change.field, change.old),
            change_value(change.field, change.new),
            change.field in FREE_TEXT_FIELDS,
        )
        for change in changes
    ]


_COUNT_WORDS = ("inga", "ett", "två", "tre", "fyra", "fem", "sex", "sju", "åtta", "nio", "tio")


def child_words(
    count: int | None, *, unaccompanied: bool = False, arrived: bool = False
) -> dict[str, str]:
    """The words a message about `count` children agrees with (None: not known, read as
    several): "barnet"/"barnen", "ett barn"/"två ensamkommande barn", "kommer"/"kom", and who
    to invite — the family, or for an unaccompanied child its god man or residential home."""
    one = count == 1
    number = (
        _COUNT_WORDS[count] if count is not None and 0 <= count < len(_COUNT_WORDS) else str(count)
    )
    alone = " ensamkommande" if unaccompanied else ""
    phrase = f"{number}{alone} barn" if count is not None else f"nyanlända{alone} barn"
    return {
        "the_children": "barnet" if one else "barnen",
        "The_children": "Barnet" if one else "Barnen",
        "children_phrase": phrase,
        "Children_phrase": phrase[:1].upper() + phrase[1:],
        "comes": "kom" if arrived else "kommer",
        "them": "barnet" if one else "dem",
        "invite": (
            "kontakta god man eller boendet (HVB) om" if unaccompanied else "bjud in familjen till"
        ),
    }
