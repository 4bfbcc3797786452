"""A consumer stops at once although its read blocks, and a burst handles all there is."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from bot.store import keys
from bot.store.streams import StreamConsumer

STREAM, GROUP = "ankomst:test:stream", "workers"


def consumer(redis: Redis, handled: list[str], name: str = "c1", **kw: int) -> StreamConsumer:
    async def handle(entry_id: str, fields: dict[str, str]) -> bool:
        handled.append(fields["n"])
        return True

    return StreamConsumer(redis, STREAM, GROUP, name, handle, **kw)


async def test_stop_ends_a_blocked_read_at_once_and_loses_nothing(redis: Redis) -> None:
    handled: list[str] = []
    worker = consumer(redis, handled, block_ms=30_000)
    task = asyncio.create_task(worker.run())
    for n in range(3):
        await redis.xadd(STREAM, {"n": str(n)})
    while len(handled) < 3:  # real time: the loop runs on its own task
        await asyncio.sleep(0.01)
    while worker._reader_id is None:  # blocked in XREADGROUP now
        await asyncio.sleep(0.01)

    started = time.monotonic()
    await worker.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1.0, "stop waited out the blocked read"
    assert handled == ["0", "1", "2"]

    # What is added after the stop is left for the next consumer, unread by anyone.
    await redis.xadd(STREAM, {"n": "3"})
    groups = await redis.xinfo_groups(STREAM)
    assert groups[0]["pending"] == 0 and groups[0]["lag"] == 1
    # Nothing of ours is left blocked on the server (other databases may have their own).
    db = str(redis.connection_pool.connection_kwargs.get("db", 0))
    clients = await redis.client_list()
    assert not [c for c in clients if c.get("db") == db and "b" in c.get("flags", "")]


async def test_stop_unblocks_at_once_after_the_reader_connected_again(redis: Redis) -> None:
    # The reader's id is asked once per connection, not before every read: after the server
    # dropped the connection (CLIENT KILL, as a restart or a failover does) the reader connects
    # again, and stop() must unblock the read on the new connection, not the old id.
    handled: list[str] = []
    worker = consumer(redis, handled, block_ms=30_000)
    task = asyncio.create_task(worker.run())
    while worker._reader_id is None:  # blocked in XREADGROUP now
        await asyncio.sleep(0.01)
    old = worker._reader_id
    await redis.client_kill_filter(_id=old)
    await redis.xadd(STREAM, {"n": "after"})
    while handled != ["after"] or worker._reader_id is None:  # read again on a new connection
        await asyncio.sleep(0.01)
    assert worker._reader_id != old

    started = time.monotonic()
    await worker.stop()
    await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 1.0, "stop waited out the blocked read"


async def test_stop_before_the_first_read_returns_at_once(redis: Redis) -> None:
    worker = consumer(redis, [], block_ms=30_000)
    task = asyncio.create_task(worker.run())
    await worker.stop()
    await asyncio.wait_for(task, 2)


async def test_a_burst_handles_what_is_unread_and_what_others_left_pending(redis: Redis) -> None:
    # Another consumer read two entries and died with them pending (idle only a moment).
    crashed: list[str] = []
    await consumer(redis, crashed, name="dead").drain_once()  # makes the group
    for n in range(2):
        await redis.xadd(STREAM, {"n": f"old{n}"})
    await redis.xreadgroup(GROUP, "dead", {STREAM: ">"}, count=10)
    for n in range(130):  # more than one batch
        await redis.xadd(STREAM, {"n": str(n)})

    handled: list[str] = []
    burst = consumer(redis, handled, name="burst", batch=64)
    assert await burst.drain_once() == 132
    assert sorted(handled) == sorted(["old0", "old1", *map(str, range(130))])
    info = (await redis.xinfo_groups(STREAM))[0]
    assert info["pending"] == 0 and info["lag"] == 0
    assert await burst.drain_once() == 0  # nothing left: a caller's loop ends


async def test_an_entry_left_pending_is_not_progress(redis: Redis) -> None:
    tries: list[str] = []

    async def not_yet(entry_id: str, fields: dict[str, str]) -> bool:
        tries.append(entry_id)
        return False

    burst = StreamConsumer(redis, STREAM, GROUP, "burst", not_yet)
    await redis.xadd(STREAM, {"n": "1"})
    assert await burst.drain_once() == 1  # read for the first time
    assert await burst.drain_once() == 0  # tried again, still pending: no progress
    assert len(tries) == 2
    assert (await redis.xinfo_groups(STREAM))[0]["pending"] == 1


async def test_skipped_entries_are_acknowledged_without_the_handler(redis: Redis) -> None:
    # Another consumer read two entries and died with them, one of them failed once before:
    # skipped, both are acknowledged and the count of failures goes with them.
    await consumer(redis, [], name="dead").drain_once()  # makes the group
    old = [await redis.xadd(STREAM, {"n": f"old{n}", "kind": "skip"}) for n in range(2)]
    await redis.xreadgroup(GROUP, "dead", {STREAM: ">"}, count=10)
    await redis.hset(keys.stream_failures(STREAM), old[0], 1)
    for n in range(130):  # more than one batch, every third one handled
        await redis.xadd(STREAM, {"n": str(n), "kind": "handle" if n % 3 == 0 else "skip"})

    handled: list[str] = []
    burst = consumer(redis, handled, name="burst", batch=64)
    burst.skip = lambda fields: fields["kind"] == "skip"
    assert await burst.drain_once() == 132
    assert handled == [str(n) for n in range(0, 130, 3)]
    assert burst.stats.handled == 132
    info = (await redis.xinfo_groups(STREAM))[0]
    assert info["pending"] == 0 and info["lag"] == 0
    assert not await redis.exists(keys.stream_failures(STREAM))
    assert await burst.drain_once() == 0
