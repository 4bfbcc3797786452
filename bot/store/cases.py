"""The case repository: reads cases and writes the parts every state change shares.

Cases are parsed once here (`Case.from_hash`, `Version.from_json`); callers get typed records.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.domain.actor import Actor
from bot.domain.case import Case, CaseNotFound, Version, event_fields, history_entry
from bot.domain.events import EventType
from bot.store import keys
from bot.store.batching import Coalescer, LuaScript
from bot.store.client import Redis
from bot.store.scripts import hash_reply, register
from bot.store.transaction import Pipeline


def record_change(
    pipe: Pipeline,
    case_id: str,
    version: int,
    actor: Actor,
    at: datetime,
    what: str,
    event: EventType,
    history: dict[str, Any] | None = None,
    **event_extra: str,
) -> None:
    """Queue on `pipe` the two writes of every state change, inside its transaction: the
    case's history line (`what`, with the `history` details) and the event on the stream
    (`event`, with the `event_extra` fields)."""
    line, fields = change_record(case_id, version, actor, at, what, event, history, **event_extra)
    pipe.rpush(keys.case_history(case_id), line)
    pipe.xadd(keys.EVENTS, fields)


def change_record(
    case_id: str,
    version: int,
    actor: Actor,
    at: datetime,
    what: str,
    event: EventType,
    history: dict[str, Any] | None = None,
    **event_extra: str,
) -> tuple[str, dict[str, str]]:
    """What `record_change` writes: the history line and the event's fields (for a script
    that writes them itself, case_register.lua)."""
    return (
        history_entry(what, actor, at, version, **(history or {})),
        event_fields(event, case_id, version, actor, at, **event_extra),
    )


async def read_case(
    redis: Redis, case_id: str, number: int | None = None, *, batch: Coalescer | None = None
) -> tuple[Case, dict[str, str], Version | None]:
    """The case (else CaseNotFound) with its current facts, its hash as stored (for the fields
    `Case` does not hold: booking, clearance, markers of the deadlines) and, with `number`,
    what that version said (None if missing): one round trip (bot/store/lua/case_read.lua).

    The one way to read a case's hash with its facts, which are the current version's
    snapshot's (bot/domain/case.py `Case`). A read inside a WATCH of the case's hash may use
    it: a new version writes the hash and the snapshot in one MULTI. With `batch` (the
    client's `Coalescer`), the script goes with the other commands of this loop turn."""
    if not case_id or len(case_id) > 64:
        raise CaseNotFound(case_id)
    read_keys = [keys.case(case_id), keys.case_versions(case_id)]
    read_args: list[str | int] = [] if number is None else [number]
    if batch is not None:
        flat, current, asked = await batch.script(CASE_READ, read_keys, read_args)
    else:  # e.g. on a connection that WATCHes the case
        flat, current, asked = await register(redis, "case_read")(keys=read_keys, args=read_args)
    data = hash_reply(flat)
    if not data:
        raise CaseNotFound(case_id)
    facts = Version.from_json(current).facts if current is not None else None
    return (
        Case.from_hash(data, facts),
        data,
        None if asked is None else Version.from_json(asked),
    )


CASE_READ = LuaScript.of("case_read")


class CaseStore:
    """Reads cases; shared by the use cases, the fan-out and the senders."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        # Reads of many cases at once (the workers handle entries concurrently) share round
        # trips with each other and with the deliveries' (bot/store/batching.py).
        self._batch = Coalescer.of(redis)
        self._ids = register(redis, "case_ids")

    async def get(self, case_id: str) -> Case:
        """The case, or CaseNotFound."""
        case, _, _ = await read_case(self.redis, case_id, batch=self._batch)
        return case

    async def read(self, case_id: str) -> tuple[Case, dict[str, str]]:
        """The case (else CaseNotFound) and its hash as stored: `read_case`."""
        case, data, _ = await read_case(self.redis, case_id, batch=self._batch)
        return case, data

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
        case, _, version = await read_case(self.redis, case_id, number, batch=self._batch)
        return case, version

    @staticmethod
    def parse_with_version(
        case_id: str, data: dict[str, str], text: str | None
    ) -> tuple[Case, Version | None]:
        """`with_version`'s answer from two replies a caller read in a round trip of its own
        (the case's hash, the version's text: the deliverer's claim). The case's facts are
        the current version's only when that is the version read (or the hash holds them, in
        a case stored before); otherwise they are left empty — the deliverer renders from the
        version, never from the case's facts. A reader that needs them uses `with_version`."""
        if not data:
            raise CaseNotFound(case_id)
        version = None if text is None else Version.from_json(text)
        current = version is not None and str(version.number) == data.get("version")
        return Case.from_hash(data, version.facts if current and version else None), version

    async def acks(self, case_id: str) -> dict[str, dict[str, Any]]:
        """Acknowledgements by "{version}:{org}"."""
        raw = await self.redis.hgetall(keys.case_acks(case_id))
        return {k: json.loads(v) for k, v in raw.items()}

    async def history(self, case_id: str) -> list[dict[str, Any]]:
        """The case's history, oldest first."""
        return [json.loads(x) for x in await self.redis.lrange(keys.case_history(case_id), 0, -1)]

    async def ids(self, *, open_only: bool, municipality: str | None, org: str | None) -> list[str]:
        """Case ids matching a filter, sorted: one round trip (bot/store/lua/case_ids.lua)."""
        lists = [keys.OPEN_CASES if open_only else keys.ALL_CASES]
        # Each filter: its sorted set, and its older layout's set.
        if municipality:
            lists += [
                keys.municipality_case_ids(municipality),
                keys.municipality_cases(municipality),
            ]
        if org:
            lists += [keys.organisation_case_ids(org), keys.organisation_cases(org)]
        return sorted(await self._ids(keys=lists))

    async def marker(self, case_id: str, name: str) -> str | None:
        """A once-only marker of the case (see `keys.case_markers`), or None if not set."""
        value: str | None
        [value] = await self._batch.run(lambda pipe: pipe.hget(keys.case_markers(case_id), name))
        return value
