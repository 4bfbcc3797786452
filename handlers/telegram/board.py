"""`/tavla`: a one-time sign-in link to the status board for the chat's organisation."""

from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import LinkPreviewOptions, Message

from bot.runtime.services import Services
from handlers.http.dashboard import chat_login_link
from handlers.telegram.common import Acting, Linked


async def board_link(message: Message, services: Services, who: Acting) -> None:
    """Reply with a sign-in link; only a chat linked to an organisation gets one."""
    text = await chat_login_link(services, who.org.id, who.actor.role, who.actor.who)
    # No preview: Telegram's preview fetcher must not be the one to see the link first.
    await message.answer(text, link_preview_options=LinkPreviewOptions(is_disabled=True))


def build_router() -> Router:
    """A fresh router for `/tavla`."""
    router = Router(name="board")
    router.message.register(board_link, Command("tavla"), Linked())
    return router
