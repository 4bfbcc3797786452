"""`/andra REF` (a new arrival date) and `/stall_in REF` (cancel), for the reception unit."""

from __future__ import annotations

from datetime import date
from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot.domain.arrival import (
    CANCEL_REASON_MISSING,
    ArrivalPatch,
    arrival_date_problem,
    check_cancel_reason,
    parse,
)
from bot.domain.case import Case
from bot.runtime.services import Services
from bot.usecases.audit import record_read
from bot.usecases.cases import CaseNotFound
from handlers.telegram.common import (
    TEXT,
    Acting,
    Linked,
    Pick,
    confirm_keyboard,
    date_keyboard,
    parse_date,
    today,
)
from messages import chat
from messages.dates import swedish_date


class Change(StatesGroup):
    """The steps of `/andra`."""

    new_date = State()
    confirm = State()


class Cancellation(StatesGroup):
    """The steps of `/stall_in`."""

    reason = State()
    confirm = State()


async def _own_case(
    message: Message, services: Services, who: Acting, reference: str | None
) -> Case | None:
    """The case to change or cancel, once the policy allows it (else its refusal rises)."""
    # Asked before the reference, so an organisation that may not change is told so at once.
    services.cases.policy.require_register(who.actor, who.org.municipality)
    if not reference:
        await message.answer(
            "Skriv ärendets referens efter kommandot, t.ex. <code>/andra OSD-2026-0001</code>."
        )
        return None
    try:
        case = await services.cases.store.by_reference(reference)
    except CaseNotFound:
        await message.answer(f"Hittar inget ärende {escape(reference)}.")
        return None
    services.cases.require_change(who.actor, case)
    # The dialogue shows the case (reference and date): a read, in the audit trail.
    now = services.clock.now()
    await record_read(services.redis, who.actor, case.id, "telegram", now, chat_id=message.chat.id)
    return case


async def start_change(
    message: Message, command: CommandObject, state: FSMContext, services: Services, who: Acting
) -> None:
    """`/andra REF`: ask for the new date."""
    case = await _own_case(message, services, who, (command.args or "").strip())
    if case is None:
        return
    await state.clear()
    await state.set_state(Change.new_date)
    await state.update_data(case=case.id)
    await message.answer(
        f"{escape(case.reference)}: ankomst nu {swedish_date(case.arrival_date)}.\n"
        "Vilket är det nya datumet? Välj nedan eller skriv t.ex. 27/11. (/avbryt för att avbryta)",
        reply_markup=date_keyboard(today(services)),
    )


async def _take_new_date(target: Message, state: FSMContext, services: Services, day: date) -> None:
    problem = arrival_date_problem(day, today(services))
    if problem:
        await target.answer(f"Datumet {problem}. Försök igen.")
        return
    data = await state.get_data()
    case = await services.cases.store.get(data["case"])
    await state.update_data(new_date=day.isoformat())
    await state.set_state(Change.confirm)
    await target.answer(
        f"Ändra {escape(case.reference)} från {swedish_date(case.arrival_date)} till "
        f"<b>{swedish_date(day)}</b>? Alla mottagare får besked direkt och ska bekräfta igen.",
        reply_markup=confirm_keyboard("Ändra"),
    )


async def typed_new_date(message: Message, state: FSMContext, services: Services) -> None:
    """A typed new date."""
    day = parse_date(message.text or "", today(services))
    if day is None:
        await message.answer(f"Skriv datumet som {chat.date_example(today(services))}.")
        return
    await _take_new_date(message, state, services, day)


async def picked_new_date(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services
) -> None:
    """A new date from the picker."""
    await query.answer()
    if isinstance(query.message, Message):
        await _take_new_date(
            query.message, state, services, date.fromisoformat(callback_data.value)
        )


async def confirmed_change(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services, who: Acting
) -> None:
    """Make the change through the same use case as PATCH."""
    data = await state.get_data()
    await state.clear()
    if callback_data.value != "1" or not isinstance(query.message, Message):
        await query.answer("Avbrutet")
        return
    patch = parse(ArrivalPatch, {"arrival_date": data["new_date"]}, today=today(services))
    case = await services.cases.change(data["case"], patch, who.actor)
    await query.answer("Ändrat")
    await query.message.answer(
        f"Ändrat: {escape(case.reference)} kommer {swedish_date(case.arrival_date)}. "
        "Alla mottagare meddelas nu (ÄNDRAT)."
    )


async def start_cancel(
    message: Message, command: CommandObject, state: FSMContext, services: Services, who: Acting
) -> None:
    """`/stall_in REF`: ask for a reason."""
    case = await _own_case(message, services, who, (command.args or "").strip())
    if case is None:
        return
    await state.clear()
    await state.set_state(Cancellation.reason)
    await state.update_data(case=case.id)
    # A reason is required (the cancellation is final): no button skips it.
    await message.answer(
        f"Ställa in {escape(case.reference)}? Skriv kort varför (mottagarna ser texten). "
        "(/avbryt för att avbryta)"
    )


async def _ask_cancel(target: Message, state: FSMContext, services: Services, reason: str) -> None:
    data = await state.get_data()
    case = await services.cases.store.get(data["case"])
    await state.update_data(reason=reason)
    await state.set_state(Cancellation.confirm)
    await target.answer(
        f"Ställ in {escape(case.reference)} ({swedish_date(case.arrival_date)})? "
        "Alla mottagare får besked (INSTÄLLD).",
        reply_markup=confirm_keyboard("Ställ in"),
    )


async def typed_reason(message: Message, state: FSMContext, services: Services) -> None:
    """A typed reason, checked by the same rule as the API's."""
    try:
        reason = check_cancel_reason(message.text or "")
    except ValueError as exc:
        problem = str(exc) if str(exc).endswith(".") else f"{exc}."
        await message.answer(f"Det går inte att spara: {escape(problem)}")
        return
    await _ask_cancel(message, state, services, reason)


async def skipped_reason(query: CallbackQuery) -> None:
    """A "Hoppa över" button from before reasons were required: a reason is still needed."""
    await query.answer(CANCEL_REASON_MISSING, show_alert=True)


async def confirmed_cancel(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services, who: Acting
) -> None:
    """Cancel through the same use case as the API."""
    data = await state.get_data()
    await state.clear()
    if callback_data.value != "1" or not isinstance(query.message, Message):
        await query.answer("Avbrutet")
        return
    case = await services.cases.cancel(data["case"], data.get("reason", ""), who.actor)
    await query.answer("Inställt")
    await query.message.answer(f"Inställt: {escape(case.reference)}. Alla mottagare meddelas nu.")


def build_router() -> Router:
    """A fresh router for `/andra` and `/stall_in`."""
    router = Router(name="changes")
    router.message.register(start_change, Command("andra"), Linked())
    router.message.register(start_cancel, Command("stall_in"), Linked())
    router.message.register(typed_new_date, Change.new_date, TEXT)
    router.callback_query.register(picked_new_date, Change.new_date, Pick.filter(F.what == "date"))
    router.callback_query.register(
        confirmed_change, Change.confirm, Pick.filter(F.what == "confirm"), Linked()
    )
    router.message.register(typed_reason, Cancellation.reason, TEXT)
    router.callback_query.register(
        skipped_reason, Cancellation.reason, Pick.filter(F.what == "skip")
    )
    router.callback_query.register(
        confirmed_cancel, Cancellation.confirm, Pick.filter(F.what == "confirm"), Linked()
    )
    return router
