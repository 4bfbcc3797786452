"""A `serve` that fails to start is killed before the error reaches the test; none outlives it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import process
from tests.support.process import ServeProcess, serve_env
from tests.support.smtp_sink import SmtpSink


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


async def test_a_start_that_times_out_kills_the_process(redis_url: str, tmp_path: Path) -> None:
    async with SmtpSink() as smtp:
        serve = ServeProcess(serve_env(redis_url, tmp_path, smtp, None), tmp_path / "s.log")
        with pytest.raises(TimeoutError):
            await serve.start(timeout=0.01)  # long before it can listen
    assert serve.process is not None
    assert serve.process.returncode == -9
    assert not running(serve.process.pid)
    assert serve.process.pid not in process._started


async def test_a_start_that_exits_early_says_why_and_leaves_nothing(
    redis_url: str, tmp_path: Path
) -> None:
    async with SmtpSink() as smtp:
        env = serve_env(redis_url, tmp_path, smtp, None, http_port="eighty")
        serve = ServeProcess(env, tmp_path / "s.log")
        with pytest.raises(RuntimeError, match="exited before listening"):
            await serve.start()
    assert serve.process is not None and serve.process.returncode == 2
    assert "ANKOMST_HTTP_PORT" in serve.failure("")
    assert not process._started


async def test_a_serve_left_running_is_killed_after_the_test(
    redis_url: str, tmp_path: Path
) -> None:
    async with SmtpSink() as smtp:
        serve = await ServeProcess(
            serve_env(redis_url, tmp_path, smtp, None), tmp_path / "s.log"
        ).start()
        assert serve.process is not None
        pid = serve.process.pid
        assert running(pid)
        # As the autouse fixture does after every test (here called early, to see it work).
        assert process.kill_leftovers() == [pid]
        assert not running(pid)
        assert os.getpgid(os.getpid()) != pid  # it had a group of its own, not ours
        await serve.died()
