"""`ankomst serve` as a real subprocess, for tests that kill it.

The process talks to the test's Redis, the test's SMTP sink and the test's Bot API server, so
what it delivered is counted where it arrived. Its HTTP port is read from its own start-up line.

No `serve` may outlive its test: one left running keeps consuming the test database and fails
later tests. Each runs in a process group of its own; a start that fails (timeout, early exit,
cancellation) kills the group before the error propagates, and `kill_leftovers()` (called after
every test by tests/conftest.py) kills whatever a test did not stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

from bot.domain.delivery import delivery_row
from bot.store import keys
from bot.store.deliveries import case_delivery_rows
from tests.support.smtp_sink import SmtpSink
from tests.support.telegram_api import FakeTelegramAPI
from tests.support.world import EXAMPLE_DIRECTORY, TOKEN

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(rb"HTTP: listening on http://[\d.]+:(\d+)")

# Every `serve` started and not yet seen to exit (pid = its process group).
_started: set[int] = set()


def serve_env(
    redis_url: str,
    data_dir: Path,
    smtp: SmtpSink,
    telegram: FakeTelegramAPI | None,
    **settings: object,
) -> dict[str, str]:
    """The environment of a `serve` process pointed at the test's parts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANKOMST_")}
    env.update(
        {
            "ANKOMST_REDIS_URL": redis_url,
            "ANKOMST_DATA_DIR": str(data_dir),
            "ANKOMST_DIRECTORY": str(EXAMPLE_DIRECTORY),
            "ANKOMST_HTTP_HOST": "127.0.0.1",
            "ANKOMST_HTTP_PORT": "0",
            "ANKOMST_PUBLIC_URL": "http://ankomst.example.se",
            "ANKOMST_SECRET_KEY": "test-secret-key-for-signing",
            "ANKOMST_SMTP_HOST": smtp.host,
            "ANKOMST_SMTP_PORT": str(smtp.port),
            "ANKOMST_SMTP_FROM": "Ankomst <ankomst@ostersund.example.se>",
            "ANKOMST_CLAIM_SECONDS": "2",
            "ANKOMST_SCHEDULER_POLL_SECONDS": "3600",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if telegram is not None:
        env["ANKOMST_TELEGRAM_TOKEN"] = TOKEN
        env["ANKOMST_TELEGRAM_API_URL"] = telegram.base_url
    for name, value in settings.items():
        env[f"ANKOMST_{name.upper()}"] = str(value)
    return env


@dataclass
class ServeProcess:
    """One `python -m bot serve` (or `command`); `port` is known once it listens."""

    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None
    port: int = 0
    output: list[bytes] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    # What runs after `python -m`: the real command, or a test wrapper of it
    # (tests.support.failpoint.command).
    command: tuple[str, ...] = ("bot", "serve")

    @property
    def base(self) -> str:
        """Its HTTP root."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> ServeProcess:
        """Start it and wait until it listens."""
        stderr = self.log.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                *self.command,
                cwd=ROOT,
                env=self.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # its own process group, killed as one
            )
        finally:
            stderr.close()
        _started.add(self.process.pid)
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def read() -> None:
            assert self.process is not None and self.process.stdout is not None
            async for line in self.process.stdout:
                self.output.append(line)
                found = LISTENING.search(line)
                if found and not listening.done():
                    listening.set_result(int(found.group(1)))
            if not listening.done():
                listening.set_exception(RuntimeError(self.failure("exited before listening")))

        self._reader = asyncio.create_task(read())
        try:
            self.port = await asyncio.wait_for(listening, timeout)
        except BaseException:
            await self.kill()  # never leave a half-started `serve` behind
            raise
        return self

    def failure(self, what: str) -> str:
        """A message with the process's output, for an assertion."""
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        return f"serve {what}:\n{b''.join(self.output).decode(errors='replace')}\n{tail}"

    async def died(self, timeout: float = 30.0) -> int:
        """Wait until it has exited (e.g. killed by a failpoint); its return code."""
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        _started.discard(self.process.pid)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        return code

    async def kill(self) -> None:
        """SIGKILL to its whole process group: no cleanup, no XACK, no claim released."""
        if self.process is None:
            return
        if self.process.returncode is None:
            _kill_group(self.process.pid)
        await self.died()

    async def stop(self) -> None:
        """SIGTERM and wait (or SIGKILL if it hangs)."""
        if self.process is None:
            return
        if self.process.returncode is not None:
            await self.died()
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await self.died(15)
        except TimeoutError:
            await self.kill()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def kill_leftovers() -> list[int]:
    """SIGKILL every `serve` a test started and did not see exit; their pids.

    Synchronous, for fixture teardown after the test's event loop is gone. Waits (briefly)
    until each is really gone, so the next test never shares the database with it.
    """
    left = list(_started)
    _started.clear()
    for pid in left:
        _kill_group(pid)
    for pid in left:
        _wait_gone(pid)
    return left


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until the process has exited (a zombie has: it runs no more)."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)


async def post_arrival(
    http: aiohttp.ClientSession, base: str, token: str, body: dict[str, Any]
) -> tuple[int, Any]:
    """POST an arrival to a running process; (status, JSON or text)."""
    async with http.post(
        f"{base}/api/v1/arrivals", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        text = await response.text()
        if response.content_type.endswith("json"):
            import json

            return response.status, json.loads(text)
        return response.status, text


async def all_deliveries(redis: Redis) -> dict[str, dict[str, str]]:
    """Every delivery record in the store, by id, with the fields its id names
    (`delivery_row`): those of every case's index (packed, or listed there and in the older
    set with a hash of their own, read through the store), and any other hash of its own."""
    out: dict[str, dict[str, str]] = {}
    cases: set[str] = set()
    for suffix in ("delivery_ids", "deliveries"):
        async for key in redis.scan_iter(match=f"{keys.PREFIX}:case:*:{suffix}", count=500):
            cases.add(key.removeprefix(f"{keys.PREFIX}:case:").removesuffix(f":{suffix}"))
    for case_id in cases:
        for ident, stored in await case_delivery_rows(redis, case_id):
            out[ident] = delivery_row(ident, stored)
    async for key in redis.scan_iter(match=f"{keys.PREFIX}:delivery:*", count=500):
        ident = key.removeprefix(f"{keys.PREFIX}:delivery:")
        if ident not in out:
            stored = await redis.hgetall(key)
            out[ident] = delivery_row(ident, stored) if stored else stored
    return out


def mail_counts(smtp: SmtpSink) -> Counter[str]:
    """How many times each Message-ID arrived at the sink (one Message-ID per delivery)."""
    return Counter(str(m["Message-ID"]) for m in smtp.messages)


def chat_counts(telegram: FakeTelegramAPI) -> Counter[tuple[int, str]]:
    """How many times each (chat, text) was accepted by the Bot API server."""
    return Counter(
        (int(c.chat_id or 0), c.text or "") for c in telegram.calls_to("sendMessage") if c.ok
    )
