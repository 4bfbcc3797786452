"""The store's Lua scripts, kept as .lua files in bot/store/lua/ and loaded by name."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.resources import files

from bot.store.client import Redis, Script

__all__ = ["Script", "hash_reply", "register", "source"]


@cache
def source(*names: str) -> str:
    """The text of the named scripts, joined in order (a prelude first, e.g. "redis_now")."""
    folder = files("bot.store").joinpath("lua")
    return "\n".join(folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in names)


def register(redis: Redis, *names: str) -> Script:
    """The script made of `names` (see `source`), registered with `redis` (EVALSHA, loaded on
    first use)."""
    return redis.register_script(source(*names))


def hash_reply(flat: Sequence[str]) -> dict[str, str]:
    """A hash a script read with HGETALL and returned: field/value pairs in a flat list."""
    return dict(zip(flat[::2], flat[1::2], strict=True))
