"""The **Mottaget** button under an arrival message.

Pressed, it acknowledges for the chat's organisation and then edits the message itself: the
button goes, and a line says who acknowledged and when ("Mottaget av Lugnviksskolan
2 december kl. 09.14"), so everyone in a group chat sees it is done and nobody presses again.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, Message

from bot.pipeline.buttons import AckButton
from bot.runtime.services import Services
from bot.usecases.audit import record_refused
from handlers.telegram.common import Acting, Linked
from messages import chat

log = logging.getLogger(__name__)

TELEGRAM_LIMIT = 4096


async def _acknowledged_at(services: Services, case_id: str, version: int, org_id: str) -> datetime:
    ack = (await services.cases.store.acks(case_id)).get(f"{version}:{org_id}")
    return datetime.fromisoformat(ack["at"]) if ack and ack.get("at") else services.clock.now()


async def _mark_done(message: Message, stamp: str) -> None:
    """Replace the button by the stamp; if the text would grow too long, only drop the button.
    A message already edited ("message is not modified") is left as it is."""
    text = f"{message.html_text}\n\n{stamp}"
    with contextlib.suppress(TelegramBadRequest):
        if message.text is not None and len(text) <= TELEGRAM_LIMIT:
            await message.edit_text(text, parse_mode="HTML", reply_markup=None)
        else:
            await message.edit_reply_markup(reply_markup=None)


async def acknowledge(
    query: CallbackQuery, callback_data: AckButton, services: Services, who: Acting
) -> None:
    """Acknowledge for the organisation this chat is linked to, if the button is genuine."""
    if not services.signer.check_button(
        "ack", callback_data.case, callback_data.version, callback_data.sig
    ):
        await query.answer(chat.BUTTON_INVALID, show_alert=True)
        return
    outcome, case = await services.cases.acknowledge(
        callback_data.case, who.org.id, who.actor, callback_data.version
    )
    if outcome == "not_recipient" and query.message is not None:
        # A button forwarded to a chat of an organisation not on the case: a refused read.
        await record_refused(
            services.redis,
            who.actor,
            case.id,
            "telegram:button",
            services.clock.now(),
            "forbidden",
            chat_id=query.message.chat.id,
        )
    await query.answer(
        chat.ack_reply(outcome, case.reference, who.org.name), show_alert=outcome != "recorded"
    )
    if outcome in ("recorded", "already") and isinstance(query.message, Message):
        at = await _acknowledged_at(services, case.id, callback_data.version, who.org.id)
        stamp = chat.acknowledged_stamp(who.org.name, at, services.settings.zone)
        try:
            await _mark_done(query.message, stamp)
        except Exception:
            # The acknowledgement is recorded; a message that cannot be edited is no failure.
            log.warning("could not mark the acknowledged message in chat", exc_info=True)


def build_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="acknowledge")
    router.callback_query.register(acknowledge, AckButton.filter(), Linked())
    return router
