"""A reply hiredis already holds is taken without a timer, and a command the socket takes at
once is sent without a task and a timer (bot/store/connection.py `ReadyIO`), and nothing else
changes: the same replies as redis-py's own connections, error replies raised or returned as
before, a reply that has not come still times out, a command too big for the socket buffer
still goes whole. Against the real server of the test session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio.connection as redis_connection
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.store.connection import MasterOnlyConnection, ReadyIO, redis_from_url


@pytest.fixture
async def store(redis_url: str, redis: Redis) -> AsyncIterator[Any]:
    """A client as the store makes it, on the test's flushed database."""
    client = redis_from_url(redis_url)
    assert issubclass(client.connection_pool.connection_class, ReadyIO)
    try:
        yield client
    finally:
        await client.aclose()


def commands(pipe: Any) -> None:
    """A pipeline whose replies come back in one packet: strings, numbers, lists, hashes,
    nil, non-ASCII text, and an error reply in the middle (WRONGTYPE)."""
    pipe.set("s", "Östersund – ✓")
    pipe.hset("h", mapping={"a": "1", "ö": "två"})
    for i in range(40):
        pipe.rpush("l", i)
    pipe.hget("s", "a")  # WRONGTYPE: a string is not a hash
    pipe.get("s")
    pipe.hgetall("h")
    pipe.lrange("l", 0, -1)
    pipe.get("missing")
    pipe.incrbyfloat("f", 2.5)


async def test_a_pipeline_gives_what_redis_py_gives_and_arms_one_timer_or_so(
    store: Any, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = redis.pipeline(transaction=False)
    commands(plain)
    expected = await plain.execute(raise_on_error=False)
    await redis.flushdb()

    armed = 0
    timeout = getattr(redis_connection, "async_timeout")  # noqa: B009 (not re-exported)

    def counting(delay: float | None) -> Any:
        nonlocal armed
        armed += 1
        return timeout(delay)

    await store.ping()  # the connection is open: its set-up reads are not counted
    monkeypatch.setattr(redis_connection, "async_timeout", counting)
    pipe = store.pipeline(transaction=False)
    commands(pipe)
    got = await pipe.execute(raise_on_error=False)

    assert [type(r) for r in got] == [type(r) for r in expected]
    assert [str(r) if isinstance(r, ResponseError) else r for r in got] == [
        str(r) if isinstance(r, ResponseError) else r for r in expected
    ]
    assert "WRONGTYPE" in str(got[42])
    # 47 replies; redis-py arms a timer for each, the store only for a read of the socket.
    assert armed < len(got) // 4


async def test_an_error_reply_is_still_raised(store: Any) -> None:
    await store.set("s", "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await store.hget("s", "a")
    pipe = store.pipeline(transaction=False)
    pipe.get("s")
    pipe.hget("s", "a")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await pipe.execute()
    assert await store.get("s") == "x"  # the connection is still good after it


async def test_a_reply_that_has_not_come_still_times_out(redis_url: str, redis: Redis) -> None:
    client = redis_from_url(redis_url)
    client.connection_pool.connection_kwargs["socket_timeout"] = 0.2
    try:
        await client.xgroup_create("s", "g", id="$", mkstream=True)
        # XREADGROUP BLOCK 5000 on a group with nothing new: the reply is 5 s away.
        with pytest.raises(RedisTimeoutError):
            await client.xreadgroup("g", "c", {"s": ">"}, count=1, block=5000)
        assert await client.ping() is True  # a fresh connection after the lost one
    finally:
        await client.aclose()


async def test_commands_the_socket_takes_at_once_make_no_task(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    waited = 0
    wait_for = asyncio.wait_for

    async def counting(awaitable: Any, delay: float | None) -> Any:
        nonlocal waited
        waited += 1
        return await wait_for(awaitable, delay)

    await store.ping()
    monkeypatch.setattr(asyncio, "wait_for", counting)
    for i in range(20):
        await store.set(f"k{i}", i)
    pipe = store.pipeline(transaction=False)
    for i in range(20):
        pipe.get(f"k{i}")
    assert await pipe.execute() == [str(i) for i in range(20)]
    assert waited == 0  # redis-py waits on every write: 21 here


async def test_a_command_bigger_than_the_socket_takes_at_once_goes_whole(store: Any) -> None:
    value = "å" * 8_000_000  # 16 MB: more than a loopback socket's buffer
    await store.set("big", value)
    assert await store.strlen("big") == 16_000_000
    assert await store.get("big") == value


async def test_a_push_message_in_hand_is_handled_and_the_reply_after_it_read(store: Any) -> None:
    # RESP3: with tracking on, the connection's own SET of a key it read sends it an
    # invalidation push among the replies of the same pipeline, in the same packet.
    pipe = store.pipeline(transaction=False)
    pipe.execute_command("CLIENT", "TRACKING", "ON")
    pipe.get("k")
    pipe.set("k", "2")
    pipe.get("k")
    pipe.execute_command("PING")
    assert await pipe.execute() == ["OK", None, True, "2", True]


def test_the_sentinel_master_connection_takes_replies_in_hand_too() -> None:
    # Its read reaches past SentinelManagedConnection's (whose READONLY handling it replaces)
    # to the ready path, which must come before redis-py's own connection.
    order = MasterOnlyConnection.__mro__
    assert issubclass(MasterOnlyConnection, ReadyIO)
    assert order.index(SentinelManagedConnection) < order.index(ReadyIO) < order.index(Connection)
