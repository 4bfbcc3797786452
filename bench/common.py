"""Shared pieces: the machine, statistics, Markdown tables, the sink process, Redis."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.asyncio import Redis

# ANKOMST_BENCH_REDIS_URL lets two people bench on one Redis (each run flushes its db).
REDIS_URL = os.environ.get("ANKOMST_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
_embedded: Any = None


def redis_url(**params: object) -> str:
    """The Redis URL in use, with extra query parameters (e.g. max_connections)."""
    if not params:
        return REDIS_URL
    sep = "&" if "?" in REDIS_URL else "?"
    return REDIS_URL + sep + "&".join(f"{k}={v}" for k, v in params.items())


async def choose_redis(say: Any = print) -> str:
    """db 14 of 127.0.0.1:6379 if it answers, else an embedded Valkey (bot/runtime/embedded.py)."""
    global REDIS_URL, _embedded
    probe = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await probe.ping()
        say(f"Redis: {REDIS_URL}")
    except Exception:
        import tempfile
        from pathlib import Path

        from bot.runtime.embedded import EmbeddedValkey

        _embedded = EmbeddedValkey(Path(tempfile.mkdtemp(prefix="ankomst-bench-valkey-")))
        _embedded.start()
        REDIS_URL = f"{_embedded.url}?db=14"
        say(f"Redis: 127.0.0.1:6379 does not answer; embedded Valkey at {REDIS_URL}")
    finally:
        await probe.aclose()
    return REDIS_URL


def stop_embedded() -> None:
    if _embedded is not None and hasattr(_embedded, "stop"):
        _embedded.stop()


def machine() -> dict[str, str]:
    """nproc, CPU model, RAM, Python and OS, for the report."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = "?"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = int(f.readline().split()[1])
            ram = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": ram,
        "python": sys.version.split()[0],
        "os": f"{platform.system()} {platform.release()}",
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            if v != v:  # NaN
                return "–"
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class SinkProcess:
    """bench/smtp_sink_proc.py running as a child process."""

    proc: asyncio.subprocess.Process
    port: int
    stats_port: int

    @classmethod
    async def start(cls, reply_delay_ms: float = 0.0) -> SinkProcess:
        """Start the sink; `reply_delay_ms` holds each SMTP reply that long (simulated RTT)."""
        args = [sys.executable, "-m", "bench.smtp_sink_proc"]
        if reply_delay_ms:
            args += ["--reply-delay-ms", str(reply_delay_ms)]
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().split()
        return cls(proc, int(line[1]), int(line[3]))

    async def stats(self) -> dict[str, int]:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{self.stats_port}/") as r:
            data: dict[str, int] = json.loads(await r.text())
            return data

    async def reset(self) -> None:
        async with aiohttp.ClientSession() as s:
            await s.post(f"http://127.0.0.1:{self.stats_port}/reset")

    async def wait_for(self, count: int, within: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (await self.stats())["messages"] < count:
            if loop.time() > deadline:
                raise TimeoutError(f"sink got fewer than {count} messages")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def fresh_redis() -> tuple[Redis, str]:
    """A client for the chosen Redis (db 14), flushed, and its URL."""
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    await redis.ping()
    await redis.flushdb()
    return redis, REDIS_URL


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process and its children (taskiq forks its worker) have used.

    psutil comes with the `bench` extra; it is imported here, not at the top, so that the
    bench modules import without it (tests/unit/test_bench_scale.py runs under `make test`)."""
    import psutil  # type: ignore[import-untyped]

    total = 0.0
    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return total
    for p in family:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total
