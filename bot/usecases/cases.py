"""The case use cases: register, change, cancel, acknowledge.

Every state change writes the case, its history entry and its event in one MULTI/EXEC (a
registration: in one script, case_register.lua), so a caller is answered only after all three
are stored, and a crash leaves either all or nothing.
The model is bot/domain/case.py; reads and the shared writes are bot/store/cases.py.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.domain.actor import Actor
from bot.domain.arrival import ArrivalIn, ArrivalPatch, CancelIn, InvalidInput, parse
from bot.domain.case import (
    AckOutcome,
    Case,
    CaseNotFound,
    Conflict,
    Version,
    content_hash,
    notice_event,
)
from bot.domain.clock import Clock
from bot.domain.directory import Directory, RoutingError
from bot.domain.events import EventType, Topic
from bot.domain.policy import Forbidden, Policy
from bot.store import Pipeline, Redis, keys, optimistic
from bot.store.batching import Coalescer, LuaScript
from bot.store.cases import CaseStore, change_record, record_change
from bot.store.durability import Durability

# The errors of these use cases, named here for the adapters that catch them.
__all__ = ["CaseNotFound", "CaseService", "Conflict", "Forbidden"]

# How long the sender of an acknowledgement is remembered (`CaseService.acknowledge`): long
# enough for a form sent again by a double click or by the browser, short enough to leave
# nothing behind for the case's lifetime.
RESEND_WINDOW_S = 600


# Registers a case in one step (see `CaseService.register`).
_REGISTER = LuaScript.of("case_register")


class CaseService:
    """The use cases every inbound path (API, chat, intake stream) calls."""

    def __init__(
        self,
        redis: Redis,
        directory: Directory,
        clock: Clock,
        zone: ZoneInfo,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        # Confirms each write on the replicas before it is answered (off on a single server).
        self.durability = durability or Durability(redis)
        self.directory = directory
        self.clock = clock
        self.zone = zone  # reference years follow the local calendar
        self.store = CaseStore(redis)
        # With the process's other commands of the same loop turn (`Coalescer`): an arrival's
        # registration is no round trip of its own (issue 17).
        self._batch = Coalescer.of(redis)
        self.policy = Policy(directory)

    # -- policy (the rules themselves live in bot.domain.policy) ------------------------------

    def require_party(self, actor: Actor, case: Case) -> None:
        """Only organisations on the case (and management of its municipality) may read it."""
        self.policy.require_read(actor, case)

    def require_change(self, actor: Actor, case: Case) -> None:
        """What a change or cancellation needs before anything is asked: the registering
        reception unit (Forbidden) and a case not cancelled (Conflict)."""
        self.policy.require_change(actor, case)
        if case.status == "cancelled":
            raise Conflict("Ärendet är inställt och kan inte ändras.")

    # -- register ---------------------------------------------------------------------------

    async def register(self, arrival: ArrivalIn, actor: Actor) -> tuple[Case, bool]:
        """Store a new case and its event atomically; (case, created). A replay is not new."""
        municipality = self.directory.municipalities.get(arrival.municipality)
        if municipality is None:
            raise InvalidInput([{"field": "municipality", "message": "okänd kommun"}])
        self.policy.require_register(actor, municipality.id)
        try:
            recipients = self.directory.route(
                municipality.id,
                [c.age for c in arrival.children],
                arrival.unaccompanied,
                arrival.recipients,
            )
        except RoutingError as exc:
            raise InvalidInput([{"field": "recipients", "message": str(exc)}]) from None
        fingerprint = content_hash(arrival)
        ref_key = keys.external_ref(arrival.external_ref)
        now = self.clock.now()
        local_year = now.astimezone(self.zone).year
        # The reference is this prefix and the municipality's next number of the year, which
        # the script takes and formats ("%04d"): OSD-2026-0001.
        prefix = f"{municipality.code}-{local_year}-"
        case = Case(
            id=secrets.token_hex(8),
            reference=prefix,
            external_ref=arrival.external_ref,
            municipality=municipality.id,
            reception_unit=actor.org_id,
            status="open",
            version=1,
            created_at=now,
            updated_at=now,
            recipients=tuple(o.id for o in recipients),
            facts=arrival.facts(),
            content_hash=fingerprint,
        )
        version = Version(1, "new", case.facts, now, actor.org_id, actor.via)
        # The reference is the history line's last field: the script puts the number before
        # its closing '"}'.
        line, event = change_record(
            case.id,
            1,
            actor,
            now,
            "registered",
            EventType.CASE_REGISTERED,
            {"reference": prefix},
        )
        fields = case.to_hash()
        del fields["reference"]
        sets = [keys.ALL_CASES, keys.OPEN_CASES, keys.municipality_case_ids(case.municipality)]
        sets += [keys.organisation_case_ids(org_id) for org_id in case.parties()]
        # One command, atomic: the external ref is checked, the number taken and the case,
        # its version, sets, history and event written together (or nothing, if it exists).
        created, answer = await self._batch.script(
            _REGISTER,
            [
                ref_key,
                keys.reference_sequence(municipality.code, local_year),
                keys.case(case.id),
                keys.case_versions(case.id),
                keys.case_history(case.id),
                keys.EVENTS,
                *sets,
            ],
            args=[
                case.id,
                prefix,
                keys.case_by_reference(prefix),
                version.to_json(),
                line,
                int(now.timestamp()),
                2 * len(fields),
                *(x for pair in fields.items() for x in pair),
                *(x for pair in event.items() for x in pair),
            ],
        )
        if created:
            case = replace(case, reference=answer)
        else:
            case = await self.store.get(answer)
            if case.content_hash != fingerprint:
                raise Conflict(
                    "external_ref finns redan för ett ärende med annat innehåll "
                    f"({case.reference})."
                )
        # Also a replay: what an earlier attempt wrote may still be only on a master that a
        # failover is taking away. Not confirmed: NotDurable (503); the retry is idempotent.
        await self.durability.confirm_value(ref_key, case.id)
        return case, bool(created)

    # -- change and cancel -------------------------------------------------------------------

    async def _new_version(
        self,
        case_id: str,
        actor: Actor,
        build: Callable[[Case, datetime], Version | None],
        event: EventType,
        what: str,
        notices: Callable[[dict[str, str], Case, Case, datetime], list[dict[str, str]]]
        | None = None,
    ) -> Case:
        """Write a new version (change or cancellation) with its history and event, atomically;
        `notices(stored hash, case, updated case, now)` may add notice events to the same
        MULTI."""
        case_key = keys.case(case_id)

        async def attempt(pipe: Pipeline) -> Case:
            # Read under the WATCH (the hash and the snapshot of its facts change together).
            case, data = await self.store.read(case_id)
            self.require_change(actor, case)
            now = self.clock.now()
            version = build(case, now)
            if version is None:
                await pipe.unwatch()
                return case  # nothing changed: no new version, nothing sent
            updated = Case(
                **{
                    **case.__dict__,
                    "version": version.number,
                    "facts": version.facts,
                    "updated_at": now,
                    "status": "cancelled" if version.kind == "cancelled" else "open",
                }
            )
            pipe.multi()
            pipe.hset(case_key, mapping=updated.to_hash())
            if "facts" in data:
                pipe.hdel(case_key, "facts")  # a case stored before: its snapshot has them now
            pipe.hset(keys.case_versions(case_id), str(version.number), version.to_json())
            if version.kind == "cancelled":
                pipe.srem(keys.OPEN_CASES, case_id)
            record_change(
                pipe,
                case_id,
                version.number,
                actor,
                now,
                what,
                event,
                {"changes": list(version.changes) or None, "reason": version.reason or None},
            )
            for notice in notices(data, case, updated, now) if notices else ():
                pipe.xadd(keys.EVENTS, notice)
            await pipe.execute()
            return updated

        case = await optimistic(self.redis, [case_key], attempt)
        await self.durability.confirm_field(case_key, "version", str(case.version))
        return case

    async def change(self, case_id: str, patch: ArrivalPatch, actor: Actor) -> Case:
        """A date change or correction: a new version every recipient must acknowledge again."""
        wanted = patch.facts()

        def build(case: Case, now: datetime) -> Version | None:
            changes = tuple(
                {"field": name, "old": case.facts.get(name), "new": value}
                for name, value in wanted.items()
                if case.facts.get(name) != value
            )
            if not changes:
                return None
            facts = {**case.facts, **wanted}
            return Version(
                case.version + 1, "changed", facts, now, actor.org_id, actor.via, changes
            )

        def notices(
            data: dict[str, str], case: Case, updated: Case, now: datetime
        ) -> list[dict[str, str]]:
            return self._booking_before_arrival(data, case, updated, actor, now)

        return await self._new_version(
            case_id, actor, build, EventType.CASE_CHANGED, "changed", notices
        )

    def _booking_before_arrival(
        self, data: dict[str, str], case: Case, updated: Case, actor: Actor, now: datetime
    ) -> list[dict[str, str]]:
        """The notice to write when a date change moves the arrival after the booked health
        conversation: the health centre that booked it and the reception unit learn that the
        booking now falls before the arrival and must be rebooked. Nothing otherwise — also
        not when the booking already lay before the old date (they were told then)."""
        if not data.get("booking"):
            return []
        old_day = case.arrival_date
        new_day = updated.arrival_date
        booking = json.loads(data["booking"])
        booked_at = datetime.fromisoformat(booking["at"])
        booked_day = booked_at.astimezone(self.zone).date()
        if not old_day <= booked_day < new_day:
            return []
        health_centre = booking.get("by", "")
        org = self.directory.organisations.get(health_centre)
        told = [o for o in dict.fromkeys([health_centre, updated.reception_unit]) if o]
        return [
            notice_event(
                updated.id,
                updated.version,
                actor,
                now,
                Topic.BOOKING_BEFORE_ARRIVAL,
                told,
                {
                    "organisation": org.name if org else health_centre,
                    "booked_at": booked_at.isoformat(),
                    "arrival_on": new_day.isoformat(),
                    "previous_arrival_on": old_day.isoformat(),
                },
            )
        ]

    async def cancel(self, case_id: str, reason: str, actor: Actor) -> Case:
        """Cancel the arrival: a last version that tells everyone INSTÄLLD, and why. A reason is
        required on every path (InvalidInput naming `reason`, before anything is read or
        written): the cancellation is final and the recipients must learn why."""
        reason = parse(CancelIn, {"reason": reason}).reason

        def build(case: Case, now: datetime) -> Version:
            return Version(
                case.version + 1, "cancelled", case.facts, now, actor.org_id, actor.via, (), reason
            )

        return await self._new_version(case_id, actor, build, EventType.CASE_CANCELLED, "cancelled")

    # -- acknowledge -------------------------------------------------------------------------

    async def acknowledge(
        self,
        case_id: str,
        org_id: str,
        actor: Actor,
        version: int | None = None,
        *,
        sender: str | None = None,
    ) -> tuple[AckOutcome, Case]:
        """Record that `org_id` has understood a version; once per organisation and version.

        `sender` names where the form came from (a board session, by a hash of its id): the
        same sender's acknowledgement arriving again within `RESEND_WINDOW_S` (a double click,
        the browser sending the form again, a reply lost on the way and the write retried) is
        answered "recorded", as the first was, and writes nothing; anyone else's is "already".
        """
        case_key = keys.case(case_id)

        async def attempt(pipe: Pipeline) -> tuple[AckOutcome, Case]:
            case, _ = await self.store.read(case_id)  # under the WATCH
            if org_id not in case.recipients:
                await pipe.unwatch()
                return "not_recipient", case
            if case.status == "cancelled":
                await pipe.unwatch()
                return "cancelled", case
            number = case.version if version is None else version
            if number != case.version:
                await pipe.unwatch()
                return "stale", case
            field = f"{number}:{org_id}"
            resend = None if sender is None else keys.ack_resend(case_id, field, sender)
            if await pipe.hexists(keys.case_acks(case_id), field):
                again = resend is not None and bool(await pipe.exists(resend))
                await pipe.unwatch()
                return ("recorded" if again else "already"), case
            acked = await pipe.hmget(
                keys.case_acks(case_id), [f"{number}:{o}" for o in case.recipients]
            )
            now = self.clock.now()
            ack = {"at": now.isoformat(), "via": actor.via, "who": actor.who}
            pipe.multi()
            pipe.hset(keys.case_acks(case_id), field, json.dumps(ack))
            if resend is not None:
                pipe.set(resend, "1", px=RESEND_WINDOW_S * 1000)
            record_change(
                pipe,
                case_id,
                number,
                actor,
                now,
                "acknowledged",
                EventType.CASE_ACKNOWLEDGED,
                {"organisation": org_id},
                org=org_id,
            )
            others_missing = [
                o for o, a in zip(case.recipients, acked, strict=True) if a is None and o != org_id
            ]
            if not others_missing:
                # The last one in: the reception unit is told, once per version (the WATCH
                # on the acks hash makes "last" exact under concurrent acknowledgements).
                record_change(
                    pipe,
                    case_id,
                    number,
                    actor,
                    now,
                    "all_acknowledged",
                    EventType.CASE_ALL_ACKNOWLEDGED,
                )
            await pipe.execute()
            return "recorded", case

        outcome, case = await optimistic(self.redis, [case_key, keys.case_acks(case_id)], attempt)
        if outcome in ("recorded", "already"):
            number = case.version if version is None else version
            await self.durability.confirm_field(keys.case_acks(case_id), f"{number}:{org_id}")
        return outcome, case
