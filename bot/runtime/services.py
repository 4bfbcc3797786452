"""The core's object graph, built by one factory and complete at construction.

`build_services` makes every long-lived core object once (use cases, pipeline, workers) from
resources the caller has already opened (the Redis client, the e-mail sender, the Bot). It
starts nothing: `handlers.main` owns the order of start and stop, and wires the adapters
(web app, dispatcher) around what is built here. Nothing in this module knows a handler.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiogram import Bot
from prometheus_client import Counter, Gauge

from bot.channels.email import EmailSender
from bot.channels.telegram import TelegramSender
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.clock import Clock
from bot.domain.directory import Directory
from bot.pipeline.deadletters import DeadLetterAlarm
from bot.pipeline.deadlines import Deadlines, DeadlineSettings
from bot.pipeline.delivery import Deliverer, DeliveryHooks, DeliverySettings
from bot.pipeline.fanout import FanOut
from bot.pipeline.mailbox import MailboxConfig, MailboxListener, MailboxSettingError, Outcome
from bot.runtime.metrics import Metrics
from bot.runtime.settings import Settings, SettingsError
from bot.store import Heartbeat, Redis, keys
from bot.store.durability import Durability
from bot.store.faults import DEFAULT_STALE_SECONDS
from bot.store.streams import StreamConsumer
from bot.store.timers import Scheduler
from bot.usecases.access import ApiTokens, ChatLinks, Signer
from bot.usecases.cases import CaseService
from bot.usecases.disagreements import Disagreements
from bot.usecases.healthcare import HealthCentre
from bot.usecases.intake import Intake
from bot.usecases.notices import DraftLinks, NoticeDrafts
from bot.usecases.privacy import Retention, carries_personal, note_personal_entries
from bot.usecases.sessions import DashboardAccess

# E-mail deliveries in hand per SMTP connection of the pool: one on the wire, the others being
# claimed, rendered or recorded meanwhile, so their store commands go out in fewer, larger
# batches. 2 a connection before; with 4 the store's round trips per delivery fell from 2.43-2.67
# to 2.02-2.18 (issue 17, bench/ with 200 arrivals, docs/benchmarks.md); CPU per delivery
# stayed within this machine's noise. A delivery waiting for a connection holds its claim,
# renewed as for any send, and is marked "sending" only once it has its connection.
EMAIL_IN_HAND_PER_CONNECTION = 4


@dataclass
class Workers:
    """The background loops of one process; empty when the process runs no workers."""

    consumers: list[StreamConsumer] = field(default_factory=list)
    scheduler: Scheduler | None = None
    retention: Retention | None = None
    # The watched mailboxes: ANKOMST_IMAP_URL's first, then those the directory names.
    mailboxes: list[MailboxListener] = field(default_factory=list)
    # Further loops an adapter runs (Telegram polling): name -> is it alive.
    extra: dict[str, Callable[[], bool]] = field(default_factory=dict)
    # A loop that has not taken a turn for this long is stuck (ANKOMST_WORKER_STALE_SECONDS).
    stale_after: float = DEFAULT_STALE_SECONDS

    def heartbeats(self) -> dict[str, Heartbeat]:
        """Each loop's heartbeat by name (the loops beat them; nothing else does)."""
        beats = {f"{c.stream}/{c.group}": c.stats.heartbeat for c in self.consumers}
        if self.scheduler is not None:
            beats["scheduler"] = self.scheduler.stats.heartbeat
        if self.retention is not None:
            beats["privacy"] = self.retention.stats.heartbeat
        for listener in self.mailboxes:
            beats[_mailbox_worker(listener)] = listener.stats.heartbeat
        return beats

    @property
    def mailbox(self) -> MailboxListener | None:
        """The first watched mailbox (ANKOMST_IMAP_URL's when it is set), if any."""
        return self.mailboxes[0] if self.mailboxes else None

    def liveness(self) -> dict[str, bool]:
        """Each worker by name, and whether it is alive: its loop runs and has beaten within
        `stale_after` seconds. A loop that ended (however) or hangs is not alive. A loop that
        is backing off from a store fault still beats: the store's own check says that."""
        alive = {name: beat.alive(self.stale_after) for name, beat in self.heartbeats().items()}
        alive.update({name: check() for name, check in self.extra.items()})
        return alive


@dataclass
class StoreWatch:
    """What /readyz has seen of the store: whether it ever answered, and since when it has not.

    Readiness rides out a short outage (a failover, a restart): a process that has reached the
    store before stays ready for `grace` seconds after the first failed check, so the pods of
    a deployment are not all taken out of service together for a hiccup they survive.
    """

    grace: float = 30.0
    seen_up: bool = False
    down_since: float | None = None
    now: Callable[[], float] = time.monotonic

    def up(self) -> None:
        """The store answered."""
        self.seen_up = True
        self.down_since = None

    def down(self) -> float:
        """The store did not answer; returns for how long it has not (seconds)."""
        now = self.now()
        if self.down_since is None:
            self.down_since = now
        return now - self.down_since

    def riding_out(self, down_for: float) -> bool:
        """Whether an outage of `down_for` seconds still counts as ready."""
        return self.seen_up and down_for < self.grace


def fanout_group_skips(event: dict[str, str]) -> bool:
    """Whether the fan-out's consumer group can acknowledge an event unhandled: none of its
    handler's three parts acts on it (the fan-out makes no message of it, it is not an
    acknowledgement to time, and it holds nothing personal to note for erasure)."""
    return not (FanOut.acts_on(event) or Metrics.times(event) or carries_personal(event))


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
    metrics: Metrics
    retention: Retention
    workers: Workers
    drafts: NoticeDrafts
    bot: Bot | None = None
    # Whether the e-mail relay works as last seen (connect, TLS, login); shown, never blocking:
    # mail waits for the relay, and the API must keep taking arrivals meanwhile.
    smtp_up: Callable[[], bool] | None = None
    store_watch: StoreWatch = field(default_factory=StoreWatch)

    @property
    def consumers(self) -> list[StreamConsumer]:
        """The stream consumers of this process (none when it runs no workers)."""
        return self.workers.consumers

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether the process can do its work: the store answers (or has been away less than
        the grace period, `ANKOMST_READY_GRACE_SECONDS`) and every worker loop is alive by its
        own heartbeat.

        `redis` is what the store answered just now; `redis_down_seconds` how long it has not.
        """
        checks: dict[str, Any] = {}
        watch = self.store_watch
        try:
            checks["redis"] = bool(await asyncio.wait_for(self.redis.ping(), 2))
        except Exception as exc:
            checks["redis"] = False
            checks["redis_error"] = type(exc).__name__
        if checks["redis"]:
            watch.up()
            store_ok = True
        else:
            down_for = watch.down()
            checks["redis_down_seconds"] = round(down_for, 1)
            store_ok = watch.riding_out(down_for)
        checks["workers"] = self.workers.liveness()
        if self.smtp_up is not None:
            checks["smtp"] = self.smtp_up()
        ok = store_ok and all(checks["workers"].values()) and bool(self.workers.consumers)
        return ok, checks


def directory_chats(directory: Directory) -> dict[int, str]:
    """Chats listed in the directory file, by chat id."""
    return {c: o.id for o in directory.organisations.values() for c in o.telegram_chats}


def from_domain(settings: Settings) -> str:
    """The domain of the sender address, for Message-IDs."""
    address = settings.smtp_from.rsplit("<", 1)[-1].rstrip(">").strip()
    return address.rsplit("@", 1)[-1]


def email_sender(
    settings: Settings, *, host: str | None = None, port: int | None = None
) -> EmailSender:
    """The e-mail sender from the ANKOMST_SMTP_* settings; `host`/`port` override them (the
    embedded capture server's)."""
    smtp_host = host or settings.smtp_host
    if smtp_host is None:
        raise ValueError("no SMTP host: set ANKOMST_SMTP_HOST or pass the embedded server's")
    password = settings.smtp_password
    return EmailSender(
        host=smtp_host,
        port=port if port is not None else settings.smtp_port,
        from_addr=settings.smtp_from,
        username=settings.smtp_username,
        password=password.get_secret_value() if password is not None else None,
        starttls=settings.smtp_starttls,
        use_tls=settings.smtp_tls,
        ca_file=str(settings.smtp_ca_file) if settings.smtp_ca_file is not None else None,
        pool_size=settings.smtp_pool_size,
        timeout=settings.smtp_timeout,
        max_attempts=settings.send_attempts,
        base_delay=settings.retry_base_seconds,
        max_delay=settings.retry_cap_seconds,
    )


def deadline_settings(settings: Settings) -> DeadlineSettings:
    """The time rules the deadlines keep, from the service's settings."""
    return DeadlineSettings(
        ack_reminder_hours=settings.ack_reminder_hours,
        ack_escalation_at=settings.ack_escalation_at,
        booking_days=settings.booking_days,
        booking_reminder_days=settings.booking_reminder_days,
        same_day_alert_minutes=settings.same_day_alert_minutes,
        same_day_grace_minutes=settings.same_day_grace_minutes,
        disagreement_days=settings.disagreement_days,
    )


def _mailbox_worker(listener: MailboxListener) -> str:
    """The worker's name in /health: "mailbox" for ANKOMST_IMAP_URL's, as it always was, and
    "mailbox/<reception unit>" for one the directory names."""
    if listener.config.from_directory:
        return f"mailbox/{listener.config.reception_unit}"
    return "mailbox"


def mailbox_configs(settings: Settings, directory: Directory) -> list[MailboxConfig]:
    """Every mailbox to watch: ANKOMST_IMAP_URL's, then each reception unit's of the directory
    (its password from the environment variable it names). SettingsError, naming it, for a
    password variable that is not set or a mailbox named twice."""

    def read(url: str, unit: str, password: str | None = None) -> MailboxConfig:
        return MailboxConfig.from_url(
            url,
            password,
            reception_unit=unit,
            from_directory=password is not None,
            ca_file=settings.imap_ca_file,
            delete_processed=settings.imap_delete_processed,
            poll_seconds=settings.imap_poll_seconds,
        )

    configs: list[MailboxConfig] = []
    if settings.imap_url is not None and settings.imap_reception_unit:
        configs.append(read(settings.imap_url.get_secret_value(), settings.imap_reception_unit))
    for org in directory.organisations.values():
        if org.imap_url is None or org.imap_password_env is None:
            continue
        password = os.environ.get(org.imap_password_env)
        if not password:
            raise SettingsError(
                f"{org.imap_password_env} is not set: it holds the password of the mailbox "
                f"of {org.id!r} (imap_url in the directory)"
            )
        try:
            config = read(org.imap_url, org.id, password)
        except MailboxSettingError as exc:
            raise SettingsError(f"the imap_url of {org.id!r}: {exc}") from None
        configs.append(config)
    seen: dict[tuple[str, str], str] = {}
    for config in configs:
        # The same folder watched twice would draft each notice for two reception units.
        mailbox = (config.user.lower(), config.name.lower())
        owner = "ANKOMST_IMAP_URL" if not config.from_directory else repr(config.reception_unit)
        if mailbox in seen:
            raise SettingsError(
                f"the mailbox {config.user}@{config.name} is watched twice: by {seen[mailbox]} "
                f"and by {owner}"
            )
        seen[mailbox] = owner
    return configs


def mailbox_listeners(
    settings: Settings,
    directory: Directory,
    drafts: NoticeDrafts,
    redis: Redis,
    clock: Clock,
    metrics: Metrics,
) -> list[MailboxListener]:
    """A listener for each watched mailbox (see `mailbox_configs`); empty when there is none."""
    configs = mailbox_configs(settings, directory)
    if not configs:
        return []
    counted = Counter(
        "ankomst_mailbox_messages",
        "Messages of the watched mailboxes taken by this process, by outcome: drafted, "
        "duplicate (already a draft), failed (left in the mailbox, reason in the log).",
        ["outcome"],
        registry=metrics.registry,
    )

    def count(outcome: Outcome) -> None:
        counted.labels(outcome).inc()

    return [
        MailboxListener(config, drafts, redis, clock, settings.secret(), count)
        for config in configs
    ]


def consumer_name() -> str:
    """A name unique to this process, for the consumer groups."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def build_services(
    settings: Settings,
    *,
    directory: Directory,
    redis: Redis,
    clock: Clock,
    email: EmailSender,
    bot: Bot | None,
    run_workers: bool,
    delivery_hooks: DeliveryHooks | None = None,
) -> Services:
    """Build the core once: use cases, pipeline and (when asked) the workers, none started.

    `delivery_hooks` is for the fault tests only (see `DeliveryHooks`); production has none.
    """
    # A send never waits for its turn longer than half the delivery's claim: past the claim
    # another process may take the delivery over and send it too. It is retried instead.
    telegram = (
        TelegramSender(bot, redis, max_wait=settings.claim_seconds / 2) if bot is not None else None
    )
    calendar = WorkingDayCalendar(
        settings.zone, settings.office_start, settings.office_end, directory.closed_days
    )
    # Under Sentinel: a write is answered, and an entry acted on, only once on the replicas.
    # Every write that is a promise to another party (a case, a booking, a clearance, a
    # disagreement's step, a token, an invite) is confirmed with it before it is answered.
    # Not the board's sign-in links and sessions: they promise nothing to anyone else, and one
    # lost in a failover costs the user a new sign-in, not a lost notice.
    durability = Durability(redis, settings.redis_min_replicas, settings.redis_wait_ms)
    chats = ChatLinks(redis, clock, directory_chats(directory), durability)
    signer = Signer(settings.secret(), settings.ack_link_days * 86400, clock)
    fanout = FanOut(redis, directory, chats, clock)
    metrics = Metrics(redis, directory, clock, calendar, deadline_settings(settings))
    deliverer = Deliverer(
        redis,
        directory,
        chats,
        calendar,
        signer,
        clock,
        DeliverySettings(
            public_url=settings.public_url,
            from_domain=from_domain(settings),
            chat_details=settings.chat_details,
            booking_days=settings.booking_days,
            claim_ms=settings.claim_seconds * 1000,
            max_attempts=settings.delivery_max_attempts,
            max_age=timedelta(hours=settings.delivery_max_hours),
        ),
        email,
        telegram,
        delivery_hooks,
    )
    deliverer.on_outcome = metrics.count_delivery

    def smtp_up() -> bool:
        # Follows the deliverer's sender, whichever it is now.
        return deliverer.email is None or deliverer.email.relay_up

    Gauge(
        "ankomst_smtp_relay_up",
        "1 while the e-mail relay can be reached, secured and logged in to, as last seen; 0 "
        "while mail waits for it (the log names the setting to check).",
        registry=metrics.registry,
    ).set_function(lambda: float(smtp_up()))
    scheduler = Scheduler(
        redis,
        clock,
        poll_seconds=settings.scheduler_poll_seconds,
        lease_seconds=settings.scheduler_lease_seconds,
        late_after_seconds=settings.scheduler_late_seconds,
    )
    disagreements = Disagreements(redis, directory, clock, durability)
    deadlines = Deadlines(
        redis,
        directory,
        calendar,
        clock,
        scheduler,
        fanout,
        deadline_settings(settings),
        disagreements,
    )
    cases = CaseService(redis, directory, clock, settings.zone, durability)
    retention = Retention(
        redis,
        directory,
        calendar,
        clock,
        retention_days=settings.retention_days,
        sweep_seconds=settings.retention_sweep_seconds,
        trim_seconds=settings.stream_trim_seconds,
        booking_days=settings.booking_days,
    )
    drafts = NoticeDrafts(
        redis,
        cases,
        directory,
        clock,
        calendar,
        deadline_settings(settings),
        DraftLinks(settings.public_url),
        scheduler,
    )
    drafts.watch(scheduler)
    if settings.imap_reception_unit and (
        directory.organisations.get(settings.imap_reception_unit) is None
        or directory.organisations[settings.imap_reception_unit].kind != "reception_unit"
    ):
        raise SettingsError(
            "ANKOMST_IMAP_RECEPTION_UNIT names no reception unit of the directory: "
            f"{settings.imap_reception_unit!r}"
        )
    workers = Workers(stale_after=settings.worker_stale_seconds)
    if run_workers:
        name = consumer_name()
        reclaim = settings.claim_seconds * 1000
        alarm = DeadLetterAlarm(redis, clock)
        workers.consumers = [
            StreamConsumer(
                redis,
                keys.EVENTS,
                keys.FANOUT_GROUP,
                name,
                durability.replicated(
                    keys.EVENTS,
                    metrics.observe_events(
                        note_personal_entries(redis, fanout.handle), time_acks=True
                    ),
                ),
                reclaim_after_ms=reclaim,
                skip=fanout_group_skips,
            ),
            StreamConsumer(
                redis,
                keys.EVENTS,
                keys.DEADLINES_GROUP,
                name,
                durability.replicated(
                    keys.EVENTS,
                    metrics.observe_events(deadlines.handle, time_acks=False, keep_deadlines=True),
                ),
                reclaim_after_ms=reclaim,
            ),
            StreamConsumer(
                redis,
                keys.OUTBOX_EMAIL,
                keys.SENDER_GROUP,
                name,
                durability.replicated(
                    keys.OUTBOX_EMAIL, metrics.observe_deliveries(deliverer.handle)
                ),
                concurrency=settings.smtp_pool_size * EMAIL_IN_HAND_PER_CONNECTION,
                reclaim_after_ms=reclaim,
                on_dead_letter=alarm,
            ),
        ]
        if telegram is not None:
            workers.consumers.append(
                StreamConsumer(
                    redis,
                    keys.OUTBOX_TELEGRAM,
                    keys.SENDER_GROUP,
                    name,
                    durability.replicated(
                        keys.OUTBOX_TELEGRAM, metrics.observe_deliveries(deliverer.handle)
                    ),
                    concurrency=64,
                    reclaim_after_ms=reclaim,
                    on_dead_letter=alarm,
                )
            )
        workers.consumers.append(
            StreamConsumer(
                redis,
                keys.INTAKE,
                keys.INTAKE_GROUP,
                name,
                Intake(redis, cases).handle,
                reclaim_after_ms=reclaim,
            )
        )
        workers.scheduler = scheduler
        workers.retention = retention
        workers.mailboxes = mailbox_listeners(settings, directory, drafts, redis, clock, metrics)
        metrics.consumers = workers.consumers
    return Services(
        settings=settings,
        redis=redis,
        directory=directory,
        clock=clock,
        calendar=calendar,
        cases=cases,
        tokens=ApiTokens(redis, clock, durability),
        chats=chats,
        signer=signer,
        fanout=fanout,
        deliverer=deliverer,
        scheduler=scheduler,
        deadlines=deadlines,
        health=HealthCentre(redis, directory, clock, settings.zone, calendar, durability),
        disagreements=disagreements,
        dashboard=DashboardAccess(
            redis,
            clock,
            settings.secret(),
            login_seconds=settings.dashboard_login_minutes * 60,
            session_seconds=int(settings.dashboard_session_hours * 3600),
        ),
        metrics=metrics,
        retention=retention,
        workers=workers,
        drafts=drafts,
        bot=bot,
        smtp_up=smtp_up,
        store_watch=StoreWatch(grace=settings.ready_grace_seconds),
    )
