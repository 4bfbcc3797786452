"""One consumer-group loop for every stream: events, outboxes, intake.

At-least-once: an entry is acknowledged (XACK) only after its handler says it is done. Entries a
crashed or stuck consumer left pending are taken over with XAUTOCLAIM once they have been idle
for `reclaim_after`. An entry whose handler raises `max_failures` times is moved to the
dead-letter stream with its error, so one poison entry never blocks the others.

Stopping does not wait out the blocked read: the read runs on a connection of its own, and
`stop()` ends it with `CLIENT UNBLOCK` (as if it had timed out), so an entry is either read and
handled before `run()` returns, or stays unread for the next consumer; none is lost in between.
`drain_once()` is the same work as one burst, for tests and tools that need no loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.store import keys
from bot.store.batching import Coalescer
from bot.store.client import Pipeline, Redis
from bot.store.faults import (
    DEFAULT_STALE_SECONDS,
    Backoff,
    FaultLog,
    Heartbeat,
    pause,
    store_unavailable,
)

log = logging.getLogger(__name__)

# After a read that brought some entries but not a full batch, the next read waits this long,
# so that it brings more at once: under load a read came back with ~5 entries each time, and
# each read, and the smaller batches of writes that followed it, cost CPU (issue 17, bench/:
# round trips per delivery 2.7 → 2.2, CPU per delivery about 4 % less). A lone entry is not
# delayed: a read that finds nothing blocks until one comes.
READ_LINGER = 0.005

Handler = Callable[[str, dict[str, str]], Awaitable[bool]]
"""Gets (entry id, fields); True when the entry is done (XACK), False to leave it pending."""

Skip = Callable[[dict[str, str]], bool]
"""Gets an entry's fields; True when its handler would do nothing with it but say it is done."""


@dataclass
class StreamStats:
    """What a consumer has done, for /readyz and metrics."""

    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    # Rounds of the loop that met a fault (the store unavailable, or an error of our own) and
    # were backed off; the loop went on after each.
    faulted_rounds: int = 0
    heartbeat: Heartbeat = field(default_factory=Heartbeat)

    @property
    def alive(self) -> bool:
        """The loop runs and has taken a turn lately (readiness asks with its own window)."""
        return self.heartbeat.alive(DEFAULT_STALE_SECONDS)


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) if it does not exist yet."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class StreamConsumer:
    """Reads one stream through a consumer group and hands each entry to a handler."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        consumer: str,
        handler: Handler,
        *,
        concurrency: int = 16,
        batch: int = 64,
        block_ms: int = 1000,
        reclaim_after_ms: int = 60_000,
        max_failures: int = 5,
        on_dead_letter: Callable[[str, dict[str, str], str], Awaitable[None]] | None = None,
        skip: Skip | None = None,
    ) -> None:
        """`skip`: entries the handler would only say are done, told from their fields alone.
        They are acknowledged together, a read's worth in one task, with no handler call: most
        of the event stream is messages sent, which only the deadline watch acts on, and a task
        and a handler for each of them was a measurable part of a delivery's CPU (issue 17)."""
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.handler = handler
        self.batch = batch
        self.block_ms = block_ms
        self.reclaim_after_ms = reclaim_after_ms
        self.max_failures = max_failures
        self.on_dead_letter = on_dead_letter
        self.skip = skip
        # Skipped entries not yet acknowledged: (entry id, whether a failure may be counted).
        self._skipped: list[tuple[str, bool]] = []
        self.stats = StreamStats()
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._in_flight: set[str] = set()
        # Entries in hand that may have a count of failures (taken over from the pending list,
        # or failed here): only theirs is cleared when they are acknowledged.
        self._may_have_failed: set[str] = set()
        self._stopping = asyncio.Event()
        # The blocking read's own connection (of the same pool) and its id on the server, so
        # that `stop()` can unblock exactly that read.
        self._reader: Redis | None = None
        self._reader_id: int | None = None  # while a read is blocked
        self._reader_conn_id: int | None = None  # the reader connection's, once asked
        # While a burst runs: the ids of entries finished (acknowledged or dead-lettered).
        self._burst_finished: set[str] | None = None
        # Faults of the loop (reads, reclaims) and of handling entries (mostly writes) are
        # logged apart: under OOM reads still work while writes fail, and one must not mark
        # the other's fault as over.
        # An entry done is acknowledged with the process's other commands of that loop turn,
        # or of the next batch while one is out (`Coalescer`), not in a round trip of its own;
        # until then it is still pending, and handled again only after a crash.
        self._acks = Coalescer.of(redis)
        self._faults = FaultLog(log, f"stream {stream} group {group}")
        self._entry_faults = FaultLog(log, f"stream {stream} group {group} handling entries")

    async def run(self) -> None:
        """Consume until stopped. No fault ends it: a lost connection or an error reply from
        the store (READONLY, NOREPLICAS, OOM, a lost group…) is logged once, backed off
        (exponential, jittered, at most 10 s) and tried again."""
        heartbeat = self.stats.heartbeat
        heartbeat.start()
        try:
            await self._run()
        finally:
            heartbeat.stop()
            await self._drop_reader()
            await self._finish_running()

    async def _run(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                await ensure_group(self.redis, self.stream, self.group)
                await self._loop(backoff)
            except Exception as exc:
                # The stream or group is gone (a store restarted without its data, a flush):
                # make it again at once. Redis 7.0 tells a blocked reader "UNBLOCKED the stream
                # key no longer exists"; later servers NOGROUP.
                if isinstance(exc, ResponseError) and (
                    "NOGROUP" in str(exc) or "UNBLOCKED" in str(exc)
                ):
                    log.warning("stream %s: consumer group lost; creating it again", self.stream)
                    continue
                # Anything else (the store unreachable or refusing, or a fault of our own):
                # this worker must not end. Said once per distinct fault, then backed off.
                self.stats.faulted_rounds += 1
                self._faults.fault(exc)
                await self._drop_reader()
                await pause(self._stopping, backoff.next(), self.stats.heartbeat)

    async def _drop_reader(self) -> None:
        """Give the blocking read's connection back; the next read takes a fresh one."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            try:
                await reader.aclose()
            except Exception:  # a dead connection may fail to close; it is gone anyway
                log.debug("stream %s: closing the reader failed", self.stream, exc_info=True)

    async def stop(self) -> None:
        """Finish what is in hand and stop reading; a blocked read returns at once."""
        self._stopping.set()
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.block_ms / 1000
        # The read may be on its way to the server: unblock until it is unblocked or has
        # returned (a few milliseconds at most; the read's own timeout bounds it anyway).
        while self._reader_id is not None and loop.time() < give_up:
            try:
                if await self.redis.client_unblock(self._reader_id):
                    return
            except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError):
                return  # the store is away: the read ends with the connection
            await asyncio.sleep(0.005)

    async def drain_once(self) -> int:
        """Handle every entry now pending or unread in the group, once, without blocking.

        A burst (as arq's `Worker(burst=True)`): entries other consumers left pending are
        taken regardless of how long they have been idle, new ones are read until none is
        left, and every handler has finished when it returns.

        Returns how many entries it moved on: read for the first time, or finished
        (acknowledged or dead-lettered). An entry its handler leaves pending again does not
        count, so a caller can repeat bursts until one returns 0.
        """
        finished: set[str] = set()
        self._burst_finished = finished
        try:
            read = await self._burst()
        finally:
            self._burst_finished = None
        return len(read | finished)

    async def _burst(self) -> set[str]:
        await ensure_group(self.redis, self.stream, self.group)
        read: set[str] = set()
        start = "0-0"
        while True:  # what is pending, ours or anyone's
            start, entries = (
                await self.redis.xautoclaim(
                    self.stream,
                    self.group,
                    self.consumer,
                    min_idle_time=0,
                    start_id=start,
                    count=self.batch,
                )
            )[:2]
            for entry_id, fields in entries:
                if fields is None:  # deleted from the stream meanwhile
                    await self.redis.xack(self.stream, self.group, entry_id)
                    continue
                await self._dispatch(entry_id, fields)
            if start == "0-0" or not entries:
                break
        while True:  # what nobody has read yet
            response = await self.redis.xreadgroup(
                self.group, self.consumer, {self.stream: ">"}, count=self.batch
            )
            entries = [e for _stream, batch in response or [] for e in batch]
            if not entries:
                break
            for entry_id, fields in entries:
                read.add(entry_id)
                await self._dispatch(entry_id, fields, fresh=True)
        await self._finish_running()
        return read

    async def _loop(self, backoff: Backoff) -> None:
        await self.reclaim()
        reclaim_every = max(self.reclaim_after_ms / 2000, 0.5)
        loop = asyncio.get_running_loop()
        next_reclaim = loop.time() + reclaim_every
        while not self._stopping.is_set():
            self.stats.heartbeat.beat()
            response = await self._read_new()
            # A read went through: whatever fault there was is over.
            self._faults.ok()
            backoff.reset()
            got = 0
            for _stream, entries in response or []:
                got += len(entries)
                for entry_id, fields in entries:
                    await self._dispatch(entry_id, fields, fresh=True)
            if 0 < got < self.batch:
                await asyncio.sleep(READ_LINGER)
            if loop.time() >= next_reclaim:
                await self.reclaim()
                next_reclaim = loop.time() + reclaim_every

    async def _read_new(self) -> Any:
        """One blocking XREADGROUP on the reader's connection, which `stop()` can unblock."""
        if self._reader is None:
            self._reader = self.redis.client()
            self._reader_conn_id = None
        ident = self._reader_conn_id
        if ident is None:
            # Asked once per connection: the reader's connection tells us when it connects
            # again (its id on the server is new then), and the next read asks again.
            ident = self._reader_conn_id = int(await self._reader.client_id())
            connection = self._reader.connection
            if connection is not None:
                connection.register_connect_callback(self._reader_reconnected)
        if self._stopping.is_set():
            return None
        self._reader_id = ident
        try:
            return await self._reader.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: ">"},
                count=self.batch,
                block=self.block_ms,
            )
        finally:
            self._reader_id = None

    def _reader_reconnected(self, _connection: object) -> None:
        self._reader_conn_id = None

    async def reclaim(self) -> int:
        """Take over entries other consumers left pending too long (crashed or stuck)."""
        start = "0-0"
        taken = 0
        while True:
            result = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.reclaim_after_ms,
                start_id=start,
                count=self.batch,
            )
            start, entries = result[0], result[1]
            for entry_id, fields in entries:
                if fields is None:  # deleted from the stream meanwhile
                    await self.redis.xack(self.stream, self.group, entry_id)
                    continue
                if entry_id in self._in_flight:
                    continue
                taken += 1
                await self._dispatch(entry_id, fields)
            if start == "0-0" or not entries:
                break
        self.stats.reclaimed += taken
        return taken

    async def _dispatch(
        self, entry_id: str, fields: dict[str, str], *, fresh: bool = False
    ) -> None:
        """Hand the entry to the handler in a task of its own. `fresh`: read for the first
        time (XREADGROUP >), so no failure of it can have been counted before."""
        if entry_id in self._in_flight:
            return
        if self.skip is not None and self.skip(fields):
            self._in_flight.add(entry_id)
            if not self._skipped:
                # One task acknowledges what this read (or reclaim) skipped: it starts once the
                # loop has handed out the whole batch.
                asyncio.get_running_loop().call_soon(self._ack_skipped)
            self._skipped.append((entry_id, not fresh))
            return
        await self._slots.acquire()
        self._in_flight.add(entry_id)
        if not fresh:
            self._may_have_failed.add(entry_id)
        self._track(self._handle(entry_id, fields))

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in a task kept until done, which `_finish_running` waits for."""
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _finish_running(self) -> None:
        """Wait for every entry in hand, the skipped ones' acknowledgement included."""
        self._ack_skipped()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        try:
            done = await self.handler(entry_id, fields)
            if done:
                # With the other commands of this loop turn, in one round trip
                # (bot/store/batching.py).
                counted = [entry_id] if entry_id in self._may_have_failed else []
                await self._acks.run(lambda pipe: self._ack(pipe, [entry_id], counted))
                self._acknowledged([entry_id])
        except Exception as exc:
            if store_unavailable(exc):
                # Not the entry's fault: it stays pending and is taken again later, and it
                # does not count towards the dead-letter limit. The loop logs the fault once.
                self._entry_faults.fault(exc)
                return
            self.stats.failed += 1
            log.exception("stream %s entry %s failed", self.stream, entry_id)
            try:
                await self._count_failure(entry_id, fields, f"{type(exc).__name__}: {exc}")
            except Exception as count_exc:  # the store went away meanwhile
                self._entry_faults.fault(count_exc)
        finally:
            self._in_flight.discard(entry_id)
            self._slots.release()
            self._may_have_failed.discard(entry_id)

    def _ack_skipped(self) -> None:
        if not self._skipped:  # already started by `_finish_running`
            return
        skipped, self._skipped = self._skipped, []
        self._track(self._acknowledge(skipped))

    async def _acknowledge(self, skipped: list[tuple[str, bool]]) -> None:
        """Acknowledge skipped entries, with the other acknowledgements of these milliseconds.
        Should the store be away, they stay pending and are taken (and skipped) again later."""
        ids = [entry_id for entry_id, _ in skipped]
        counted = [entry_id for entry_id, failed_before in skipped if failed_before]
        try:
            await self._acks.run(lambda pipe: self._ack(pipe, ids, counted))
            self._acknowledged(ids)
        except Exception as exc:
            if not store_unavailable(exc):
                log.exception("stream %s: acknowledging skipped entries failed", self.stream)
            self._entry_faults.fault(exc)
        finally:
            self._in_flight.difference_update(ids)

    def _ack(self, pipe: Pipeline, ids: list[str], counted: list[str]) -> None:
        """XACK the entries; the counts of earlier failures of those in `counted` (entries that
        can have one) are done with, as the entries are."""
        pipe.xack(self.stream, self.group, *ids)
        if counted:
            pipe.hdel(keys.stream_failures(self.stream), *counted)

    def _acknowledged(self, ids: list[str]) -> None:
        """What follows a successful XACK: the fault of handling (if any) over, the count."""
        self._entry_faults.ok()
        self.stats.handled += len(ids)
        if self._burst_finished is not None:
            self._burst_finished.update(ids)

    async def _count_failure(self, entry_id: str, fields: dict[str, str], error: str) -> None:
        failures_key = keys.stream_failures(self.stream)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(failures_key, entry_id, 1)
            pipe.expire(failures_key, keys.FAILURES_TTL)
            count, _ = await pipe.execute()
        if count < self.max_failures:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                keys.DEAD_LETTER,
                {
                    "stream": self.stream,
                    "entry": entry_id,
                    "error": error[:2000],
                    "fields": json.dumps(fields, ensure_ascii=False),
                },
            )
            pipe.xack(self.stream, self.group, entry_id)
            pipe.hdel(failures_key, entry_id)
            await pipe.execute()
        self.stats.dead_lettered += 1
        if self._burst_finished is not None:
            self._burst_finished.add(entry_id)
        log.error(
            "stream %s entry %s moved to the dead-letter stream: %s", self.stream, entry_id, error
        )
        if self.on_dead_letter is not None:
            await self.on_dead_letter(self.stream, fields, error)
