"""The **Mottaget** button under an arrival message."""

from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery

from bot.pipeline.buttons import AckButton
from bot.runtime.services import Services
from bot.usecases.access import Actor
from bot.usecases.cases import CaseNotFound
from messages import chat


async def acknowledge(query: CallbackQuery, callback_data: AckButton, services: Services) -> None:
    """Acknowledge for the organisation this chat is linked to, if the button is genuine."""
    if not services.signer.check_button(
        "ack", callback_data.case, callback_data.version, callback_data.sig
    ):
        await query.answer(chat.BUTTON_INVALID, show_alert=True)
        return
    chat_id = query.message.chat.id if query.message else None
    link = await services.chats.link_of(chat_id) if chat_id is not None else None
    if link is None:
        await query.answer(chat.NOT_LINKED, show_alert=True)
        return
    who = f"tg-user:{query.from_user.id}"
    actor = Actor(org_id=link.org_id, role=link.role, via="telegram", who=who)
    try:
        outcome, case = await services.cases.acknowledge(
            callback_data.case, link.org_id, actor, callback_data.version
        )
    except CaseNotFound:
        await query.answer(chat.BUTTON_INVALID, show_alert=True)
        return
    org = services.directory.organisations.get(link.org_id)
    await query.answer(
        chat.ack_reply(outcome, case.reference, org.name if org else link.org_id),
        show_alert=outcome != "recorded",
    )


def build_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="acknowledge")
    router.callback_query.register(acknowledge, AckButton.filter())
    return router
