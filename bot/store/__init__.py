"""The store: the only package that talks to Redis (checked by import-linter in `make lint`).

Everything outside `bot.store` that needs redis-py's types or must tell its errors apart takes
them from here, so the client library has one door:

- `Redis`, `Pipeline`: the client and its MULTI/EXEC pipeline, as parameters are typed. For mypy
  they are the typed view in `bot/store/client.py` (replies are `str`: the client decodes them);
  at run time they are redis-py's classes. `Script` is a registered Lua script; `redis_py(client)`
  gives a library that wants redis-py's own type (aiogram's RedisStorage) the same object.
- `WatchError`: a watched key changed before EXEC (`optimistic` retries on it for you).
- `store_unavailable(exc)`: the ONE answer to "is this error the store being unable to serve
  now" — connection faults and timeouts, and the error replies READONLY, NOREPLICAS, MASTERDOWN,
  LOADING, OOM, MISCONF, NOPERM (`UNAVAILABLE_REPLIES`). An adapter answers 503 with
  Retry-After (chat: try again in a while); a worker backs off and does not count it against
  the entry. `RETRY_AFTER_SECONDS` is what callers are told to wait.
- `RedisConnectionError`, `RedisTimeoutError` (together `STORE_UNAVAILABLE`): the connection
  faults alone (a subset of what `store_unavailable` accepts).
- `ResponseError`: the store answered with an error reply.
- `FaultLog`, `Backoff`, `Heartbeat`, `pause`: how a long-running loop rides out a fault
  (`bot/store/faults.py`).
- `optimistic`: the one WATCH / read / decide / MULTI-EXEC loop.

Use cases still issue their commands through the client they are given; moving every command
into repositories here is a later step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.store.client import Script, redis_py
from bot.store.faults import (
    UNAVAILABLE_REPLIES,
    Backoff,
    FaultLog,
    Heartbeat,
    fault_kind,
    pause,
    store_unavailable,
)
from bot.store.transaction import optimistic

if TYPE_CHECKING:
    # The typed view of the decode_responses client: replies are str (bot/store/client.py).
    from bot.store.client import Pipeline, Redis
else:
    # At run time the names stay redis-py's classes, so code that makes a client from them
    # (`Redis.from_url(...)` in tests) or checks isinstance behaves as before.
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

__all__ = [
    "RETRY_AFTER_SECONDS",
    "STORE_UNAVAILABLE",
    "UNAVAILABLE_REPLIES",
    "Backoff",
    "FaultLog",
    "Heartbeat",
    "Pipeline",
    "Redis",
    "RedisConnectionError",
    "RedisTimeoutError",
    "ResponseError",
    "Script",
    "WatchError",
    "fault_kind",
    "optimistic",
    "pause",
    "redis_py",
    "store_unavailable",
]

# The errors that mean "the store cannot be reached now" rather than "the request is wrong".
STORE_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError)

# What a caller refused because the store is unavailable is told to wait before trying again:
# a Sentinel failover takes about 10 s, a reconnect well under a second.
RETRY_AFTER_SECONDS: Final = 5
