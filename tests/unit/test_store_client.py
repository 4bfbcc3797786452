"""The typed view of the client (bot/store/client.py) names only what redis-py has.

mypy checks every caller against the Protocols, but nothing checks the Protocols against
redis-py: the client is cast to them once. So a command or a parameter spelled there that
redis-py does not have would pass mypy and fail at run time. Pure: no Redis.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from redis.asyncio import Redis as RedisPy
from redis.asyncio.client import Pipeline as PipelinePy
from redis.commands.core import AsyncScript

from bot.store import client
from bot.store.connection import _client_options

PAIRS = [(client.Redis, RedisPy), (client.Pipeline, PipelinePy), (client.Script, AsyncScript)]
KEPT_DUNDERS = {"__call__", "__aenter__", "__aexit__"}


def declared(protocol: type) -> list[str]:
    return sorted(
        name
        for name, value in vars(protocol).items()
        if (not name.startswith("_") or name in KEPT_DUNDERS)
        and (callable(value) or isinstance(value, property))
    )


def signatures(protocol: type, name: str) -> list[inspect.Signature]:
    # An @overload'ed member is bound to typing's dummy; its overloads are found by name.
    where = SimpleNamespace(
        __module__=protocol.__module__, __qualname__=f"{protocol.__qualname__}.{name}"
    )
    overloads = typing.get_overloads(cast(Callable[..., Any], where))
    return [inspect.signature(f) for f in overloads or [vars(protocol)[name]]]


CASES = [(protocol, real, name) for protocol, real in PAIRS for name in declared(protocol)]


@pytest.mark.parametrize(
    ("protocol", "real", "name"), CASES, ids=[f"{p.__name__}.{n}" for p, _, n in CASES]
)
def test_every_declared_command_and_parameter_exists_in_redis_py(
    protocol: type, real: type, name: str
) -> None:
    if isinstance(vars(protocol)[name], property):
        # An attribute the client sets from its constructor's argument (connection_pool).
        assert name in inspect.signature(real).parameters, f"{real.__name__} has no {name}"
        return
    assert hasattr(real, name), f"redis-py's {real.__name__} has no {name}"
    upstream = inspect.signature(getattr(real, name)).parameters
    has_var_keyword = any(p.kind is p.VAR_KEYWORD for p in upstream.values())
    positional = [
        p.name for p in upstream.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    for signature in signatures(protocol, name):
        for index, parameter in enumerate(signature.parameters.values()):
            if parameter.kind is parameter.VAR_POSITIONAL:
                assert any(p.kind is p.VAR_POSITIONAL for p in upstream.values()), name
            elif parameter.kind is parameter.KEYWORD_ONLY:
                assert parameter.name in upstream or has_var_keyword, (name, parameter.name)
            else:  # positional: same name at the same place
                assert index < len(positional), (name, parameter.name)
                assert positional[index] == parameter.name, (name, parameter.name)


def test_the_clients_decode_replies_as_the_typed_view_says() -> None:
    assert _client_options(tcp=True)["decode_responses"] is True
    assert _client_options(tcp=False)["decode_responses"] is True
