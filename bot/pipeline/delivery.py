"""Making one delivery: claim it, render it, send it, record it.

The claim (SET NX with an expiry) is taken before anything is sent, and the status is checked
under it, so two workers never send the same delivery, and a delivery recorded as sent is never
sent again. The one window left: a worker that dies after the send and before the record; its
claim expires and the delivery is sent a second time (see docs/reliability.md).

What a delivery says (message models, .ics, buttons) is bot/pipeline/rendering.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.channels.email import EmailSender, OutgoingMail
from bot.channels.telegram import TelegramSender
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.case import Case, CaseNotFound
from bot.domain.clock import Clock
from bot.domain.delivery import Delivery
from bot.domain.directory import Directory
from bot.domain.events import ChannelKind, DeliveryStatus, EventType
from bot.pipeline.rendering import MessageRenderer, RenderSettings, thread_ids
from bot.store import Redis, RedisConnectionError, RedisTimeoutError
from bot.store.cases import CaseStore
from bot.store.deliveries import DeliveryStore
from bot.usecases.access import ChatLinks, Signer
from messages import models as m

log = logging.getLogger(__name__)

RECORD_PATIENCE = 120.0  # seconds a sent message's record is retried through a store outage

# (ok, permanent failure, error, fields to record, send attempts) of one send.
SendResult = tuple[bool, bool, str, dict[str, str], int]


@dataclass(frozen=True)
class DeliverySettings:
    """What rendering and sending need from the settings."""

    public_url: str
    from_domain: str
    chat_details: m.ChatDetails
    booking_days: int
    claim_ms: int

    @property
    def rendering(self) -> RenderSettings:
        """The part rendering needs."""
        return RenderSettings(
            self.public_url, self.from_domain, self.chat_details, self.booking_days
        )


@dataclass(frozen=True)
class DeliveryHooks:
    """Called with the delivery's id at the steps where a crash matters: after the claim,
    after the send (before the record) and after the record (before the XACK).

    Production passes none. The fault tests (tests/support/failpoint.py) install one that
    kills the process there, to show what a crash at each step costs.
    """

    after_claim: Callable[[str], Awaitable[None]] | None = None
    after_send: Callable[[str], Awaitable[None]] | None = None
    after_record: Callable[[str], Awaitable[None]] | None = None


class Deliverer:
    """Handles the outbox streams: one entry, one delivery."""

    def __init__(
        self,
        redis: Redis,
        directory: Directory,
        chats: ChatLinks,
        calendar: WorkingDayCalendar,
        signer: Signer,
        clock: Clock,
        settings: DeliverySettings,
        email: EmailSender | None,
        telegram: TelegramSender | None,
        hooks: DeliveryHooks | None = None,
    ) -> None:
        self.redis = redis
        self.hooks = hooks or DeliveryHooks()
        self.directory = directory
        self.chats = chats
        self.clock = clock
        self.settings = settings
        self.email = email
        self.telegram = telegram
        self.cases = CaseStore(redis)
        self.deliveries = DeliveryStore(redis)
        self.renderer = MessageRenderer(
            self.cases, directory, chats, calendar, signer, clock, settings.rendering
        )
        # Told each outcome (channel, status, send attempts beyond the delivery's first);
        # the metrics set it, so counting costs no reads of the store.
        self.on_outcome: Callable[[str, str, int], None] | None = None

    async def _until_stored(self, write: Callable[[], Awaitable[None]]) -> None:
        """Run a store write, retrying while the store is unreachable (up to RECORD_PATIENCE)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + RECORD_PATIENCE
        delay = 0.1
        while True:
            try:
                await write()
                return
            except (RedisConnectionError, RedisTimeoutError):
                if loop.time() + delay > give_up:
                    raise
                log.warning("store unreachable while recording a sent message; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _outcome(self, d: Delivery, status: DeliveryStatus, tries: int = 0) -> None:
        if self.on_outcome is None:
            return
        first = 1 if d.attempts == 0 and tries > 0 else 0
        self.on_outcome(d.channel, status, tries - first)

    async def handle(self, entry_id: str, entry: dict[str, str]) -> bool:
        """Consumer-group handler for an outbox stream."""
        ident = entry.get("delivery", "")
        # Claim and read in one round trip: when the claim is ours the status the read shows
        # cannot change under us (another worker may have finished the delivery before, which
        # the status then shows).
        claimed, d = await self.deliveries.claim(ident, entry_id, self.settings.claim_ms)
        if d is None or d.status.done:
            if claimed:
                await self.deliveries.release(ident)
            return True
        if not claimed:
            return False  # another worker has it; if it died, the claim expires and we retry
        if self.hooks.after_claim is not None:
            await self.hooks.after_claim(ident)
        try:
            return await self._deliver(d)
        except BaseException:
            await self.deliveries.release(ident)
            raise

    async def _deliver(self, d: Delivery) -> bool:
        try:
            case, version = await self.cases.with_version(d.case, d.version)
        except CaseNotFound:
            await self.deliveries.finish(
                d.id, {"status": DeliveryStatus.FAILED, "error": "case not found"}
            )
            self._outcome(d, DeliveryStatus.FAILED)
            return True
        if d.is_arrival_notice and d.version < case.version:
            # A newer version is on its way with everything in it: don't send the old one.
            await self.deliveries.finish(
                d.id,
                {
                    "status": DeliveryStatus.SUPERSEDED,
                    "superseded_at": self.clock.now().isoformat(),
                },
            )
            self._outcome(d, DeliveryStatus.SUPERSEDED)
            return True
        if version is None:
            raise CaseNotFound(f"{case.id} v{d.version}")
        rendered, needs_ack = await self.renderer.render(d, case, version)
        await self.deliveries.update(
            d.id, status=DeliveryStatus.SENDING, sending_at=self.clock.now().isoformat()
        )
        if d.channel_kind is ChannelKind.EMAIL:
            ok, permanent, error, extra, tries = await self._send_email(d, case, rendered)
        else:
            ok, permanent, error, extra, tries = await self._send_telegram(
                d, case, rendered, needs_ack
            )
        now = self.clock.now().isoformat()
        attempts = str(d.attempts + tries)
        if ok:
            if self.hooks.after_send is not None:
                await self.hooks.after_send(d.id)
            # A recipient has been reached: the deadline watch starts the booking clock and
            # keeps count of same-day notification from this event.
            sent = d.event(EventType.DELIVERY_SENT, now) if d.is_arrival_notice else None

            async def record_sent() -> None:
                await self.deliveries.finish(
                    d.id,
                    {"status": DeliveryStatus.SENT, "sent_at": now, "attempts": attempts, **extra},
                    sent,
                )

            # The message is out: losing this record would send it again, so ride out a
            # short store outage instead of giving up on the first lost connection.
            await self._until_stored(record_sent)
            self._outcome(d, DeliveryStatus.SENT, tries)
            if self.hooks.after_record is not None:
                await self.hooks.after_record(d.id)
            return True
        if permanent:
            failed = (
                d.event(EventType.DELIVERY_FAILED, now, error=error[:300])
                if d.reports_failure
                else None
            )
            await self.deliveries.finish(
                d.id,
                {
                    "status": DeliveryStatus.FAILED,
                    "failed_at": now,
                    "attempts": attempts,
                    "error": error,
                },
                failed,
            )
            self._outcome(d, DeliveryStatus.FAILED, tries)
            return True
        # Transient: leave the entry pending; it is taken again after the claim has expired.
        await self.deliveries.finish(
            d.id,
            {
                "status": DeliveryStatus.RETRYING,
                "attempts": attempts,
                "error": error,
                "retry_at": now,
            },
        )
        self._outcome(d, DeliveryStatus.RETRYING, tries)
        return False

    async def _send_email(self, d: Delivery, case: Case, rendered: m.Rendered) -> SendResult:
        if self.email is None:
            return False, True, "e-post är inte konfigurerad", {}, 0
        org = self.directory.organisation(d.org)
        if not org.email:
            return False, True, "organisationen har ingen e-postadress", {}, 0
        own, root = thread_ids(d, self.settings.from_domain)
        mail = OutgoingMail(
            to=org.email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=own,
            in_reply_to=None if own == root else root,
            references=() if own == root else (root,),
            attachments=self.renderer.attachments(d, case),
        )
        result = await self.email.send(mail)
        return result.ok, result.permanent, result.error or "", {"message_id": own}, result.attempts

    async def _send_telegram(
        self, d: Delivery, case: Case, rendered: m.Rendered, needs_ack: bool
    ) -> SendResult:
        chat_id = d.chat_id
        if self.telegram is None or chat_id is None:
            return False, True, "Telegram är inte påslaget", {}, 0
        markup = await self.renderer.buttons(d, case, chat_id, needs_ack)
        result = await self.telegram.send(chat_id, rendered.telegram, markup)
        extra: dict[str, str] = {}
        if result.migrated_to is not None:
            await self.chats.move(chat_id, result.migrated_to)
            extra["migrated_to"] = str(result.migrated_to)
        if result.message_id is not None:
            extra["message_id"] = str(result.message_id)
        return result.ok, result.permanent, result.error or "", extra, result.attempts
