"""Durable before answered, replicated before acted on: Redis's `WAIT` after a write.

Under Sentinel a write that the master took but no replica has yet can be lost in a failover:
the replica that is promoted never saw it, and the old master throws it away when it rejoins
as a replica. So, with `ANKOMST_REDIS_MIN_REPLICAS` > 0:

- a use case confirms its transaction on that many replicas before it answers (201/200); when
  it cannot, it raises `NotDurable` (a store fault: the API answers 503 with Retry-After) — the
  write may or may not survive, and the caller's retry with the same `external_ref` is
  idempotent;
- a worker confirms a stream entry before it acts on it, so no message goes out for an event
  (and so a case) that a failover could still take back.

Why a probe and a witness rather than `WAIT` on the transaction's own connection: redis-py gives
a MULTI/EXEC pipeline's connection back to the pool as soon as EXEC has answered, and `WAIT`
only waits for the writes of the connection it is sent on. Replication is one ordered stream,
so a write made *after* EXEC answered comes after the transaction in it; `WAIT` on that write
covers the transaction too — provided it went to the same server. The witness (a read of what
the transaction wrote, on the probe's connection) checks exactly that: if the pool has moved to
another server meanwhile, the witness is there only if that server has it already (from
replication), and the probe's `WAIT` then covers it there. One round trip: SET probe, witness,
WAIT, pipelined on one connection.

With `min_replicas` 0 (a single server, the default) nothing is sent and nothing is checked.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from bot.store import keys
from bot.store.client import Redis

__all__ = ["Durability", "NotDurable", "StoreCheck", "inspect_store"]

log = logging.getLogger(__name__)

# The probe key only exists to be written; it expires by itself.
PROBE_TTL_MS = 60_000

StreamHandler = Callable[[str, dict[str, str]], Awaitable[bool]]


class NotDurable(RedisConnectionError):
    """A write could not be confirmed on enough replicas in time (or the server it went to is
    no longer the master). A store fault, not the request's: answer 503, retry later."""


@dataclass(frozen=True)
class Durability:
    """Confirms writes on `min_replicas` replicas within `timeout_ms` (off when 0)."""

    redis: Redis
    min_replicas: int = 0
    timeout_ms: int = 1000

    @property
    def on(self) -> bool:
        """Whether writes are confirmed at all."""
        return self.min_replicas > 0

    async def confirm_value(self, key: str, value: str) -> None:
        """Confirm that the string `key` holds `value` on enough replicas, or NotDurable."""
        await self._confirm(("GET", key), lambda got: got == value, key)

    async def confirm_field(self, key: str, field: str, value: str | None = None) -> None:
        """Confirm that hash `key` has `field` (= `value`, if given) on enough replicas, or
        NotDurable."""

        def holds(got: Any) -> bool:
            return got is not None and (value is None or got == value)

        await self._confirm(("HGET", key, field), holds, f"{key} {field}")

    async def confirm_entry(self, stream: str, entry_id: str, fields: dict[str, str]) -> None:
        """Confirm that the stream entry (these very fields) is on enough replicas."""

        def same(got: Any) -> bool:
            return bool(got) and got[0][0] == entry_id and dict(got[0][1]) == fields

        await self._confirm(("XRANGE", stream, entry_id, entry_id), same, f"{stream} {entry_id}")

    def replicated(self, stream: str, handler: StreamHandler) -> StreamHandler:
        """`handler`, called only for entries already on enough replicas.

        An entry not yet confirmed raises NotDurable: the consumer leaves it pending and takes
        it again after the claim time, when the failover has settled one way or the other.
        """
        if not self.on:
            return handler

        async def handle(entry_id: str, fields: dict[str, str]) -> bool:
            await self.confirm_entry(stream, entry_id, fields)
            return await handler(entry_id, fields)

        return handle

    async def _confirm(
        self, witness: tuple[str, ...], holds: Callable[[Any], bool], what: str
    ) -> None:
        if not self.on:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(keys.DURABILITY_PROBE, secrets.token_hex(4), px=PROBE_TTL_MS)
            pipe.execute_command(*witness)
            pipe.execute_command("WAIT", self.min_replicas, self.timeout_ms)
            try:
                probe, seen, replicas = await pipe.execute(raise_on_error=False)
            except RedisConnectionError as exc:
                # redis-py turns READONLY on a Sentinel-managed connection into a lost
                # connection ("the previous master is now a slave").
                await self._forget_master()
                raise NotDurable(f"{what}: {exc}") from exc
        if isinstance(probe, ResponseError):
            # READONLY: this server is a replica now (a demoted master). NOREPLICAS: it has
            # too few replicas for min-replicas-to-write. Either way the pool is stale.
            await self._forget_master()
            raise NotDurable(f"{what}: the probe write was refused ({probe})")
        if isinstance(seen, Exception) or not holds(seen):
            await self._forget_master()
            raise NotDurable(f"{what}: not on the server the probe reached (a failover?)")
        if isinstance(replicas, Exception) or int(replicas) < self.min_replicas:
            await self._forget_master()
            raise NotDurable(
                f"{what}: on {replicas} of {self.min_replicas} replica(s) "
                f"after {self.timeout_ms} ms"
            )

    async def _forget_master(self) -> None:
        """Drop the idle pooled connections, so the next command asks the Sentinels afresh
        where the master is instead of writing on to one that may be on its way out."""
        pool = self.redis.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            pool.master_address = None
            await pool.disconnect(inuse_connections=False)


# What deploy/README.md ("Redis under Sentinel") asks for, checked at start where visible.
MAX_DOWN_AFTER_MS = 30_000


@dataclass(frozen=True)
class StoreCheck:
    """What the start-up look at the store found."""

    problems: tuple[str, ...]


async def inspect_store(redis: Redis, *, min_replicas: int) -> StoreCheck:
    """Look at the server's (and the Sentinels') settings as far as we may see them.

    `problems` lists settings that break the promise that an answered write survives a
    failover; the caller logs them in one line. A refused CONFIG GET (an ACL without @admin)
    is itself reported, since then nothing can be checked. (A Redis Cluster node never gets
    here: `open_store` refuses it, for every command.)
    """
    problems: list[str] = []
    pool = redis.connection_pool
    sentinel = isinstance(pool, SentinelConnectionPool)
    if sentinel and min_replicas < 1:
        problems.append(
            "ANKOMST_REDIS_MIN_REPLICAS is 0 under Sentinel: an answered write can be lost "
            "in a failover (set 1)"
        )
    replication = await redis.info("replication")
    connected = int(replication.get("connected_slaves", 0))
    if connected < min_replicas:
        problems.append(
            f"{connected} replica(s) connected, ANKOMST_REDIS_MIN_REPLICAS={min_replicas}: "
            "writes will be answered 503 until enough replicas are back"
        )
    try:
        config: dict[str, str] = {}
        for name in ("appendonly", "maxmemory-policy", "min-replicas-to-write"):
            config.update(await redis.config_get(name))
    except ResponseError as exc:
        problems.append(f"cannot check the Redis settings (CONFIG GET refused: {exc})")
    else:
        if config.get("appendonly") != "yes":
            problems.append("appendonly is not yes")
        if config.get("maxmemory-policy", "noeviction") != "noeviction":
            problems.append(f"maxmemory-policy is {config['maxmemory-policy']}, not noeviction")
        if sentinel and int(config.get("min-replicas-to-write", 0) or 0) < 1:
            problems.append("min-replicas-to-write is 0 on the master (set 1)")
    if isinstance(pool, SentinelConnectionPool):  # `sentinel`, spelled so that mypy narrows
        problems.extend(await _sentinel_problems(pool))
    return StoreCheck(problems=tuple(problems))


async def _sentinel_problems(pool: SentinelConnectionPool) -> list[str]:
    for sentinel in pool.sentinel_manager.sentinels:
        try:
            state = await sentinel.sentinel_master(pool.service_name)
        except Exception:  # noqa: S112 - any Sentinel that answers will do
            continue
        problems = []
        down_after = int(state.get("down-after-milliseconds", 0))
        if down_after > MAX_DOWN_AFTER_MS:
            problems.append(
                f"Sentinel down-after-milliseconds is {down_after} (at most {MAX_DOWN_AFTER_MS})"
            )
        if int(state.get("num-other-sentinels", 0)) < 2:
            problems.append("fewer than three Sentinels know the master")
        return problems
    return ["no Sentinel answered SENTINEL MASTER"]
