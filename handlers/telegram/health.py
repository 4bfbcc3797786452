"""The health centre's buttons: report the booked health conversation, then clearance (yes/no)."""

from __future__ import annotations

from datetime import datetime
from html import escape

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot.domain.arrival import parse
from bot.pipeline.buttons import Action, CaseAction, check_action, clearance_rows
from bot.runtime.services import Services
from bot.usecases.healthcare import BookingIn, ClearanceIn
from handlers.telegram.common import (
    TEXT,
    Acting,
    Linked,
    Pick,
    parse_datetime,
    today,
    yes_no,
)
from messages import chat
from messages.dates import swedish_datetime


class Booking(StatesGroup):
    """The steps of reporting a booking."""

    when = State()
    interpreter = State()


async def pressed(
    query: CallbackQuery,
    callback_data: CaseAction,
    state: FSMContext,
    services: Services,
    who: Acting,
) -> None:
    """A case-action button of the health centre (book / clearance)."""
    if not check_action(services.signer, callback_data):
        await query.answer(chat.plain_text(chat.BUTTON_INVALID), show_alert=True)
        return
    if not isinstance(query.message, Message):
        return
    case = await services.cases.store.get(callback_data.ref)
    # Asked before a dialogue starts, so only the health centre on the case is asked for a time.
    services.health.require_health_centre(who.actor, case)
    if callback_data.action is Action.BOOK:
        await query.answer()
        await state.clear()
        await state.set_state(Booking.when)
        await state.update_data(case=case.id)
        await query.message.answer(
            f"Bokning för {escape(case.reference)}: skriv dag och tid för hälsosamtalet, "
            f"t.ex. {chat.datetime_example(today(services))}. (/avbryt för att avbryta)"
        )
        return
    clearance = ClearanceIn(
        all_results_received=True, start_obstacle=callback_data.action is Action.CLEAR_WAIT
    )
    await services.health.clear(case.id, clearance, who.actor)
    answer = "start kan ske" if clearance.may_start else "start måste vänta"
    await query.answer(f"Registrerat: {answer}")
    await query.message.answer(
        f"Besked registrerat för {escape(case.reference)}: {answer}. "
        "Mottagningsenheten, skolan och förskolan meddelas (utan provsvar)."
    )


async def typed_when(message: Message, state: FSMContext, services: Services) -> None:
    """The booked time, typed."""
    when = parse_datetime(message.text or "", today(services))
    if when is None:
        await message.answer(f"Skriv dag och tid, t.ex. {chat.datetime_example(today(services))}.")
        return
    # The use case's own check of the time, before the next question (InvalidInput rises).
    services.health.check_booking_time(when)
    await state.update_data(at=when.isoformat())
    await state.set_state(Booking.interpreter)
    await message.answer("Är tolk bokad till samtalet?", reply_markup=yes_no("interpreter"))


async def picked_interpreter(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services, who: Acting
) -> None:
    """Interpreter booked yes/no; then the booking is reported."""
    data = await state.get_data()
    await state.clear()
    if not isinstance(query.message, Message):
        return
    body = parse(BookingIn, {"at": data["at"], "interpreter_booked": callback_data.value == "1"})
    booking = await services.health.book(data["case"], body, who.actor)
    await query.answer("Bokning registrerad")
    case = await services.cases.store.get(data["case"])
    at = datetime.fromisoformat(booking["at"])
    replaced = " Den ersätter den tidigare tiden." if booking.get("replaces") else ""
    await query.message.answer(
        f"Bokning registrerad för {escape(case.reference)}: "
        f"{swedish_datetime(at, services.settings.zone)}.{replaced} "
        "Mottagningsenheten meddelas.\n\n"
        "När alla provsvar har kommit: tryck på ett av beskeden nedan (inga provsvar lämnas ut).",
        reply_markup=InlineKeyboardMarkup(inline_keyboard=clearance_rows(services.signer, case.id)),
    )


def build_router() -> Router:
    """A fresh router for the health centre's buttons."""
    router = Router(name="health")
    router.callback_query.register(
        pressed,
        CaseAction.filter(F.action.in_({Action.BOOK, Action.CLEAR_OK, Action.CLEAR_WAIT})),
        Linked(),
    )
    router.message.register(typed_when, Booking.when, TEXT)
    router.callback_query.register(
        picked_interpreter, Booking.interpreter, Pick.filter(F.what == "interpreter"), Linked()
    )
    return router
