"""Wiring: build every long-lived part once, start them, stop them in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web
from redis.asyncio import Redis

from bot.channels.email import EmailSender
from bot.channels.telegram import TelegramSender
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.clock import Clock, SystemClock
from bot.domain.directory import Directory, load_directory
from bot.pipeline.deadletters import DeadLetterAlarm
from bot.pipeline.deadlines import Deadlines, DeadlineSettings
from bot.pipeline.delivery import Deliverer, DeliverySettings
from bot.pipeline.fanout import FanOut
from bot.runtime.embedded import EmbeddedSmtp
from bot.runtime.metrics import Metrics
from bot.runtime.settings import Settings
from bot.store import keys
from bot.store.connection import Store, open_store
from bot.store.streams import StreamConsumer
from bot.store.timers import Scheduler
from bot.usecases.access import ApiTokens, ChatLinks, Signer
from bot.usecases.cases import CaseService
from bot.usecases.disagreements import Disagreements
from bot.usecases.healthcare import HealthCentre
from bot.usecases.intake import INTAKE_GROUP, Intake
from bot.usecases.privacy import Retention
from bot.usecases.sessions import DashboardAccess

log = logging.getLogger("ankomst")


@dataclass
class Services:
    """Everything a handler may need, made once at start and passed in."""

    settings: Settings
    redis: Redis
    directory: Directory
    clock: Clock
    calendar: WorkingDayCalendar
    cases: CaseService
    tokens: ApiTokens
    chats: ChatLinks
    signer: Signer
    fanout: FanOut
    deliverer: Deliverer
    scheduler: Scheduler
    deadlines: Deadlines
    health: HealthCentre
    disagreements: Disagreements
    dashboard: DashboardAccess
    bot: Bot | None = None
    consumers: list[StreamConsumer] = field(default_factory=list)
    scheduler_running: bool = False
    metrics: Metrics | None = None
    retention: Retention | None = None
    # Further workers /readyz answers for (name -> is it alive), e.g. the privacy sweep.
    liveness: dict[str, Callable[[], bool]] = field(default_factory=dict)

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether the store answers and every worker runs."""
        checks: dict[str, Any] = {}
        try:
            checks["redis"] = bool(await asyncio.wait_for(self.redis.ping(), 2))
        except Exception as exc:
            checks["redis"] = False
            checks["redis_error"] = type(exc).__name__
        checks["workers"] = {f"{c.stream}/{c.group}": c.stats.alive for c in self.consumers}
        if self.scheduler_running:
            checks["workers"]["scheduler"] = self.scheduler.stats.alive
        for name, alive in self.liveness.items():
            checks["workers"][name] = alive()
        ok = checks["redis"] is True and all(checks["workers"].values()) and bool(self.consumers)
        return ok, checks


def directory_chats(directory: Directory) -> dict[int, str]:
    """Chats listed in the directory file, by chat id."""
    return {c: o.id for o in directory.organisations.values() for c in o.telegram_chats}


def from_domain(settings: Settings) -> str:
    """The domain of the sender address, for Message-IDs."""
    address = settings.smtp_from.rsplit("<", 1)[-1].rstrip(">").strip()
    return address.rsplit("@", 1)[-1]


def make_bot(settings: Settings) -> Bot | None:
    """aiogram's Bot, pointed at the configured Bot API server; None when chat is off."""
    if settings.telegram_token is None:
        return None
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(settings.telegram_api_url),
        timeout=settings.telegram_timeout,
    )
    return Bot(
        settings.telegram_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode="HTML"),
    )


def consumer_name() -> str:
    """A name unique to this process, for the consumer groups."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Ankomst:
    """The running service: HTTP server, pipeline workers and Telegram, on one event loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        say: Any = None,
        run_workers: bool = True,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.say = say or (lambda line: log.info("%s", line))
        self.run_workers = run_workers
        self.store: Store | None = None
        self.smtp: EmbeddedSmtp | None = None
        self.services: Services | None = None
        self.email: EmailSender | None = None
        self.bot: Bot | None = None
        self.dispatcher: Dispatcher | None = None
        self.runner: web.AppRunner | None = None
        self.port: int = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> Services:
        """Start everything; returns the services (tests use them directly)."""
        settings = self.settings
        directory = load_directory(settings.directory)
        self.store = await open_store(settings)
        redis = self.store.redis
        if self.store.embedded is not None:
            self.say(f"Redis: embedded Valkey in {settings.valkey_dir} (AOF, appendfsync always)")
        else:
            self.say("Redis: using ANKOMST_REDIS_URL")

        smtp_host, smtp_port = settings.smtp_host, settings.smtp_port
        if smtp_host is None:
            self.smtp = EmbeddedSmtp(settings.mail_dir)
            await self.smtp.start()
            smtp_host, smtp_port = "127.0.0.1", self.smtp.port
            self.say(f"E-mail: no SMTP host set; captured mail is stored in {settings.mail_dir}")
        self.email = EmailSender.from_settings(settings, host=smtp_host, port=smtp_port)

        self.bot = make_bot(settings)
        if self.bot is None:
            self.say("Telegram: off (ANKOMST_TELEGRAM_TOKEN is not set)")
        # A send never waits for its turn longer than half the delivery's claim: past the claim
        # another process may take the delivery over and send it too. It is retried instead.
        telegram = (
            TelegramSender(self.bot, redis, max_wait=settings.claim_seconds / 2)
            if self.bot is not None
            else None
        )

        calendar = WorkingDayCalendar(
            settings.zone, settings.office_start, settings.office_end, directory.closed_days
        )
        chats = ChatLinks(redis, self.clock, directory_chats(directory))
        signer = Signer(settings.secret(), settings.ack_link_days * 86400, self.clock)
        fanout = FanOut(redis, directory, chats, self.clock)
        deliverer = Deliverer(
            redis,
            directory,
            chats,
            calendar,
            signer,
            self.clock,
            DeliverySettings(
                public_url=settings.public_url,
                from_domain=from_domain(settings),
                chat_details=settings.chat_details,
                booking_days=settings.booking_days,
                claim_ms=settings.claim_seconds * 1000,
                failpoint=settings.failpoint or "",
            ),
            self.email,
            telegram,
        )
        scheduler = Scheduler(
            redis,
            self.clock,
            poll_seconds=settings.scheduler_poll_seconds,
            lease_seconds=settings.scheduler_lease_seconds,
            late_after_seconds=settings.scheduler_late_seconds,
        )
        disagreements = Disagreements(redis, directory, self.clock)
        deadlines = Deadlines(
            redis,
            directory,
            calendar,
            self.clock,
            scheduler,
            fanout,
            DeadlineSettings.from_settings(settings),
            disagreements,
        )
        services = Services(
            settings=settings,
            redis=redis,
            directory=directory,
            clock=self.clock,
            calendar=calendar,
            cases=CaseService(redis, directory, self.clock, settings.zone),
            tokens=ApiTokens(redis, self.clock),
            chats=chats,
            signer=signer,
            fanout=fanout,
            deliverer=deliverer,
            scheduler=scheduler,
            deadlines=deadlines,
            health=HealthCentre(redis, directory, self.clock, settings.zone),
            disagreements=disagreements,
            dashboard=DashboardAccess(
                redis,
                self.clock,
                settings.secret(),
                login_seconds=settings.dashboard_login_minutes * 60,
                session_seconds=int(settings.dashboard_session_hours * 3600),
            ),
            bot=self.bot,
        )
        services.metrics = Metrics(redis, directory, self.clock)
        services.retention = Retention(
            redis,
            directory,
            calendar,
            self.clock,
            retention_days=settings.retention_days,
            sweep_seconds=settings.retention_sweep_seconds,
            booking_days=settings.booking_days,
        )
        self.services = services

        if self.run_workers:
            name = consumer_name()
            reclaim = settings.claim_seconds * 1000
            alarm = DeadLetterAlarm(redis, self.clock)
            observe = services.metrics
            deliverer.on_outcome = observe.count_delivery
            services.consumers = [
                StreamConsumer(
                    redis,
                    keys.EVENTS,
                    keys.FANOUT_GROUP,
                    name,
                    observe.observe_events(fanout.handle, time_acks=True),
                    reclaim_after_ms=reclaim,
                ),
                StreamConsumer(
                    redis,
                    keys.EVENTS,
                    keys.DEADLINES_GROUP,
                    name,
                    observe.observe_events(deadlines.handle, time_acks=False),
                    reclaim_after_ms=reclaim,
                ),
                StreamConsumer(
                    redis,
                    keys.OUTBOX_EMAIL,
                    keys.SENDER_GROUP,
                    name,
                    observe.observe_deliveries(deliverer.handle),
                    concurrency=settings.smtp_pool_size * 2,
                    reclaim_after_ms=reclaim,
                    on_dead_letter=alarm,
                ),
            ]
            if telegram is not None:
                services.consumers.append(
                    StreamConsumer(
                        redis,
                        keys.OUTBOX_TELEGRAM,
                        keys.SENDER_GROUP,
                        name,
                        observe.observe_deliveries(deliverer.handle),
                        concurrency=64,
                        reclaim_after_ms=reclaim,
                        on_dead_letter=alarm,
                    )
                )
            services.consumers.append(
                StreamConsumer(
                    redis,
                    keys.INTAKE,
                    INTAKE_GROUP,
                    name,
                    Intake(redis, services.cases).handle,
                    reclaim_after_ms=reclaim,
                )
            )
            for consumer in services.consumers:
                self._tasks.append(
                    asyncio.create_task(consumer.run(), name=f"{consumer.stream}/{consumer.group}")
                )
            self._tasks.append(asyncio.create_task(scheduler.run(), name="scheduler"))
            services.scheduler_running = True
            observe.consumers = services.consumers
            retention = services.retention
            self._tasks.append(asyncio.create_task(retention.run(), name="privacy"))
            services.liveness["privacy"] = lambda: retention.stats.alive

        from handlers.http.routes import build_web_app
        from handlers.telegram import build_dispatcher

        app = build_web_app(services)
        if self.bot is not None:
            self.dispatcher = build_dispatcher(services)
            if settings.telegram_mode == "webhook":
                from handlers.telegram import add_webhook_route

                add_webhook_route(app, self.dispatcher, self.bot, settings)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, settings.http_host, settings.http_port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else settings.http_port
        self.say(f"HTTP: listening on http://{settings.http_host}:{self.port}")

        if (
            self.bot is not None
            and self.dispatcher is not None
            and settings.telegram_mode == "polling"
        ):
            polling = asyncio.create_task(self._poll(self.bot, self.dispatcher), name="telegram")
            self._tasks.append(polling)
            services.liveness["telegram"] = lambda: not polling.done()
        return services

    async def _poll(self, bot: Bot, dispatcher: Dispatcher) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher.start_polling(
                bot, handle_signals=False, close_bot_session=False, polling_timeout=10
            )

    async def stop(self) -> None:
        """Stop in reverse order; what is pending stays in Redis for the next start."""
        if self.services is not None:
            for consumer in self.services.consumers:
                await consumer.stop()
            await self.services.scheduler.stop()
            if self.services.retention is not None:
                await self.services.retention.stop()
        if self.dispatcher is not None and self.settings.telegram_mode == "polling":
            with contextlib.suppress(RuntimeError):
                await self.dispatcher.stop_polling()
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, 5)
        self._tasks.clear()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.bot is not None:
            await self.bot.session.close()
        if self.email is not None:
            await self.email.close()
        if self.smtp is not None:
            await self.smtp.stop()
        if self.store is not None:
            await self.store.close()

    async def __aenter__(self) -> Services:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(settings: Settings, *, after_start: Any = None) -> None:
    """Run until SIGINT or SIGTERM."""
    service = Ankomst(settings, say=print)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    services = await service.start()
    try:
        if after_start is not None:
            await after_start(service, services)
        print("Ankomst is running. Stop with Ctrl+C.", flush=True)
        await stop.wait()
    finally:
        print("Stopping…", flush=True)
        await service.stop()
