"""Cases and their use cases: register, change, cancel, acknowledge, read.

Every state change writes the case, its history entry and its event in one MULTI/EXEC, so a
caller is answered only after all three are stored, and a crash leaves either all or nothing.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from bot.domain.arrival import ArrivalIn, ArrivalPatch, InvalidInput
from bot.domain.clock import Clock
from bot.domain.directory import Directory, RoutingError
from bot.domain.policy import Forbidden as Forbidden  # re-exported: callers catch it here
from bot.domain.policy import Policy
from bot.store import keys
from bot.usecases.access import Actor

T = TypeVar("T")
CaseStatus = Literal["open", "cancelled"]
AckOutcome = Literal["recorded", "already", "stale", "cancelled", "not_recipient"]


class CaseNotFound(Exception):
    """No case with that id (or reference)."""


class Conflict(Exception):
    """The request contradicts what is stored; the message says how, in Swedish."""


@dataclass(frozen=True)
class Version:
    """What one version of a case said, and why it came to be."""

    number: int
    kind: Literal["new", "changed", "cancelled"]
    facts: dict[str, Any]
    at: datetime
    by: str
    via: str
    changes: tuple[dict[str, Any], ...] = ()
    reason: str = ""

    def to_json(self) -> str:
        """Serialise for the versions hash."""
        return json.dumps(
            {
                "number": self.number,
                "kind": self.kind,
                "facts": self.facts,
                "at": self.at.isoformat(),
                "by": self.by,
                "via": self.via,
                "changes": list(self.changes),
                "reason": self.reason,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Version:
        """Read back from the versions hash."""
        data = json.loads(text)
        return cls(
            number=int(data["number"]),
            kind=data["kind"],
            facts=data["facts"],
            at=datetime.fromisoformat(data["at"]),
            by=data["by"],
            via=data["via"],
            changes=tuple(data.get("changes", ())),
            reason=data.get("reason", ""),
        )


@dataclass(frozen=True)
class Case:
    """A case as stored: the current facts and who is on it."""

    id: str
    reference: str
    external_ref: str
    municipality: str
    reception_unit: str
    status: CaseStatus
    version: int
    created_at: datetime
    updated_at: datetime
    recipients: tuple[str, ...]
    facts: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""

    @property
    def arrival_date(self) -> date:
        """The current arrival date."""
        return date.fromisoformat(self.facts["arrival_date"])

    @property
    def ages(self) -> list[int]:
        """The children's ages."""
        return [int(c["age"]) for c in self.facts["children"]]

    def parties(self) -> tuple[str, ...]:
        """Every organisation on the case: the reception unit and the recipients."""
        return (self.reception_unit, *self.recipients)

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> Case:
        """Build from the case hash."""
        return cls(
            id=data["id"],
            reference=data["reference"],
            external_ref=data["external_ref"],
            municipality=data["municipality"],
            reception_unit=data["reception_unit"],
            status="cancelled" if data["status"] == "cancelled" else "open",
            version=int(data["version"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            recipients=tuple(json.loads(data["recipients"])),
            facts=json.loads(data["facts"]),
            content_hash=data.get("content_hash", ""),
        )

    def to_hash(self) -> dict[str, str]:
        """Fields for the case hash."""
        return {
            "id": self.id,
            "reference": self.reference,
            "external_ref": self.external_ref,
            "municipality": self.municipality,
            "reception_unit": self.reception_unit,
            "status": self.status,
            "version": str(self.version),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "recipients": json.dumps(list(self.recipients)),
            "facts": json.dumps(self.facts, ensure_ascii=False),
            "content_hash": self.content_hash,
        }


def content_hash(arrival: ArrivalIn) -> str:
    """A fingerprint of what was registered, to tell a replay from a different request."""
    canonical = json.dumps(arrival.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def history_entry(what: str, actor: Actor, at: datetime, version: int, **extra: Any) -> str:
    """One line of a case's history: who, what, when, through which channel."""
    entry = {
        "at": at.isoformat(),
        "what": what,
        "by": actor.org_id,
        "via": actor.via,
        "who": actor.who,
        "version": version,
    }
    entry.update({k: v for k, v in extra.items() if v is not None})
    return json.dumps(entry, ensure_ascii=False)


def event_fields(
    kind: str, case_id: str, version: int, actor: Actor, at: datetime, **extra: str
) -> dict[str, str]:
    """The fields of one event on the stream."""
    return {
        "type": kind,
        "case": case_id,
        "version": str(version),
        "at": at.isoformat(),
        "by": actor.org_id,
        "via": actor.via,
        **extra,
    }


def record_change(
    pipe: Pipeline,
    case_id: str,
    version: int,
    actor: Actor,
    at: datetime,
    what: str,
    event: str,
    history: dict[str, Any] | None = None,
    **event_extra: str,
) -> None:
    """Queue on `pipe` the two writes of every state change, inside its transaction: the
    case's history line (`what`, with the `history` details) and the event on the stream
    (`event`, with the `event_extra` fields)."""
    pipe.rpush(
        keys.case_history(case_id), history_entry(what, actor, at, version, **(history or {}))
    )
    pipe.xadd(keys.EVENTS, event_fields(event, case_id, version, actor, at, **event_extra))


def notice_event(
    case_id: str,
    version: int,
    actor: Actor,
    at: datetime,
    topic: str,
    orgs: list[str],
    params: dict[str, Any],
) -> dict[str, str]:
    """An event the fan-out turns into one status message per channel of each organisation."""
    return event_fields(
        "notice",
        case_id,
        version,
        actor,
        at,
        topic=topic,
        orgs=json.dumps(orgs),
        params=json.dumps(params, ensure_ascii=False, default=str),
    )


class CaseStore:
    """Reads cases; shared by the use cases, the fan-out and the senders."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def get(self, case_id: str) -> Case:
        """The case, or CaseNotFound."""
        if not case_id or len(case_id) > 64:
            raise CaseNotFound(case_id)
        data = await self.redis.hgetall(keys.case(case_id))
        if not data:
            raise CaseNotFound(case_id)
        return Case.from_hash(data)

    async def by_reference(self, reference: str) -> Case:
        """The case with a human reference (OSD-2026-0001), or CaseNotFound."""
        case_id = await self.redis.get(keys.case_by_reference(reference.strip().upper()))
        if not case_id:
            raise CaseNotFound(reference)
        return await self.get(case_id)

    async def version(self, case_id: str, number: int) -> Version:
        """What version `number` of the case said."""
        text = await self.redis.hget(keys.case_versions(case_id), str(number))
        if text is None:
            raise CaseNotFound(f"{case_id} v{number}")
        return Version.from_json(text)

    async def with_version(self, case_id: str, number: int) -> tuple[Case, Version | None]:
        """The case (else CaseNotFound) and what its version `number` said (None if that is
        missing), in one round trip."""
        if not case_id or len(case_id) > 64:
            raise CaseNotFound(case_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.case(case_id))
            pipe.hget(keys.case_versions(case_id), str(number))
            data, text = await pipe.execute()
        if not data:
            raise CaseNotFound(case_id)
        return Case.from_hash(data), None if text is None else Version.from_json(text)

    async def acks(self, case_id: str) -> dict[str, dict[str, Any]]:
        """Acknowledgements by "{version}:{org}"."""
        raw = await self.redis.hgetall(keys.case_acks(case_id))
        return {k: json.loads(v) for k, v in raw.items()}

    async def history(self, case_id: str) -> list[dict[str, Any]]:
        """The case's history, oldest first."""
        return [json.loads(x) for x in await self.redis.lrange(keys.case_history(case_id), 0, -1)]

    async def ids(self, *, open_only: bool, municipality: str | None, org: str | None) -> list[str]:
        """Case ids matching a filter."""
        sets = [keys.OPEN_CASES if open_only else keys.ALL_CASES]
        if municipality:
            sets.append(keys.municipality_cases(municipality))
        if org:
            sets.append(keys.organisation_cases(org))
        return sorted(await self.redis.sinter(sets))


class CaseService:
    """The use cases every inbound path (API, chat, intake stream) calls."""

    def __init__(self, redis: Redis, directory: Directory, clock: Clock, zone: ZoneInfo) -> None:
        self.redis = redis
        self.directory = directory
        self.clock = clock
        self.zone = zone  # reference years follow the local calendar
        self.store = CaseStore(redis)
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

        async def attempt(pipe: Pipeline) -> tuple[Case, bool]:
            existing = await pipe.get(ref_key)
            if existing:
                await pipe.unwatch()
                case = await self.store.get(existing)
                if case.content_hash != fingerprint:
                    raise Conflict(
                        "external_ref finns redan för ett ärende med annat innehåll "
                        f"({case.reference})."
                    )
                return case, False
            now = self.clock.now()
            local_year = now.astimezone(self.zone).year
            sequence = await self.redis.incr(keys.reference_sequence(municipality.code, local_year))
            case = Case(
                id=secrets.token_hex(8),
                reference=f"{municipality.code}-{local_year}-{sequence:04d}",
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
            pipe.multi()
            pipe.set(ref_key, case.id)
            pipe.set(keys.case_by_reference(case.reference), case.id)
            pipe.hset(keys.case(case.id), mapping=case.to_hash())
            pipe.hset(keys.case_versions(case.id), "1", version.to_json())
            pipe.sadd(keys.ALL_CASES, case.id)
            pipe.sadd(keys.OPEN_CASES, case.id)
            pipe.sadd(keys.municipality_cases(case.municipality), case.id)
            for org_id in case.parties():
                pipe.sadd(keys.organisation_cases(org_id), case.id)
            record_change(
                pipe,
                case.id,
                1,
                actor,
                now,
                "registered",
                "case.registered",
                {"reference": case.reference},
            )
            await pipe.execute()
            return case, True

        return await optimistic(self.redis, [ref_key], attempt)

    # -- change and cancel -------------------------------------------------------------------

    async def _new_version(
        self,
        case_id: str,
        actor: Actor,
        build: Callable[[Case, datetime], Version | None],
        event: str,
        what: str,
    ) -> Case:
        """Write a new version (change or cancellation) with its history and event, atomically."""
        case_key = keys.case(case_id)

        async def attempt(pipe: Pipeline) -> Case:
            data = await pipe.hgetall(case_key)
            if not data:
                raise CaseNotFound(case_id)
            case = Case.from_hash(data)
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
            await pipe.execute()
            return updated

        return await optimistic(self.redis, [case_key], attempt)

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

        return await self._new_version(case_id, actor, build, "case.changed", "changed")

    async def cancel(self, case_id: str, reason: str, actor: Actor) -> Case:
        """Cancel the arrival: a last version that tells everyone INSTÄLLD."""

        def build(case: Case, now: datetime) -> Version:
            return Version(
                case.version + 1, "cancelled", case.facts, now, actor.org_id, actor.via, (), reason
            )

        return await self._new_version(case_id, actor, build, "case.cancelled", "cancelled")

    # -- acknowledge -------------------------------------------------------------------------

    async def acknowledge(
        self, case_id: str, org_id: str, actor: Actor, version: int | None = None
    ) -> tuple[AckOutcome, Case]:
        """Record that `org_id` has understood a version; once per organisation and version."""
        case_key = keys.case(case_id)

        async def attempt(pipe: Pipeline) -> tuple[AckOutcome, Case]:
            data = await pipe.hgetall(case_key)
            if not data:
                raise CaseNotFound(case_id)
            case = Case.from_hash(data)
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
            if await pipe.hexists(keys.case_acks(case_id), field):
                await pipe.unwatch()
                return "already", case
            acked = await pipe.hmget(
                keys.case_acks(case_id), [f"{number}:{o}" for o in case.recipients]
            )
            now = self.clock.now()
            ack = {"at": now.isoformat(), "via": actor.via, "who": actor.who}
            pipe.multi()
            pipe.hset(keys.case_acks(case_id), field, json.dumps(ack))
            record_change(
                pipe,
                case_id,
                number,
                actor,
                now,
                "acknowledged",
                "case.acknowledged",
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
                    pipe, case_id, number, actor, now, "all_acknowledged", "case.all_acknowledged"
                )
            await pipe.execute()
            return "recorded", case

        return await optimistic(self.redis, [case_key, keys.case_acks(case_id)], attempt)


async def optimistic(
    redis: Redis, watched: list[str], attempt: Callable[[Pipeline], Awaitable[T]]
) -> T:
    """Run `attempt` under WATCH of `watched` until its MULTI/EXEC commits untouched.

    Every use case that reads state, decides and writes goes through here, so a concurrent
    writer makes it read and decide again instead of overwriting what it did not see.
    """
    while True:
        async with redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*watched)
                return await attempt(pipe)
            except WatchError:
                continue  # someone wrote a watched key meanwhile: read and decide again
