"""The fake Telegram Bot API speaks well enough for the real aiogram Bot."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import TelegramMethod
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllPrivateChats,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Update,
)

from tests.support.telegram_api import Call, FakeTelegramAPI


class _UnknownMethod(TelegramMethod[bool]):
    __returning__ = bool
    __api_method__ = "sendCarrierPigeon"


def _button(data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Mottaget", callback_data=data)]]
    )


async def test_a_real_bot_gets_itself_and_sends_a_message() -> None:
    async with FakeTelegramAPI() as api, api.bot() as bot:
        me = await bot.get_me()
        first = await bot.send_message(42, "<b>Ny ankomst</b>", reply_markup=_button("ack:1"))
        second = await bot.send_message(-100, "Gruppen")

    assert me.id == 123456
    assert me.is_bot
    assert me.username == "ankomst_test_bot"
    assert first.chat.id == 42
    assert first.chat.type == "private"
    assert first.text == "<b>Ny ankomst</b>"
    assert second.message_id == first.message_id + 1
    assert second.chat.type == "group"
    [call] = api.sent_to(42)
    assert call.params["parse_mode"] == "HTML"  # from DefaultBotProperties
    assert call.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "Mottaget", "callback_data": "ack:1"}]]
    }
    assert [c.method for c in api.calls] == ["getMe", "sendMessage", "sendMessage"]
    assert api.calls[1].at <= api.calls[2].at


async def test_edits_callbacks_and_commands_round_trip() -> None:
    async with FakeTelegramAPI() as api, api.bot() as bot:
        sent = await bot.send_message(7, "Kvittera", reply_markup=_button("ack:1"))
        edited = await bot.edit_message_text("Kvitterat", chat_id=7, message_id=sent.message_id)
        assert not isinstance(edited, bool)
        assert edited.text == "Kvitterat"
        assert edited.reply_markup is None
        marked = await bot.edit_message_reply_markup(
            chat_id=7, message_id=sent.message_id, reply_markup=_button("x")
        )
        assert not isinstance(marked, bool)
        assert marked.reply_markup is not None
        assert marked.reply_markup.inline_keyboard[0][0].callback_data == "x"
        assert await bot.answer_callback_query("cb-1", text="Tack") is True

        scope = BotCommandScopeAllPrivateChats()
        commands = [BotCommand(command="start", description="Börja")]
        assert await bot.set_my_commands(commands, scope=scope, language_code="sv")
        got = await bot.get_my_commands(scope=scope, language_code="sv")
        assert [(c.command, c.description) for c in got] == [("start", "Börja")]
        assert await bot.get_my_commands() == []
        assert await bot.delete_my_commands(scope=scope, language_code="sv")
        assert await bot.get_my_commands(scope=scope, language_code="sv") == []

        assert await bot.set_webhook("https://example.org/tg", secret_token="s3cret")
        assert api.webhook_url == "https://example.org/tg"
        assert await bot.delete_webhook(drop_pending_updates=True)
        assert await bot.close()
        assert await bot.log_out()


async def test_update_builders_make_updates_aiogram_accepts() -> None:
    async with FakeTelegramAPI() as api, api.bot() as bot:
        sent = await bot.send_message(-100, "Ny ankomst", reply_markup=_button("ack:1"))

        private = Update.model_validate(api.message_update(42, "/start abc"))
        group = Update.model_validate(api.message_update(-100, "hej", user_id=5))
        supergroup = Update.model_validate(
            api.message_update(-1001234567890, "hej", chat_type="supergroup")
        )
        pressed = Update.model_validate(api.callback_update(-100, "ack:1", user_id=5))

    assert private.message is not None
    assert private.message.chat.type == "private"
    assert private.message.from_user is not None
    assert private.message.from_user.id == 42
    assert private.message.entities is not None
    assert private.message.entities[0].type == "bot_command"
    assert group.message is not None
    assert group.message.chat.type == "group"
    assert supergroup.message is not None
    assert supergroup.message.chat.type == "supergroup"
    assert pressed.callback_query is not None
    assert pressed.callback_query.data == "ack:1"
    assert pressed.callback_query.from_user.id == 5
    assert pressed.callback_query.message is not None
    assert pressed.callback_query.message.message_id == sent.message_id
    ids = [u.update_id for u in (private, group, supergroup, pressed)]
    assert ids == sorted(set(ids))


async def test_get_updates_long_polls_until_an_update_is_pushed() -> None:
    async with FakeTelegramAPI(long_poll_cap=2.0) as api, api.bot() as bot:
        assert await bot.get_updates(timeout=0) == []

        async def push_soon() -> None:
            await asyncio.sleep(0.05)
            api.push_update(api.message_update(42, "hej"))

        pusher = asyncio.create_task(push_soon())
        started = time.monotonic()
        updates = await bot.get_updates(timeout=10)
        await pusher
        assert time.monotonic() - started < 1.5  # answered on arrival, not at the timeout
        [update] = updates
        assert update.message is not None
        assert update.message.text == "hej"

        # Not yet confirmed: asked again without an offset, it is still there.
        assert [u.update_id for u in await bot.get_updates(timeout=0)] == [update.update_id]
        # Asking from the next offset confirms it.
        assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == []
        assert await bot.get_updates(timeout=0) == []


async def test_get_updates_ends_at_the_capped_timeout() -> None:
    async with FakeTelegramAPI(long_poll_cap=0.2) as api, api.bot() as bot:
        started = time.monotonic()
        assert await bot.get_updates(timeout=30) == []
        assert 0.15 < time.monotonic() - started < 1.5


async def test_unknown_methods_get_telegrams_not_found() -> None:
    async with FakeTelegramAPI() as api, api.bot() as bot:
        with pytest.raises(TelegramNotFound):
            await bot(_UnknownMethod())
    assert api.calls[0].status == 404


async def test_faults_reach_aiogram_as_its_own_exceptions() -> None:
    async with FakeTelegramAPI() as api, api.bot() as bot:
        api.throttle_next(retry_after=7)
        with pytest.raises(TelegramRetryAfter) as throttled:
            await bot.send_message(1, "a")
        assert throttled.value.retry_after == 7

        api.fail_next("sendMessage", status=502)
        with pytest.raises(TelegramServerError):
            await bot.send_message(1, "a")

        api.fail_next("sendMessage", status=502, body="<html>502 Bad Gateway</html>")
        with pytest.raises(ClientDecodeError):
            await bot.send_message(1, "a")

        api.block_chat(2)
        for _ in range(2):  # for good, not once
            with pytest.raises(TelegramForbiddenError, match="blocked"):
                await bot.send_message(2, "a")

        api.forget_chat(3)
        with pytest.raises(TelegramBadRequest, match="chat not found"):
            await bot.send_message(3, "a")

        api.migrate_chat(-4, -1004)
        with pytest.raises(TelegramMigrateToChat) as migrated:
            await bot.send_message(-4, "a")
        assert migrated.value.migrate_to_chat_id == -1004

        api.fail_next("sendMessage", chat_id=5, times=2)
        sent = await bot.send_message(6, "other chat is untouched")
        assert sent.chat.id == 6

        assert await bot.send_message(1, "and then it works")
    assert [c.text for c in api.sent] == ["other chat is untouched", "and then it works"]


async def test_a_delay_provokes_the_client_timeout() -> None:
    async with FakeTelegramAPI() as api, api.bot(timeout=0.5) as bot:
        api.delay_next("sendMessage", 5.0)
        with pytest.raises(TelegramNetworkError, match="timeout"):
            await bot.send_message(1, "slow")
        await bot.send_message(1, "fast")
    assert [c.text for c in api.sent] == ["fast"]


async def test_constant_latency_holds_every_request_but_answers_it() -> None:
    async with FakeTelegramAPI(latency=0.05) as api, api.bot() as bot:
        begun = time.monotonic()
        await asyncio.gather(*(bot.send_message(chat, "hej") for chat in (1, 2, 3)))
        took = time.monotonic() - begun
    assert took >= 0.05
    assert sorted(c.params["chat_id"] for c in api.sent) == [1, 2, 3]


def _sent(chat_id: int, at: float) -> Call:
    return Call("sendMessage", {"chat_id": chat_id, "text": "x"}, at)


async def test_limit_violations_find_bursts_in_the_recorded_times() -> None:
    async with FakeTelegramAPI() as api:
        api.calls += [_sent(1, 0.0), _sent(1, 1.5), _sent(1, 2.2)]  # 0.7 s apart: too close
        api.calls += [_sent(-9, 100.0 + 3.1 * i) for i in range(21)]  # 21 in 62 s: fine
        api.calls += [_sent(-8, 200.0 + 1.1 * i) for i in range(21)]  # 21 in 22 s: too many
        api.calls += [_sent(1000 + i, 300.0 + 0.03 * i) for i in range(31)]  # 31 in 0.9 s
        violations = api.limit_violations()

    rules = {(v.rule, v.chat_id) for v in violations}
    assert rules == {("per_chat", 1), ("per_group", -8), ("global", None)}
    [burst] = [v for v in violations if v.rule == "global"]
    assert burst.count == 31


async def test_enforced_limits_answer_429_to_a_burst() -> None:
    # The server's clock stands still: the burst is within one second however slow the machine.
    async with FakeTelegramAPI(enforce_limits=True, clock=lambda: 1000.0) as api, api.bot() as bot:
        await bot.send_message(1, "first")
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(1, "too soon")

        # 30 more chats fill the second; the 31st message within it is refused.
        await asyncio.gather(*(bot.send_message(100 + i, "x") for i in range(29)))
        with pytest.raises(TelegramRetryAfter):
            await bot.send_message(999, "one too many")
    assert len(api.sent) == 30
    assert api.limit_violations() == []
    assert api.calls_to("sendMessage")[-1].status == 429
