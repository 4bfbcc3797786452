"""A case's index of packed records, as timers (bot/store/timers.py) and deliveries
(bot/store/deliveries.py) keep them: a hash whose fields name the records and whose values are
the records packed — "" for a record stored the older way, in a hash of its own — beside the
older layout's set of full ids. Reading one is the same for both: the index and the older set
in one round trip (`listing`), the hashes of their own in one more, only when there are any
(`own_hashes`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.store.client import Redis


async def listing(redis: Redis, index: str, older: str) -> tuple[dict[str, str], set[str]]:
    """The index (field -> packed record, or "" for a record with a hash of its own) and the
    older layout's set, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(index)
        pipe.smembers(older)
        listed, members = await pipe.execute()
    return listed, members


async def own_hashes(
    redis: Redis, idents: Sequence[str], key: Callable[[str], str]
) -> dict[str, dict[str, str]]:
    """The records of `idents` kept in a hash of their own (`key` names it), those that exist,
    in one round trip; nothing is asked when there are none."""
    if not idents:
        return {}
    async with redis.pipeline(transaction=False) as pipe:
        for ident in idents:
            pipe.hgetall(key(ident))
        rows: list[dict[str, str]] = await pipe.execute()
    return {ident: row for ident, row in zip(idents, rows, strict=True) if row}
