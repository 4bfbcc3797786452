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
- the calls of one script in a batch go out as one Lua call (`LuaScript.many_text`), at the
  place of the first of them: the server runs the script for each in turn, as it would for one
  EVALSHA each, and each caller gets its own reply or error (issue 17: one Lua call per batch,
  not per delivery). Callers in one batch are concurrent, so none waits on another's order;
- a caller cancelled before its batch is sent has its commands left out.
- one batch is out at a time (`IN_FLIGHT`): what is asked while it is waits for its reply and
  then goes together, so under load the batches grow rather than the round trips (issue 17:
  about 2.0 → 1.65 round trips a delivery), and an idle process sends at once, as before.

Atomicity stays where it was: a caller that needs several writes to happen together uses one
Lua script (one command), never several commands of a batch. A script's calls in one Lua call
each run whole, as alone (the server runs nothing else in between, which only adds to it).
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
# Batches of one coalescer out at once, unanswered; more is asked meanwhile goes in the next.
IN_FLIGHT = 1


# The script run for each of several calls of one script (see `LuaScript.many_text`). KEYS:
# every call's keys in turn; ARGV: the number of calls, each call's count of keys and of
# arguments, then every call's arguments in turn. Each call's reply is {its reply} (a nil reply
# an empty table, so the list keeps its length), or its error reply as the server makes one, which
# the client reads as that error, nested (redis-py: an exception in the list).
_MANY = """
local n = tonumber(ARGV[1])
local out = {}
local k, a = 0, 1 + 2 * n
for i = 1, n do
  local nk, na = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local keys, args = {}, {}
  for j = 1, nk do keys[j] = KEYS[k + j] end
  for j = 1, na do args[j] = ARGV[a + j] end
  k, a = k + nk, a + na
  local ok, reply = pcall(one, keys, args)
  if type(reply) == 'table' and reply.err then
    out[i] = reply
  elseif not ok then
    out[i] = {err = tostring(reply)}
  else
    out[i] = {reply}
  end
end
return out
"""


def _sha(text: str) -> str:
    import hashlib

    # The name Redis gives a script (EVALSHA), not a security measure.
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class LuaScript:
    """A script of bot/store/lua by name, with its text and SHA, for `Coalescer.script`; and the
    script that runs it for several calls at once (`many_text`, `many_sha`)."""

    names: tuple[str, ...]
    text: str = field(init=False)
    sha: str = field(init=False)
    many_text: str = field(init=False)
    many_sha: str = field(init=False)

    def __post_init__(self) -> None:
        text = source(*self.names)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "sha", _sha(text))
        # The whole text, preludes too, is the body of a function of each call's KEYS and ARGV:
        # what it names KEYS and ARGV are that call's (the preludes read ARGV too), and its
        # locals are its own, as in a script of its own.
        many = f"local function one(KEYS, ARGV)\n{text}\nend\n{_MANY}"
        object.__setattr__(self, "many_text", many)
        object.__setattr__(self, "many_sha", _sha(many))

    @classmethod
    def of(cls, *names: str) -> LuaScript:
        """The script made of `names` (a prelude first, as `scripts.source`)."""
        return cls(names)


# The shared coalescer of each client (gone with the client).
_SHARED: weakref.WeakKeyDictionary[Redis, Coalescer] = weakref.WeakKeyDictionary()


@dataclass(eq=False)  # compared and hashed as itself: each call is its own
class _Call:
    future: asyncio.Future[list[Any]]
    # What it asks: commands queued by `queue(pipe)` (`Coalescer.run`), or a call of `script`
    # (`Coalescer.script`), kept as such so that the calls of one script in a batch can go
    # out as one.
    queue: Callable[[Pipeline], object] | None = None
    script: LuaScript | None = None
    keys: Sequence[str] = ()
    args: Sequence[Value] = ()


class Coalescer:
    """Sends the commands asked of it in one loop turn as one pipeline (see the module).

    `Coalescer.of(redis)` is the one shared by every part of the process that uses that client
    (the deliverer, the deadline worker, the metrics, the stream consumers' acknowledgements):
    what they ask in the same turn goes out together.
    """

    @classmethod
    def of(cls, redis: Redis) -> Coalescer:
        """The process's coalescer for `redis`."""
        found = _SHARED.get(redis)
        if found is None:
            found = _SHARED[redis] = cls(redis)
        return found

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._calls: list[_Call] = []
        self._scheduled = False
        # Batches sent and not yet answered. While `IN_FLIGHT` are, what is asked waits for one
        # of them to come back and goes with everything asked meanwhile: under load the
        # batches grow instead of the round trips (issue 17); when idle a batch goes at once.
        self._in_flight = 0
        # What it has done, for the benchmark's round-trip count and for tests.
        self.batches = 0
        self.commands = 0
        self.loads = 0  # scripts loaded because the server had lost them
        # A load under way, by script SHA: the callers that met NOSCRIPT together wait on one.
        self._loading: dict[str, asyncio.Future[None]] = {}

    async def run(self, queue: Callable[[Pipeline], object]) -> list[Any]:
        """Queue `queue(pipe)`'s commands with those of the other callers of this turn; their
        replies, in order, once the batch has been sent. An error reply is raised."""
        return await self._ask(_Call(asyncio.get_running_loop().create_future(), queue))

    async def _ask(self, call: _Call) -> list[Any]:
        loop = asyncio.get_running_loop()
        self._calls.append(call)
        if not self._scheduled:
            self._scheduled = True
            # call_soon runs after every callback already ready, i.e. after every task woken
            # in this turn has queued its commands.
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
                future = asyncio.get_running_loop().create_future()
                (reply,) = await self._ask(_Call(future, script=script, keys=keys, args=args))
                return reply
            except NoScriptError:
                # The script did not run (the server had no such SHA): load it and ask again.
                await self._load(script)
        raise ResponseError(f"script {script.names} could not be loaded")

    async def _load(self, script: LuaScript) -> None:
        """Load `script` and its form for several calls (which of the two the server missed is
        not told), once for every caller that met NOSCRIPT meanwhile: after a restart or a
        failover a whole batch of them does, all of the same script."""
        loading = self._loading.get(script.sha)
        if loading is None:
            loading = asyncio.ensure_future(self._load_now(script))
            self._loading[script.sha] = loading
            loading.add_done_callback(lambda _: self._loading.pop(script.sha, None))
        # Shielded: one caller cancelled does not cancel the load the others wait on.
        await asyncio.shield(loading)

    async def _load_now(self, script: LuaScript) -> None:
        self.loads += 1
        async with self.redis.pipeline(transaction=False) as pipe:
            for text in (script.text, script.many_text):
                pipe.execute_command("SCRIPT", "LOAD", text)
            await pipe.execute()

    def _flush(self) -> None:
        self._scheduled = False
        if self._in_flight >= IN_FLIGHT:
            return  # held: `_sent` flushes when a batch is back
        calls, self._calls = self._calls, []
        for start in range(0, len(calls), BATCH_LIMIT):
            chunk = [c for c in calls[start : start + BATCH_LIMIT] if not c.future.done()]
            if chunk:
                # The task is kept by the loop until done; its outcome goes to the futures.
                self._in_flight += 1
                asyncio.get_running_loop().create_task(self._sent(chunk))

    async def _sent(self, calls: list[_Call]) -> None:
        try:
            await self._send(calls)
        finally:
            self._in_flight -= 1
            # Calls waiting with no flush to come were held back while this batch was out
            # (a scheduled flush sends them itself).
            if self._calls and not self._scheduled:
                self._flush()

    async def _send(self, calls: list[_Call]) -> None:
        # (call, first reply, end of its replies) of each call sent as it asked; (call, the
        # command of its script's calls, its place among them) of each sent with others.
        spans: list[tuple[_Call, int, int]] = []
        shared: list[tuple[_Call, int, int]] = []
        # The calls of each script that is called more than once here: one command for each.
        groups: dict[str, list[_Call]] = {}
        place: dict[_Call, int] = {}
        for call in calls:
            if call.script is not None:
                group = groups.setdefault(call.script.sha, [])
                place[call] = len(group)
                group.append(call)
        at: dict[str, int] = {}
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    before = len(pipe)
                    if call.script is not None and len(group := groups[call.script.sha]) > 1:
                        if group[0] is call:
                            at[call.script.sha] = before
                            _queue_many(pipe, call.script, group)
                        shared.append((call, at[call.script.sha], place[call]))
                        continue
                    try:
                        if call.script is not None:
                            keys, sha = call.keys, call.script.sha
                            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *call.args)
                        elif call.queue is not None:
                            call.queue(pipe)
                    except Exception as exc:  # a caller's own mistake: only that caller fails
                        del pipe.command_stack[before:]
                        call.future.set_exception(exc)
                        continue
                    spans.append((call, before, len(pipe)))
                replies = await pipe.execute(raise_on_error=False) if spans or shared else []
        except BaseException as exc:
            for call, _start, _end in (*spans, *shared):
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
        for call, command, i in shared:
            if not call.future.done():
                call.future.set_result([_one_of(replies[command], i)])


def _queue_many(pipe: Pipeline, script: LuaScript, calls: list[_Call]) -> None:
    """Queue one call of `script.many_text` for `calls` (see `_MANY` for the layout)."""
    counts: list[Value] = [len(calls)]
    keys: list[str] = []
    args: list[Value] = []
    for call in calls:
        counts += (len(call.keys), len(call.args))
        keys += call.keys
        args += call.args
    pipe.execute_command("EVALSHA", script.many_sha, len(keys), *keys, *counts, *args)


def _one_of(reply: Any, place: int) -> Any:
    """The reply of the call at `place` of a `_MANY` run: the error of the whole command (the
    script unknown to the server, a lost connection), the call's own error, or its reply."""
    if isinstance(reply, Exception):
        return reply
    own = reply[place]
    if isinstance(own, Exception):
        return own
    return own[0] if own else None
