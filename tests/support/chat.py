"""Driving a chat dialogue in the test world: type, press a button, wait for the bot's reply."""

from __future__ import annotations

from typing import Any

from tests.support.world import World, eventually


def buttons(call: Any) -> list[dict[str, str]]:
    """The inline buttons under a message the bot sent."""
    markup = call.params.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def button(call: Any, text: str) -> str:
    """The callback data of the button whose label starts with `text`."""
    return next(b["callback_data"] for b in buttons(call) if b["text"].startswith(text))


async def chat_says(world: World, chat_id: int, words: str, timeout: float = 10.0) -> Any:
    """The bot's latest message to the chat containing `words` (waits for it)."""
    found: list[Any] = []

    async def seen() -> bool:
        found[:] = [c for c in world.telegram.sent_to(chat_id) if words in (c.text or "")]
        return bool(found)

    await eventually(seen, timeout, f"{words!r} in chat {chat_id}")
    return found[-1]


def say(world: World, chat_id: int, text: str) -> None:
    """A person types `text` in the chat."""
    world.telegram.push_update(world.telegram.message_update(chat_id, text))


async def press(world: World, chat_id: int, data: str) -> None:
    """A person presses a button; returns once the press is answered."""
    before = len(world.telegram.calls_to("answerCallbackQuery"))
    world.telegram.push_update(world.telegram.callback_update(chat_id, data))

    async def answered() -> bool:
        return len(world.telegram.calls_to("answerCallbackQuery")) > before

    await eventually(answered, 10.0, "the button press to be answered")
