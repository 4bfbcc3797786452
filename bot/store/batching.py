"""Commands that concurrent tasks issue in one turn of the event loop go out in one round trip.

The pipeline's workers handle many entries at once (a stream read hands out up to 64), and each
entry takes the same steps at about the same time: claim, mark, record, acknowledge. Sent one
by one, every step is a round trip of its own, and a round trip costs the client several times
the CPU of the same command in a pipeline (measured in docs/benchmarks.md). A `Coalescer`
gathers what is asked of it until the loop has run everything ready, then sends it all as one
non-transactional pipeline and hands each caller its own replies, as if it had sent them alone:

- a caller's commands stay together and in order, and run in the order the callers asked;
- an error reply (READONLY, OOM, …) is raised to the caller whose command it answered; a lost
  connection is retried as the client's retry policy says (redis-py's pipelines are), then
  raised to every caller of that round trip; nothing else is retried here;
- each batch takes a connection from the client's pool and gives it back, as any command does:
  a connection kept for the batches (tried: less CPU a batch) is not dropped with the pool's
  idle ones when the master is demoted, and after a failover a batch of reads on it went to the
  old master (tests/fault/test_failover.py caught it);
- a Lua script is called by its SHA (`script`), and loaded once when the server does not know
  it (after a restart or a failover), so no SCRIPT EXISTS goes before every batch;
- a caller cancelled before its batch is sent has its commands left out.

Atomicity stays where it was: a caller that needs several writes to happen together uses one
Lua script (one command), never several commands of a batch.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from bot.store.client import Pipeline, Redis, Value
from bot.store.scripts import source

__all__ = ["Coalescer", "LuaScript"]

# A batch larger than this is split: one reply buffer stays small, and a caller waits for at
# most this many others.
BATCH_LIMIT = 512


@dataclass(frozen=True)
class LuaScript:
    """A script of bot/store/lua by name, with its text and SHA, for `Coalescer.script`."""

    names: tuple[str, ...]
    text: str = field(init=False)
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        import hashlib

        text = source(*self.names)
        object.__setattr__(self, "text", text)
        # The name Redis gives a script (EVALSHA), not a security measure.
        sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", sha)

    @classmethod
    def of(cls, *names: str) -> LuaScript:
        """The script made of `names` (a prelude first, as `scripts.source`)."""
        return cls(names)


# The shared coalescers, by client (gone with the client) and linger.
_SHARED: weakref.WeakKeyDictionary[Redis, dict[float, Coalescer]] = weakref.WeakKeyDictionary()


@dataclass
class _Call:
    queue: Callable[[Pipeline], object]
    future: asyncio.Future[list[Any]]


class Coalescer:
    """Sends the commands asked of it in one loop turn as one pipeline (see the module).

    `Coalescer.of(redis)` is the one shared by every part of the process that uses that client
    (the deliverer, the deadline worker, the metrics, the stream consumers' acknowledgements):
    what they ask in the same turn goes out together.
    """

    @classmethod
    def of(cls, redis: Redis, *, linger: float = 0.0) -> Coalescer:
        """The process's coalescer for `redis` (one per `linger`)."""
        by_linger = _SHARED.setdefault(redis, {})
        found = by_linger.get(linger)
        if found is None:
            found = by_linger[linger] = cls(redis, linger=linger)
        return found

    def __init__(self, redis: Redis, *, linger: float = 0.0) -> None:
        self.redis = redis
        # How long a batch waits for more after its first command: 0 sends it once the loop
        # has run what is ready now. Worth more only where a caller does not wait on the
        # reply to go on (an acknowledgement).
        self.linger = linger
        self._calls: list[_Call] = []
        self._scheduled = False
        # What it has done, for the benchmark's round-trip count and for tests.
        self.batches = 0
        self.commands = 0

    async def run(self, queue: Callable[[Pipeline], object]) -> list[Any]:
        """Queue `queue(pipe)`'s commands with those of the other callers of this turn; their
        replies, in order, once the batch has been sent. An error reply is raised."""
        loop = asyncio.get_running_loop()
        call = _Call(queue, loop.create_future())
        self._calls.append(call)
        if not self._scheduled:
            self._scheduled = True
            # call_soon runs after every callback already ready, i.e. after every task woken
            # in this turn has queued its commands.
            if self.linger > 0:
                loop.call_later(self.linger, self._flush)
            else:
                loop.call_soon(self._flush)
        replies = await call.future
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def script(self, script: LuaScript, keys: Sequence[str], args: Sequence[Value]) -> Any:
        """Run `script` as one command of the batch (EVALSHA; loaded first if the server does
        not have it). Its reply; an error reply is raised."""
        for _ in range(2):
            try:
                (reply,) = await self.run(
                    lambda pipe: pipe.execute_command(
                        "EVALSHA", script.sha, len(keys), *keys, *args
                    )
                )
                return reply
            except NoScriptError:
                # The script did not run (the server had no such SHA): load it and ask again.
                await self.redis.script_load(script.text)
        raise ResponseError(f"script {script.names} could not be loaded")

    def _flush(self) -> None:
        self._scheduled = False
        calls, self._calls = self._calls, []
        for start in range(0, len(calls), BATCH_LIMIT):
            chunk = [c for c in calls[start : start + BATCH_LIMIT] if not c.future.done()]
            if chunk:
                # The task is kept by the loop until done; its outcome goes to the futures.
                asyncio.get_running_loop().create_task(self._send(chunk))

    async def _send(self, calls: list[_Call]) -> None:
        spans: list[tuple[_Call, int, int]] = []
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    before = len(pipe)
                    try:
                        call.queue(pipe)
                    except Exception as exc:  # a caller's own mistake: only that caller fails
                        del pipe.command_stack[before:]
                        call.future.set_exception(exc)
                        continue
                    spans.append((call, before, len(pipe)))
                replies = await pipe.execute(raise_on_error=False) if spans else []
        except BaseException as exc:
            for call, _start, _end in spans:
                if not call.future.done():
                    call.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.commands += len(replies)
        for call, start, end in spans:
            if not call.future.done():
                call.future.set_result(replies[start:end])
