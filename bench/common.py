"""Shared pieces: the machine, statistics, Markdown tables, the sink and Bot API server
processes, Redis."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import resource
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import aiohttp
from redis.asyncio import Redis

# ANKOMST_BENCH_REDIS_URL lets two people bench on one Redis (each run flushes its db).
REDIS_URL = os.environ.get("ANKOMST_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
_embedded: Any = None

# Arrivals sent through before each measured run, Ankomst's and the peers' alike (two per
# municipality): what the first messages cost once is not a delivery's.
WARMUP = 16


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


def cores() -> int:
    """The cores this process may run on (its children, the benchmark's servers, inherit
    them): what the machine's processes share."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


async def redis_cpu_seconds(redis: Redis) -> float:
    """CPU seconds the Redis server has used so far (its own `INFO cpu`, every thread and
    every client's work)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


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
        "nproc": str(cores()),
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
class ChildServer:
    """A server of the bench in a child process of its own (`python -m <module> ...`), so that
    its work is not on the event loop (nor under the GIL) of the load generator. The child
    prints one line naming its ports, the last two words "STATS <port>", then serves until
    SIGTERM; GET on the stats port answers its counts as JSON (the child's side:
    `serve_stats`)."""

    proc: asyncio.subprocess.Process
    stats_port: int

    @staticmethod
    async def _spawn(
        module: str, args: Sequence[str], within: float
    ) -> tuple[asyncio.subprocess.Process, list[str]]:
        """Start `python -m module args`; the process and the words of its first line."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, *args, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        words = (await asyncio.wait_for(proc.stdout.readline(), within)).decode().split()
        if len(words) < 2 or words[-2] != "STATS":
            raise RuntimeError(f"{module} did not start: {words!r}")
        return proc, words

    async def stats(self, **query: str) -> dict[str, int]:
        url = f"http://127.0.0.1:{self.stats_port}/"
        async with aiohttp.ClientSession() as s, s.get(url, params=query) as r:
            data: dict[str, int] = json.loads(await r.text())
            return data

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_stats(
    first_words: str,
    counts: Callable[[Mapping[str, str]], dict[str, int]],
    reset: Callable[[], None] | None = None,
) -> None:
    """The child's side of `ChildServer`: serve `counts(query)` as JSON on GET / of a free port
    (POST /reset calls `reset`), print `first_words` and "STATS <port>" on one line, and return
    at SIGINT or SIGTERM."""
    from aiohttp import web

    async def get(request: web.Request) -> web.Response:
        return web.json_response(counts(request.query))

    async def post_reset(request: web.Request) -> web.Response:
        if reset is not None:
            reset()
        return web.json_response(counts({}))

    app = web.Application()
    app.router.add_get("/", get)
    app.router.add_post("/reset", post_reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stats_port = runner.addresses[0][1]
    print(f"{first_words} STATS {stats_port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


@dataclass
class SinkProcess(ChildServer):
    """bench/smtp_sink_proc.py running as a child process."""

    port: int

    @classmethod
    async def start(cls, reply_delay_ms: float = 0.0) -> SinkProcess:
        """Start the sink; `reply_delay_ms` holds each SMTP reply that long (simulated RTT)."""
        args = ["--reply-delay-ms", str(reply_delay_ms)] if reply_delay_ms else []
        proc, words = await cls._spawn("bench.smtp_sink_proc", args, within=15)
        return cls(proc=proc, stats_port=int(words[-1]), port=int(words[1]))

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


@dataclass
class BotApiProcess(ChildServer):
    """bench/botapi_proc.py, the Bot API server of the tests (tests/support/telegram_api.py's
    FakeTelegramAPI), running as a child process: `base_url` is the service's
    `telegram_api_url`; `stats()` answers {"sent": messages delivered (successful
    sendMessage), "calls": calls answered, "telegram_429": calls answered 429}, and with
    `violations="1"` also "limit_violations" (FakeTelegramAPI.limit_violations)."""

    base_url: str

    @classmethod
    async def start(cls, enforce_limits: bool = False, latency_ms: float = 0.0) -> BotApiProcess:
        """Start the server; `enforce_limits` answers 429 past Telegram's limits, `latency_ms`
        holds every request that long (simulated RTT)."""
        args = ["--enforce-limits"] if enforce_limits else []
        if latency_ms:
            args += ["--latency-ms", str(latency_ms)]
        # The child imports aiogram (the tests' support module does) before it answers: a
        # second or two with the models' builds deferred, more on a busy machine.
        proc, words = await cls._spawn("bench.botapi_proc", args, within=30)
        return cls(proc=proc, stats_port=int(words[-1]), base_url=words[1])

    async def sent(self) -> int:
        """The messages delivered so far."""
        return (await self.stats())["sent"]


async def start_together(*starts: Awaitable[Any]) -> list[Any]:
    """Start child processes side by side (each start is mostly a new interpreter's imports);
    if one fails to start, the others are stopped and its error raised."""
    started = await asyncio.gather(*starts, return_exceptions=True)
    failed = [x for x in started if isinstance(x, BaseException)]
    if not failed:
        return started
    for x in started:
        if not isinstance(x, BaseException):
            await x.stop()
    raise failed[0]


async def start_servers(
    smtp_delay_ms: float = 0.0, *, enforce_limits: bool = False, latency_ms: float = 0.0
) -> tuple[SinkProcess, BotApiProcess]:
    """The SMTP sink and the Bot API server (`SinkProcess.start`, `BotApiProcess.start`),
    started together: the Bot API server's two seconds of imports need not wait for the sink."""
    sink, api = await start_together(
        SinkProcess.start(smtp_delay_ms),
        BotApiProcess.start(enforce_limits=enforce_limits, latency_ms=latency_ms),
    )
    return sink, api


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


async def post_arrival(
    http: aiohttp.ClientSession, port: int, body: dict[str, Any], token: str
) -> tuple[str, float]:
    """POST one arrival to the service on `port` with `token`; (its case id, when the request
    went out). Any answer but 201 raises."""
    sent = time.time()
    async with http.post(
        f"http://127.0.0.1:{port}/api/v1/arrivals",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        answer = await r.json()
        if r.status != 201:
            raise RuntimeError(f"{r.status}: {answer}")
    return str(answer["id"]), sent
