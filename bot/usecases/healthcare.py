"""The health centre's part (routine steps 3 and 5): the booked health conversation, and the
bare yes/no of clearance — never a result, because medical confidentiality forbids it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, StrictBool, field_validator

from bot.domain.arrival import InvalidInput
from bot.domain.case import Case, CaseNotFound, Conflict, notice_event
from bot.domain.clock import Clock
from bot.domain.directory import Directory
from bot.domain.events import EventType, Topic
from bot.domain.policy import Policy
from bot.store import Pipeline, Redis, keys
from bot.store.cases import record_change
from bot.store.transaction import optimistic
from bot.usecases.access import Actor


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

    def __init__(self, redis: Redis, directory: Directory, clock: Clock, zone: ZoneInfo) -> None:
        self.redis = redis
        self.directory = directory
        self.clock = clock
        self.zone = zone
        self.policy = Policy(directory)

    def require_health_centre(self, actor: Actor, case: Case) -> None:
        """Only the health centre on an open case reports (Forbidden, or Conflict once it is
        cancelled); chat asks this before it starts a dialogue."""
        self.policy.require_health_centre(actor, case)
        if case.status == "cancelled":
            raise Conflict("Ärendet är inställt.")

    def check_booking_time(self, at: datetime) -> datetime:
        """The booked time, local if given without zone; InvalidInput if it is absurdly far
        from now (more than 30 days back or a year ahead)."""
        at = self._local(at)
        now = self.clock.now()
        if at < now - timedelta(days=30) or at > now + timedelta(days=366):
            raise InvalidInput([{"field": "at", "message": "tiden ligger orimligt långt bort"}])
        return at

    async def _update(
        self,
        case_id: str,
        actor: Actor,
        write: Callable[[Pipeline, Case, datetime, dict[str, str]], Awaitable[None]],
    ) -> Case:
        """Run `write(pipe, case, now)` under WATCH of the case until it commits."""
        key = keys.case(case_id)

        async def attempt(pipe: Pipeline) -> Case:
            data = await pipe.hgetall(key)
            if not data:
                raise CaseNotFound(case_id)
            case = Case.from_hash(data)
            self.require_health_centre(actor, case)
            now = self.clock.now()
            pipe.multi()
            await write(pipe, case, now, data)
            await pipe.execute()
            return case

        return await optimistic(self.redis, [key], attempt)

    def _local(self, at: datetime) -> datetime:
        return at.replace(tzinfo=self.zone) if at.tzinfo is None else at

    async def book(self, case_id: str, booking: BookingIn, actor: Actor) -> dict[str, Any]:
        """Record the booked time; the reception unit is told; a later booking replaces it."""
        at = self.check_booking_time(booking.at)
        result: dict[str, Any] = {}

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
            result.update(record, replaces=previous["at"] if previous else None)
            org = self.directory.organisation(actor.org_id)
            pipe.hset(keys.case(case.id), "booking", json.dumps(record))
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

        await self._update(case_id, actor, write)
        return result

    async def clear(self, case_id: str, clearance: ClearanceIn, actor: Actor) -> dict[str, Any]:
        """Record clearance as yes/no; reception unit, school and preschool told, never why."""
        result: dict[str, Any] = {}

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
            result.update(record)
            told = self.policy.told_of_start(case)
            org = self.directory.organisation(actor.org_id)
            pipe.hset(keys.case(case.id), "clearance", json.dumps(record))
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
        return result
