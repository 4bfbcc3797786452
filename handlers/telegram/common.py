"""What every Telegram flow needs: who is acting, date parsing, yes/no keyboards, replies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from html import escape
from typing import Any

from aiogram import F
from aiogram.filters import Filter
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.domain.arrival import InvalidInput
from bot.domain.calendar import local_today
from bot.domain.directory import Organisation
from bot.runtime.services import Services
from bot.usecases.access import Actor
from messages import chat
from messages.dates import short_date

WEEKDAYS = ("mån", "tis", "ons", "tor", "fre", "lör", "sön")


class Pick(CallbackData, prefix="p"):
    """A button inside a dialogue (date, yes/no, language, skip, confirm).

    Only meaningful in the chat's current dialogue state, so it carries no case and needs no
    signature: pressed outside its dialogue it does nothing.
    """

    what: str
    value: str


@dataclass(frozen=True)
class Acting:
    """The organisation a chat speaks for, and the actor for the use cases."""

    actor: Actor
    org: Organisation


async def acting(services: Services, chat_id: int, user_id: int | None) -> Acting | None:
    """Who this chat acts for, or None if it is not linked."""
    link = await services.chats.link_of(chat_id)
    if link is None:
        return None
    org = services.directory.organisations.get(link.org_id)
    if org is None:
        return None
    actor = Actor(org_id=org.id, role=link.role, via="telegram", who=f"tg-user:{user_id or 0}")
    return Acting(actor, org)


class Linked(Filter):
    """Passes only in a chat linked to an organisation, and gives the handler `who: Acting`
    (aiogram's context-from-filter pattern), so no handler looks the organisation up itself.

    In a chat that is not linked it answers the polite refusal itself and does not pass. Put it
    last among a handler's filters, so it speaks only when the rest matched.
    """

    async def __call__(
        self, event: Message | CallbackQuery, services: Services
    ) -> bool | dict[str, Any]:
        """{"who": Acting} in a linked chat; else the refusal is answered and False."""
        if isinstance(event, CallbackQuery):
            who = await acting_for_query(event, services)
        else:
            who = await acting_for_message(event, services)
        return False if who is None else {"who": who}


async def acting_for_message(message: Message, services: Services) -> Acting | None:
    """`acting` for a message; answers the polite refusal itself when the chat is not linked."""
    user = message.from_user.id if message.from_user else None
    who = await acting(services, message.chat.id, user)
    if who is None:
        await message.answer(chat.NOT_LINKED + "\n" + chat.HOW_TO_LINK)
    return who


async def acting_for_query(query: CallbackQuery, services: Services) -> Acting | None:
    """`acting` for a button press; answers the refusal itself when the chat is not linked."""
    chat_id = query.message.chat.id if query.message else None
    who = await acting(services, chat_id, query.from_user.id) if chat_id is not None else None
    if who is None:
        await query.answer(chat.plain_text(chat.NOT_LINKED), show_alert=True)
    return who


def today(services: Services) -> date:
    """The local date now."""
    return local_today(services.clock, services.settings.zone)


_DAY_MONTH = re.compile(r"^(\d{1,2})\s*[/.]\s*(\d{1,2})(?:\s*[/.]\s*(\d{2,4}))?$")


def parse_date(text: str, reference: date) -> date | None:
    """`2026-11-27`, `27/11`, `27.11` or `27/11/2026`; a day-month without year is the next
    such date from `reference` (within the coming year)."""
    text = text.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    found = _DAY_MONTH.match(text)
    if not found:
        return None
    day, month, year = int(found[1]), int(found[2]), found[3]
    try:
        if year:
            full = int(year) + (2000 if len(year) == 2 else 0)
            return date(full, month, day)
        candidate = date(reference.year, month, day)
        if candidate < reference - timedelta(days=7):
            candidate = date(reference.year + 1, month, day)
        return candidate
    except ValueError:
        return None


_TIME = re.compile(r"(?:kl\.?\s*)?(\d{1,2})[:.](\d{2})$")


def parse_datetime(text: str, reference: date) -> datetime | None:
    """`2026-12-01 09:30`, `1/12 9.30`, `1/12 kl. 9.30` → a naive local datetime."""
    text = " ".join(text.strip().split())
    try:
        return datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        pass
    found = _TIME.search(text)
    if not found:
        return None
    day = parse_date(text[: found.start()].strip(), reference)
    hour, minute = int(found[1]), int(found[2])
    if day is None or hour > 23 or minute > 59:
        return None
    return datetime.combine(day, time(hour, minute))


def date_keyboard(start: date, days: int = 10) -> InlineKeyboardMarkup:
    """A date picker: the next `days` days as buttons, three to a row."""
    buttons = [
        InlineKeyboardButton(
            text=f"{WEEKDAYS[d.weekday()]} {short_date(d)}",
            callback_data=Pick(what="date", value=d.isoformat()).pack(),
        )
        for d in (start + timedelta(days=n) for n in range(days))
    ]
    rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def yes_no(what: str) -> InlineKeyboardMarkup:
    """Ja / Nej buttons."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="Ja", callback_data=Pick(what=what, value="1").pack()),
                InlineKeyboardButton(text="Nej", callback_data=Pick(what=what, value="0").pack()),
            ]
        ]
    )


def one_button(text: str, what: str, value: str = "1") -> InlineKeyboardMarkup:
    """A single button (skip, confirm, …)."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=Pick(what=what, value=value).pack())]
        ]
    )


def confirm_keyboard(confirm: str) -> InlineKeyboardMarkup:
    """Confirm / cancel."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=confirm, callback_data=Pick(what="confirm", value="1").pack()
                ),
                InlineKeyboardButton(
                    text="Avbryt", callback_data=Pick(what="confirm", value="0").pack()
                ),
            ]
        ]
    )


def invalid_text(error: InvalidInput) -> str:
    """A validation error as a short Swedish chat reply (HTML-escaped)."""
    lines = [f"• {escape(e['field'])}: {escape(e['message'])}" for e in error.errors]
    return "Det gick inte att spara:\n" + "\n".join(lines)


# Dialogue steps take plain text; a /command typed mid-dialogue goes to its own handler.
TEXT = F.text & ~F.text.startswith("/")
