"""The store's connections pack commands with hiredis (bot/store/connection.py `HiredisPacking`),
and the bytes on the wire are the ones redis-py's own Python packer makes. Pure: no Redis."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from bot.store.connection import (
    HiredisPacking,
    MasterOnlyConnection,
    _hiredis_packing,
    redis_from_url,
)

COMMANDS: list[tuple[Any, ...]] = [
    ("PING",),
    ("CLIENT ID",),  # a command name of two words is sent as two arguments
    ("SCRIPT", "LOAD", "return 1"),
    ("HSET", "ankomst:case:x", "note", "Barnet åker med mamma – ✓", "n", 3),
    ("ZADD", "ankomst:timers", 1733163540.123456, "t1", 0.1, "t2", -0.0, "t3", 1e20, "t4"),
    ("SET", "k", 2**63, "PX", 30_000),
    ("SET", b"k\x00\xff", memoryview(b"raw bytes"), "NX"),
    ("SET", "k", bytearray(b"copied first"), "XX"),  # hiredis takes neither view as it is
    ("SET", "empty", ""),
    ("SET", "big", "x" * 10_000),  # longer than redis-py's buffer cut-off: sent in pieces
]


def wire(connection: Any, args: tuple[Any, ...]) -> bytes:
    return b"".join(bytes(part) for part in connection.pack_command(*args))


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_hiredis_packing_gives_the_bytes_redis_py_gives(args: tuple[Any, ...]) -> None:
    plain = Connection()
    packing = _hiredis_packing(Connection)()
    assert isinstance(packing, HiredisPacking)
    assert wire(packing, args) == wire(plain, args)


def test_a_value_redis_py_refuses_is_refused_as_before() -> None:
    for connection in (Connection(), _hiredis_packing(Connection)()):
        with pytest.raises(DataError):
            connection.pack_command("SET", "k", True)


def test_pipelines_pack_with_it_too() -> None:
    commands = [("HGET", "a", "b"), ("EVALSHA", "0" * 40, 1, "k", "å", 2.5)]
    plain = b"".join(Connection().pack_commands(commands))
    assert b"".join(_hiredis_packing(Connection)().pack_commands(commands)) == plain


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6379/0", SSLConnection),
        ("unix:///tmp/valkey.sock", UnixDomainSocketConnection),
    ],
)
def test_every_client_the_store_makes_packs_with_hiredis(url: str, kind: type) -> None:
    made = redis_from_url(url).connection_pool.connection_class
    assert issubclass(made, kind) and issubclass(made, HiredisPacking)
    assert issubclass(MasterOnlyConnection, HiredisPacking)  # redis+sentinel://
