"""The **Mottaget** button under an arrival message."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery

from bot.pipeline.buttons import AckButton
from bot.runtime.services import Services
from bot.usecases.audit import record_refused
from handlers.telegram.common import Acting, Linked
from messages import chat


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


def build_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="acknowledge")
    router.callback_query.register(acknowledge, AckButton.filter(), Linked())
    return router
