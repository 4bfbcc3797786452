"""`/oenighet REF` raises a disagreement; supervisors get an **Eskalera** button (§7)."""

from __future__ import annotations

from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.domain.arrival import InvalidInput, parse
from bot.pipeline.buttons import CaseAction, check_action, escalate_row
from bot.runtime.services import Services
from bot.usecases.cases import CaseNotFound, Conflict, Forbidden
from bot.usecases.disagreements import DisagreementIn
from handlers.telegram.common import TEXT, acting_for_message, acting_for_query, invalid_text
from messages import chat


class Raising(StatesGroup):
    """The step of `/oenighet`."""

    text = State()


async def start(
    message: Message, command: CommandObject, state: FSMContext, services: Services
) -> None:
    """`/oenighet REF`: ask what the disagreement is about."""
    who = await acting_for_message(message, services)
    if who is None:
        return
    reference = (command.args or "").strip()
    if not reference:
        await message.answer("Skriv ärendets referens, t.ex. <code>/oenighet OSD-2026-0001</code>.")
        return
    try:
        case = await services.cases.store.by_reference(reference)
    except CaseNotFound:
        await message.answer(f"Hittar inget ärende {escape(reference)}.")
        return
    if who.org.id not in case.parties():
        await message.answer("Er organisation är inte part i det ärendet.")
        return
    await state.clear()
    await state.set_state(Raising.text)
    await state.update_data(case=case.id)
    await message.answer(
        f"Oenighet i {escape(case.reference)}: beskriv kort vad ni inte är överens om "
        "(inga personnummer, inga medicinska uppgifter). (/avbryt för att avbryta)"
    )


async def got_text(message: Message, state: FSMContext, services: Services) -> None:
    """Raise it through the same use case as the API."""
    who = await acting_for_message(message, services)
    if who is None:
        return
    data = await state.get_data()
    try:
        body = parse(DisagreementIn, {"text": message.text or ""})
        found = await services.disagreements.raise_(data["case"], body, who.actor)
    except InvalidInput as exc:
        await message.answer(invalid_text(exc) + "\nSkriv om texten.")
        return
    except Forbidden as exc:
        await state.clear()
        await message.answer(escape(str(exc)))
        return
    await state.clear()
    markup = None
    if who.actor.role == "supervisor":
        markup = InlineKeyboardMarkup(inline_keyboard=[escalate_row(services.signer, found.id)])
    await message.answer(
        "Oenigheten är anmäld och de andra parterna har fått besked. "
        + (
            "Som chef kan ni lyfta den till ledningen med knappen."
            if markup
            else "En chef kan lyfta den till ledningen."
        ),
        reply_markup=markup,
    )


async def escalate(query: CallbackQuery, callback_data: CaseAction, services: Services) -> None:
    """**Eskalera**: only a supervisor's chat of a party may refer it upwards."""
    if not check_action(services.signer, callback_data):
        await query.answer(chat.plain_text(chat.BUTTON_INVALID), show_alert=True)
        return
    who = await acting_for_query(query, services)
    if who is None:
        return
    try:
        found = await services.disagreements.escalate(callback_data.ref, who.actor)
    except CaseNotFound:
        await query.answer(chat.plain_text(chat.BUTTON_INVALID), show_alert=True)
        return
    except (Forbidden, Conflict) as exc:
        await query.answer(chat.plain_text(escape(str(exc))), show_alert=True)
        return
    names = ", ".join(services.directory.organisation(m).name for m in found.referred_to)
    await query.answer("Lyft till ledningen")
    if isinstance(query.message, Message):
        await query.message.answer(f"Oenigheten är lyft till: {escape(names)}.")


def build_router() -> Router:
    """A fresh router for disagreements."""
    router = Router(name="disagreement")
    router.message.register(start, Command("oenighet"))
    router.message.register(got_text, Raising.text, TEXT)
    router.callback_query.register(escalate, CaseAction.filter(F.action == "escalate"))
    return router
