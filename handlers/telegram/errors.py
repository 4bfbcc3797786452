"""The one place chat turns the core's refusals into a Swedish reply.

Handlers call the use cases and let `Forbidden`, `Conflict`, `InvalidInput` and `CaseNotFound`
rise; this router's error handler answers them: a button press with an alert (a bad form with a
chat message too, as it may need several lines), a typed message with a reply. A refusal ends
the dialogue the chat was in; a validation error leaves it open, so the person can try again.

A store that cannot serve now (`bot.store.store_unavailable`: unreachable, failing over, full,
read-only…) is not the person's fault either: they are told to try again in a while, and the
dialogue stays as it was.
"""

from __future__ import annotations

import contextlib
import logging
from html import escape

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import ExceptionTypeFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import ErrorEvent, Message

from bot.domain.arrival import InvalidInput
from bot.store import FaultLog, store_unavailable
from bot.usecases.cases import CaseNotFound, Conflict, Forbidden
from handlers.telegram.common import invalid_text
from messages import chat

NOT_FOUND = "Det finns inget sådant ärende."
TRY_AGAIN = "Rätta och skicka igen, eller avbryt med /avbryt."
STORE_BUSY = "Tjänsten kan inte spara just nu, försök igen om en stund."

log = logging.getLogger(__name__)
# One log line per store fault chat meets (again when it changes or every minute it lasts).
_store_faults = FaultLog(log, "chat", repeat_after=60.0)


def reply_text(error: Exception, *, button: bool) -> str:
    """What the chat is told (HTML) for one of the core's refusals."""
    if isinstance(error, InvalidInput):
        return invalid_text(error) + "\n" + TRY_AGAIN
    if isinstance(error, CaseNotFound):
        return chat.BUTTON_INVALID if button else NOT_FOUND
    return escape(str(error))


async def refused(event: ErrorEvent, state: FSMContext | None = None) -> None:
    """Answer a refusal where it came from."""
    error = event.exception
    if state is not None and not isinstance(error, InvalidInput):
        await state.clear()
    query = event.update.callback_query
    if query is not None:
        text = reply_text(error, button=True)
        # The handler may have answered the press already; then only the chat message remains.
        with contextlib.suppress(TelegramBadRequest):
            await query.answer(chat.plain_text(text), show_alert=True)
        if isinstance(error, InvalidInput) and isinstance(query.message, Message):
            await query.message.answer(text)
        return
    message = event.update.message
    if message is not None:
        await message.answer(reply_text(error, button=False))


def is_store_fault(event: ErrorEvent) -> bool:
    """Filter: the error is the store being unable to serve now."""
    return store_unavailable(event.exception)


async def store_busy(event: ErrorEvent) -> None:
    """Tell the chat to try again later; the dialogue (if any) is kept."""
    _store_faults.fault(event.exception)
    query = event.update.callback_query
    # Telegram or the store may fail again while we answer; nothing more can be done then.
    with contextlib.suppress(Exception):
        if query is not None:
            await query.answer(STORE_BUSY, show_alert=True)
            return
        message = event.update.message
        if message is not None:
            await message.answer(STORE_BUSY)


def build_router() -> Router:
    """A fresh router with the one error handler of the chat adapter."""
    router = Router(name="errors")
    router.errors.register(
        refused, ExceptionTypeFilter(Forbidden, Conflict, InvalidInput, CaseNotFound)
    )
    router.errors.register(store_busy, is_store_fault)
    return router
