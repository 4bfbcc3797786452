"""The store: the only package that talks to Redis (checked by import-linter in `make lint`).

Everything outside `bot.store` that needs redis-py's types or must tell its errors apart takes
them from here, so the client library has one door:

- `Redis`, `Pipeline`: the client and its MULTI/EXEC pipeline, as parameters are typed. For mypy
  they are the typed view in `bot/store/client.py` (replies are `str`: the client decodes them);
  at run time they are redis-py's classes. `Script` is a registered Lua script; `redis_py(client)`
  gives a library that wants redis-py's own type (aiogram's RedisStorage) the same object.
- `WatchError`: a watched key changed before EXEC (`optimistic` retries on it for you).
- `RedisConnectionError`, `RedisTimeoutError` (together `STORE_UNAVAILABLE`): the store cannot
  be reached now; an adapter answers 503, a worker backs off.
- `ResponseError`: the store answered with an error reply.
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
    "STORE_UNAVAILABLE",
    "Pipeline",
    "Redis",
    "RedisConnectionError",
    "RedisTimeoutError",
    "ResponseError",
    "Script",
    "WatchError",
    "optimistic",
    "redis_py",
]

# The errors that mean "the store cannot be reached now" rather than "the request is wrong".
STORE_UNAVAILABLE: Final = (RedisConnectionError, RedisTimeoutError)
