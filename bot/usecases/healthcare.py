"""The health centre's part (routine steps 3 and 5): the booked health conversation, and the
bare yes/no of clearance — never a result, because medical confidentiality forbids it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, StrictBool, field_validator

from bot.domain.arrival import InvalidInput
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.case import Case, Conflict, notice_event
from bot.domain.clock import Clock
from bot.domain.directory import Directory
from bot.domain.events import EventType, Topic
from bot.domain.policy import Policy
from bot.store import Pipeline, Redis, keys
from bot.store.cases import read_case, record_change
from bot.store.durability import Durability
from bot.store.transaction import optimistic
from bot.usecases.access import Actor
from messages.dates import swedish_date

# How far ahead a booking may lie; further is a typo (a wrong year), not a plan.
MAX_BOOKING_AHEAD = timedelta(days=366)


def _clock_time(t: time) -> str:
    return f"{t.hour:02d}.{t.minute:02d}"


def booking_problem(
    at: datetime,
    now: datetime,
    calendar: WorkingDayCalendar,
    interpreter_booked: bool | None = None,
    current: Mapping[str, Any] | None = None,
) -> str | None:
    """Why a reported booking time is refused (a Swedish sentence), or None: the one home of
    the booking rules, asked by the API and chat alike (through `HealthCentre`).

    Refused: a time that has already passed (a booking is reported for a conversation to
    come); a time more than a year ahead; a day that is not a working day (weekend, holiday,
    a day the region has closed) — a health conversation with provtagning and interpreter is
    held when the health centre is open, so such a day is nearly always a mistyped date, and
    the clerk is better stopped than the reception unit told the wrong day; a time outside
    office hours on a working day, for the same reason; and a booking identical to the
    `current` one (same time, same interpreter answer), which would only announce again what
    everyone already knows. `at` must be aware.
    """
    if at < now:
        return "Tiden har redan passerat. Ange den tid som hälsosamtalet är bokat till."
    if at > now + MAX_BOOKING_AHEAD:
        return "Tiden ligger mer än ett år fram. Kontrollera datumet."
    local = at.astimezone(calendar.zone)
    day = local.date()
    if not calendar.is_working_day(day):
        name = calendar.holiday_name(day)
        why = f" ({name})" if name else ""
        return (
            f"{swedish_date(day).capitalize()}{why} är ingen arbetsdag. "
            "Ange en tid på en arbetsdag."
        )
    if not calendar.is_within_office_hours(at):
        return (
            f"Tiden ligger utanför kontorstid ({_clock_time(calendar.office_start)}–"
            f"{_clock_time(calendar.office_end)}). Ange en tid inom kontorstid."
        )
    if (
        current
        and interpreter_booked is not None
        and datetime.fromisoformat(str(current.get("at"))) == at
        and current.get("interpreter_booked") == interpreter_booked
    ):
        return (
            "Den tiden är redan registrerad, med samma besked om tolk. "
            "Inget nytt skickas; ange en annan tid om bokningen har ändrats."
        )
    return None


class BookingIn(BaseModel):
    """`POST …/health-booking`: when the health conversation is, and whether a tolk is booked."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    interpreter_booked: StrictBool

    @field_validator("at", mode="before")
    @classmethod
    def _no_garbage(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > 40:
            raise ValueError("ska vara en tidpunkt, t.ex. 2026-12-01T09:30")
        return value


class ClearanceIn(BaseModel):
    """`POST …/clearance`: two booleans and nothing else — no medical content can enter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    all_results_received: StrictBool
    start_obstacle: StrictBool

    @property
    def may_start(self) -> bool:
        """Start in school or preschool may go ahead."""
        return self.all_results_received and not self.start_obstacle


class HealthCentre:
    """Use cases of the health centre on a case."""

    def __init__(
        self,
        redis: Redis,
        directory: Directory,
        clock: Clock,
        zone: ZoneInfo,
        calendar: WorkingDayCalendar | None = None,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        # Confirms each report on the replicas before it is answered (off on a single server).
        self.durability = durability or Durability(redis)
        self.directory = directory
        self.clock = clock
        self.zone = zone
        # The region's working days and office hours (the services factory passes its own).
        self.calendar = calendar or WorkingDayCalendar(zone)
        self.policy = Policy(directory)

    def require_health_centre(self, actor: Actor, case: Case) -> None:
        """Only the health centre on an open case reports (Forbidden, or Conflict once it is
        cancelled); chat asks this before it starts a dialogue."""
        self.policy.require_health_centre(actor, case)
        if case.status == "cancelled":
            raise Conflict("Ärendet är inställt.")

    def check_booking_time(
        self,
        at: datetime,
        interpreter_booked: bool | None = None,
        current: Mapping[str, Any] | None = None,
    ) -> datetime:
        """The booked time, local if given without zone; InvalidInput naming `at` if
        `booking_problem` refuses it (chat asks this as soon as the time is typed; `book`
        asks it again with the current booking)."""
        at = self._local(at)
        problem = booking_problem(at, self.clock.now(), self.calendar, interpreter_booked, current)
        if problem:
            raise InvalidInput([{"field": "at", "message": problem}])
        return at

    async def _update(
        self,
        case_id: str,
        actor: Actor,
        write: Callable[[Pipeline, Case, datetime, dict[str, str]], Awaitable[None]],
        check: Callable[[dict[str, str]], None] | None = None,
    ) -> Case:
        """Run `write(pipe, case, now)` under WATCH of the case until it commits; `check(stored
        hash)` may refuse first, before anything is queued."""
        key = keys.case(case_id)

        async def attempt(pipe: Pipeline) -> Case:
            case, data, _ = await read_case(self.redis, case_id)  # under the WATCH of its hash
            self.require_health_centre(actor, case)
            if check is not None:
                check(data)
            now = self.clock.now()
            pipe.multi()
            await write(pipe, case, now, data)
            await pipe.execute()
            return case

        return await optimistic(self.redis, [key], attempt)

    def _local(self, at: datetime) -> datetime:
        return at.replace(tzinfo=self.zone) if at.tzinfo is None else at

    async def book(self, case_id: str, booking: BookingIn, actor: Actor) -> dict[str, Any]:
        """Record the booked time; the reception unit is told; a later booking replaces it.
        A time `booking_problem` refuses (the same as the current booking included) is an
        InvalidInput naming `at`, and nothing is written or sent."""
        at = self.check_booking_time(booking.at)
        result: dict[str, Any] = {}
        written: dict[str, str] = {}  # the stored record, to confirm on the replicas

        def check(data: dict[str, str]) -> None:
            current = json.loads(data["booking"]) if data.get("booking") else None
            self.check_booking_time(at, booking.interpreter_booked, current)

        async def write(pipe: Any, case: Case, now: datetime, data: dict[str, str]) -> None:
            previous = json.loads(data["booking"]) if data.get("booking") else None
            number = (previous or {}).get("number", 0) + 1
            record = {
                "number": number,
                "at": at.isoformat(),
                "interpreter_booked": booking.interpreter_booked,
                "reported_at": now.isoformat(),
                "by": actor.org_id,
            }
            stored = json.dumps(record)
            written["booking"] = stored
            result.update(record, replaces=previous["at"] if previous else None)
            org = self.directory.organisation(actor.org_id)
            pipe.hset(keys.case(case.id), "booking", stored)
            record_change(
                pipe,
                case.id,
                case.version,
                actor,
                now,
                "health_booked",
                EventType.CASE_HEALTH_BOOKED,
                {
                    "booked_for": at.isoformat(),
                    "interpreter_booked": booking.interpreter_booked,
                    "replaces": previous["at"] if previous else None,
                },
            )
            pipe.xadd(
                keys.EVENTS,
                notice_event(
                    case.id,
                    case.version,
                    actor,
                    now,
                    Topic.HEALTH_BOOKING.at(number),
                    [case.reception_unit],
                    {
                        "organisation": org.name,
                        "booked_at": at.isoformat(),
                        "previous_at": previous["at"] if previous else None,
                        "interpreter_booked": booking.interpreter_booked,
                    },
                ),
            )

        await self._update(case_id, actor, write, check)
        # The reception unit is told of it, so it must survive a failover before it is
        # answered: NotDurable (503) otherwise. A retry of the same booking is then refused as
        # the one already registered (if it did survive) or recorded (if it did not).
        await self.durability.confirm_field(keys.case(case_id), "booking", written["booking"])
        return result

    async def clear(self, case_id: str, clearance: ClearanceIn, actor: Actor) -> dict[str, Any]:
        """Record clearance as yes/no; reception unit, school and preschool told, never why."""
        result: dict[str, Any] = {}
        written: dict[str, str] = {}  # the stored record, to confirm on the replicas

        async def write(pipe: Any, case: Case, now: datetime, data: dict[str, str]) -> None:
            previous = json.loads(data["clearance"]) if data.get("clearance") else None
            number = (previous or {}).get("number", 0) + 1
            record = {
                "number": number,
                "all_results_received": clearance.all_results_received,
                "start_obstacle": clearance.start_obstacle,
                "may_start": clearance.may_start,
                "reported_at": now.isoformat(),
                "by": actor.org_id,
            }
            stored = json.dumps(record)
            written["clearance"] = stored
            result.update(record)
            told = self.policy.told_of_start(case)
            org = self.directory.organisation(actor.org_id)
            pipe.hset(keys.case(case.id), "clearance", stored)
            record_change(
                pipe,
                case.id,
                case.version,
                actor,
                now,
                "clearance",
                EventType.CASE_CLEARED,
                {"may_start": clearance.may_start},
            )
            pipe.xadd(
                keys.EVENTS,
                notice_event(
                    case.id,
                    case.version,
                    actor,
                    now,
                    Topic.CLEARANCE.at(number),
                    told,
                    {"organisation": org.name, "may_start": clearance.may_start},
                ),
            )

        await self._update(case_id, actor, write)
        # School and preschool are told whether the start may go ahead: durable first.
        await self.durability.confirm_field(keys.case(case_id), "clearance", written["clearance"])
        return result
