"""`/oenighet REF` raises a disagreement; supervisors get an **Eskalera** button (§7)."""

from __future__ import annotations

from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.domain.arrival import parse
from bot.pipeline.buttons import Action, CaseAction, check_action, escalate_row
from bot.runtime.services import Services
from bot.usecases.cases import CaseNotFound
from bot.usecases.disagreements import DisagreementIn
from handlers.telegram.common import TEXT, Acting, Linked
from messages import chat


class Raising(StatesGroup):
    """The step of `/oenighet`."""

    text = State()


async def start(
    message: Message, command: CommandObject, state: FSMContext, services: Services, who: Acting
) -> None:
    """`/oenighet REF`: ask what the disagreement is about."""
    reference = (command.args or "").strip()
    if not reference:
        await message.answer("Skriv ärendets referens, t.ex. <code>/oenighet OSD-2026-0001</code>.")
        return
    try:
        case = await services.cases.store.by_reference(reference)
    except CaseNotFound:
        await message.answer(f"Hittar inget ärende {escape(reference)}.")
        return
    services.cases.policy.require_raise(who.actor, case)
    await state.clear()
    await state.set_state(Raising.text)
    await state.update_data(case=case.id)
    await message.answer(
        f"Oenighet i {escape(case.reference)}: beskriv kort vad ni inte är överens om "
        "(inga personnummer, inga medicinska uppgifter). (/avbryt för att avbryta)"
    )


async def got_text(message: Message, state: FSMContext, services: Services, who: Acting) -> None:
    """Raise it through the same use case as the API."""
    data = await state.get_data()
    body = parse(DisagreementIn, {"text": message.text or ""})
    found = await services.disagreements.raise_(data["case"], body, who.actor)
    await state.clear()
    case = await services.cases.store.get(found.case_id)
    markup = None
    if services.cases.policy.may_escalate(who.actor, case):
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


async def escalate(
    query: CallbackQuery, callback_data: CaseAction, services: Services, who: Acting
) -> None:
    """**Eskalera**: only a supervisor's chat of a party may refer it upwards."""
    if not check_action(services.signer, callback_data):
        await query.answer(chat.plain_text(chat.BUTTON_INVALID), show_alert=True)
        return
    found = await services.disagreements.escalate(callback_data.ref, who.actor)
    names = ", ".join(services.directory.organisation(m).name for m in found.referred_to)
    await query.answer("Lyft till ledningen")
    if isinstance(query.message, Message):
        await query.message.answer(f"Oenigheten är lyft till: {escape(names)}.")


def build_router() -> Router:
    """A fresh router for disagreements."""
    router = Router(name="disagreement")
    router.message.register(start, Command("oenighet"), Linked())
    router.message.register(got_text, Raising.text, TEXT, Linked())
    router.callback_query.register(
        escalate, CaseAction.filter(F.action == Action.ESCALATE), Linked()
    )
    return router
