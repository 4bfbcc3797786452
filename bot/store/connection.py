"""The connection to the system of record: a Redis/Valkey client, made once at start.

`open_store(settings)` uses ANKOMST_REDIS_URL when set (`redis://`, `rediss://`, `unix://`,
`redis+sentinel://`), else starts the embedded Valkey in `$ANKOMST_DATA_DIR/valkey`.

Timeout pitfall: redis-py applies `socket_timeout` to every read, including the reply to a
blocking command. An `XREADGROUP ... BLOCK ms` (or BLPOP/BZPOPMIN) that waits longer than
`socket_timeout` ends in a `TimeoutError` instead of an empty reply, and the connection is
thrown away. So blocking reads must use `BLOCK` below `SOCKET_TIMEOUT`; `MAX_BLOCK_MS` is the
longest block that is safe with the clients made here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, unquote, urlsplit

from hiredis import pack_command as hiredis_pack_command
from redis._parsers.hiredis import NOT_ENOUGH_DATA as HIREDIS_NOT_ENOUGH_DATA
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialWithJitterBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.store import client
from bot.store.embedded import EmbeddedValkey

__all__ = [
    "CLUSTER_REFUSED",
    "MAX_BLOCK_MS",
    "SOCKET_TIMEOUT",
    "SentinelTarget",
    "Store",
    "StoreSettings",
    "UnsupportedStore",
    "close_redis",
    "command_retry",
    "open_store",
    "parse_sentinel_url",
    "redis_from_url",
    "refuse_cluster",
]

MAX_CONNECTIONS = 256  # per process; Redis's own default limit is 10,000 clients
POOL_WAIT_SECONDS = 10.0  # how long a command waits for a free connection before failing
SOCKET_TIMEOUT = 30.0  # seconds a single read may take before the connection is given up
MAX_BLOCK_MS = 20_000  # longest safe BLOCK for XREADGROUP etc.: well below SOCKET_TIMEOUT
SOCKET_CONNECT_TIMEOUT = 5.0
# A connection idle this long is PINGed before use, so one cut by a firewall, a failover or a
# restart of the server is found (and replaced) before a command is sent on it. Short, because
# after a restart every pooled connection is dead and a burst would otherwise meet them; the
# PING costs one round trip on a connection that has been idle a second anyway.
HEALTH_CHECK_INTERVAL = 1.0
# A command (or a health-check PING) that meets a dead connection is sent once more on a fresh
# one, after a short jittered pause, so a request is not failed for a connection that died
# while it sat in the pool: once the store answers, requests succeed. One retry only: a
# command whose reply was lost may have run, so a retry can repeat it (writes that matter are
# idempotent: registrations by external_ref, deliveries by their id, timers by theirs).
COMMAND_RETRIES = 1
RETRY_BACKOFF_BASE = 0.02
RETRY_BACKOFF_CAP = 0.5
DEFAULT_SENTINEL_PORT = 26379


def command_retry() -> Retry:
    """The retry every connection of the store's clients uses (see `COMMAND_RETRIES`)."""
    return Retry(
        ExponentialWithJitterBackoff(base=RETRY_BACKOFF_BASE, cap=RETRY_BACKOFF_CAP),
        COMMAND_RETRIES,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )


def _client_options(tcp: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": command_retry(),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        # No CLIENT SETINFO on connect: Redis before 7.2 answers it with an error that redis-py
        # reads and drops, and under load that reply was seen to reach a later command
        # ("unknown subcommand 'SETINFO'"). It only names the library in CLIENT LIST.
        "driver_info": None,
    }
    if tcp:
        # Keepalive only exists for TCP; unix-socket connections refuse the option.
        options["socket_keepalive"] = True
    return options


@dataclass(frozen=True)
class SentinelTarget:
    """What a `redis+sentinel://` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`.

    The password is the master's; `?sentinel_password=...` sets the sentinels' own.
    IPv6 hosts go in brackets: `[::1]:26379`.
    """
    parts = urlsplit(url)
    if parts.scheme != "redis+sentinel":
        raise ValueError("not a redis+sentinel:// URL")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels: list[tuple[str, int]] = []
    for item in hostlist.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        try:
            port = int(port_text) if port_text else DEFAULT_SENTINEL_PORT
        except ValueError:
            raise ValueError(f"bad sentinel port in {item!r}") from None
        sentinels.append((host, port))
    path = [segment for segment in parts.path.split("/") if segment]
    if not sentinels or not path or len(path) > 2:
        raise ValueError("expected redis+sentinel://host:port[,host:port]/service_name[/db]")
    try:
        db = int(path[1]) if len(path) == 2 else 0
    except ValueError:
        raise ValueError(f"bad database number {path[1]!r}") from None
    query = parse_qs(parts.query)
    sentinel_password = query.get("sentinel_password", [None])[0]
    return SentinelTarget(
        sentinels=tuple(sentinels),
        service_name=unquote(path[0]),
        db=db,
        username=username,
        password=password,
        sentinel_password=sentinel_password,
    )


class HiredisPacking:
    """Connections that pack commands with hiredis's packer, in C.

    redis-py's asyncio connections pack every command in Python, argument by argument; its
    synchronous ones use hiredis when it is installed (`HiredisRespSerializer`, reused here,
    which gives the same bytes: tests/unit/test_hiredis_packing.py). Under load the pipelines'
    packing was the largest part of the client's CPU (issue 17, a py-spy profile in
    docs/benchmarks.md). Mixed in before redis-py's connection class (`_hiredis_packing`)."""

    # redis-py 8.2 leaves HiredisRespSerializer.__init__ unannotated; 8.1 annotated it.
    _packer = HiredisRespSerializer()  # type: ignore[no-untyped-call, unused-ignore]

    def pack_command(self, *args: Any) -> list[bytes]:
        """The command in the Redis protocol, as redis-py's `pack_command` makes it."""
        first = args[0] if args else None
        if type(first) is str and " " not in first:
            # The common case (a command name of one word, arguments hiredis takes as they
            # are): packed at once, where the serializer looks at every argument first for a
            # bytearray or memoryview to copy. Anything else goes through it.
            try:
                return [hiredis_pack_command(args)]
            except TypeError:
                pass
        packed: list[bytes] = self._packer.pack(*args)
        return packed


_NOT_IN_HAND = object()


@dataclass(frozen=True)
class _Pushed:
    """A push message found where a reply was looked for."""

    message: Any


async def _past_pushes(connection: Any, reply: Any, disable_decoding: bool) -> Any:
    """Hand `reply`, a push message, and any that follow it in hand to redis-py's handler, as
    its read does; then the reply in hand after them, or `_NOT_IN_HAND`."""
    while type(reply) is _Pushed:
        await connection._parser.handle_push_response(reply.message)
        reply = _reply_in_hand(connection, disable_decoding)
    return reply


def _reply_in_hand(connection: Any, disable_decoding: bool) -> Any:
    """The next reply if hiredis already holds all of it, as redis-py's read would return it
    (an error reply raised); `_NOT_IN_HAND` when a read of the socket is needed (nothing is
    taken from the buffer then) or the parser is not hiredis's."""
    parser = connection._parser
    if type(parser) is not _AsyncHiredisParser or not parser._connected:
        return _NOT_IN_HAND
    reader = parser._reader
    if reader is None:
        return _NOT_IN_HAND
    reply = reader.gets(False) if disable_decoding else reader.gets()
    if reply is HIREDIS_NOT_ENOUGH_DATA:
        return _NOT_IN_HAND
    # What redis-py's parser and connection do with a reply they read (redis/_parsers/
    # hiredis.py, redis/asyncio/connection.py read_response); a push message (RESP3: a managed
    # server's maintenance notice, an invalidation) is given back marked, for the caller to
    # hand to redis-py's handler before it reads the reply after it (`_past_pushes`).
    if isinstance(reply, RedisConnectionError):
        raise reply
    if isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError):
        raise reply[0]
    push = parser._hiredis_PushNotificationType
    if push is not None and isinstance(reply, push):
        return _Pushed(reply)
    if connection.health_check_interval:
        loop = asyncio.get_running_loop()
        connection.next_health_check = loop.time() + connection.health_check_interval
    if isinstance(reply, ResponseError):
        raise reply from None
    return reply


class ReadyIO:
    """Connections that arm no timer for what cannot wait: a reply hiredis already holds, and
    a command the socket takes at once.

    redis-py reads every reply under an `asyncio.timeout` (`socket_timeout`), also the replies
    of a pipeline that came in the same packet as the first; and it sends every command through
    `asyncio.wait_for`, which in Python 3.11 makes a task of the write, with a timer and its
    callbacks, though the kernel takes the bytes at once and there is nothing to wait for. Under
    load that was most of the client's CPU per command (issue 17: 9 tasks and 13 timers per
    delivery, a cProfile count). Here a reply already whole is taken without a timer, and a
    command is written and waited on only if the socket did not take all of it; everything
    else (a connection to open or to check, a reply still to come, a full socket buffer) goes
    to redis-py's own code, timeouts and all. Checked in tests/unit/test_ready_io.py."""

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (redis-py's signature)
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        """As redis-py's `read_response`, without the timer for a reply already in hand."""
        if timeout is None and not push_request:
            reply = _reply_in_hand(self, disable_decoding)
            if type(reply) is _Pushed:
                reply = await _past_pushes(self, reply, disable_decoding)
            if reply is not _NOT_IN_HAND:
                return reply
        return await super().read_response(  # type: ignore[misc]
            disable_decoding,
            timeout,
            disconnect_on_error=disconnect_on_error,
            push_request=push_request,
        )

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """As redis-py's `send_packed_command`, without a task and a timer for a write the
        socket takes whole."""
        connection: Any = self
        writer = connection._writer
        if (
            writer is None
            or connection._reader is None
            or isinstance(command, (str, bytes))
            or (check_health and _health_check_due(connection))
            or writer.transport.is_closing()
            or writer.transport.get_write_buffer_size()
        ):
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        writer.writelines(command)
        if writer.transport.get_write_buffer_size():
            # Not all taken: wait for the socket as redis-py does, under its timeout.
            await _timed_drain(connection)


def _health_check_due(connection: Any) -> bool:
    interval = connection.health_check_interval
    return bool(interval) and asyncio.get_running_loop().time() > connection.next_health_check


async def _timed_drain(connection: Any) -> None:
    """Wait until the socket has taken what was written, as redis-py's `send_packed_command`
    waits (the connection dropped on a timeout or an error, and the error named as it names
    them)."""
    try:
        await asyncio.wait_for(connection._writer.drain(), connection.socket_timeout)
    except TimeoutError:
        await connection.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout writing to socket") from None
    except OSError as exc:
        await connection.disconnect(nowait=True)
        raise RedisConnectionError(f"Error while writing to socket. {exc.args}.") from exc
    except BaseException:
        await connection.disconnect(nowait=True)
        raise


class QuickCheckout:
    """Pools that hand out an idle connection, and take it back, without redis-py 8's
    ceremony when nothing can interleave.

    redis-py 8's asyncio pools take a lock (the blocking pool a condition and a timer too),
    await its observability hooks (a no-op here) and dispatch an event on every release, for
    every command and every pipeline: under load about 5 % of a delivery's CPU (issue 17,
    py-spy). Taking a connection from the idle list and putting it back are plain list and set
    operations, atomic on one event loop. So while no task is in redis-py's own path (waiting
    for a connection, making one), the lock is free and maintenance mode is off, a connection
    is taken and given back here, checked as redis-py checks it (`ensure_connection`);
    everything else (a connection to make, a full pool to wait on, a connection to drop or to
    re-authenticate on release, waiters to wake) goes through redis-py's code. Checked in
    tests/unit/test_quick_checkout.py."""

    _in_redis_py = 0  # tasks in redis-py's own get_connection (waiting or connecting)

    def _quick(self) -> bool:
        pool: Any = self
        return (
            not self._in_redis_py
            and not pool._lock.locked()
            and not getattr(pool, "_in_maintenance", False)
        )

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        """An idle connection, as redis-py's `get_connection` gives it."""
        pool: Any = self
        if pool._available_connections and self._quick():
            connection = pool._available_connections.pop()
            pool._in_use_connections.add(connection)
            try:
                await pool.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        self._in_redis_py += 1
        try:
            return await super().get_connection()  # type: ignore[misc]
        finally:
            self._in_redis_py -= 1

    async def release(self, connection: Any) -> None:
        """Give a connection back, as redis-py's `release` does."""
        pool: Any = self
        if (
            self._quick()
            and not connection.should_reconnect()
            and getattr(connection, "_re_auth_token", None) is None
        ):
            pool._in_use_connections.remove(connection)
            pool._available_connections.append(connection)
            return
        await super().release(connection)  # type: ignore[misc]


class QuickBlockingPool(QuickCheckout, BlockingConnectionPool):
    """The blocking pool of a `redis://`, `rediss://` or `unix://` store (`QuickCheckout`)."""


class QuickSentinelPool(QuickCheckout, SentinelConnectionPool):
    """The pool of a Sentinel master (`QuickCheckout`)."""


_PACKING: dict[type[Any], type[Any]] = {}


def _hiredis_packing(connection_class: type[Any]) -> type[Any]:
    """`connection_class` with `HiredisPacking` and `ReadyIO` mixed in (one class
    per class)."""
    if issubclass(connection_class, HiredisPacking):
        return connection_class
    if connection_class not in _PACKING:
        name = f"Hiredis{connection_class.__name__}"
        bases = (ReadyIO, HiredisPacking, connection_class)
        _PACKING[connection_class] = type(name, bases, {})
    return _PACKING[connection_class]


class _ReadyConnection(ReadyIO, HiredisPacking, Connection):
    """redis-py's TCP connection with both mixins, for `redis://` and as the base of the
    Sentinel master's connection, where it comes after `SentinelManagedConnection` (whose
    READONLY handling `MasterOnlyConnection` replaces, reaching past it to this class)."""


_PACKING[Connection] = _ReadyConnection


class MasterOnlyConnection(SentinelManagedConnection, _ReadyConnection):
    """A connection to the master the Sentinels name, that makes sure it is one.

    redis-py asks the Sentinels for the master's address on every new connection, but trusts
    the answer, and its pooled connections keep talking to whatever server they were opened
    to. Around a failover that server can be the old master, still taking writes for seconds
    that it throws away when it rejoins as a replica. So: on connect, `ROLE` must say master;
    and on a READONLY reply (the old master demoted) every idle connection of the pool is
    dropped too, not just this one, so none of them writes on to the old master.
    """

    async def connect_to(self, address: tuple[str, int]) -> None:
        """Connect, then refuse a server that is not (or no longer) a master."""
        # redis-py leaves SentinelManagedConnection.connect_to unannotated (8.1).
        await super().connect_to(address)  # type: ignore[no-untyped-call]
        if not self.connection_pool.is_master:
            return
        await self.send_command("ROLE")
        role = await self.read_response()
        if not role or str(role[0]) != "master":
            await self.disconnect()
            raise RedisConnectionError(f"{address[0]}:{address[1]} is not the master: {role!r}")

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (redis-py's signature)
        *,
        disconnect_on_error: float | None = True,  # sic: redis-py's annotation
        push_request: bool | None = False,
    ) -> Any:
        """As redis-py's (a reply in hand taken as `ReadyIO` does), and on READONLY
        also drop the pool's idle connections."""
        try:
            return await super(SentinelManagedConnection, self).read_response(
                disable_decoding,
                timeout,
                disconnect_on_error=bool(disconnect_on_error),
                push_request=push_request,
            )
        except ReadOnlyError:
            if not self.connection_pool.is_master:
                raise
            await self.disconnect()
            self.connection_pool.master_address = None
            await self.connection_pool.disconnect(inuse_connections=False)
            raise RedisConnectionError("the master is now a replica (READONLY)") from None


def redis_from_url(url: str) -> client.Redis:
    """A client for `url` with the store's timeouts; nothing connects until first use.

    The one place a client is made: redis-py's, seen from here on through the typed view of a
    decode_responses client (`bot/store/client.py`; `_client_options` sets decode_responses).
    """
    return cast("client.Redis", _redis_py_from_url(url))


def _redis_py_from_url(url: str) -> Redis:
    if url.startswith("redis+sentinel://"):
        target = parse_sentinel_url(url)
        options = _client_options(tcp=True)
        sentinel_options: dict[str, Any] = {
            k: v for k, v in options.items() if k.startswith("socket_")
        }
        if target.sentinel_password is not None:
            sentinel_options["password"] = target.sentinel_password
        # redis-py 8.1 leaves Sentinel.__init__ unannotated; 8.2 annotates it.
        sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            list(target.sentinels),
            sentinel_kwargs=sentinel_options,
            username=target.username,
            password=target.password,
            max_connections=MAX_CONNECTIONS,
            **options,
        )
        # master_for follows failovers: each new connection asks the sentinels for the master.
        master: Redis = sentinel.master_for(
            target.service_name,
            redis_class=Redis,
            db=target.db,
            connection_class=MasterOnlyConnection,
            connection_pool_class=QuickSentinelPool,
        )
        return master
    if url.startswith(("redis://", "rediss://", "unix://")):
        # A blocking pool: under a burst, a request waits for a free connection instead of
        # failing with "Too many connections" (redis-py's default pool raises at once).
        pool = QuickBlockingPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
            **_client_options(tcp=not url.startswith("unix://")),
        )
        # The class the URL's scheme chose (TCP, TLS or unix socket), packing with hiredis.
        pool.connection_class = _hiredis_packing(pool.connection_class)
        return Redis(connection_pool=pool)
    raise ValueError(
        "the Redis URL must start with redis://, rediss://, unix:// or redis+sentinel://"
    )


async def close_redis(redis: client.Redis) -> None:
    """Close a client from `redis_from_url`, including a Sentinel client's sentinel links."""
    pool = redis.connection_pool
    await redis.aclose()
    await pool.disconnect()
    if isinstance(pool, SentinelConnectionPool):
        for sentinel_client in pool.sentinel_manager.sentinels:
            await sentinel_client.aclose()


@dataclass
class Store:
    """The Redis client everything uses, and the embedded server behind it, if any."""

    redis: client.Redis
    embedded: EmbeddedValkey | None = None
    _closed: bool = field(default=False, init=False, repr=False)

    async def close(self) -> None:
        """Close the client, then stop the embedded server if this process started it."""
        if self._closed:
            return
        self._closed = True
        await close_redis(self.redis)
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


class StoreSettings(Protocol):
    """What opening the store needs from the service's settings (bot.runtime's `Settings` is
    one): the store is below the runtime and so names only these two."""

    @property
    def redis_url(self) -> str | None:
        """ANKOMST_REDIS_URL, or None for the embedded Valkey."""
        ...

    @property
    def valkey_dir(self) -> Path:
        """Where the embedded Valkey keeps its data."""
        ...


class UnsupportedStore(Exception):
    """ANKOMST_REDIS_URL names a server Ankomst cannot run on (a Redis Cluster node). The
    message is the one line to show, naming the variable; the command exits 2."""


CLUSTER_REFUSED = (
    "ANKOMST_REDIS_URL: the server is a Redis Cluster node (cluster_enabled:1), which Ankomst "
    "does not support; use one master with Sentinel (redis+sentinel://, see deploy/README.md)"
)


async def refuse_cluster(redis: client.Redis) -> None:
    """UnsupportedStore if `redis` is a Redis Cluster node (`INFO cluster`: cluster_enabled:1).

    Every key of a case is written in one MULTI/EXEC, and the streams, timers and indexes are
    shared keys: on a cluster they fall into different slots and every command ends in MOVED
    or CROSSSLOT. A store that does not answer (or refuses INFO) is not judged here: the
    caller's first command reports it as it would anyway.
    """
    try:
        info = await redis.info("cluster")
    except (RedisConnectionError, RedisTimeoutError, ResponseError):
        return
    if int(info.get("cluster_enabled", 0)) == 1:
        raise UnsupportedStore(CLUSTER_REFUSED)


async def open_store(settings: StoreSettings) -> Store:
    """Connect to ANKOMST_REDIS_URL, or start the embedded Valkey when it is unset.

    The one place the store is opened (`serve`, `demo` and every CLI command that reads or
    writes it), so the one place a Redis Cluster is refused: UnsupportedStore, before anything
    is read or written. Otherwise the client is lazy: a wrong URL shows at the first command
    (the caller PINGs at start).
    """
    if settings.redis_url:
        redis = redis_from_url(settings.redis_url)
        try:
            await refuse_cluster(redis)
        except BaseException:
            await close_redis(redis)
            raise
        return Store(redis=redis)
    embedded = EmbeddedValkey(settings.valkey_dir)
    await asyncio.to_thread(embedded.start)
    return Store(redis=redis_from_url(embedded.url), embedded=embedded)
