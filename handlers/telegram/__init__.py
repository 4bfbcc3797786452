"""Telegram: one router per use case; this module is the only caller of include_routers."""

from __future__ import annotations

from aiogram import Bot, Dispatcher
from aiogram.fsm.storage.redis import RedisStorage
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from bot.runtime.services import Services
from bot.runtime.settings import Settings
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


class SharedRedisStorage(RedisStorage):
    """FSM storage on the app's own Redis client.

    aiogram closes its storage (and with it the client's connection pool) when polling stops;
    the client belongs to the app, which closes it last.
    """

    async def close(self) -> None:
        """Leave the shared client open."""


def build_dispatcher(services: Services) -> Dispatcher:
    """The dispatcher with every router, FSM state in Redis, services as workflow data."""
    dispatcher = Dispatcher(storage=SharedRedisStorage(redis=services.redis))
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
