"""Making one delivery: claim it, render it, send it, record it.

The claim (SET NX with an expiry) is taken before anything is sent, and the status is checked
under it, so two workers never send the same delivery, and a delivery recorded as sent is never
sent again. The one window left: a worker that dies after the send and before the record; its
claim expires and the delivery is sent a second time (see docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import icalendar
from aiogram.types import InlineKeyboardMarkup
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.channels.email import Attachment, EmailSender, OutgoingMail
from bot.channels.telegram import TelegramSender
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.clock import Clock
from bot.domain.directory import Directory, Organisation
from bot.pipeline.buttons import ack_row, booking_row, escalate_row, keyboard
from bot.pipeline.fanout import EMAIL, NOTICE, chat_of
from bot.store import keys
from bot.usecases.access import ChatLinks, Signer
from bot.usecases.cases import Case, CaseNotFound, CaseStore, Version
from messages import models as m
from messages.render import (
    render_all_acknowledged,
    render_arrival,
    render_case_notice,
)

log = logging.getLogger(__name__)

DONE = ("sent", "failed", "superseded")
RECORD_PATIENCE = 120.0  # seconds a sent message's record is retried through a store outage


@dataclass(frozen=True)
class DeliverySettings:
    """What rendering and sending need from the settings."""

    public_url: str
    from_domain: str
    chat_details: m.ChatDetails
    booking_days: int
    claim_ms: int
    failpoint: str = ""  # test only: see Settings.failpoint


def contact(org: Organisation) -> m.Contact:
    """An organisation as a message shows it."""
    return m.Contact(name=org.name, email=org.email, phone=org.phone)


def facts_of(case: Case, version: Version, directory: Directory) -> m.ArrivalFacts:
    """The view of one version's facts for the renderers."""
    facts = version.facts
    return m.ArrivalFacts(
        reference=case.reference,
        municipality=directory.municipalities[case.municipality].name,
        arrival_date=date.fromisoformat(facts["arrival_date"]),
        children=tuple(m.Child(int(c["age"]), c.get("initials")) for c in facts["children"]),
        languages=tuple(facts["languages"]),
        interpreter_needed=bool(facts["interpreter_needed"]),
        unaccompanied=bool(facts["unaccompanied"]),
        details=str(facts.get("details", "")),
    )


def _value(field: str, raw: Any) -> Any:
    """Stored JSON values back to what the renderers format (dates, children)."""
    if field == "arrival_date" and isinstance(raw, str):
        return date.fromisoformat(raw)
    if field == "children" and isinstance(raw, list):
        return tuple(m.Child(int(c["age"]), c.get("initials")) for c in raw)
    if field == "languages" and isinstance(raw, list):
        return tuple(raw)
    return raw


def delivery_event(kind: str, d: dict[str, str], at: str, **extra: str) -> dict[str, str]:
    """An event about one delivery (sent, failed) for the event stream."""
    return {
        "type": kind,
        "case": d["case"],
        "version": d["version"],
        "at": at,
        "by": "ankomst",
        "via": "system",
        "delivery": d["id"],
        "org": d["org"],
        "channel": d["channel"],
        **extra,
    }


def reports_failure(d: dict[str, str]) -> bool:
    """Whether a failed delivery is reported to the reception unit: not when it was itself
    such a report, or two channels that both fail would tell each other forever."""
    return not d.get("topic", "").startswith("delivery_failed")


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
    ) -> None:
        self.redis = redis
        self.directory = directory
        self.chats = chats
        self.calendar = calendar
        self.signer = signer
        self.clock = clock
        self.settings = settings
        self.email = email
        self.telegram = telegram
        self.cases = CaseStore(redis)
        # Told each outcome (channel, status, send attempts beyond the delivery's first);
        # the metrics set it, so counting costs no reads of the store.
        self.on_outcome: Callable[[str, str, int], None] | None = None

    # -- rendering ------------------------------------------------------------------------

    async def render(
        self, d: dict[str, str], case: Case, version: Version
    ) -> tuple[m.Rendered, bool]:
        """The message for a delivery (of `version` of `case`), and whether it asks for an
        acknowledgement."""
        org = self.directory.organisation(d["org"])
        version_no = int(d["version"])
        params = json.loads(d.get("params") or "{}")
        topic = d["topic"].split("/", 1)[0]
        municipality = self.directory.municipalities[case.municipality].name
        arrival_date = date.fromisoformat(version.facts["arrival_date"])
        if topic == NOTICE:
            copy = bool(params.get("copy"))
            needs_ack = not copy and version.kind != "cancelled"
            ack_url = None
            if needs_ack and d["channel"] == EMAIL:
                token = self.signer.ack_token(case.id, version_no, org.id)
                ack_url = f"{self.settings.public_url}/a/{token}"
            deadline = None
            if org.kind == "health_centre":
                # Counted from when the health centre was first told (bot/pipeline/deadlines.py
                # keeps that moment); for its first message that moment is now.
                informed = await self.redis.hget(
                    keys.case_markers(case.id), keys.booking_informed_marker(org.id)
                )
                deadline = self.calendar.booking_deadline(
                    datetime.fromisoformat(informed) if informed else self.clock.now(),
                    self.settings.booking_days,
                )
            notice = m.ArrivalNotice(
                kind=version.kind,
                facts=facts_of(case, version, self.directory),
                version=version_no,
                recipient=contact(org),
                recipient_kind=org.kind,
                reception_unit=contact(self.directory.organisation(case.reception_unit)),
                needs_ack=needs_ack,
                ack_url=ack_url,
                booking_deadline=deadline,
                changes=tuple(
                    m.Change(c["field"], _value(c["field"], c["old"]), _value(c["field"], c["new"]))
                    for c in version.changes
                ),
                cancel_reason=version.reason or None,
            )
            return render_arrival(notice, self.settings.chat_details), needs_ack
        if topic == "all_acknowledged":
            acks = await self.cases.acks(case.id)
            done = tuple(
                (
                    self.directory.organisation(o).name,
                    datetime.fromisoformat(acks[f"{version_no}:{o}"]["at"]),
                )
                for o in case.recipients
                if f"{version_no}:{o}" in acks
            )
            return (
                render_all_acknowledged(
                    m.AllAcknowledged(case.reference, municipality, arrival_date, version_no, done)
                ),
                False,
            )
        facts: dict[str, object] = dict(params)
        if topic == "delivery_failed":
            failed_org = self.directory.organisations.get(str(params.get("organisation", "")))
            facts["organisation"] = failed_org.name if failed_org else params.get("organisation")
            facts["channel"] = "e-post" if params.get("channel") == EMAIL else "Telegram"
        if topic == "ack_reminder" and d["channel"] == EMAIL:
            # The reminder by e-mail carries the acknowledge link of the version it is about.
            token = self.signer.ack_token(case.id, version_no, org.id)
            facts["ack_url"] = f"{self.settings.public_url}/a/{token}"
        for name, value in list(facts.items()):
            if isinstance(value, str) and name.endswith("_at"):
                facts[name] = datetime.fromisoformat(value)
        status = m.CaseNotice(
            topic, case.reference, municipality, arrival_date, contact(org), facts
        )
        return render_case_notice(status), False

    # -- sending --------------------------------------------------------------------------

    def _thread_ids(self, d: dict[str, str]) -> tuple[str, str]:
        """(this message's Message-ID, the case thread's root id) for one recipient."""
        domain = self.settings.from_domain
        digest = hashlib.sha256(d["id"].encode()).hexdigest()[:16]
        root = f"<{d['case']}.{d['org']}@{domain}>"
        own = (
            root
            if d["version"] == "1" and d["topic"] == NOTICE
            else f"<{d['case']}.{digest}@{domain}>"
        )
        return own, root

    async def _failpoint(self, point: str, ident: str) -> None:
        """Test only: die here, the first time any process reaches this point."""
        if self.settings.failpoint != point:
            return
        if await self.redis.set(keys.failpoint(point), ident, nx=True):
            log.warning("failpoint %s on %s: killing this process", point, ident)
            os.kill(os.getpid(), signal.SIGKILL)

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

    async def _record(self, ident: str, claim: str, **fields: str) -> None:
        """Record an outcome and give up the claim, in one round trip."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.delivery(ident), mapping=fields)
            pipe.delete(claim)
            await pipe.execute()

    def _outcome(self, d: dict[str, str], status: str, tries: int = 0) -> None:
        if self.on_outcome is None:
            return
        first = 1 if int(d.get("attempts", "0")) == 0 and tries > 0 else 0
        self.on_outcome(d["channel"], status, tries - first)

    async def handle(self, entry_id: str, entry: dict[str, str]) -> bool:
        """Consumer-group handler for an outbox stream."""
        ident = entry.get("delivery", "")
        claim = keys.delivery_claim(ident)
        # Claim and read in one round trip: the read runs after the SET, so when the claim is
        # ours the status it shows cannot change under us (another worker may have finished
        # the delivery before, which the status then shows).
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(claim, entry_id, nx=True, px=self.settings.claim_ms)
            pipe.hgetall(keys.delivery(ident))
            claimed, d = await pipe.execute()
        if not d or d.get("status") in DONE:
            if claimed:
                await self.redis.delete(claim)
            return True
        if not claimed:
            return False  # another worker has it; if it died, the claim expires and we retry
        await self._failpoint("after_claim", ident)
        try:
            return await self._deliver(ident, claim, d)
        except BaseException:
            await self.redis.delete(claim)
            raise

    async def _deliver(self, ident: str, claim: str, d: dict[str, str]) -> bool:
        try:
            case, version = await self.cases.with_version(d["case"], int(d["version"]))
        except CaseNotFound:
            await self._record(ident, claim, status="failed", error="case not found")
            self._outcome(d, "failed")
            return True
        if (
            d["topic"] == NOTICE
            and int(d["version"]) < case.version
            and not json.loads(d.get("params") or "{}").get("copy")
        ):
            # A newer version is on its way with everything in it: don't send the old one.
            await self._record(
                ident, claim, status="superseded", superseded_at=self.clock.now().isoformat()
            )
            self._outcome(d, "superseded")
            return True
        if version is None:
            raise CaseNotFound(f"{case.id} v{d['version']}")
        rendered, needs_ack = await self.render(d, case, version)
        attempts = int(d.get("attempts", "0"))
        await self.redis.hset(
            keys.delivery(ident),
            mapping={"status": "sending", "sending_at": self.clock.now().isoformat()},
        )
        if d["channel"] == EMAIL:
            ok, permanent, error, extra, tries = await self._send_email(d, case, rendered)
        else:
            ok, permanent, error, extra, tries = await self._send_telegram(
                d, case, rendered, needs_ack
            )
        now = self.clock.now().isoformat()
        attempts += tries
        if ok:
            await self._failpoint("after_send", ident)

            async def record_sent() -> None:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hset(
                        keys.delivery(ident),
                        mapping={
                            "status": "sent",
                            "sent_at": now,
                            "attempts": str(attempts),
                            **extra,
                        },
                    )
                    if d["topic"] == NOTICE and not json.loads(d.get("params") or "{}").get("copy"):
                        # A recipient has been reached: the deadline watch starts the booking clock
                        # and keeps count of same-day notification from this event.
                        pipe.xadd(keys.EVENTS, delivery_event("delivery.sent", d, now))
                    pipe.delete(claim)
                    await pipe.execute()

            # The message is out: losing this record would send it again, so ride out a
            # short store outage instead of giving up on the first lost connection.
            await self._until_stored(record_sent)
            self._outcome(d, "sent", tries)
            await self._failpoint("after_record", ident)
            return True
        if permanent:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    keys.delivery(ident),
                    mapping={
                        "status": "failed",
                        "failed_at": now,
                        "attempts": str(attempts),
                        "error": error,
                    },
                )
                if reports_failure(d):
                    pipe.xadd(
                        keys.EVENTS, delivery_event("delivery.failed", d, now, error=error[:300])
                    )
                pipe.delete(claim)
                await pipe.execute()
            self._outcome(d, "failed", tries)
            return True
        # Transient: leave the entry pending; it is taken again after the claim has expired.
        await self._record(
            ident, claim, status="retrying", attempts=str(attempts), error=error, retry_at=now
        )
        self._outcome(d, "retrying", tries)
        return False

    def _booking_ics(self, d: dict[str, str], reference: str) -> Attachment:
        """The booked health conversation as a calendar event (one UID per case, so a new
        booking updates the event instead of adding one)."""
        params = json.loads(d.get("params") or "{}")
        start = datetime.fromisoformat(params["booked_at"])
        calendar = icalendar.Calendar()
        calendar.add("prodid", "-//Ankomst//hälsosamtal//SV")
        calendar.add("version", "2.0")
        calendar.add("method", "PUBLISH")
        event = icalendar.Event()
        event.add("uid", f"health-booking-{d['case']}@{self.settings.from_domain}")
        event.add("sequence", int(d["topic"].split("/", 1)[1] or 1))
        event.add("dtstamp", self.clock.now())
        event.add("dtstart", start)
        event.add("dtend", start + timedelta(hours=1))
        event.add("summary", f"Hälsosamtal, {reference}")
        event.add("location", str(params.get("organisation", "")))
        interpreter = "Tolk bokad." if params.get("interpreter_booked") else "Tolk inte bokad."
        event.add("description", interpreter)
        calendar.add_component(event)
        return Attachment("halsosamtal.ics", "text/calendar; method=PUBLISH", calendar.to_ical())

    async def _send_email(
        self, d: dict[str, str], case: Case, rendered: m.Rendered
    ) -> tuple[bool, bool, str, dict[str, str], int]:
        if self.email is None:
            return False, True, "e-post är inte konfigurerad", {}, 0
        org = self.directory.organisation(d["org"])
        if not org.email:
            return False, True, "organisationen har ingen e-postadress", {}, 0
        own, root = self._thread_ids(d)
        attachments: tuple[Attachment, ...] = ()
        if d["topic"].startswith("health_booking/"):
            attachments = (self._booking_ics(d, case.reference),)
        mail = OutgoingMail(
            to=org.email,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=own,
            in_reply_to=None if own == root else root,
            references=() if own == root else (root,),
            attachments=attachments,
        )
        result = await self.email.send(mail)
        return result.ok, result.permanent, result.error or "", {"message_id": own}, result.attempts

    async def _buttons(
        self, d: dict[str, str], case: Case, chat_id: int, needs_ack: bool
    ) -> InlineKeyboardMarkup | None:
        """The buttons under a chat message: Mottaget; the health centre's Boka; Eskalera for
        a supervisor's chat on a disagreement."""
        rows = []
        if needs_ack:
            rows.append(ack_row(self.signer, case.id, int(d["version"])))
        topic, _, suffix = d["topic"].partition("/")
        org = self.directory.organisation(d["org"])
        if (
            topic == NOTICE
            and org.kind == "health_centre"
            and case.status != "cancelled"
            and not json.loads(d.get("params") or "{}").get("copy")
        ):
            rows.append(booking_row(self.signer, case.id))
        if topic == "disagreement_raised" and suffix:
            link = await self.chats.link_of(chat_id)
            if link is not None and link.role == "supervisor":
                rows.append(escalate_row(self.signer, suffix))
        return keyboard(rows)

    async def _send_telegram(
        self, d: dict[str, str], case: Case, rendered: m.Rendered, needs_ack: bool
    ) -> tuple[bool, bool, str, dict[str, str], int]:
        chat_id = chat_of(d["channel"])
        if self.telegram is None or chat_id is None:
            return False, True, "Telegram är inte påslaget", {}, 0
        markup = await self._buttons(d, case, chat_id, needs_ack)
        result = await self.telegram.send(chat_id, rendered.telegram, markup)
        extra: dict[str, str] = {}
        if result.migrated_to is not None:
            await self.chats.move(chat_id, result.migrated_to)
            extra["migrated_to"] = str(result.migrated_to)
        if result.message_id is not None:
            extra["message_id"] = str(result.message_id)
        return result.ok, result.permanent, result.error or "", extra, result.attempts
