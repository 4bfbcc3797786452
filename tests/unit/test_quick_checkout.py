"""The store's pools hand out an idle connection and take it back without redis-py's lock,
timer and hooks (bot/store/connection.py `QuickCheckout`), and nothing else changes: a full
pool still makes its callers wait and wakes them, a connection to drop is still dropped, one
the server closed is still replaced. Against the real server of the test session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from bot.store.connection import QuickBlockingPool, QuickCheckout, redis_from_url


def _with(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.fixture
async def store(redis_url: str, redis: Redis) -> AsyncIterator[Any]:
    """A client as the store makes it, its pool two connections at most."""
    client = redis_from_url(_with(redis_url, "max_connections=2"))
    assert isinstance(client.connection_pool, QuickBlockingPool)
    assert client.connection_pool.max_connections == 2
    try:
        yield client
    finally:
        await client.aclose()


async def test_an_idle_connection_is_taken_without_redis_pys_path(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.set("k", "1")  # the first connection is made by redis-py's path
    calls = 0
    slow = BlockingConnectionPool.get_connection

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await slow(self, *args, **kwargs)

    monkeypatch.setattr(BlockingConnectionPool, "get_connection", counted)
    for i in range(20):
        assert await store.incr("k") == 2 + i
    pipe = store.pipeline(transaction=False)
    pipe.get("k")
    pipe.incr("k")
    assert await pipe.execute() == ["21", 22]
    assert calls == 0
    pool = store.connection_pool
    assert len(pool._in_use_connections) == 0
    assert len(pool._available_connections) == 1


async def test_a_full_pool_makes_callers_wait_and_wakes_every_one(store: Any) -> None:
    pool = store.connection_pool
    # 40 callers, 2 connections, each command holding its connection for a while: the
    # callers beyond two wait in redis-py's path and are woken as connections come back.
    replies = await asyncio.gather(*(store.blpop(["empty"], timeout=0.01) for _ in range(40)))
    assert replies == [None] * 40
    assert len(pool._in_use_connections) == 0
    assert len(pool._available_connections) == 2
    assert pool._in_redis_py == 0


async def test_a_connection_closed_by_the_server_is_replaced(store: Any, redis: Redis) -> None:
    await store.set("k", "1")
    # Its one connection, by id: killing every normal client would also cut the other
    # pytest-xdist worker's, which may share the machine's Redis (CI's db 13 and 14): CI saw a
    # test on the other worker fail to connect ("Connection closed by server") that way.
    killed = await store.client_id()
    assert len(store.connection_pool._available_connections) == 1
    await redis.client_kill_filter(_id=killed)
    assert await store.get("k") == "1"
    assert await store.client_id() != killed  # replaced, not reused


async def test_a_connection_to_drop_is_dropped_on_release(store: Any) -> None:
    pool = store.connection_pool
    connection = await pool.get_connection()
    assert connection.is_connected
    connection.mark_for_reconnect()
    await pool.release(connection)
    assert not connection.is_connected  # redis-py's release disconnected it
    assert await store.ping()


def test_both_pools_of_the_store_check_out_quickly() -> None:
    url = "redis+sentinel://127.0.0.1:26379/mymaster"
    assert isinstance(redis_from_url(url).connection_pool, QuickCheckout)
    assert isinstance(redis_from_url("redis://127.0.0.1:6379/0").connection_pool, QuickCheckout)
