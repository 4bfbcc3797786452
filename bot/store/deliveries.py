"""The delivery repository: create once, claim, read and record deliveries.

Records are parsed once here (`Delivery.from_hash`), so the pipeline works with typed fields.
A record holds only what its id does not name (bot/domain/delivery.py `stored_fields`); rows
read here come back with those fields filled in (`delivery_row`).

A claim is taken with a token of its taker's own (`claim`), renewed only while it is still that
token's (`renew`, bot/store/lua/claim_renew.lua) and given up the same way (`release`,
`finish`), so a worker whose claim lapsed can never extend or delete another worker's claim.

A case's deliveries are indexed in a hash (`keys.case_delivery_ids`) whose fields are their ids
without the leading "{case_id}:", and each field's value is the delivery's record, packed
(bot/domain/delivery.py `pack_items`, `unpack`; the scripts merge fields into it,
bot/store/lua/delivery_lib.lua), so that a case's deliveries are one small hash (a listpack)
where they were a hash each. Records of the older layouts, a hash of their own
(`keys.delivery`) listed with the value "" or in the older set of full ids
(`keys.case_deliveries`), are read, claimed and recorded as before. A delivery is made by
`create_many` (`create` is it for one). `case_delivery_ids` and
`case_delivery_rows` are the places that list them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from bot.domain.delivery import SHARED, Delivery, delivery_row, pack_items, stored_fields, unpack
from bot.store import keys
from bot.store.batching import Coalescer, LuaScript
from bot.store.client import Redis
from bot.store.packed_index import listing, own_hashes
from bot.store.scripts import hash_reply, register

FINISH = LuaScript.of("delivery_lib", "delivery_finish")
UPDATE = LuaScript.of("delivery_lib", "delivery_update")
RELAY = LuaScript.of("delivery_lib", "delivery_relay")
CLAIM = LuaScript.of("delivery_claim")
CREATE_MANY = LuaScript.of("delivery_lib", "delivery_create_many")


def _prefix_length(case_id: str, idents: Sequence[str]) -> int:
    """How many characters of each id the case's index leaves out: "{case_id}:", which every
    delivery id begins with (bot/domain/delivery.py `delivery_id`). An id that does not would
    be listed back under another id, so it is refused before anything is written."""
    prefix = f"{case_id}:"
    for ident in idents:
        if not ident.startswith(prefix) or ident == prefix:
            raise ValueError(f"delivery {ident!r} is not of case {case_id!r}")
    return len(prefix)


def _places(ident: str) -> tuple[str, str, str]:
    """Where delivery `ident`'s record may be: its own hash (the older layouts), its case's
    index (the case its id begins with) and its field there (the id without "{case}:")."""
    case_id, _, short = ident.partition(":")
    return keys.delivery(ident), keys.case_delivery_ids(case_id), short


def _stored(
    ident: str, packed: str | None, shared: str | None, own: dict[str, str]
) -> dict[str, str]:
    """A record as a hash of its own holds it: unpacked, or its own hash; {} if none."""
    return unpack(ident, packed, shared) if packed else own


def _changes(ident: str, fields: Mapping[str, str]) -> list[str]:
    """A record's new fields as the scripts take them (delivery_lib.lua `delivery_record`):
    the count of field/value pairs and the pairs (for a hash of its own), the count of packed
    items and the items."""
    items = pack_items(ident, fields)
    flat = [x for pair in fields.items() for x in pair]
    return [str(len(flat)), *flat, str(len(items)), *items]


async def _listing(redis: Redis, case_id: str) -> tuple[dict[str, str], set[str]]:
    """A case's index (short id -> packed record, "" for one with a hash of its own; and
    `SHARED`) and the older layout's set of full ids, in one round trip."""
    return await listing(redis, keys.case_delivery_ids(case_id), keys.case_deliveries(case_id))


async def case_delivery_ids(redis: Redis, case_id: str) -> list[str]:
    """The full ids of every delivery made for a case, sorted, in one round trip: its index
    hash (ids without the case's prefix) and the set the older layout kept (full ids)."""
    listed, older = await _listing(redis, case_id)
    return sorted({*(f"{case_id}:{short}" for short in listed if short != SHARED), *older})


async def case_delivery_rows(redis: Redis, case_id: str) -> list[tuple[str, dict[str, str]]]:
    """Every delivery of a case as (id, its record as stored: `delivery_row` completes it),
    by id: the packed ones with its index, in one round trip; those with a hash of their own
    (the older layouts) in one more, only when there are any."""
    listed, older = await _listing(redis, case_id)
    shared = listed.get(SHARED)
    found = {
        f"{case_id}:{short}": unpack(f"{case_id}:{short}", packed, shared)
        for short, packed in listed.items()
        if packed and short != SHARED
    }
    own = sorted({*(f"{case_id}:{s}" for s, v in listed.items() if not v), *older} - set(found))
    found.update(await own_hashes(redis, own, keys.delivery))
    return sorted(found.items())


class DeliveryStore:
    """Reads and writes delivery records and their claims."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._renew = register(redis, "claim_renew")
        self._release = register(redis, "claim_release")
        # Claims, marks and records of deliveries handled at once go out together.
        self._batch = Coalescer.of(redis)

    async def create(
        self, ident: str, case_id: str, outbox: str, fields: Mapping[str, str]
    ) -> bool:
        """Store the record, index it under its case and queue its send on `outbox`, in one
        step and only if it does not exist yet; whether it was made. Of `fields` only what
        the id does not name is stored (`stored_fields`). ValueError if `ident` does not begin
        with "{case_id}:"."""
        [made] = await self.create_many(case_id, [(ident, outbox, fields)])
        return made

    async def get(self, ident: str) -> Delivery | None:
        """The delivery, or None if there is no such record."""
        data = await self._read(ident)
        return Delivery.from_hash(ident, data) if data else None

    async def _read(self, ident: str) -> dict[str, str]:
        """The record as stored (`_stored`), in one round trip."""
        own, index, short = _places(ident)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(index, [short, SHARED])
            pipe.hgetall(own)
            (packed, shared), data = await pipe.execute()
        return _stored(ident, packed, shared, data)

    async def claim(
        self, ident: str, token: str, ms: int, case: tuple[str, int] | None
    ) -> tuple[bool, Delivery | None, tuple[dict[str, str], str | None] | None]:
        """Try to take the delivery's claim (SET NX PX) and read the record, in one script
        (bot/store/lua/delivery_claim.lua) sent with the other deliveries' claims of this
        loop turn; with `case` (case id,
        version), the case's hash and that version's text in the same round trip, for the
        deliverer to render from without asking again. (claimed, the delivery or None, the
        case's two replies or None.) The read runs after the SET, so when the claim is ours the
        status it shows cannot change under us. A record that cannot be read gives the claim
        back and raises."""
        own, index, short = _places(ident)
        claim_keys = [keys.delivery_claim(ident), index, own]
        args: list[str | int] = [token, ms, short, SHARED]
        if case is not None:
            claim_keys += [keys.case(case[0]), keys.case_versions(case[0])]
            args.append(str(case[1]))
        reply = await self._batch.script(CLAIM, claim_keys, args)
        claimed, packed, shared = reply[0] == 1, reply[1], reply[2]
        try:
            data = _stored(ident, packed, shared, hash_reply(reply[3]))
            d = Delivery.from_hash(ident, data) if data else None
        except Exception:
            if claimed:
                await self.release(ident)
            raise
        return claimed, d, (hash_reply(reply[4]), reply[5]) if case is not None else None

    async def renew(self, ident: str, token: str, ms: int) -> bool:
        """Extend the delivery's claim to `ms` from now if it is still held with `token`;
        False when it has lapsed or another worker holds it."""
        renewed = await self._renew(keys=[keys.delivery_claim(ident)], args=[token, ms])
        return bool(int(renewed))

    async def release(self, ident: str, token: str | None = None) -> None:
        """Give up the delivery's claim: only if still held with `token`, when given."""
        if token is None:
            await self.redis.delete(keys.delivery_claim(ident))
        else:
            await self._release(keys=[keys.delivery_claim(ident)], args=[token])

    async def add_relay_attempts(self, ident: str, count: int) -> int:
        """Add `count` attempts that failed on the relay (not on the message); the total."""
        own, index, short = _places(ident)
        return int(await self._batch.script(RELAY, [own, index], [short, count]))

    async def update(self, ident: str, **fields: str) -> None:
        """Record fields of the delivery, keeping the claim (e.g. "sending"); batched with
        the other deliveries' writes of this loop turn. Nothing is written when there is no
        such delivery."""
        own, index, short = _places(ident)
        await self._batch.script(UPDATE, [own, index], [short, *_changes(ident, fields)])

    async def finish(
        self,
        ident: str,
        fields: Mapping[str, str],
        event: Mapping[str, str] | None = None,
        *,
        token: str | None = None,
        dead_letter: Mapping[str, str] | None = None,
    ) -> None:
        """Record an outcome, write its event (if any), move its outbox entry to the
        dead-letter stream (if given: `stream`, `entry`, `error`, `fields`) and give up the
        claim (only if still held with `token`, when given), atomically: one Lua script
        (bot/store/lua/delivery_finish.lua), batched with the other deliveries' of this turn."""
        own, index, short = _places(ident)
        args: list[str] = [token or "", short, *_changes(ident, fields)]
        for group in (event or {}, dead_letter or {}):
            args.append(str(2 * len(group)))
            for name, value in group.items():
                args += (name, value)
        await self._batch.script(
            FINISH, [own, index, keys.delivery_claim(ident), keys.EVENTS, keys.DEAD_LETTER], args
        )

    @staticmethod
    def dead_letter(
        stream: str, entry_id: str, entry: Mapping[str, str], error: str
    ) -> dict[str, str]:
        """A dead-letter entry for an outbox entry given up (as `StreamConsumer` writes them)."""
        return {
            "stream": stream,
            "entry": entry_id,
            "error": error[:2000],
            "fields": json.dumps(dict(entry), ensure_ascii=False),
        }

    async def raw(self, ident: str) -> dict[str, str]:
        """The record's fields unparsed, with those its id names (`delivery_row`); {} when
        there is none: for the dead-letter path, which must mark even a record it cannot read
        as failed."""
        data = await self._read(ident)
        return delivery_row(ident, data) if data else {}

    async def of_case(self, case_id: str) -> list[Delivery]:
        """Every delivery of a case, oldest first."""
        rows = await case_delivery_rows(self.redis, case_id)
        found = [Delivery.from_hash(i, r) for i, r in rows]
        return sorted(found, key=lambda d: (d.queued_at.isoformat() if d.queued_at else "", d.id))

    async def create_many(
        self,
        case_id: str,
        items: Sequence[tuple[str, str, Mapping[str, str]]],
        per_call: int = 200,
    ) -> list[bool]:
        """`create` for several deliveries of one case — each (id, outbox, fields) — in one
        round trip per `per_call` of them (bot/store/lua/delivery_create_many.lua; an event's
        deliveries are far fewer): each is stored, indexed and queued, in the order given, only
        if it does not exist yet; of its fields only what the id does not name
        (`stored_fields`). Whether each was made, in order. ValueError, before anything is
        written, if an id does not begin with "{case_id}:"."""
        skip = _prefix_length(case_id, [ident for ident, _, _ in items])
        made: list[bool] = []
        for start in range(0, len(items), per_call):
            batch = items[start : start + per_call]
            names = [keys.case_delivery_ids(case_id)]
            args: list[str | int] = [skip]
            for ident, outbox, fields in batch:
                stored = stored_fields(ident, fields)
                if not stored:
                    raise ValueError(f"delivery {ident}: no fields to store")
                packed = pack_items(ident, stored)
                names += [keys.delivery(ident), outbox]
                args += [ident, len(packed), *packed]
            replies = await self._batch.script(CREATE_MANY, names, args)
            made += [bool(int(r)) for r in replies]
        return made
