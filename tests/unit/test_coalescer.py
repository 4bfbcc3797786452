"""What concurrent callers ask of a `Coalescer` (bot/store/batching.py) in one turn goes out in
one round trip, and each caller gets its own replies as if it had sent them alone. Against the
real server of the test session, with the store's client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.store.batching import Coalescer, LuaScript
from bot.store.connection import redis_from_url
from tests.support.valkey import embedded_valkey


@pytest.fixture
async def store(redis_url: str, redis: Redis) -> AsyncIterator[Any]:
    """A client as the store makes it (its retry policy too), on the test's flushed db."""
    client = redis_from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def own_server() -> AsyncIterator[tuple[Any, Redis]]:
    """The store's client and a plain one on an embedded Valkey of the test's own, for the tests
    that flush the server's scripts: SCRIPT FLUSH reaches every database of a server, and the
    other pytest-xdist worker may share the machine's Redis (CI's db 13 and 14), where a flush
    made its scripts vanish under its own tests."""
    with embedded_valkey() as url:
        store = redis_from_url(url)
        plain: Redis = Redis.from_url(url, decode_responses=True)
        try:
            yield store, plain
        finally:
            await store.aclose()
            await plain.aclose()


async def test_one_turn_one_round_trip_and_each_caller_its_own_replies(store: Any) -> None:
    batch = Coalescer(store)

    async def caller(i: int) -> list[Any]:
        return await batch.run(lambda pipe: (pipe.set(f"k{i}", i), pipe.get(f"k{i}")))

    replies = await asyncio.gather(*(caller(i) for i in range(30)))

    assert replies == [[True, str(i)] for i in range(30)]
    assert (batch.batches, batch.commands) == (1, 60)


async def test_an_error_reply_fails_its_caller_only(store: Any) -> None:
    batch = Coalescer(store)
    await store.set("text", "x")

    def wrong(pipe: Any) -> None:
        pipe.hget("text", "field")  # WRONGTYPE

    def mistaken(pipe: Any) -> None:
        raise ValueError("the caller's own mistake")

    results = await asyncio.gather(
        batch.run(lambda pipe: pipe.get("text")),
        batch.run(wrong),
        batch.run(mistaken),
        batch.run(lambda pipe: pipe.execute_command("INCR", "n")),
        return_exceptions=True,
    )

    assert results[0] == ["x"]
    assert isinstance(results[1], ResponseError) and "WRONGTYPE" in str(results[1])
    assert isinstance(results[2], ValueError)
    assert results[3] == [1]
    assert batch.batches == 1


async def test_a_batch_that_meets_a_dropped_connection_goes_out_on_a_new_one(
    store: Any, redis: Redis
) -> None:
    batch = Coalescer(store)
    (before,) = await batch.run(lambda pipe: pipe.execute_command("CLIENT", "ID"))
    await redis.client_kill_filter(_id=before)  # the server drops it between two batches

    (after,) = await batch.run(lambda pipe: pipe.execute_command("CLIENT", "ID"))

    assert after != before


async def test_a_script_the_server_does_not_know_is_loaded_once(
    own_server: tuple[Any, Redis],
) -> None:
    store, redis = own_server
    batch = Coalescer(store)
    script = LuaScript.of("stream_count_after")
    await redis.xadd("s", {"f": "v"})
    await redis.script_flush()

    counts = await asyncio.gather(*(batch.script(script, ["s"], ["0-0", 10]) for _ in range(3)))

    assert counts == [1, 1, 1]
    assert (await redis.script_exists(script.sha)) == [True]
    assert batch.loads == 1  # the three met NOSCRIPT together: one load, not one each


async def test_the_calls_of_one_script_in_a_turn_are_one_lua_call_with_each_its_own_reply(
    store: Any, redis: Redis
) -> None:
    count = LuaScript.of("stream_count_after")
    read = LuaScript.of("case_read")
    for i in range(5):
        for _ in range(i):
            await redis.xadd(f"s{i}", {"f": "v"})
    await redis.set("text", "x")
    await redis.hset("case", mapping={"version": "2", "facts": "{}"})
    asks: list[tuple[LuaScript, list[str], list[Any]]] = [
        *((count, [f"s{i}"], ["0-0", 10]) for i in range(5)),
        (count, ["text"], ["0-0", 10]),  # WRONGTYPE from the server
        (count, ["s4"], ["0-0", "many"]),  # a Lua error of the script's own
        (read, ["case", "versions"], [2]),  # nested replies, false as nil
        (read, ["none", "versions"], []),  # an empty table and nils
        (count, ["s3"], ["0-0", 2]),
    ]
    # Each alone, one batch each: what a caller got before its calls went out together.
    alone = [
        await Coalescer(store).script(s, k, a) if i not in (5, 6) else None
        for i, (s, k, a) in enumerate(asks)
    ]
    # Both forms of both scripts on the server, whatever it held before: the single calls above
    # load them only if the server lacked the single form, and a shared server (the machine's
    # Redis) may already have that one from other tests, not the form for several calls.
    for script in (count, read):
        await redis.script_load(script.text)
        await redis.script_load(script.many_text)
    batch = Coalescer(store)

    together = await asyncio.gather(
        *(batch.script(s, k, a) for s, k, a in asks),
        batch.run(lambda pipe: pipe.get("text")),
        return_exceptions=True,
    )

    assert together[:5] == alone[:5] == [0, 1, 2, 3, 4]
    assert isinstance(together[5], ResponseError) and "WRONGTYPE" in str(together[5])
    assert isinstance(together[6], ResponseError) and "compare" in str(together[6])
    assert together[7] == alone[7] == [["version", "2", "facts", "{}"], None, None]
    assert together[8] == alone[8] == [[], None, None]
    assert together[9:] == [2, ["x"]]
    # One round trip: one command for the 8 calls of one script, one for the other script's
    # 2, one for the plain read.
    assert (batch.batches, batch.commands, batch.loads) == (1, 3, 0)


async def test_one_lua_call_for_many_is_loaded_when_the_server_lost_it(
    own_server: tuple[Any, Redis],
) -> None:
    store, redis = own_server
    batch = Coalescer(store)
    script = LuaScript.of("stream_count_after")
    await redis.xadd("s", {"f": "v"})
    await asyncio.gather(*(batch.script(script, ["s"], ["0-0", 10]) for _ in range(2)))
    loaded = batch.loads  # the server of the test's own met the script first here
    await redis.script_flush()  # as after a restart or a failover to a replica that lacks it

    counts = await asyncio.gather(*(batch.script(script, ["s"], ["0-0", 10]) for _ in range(4)))
    alone = await batch.script(script, ["s"], ["0-0", 10])

    assert (counts, alone) == ([1, 1, 1, 1], 1)
    assert await redis.script_exists(script.sha, script.many_sha) == [True, True]
    assert batch.loads == loaded + 1


async def test_what_is_asked_while_a_batch_is_out_goes_together_when_it_is_back(
    store: Any, redis: Redis
) -> None:
    batch = Coalescer(store)
    # The first batch stays out until the test pushes what its BLPOP waits for.
    first = asyncio.create_task(batch.run(lambda pipe: pipe.blpop(["held"], 10)))
    for _ in range(3):
        await asyncio.sleep(0)  # a turn of the loop: the first batch is sent
    later = []
    for i in range(3):  # each in a turn of its own: three batches, were none out
        later.append(asyncio.create_task(batch.run(lambda pipe, i=i: pipe.set(f"k{i}", i))))
        for _ in range(3):
            await asyncio.sleep(0)
    assert batch.batches == 0 and not any(t.done() for t in later)

    await redis.lpush("held", "x")
    assert await first == [("held", "x")]
    assert await asyncio.gather(*later) == [[True]] * 3
    assert batch.batches == 2 and batch.commands == 4
    # Idle again: the next one goes at once, alone.
    assert await batch.run(lambda pipe: pipe.get("k2")) == ["2"]
    assert batch.batches == 3
