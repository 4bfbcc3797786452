"""Short Swedish replies in the Telegram chat (HTML parse mode; anything interpolated escaped)."""

from __future__ import annotations

import html
import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from markupsafe import escape

from messages.dates import STOCKHOLM, day_and_month
from messages.models import OrgKind

NOT_LINKED = "Den här chatten är inte kopplad till någon organisation."
HOW_TO_LINK = (
    "Be kommunens mottagningsenhet om en kopplingskod och skicka "
    "<code>/start KOD</code> i den här chatten."
)
INVALID_CODE = (
    "Koden är inte giltig. Kontrollera att den är rätt skriven, "
    "eller be kommunens mottagningsenhet om en ny kod."
)
CODE_USED = "Koden har redan använts. Be kommunens mottagningsenhet om en ny kod."
CODE_EXPIRED = "Koden har slutat gälla. Be kommunens mottagningsenhet om en ny kod."
# When the caller cannot tell which of the three it was.
INVITE_INVALID = (
    "Koden är inte giltig, har redan använts eller har slutat gälla. "
    "Be kommunens mottagningsenhet om en ny kod."
)
STALE_VERSION = (
    "Det finns ett nyare meddelande i ärendet. Tryck på Mottaget under det senaste meddelandet."
)
CASE_CANCELLED = "Ankomsten är inställd. Det finns inget att bekräfta."
NOT_A_RECIPIENT = "Er organisation är inte mottagare i det här ärendet."
SOMETHING_WENT_WRONG = "Något gick fel, försök igen om en stund."
# Plain text (a button answer): the button's signature or case did not check out.
BUTTON_INVALID = (
    "Knappen fungerar inte längre. Använd knappen i det senaste meddelandet, "
    "eller kontakta mottagningsenheten."
)

# What each kind of organisation gets here, in one sentence.
_ROLE: dict[str, str] = {
    "health_centre": (
        "Ni får meddelanden om barn som ska erbjudas hälsosamtal med provtagning; "
        "tiden ska bokas inom fem arbetsdagar."
    ),
    "school": "Ni får meddelanden om barn som ska börja skolan, så att ni kan förbereda starten.",
    "preschool": (
        "Ni får meddelanden om barn som ska börja förskolan. Barnen börjar först när "
        "hälsocentralens provsvar har kommit; ni får besked när starten kan ske."
    ),
    "social_services": "Ni får meddelanden om ensamkommande barn.",
    "reception_unit": (
        "Ni får en kopia av varje meddelande och besked om vem som har bekräftat, och när "
        "något inte har nått fram. Era kopior behöver inte bekräftas."
    ),
    "management": "Ni får besked när ett ärende har lyfts till ledningsnivå.",
}

_TAG = re.compile(r"<[^<>]*>")
CALLBACK_ANSWER_LIMIT = 200


def _reference(reference: str | None) -> str:
    return f", ärende {escape(reference)}" if reference else ""


def help_text(kind: OrgKind | None, organisation: str | None) -> str:
    """What the bot does for this chat's organisation; for an unlinked chat, how to link it."""
    if kind is None or organisation is None:
        return f"<b>Ankomst</b>\n\n{NOT_LINKED}\n\n{HOW_TO_LINK}"
    lines = [
        "<b>Ankomst</b> – meddelanden om nyanlända asylsökande barn.",
        "",
        f"Den här chatten tar emot meddelanden för <b>{escape(organisation)}</b>.",
        _ROLE[kind],
    ]
    if kind != "reception_unit":
        lines += [
            "",
            "Tryck på <b>Mottaget</b> under varje meddelande, så vet mottagningsenheten "
            "att ni har sett det.",
        ]
    lines += [""] + [f"/{name} – {escape(text)}" for name, text in commands_for(kind, "member")]
    return "\n".join(lines)


_COMMANDS: dict[str, tuple[tuple[str, str], ...]] = {
    "reception_unit": (
        ("ny", "registrera en ny ankomst"),
        ("andra", "ändra ankomstdatum: /andra REF"),
        ("stall_in", "ställ in en ankomst: /stall_in REF"),
    ),
}
_COMMON_COMMANDS = (
    ("arenden", "öppna ärenden för er organisation"),
    ("oenighet", "anmäl oenighet i ett ärende: /oenighet REF"),
    ("tavla", "logga in på statustavlan på webben"),
    ("help", "vad boten gör för er"),
)


def commands_for(kind: OrgKind | None, role: str) -> tuple[tuple[str, str], ...]:
    """The bot's command menu for a chat of this kind of organisation (and role)."""
    if kind is None:
        return (("start", "koppla chatten med en kod: /start KOD"), ("help", "hjälp"))
    return _COMMANDS.get(kind, ()) + _COMMON_COMMANDS


def linked(organisation: str, role: str = "member") -> str:
    """The chat has been linked to `organisation` (as a supervisor's chat if `role` says so)."""
    supervisor = (
        " Som chef får ni också besked när något inte har bekräftats eller bokats i tid."
        if role == "supervisor"
        else ""
    )
    return (
        f"Klart! Den här chatten är nu kopplad till <b>{escape(organisation)}</b>. "
        f"Meddelanden om nyanlända barn kommer hit.{supervisor} "
        "Skriv /help för mer information."
    )


def ack_recorded(organisation: str, reference: str | None = None) -> str:
    """The acknowledgement was recorded."""
    return f"Mottaget registrerat för {escape(organisation)}{_reference(reference)}."


def already_acknowledged(organisation: str, reference: str | None = None) -> str:
    """This organisation had already acknowledged this version."""
    return f"Redan bekräftat för {escape(organisation)}{_reference(reference)}."


def ack_reply(outcome: str, reference: str, organisation: str) -> str:
    """The answer to a Mottaget button press, by the acknowledgement's outcome.

    Plain text, not HTML: Telegram shows callback answers as they are (at most 200 characters).
    Outcomes: "recorded", "already", "stale", "cancelled", "not_recipient".
    """
    replies = {
        "recorded": f"Mottaget registrerat för {organisation}, ärende {reference}.",
        "already": f"Redan bekräftat för {organisation}, ärende {reference}.",
        "stale": STALE_VERSION,
        "cancelled": CASE_CANCELLED,
        "not_recipient": NOT_A_RECIPIENT,
    }
    return _cut(replies.get(outcome, SOMETHING_WENT_WRONG), CALLBACK_ANSWER_LIMIT)


def plain_text(text: str, limit: int = CALLBACK_ANSWER_LIMIT) -> str:
    """One of these replies as plain text, e.g. for a callback answer (at most 200 characters)."""
    return _cut(html.unescape(_TAG.sub("", text)), limit)


def acknowledged_stamp(organisation: str, at: datetime, zone: ZoneInfo = STOCKHOLM) -> str:
    """The line a Mottaget button leaves in place of itself, in Telegram HTML (escaped), so
    everyone in the chat sees it is done: "Mottaget av Lugnviksskolan 2 december kl. 09.14"."""
    local = at.astimezone(zone)
    return (
        f"✅ <b>Mottaget</b> av {escape(organisation)} {day_and_month(local.date())} "
        f"kl. {local:%H.%M}"
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def date_example(today: date) -> str:
    """How to type a date, with an example computed from `today` (three days on), so the
    example is never in the past: "2026-12-05 eller 5/12"."""
    day = today + timedelta(days=3)
    return f"{day.isoformat()} eller {day.day}/{day.month}"


def datetime_example(today: date) -> str:
    """How to type a day and time, with an example three days after `today` (HTML):
    "<code>2026-12-05 09:30</code> eller <code>5/12 9.30</code>"."""
    day = today + timedelta(days=3)
    return f"<code>{day.isoformat()} 09:30</code> eller <code>{day.day}/{day.month} 9.30</code>"
