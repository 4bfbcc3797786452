"""Making one delivery: claim it, render it, send it, record it.

The claim (SET NX with an expiry) is taken before anything is sent, and the status is checked
under it, so two workers never send the same delivery, and a delivery recorded as sent is never
sent again. The claim always outlives the send: it is renewed while the delivery is being made
(only while it is still ours), and the send itself runs under a deadline a safety margin before
the claim would lapse, moved on with each renewal, so a send the renewals cannot keep covered
(the store away for a whole claim period) is cut off before another worker may take over. The
one window left: a worker that dies after the send and before the record; its claim expires and
the delivery is sent a second time (see docs/reliability.md).

A delivery that keeps failing transiently is given up after `max_attempts` attempts or once it
is `max_age` old, whichever comes first: it is recorded failed, the reception unit is told (the
`delivery.failed` event), its outbox entry goes to the dead-letter stream with the reason, and
an alert is logged and counted (outcome "given_up"). Attempts that failed on the e-mail relay
(connection, TLS, login: the relay's fault, not the message's) do not count toward
`max_attempts`, only toward `max_age`.

What a delivery says (message models, .ics, buttons) is bot/pipeline/rendering.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from bot.channels.email import EmailSender, OutgoingMail
from bot.channels.telegram import TelegramSender
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.case import Case, CaseNotFound
from bot.domain.clock import Clock
from bot.domain.delivery import Delivery
from bot.domain.directory import Directory
from bot.domain.events import (
    DRAFT_CASE_PREFIX,
    DRAFT_TOPICS,
    ChannelKind,
    DeliveryStatus,
    EventType,
)
from bot.pipeline.rendering import MessageRenderer, RenderSettings, thread_ids
from bot.store import Redis, RedisConnectionError, RedisTimeoutError, keys
from bot.store.cases import CaseStore
from bot.store.deliveries import DeliveryStore
from bot.usecases.access import ChatLinks, Signer
from bot.usecases.notices import draft_as_case
from messages import models as m

log = logging.getLogger(__name__)

RECORD_PATIENCE = 120.0  # seconds a sent message's record is retried through a store outage
# A send is cut off this far before its claim would lapse: a quarter of the claim, at most 5 s
# (time for the cut-off send to end and its outcome to be recorded under the claim).
CLAIM_MARGIN_SHARE = 0.25
CLAIM_MARGIN_MAX = 5.0
RENEWALS_PER_CLAIM = 3  # the claim is renewed this often per claim period while in hand
GIVEN_UP = "given_up"  # the outcome counted for a delivery given up on

OUTBOX = {ChannelKind.EMAIL: keys.OUTBOX_EMAIL, ChannelKind.TELEGRAM: keys.OUTBOX_TELEGRAM}


@dataclass(frozen=True)
class SendResult:
    """What one send came to, in the terms the deliverer records."""

    ok: bool
    permanent: bool
    error: str
    extra: dict[str, str]  # fields to record (message id, migrated chat)
    attempts: int
    relay_attempts: int = 0  # of `attempts`, those that failed on the relay (not counted)


@dataclass(frozen=True)
class DeliverySettings:
    """What rendering and sending need from the settings."""

    public_url: str
    from_domain: str
    chat_details: m.ChatDetails
    booking_days: int
    claim_ms: int
    # A delivery failing transiently is given up after this many attempts (not counting the
    # relay's own failures) or at this age, whichever comes first (ANKOMST_DELIVERY_MAX_*).
    max_attempts: int = 30
    max_age: timedelta = timedelta(hours=2)

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


def case_of(ident: str) -> tuple[str, int] | None:
    """The case and version a delivery id names (`delivery_id`: case:version:…), to read the
    case with the claim; None for a notice draft's delivery or an id of another shape."""
    case_id, _, rest = ident.partition(":")
    number, _, _ = rest.partition(":")
    if not case_id or case_id.startswith(DRAFT_CASE_PREFIX) or not number.isdigit():
        return None
    return case_id, int(number)


class ClaimLease:
    """A delivery's claim while the delivery is in hand: renewed in the background (only while
    still ours), and a deadline for the send that stays a margin short of the claim's end.

    `expires` is measured on this process's monotonic clock from *before* each request that
    set the claim's lifetime, so it is never later than the expiry Redis keeps.
    """

    def __init__(
        self, store: DeliveryStore, ident: str, token: str, ms: int, taken_at: float
    ) -> None:
        self.store = store
        self.ident = ident
        self.token = token
        self.ms = ms
        self.expires = taken_at + ms / 1000
        self.margin = min(ms / 1000 * CLAIM_MARGIN_SHARE, CLAIM_MARGIN_MAX)
        self.lost = False
        self._cut: asyncio.Timeout | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._start: asyncio.TimerHandle | None = None

    @property
    def deadline(self) -> float:
        """When (loop time) a send still running must be cut off."""
        return self.expires - self.margin

    def keep(self) -> None:
        """Renew the claim from a third of its period on, until `stop()`. Most deliveries are
        made long before: they cost a timer, not a task."""
        loop = asyncio.get_running_loop()
        self._start = loop.call_later(self.ms / 1000 / RENEWALS_PER_CLAIM, self._start_keeper)

    def _start_keeper(self) -> None:
        self._start = None
        self._keeper = asyncio.create_task(self._renew_until_stopped())

    async def stop(self) -> None:
        """Stop renewing (the claim is released or recorded by the caller)."""
        if self._start is not None:
            self._start.cancel()
            self._start = None
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None

    @contextlib.asynccontextmanager
    async def bounded(self) -> AsyncIterator[None]:
        """Run the block under the claim's deadline; TimeoutError when it is cut off."""
        async with asyncio.timeout_at(self.deadline) as cut:
            self._cut = cut
            try:
                yield
            finally:
                self._cut = None

    async def _renew_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.ms / 1000 / RENEWALS_PER_CLAIM
        while True:
            asked = loop.time()
            try:
                renewed = await self.store.renew(self.ident, self.token, self.ms)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                # The deadline stays where the last renewal put it: the send is cut off in
                # time if the store does not come back before then.
                log.warning(
                    "delivery %s: claim not renewed, store unreachable (%s)", self.ident, exc
                )
                await asyncio.sleep(period)
                continue
            if not renewed:
                self.lost = True
                log.error("delivery %s: claim lost while sending; the send is cut off", self.ident)
                if self._cut is not None:
                    self._cut.reschedule(loop.time())
                return
            self.expires = asked + self.ms / 1000
            if self._cut is not None:
                self._cut.reschedule(self.deadline)
            await asyncio.sleep(period)


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
        self._token_prefix = secrets.token_hex(6)
        self._takings = itertools.count()
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

    def _outcome(self, d: Delivery, status: str, tries: int = 0) -> None:
        if self.on_outcome is None:
            return
        first = 1 if d.attempts == 0 and tries > 0 else 0
        self.on_outcome(d.channel, status, tries - first)

    async def handle(self, entry_id: str, entry: dict[str, str]) -> bool:
        """Consumer-group handler for an outbox stream."""
        ident = entry.get("delivery", "")
        # A token of this taking's own: a worker whose claim lapsed cannot renew or release
        # the claim another worker has taken since (both would have the same entry id). This
        # process's random part and a count: unique without a read of the system's randomness
        # for every delivery.
        token = f"{entry_id}/{self._token_prefix}{next(self._takings):x}"
        taken_at = asyncio.get_running_loop().time()
        # Claim and read in one round trip: when the claim is ours the status the read shows
        # cannot change under us (another worker may have finished the delivery before, which
        # the status then shows).
        claimed, d, stored = await self.deliveries.claim(
            ident, token, self.settings.claim_ms, case_of(ident)
        )
        if d is None or d.status.done:
            if claimed:
                await self.deliveries.release(ident, token)
            return True
        if not claimed:
            return False  # another worker has it; if it died, the claim expires and we retry
        lease = ClaimLease(self.deliveries, ident, token, self.settings.claim_ms, taken_at)
        lease.keep()
        try:
            if self.hooks.after_claim is not None:
                await self.hooks.after_claim(ident)
            return await self._deliver(d, lease, entry_id, entry, stored)
        except BaseException:
            await lease.stop()
            await self.deliveries.release(ident, token)
            raise
        finally:
            await lease.stop()

    async def _deliver(
        self,
        d: Delivery,
        lease: ClaimLease,
        entry_id: str,
        entry: dict[str, str],
        stored: tuple[dict[str, str], str | None] | None,
    ) -> bool:
        token = lease.token
        try:
            if d.topic.kind in DRAFT_TOPICS or d.case.startswith(DRAFT_CASE_PREFIX):
                # About a notice draft, not yet a case (its notices, or a failure of one).
                case, version = await draft_as_case(self.redis, d.case)
            elif stored is not None and (d.case, d.version) == case_of(d.id):
                # Read with the claim, in its round trip.
                case, version = CaseStore.parse_with_version(d.case, *stored)
            else:
                case, version = await self.cases.with_version(d.case, d.version)
        except CaseNotFound:
            await self.deliveries.finish(
                d.id, {"status": DeliveryStatus.FAILED, "error": "case not found"}, token=token
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
                token=token,
            )
            self._outcome(d, DeliveryStatus.SUPERSEDED)
            return True
        if version is None:
            raise CaseNotFound(f"{case.id} v{d.version}")
        rendered, needs_ack = await self.renderer.render(d, case, version)

        async def sending() -> None:
            # "sending": from here on the message may reach its recipient, so after a crash it
            # may arrive twice (docs/reliability.md).
            await self.deliveries.update(
                d.id, status=DeliveryStatus.SENDING, sending_at=self.clock.now().isoformat()
            )

        try:
            # Cut off before the claim could lapse: past it another worker may send too. Each
            # channel marks "sending" just before the message can go (an e-mail once it has its
            # SMTP connection: the e-mail consumer holds several deliveries per connection), so
            # that "sending" after a crash names only what may have gone out.
            async with lease.bounded():
                if d.channel_kind is ChannelKind.EMAIL:
                    result = await self._send_email(d, case, rendered, sending)
                else:
                    result = await self._send_telegram(d, case, rendered, needs_ack, sending)
        except TimeoutError:
            # Whether the cut-off message reached anyone is unknown: as for a crash between
            # send and record (docs/reliability.md), it may arrive twice, never not at all.
            result = SendResult(False, False, "the send outlasted its claim and was cut off", {}, 1)
        now = self.clock.now().isoformat()
        attempts = d.attempts + result.attempts
        if result.ok:
            if self.hooks.after_send is not None:
                await self.hooks.after_send(d.id)
            # A recipient has been reached: the deadline watch starts the booking clock and
            # keeps count of same-day notification from this event.
            sent = d.event(EventType.DELIVERY_SENT, now) if d.is_arrival_notice else None

            async def record_sent() -> None:
                await self.deliveries.finish(
                    d.id,
                    {
                        "status": DeliveryStatus.SENT,
                        "sent_at": now,
                        "attempts": str(attempts),
                        **result.extra,
                    },
                    sent,
                    token=token,
                )

            # The message is out: losing this record would send it again, so ride out a
            # short store outage instead of giving up on the first lost connection.
            await self._until_stored(record_sent)
            self._outcome(d, DeliveryStatus.SENT, result.attempts)
            if self.hooks.after_record is not None:
                await self.hooks.after_record(d.id)
            return True
        if result.permanent:
            await self._fail(d, token, now, attempts, result.error)
            self._outcome(d, DeliveryStatus.FAILED, result.attempts)
            return True
        # Transient: retried once the claim has expired, within the bounds of attempts and age.
        relay_attempts = await self.deliveries.add_relay_attempts(d.id, result.relay_attempts)
        given_up = self._beyond_bounds(d, attempts - relay_attempts)
        if given_up is not None:
            reason = f"{given_up}; last error: {result.error}"
            await self._fail(
                d,
                token,
                now,
                attempts,
                reason,
                dead_letter=self.deliveries.dead_letter(
                    OUTBOX[d.channel_kind], entry_id, entry, reason
                ),
            )
            log.error("ALERT: delivery %s given up: %s", d.id, reason)
            self._outcome(d, GIVEN_UP, result.attempts)
            return True
        await self.deliveries.finish(
            d.id,
            {
                "status": DeliveryStatus.RETRYING,
                "attempts": str(attempts),
                "error": result.error,
                "retry_at": now,
            },
            token=token,
        )
        self._outcome(d, DeliveryStatus.RETRYING, result.attempts)
        return False

    def _beyond_bounds(self, d: Delivery, counted_attempts: int) -> str | None:
        """Why a delivery still failing transiently is given up now, or None to retry it."""
        if counted_attempts >= self.settings.max_attempts:
            return f"not sent after {counted_attempts} attempts"
        if d.queued_at is not None:
            age = self.clock.now() - d.queued_at
            if age >= self.settings.max_age:
                hours = self.settings.max_age.total_seconds() / 3600
                return f"not sent within {hours:g} h of being queued"
        return None

    async def _fail(
        self,
        d: Delivery,
        token: str,
        now: str,
        attempts: int,
        error: str,
        *,
        dead_letter: dict[str, str] | None = None,
    ) -> None:
        """Record the delivery failed; the reception unit is told on its other channels
        (unless this was itself such a report)."""
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
                "attempts": str(attempts),
                "error": error,
            },
            failed,
            token=token,
            dead_letter=dead_letter,
        )

    async def _send_email(
        self,
        d: Delivery,
        case: Case,
        rendered: m.Rendered,
        sending: Callable[[], Awaitable[None]],
    ) -> SendResult:
        if self.email is None:
            return SendResult(False, True, "e-post är inte konfigurerad", {}, 0)
        org = self.directory.organisation(d.org)
        if not org.email:
            return SendResult(False, True, "organisationen har ingen e-postadress", {}, 0)
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
        result = await self.email.send(mail, sending)
        return SendResult(
            result.ok,
            result.permanent,
            result.error or "",
            {"message_id": own},
            result.attempts,
            result.relay_attempts,
        )

    async def _send_telegram(
        self,
        d: Delivery,
        case: Case,
        rendered: m.Rendered,
        needs_ack: bool,
        sending: Callable[[], Awaitable[None]],
    ) -> SendResult:
        chat_id = d.chat_id
        if self.telegram is None or chat_id is None:
            return SendResult(False, True, "Telegram är inte påslaget", {}, 0)
        markup = await self.renderer.buttons(d, case, chat_id, needs_ack)
        await sending()
        result = await self.telegram.send(chat_id, rendered.telegram, markup)
        extra: dict[str, str] = {}
        if result.migrated_to is not None:
            await self.chats.move(chat_id, result.migrated_to)
            extra["migrated_to"] = str(result.migrated_to)
        if result.message_id is not None:
            extra["message_id"] = str(result.message_id)
        return SendResult(result.ok, result.permanent, result.error or "", extra, result.attempts)
