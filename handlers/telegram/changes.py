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
    ArrivalPatch,
    InvalidInput,
    arrival_date_problem,
    check_free_text,
    parse,
)
from bot.runtime.services import Services
from bot.usecases.cases import Case, CaseNotFound, Conflict, Forbidden
from handlers.telegram.common import (
    TEXT,
    Acting,
    Pick,
    acting_for_message,
    acting_for_query,
    confirm_keyboard,
    date_keyboard,
    invalid_text,
    one_button,
    parse_date,
    today,
)
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
    message: Message, services: Services, reference: str | None
) -> tuple[Acting, Case] | None:
    who = await acting_for_message(message, services)
    if who is None:
        return None
    if who.org.kind != "reception_unit":
        await message.answer("Bara mottagningsenheten kan ändra eller ställa in en ankomst.")
        return None
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
    if case.reception_unit != who.org.id:
        await message.answer("Ärendet registrerades av en annan mottagningsenhet.")
        return None
    if case.status == "cancelled":
        await message.answer("Ärendet är inställt och kan inte ändras.")
        return None
    return who, case


async def start_change(
    message: Message, command: CommandObject, state: FSMContext, services: Services
) -> None:
    """`/andra REF`: ask for the new date."""
    found = await _own_case(message, services, (command.args or "").strip())
    if found is None:
        return
    _, case = found
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
        await message.answer("Skriv datumet som 2026-11-27 eller 27/11.")
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
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services
) -> None:
    """Make the change through the same use case as PATCH."""
    data = await state.get_data()
    await state.clear()
    if callback_data.value != "1" or not isinstance(query.message, Message):
        await query.answer("Avbrutet")
        return
    who = await acting_for_query(query, services)
    if who is None:
        return
    try:
        patch = parse(ArrivalPatch, {"arrival_date": data["new_date"]}, today=today(services))
        case = await services.cases.change(data["case"], patch, who.actor)
    except InvalidInput as exc:
        await query.answer()
        await query.message.answer(invalid_text(exc))
        return
    except (Forbidden, Conflict) as exc:
        await query.answer()
        await query.message.answer(escape(str(exc)))
        return
    await query.answer("Ändrat")
    await query.message.answer(
        f"Ändrat: {escape(case.reference)} kommer {swedish_date(case.arrival_date)}. "
        "Alla mottagare meddelas nu (ÄNDRAT)."
    )


async def start_cancel(
    message: Message, command: CommandObject, state: FSMContext, services: Services
) -> None:
    """`/stall_in REF`: ask for a reason."""
    found = await _own_case(message, services, (command.args or "").strip())
    if found is None:
        return
    _, case = found
    await state.clear()
    await state.set_state(Cancellation.reason)
    await state.update_data(case=case.id)
    await message.answer(
        f"Ställa in {escape(case.reference)}? Skriv kort varför (mottagarna ser texten), "
        "eller tryck Hoppa över.",
        reply_markup=one_button("Hoppa över", "skip"),
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
    """A typed reason, checked like the API checks it."""
    try:
        reason = check_free_text(message.text or "")
    except ValueError as exc:
        await message.answer(f"Det går inte att spara: {escape(str(exc))}.")
        return
    if len(reason) > 500:
        await message.answer("Högst 500 tecken.")
        return
    await _ask_cancel(message, state, services, reason)


async def skipped_reason(query: CallbackQuery, state: FSMContext, services: Services) -> None:
    """No reason given."""
    await query.answer()
    if isinstance(query.message, Message):
        await _ask_cancel(query.message, state, services, "")


async def confirmed_cancel(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services
) -> None:
    """Cancel through the same use case as the API."""
    data = await state.get_data()
    await state.clear()
    if callback_data.value != "1" or not isinstance(query.message, Message):
        await query.answer("Avbrutet")
        return
    who = await acting_for_query(query, services)
    if who is None:
        return
    try:
        case = await services.cases.cancel(data["case"], data.get("reason", ""), who.actor)
    except (Forbidden, Conflict) as exc:
        await query.answer()
        await query.message.answer(escape(str(exc)))
        return
    await query.answer("Inställt")
    await query.message.answer(f"Inställt: {escape(case.reference)}. Alla mottagare meddelas nu.")


def build_router() -> Router:
    """A fresh router for `/andra` and `/stall_in`."""
    router = Router(name="changes")
    router.message.register(start_change, Command("andra"))
    router.message.register(start_cancel, Command("stall_in"))
    router.message.register(typed_new_date, Change.new_date, TEXT)
    router.callback_query.register(picked_new_date, Change.new_date, Pick.filter(F.what == "date"))
    router.callback_query.register(
        confirmed_change, Change.confirm, Pick.filter(F.what == "confirm")
    )
    router.message.register(typed_reason, Cancellation.reason, TEXT)
    router.callback_query.register(
        skipped_reason, Cancellation.reason, Pick.filter(F.what == "skip")
    )
    router.callback_query.register(
        confirmed_cancel, Cancellation.confirm, Pick.filter(F.what == "confirm")
    )
    return router
