"""Telegram: one router per use case; this module is the only caller of include_routers."""

from __future__ import annotations

import math

from aiogram import Bot, Dispatcher
from aiogram.fsm.storage.base import DefaultKeyBuilder
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.runtime.services import Services
from bot.runtime.settings import Settings
from bot.store import keys, redis_py
from handlers.telegram import (
    acknowledge,
    board,
    changes,
    disagreement,
    errors,
    health,
    overview,
    registration,
    start,
)

WEBHOOK_PATH = "/telegram/webhook"
# The update types the routers handle (a test checks it against the dispatcher's own answer);
# Telegram sends no other kind to the webhook.
ALLOWED_UPDATES = ("message", "callback_query")


class SharedRedisStorage(RedisStorage):
    """FSM storage on the app's own Redis client.

    aiogram closes its storage (and with it the client's connection pool) when polling stops;
    the client belongs to the app, which closes it last.
    """

    async def close(self) -> None:
        """Leave the shared client open."""


def chat_state_seconds(hours: float) -> int:
    """ANKOMST_CHAT_STATE_HOURS as the whole seconds Redis expires a key after (at least 1)."""
    return max(1, math.ceil(hours * 3600))


def chat_state_storage(services: Services) -> SharedRedisStorage:
    """Where chat dialogues keep what was typed so far: under the service's own key prefix,
    and forgotten ANKOMST_CHAT_STATE_HOURS after a dialogue's last step (each step renews it),
    so an abandoned /ny leaves nothing behind. A dialogue that ends clears it at once."""
    ttl = chat_state_seconds(services.settings.chat_state_hours)
    return SharedRedisStorage(
        redis=redis_py(services.redis),
        key_builder=DefaultKeyBuilder(prefix=keys.FSM_PREFIX, with_bot_id=True),
        state_ttl=ttl,
        data_ttl=ttl,
    )


def build_dispatcher(services: Services) -> Dispatcher:
    """The dispatcher with every router, FSM state in Redis, services as workflow data."""
    storage = chat_state_storage(services)
    # One update of a chat at a time across every replica (a Redis lock per chat and user),
    # so two webhook replicas never interleave the read-modify-write of one dialogue.
    dispatcher = Dispatcher(storage=storage, events_isolation=storage.create_isolation())
    # Long-lived objects reach handlers as typed parameters (aiogram dependency injection).
    dispatcher["services"] = services
    dispatcher.startup.register(start.set_default_commands)
    dispatcher.include_routers(
        errors.build_router(),  # the one error handler: the core's refusals → a Swedish reply
        start.build_router(),
        registration.build_router(),
        changes.build_router(),
        health.build_router(),
        disagreement.build_router(),
        overview.build_router(),
        board.build_router(),
        acknowledge.build_router(),
    )
    return dispatcher


def add_webhook_route(
    app: web.Application, dispatcher: Dispatcher, bot: Bot, settings: Settings
) -> None:
    """Serve updates at /telegram/webhook; a wrong secret token gets 401."""
    assert settings.telegram_webhook_secret is not None  # enforced by Settings
    SimpleRequestHandler(
        dispatcher=dispatcher,
        bot=bot,
        secret_token=settings.telegram_webhook_secret.get_secret_value(),
        handle_in_background=False,
    ).register(app, path=WEBHOOK_PATH)
    # Start-up hooks (the default command menu) run with the aiohttp app.
    setup_application(app, dispatcher, bot=bot)


def webhook_url(settings: Settings) -> str:
    """Where Telegram posts this service's updates: ANKOMST_PUBLIC_URL + /telegram/webhook."""
    return settings.public_url + WEBHOOK_PATH


async def register_webhook(bot: Bot, settings: Settings) -> str:
    """Tell Telegram (setWebhook) to post updates to `webhook_url`, sending the secret token
    (ANKOMST_TELEGRAM_WEBHOOK_SECRET) with each; returns the URL. Calling it again is harmless."""
    if settings.telegram_webhook_secret is None:
        raise ValueError("ANKOMST_TELEGRAM_WEBHOOK_SECRET is not set")
    url = webhook_url(settings)
    await bot.set_webhook(
        url,
        secret_token=settings.telegram_webhook_secret.get_secret_value(),
        allowed_updates=list(ALLOWED_UPDATES),
    )
    return url


async def delete_webhook(bot: Bot) -> None:
    """Tell Telegram to stop posting updates (deleteWebhook), e.g. before going back to polling."""
    await bot.delete_webhook()
