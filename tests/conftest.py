"""Shared fixtures: a real Redis/Valkey for every test, flushed before each one.

Under pytest-xdist (`make test` runs two workers) each worker is a process with a server or a
database of its own, never shared: the tests flush it and count every key in it. Two workers
on databases of one server share what is server-wide (loaded scripts, CONFIG, clients): a test
that changes that takes a server of its own (tests/support/valkey.py).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from tests.support.valkey import embedded_valkey
from tests.support.workers import url_of_worker, worker_index


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real server: the one named by the environment (this worker's database of it), else an
    embedded Valkey for the session (one per worker)."""
    setting = (
        os.environ.get("ANKOMST_TEST_REDIS_URL")
        or os.environ.get("ANKOMST_REDIS_URL")
        or os.environ.get("REDIS_URL")
    )
    if setting:
        yield url_of_worker(setting, worker_index())
        return
    with embedded_valkey() as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client on a flushed database; every test starts from nothing."""
    client: Redis = Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session", autouse=True)
def _aiogram_answer_types_kept() -> None:
    """Where tests talk to the fake Bot API, aiogram's answer models are built once for the
    session instead of again after every garbage collection (telegram_api.keep_answer_types)."""
    fake = sys.modules.get("tests.support.telegram_api")  # not imported: no test talks to it
    if fake is not None:
        fake.keep_answer_types()


@pytest.fixture(autouse=True)
def _no_serve_outlives_its_test() -> Iterator[None]:
    """Kill any `ankomst serve` a test started and left running, whatever way it ended."""
    yield
    process = sys.modules.get("tests.support.process")  # not imported: none was started
    if process is not None:
        process.kill_leftovers()
