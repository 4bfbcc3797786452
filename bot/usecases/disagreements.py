"""Disagreements (§7 of the agreement): raised by a party, referred to the next management level
of every party, decided by a party or management — and everyone involved is told each step."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bot.domain.arrival import check_free_text
from bot.domain.case import Case, CaseNotFound, Conflict, notice_event
from bot.domain.clock import Clock
from bot.domain.directory import Directory
from bot.domain.events import EventType, Topic
from bot.domain.policy import Policy
from bot.store import Pipeline, Redis, keys, optimistic
from bot.store.cases import CaseStore, record_change
from bot.store.durability import Durability
from bot.usecases.access import Actor

Status = Literal["open", "escalated", "resolved"]


def _required_text(value: str) -> str:
    value = check_free_text(value)
    if not value:
        raise ValueError("får inte vara tom")
    return value


# Plain text a person writes: no identity numbers, no medical facts, not empty.
RequiredText = Annotated[str, Field(min_length=1, max_length=2000), AfterValidator(_required_text)]


class DisagreementIn(BaseModel):
    """What a party disagrees on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: RequiredText


class DecisionIn(BaseModel):
    """How a disagreement was decided."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision: RequiredText


class DisagreementNotFound(CaseNotFound):
    """No disagreement with that id."""


@dataclass(frozen=True)
class Disagreement:
    """A disagreement as stored."""

    id: str
    case_id: str
    raised_by: str
    text: str
    status: Status
    raised_at: datetime
    referred_to: tuple[str, ...] = ()
    escalated_at: datetime | None = None
    escalated_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    decision: str | None = None

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> Disagreement:
        """Build from its hash."""

        def when(name: str) -> datetime | None:
            return datetime.fromisoformat(data[name]) if data.get(name) else None

        status: Status = data["status"]  # type: ignore[assignment]
        return cls(
            id=data["id"],
            case_id=data["case"],
            raised_by=data["raised_by"],
            text=data["text"],
            status=status,
            raised_at=datetime.fromisoformat(data["raised_at"]),
            referred_to=tuple(json.loads(data.get("referred_to") or "[]")),
            escalated_at=when("escalated_at"),
            escalated_by=data.get("escalated_by") or None,
            resolved_at=when("resolved_at"),
            resolved_by=data.get("resolved_by") or None,
            decision=data.get("decision") or None,
        )

    def view(self) -> dict[str, Any]:
        """As the API shows it."""
        return {
            "id": self.id,
            "case": self.case_id,
            "raised_by": self.raised_by,
            "text": self.text,
            "status": self.status,
            "raised_at": self.raised_at.isoformat(),
            "referred_to": list(self.referred_to),
            "escalated_at": self.escalated_at.isoformat() if self.escalated_at else None,
            "escalated_by": self.escalated_by,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "resolved_by": self.resolved_by,
            "decision": self.decision,
        }


class Disagreements:
    """Raise, escalate and resolve disagreements on a case."""

    def __init__(
        self,
        redis: Redis,
        directory: Directory,
        clock: Clock,
        durability: Durability | None = None,
    ) -> None:
        self.redis = redis
        # Every step tells other parties: confirmed on the replicas before it is answered.
        self.durability = durability or Durability(redis)
        self.directory = directory
        self.clock = clock
        self.cases = CaseStore(redis)
        self.policy = Policy(directory)

    def managements(self, case: Case) -> list[str]:
        """The next management level of every party (the rule lives in the policy)."""
        return self.policy.managements(case)

    def _name(self, org_id: str) -> str:
        org = self.directory.organisations.get(org_id)
        return org.name if org else org_id

    async def get(self, disagreement_id: str) -> Disagreement:
        """One disagreement, or DisagreementNotFound."""
        if not disagreement_id or len(disagreement_id) > 64:
            raise DisagreementNotFound(disagreement_id)
        data = await self.redis.hgetall(keys.disagreement(disagreement_id))
        if not data:
            raise DisagreementNotFound(disagreement_id)
        return Disagreement.from_hash(data)

    async def of_case(self, case_id: str) -> list[Disagreement]:
        """Every disagreement on a case, oldest first."""
        ids = await self.redis.smembers(keys.case_disagreements(case_id))
        found = [await self.get(i) for i in ids]
        return sorted(found, key=lambda d: d.raised_at)

    async def require_visible(self, actor: Actor, d: Disagreement) -> Case:
        """The case of a disagreement, if the actor is involved in it."""
        case = await self.cases.get(d.case_id)
        self.policy.require_see_disagreement(actor, case, d.referred_to)
        return case

    async def raise_(self, case_id: str, body: DisagreementIn, actor: Actor) -> Disagreement:
        """A party raises a disagreement; the other parties are told."""
        case = await self.cases.get(case_id)
        self.policy.require_raise(actor, case)
        now = self.clock.now()
        d = Disagreement(
            id=secrets.token_hex(6),
            case_id=case.id,
            raised_by=actor.org_id,
            text=body.text,
            status="open",
            raised_at=now,
        )
        others = [o for o in case.parties() if o != actor.org_id]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.disagreement(d.id),
                mapping={
                    "id": d.id,
                    "case": d.case_id,
                    "raised_by": d.raised_by,
                    "text": d.text,
                    "status": d.status,
                    "raised_at": now.isoformat(),
                },
            )
            pipe.sadd(keys.case_disagreements(case.id), d.id)
            pipe.sadd(keys.OPEN_DISAGREEMENTS, d.id)
            record_change(
                pipe,
                case.id,
                case.version,
                actor,
                now,
                "disagreement_raised",
                EventType.DISAGREEMENT_RAISED,
                {"disagreement": d.id},
                disagreement=d.id,
            )
            pipe.xadd(
                keys.EVENTS,
                notice_event(
                    case.id,
                    case.version,
                    actor,
                    now,
                    Topic.DISAGREEMENT_RAISED.at(d.id),
                    others,
                    # The text stays in the record; the fan-out reads it there (RECORD_TEXTS).
                    {"raised_by": self._name(actor.org_id)},
                ),
            )
            await pipe.execute()
        await self.durability.confirm_field(keys.disagreement(d.id), "id", d.id)
        return d

    async def _transition(
        self,
        disagreement_id: str,
        actor: Actor,
        apply: Callable[[Pipeline, Disagreement, Case, datetime], Disagreement],
    ) -> Disagreement:
        key = keys.disagreement(disagreement_id)

        async def attempt(pipe: Pipeline) -> Disagreement:
            data = await pipe.hgetall(key)
            if not data:
                raise DisagreementNotFound(disagreement_id)
            d = Disagreement.from_hash(data)
            case = await self.cases.get(d.case_id)
            now = self.clock.now()
            pipe.multi()
            updated = apply(pipe, d, case, now)
            await pipe.execute()
            return updated

        return await optimistic(self.redis, [key], attempt)

    async def escalate(
        self, disagreement_id: str, actor: Actor, *, automatic: bool = False, days: int = 0
    ) -> Disagreement:
        """Refer to the management of every party; only a party's supervisor may (or the
        clock, when it has stayed unresolved too long)."""

        def apply(pipe: Any, d: Disagreement, case: Case, now: datetime) -> Disagreement:
            if not automatic:
                self.policy.require_escalate(actor, case)
            if d.status == "resolved":
                raise Conflict("Oenigheten är redan avgjord.")
            if d.status == "escalated":
                raise Conflict("Oenigheten är redan lyft till ledningen.")
            managements = self.managements(case)
            pipe.hset(
                keys.disagreement(d.id),
                mapping={
                    "status": "escalated",
                    "escalated_at": now.isoformat(),
                    "escalated_by": "automatic" if automatic else actor.org_id,
                    "referred_to": json.dumps(managements),
                },
            )
            record_change(
                pipe,
                case.id,
                case.version,
                actor,
                now,
                "disagreement_escalated",
                EventType.DISAGREEMENT_ESCALATED,
                {
                    "disagreement": d.id,
                    "referred_to": managements,
                    "automatic": automatic or None,
                },
                disagreement=d.id,
            )
            told = managements + [o for o in case.parties() if o not in managements]
            pipe.xadd(
                keys.EVENTS,
                notice_event(
                    case.id,
                    case.version,
                    actor,
                    now,
                    Topic.DISAGREEMENT_ESCALATED.at(d.id),
                    told,
                    {
                        "raised_by": self._name(d.raised_by),
                        "automatic": automatic,
                        "days": days,
                        "escalated_by": self._name(actor.org_id),
                        "managements": [self._name(m) for m in managements],
                    },
                ),
            )
            return Disagreement(
                **{
                    **d.__dict__,
                    "status": "escalated",
                    "escalated_at": now,
                    "escalated_by": "automatic" if automatic else actor.org_id,
                    "referred_to": tuple(managements),
                }
            )

        done = await self._transition(disagreement_id, actor, apply)
        assert done.escalated_at is not None
        # The retry of an escalation that was not confirmed finds it escalated (409) if it
        # survived; the automatic one (a timer) then returns quietly.
        await self.durability.confirm_field(
            keys.disagreement(done.id), "escalated_at", done.escalated_at.isoformat()
        )
        return done

    async def resolve(self, disagreement_id: str, body: DecisionIn, actor: Actor) -> Disagreement:
        """A party or management decides; everyone involved is told."""

        def apply(pipe: Any, d: Disagreement, case: Case, now: datetime) -> Disagreement:
            self.policy.require_resolve(actor, case, d.referred_to)
            if d.status == "resolved":
                raise Conflict("Oenigheten är redan avgjord.")
            pipe.hset(
                keys.disagreement(d.id),
                mapping={
                    "status": "resolved",
                    "resolved_at": now.isoformat(),
                    "resolved_by": actor.org_id,
                    "decision": body.decision,
                },
            )
            pipe.srem(keys.OPEN_DISAGREEMENTS, d.id)
            record_change(
                pipe,
                case.id,
                case.version,
                actor,
                now,
                "disagreement_resolved",
                EventType.DISAGREEMENT_RESOLVED,
                {"disagreement": d.id},
                disagreement=d.id,
            )
            told = [o for o in (*case.parties(), *d.referred_to) if o != actor.org_id]
            pipe.xadd(
                keys.EVENTS,
                notice_event(
                    case.id,
                    case.version,
                    actor,
                    now,
                    Topic.DISAGREEMENT_RESOLVED.at(d.id),
                    list(dict.fromkeys(told)),
                    {
                        "raised_by": self._name(d.raised_by),
                        "resolved_by": self._name(actor.org_id),
                    },
                ),
            )
            return Disagreement(
                **{
                    **d.__dict__,
                    "status": "resolved",
                    "resolved_at": now,
                    "resolved_by": actor.org_id,
                    "decision": body.decision,
                }
            )

        done = await self._transition(disagreement_id, actor, apply)
        assert done.resolved_at is not None
        await self.durability.confirm_field(
            keys.disagreement(done.id), "resolved_at", done.resolved_at.isoformat()
        )
        return done
