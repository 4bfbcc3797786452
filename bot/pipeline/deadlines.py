"""The routine's deadlines (CONTRACT.md "Time rules"), kept as scheduler timers.

Events become timers (consumer group "deadlines" on the event stream):

- `case.registered` / `case.changed` (version v): for each recipient an acknowledgement
  reminder (2 working hours after v was registered) and an escalation (10:00 the next working
  day), and the same-day check of v. Timers of older versions are cancelled: a date change
  restarts the clock.
- `case.acknowledged`: that recipient's pending timers of that version are cancelled.
- `case.cancelled`: every pending timer of the case is cancelled.
- `case.health_booked`: the health centre's booking timers are cancelled (`booking_reported`).
- `delivery.sent` (an arrival message reached a recipient): the health centre's first one starts
  its booking deadline; the first time every recipient has been reached, the case records when,
  and whether that was within the same working day.

A timer that fires re-checks the case and, if the deadline still stands, puts one `notice` event
on the stream (the fan-out makes a delivery per channel) and a line in the case's history, both
at most once per timer (a marker in the case's markers hash is set in the same script).

Escalations go out as a digest: when an escalation (acknowledgement or booking) is scheduled,
the case is enlisted in the digest of each organisation to be told (the supervisor, the
reception unit) for that instant (`keys.escalation_digest`), and one digest timer per
(organisation, instant) is made. It fires once and sends that organisation ONE message listing
every enlisted case still overdue at that moment. The per-case escalation timer still writes
the case's history line, but sends nothing to an organisation whose digest holds the case (a
case enlisted before digests existed is still told on its own).

When each deadline falls is not decided here: the time rules are pure functions in
`bot.domain.deadline_rules` (which also states the one working-day counting rule), and where a
recipient stands is `bot.domain.progress`. This module turns events into timers at those
instants, and fired timers into notices.

The clock of an acknowledgement deadline starts when the version was registered (the event's
time), not when a message was sent: a recipient whose messages cannot be delivered must be
chased all the same. The booking deadline starts when the health centre was first told (its
first sent message), as the agreement says.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from bot.domain import deadline_rules as rules
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.case import Case, CaseNotFound, history_entry, notice_event
from bot.domain.clock import Clock
from bot.domain.deadline_rules import DeadlineRules
from bot.domain.directory import Directory
from bot.domain.events import Topic
from bot.domain.progress import Reach, arrival_messages, everyone_reached_at, progress
from bot.pipeline.fanout import FanOut
from bot.store import Redis, keys
from bot.store.cases import CaseStore
from bot.store.scripts import register
from bot.store.timers import Scheduler, Timer, timers_of_case
from bot.usecases.access import SYSTEM
from bot.usecases.disagreements import Disagreements
from bot.usecases.views import deliveries
from messages import deadlines as words

log = logging.getLogger(__name__)

ACK_REMINDER: Final = "ack_reminder"
ACK_ESCALATION: Final = "ack_escalation"
BOOKING_REMINDER: Final = "booking_reminder"
BOOKING_ESCALATION: Final = "booking_escalation"
SAME_DAY_CHECK: Final = "same_day_check"
SAME_DAY_CLOSE: Final = "same_day_close"  # records "not the same working day" if still unmet
DISAGREEMENT_ESCALATION: Final = "disagreement_escalation"  # §7: unresolved too long goes up
# One message per (organisation, instant) listing every case escalated to it then.
ESCALATION_DIGEST: Final = "escalation_digest"
# The `case` a digest timer is filed under: it belongs to no one case, so no case's
# cancellation stops it and no case view lists it; fired ids leave this index.
DIGEST_TIMERS: Final = "digests"
ACK_KINDS: Final = (ACK_REMINDER, ACK_ESCALATION)
BOOKING_KINDS: Final = (BOOKING_REMINDER, BOOKING_ESCALATION)


def timer_id(kind: str, case_id: str, *parts: object) -> str:
    """The id of a deadline's timer: derived from what it is for, so it is made only once."""
    return ":".join([kind, case_id, *(str(p) for p in parts)])


# The time rules' numbers live with the rules (bot.domain.deadline_rules); the old name stays for
# the services factory.
DeadlineSettings = DeadlineRules


@dataclass(frozen=True)
class Notice:
    """A status message to queue: one topic, to some organisations."""

    topic: str
    orgs: tuple[str, ...]
    params: Mapping[str, object]


def _times(values: list[str | None]) -> list[datetime | None]:
    """Stored ISO times (or None where unset) as datetimes."""
    return [datetime.fromisoformat(v) if v else None for v in values]


class Deadlines:
    """Watches the time rules: makes, cancels and fires the deadline timers of every case."""

    def __init__(
        self,
        redis: Redis,
        directory: Directory,
        calendar: WorkingDayCalendar,
        clock: Clock,
        scheduler: Scheduler,
        fanout: FanOut,
        settings: DeadlineSettings,
        disagreements: Disagreements | None = None,
    ) -> None:
        self.redis = redis
        self.directory = directory
        self.calendar = calendar
        self.clock = clock
        self.scheduler = scheduler
        self.fanout = fanout
        self.settings = settings
        self.disagreements = disagreements
        self.cases = CaseStore(redis)
        self._emit = register(redis, "deadline_emit")
        self._emit_digest = register(redis, "digest_emit")
        scheduler.on(ACK_REMINDER, self._fire_ack)
        scheduler.on(ACK_ESCALATION, self._fire_ack)
        scheduler.on(BOOKING_REMINDER, self._fire_booking)
        scheduler.on(BOOKING_ESCALATION, self._fire_booking)
        scheduler.on(SAME_DAY_CHECK, self._fire_same_day_check)
        scheduler.on(SAME_DAY_CLOSE, self._fire_same_day_close)
        scheduler.on(DISAGREEMENT_ESCALATION, self._fire_disagreement)
        scheduler.on(ESCALATION_DIGEST, self._fire_digest)

    # -- names -------------------------------------------------------------------------------

    def _name(self, org_id: str) -> str:
        org = self.directory.organisations.get(org_id)
        return org.name if org else org_id

    def _supervisor(self, org_id: str) -> str | None:
        org = self.directory.organisations.get(org_id)
        if org is None or org.supervisor is None:
            return None
        return org.supervisor if org.supervisor in self.directory.organisations else None

    # -- when -------------------------------------------------------------------------------

    def same_day_due(self, registered_at: datetime) -> rules.SameDayDue:
        """(the day the arrival must reach everyone, when that is checked): see
        `deadline_rules.same_day_due`."""
        return rules.same_day_due(self.calendar, self.settings, registered_at)

    # -- events -----------------------------------------------------------------------------

    async def handle(self, entry_id: str, event: dict[str, str]) -> bool:
        """Consumer-group handler for the event stream."""
        kind = event.get("type", "")
        case_id = event.get("case", "")
        version = int(event.get("version", "0") or 0)
        at = datetime.fromisoformat(event["at"]) if event.get("at") else self.clock.now()
        try:
            if kind in ("case.registered", "case.changed"):
                await self.version_told(case_id, version, at)
            elif kind == "case.acknowledged":
                await self.acknowledged(case_id, version, event.get("org", ""))
            elif kind == "case.cancelled":
                await self.cancel_case(case_id)
            elif kind == "delivery.sent":
                await self.delivered(case_id, version, event.get("org", ""), at)
            elif kind == "disagreement.raised":
                await self.disagreement_raised(case_id, event.get("disagreement", ""), at)
            elif kind in ("disagreement.escalated", "disagreement.resolved"):
                await self.scheduler.cancel(
                    timer_id(DISAGREEMENT_ESCALATION, case_id, event.get("disagreement", ""))
                )
            elif kind == "case.health_booked":
                # The health centre reported its booking (POST …/health-booking).
                await self.booking_reported(case_id, event.get("by") or None)
        except CaseNotFound:
            log.warning("deadlines: event %s names unknown case %s", entry_id, case_id)
        return True

    async def disagreement_raised(self, case_id: str, disagreement_id: str, at: datetime) -> None:
        """An open disagreement goes up by itself when not resolved within N working days."""
        await self.scheduler.schedule(
            timer_id(DISAGREEMENT_ESCALATION, case_id, disagreement_id),
            DISAGREEMENT_ESCALATION,
            case_id,
            rules.disagreement_escalation_due(self.calendar, self.settings, at),
            {
                "disagreement": disagreement_id,
                "then": words.disagreement_then(self.settings.disagreement_days),
            },
        )

    async def _fire_disagreement(self, timer: Timer) -> None:
        if self.disagreements is None:
            return
        ident = str(timer.payload.get("disagreement", ""))
        found = await self.disagreements.get(ident)
        if found.status != "open":
            return
        await self.disagreements.escalate(
            ident, SYSTEM, automatic=True, days=self.settings.disagreement_days
        )

    async def version_told(self, case_id: str, version: int, at: datetime) -> None:
        """A version was registered at `at`: start its deadlines, stop the older ones."""
        case = await self.cases.get(case_id)
        if case.status == "cancelled" or case.version != version:
            return  # a newer version (or the cancellation) has its own event
        await self._cancel_where(
            case_id,
            lambda t: (
                t.kind in (*ACK_KINDS, SAME_DAY_CHECK)
                and int(t.payload.get("version", 0)) < version
            ),
        )
        acks = await self.cases.acks(case_id)
        reminder_due, escalation_due = rules.ack_due(self.calendar, self.settings, at)
        for org_id in case.recipients:
            if f"{version}:{org_id}" in acks:
                continue
            name = self._name(org_id)
            supervisor = self._supervisor(org_id)
            base = {"version": version, "organisation": org_id, "told_at": at.isoformat()}
            if reminder_due is not None:
                await self.scheduler.schedule(
                    timer_id(ACK_REMINDER, case_id, version, org_id),
                    ACK_REMINDER,
                    case_id,
                    reminder_due,
                    {**base, "then": words.then_ack_reminder(name)},
                )
            await self.scheduler.schedule(
                timer_id(ACK_ESCALATION, case_id, version, org_id),
                ACK_ESCALATION,
                case_id,
                escalation_due,
                {
                    **base,
                    "then": words.then_ack_escalation(
                        name, self._name(supervisor) if supervisor else None
                    ),
                },
            )
            await self._enlist(
                case,
                ACK_ESCALATION,
                org_id,
                escalation_due,
                self._escalated_to(case, org_id),
                {"version": version, "told_at": at.isoformat()},
            )
        day, check_due = self.same_day_due(at)
        await self.scheduler.schedule(
            timer_id(SAME_DAY_CHECK, case_id, version),
            SAME_DAY_CHECK,
            case_id,
            check_due,
            {"version": version, "day": day.isoformat(), "then": words.then_same_day()},
        )
        if version == 1:
            await self.redis.hsetnx(keys.case(case_id), "same_day_by", day.isoformat())
            # At the end of that day, a case not yet through to everyone is recorded as late.
            await self.scheduler.schedule(
                timer_id(SAME_DAY_CLOSE, case_id),
                SAME_DAY_CLOSE,
                case_id,
                rules.same_day_close(self.calendar, day),
                {"version": version, "day": day.isoformat()},
            )
        no_channel = [o for o in case.recipients if not await self.fanout.channels(o)]
        if no_channel:
            # Nothing can be sent to them at all: the reception unit should phone at once.
            await self._notify(
                case,
                version,
                f"same_day_alert/no_channel:{version}",
                "same_day_alert",
                [
                    Notice(
                        "same_day_alert/no_channel",
                        (case.reception_unit,),
                        {
                            "organisations": [self._name(o) for o in no_channel],
                            "reason": "Ingen e-postadress och ingen kopplad chatt finns för "
                            + ", ".join(self._name(o) for o in no_channel)
                            + ".",
                            "basis": words.same_day_basis(),
                        },
                    )
                ],
                organisation=None,
            )
        # Events are handled concurrently: if a newer version or an acknowledgement came in
        # while these timers were being made, undo what no longer stands.
        latest = await self.cases.get(case_id)
        if latest.status == "cancelled":
            await self.cancel_case(case_id)
        elif latest.version != version:
            await self._cancel_where(
                case_id,
                lambda t: (
                    t.kind in (*ACK_KINDS, SAME_DAY_CHECK)
                    and int(t.payload.get("version", 0)) == version
                ),
            )
        else:
            acks = await self.cases.acks(case_id)
            for org_id in case.recipients:
                if f"{version}:{org_id}" in acks:
                    await self.acknowledged(case_id, version, org_id)

    async def acknowledged(self, case_id: str, version: int, org_id: str) -> None:
        """`org_id` acknowledged `version`: its pending reminder and escalation are off."""
        await self.scheduler.cancel_all(
            timer_id(kind, case_id, version, org_id) for kind in ACK_KINDS
        )

    async def cancel_case(self, case_id: str) -> None:
        """The arrival is cancelled: nothing more is chased (a digest leaves the case out)."""
        await self._cancel_where(case_id, lambda t: True)

    async def booking_reported(self, case_id: str, org_id: str | None = None) -> int:
        """A health centre reported its booking: stop its booking reminder and escalation.

        The hook the health-booking call (POST …/health-booking) uses. `org_id` None means
        every health centre on the case. Returns how many pending timers were cancelled.
        """
        case = await self.cases.get(case_id)
        centres = self._health_centres(case)
        if org_id is not None and org_id in centres:
            centres = [org_id]
        now = self.clock.now().isoformat()
        for centre in centres:
            await self.redis.hsetnx(
                keys.case_markers(case_id), keys.booking_reported_marker(centre), now
            )
        return await self.scheduler.cancel_all(
            timer_id(kind, case_id, centre) for centre in centres for kind in BOOKING_KINDS
        )

    async def delivered(self, case_id: str, version: int, org_id: str, at: datetime) -> None:
        """An arrival message reached `org_id` at `at`."""
        case = await self.cases.get(case_id)
        if case.status == "cancelled" or org_id not in case.recipients:
            return
        # Who has been reached, first time per organisation and per version: one small hash,
        # so each sent message costs two writes, not a scan of every delivery. What the rest
        # needs to know is read in the same round trip, after the writes.
        reached = keys.case_reached(case.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(reached, org_id, at.isoformat())
            pipe.hsetnx(reached, f"{version}:{org_id}", at.isoformat())
            pipe.hmget(keys.case(case.id), ["notified_at", "same_day_by"])
            pipe.hmget(reached, list(case.recipients))
            pipe.hmget(reached, [f"{version}:{o}" for o in case.recipients])
            _, _, (notified, by), firsts, of_version = await pipe.execute()
        org = self.directory.organisations.get(org_id)
        if org is not None and org.kind == "health_centre":
            await self._start_booking(case, org_id, at)
        await self._record_notified(case, notified, by, _times(firsts), closing=False)
        if version == case.version and everyone_reached_at(_times(of_version)) is not None:
            # Everyone has this version: the same-day check has nothing left to watch.
            await self.scheduler.cancel(timer_id(SAME_DAY_CHECK, case.id, version))

    async def _reached(self, case: Case, version: int | None = None) -> list[datetime | None]:
        """When each recipient was first sent an arrival message (of `version`, if given)."""
        fields = [o if version is None else f"{version}:{o}" for o in case.recipients]
        return _times(await self.redis.hmget(keys.case_reached(case.id), fields))

    async def _start_booking(self, case: Case, org_id: str, at: datetime) -> None:
        markers = keys.case_markers(case.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(markers, keys.booking_informed_marker(org_id), at.isoformat())
            pipe.hmget(
                markers,
                [keys.booking_informed_marker(org_id), keys.booking_reported_marker(org_id)],
            )
            _, (informed_text, reported) = await pipe.execute()
        if reported:
            return
        informed = datetime.fromisoformat(informed_text)
        reminder_due, escalation_due, last_day = rules.booking_due(
            self.calendar, self.settings, informed
        )
        name = self._name(org_id)
        supervisor = self._supervisor(org_id)
        base = {
            "organisation": org_id,
            "informed_at": informed.isoformat(),
            "deadline": last_day.isoformat(),
        }
        await self.scheduler.schedule(
            timer_id(BOOKING_REMINDER, case.id, org_id),
            BOOKING_REMINDER,
            case.id,
            reminder_due,
            {**base, "then": words.then_booking_reminder(name, last_day)},
        )
        await self.scheduler.schedule(
            timer_id(BOOKING_ESCALATION, case.id, org_id),
            BOOKING_ESCALATION,
            case.id,
            escalation_due,
            {
                **base,
                "then": words.then_booking_escalation(
                    name, self._name(supervisor) if supervisor else None
                ),
            },
        )
        await self._enlist(
            case,
            BOOKING_ESCALATION,
            org_id,
            escalation_due,
            self._escalated_to(case, org_id),
            {"version": case.version, "deadline": last_day.isoformat()},
        )

    async def record_notified(self, case: Case, *, closing: bool = False) -> bool:
        """Record, once, when every recipient had been reached and whether that was within
        the case's same working day. True if it is recorded (now or before)."""
        notified, by = await self.redis.hmget(keys.case(case.id), ["notified_at", "same_day_by"])
        if notified:
            return True
        return await self._record_notified(
            case, notified, by, await self._reached(case), closing=closing
        )

    async def _record_notified(
        self,
        case: Case,
        notified: str | None,
        by: str | None,
        firsts: list[datetime | None],
        *,
        closing: bool,
    ) -> bool:
        # record_notified with the case's notified_at / same_day_by and the recipients' first
        # reach already read (the delivered path reads them together with its writes).
        if notified:
            return True
        key = keys.case(case.id)
        at = everyone_reached_at(firsts)
        if at is None:
            return False
        day = date.fromisoformat(by) if by else self.same_day_due(case.created_at).day
        same = rules.reached_same_day(self.calendar, at, day)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "notified_at", at.isoformat())
            pipe.hsetnx(key, "notified_same_day", "true" if same else "false")
            await pipe.execute()
        if not closing:
            await self.scheduler.cancel(timer_id(SAME_DAY_CLOSE, case.id))
        return True

    # -- firing -----------------------------------------------------------------------------

    async def _fire_ack(self, timer: Timer) -> None:
        version = int(timer.payload["version"])
        org_id = str(timer.payload["organisation"])
        try:
            case = await self.cases.get(timer.case)
        except CaseNotFound:
            return
        if case.status == "cancelled" or case.version != version:
            return  # superseded by a newer version (which has its own timers) or cancelled
        if f"{version}:{org_id}" in await self.cases.acks(case.id):
            return
        told_at = datetime.fromisoformat(str(timer.payload["told_at"]))
        sent_at, waited = await self._ack_waiting(case, version, org_id, told_at)
        params = {
            "organisation": self._name(org_id),
            "sent_at": sent_at.isoformat(),
            "waited": waited,
            "basis": words.ack_basis(
                self.settings.ack_reminder_hours, self.settings.ack_escalation_at
            ),
        }
        told: list[str] | None = None
        if timer.kind == ACK_REMINDER:
            notices = [Notice(f"ack_reminder/{org_id}", (org_id,), params)]
        else:
            notices = []
            supervisor = self._supervisor(org_id)
            if supervisor is None:
                log.warning("case %s: %s has no supervisor to escalate to", case.id, org_id)
            # Each organisation is told in its digest for this instant; on its own only if
            # the case was not enlisted there (scheduled before digests existed).
            in_digest = await self._in_digests(timer, org_id, version)
            if supervisor is not None and supervisor not in in_digest:
                notices.append(Notice(f"ack_escalation/{org_id}", (supervisor,), params))
            if case.reception_unit not in in_digest:
                notices.append(
                    Notice(f"ack_overdue_reception/{org_id}", (case.reception_unit,), params)
                )
            told = self._escalated_to(case, org_id)
        await self._notify(
            case, version, timer.id, timer.kind, notices, organisation=org_id, told=told
        )

    async def _ack_waiting(
        self, case: Case, version: int, org_id: str, told_at: datetime
    ) -> tuple[datetime, str]:
        """Since when `org_id` has had the arrival message (its first sent message, else the
        telling), and how long that is in working time, in words."""
        reached = progress(
            version=version,
            cancelled=False,
            messages=arrival_messages(await deliveries(self.redis, case.id), org_id),
            acknowledged_at=None,
        )
        sent_at = reached.first_sent_at or told_at
        waited = words.working_time(self.calendar.working_time_between(sent_at, self.clock.now()))
        return sent_at, waited

    async def _fire_booking(self, timer: Timer) -> None:
        org_id = str(timer.payload["organisation"])
        try:
            case = await self.cases.get(timer.case)
        except CaseNotFound:
            return
        if case.status == "cancelled":
            return
        if await self.redis.hexists(
            keys.case_markers(case.id), keys.booking_reported_marker(org_id)
        ):
            return
        if await self.redis.hexists(keys.case(case.id), "booking"):
            return  # a booking is on the case (the health-booking call records it there)
        informed = datetime.fromisoformat(str(timer.payload["informed_at"]))
        days = (
            self.settings.booking_reminder_days
            if timer.kind == BOOKING_REMINDER
            else self.settings.booking_days
        )
        params = {
            "organisation": self._name(org_id),
            "informed_at": informed.isoformat(),
            "deadline": str(timer.payload["deadline"]),
            "waited": words.count(days, "arbetsdag", "arbetsdagar"),
            "working_day": days,  # the reminder comes as this working day begins
            "basis": words.booking_basis(self.settings.booking_days),
        }
        told: list[str] | None = None
        if timer.kind == BOOKING_REMINDER:
            notices = [Notice(f"booking_reminder/{org_id}", (org_id,), params)]
        else:
            told = self._escalated_to(case, org_id)
            in_digest = await self._in_digests(timer, org_id, None)
            alone = tuple(o for o in told if o not in in_digest)
            notices = [Notice(f"booking_escalation/{org_id}", alone, params)] if alone else []
        await self._notify(
            case, case.version, timer.id, timer.kind, notices, organisation=org_id, told=told
        )

    async def _fire_same_day_check(self, timer: Timer) -> None:
        version = int(timer.payload["version"])
        try:
            case = await self.cases.get(timer.case)
        except CaseNotFound:
            return
        if case.status == "cancelled" or case.version != version:
            return
        await self.record_notified(case)
        rows = await deliveries(self.redis, case.id)
        missing: list[tuple[str, str]] = []
        for org_id in case.recipients:
            # Only how far the arrival message got matters here, not the acknowledgement.
            reach = progress(
                version=version,
                cancelled=False,
                messages=arrival_messages(rows, org_id),
                acknowledged_at=None,
            ).reach
            if reach == Reach.SENT:
                continue
            if reach == Reach.NONE and not await self.fanout.channels(org_id):
                why = "ingen e-postadress och ingen kopplad chatt"
            elif reach == Reach.FAILED:
                why = "leveransen misslyckades"
            else:
                why = "meddelandet har ännu inte kunnat skickas"
            missing.append((self._name(org_id), why))
        if not missing:
            return
        params = {
            "organisations": [name for name, _ in missing],
            "reason": "; ".join(f"{name}: {why}" for name, why in missing) + ".",
            "basis": words.same_day_basis(),
        }
        notices = [Notice("same_day_alert", (case.reception_unit,), params)]
        await self._notify(case, version, timer.id, "same_day_alert", notices, organisation=None)

    async def _fire_same_day_close(self, timer: Timer) -> None:
        try:
            case = await self.cases.get(timer.case)
        except CaseNotFound:
            return
        if case.status == "cancelled" or await self.record_notified(case, closing=True):
            return
        await self.redis.hsetnx(keys.case(case.id), "notified_same_day", "false")

    # -- helpers ----------------------------------------------------------------------------

    def _health_centres(self, case: Case) -> list[str]:
        return [
            o
            for o in case.recipients
            if (org := self.directory.organisations.get(o)) is not None
            and org.kind == "health_centre"
        ]

    async def _cancel_where(self, case_id: str, which: Callable[[Timer], bool]) -> int:
        timers = await timers_of_case(self.redis, case_id)
        return await self.scheduler.cancel_all(t.id for t in timers if t.pending and which(t))

    async def _notify(
        self,
        case: Case,
        version: int,
        marker: str,
        what: str,
        notices: list[Notice],
        *,
        organisation: str | None,
        told: list[str] | None = None,
    ) -> bool:
        """Queue `notices` and write the history line, once per `marker`; the line names
        `told` (who is told, in a digest or here), else the notices' organisations."""
        now = self.clock.now()
        events = [
            [
                x
                for pair in notice_event(
                    case.id, version, SYSTEM, now, n.topic, list(n.orgs), dict(n.params)
                ).items()
                for x in pair
            ]
            for n in notices
        ]
        named = sorted(set(told) if told is not None else {o for n in notices for o in n.orgs})
        entry = history_entry(what, SYSTEM, now, version, organisation=organisation, told=named)
        done = await self._emit(
            keys=[keys.case_markers(case.id), keys.case_history(case.id), keys.EVENTS],
            args=[f"notice:{marker}", now.isoformat(), entry, json.dumps(events)],
        )
        return bool(done)

    # -- escalation digests ---------------------------------------------------------------

    def _escalated_to(self, case: Case, org_id: str) -> list[str]:
        """Who is told when `org_id` is escalated on `case`: its supervisor, the reception unit."""
        supervisor = self._supervisor(org_id)
        return list(dict.fromkeys([*([supervisor] if supervisor else []), case.reception_unit]))

    @staticmethod
    def _member(kind: str, case_id: str, org_id: str, version: int | None) -> str:
        # Booking escalations are not per version: one per health centre and case.
        return f"{kind}|{case_id}|{org_id}|{'' if version is None else version}"

    async def _enlist(
        self,
        case: Case,
        kind: str,
        org_id: str,
        due: datetime,
        targets: list[str],
        facts: Mapping[str, object],
    ) -> None:
        """Put `org_id`'s escalation on `case` in each target's digest for `due`, and make
        that digest's timer (once: its id is the organisation and the instant)."""
        stamp = int(due.timestamp())
        version = int(str(facts["version"])) if kind == ACK_ESCALATION else None
        member = self._member(kind, case.id, org_id, version)
        entry = json.dumps({"kind": kind, "case": case.id, "organisation": org_id, **facts})
        for target in targets:
            digest = keys.escalation_digest(target, stamp)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(digest, member, entry)
                ttl = stamp + keys.DIGEST_TTL - int(self.clock.now().timestamp())
                pipe.expire(digest, max(ttl, keys.DIGEST_TTL))
                await pipe.execute()
            await self.scheduler.schedule(
                timer_id(ESCALATION_DIGEST, target, stamp),
                ESCALATION_DIGEST,
                DIGEST_TIMERS,
                due,
                {"organisation": target, "stamp": stamp},
            )

    async def _in_digests(self, timer: Timer, org_id: str, version: int | None) -> set[str]:
        """The organisations whose digest for this escalation's instant lists it."""
        case = await self.cases.get(timer.case)
        stamp = int(timer.due_at.timestamp())
        member = self._member(timer.kind, case.id, org_id, version)
        found = set()
        for target in self._escalated_to(case, org_id):
            if await self.redis.hexists(keys.escalation_digest(target, stamp), member):
                found.add(target)
        return found

    async def _still_overdue(self, entry: Mapping[str, str]) -> tuple[Case, dict[str, str]] | None:
        """The case and what is overdue on it, if the enlisted escalation still stands."""
        org_id = str(entry["organisation"])
        try:
            case = await self.cases.get(str(entry["case"]))
        except CaseNotFound:
            return None
        if case.status == "cancelled" or org_id not in case.recipients:
            return None
        name = self._name(org_id)
        if entry["kind"] == ACK_ESCALATION:
            version = int(entry["version"])
            if case.version != version or f"{version}:{org_id}" in await self.cases.acks(case.id):
                return None
            told_at = datetime.fromisoformat(str(entry["told_at"]))
            sent_at, waited = await self._ack_waiting(case, version, org_id, told_at)
            return case, {
                "kind": "ack",
                "organisation": name,
                "sent_at": sent_at.isoformat(),
                "waited": waited,
            }
        if await self.redis.hexists(
            keys.case_markers(case.id), keys.booking_reported_marker(org_id)
        ) or await self.redis.hexists(keys.case(case.id), "booking"):
            return None
        return case, {"kind": "booking", "organisation": name, "deadline": entry["deadline"]}

    async def _fire_digest(self, timer: Timer) -> None:
        """One message to one organisation listing every case escalated to it now and still
        overdue: reference, arrival date, who has not acknowledged or booked (nothing else)."""
        org_id = str(timer.payload["organisation"])
        stamp = int(str(timer.payload["stamp"]))
        digest = keys.escalation_digest(org_id, stamp)
        await self.redis.srem(keys.case_timers(DIGEST_TIMERS), timer.id)
        stored = await self.redis.hgetall(digest)
        if "sent" in stored:
            return
        listed: dict[str, tuple[Case, list[dict[str, str]]]] = {}
        for member in sorted(stored):
            if member == "sent":
                continue
            found = await self._still_overdue(json.loads(stored[member]))
            if found is not None:
                case, item = found
                listed.setdefault(case.id, (case, []))[1].append(item)
        if not listed:
            return
        rows = sorted(listed.values(), key=lambda r: (r[0].arrival_date, r[0].reference))
        anchor = rows[0][0]
        now = self.clock.now()
        params = {
            "organisation": self._name(org_id),
            "basis_ack": words.ack_basis(
                self.settings.ack_reminder_hours, self.settings.ack_escalation_at
            ),
            "basis_booking": words.booking_basis(self.settings.booking_days),
            "cases": [
                {
                    "id": case.id,
                    "reference": case.reference,
                    "municipality": case.municipality,
                    "arrival_date": case.arrival_date.isoformat(),
                    "overdue": items,
                }
                for case, items in rows
            ],
        }
        event = notice_event(
            anchor.id,
            anchor.version,
            SYSTEM,
            now,
            Topic.ESCALATION_DIGEST.at(stamp),
            [org_id],
            params,
        )
        await self._emit_digest(
            keys=[digest, keys.EVENTS],
            args=[now.isoformat(), *(x for pair in event.items() for x in pair)],
        )
