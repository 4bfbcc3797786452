"""The single wiring point: open resources, build the core, wire the adapters, start, stop.

Everything is entered on one `AsyncExitStack`, so a start that fails half-way unwinds what it
had already started, and `stop` undoes the rest in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

from bot.channels.telegram_types import pin_response_models
from bot.domain.clock import Clock, SystemClock
from bot.pipeline.delivery import DeliveryHooks
from bot.runtime.directory_file import load_directory
from bot.runtime.embedded import EmbeddedSmtp
from bot.runtime.services import Services, build_services, email_sender
from bot.runtime.settings import Settings
from bot.store import STORE_UNAVAILABLE, Redis
from bot.store.connection import open_store
from bot.store.durability import inspect_store
from handlers.http.routes import build_web_app
from handlers.telegram import add_webhook_route, build_dispatcher, register_webhook, webhook_url

log = logging.getLogger("ankomst")

__all__ = ["Ankomst", "Services", "make_bot", "serve"]


def make_bot(settings: Settings) -> Bot | None:
    """aiogram's Bot, pointed at the configured Bot API server; None when chat is off."""
    if settings.telegram_token is None:
        return None
    pin_response_models()
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(settings.telegram_api_url),
        timeout=settings.telegram_timeout,
    )
    return Bot(
        settings.telegram_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode="HTML"),
    )


def _log_if_died(task: asyncio.Task[None]) -> None:
    """A worker loop should never end by an exception; if one does, say so (and retrieve it,
    so it is not lost as "Task exception was never retrieved"). /readyz shows it not alive."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        log.error("worker %s ended by an error", task.get_name(), exc_info=error)


class Ankomst:
    """The running service: HTTP server, pipeline workers and Telegram, on one event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        say: Any = None,
        run_workers: bool = True,
        delivery_hooks: DeliveryHooks | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.say = say or (lambda line: log.info("%s", line))
        self.run_workers = run_workers
        self.delivery_hooks = delivery_hooks  # fault tests only: see DeliveryHooks
        self.services: Services | None = None
        self.bot: Bot | None = None
        self.dispatcher: Dispatcher | None = None
        self.port: int = 0
        self._stack: contextlib.AsyncExitStack | None = None

    async def start(self) -> Services:
        """Start everything; returns the services (tests use them directly).

        A failure part-way unwinds what was already started before it propagates.
        """
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            services = await self._start(stack)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return services

    async def _start(self, stack: contextlib.AsyncExitStack) -> Services:
        settings = self.settings
        directory = load_directory(settings.directory)
        store = await open_store(settings)
        stack.push_async_callback(store.close)
        if store.embedded is not None:
            self.say(f"Redis: embedded Valkey in {settings.valkey_dir} (AOF, appendfsync always)")
        else:
            self.say("Redis: using ANKOMST_REDIS_URL")
        await self._check_store(store.redis)

        smtp_host, smtp_port = settings.smtp_host, settings.smtp_port
        if smtp_host is None:
            smtp = EmbeddedSmtp(settings.mail_dir)
            await smtp.start()
            stack.push_async_callback(smtp.stop)
            smtp_host, smtp_port = "127.0.0.1", smtp.port
            self.say(f"E-mail: no SMTP host set; captured mail is stored in {settings.mail_dir}")
        email = email_sender(settings, host=smtp_host, port=smtp_port)
        stack.push_async_callback(email.close)

        self.bot = bot = make_bot(settings)
        if bot is None:
            self.say("Telegram: off (ANKOMST_TELEGRAM_TOKEN is not set)")
        else:
            stack.push_async_callback(bot.session.close)

        services = build_services(
            settings,
            directory=directory,
            redis=store.redis,
            clock=self.clock,
            email=email,
            bot=bot,
            run_workers=self.run_workers,
            delivery_hooks=self.delivery_hooks,
        )
        self.services = services
        workers = services.workers
        for consumer in workers.consumers:
            self._run(stack, consumer.run(), consumer.stop, f"{consumer.stream}/{consumer.group}")
        if workers.scheduler is not None:
            self._run(stack, workers.scheduler.run(), workers.scheduler.stop, "scheduler")
        if workers.retention is not None:
            self._run(stack, workers.retention.run(), workers.retention.stop, "privacy")
        for listener in workers.mailboxes:
            self._run(stack, listener.run(), listener.stop, f"mailbox {listener.config.name}")

        app = build_web_app(services)
        if bot is not None:
            self.dispatcher = build_dispatcher(services)
            if settings.telegram_mode == "webhook":
                add_webhook_route(app, self.dispatcher, bot, settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else settings.http_port
        self.say(f"HTTP: listening on http://{settings.http_host}:{self.port}")
        if bot is not None and settings.telegram_mode == "webhook":
            await self._register_webhook(bot)

        if bot is not None and self.dispatcher is not None and settings.telegram_mode == "polling":
            dispatcher = self.dispatcher

            async def stop_polling() -> None:
                with contextlib.suppress(RuntimeError):
                    await dispatcher.stop_polling()

            polling = self._run(stack, self._poll(bot, dispatcher), stop_polling, "telegram")
            workers.extra["telegram"] = lambda: not polling.done()
        return services

    async def _check_store(self, redis: Redis) -> None:
        """Warn (one line) about settings that lose writes on failover (a Redis Cluster was
        already refused by `open_store`)."""
        try:
            check = await inspect_store(redis, min_replicas=self.settings.redis_min_replicas)
        except STORE_UNAVAILABLE as exc:
            log.warning("Redis settings not checked: the store did not answer (%s)", exc)
            return
        if check.problems:
            log.warning("Redis settings put answered writes at risk: %s", "; ".join(check.problems))

    async def _register_webhook(self, bot: Bot) -> None:
        """Webhook mode: register this service's URL with Telegram (setWebhook) now that it is
        served, and say where Telegram posts (never the secret). A Telegram that does not
        answer does not stop the start: the rest of the service works, and the line says how
        to register by hand."""
        url = webhook_url(self.settings)
        try:
            await register_webhook(bot, self.settings)
        except Exception as exc:
            self.say(
                f"Telegram: webhook mode, but setWebhook for {url} failed "
                f"({type(exc).__name__}: {exc}); run `ankomst telegram webhook` when Telegram "
                "answers"
            )
            return
        self.say(f"Telegram: webhook mode; Telegram posts updates to {url}")

    def _run(
        self,
        stack: contextlib.AsyncExitStack,
        work: Any,
        stop: Any,
        name: str,
    ) -> asyncio.Task[None]:
        """Run one loop as a task; at exit ask it to stop, then cancel what has not."""
        task: asyncio.Task[None] = asyncio.create_task(work, name=name)
        task.add_done_callback(_log_if_died)

        async def finish() -> None:
            await stop()
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)

        stack.push_async_callback(finish)
        return task

    async def _poll(self, bot: Bot, dispatcher: Dispatcher) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher.start_polling(
                bot, handle_signals=False, close_bot_session=False, polling_timeout=10
            )

    async def stop(self) -> None:
        """Stop in reverse order of start; what is pending stays in Redis for the next start."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Services:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# Allocations between two young-generation collections (CPython's default is 700): a service
# handling hundreds of entries a second allocates that many in well under a millisecond.
GC_YOUNG_THRESHOLD = 10_000


def tune_garbage_collector() -> None:
    """Once started: leave what start-up made (imported modules, aiogram's and pydantic's
    models, the directory, compiled templates: most of the heap, and it lives as long as the
    process) out of the collector's full passes, which otherwise walk all of it again and again
    under load (collected once, then `gc.freeze`); and collect the young generation less often
    (`GC_YOUNG_THRESHOLD`). Measured in bench/ (issue 17): the collector's CPU in a flat-out run
    fell from 0.43 s to 0.16 s over 4,800 deliveries with the freeze, and CPU per delivery by
    about 3 % more with the threshold."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


async def serve(
    settings: Settings, *, after_start: Any = None, delivery_hooks: DeliveryHooks | None = None
) -> None:
    """Run until SIGINT or SIGTERM (`delivery_hooks`: the fault tests' only)."""
    service = Ankomst(settings, say=print, delivery_hooks=delivery_hooks)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    services = await service.start()
    tune_garbage_collector()
    try:
        if after_start is not None:
            await after_start(service, services)
        print("Ankomst is running. Stop with Ctrl+C.", flush=True)
        await stop.wait()
    finally:
        print("Stopping…", flush=True)
        await service.stop()
