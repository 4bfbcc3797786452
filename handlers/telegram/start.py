"""Linking a chat to an organisation (`/start CODE`) and `/help`."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault, Message

from bot.runtime.services import Services
from messages import chat
from messages.models import OrgKind


async def set_chat_commands(bot: Bot, chat_id: int, kind: OrgKind | None, role: str) -> None:
    """This chat's command menu, for its organisation's kind and the chat's role."""
    commands = [BotCommand(command=c, description=d) for c, d in chat.commands_for(kind, role)]
    await bot.set_my_commands(commands, scope=BotCommandScopeChat(chat_id=chat_id))


async def set_default_commands(bot: Bot) -> None:
    """The menu of chats not linked yet: /start CODE and /help (on start-up)."""
    commands = [BotCommand(command=c, description=d) for c, d in chat.commands_for(None, "member")]
    await bot.set_my_commands(commands, scope=BotCommandScopeDefault())


async def link_chat(
    message: Message, command: CommandObject, services: Services, bot: Bot | None = None
) -> None:
    """`/start CODE` links this chat with the code's organisation; `/start` alone explains."""
    code = (command.args or "").strip()
    if not code:
        await show_help(message, services)
        return
    user = f"tg-user:{message.from_user.id}" if message.from_user else "tg-user:?"
    link = await services.chats.redeem(code, message.chat.id, user)
    if link is None:
        await message.answer(chat.INVITE_INVALID)
        return
    org = services.directory.organisations.get(link.org_id)
    await message.answer(chat.linked(org.name if org else link.org_id, link.role))
    if org is not None and bot is not None:
        await set_chat_commands(bot, message.chat.id, org.kind, link.role)


async def show_help(message: Message, services: Services) -> None:
    """What the bot does for this chat's organisation."""
    link = await services.chats.link_of(message.chat.id)
    org = services.directory.organisations.get(link.org_id) if link else None
    await message.answer(chat.help_text(org.kind if org else None, org.name if org else None))


def build_router() -> Router:
    """A fresh router (a router can belong to one dispatcher only)."""
    router = Router(name="start")
    router.message.register(link_chat, CommandStart())
    router.message.register(show_help, Command("help", "hjalp"))
    return router
