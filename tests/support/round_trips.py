"""Counting Redis round trips where redis-py writes to the socket: one write is one round trip
(a command sent alone, or a whole pipeline). Works on TCP (the machine's Redis) and on the
embedded server's Unix socket alike."""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis as RedisPy
from redis.asyncio.connection import Connection, UnixDomainSocketConnection

from bot.store import Redis

__all__ = ["Trips", "counting_client", "writes"]

_WRITES = [0]


def writes() -> int:
    """Round trips sent so far by every counting client."""
    return _WRITES[0]


class _Counting(Connection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _WRITES[0] += 1
        await super().send_packed_command(command, check_health)


class _CountingUnix(UnixDomainSocketConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _WRITES[0] += 1
        await super().send_packed_command(command, check_health)


def counting_client(redis_url: str) -> Redis:
    """A client on `redis_url` whose round trips `writes()` and `Trips` count."""
    client = RedisPy.from_url(redis_url, decode_responses=True)
    pool = client.connection_pool
    unix = issubclass(pool.connection_class, UnixDomainSocketConnection)
    pool.connection_class = _CountingUnix if unix else _Counting
    return cast(Redis, client)


class Trips:
    """Round trips made inside `with Trips() as t:` (`t.count`)."""

    def __enter__(self) -> Trips:
        self.start = writes()
        return self

    def __exit__(self, *_: object) -> None:
        self.count = writes() - self.start
