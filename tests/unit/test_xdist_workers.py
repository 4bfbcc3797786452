"""Each pytest-xdist worker gets a test database of its own (tests/support/workers.py)."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import parse_url

from tests.support.workers import url_of_worker, worker_index


def test_one_url_gives_worker_i_database_db_plus_i() -> None:
    assert url_of_worker("redis://127.0.0.1:6379/13", 0) == "redis://127.0.0.1:6379/13"
    assert url_of_worker("redis://127.0.0.1:6379/13", 1) == "redis://127.0.0.1:6379/14"
    assert url_of_worker("redis://127.0.0.1:6379", 2) == "redis://127.0.0.1:6379/2"
    # Credentials and options are kept; a db in the query is replaced, as redis-py reads it.
    moved = url_of_worker("rediss://u:p@redis.example:6380/3?db=5&health_check_interval=2", 1)
    assert parse_url(moved)["db"] == 6
    assert moved.startswith("rediss://u:p@redis.example:6380/6?")
    assert "health_check_interval=2" in moved


def test_a_unix_socket_url_moves_its_db_query() -> None:
    moved = url_of_worker("unix:///tmp/v/valkey.sock?db=2", 1)
    assert parse_url(moved) | {"connection_class": None} == {
        "path": "/tmp/v/valkey.sock",
        "db": 3,
        "connection_class": None,
    }
    assert parse_url(url_of_worker("unix:///tmp/v/valkey.sock", 1))["db"] == 1


def test_several_urls_give_one_to_each_worker() -> None:
    setting = "redis://127.0.0.1:6379/12, redis://127.0.0.1:6379/15"
    assert url_of_worker(setting, 0) == "redis://127.0.0.1:6379/12"
    assert url_of_worker(setting, 1) == "redis://127.0.0.1:6379/15"
    with pytest.raises(ValueError, match="worker 2 has no test Redis"):
        url_of_worker(setting, 2)


def test_the_worker_index_comes_from_pytest_xdist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert worker_index() == 3
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert worker_index() == 0
