"""The one place chat turns the core's refusals into a Swedish reply.

Handlers call the use cases and let `Forbidden`, `Conflict`, `InvalidInput` and `CaseNotFound`
rise; this router's error handler answers them: a button press with an alert (a bad form with a
chat message too, as it may need several lines), a typed message with a reply. A refusal ends
the dialogue the chat was in; a validation error leaves it open, so the person can try again.

A refusal that names a case (a case button pressed in a chat whose organisation may not use
it, `/andra`, `/stall_in` or `/oenighet` of a case the chat may not touch) is a refused read:
the audit trail keeps who tried which case from which chat (`audit_refused`).

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
from bot.pipeline.buttons import AckButton, Action, CaseAction
from bot.runtime.services import Services
from bot.store import FaultLog, store_unavailable
from bot.usecases.audit import case_id_for, record_refused
from bot.usecases.cases import CaseNotFound, Conflict, Forbidden
from bot.usecases.disagreements import DisagreementNotFound
from handlers.telegram.common import acting, invalid_text
from messages import chat

NOT_FOUND = "Det finns inget sådant ärende."
NO_SUCH_DISAGREEMENT = "Det finns ingen sådan oenighet."
TRY_AGAIN = "Rätta och skicka igen, eller avbryt med /avbryt."
STORE_BUSY = "Tjänsten kan inte spara just nu, försök igen om en stund."
# The commands that name a case by its reference: refused, they are refused reads.
CASE_COMMANDS = ("/andra", "/stall_in", "/oenighet")

log = logging.getLogger(__name__)
# One log line per store fault chat meets (again when it changes or every minute it lasts).
_store_faults = FaultLog(log, "chat", repeat_after=60.0)


def reply_text(error: Exception, *, button: bool) -> str:
    """What the chat is told (HTML) for one of the core's refusals."""
    if isinstance(error, InvalidInput):
        return invalid_text(error) + "\n" + TRY_AGAIN
    if isinstance(error, DisagreementNotFound):
        return chat.BUTTON_INVALID if button else NO_SUCH_DISAGREEMENT
    if isinstance(error, CaseNotFound):
        return chat.BUTTON_INVALID if button else NOT_FOUND
    return escape(str(error))


async def refused_target(event: ErrorEvent, services: Services) -> tuple[str, str] | None:
    """(what was asked for, through what) when the refused update names a case: a case button
    (the case, or `disagreement:ID` for Eskalera) or a case command's reference (the case id
    when it names one, else as typed); None otherwise."""
    query = event.update.callback_query
    if query is not None:
        data = query.data or ""
        if data.startswith(AckButton.__prefix__ + AckButton.__separator__):
            return AckButton.unpack(data).case, "telegram:button"
        if data.startswith(CaseAction.__prefix__ + CaseAction.__separator__):
            action = CaseAction.unpack(data)
            if action.action is Action.ESCALATE:
                return f"disagreement:{action.ref}", "telegram:button"
            return action.ref, "telegram:button"
        return None
    message = event.update.message
    command, _, reference = (message.text or "").partition(" ") if message else ("", "", "")
    reference = reference.strip()
    if command.partition("@")[0] not in CASE_COMMANDS or not reference:
        return None
    return (await case_id_for(services.redis, reference)) or reference, "telegram"


async def audit_refused(event: ErrorEvent, services: Services) -> None:
    """Write a refusal that names a case to the audit trail as a refused read, with who tried
    (organisation, role, Telegram user) and the chat. A failure to write it is logged; the
    person is answered all the same."""
    query, message = event.update.callback_query, event.update.message
    chat_id = (
        query.message.chat.id
        if query is not None and query.message is not None
        else (message.chat.id if message is not None else None)
    )
    user = query.from_user if query is not None else (message.from_user if message else None)
    if chat_id is None:
        return
    try:
        target = await refused_target(event, services)
        who = await acting(services, chat_id, user.id if user else None)
        if target is None or who is None:
            return
        reason = "not_found" if isinstance(event.exception, CaseNotFound) else "forbidden"
        await record_refused(
            services.redis,
            who.actor,
            target[0],
            target[1],
            services.clock.now(),
            reason,
            chat_id=chat_id,
        )
    except Exception as exc:  # the audit must not keep the person from an answer
        log.warning("a refused read in chat was not written to the audit trail: %r", exc)


async def refused(
    event: ErrorEvent, state: FSMContext | None = None, services: Services | None = None
) -> None:
    """Answer a refusal where it came from (a refused read is audited first)."""
    error = event.exception
    if state is not None and not isinstance(error, InvalidInput):
        await state.clear()
    if services is not None and isinstance(error, (Forbidden, CaseNotFound)):
        await audit_refused(event, services)
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
