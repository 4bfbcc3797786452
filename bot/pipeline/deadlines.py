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

Every `delivery.sent` comes here, so each event costs few round trips, each one Lua script that
checks what it writes against the case as it stands then (bot/store/lua/deadline_*.lua, with the
timer steps of timer_lib.lua): a version's timers and digest entries are made in one step,
and only while the case is open at that version, leaving out a recipient that has acknowledged
it; a sent message is one step (its first reach, a health centre's booking clock, the same-day
check's end), and one more only for the first reach of a health centre (its booking timers) and
for the last recipient's (the same-day record). What a deadline says in words is not stored
with its timer (`bot.domain.deadline_kinds.what_then` makes it for the case view).

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
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final

from bot.domain import deadline_rules as rules
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.case import Case, CaseNotFound, history_entry, notice_event
from bot.domain.clock import Clock
from bot.domain.deadline_kinds import (
    ACK_ESCALATION,
    ACK_KINDS,
    ACK_REMINDER,
    BOOKING_ESCALATION,
    BOOKING_KINDS,
    BOOKING_REMINDER,
    DISAGREEMENT_ESCALATION,
    ESCALATION_DIGEST,
    SAME_DAY_CHECK,
    SAME_DAY_CLOSE,
    name_of,
    supervisor_of,
)
from bot.domain.deadline_rules import DeadlineRules
from bot.domain.directory import Directory
from bot.domain.events import Topic
from bot.domain.progress import Reach, arrival_messages, everyone_reached_at, progress
from bot.pipeline.fanout import FanOut
from bot.store import Redis, keys
from bot.store.batching import Coalescer, LuaScript
from bot.store.cases import CaseStore
from bot.store.scripts import register
from bot.store.timers import (
    NewTimer,
    Scheduler,
    Timer,
    case_timer_ids,
    timer_args,
    timer_keys,
    timers_of_case,
)
from bot.usecases.access import SYSTEM
from bot.usecases.disagreements import Disagreements
from bot.usecases.views import deliveries
from messages import deadlines as words

log = logging.getLogger(__name__)

# One message reached: see delivered().
REACHED = LuaScript.of("timer_lib", "case_lib", "deadline_reached")
MAKE = LuaScript.of("timer_lib", "deadline_make")
NOTIFIED = LuaScript.of("timer_lib", "deadline_notified")

# The timer kinds live in bot.domain.deadline_kinds (the case view words them from there); they
# are named here too, where they are made and fired.
__all__ = [
    "ACK_ESCALATION",
    "ACK_KINDS",
    "ACK_REMINDER",
    "BOOKING_ESCALATION",
    "BOOKING_KINDS",
    "BOOKING_REMINDER",
    "DIGEST_TIMERS",
    "DISAGREEMENT_ESCALATION",
    "ESCALATION_DIGEST",
    "SAME_DAY_CHECK",
    "SAME_DAY_CLOSE",
    "DeadlineSettings",
    "Deadlines",
    "Notice",
    "digest_timer_id",
    "timer_id",
]
# The `case` a digest timer is filed under: it belongs to no one case, so no case's
# cancellation stops it and no case view lists it; a fired one is forgotten (no tombstone).
DIGEST_TIMERS: Final = "digests"


def timer_id(kind: str, case_id: str, *parts: object) -> str:
    """The id of a deadline's timer: derived from what it is for, so it is made only once."""
    return ":".join([kind, case_id, *(str(p) for p in parts)])


def digest_timer_id(org_id: str, stamp: int) -> str:
    """The id of `org_id`'s escalation digest timer for the instant `stamp` (epoch seconds),
    filed under DIGEST_TIMERS: made once however many escalations it lists."""
    return timer_id(ESCALATION_DIGEST, DIGEST_TIMERS, org_id, stamp)


def _timer(
    kind: str, case_id: str, due: datetime, payload: Mapping[str, object], *parts: object
) -> NewTimer:
    """A deadline's timer to make, its id from `timer_id(kind, case_id, *parts)`."""
    return NewTimer(timer_id(kind, case_id, *parts), kind, case_id, due, payload)


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


@dataclass(frozen=True)
class _Entry:
    """An escalation to put in one organisation's digest (see `_enlist`)."""

    digest: str
    member: str
    value: str
    ttl: int


@dataclass
class _Batch:
    """What one step of `_make` makes: timers and digest entries, each with its guard (a field
    of the guard hash whose presence leaves the item out; "" for none)."""

    timers: list[tuple[str, NewTimer]] = field(default_factory=list)
    entries: list[tuple[str, _Entry]] = field(default_factory=list)

    def timer(self, guard: str, timer: NewTimer) -> None:
        """Add a timer once. One asked for again with another guard (a digest's, by several
        recipients) is made without one: a digest timer whose entries were all left out fires
        and sends nothing."""
        for n, (had, made) in enumerate(self.timers):
            if made.id == timer.id:
                if had != guard:
                    self.timers[n] = ("", made)
                return
        self.timers.append((guard, timer))


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
        # A version's timers (`MAKE`), a message reached (`REACHED`) and everyone reached
        # (`NOTIFIED`) run many at once under load: with the others of their loop turn, in one
        # round trip (bot/store/batching.py).
        self._batch = Coalescer.of(redis)
        scheduler.on(ACK_REMINDER, self._fire_ack)
        scheduler.on(ACK_ESCALATION, self._fire_ack)
        scheduler.on(BOOKING_REMINDER, self._fire_booking)
        scheduler.on(BOOKING_ESCALATION, self._fire_booking)
        scheduler.on(SAME_DAY_CHECK, self._fire_same_day_check)
        scheduler.on(SAME_DAY_CLOSE, self._fire_same_day_close)
        scheduler.on(DISAGREEMENT_ESCALATION, self._fire_disagreement)
        # A fired digest's record is its digest's "sent" (digest_emit.lua), so its timer needs
        # no tombstone; one would stay for good in the digests' index, which no case owns.
        scheduler.on(ESCALATION_DIGEST, self._fire_digest, tombstone=False)

    # -- names -------------------------------------------------------------------------------

    def _name(self, org_id: str) -> str:
        return name_of(self.directory, org_id)

    def _supervisor(self, org_id: str) -> str | None:
        return supervisor_of(self.directory, org_id)

    def _is_health_centre(self, org_id: str) -> bool:
        org = self.directory.organisations.get(org_id)
        return org is not None and org.kind == "health_centre"

    async def _has_channel(self, org_id: str) -> bool:
        """Whether anything can be sent to `org_id` at all (an e-mail address needs no look)."""
        org = self.directory.organisations.get(org_id)
        return bool(org is not None and org.email) or bool(await self.fanout.channels(org_id))

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
            # The case view words it from the days (bot.domain.deadline_kinds.what_then).
            {"disagreement": disagreement_id, "days": self.settings.disagreement_days},
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
        """A version was registered at `at`: start its deadlines, stop the older ones.

        Its timers and digest entries are made in one step (`_make`) that checks, as it
        writes, that the case is still open at this version, and leaves out a recipient that
        has acknowledged it: an acknowledgement, a newer version or a cancellation handled
        meanwhile (events are handled concurrently) has its own event, which stops what was made
        before it, and nothing is made after it."""
        case = await self.cases.get(case_id)
        if case.status == "cancelled" or case.version != version:
            return  # a newer version (or the cancellation) has its own event
        if version > 1:
            await self._cancel_where(
                case_id,
                lambda t: (
                    t.kind in (*ACK_KINDS, SAME_DAY_CHECK)
                    and int(t.payload.get("version", 0)) < version
                ),
            )
        reminder_due, escalation_due = rules.ack_due(self.calendar, self.settings, at)
        told = at.isoformat()
        batch = _Batch()
        for org_id in case.recipients:
            acked = f"{version}:{org_id}"  # the acknowledgement that makes its chases moot
            base = {"version": version, "organisation": org_id, "told_at": told}
            if reminder_due is not None:
                batch.timer(
                    acked, _timer(ACK_REMINDER, case_id, reminder_due, base, version, org_id)
                )
            batch.timer(
                acked, _timer(ACK_ESCALATION, case_id, escalation_due, base, version, org_id)
            )
            self._enlist(
                batch,
                acked,
                case_id,
                case.reception_unit,
                ACK_ESCALATION,
                org_id,
                escalation_due,
                version,
                {"told_at": told},
            )
        day, check_due = self.same_day_due(at)
        watch = {"version": version, "day": day.isoformat()}
        batch.timer("", _timer(SAME_DAY_CHECK, case_id, check_due, watch, version))
        if version == 1:
            # At the end of that day, a case not yet through to everyone is recorded as late.
            close = rules.same_day_close(self.calendar, day)
            batch.timer("", _timer(SAME_DAY_CLOSE, case_id, close, watch))
        stood = await self._make(
            case_id,
            version,
            keys.case_acks(case_id),
            batch,
            once=("same_day_by", day.isoformat()) if version == 1 else None,
        )
        if not stood:
            return
        no_channel = [o for o in case.recipients if not await self._has_channel(o)]
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

    async def _make(
        self,
        case_id: str,
        version: int | None,
        guards: str,
        batch: _Batch,
        *,
        once: tuple[str, str] | None = None,
    ) -> bool:
        """Make `batch` in one round trip (bot/store/lua/deadline_make.lua) if the case is open
        (and at `version`, if given), each item unless its guard is a field of the hash
        `guards`; `once` is a field of the case set if not yet set. False if nothing was made
        because the case no longer stands so; CaseNotFound if it is gone."""
        keys_ = [keys.TIMERS, keys.case(case_id), guards]
        args = [
            "" if version is None else str(version),
            str(len(batch.timers)),
            str(len(batch.entries)),
            *(once or ("", "")),
        ]
        for guard, timer in batch.timers:
            own_keys, timer_argv = timer_args(timer)
            keys_ += own_keys
            args += [guard, *timer_argv]
        for guard, entry in batch.entries:
            keys_.append(entry.digest)
            args += [guard, entry.member, entry.value, str(entry.ttl)]
        stood = int(await self._batch.script(MAKE, keys_, args))
        if stood < 0:
            raise CaseNotFound(case_id)
        return stood > 0

    async def acknowledged(self, case_id: str, version: int, org_id: str) -> None:
        """`org_id` acknowledged `version`: its pending reminder and escalation are off."""
        await self.scheduler.cancel_all(
            timer_id(kind, case_id, version, org_id) for kind in ACK_KINDS
        )

    async def cancel_case(self, case_id: str) -> None:
        """The arrival is cancelled: nothing more is chased (a digest leaves the case out)."""
        # The cancel script passes over what has fired or is cancelled already.
        await self.scheduler.cancel_all(await case_timer_ids(self.redis, case_id))

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
        async with self.redis.pipeline(transaction=False) as pipe:
            for centre in centres:
                pipe.hsetnx(keys.case_markers(case_id), keys.booking_reported_marker(centre), now)
            await pipe.execute()
        return await self.scheduler.cancel_all(
            timer_id(kind, case_id, centre) for centre in centres for kind in BOOKING_KINDS
        )

    async def delivered(self, case_id: str, version: int, org_id: str, at: datetime) -> None:
        """An arrival message reached `org_id` at `at`.

        One round trip (bot/store/lua/deadline_reached.lua) records the first reach (of the
        organisation, and of it for the version: one small hash, not a scan of every delivery),
        starts a health centre's booking clock, and cancels the version's same-day check once
        everyone has it. Only the first reach of a health centre (its booking timers) and of the
        last recipient (the same-day record) take one more."""
        check = timer_id(SAME_DAY_CHECK, case_id, version)
        centre = self._is_health_centre(org_id)
        booking = timer_id(BOOKING_ESCALATION, case_id, org_id) if centre else check
        reply = await self._batch.script(
            REACHED,
            [
                keys.case(case_id),
                keys.case_reached(case_id),
                keys.case_markers(case_id),
                keys.TIMERS,
                keys.timer(check),
                keys.timer(booking),
                keys.case_timers(case_id),  # both timers' index (`timer_keys`: the id's case)
            ],
            [
                org_id,
                str(version),
                at.isoformat(),
                self.clock.now().isoformat(),
                self.scheduler.keep_seconds,
                check,
                keys.booking_informed_marker(org_id) if centre else "",
                keys.booking_reported_marker(org_id),
                booking,
            ],
        )
        if int(reply[0]) < 0:
            raise CaseNotFound(case_id)
        if int(reply[0]) == 0:
            return  # cancelled, or not a recipient (the reception unit's copy)
        started, reception_unit, created_at, by, *firsts = reply[1:]
        if started:
            await self._start_booking(
                case_id, reception_unit, org_id, datetime.fromisoformat(started)
            )
        if firsts:
            await self._record_notified(
                case_id,
                by,
                datetime.fromisoformat(created_at),
                _times(firsts),
                closing=False,
            )

    async def _reached(self, case: Case, version: int | None = None) -> list[datetime | None]:
        """When each recipient was first sent an arrival message (of `version`, if given)."""
        fields = [o if version is None else f"{version}:{o}" for o in case.recipients]
        return _times(await self.redis.hmget(keys.case_reached(case.id), fields))

    async def _start_booking(
        self, case_id: str, reception_unit: str, org_id: str, informed: datetime
    ) -> None:
        """The health centre `org_id` was first told at `informed`: its booking reminder and
        escalation, in one step, unless it has reported a booking meanwhile."""
        reminder_due, escalation_due, last_day = rules.booking_due(
            self.calendar, self.settings, informed
        )
        reported = keys.booking_reported_marker(org_id)
        base = {
            "organisation": org_id,
            "informed_at": informed.isoformat(),
            "deadline": last_day.isoformat(),
        }
        batch = _Batch()
        batch.timer(reported, _timer(BOOKING_REMINDER, case_id, reminder_due, base, org_id))
        batch.timer(reported, _timer(BOOKING_ESCALATION, case_id, escalation_due, base, org_id))
        self._enlist(
            batch,
            reported,
            case_id,
            reception_unit,
            BOOKING_ESCALATION,
            org_id,
            escalation_due,
            None,
            {"deadline": last_day.isoformat()},
        )
        await self._make(case_id, None, keys.case_markers(case_id), batch)

    async def record_notified(self, case: Case, *, closing: bool = False) -> bool:
        """Record, once, when every recipient had been reached and whether that was within
        the case's same working day. True if it is recorded (now or before)."""
        notified, by = await self.redis.hmget(keys.case(case.id), ["notified_at", "same_day_by"])
        if notified:
            return True
        firsts = await self._reached(case)
        if everyone_reached_at(firsts) is None:
            return False
        await self._record_notified(case.id, by, case.created_at, firsts, closing=closing)
        return True

    async def _record_notified(
        self,
        case_id: str,
        by: str | None,
        created_at: datetime,
        firsts: list[datetime | None],
        *,
        closing: bool,
    ) -> None:
        # Everyone has been reached and it is not recorded yet (as the caller read it): record
        # when and whether on the same working day (the case's `same_day_by`, else the day its
        # registration counts towards), and stop the closing timer unless it is the one firing.
        at = everyone_reached_at(firsts)
        if at is None:
            return
        day = date.fromisoformat(by) if by else self.same_day_due(created_at).day
        same = rules.reached_same_day(self.calendar, at, day)
        close = timer_id(SAME_DAY_CLOSE, case_id)
        await self._batch.script(
            NOTIFIED,
            [keys.case(case_id), keys.TIMERS, *timer_keys(close)],
            [
                at.isoformat(),
                "true" if same else "false",
                self.clock.now().isoformat(),
                self.scheduler.keep_seconds,
                "" if closing else close,
            ],
        )

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
        return self._escalation_targets(case.reception_unit, org_id)

    def _escalation_targets(self, reception_unit: str, org_id: str) -> list[str]:
        supervisor = self._supervisor(org_id)
        return list(dict.fromkeys([*([supervisor] if supervisor else []), reception_unit]))

    @staticmethod
    def _member(kind: str, case_id: str, org_id: str, version: int | None) -> str:
        # Booking escalations are not per version: one per health centre and case.
        return f"{kind}|{case_id}|{org_id}|{'' if version is None else version}"

    @staticmethod
    def _digest_entry(member: str, value: str) -> dict[str, str]:
        """A digest's entry: what its member names (kind, case, organisation, version) and
        what its value adds (when told, or the last day to book). An entry enlisted before the
        value was cut down to that carries the rest too, and reads the same."""
        kind, case_id, org_id, version = member.split("|", 3)
        entry = {"kind": kind, "case": case_id, "organisation": org_id}
        if version:
            entry["version"] = version
        return {**entry, **{k: str(v) for k, v in json.loads(value).items()}}

    def _enlist(
        self,
        batch: _Batch,
        guard: str,
        case_id: str,
        reception_unit: str,
        kind: str,
        org_id: str,
        due: datetime,
        version: int | None,
        facts: Mapping[str, object],
    ) -> None:
        """Add to `batch` `org_id`'s escalation on the case in the digest for `due` of each
        organisation told (its supervisor, the reception unit), and that digest's timer (made
        once: its id is the organisation and the instant)."""
        stamp = int(due.timestamp())
        member = self._member(kind, case_id, org_id, version)
        value = json.dumps(facts, separators=(",", ":"))
        ttl = max(stamp + keys.DIGEST_TTL - int(self.clock.now().timestamp()), keys.DIGEST_TTL)
        for target in self._escalation_targets(reception_unit, org_id):
            digest = keys.escalation_digest(target, stamp)
            batch.entries.append((guard, _Entry(digest, member, value, ttl)))
            # Filed under DIGEST_TIMERS, not a case; its id says so, then the organisation and
            # instant, so it is packed in that index (its field there grew by about 17 bytes
            # where a hash of its own took about 265, MEMORY USAGE in the scale benchmark) and
            # forgotten whole once fired (`Scheduler.on(..., tombstone=False)`).
            digest_timer = NewTimer(
                digest_timer_id(target, stamp),
                ESCALATION_DIGEST,
                DIGEST_TIMERS,
                due,
                {"organisation": target, "stamp": stamp},
            )
            batch.timer(guard, digest_timer)

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
        stored = await self.redis.hgetall(digest)
        if "sent" in stored:
            return
        listed: dict[str, tuple[Case, list[dict[str, str]]]] = {}
        for member in sorted(stored):
            if member == "sent":
                continue
            found = await self._still_overdue(self._digest_entry(member, stored[member]))
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
