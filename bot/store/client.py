"""The client as the rest of Ankomst sees it: a typed view of redis-py's decode_responses client.

redis-py's own hints say every reply is `bytes | str`, whatever `decode_responses` is. Ours is
always True (`connection._client_options`), so every reply is `str`. `Redis` and `Pipeline`
below declare exactly the commands this code base issues, with `str` replies; mypy checks every
caller against them. At run time the objects are redis-py's own (`connection.redis_from_url`
casts the client it makes to `Redis`, once): nothing here runs, and no command is wrapped.

A command Ankomst starts to use is added here, with the reply redis-py gives for it when
`decode_responses=True` (look at its response callback, not only at its annotation).

`Pipeline` has two modes, as redis-py's has. While watching (after `watch`, before `multi`) a
command runs at once and is awaited for its reply: those are the reads declared as returning an
`Awaitable` of their reply. After `multi` (or in a `transaction=False` pipeline) a command is
only queued and returns the pipeline; its reply comes from `execute()`. A read that is queued
(`hmget` in a batch) still type-checks; its result is then the list `execute()` returns.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TypeAlias, cast, overload

if TYPE_CHECKING:
    import redis.asyncio
    from redis.asyncio.connection import ConnectionPool

__all__ = [
    "Pipeline",
    "Redis",
    "Script",
    "StreamEntry",
    "Value",
    "redis_py",
]

# What a command may be given as a value (a hash field's value, a script argument, a score):
# redis-py sends numbers as their decimal text.
Value: TypeAlias = str | int | float
# One entry of a stream as XRANGE / XREADGROUP give it: its id and its fields.
StreamEntry: TypeAlias = tuple[str, dict[str, str]]


class Script(Protocol):
    """A Lua script registered with `Redis.register_script` (EVALSHA, loaded on first use).

    Its reply is whatever the script returns (integers, strings, nested lists), so `Any`: the
    caller that knows the script converts it.
    """

    async def __call__(
        self,
        keys: Sequence[str] | None = None,
        args: Iterable[Value] | None = None,
        client: Redis | Pipeline | None = None,
    ) -> Any:
        """Run the script on `client` (default: the client it was registered with)."""
        ...


class Pipeline(Protocol):
    """A MULTI/EXEC pipeline of a decode_responses client (see the module's docstring)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    # -- the optimistic transaction -----------------------------------------------------------

    async def watch(self, *names: str) -> bool:
        """WATCH `names`; the pipeline runs commands at once until `multi()`."""
        ...

    def multi(self) -> None:
        """Start queueing: every command from here on runs at `execute()`, atomically."""
        ...

    async def unwatch(self) -> bool:
        """Give up the watch (the caller decided not to write)."""
        ...

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        """Send what is queued; one reply per queued command, in order. A watched key that
        changed meanwhile raises `WatchError`."""
        ...

    # The queued commands: `len(pipe)` counts them; a batch that must take back what one
    # caller queued (bot/store/batching.py) cuts the stack back.
    command_stack: list[Any]

    def __len__(self) -> int: ...

    # -- reads, awaited while watching ------------------------------------------------------

    def get(self, name: str) -> Awaitable[str | None]: ...

    def hget(self, name: str, key: str) -> Awaitable[str | None]: ...

    def hgetall(self, name: str) -> Awaitable[dict[str, str]]: ...

    def hmget(self, name: str, keys: Sequence[str]) -> Awaitable[list[str | None]]: ...

    def hexists(self, name: str, key: str) -> Awaitable[bool]: ...

    def exists(self, *names: str) -> Awaitable[int]: ...

    def lrange(self, name: str, start: int, end: int) -> Awaitable[list[str]]: ...

    # -- queued (after multi, or in a transaction=False pipeline) ---------------------------

    def execute_command(self, *args: Value) -> Self: ...

    def set(self, name: str, value: Value, *, px: int | None = None, nx: bool = False) -> Self: ...

    def delete(self, *names: str) -> Self: ...

    def expire(self, name: str, time: int) -> Self: ...

    def hset(
        self,
        name: str,
        key: str | None = None,
        value: Value | None = None,
        mapping: Mapping[str, Value] | None = None,
    ) -> Self: ...

    def hsetnx(self, name: str, key: str, value: Value) -> Self: ...

    def hdel(self, name: str, *keys: str) -> Self: ...

    def hincrby(self, name: str, key: str, amount: int = 1) -> Self: ...

    def rpush(self, name: str, *values: Value) -> Self: ...

    def sadd(self, name: str, *values: Value) -> Self: ...

    def srem(self, name: str, *values: Value) -> Self: ...

    def smembers(self, name: str) -> Self: ...

    def scard(self, name: str) -> Self: ...

    def zadd(self, name: str, mapping: Mapping[str, float]) -> Self: ...

    def zrem(self, name: str, *values: str) -> Self: ...

    def zcount(self, name: str, min: float | str, max: float | str) -> Self: ...

    def xadd(self, name: str, fields: Mapping[str, Value]) -> Self: ...

    def xack(self, name: str, groupname: str, *ids: str) -> Self: ...

    def xlen(self, name: str) -> Self: ...


class Redis(Protocol):
    """The store's client: redis-py's `redis.asyncio.Redis` with `decode_responses=True`."""

    @property
    def connection_pool(self) -> ConnectionPool:
        """The pool its connections come from (a `SentinelConnectionPool` under Sentinel)."""
        ...

    async def aclose(self, close_connection_pool: bool | None = None) -> None: ...

    def pipeline(self, transaction: bool = True) -> Pipeline: ...

    def register_script(self, script: str) -> Script: ...

    async def script_load(self, script: str) -> str:
        """Load a Lua script on the server; its SHA."""
        ...

    # A single-connection client's connection (`client()`), once it has sent a command; its
    # `register_connect_callback(method)` is called each time it connects again.
    connection: Any

    def client(self) -> Redis:
        """A client that keeps one connection (for a read another task may CLIENT UNBLOCK)."""
        ...

    # -- server ----------------------------------------------------------------------------

    async def ping(self) -> bool: ...

    async def info(self, section: str | None = None) -> dict[str, Any]: ...

    async def config_get(self, pattern: str = "*") -> dict[str, str]: ...

    async def client_id(self) -> int: ...

    async def client_unblock(self, client_id: int, error: bool = False) -> bool: ...

    # -- keys and strings --------------------------------------------------------------------

    async def exists(self, *names: str) -> int: ...

    async def pexpire(self, name: str, time: int) -> bool: ...

    async def delete(self, *names: str) -> int: ...

    def scan_iter(
        self, match: str | None = None, count: int | None = None
    ) -> AsyncIterator[str]: ...

    async def get(self, name: str) -> str | None: ...

    async def getdel(self, name: str) -> str | None: ...

    async def set(
        self,
        name: str,
        value: Value,
        *,
        ex: int | None = None,
        px: int | None = None,
        nx: bool = False,
    ) -> bool | None:
        """SET; with `nx=True`, None when the key already existed."""
        ...

    # -- hashes ------------------------------------------------------------------------------

    async def hget(self, name: str, key: str) -> str | None: ...

    async def hgetall(self, name: str) -> dict[str, str]: ...

    async def hmget(self, name: str, keys: Sequence[str]) -> list[str | None]: ...

    async def hexists(self, name: str, key: str) -> bool: ...

    async def hset(
        self,
        name: str,
        key: str | None = None,
        value: Value | None = None,
        mapping: Mapping[str, Value] | None = None,
    ) -> int: ...

    async def hsetnx(self, name: str, key: str, value: Value) -> int:
        """1 if the field was set, 0 if it was there already."""
        ...

    async def hincrby(self, name: str, key: str, amount: int = 1) -> int: ...

    # -- lists and sets ----------------------------------------------------------------------

    async def lrange(self, name: str, start: int, end: int) -> list[str]: ...

    async def sadd(self, name: str, *values: Value) -> int: ...

    async def srem(self, name: str, *values: Value) -> int: ...

    async def smembers(self, name: str) -> builtins.set[str]: ...

    async def sismember(self, name: str, value: str) -> int: ...

    async def sinter(self, keys: str | Sequence[str], *args: str) -> builtins.set[str]: ...

    async def sunion(self, keys: str | Sequence[str], *args: str) -> builtins.set[str]: ...

    async def sdiff(self, keys: str | Sequence[str], *args: str) -> builtins.set[str]: ...

    # -- sorted sets -------------------------------------------------------------------------

    @overload
    async def zrange(
        self, name: str, start: int, end: int, *, withscores: Literal[True]
    ) -> list[tuple[str, float]]: ...

    @overload
    async def zrange(
        self, name: str, start: int, end: int, *, withscores: Literal[False] = False
    ) -> list[str]: ...

    async def zrangebyscore(
        self,
        name: str,
        min: float | str,
        max: float | str,
        start: int | None = None,
        num: int | None = None,
    ) -> list[str]: ...

    # -- streams -----------------------------------------------------------------------------

    async def xadd(self, name: str, fields: Mapping[str, Value]) -> str: ...

    async def xrange(
        self, name: str, min: str = "-", max: str = "+", count: int | None = None
    ) -> list[StreamEntry]: ...

    async def xdel(self, name: str, *ids: str) -> int: ...

    async def xtrim(self, name: str, *, minid: str, approximate: bool = True) -> int: ...

    async def xgroup_create(
        self, name: str, groupname: str, id: str = "$", mkstream: bool = False
    ) -> bool: ...

    async def xreadgroup(
        self,
        groupname: str,
        consumername: str,
        streams: Mapping[str, str],
        count: int | None = None,
        block: int | None = None,
    ) -> list[tuple[str, list[StreamEntry]]]:
        """New entries, per stream (`[stream, entries]`; empty when BLOCK ran out)."""
        ...

    async def xack(self, name: str, groupname: str, *ids: str) -> int: ...

    async def xautoclaim(
        self,
        name: str,
        groupname: str,
        consumername: str,
        min_idle_time: int,
        start_id: str = "0-0",
        count: int | None = None,
    ) -> list[Any]:
        """`[next start id, [(id, fields or None if deleted meanwhile)...], deleted ids]`."""
        ...

    async def xpending(self, name: str, groupname: str) -> dict[str, Any]: ...

    async def xpending_range(
        self, name: str, groupname: str, min: str, max: str, count: int
    ) -> list[dict[str, Any]]: ...

    async def xinfo_groups(self, name: str) -> list[dict[str, Any]]: ...


def redis_py(client: Redis) -> redis.asyncio.Redis:
    """The redis-py client behind `client`, for a library that takes one itself (aiogram's
    `RedisStorage`). The object is the same; only its static type changes."""
    return cast("redis.asyncio.Redis", client)
