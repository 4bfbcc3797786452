"""The pipeline: arrivals over HTTP → Redis → fan-out → e-mail sink and Bot API server (each in
its own process).

Also, in the same run, a naive sequential sender: for each delivery, a new SMTP connection per
mail (aiosmtplib.send) or one Bot API call per chat message, each awaited in turn.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import aiohttp

from bench import common, peers, peers_arq, peers_taskiq
from bench.common import (
    BotApiProcess,
    SinkProcess,
    fresh_redis,
    percentile,
    start_servers,
    start_together,
    table,
)
from bench.email_peers import FROM, HTML, mail, plain_send
from bench.redis_usage import backlog, db_usage, settled
from bot.channels.email import POOL_SIZE
from bot.domain.clock import SystemClock
from bot.runtime.directory_file import load_directory
from bot.store import keys
from bot.usecases.access import ApiTokens, ChatLinks
from bot.usecases.views import deliveries
from tests.support.world import EXAMPLE_DIRECTORY, TOKEN, arrival

STOCKHOLM = ZoneInfo("Europe/Stockholm")
DIRECTORY = load_directory(EXAMPLE_DIRECTORY)


def bench_chats() -> dict[str, int]:
    """A chat for every organisation of the example directory (Jämtlands län)."""
    return {org_id: 200_000 + i for i, org_id in enumerate(DIRECTORY.organisations)}


POOL = 1000
STOP_WAIT = 120.0  # seconds a service process has to stop before it is killed
READ_AT_ONCE = 32  # cases read at once while waiting (each read holds a connection of the pool)
PROFILE: str | None = None  # set by `python -m bench --profile FILE`
TERMINAL = {"sent", "failed", "superseded"}
ROUNDS = 3  # rounds of the one-process flat-out run, the naive sender and the peers (`bench`)
TOP = 12
WARMUP = common.WARMUP


class Service:
    """bench/service_proc.py as a child process."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.ready: dict[str, float] = {}

    @classmethod
    async def start(
        cls,
        settings: dict[str, Any],
        relax: bool,
        profile: str | None = None,
        wrapper: Sequence[str] = (),
    ) -> Service:
        """`wrapper`: a command the service runs under (bench/instructions.py: callgrind),
        which may take far longer to start."""
        args = [*wrapper, sys.executable, "-m", "bench.service_proc", json.dumps(settings)]
        if relax:
            args.append("--relax-telegram-limiter")
        if profile:
            args += ["--profile", profile]
        proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        start_wait = 600 if wrapper else 30
        line = (await asyncio.wait_for(proc.stdout.readline(), start_wait)).decode()
        if not line.startswith("PORT"):
            raise RuntimeError(f"service did not start: {line!r}")
        service = cls(proc, int(line.split()[1]))
        service.ready = json.loads(line.split(" ", 2)[2])
        return service

    async def stop(self) -> dict[str, Any]:
        """Stop; CPU and RSS of the process, and the same at the moment it was ready."""
        assert self.proc.stdout is not None
        self.proc.terminate()
        try:
            # A stop drains what is in hand (and writes a profile when asked): on a loaded
            # machine that has taken over 30 s.
            out = (await asyncio.wait_for(self.proc.stdout.read(), STOP_WAIT)).decode()
        except TimeoutError:
            print(f"  service did not stop within {STOP_WAIT:.0f} s: killed", file=sys.stderr)
            self.proc.kill()
            out = ""
        await self.proc.wait()
        for line in out.splitlines():
            if line.startswith("RUSAGE "):
                usage: dict[str, Any] = json.loads(line[7:])
                usage["ready_cpu"] = self.ready["cpu"]
                usage["ready_rss_mb"] = self.ready["rss_mb"]
                return usage
        nan = float("nan")
        return {"cpu": nan, "maxrss_mb": nan, "rss_mb": nan, "ready_cpu": nan, "ready_rss_mb": nan}


async def _statuses(redis: Any, case_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    """Each case's delivery rows, read as the service reads them (bot/usecases/views.py
    `deliveries`: whatever the store's layout)."""
    out: dict[str, list[dict[str, str]]] = {}
    for at in range(0, len(case_ids), READ_AT_ONCE):
        part = case_ids[at : at + READ_AT_ONCE]
        rows = await asyncio.gather(*(deliveries(redis, cid) for cid in part))
        out.update(zip(part, rows, strict=True))
    return out


async def _redis_used_mb(redis: Any) -> float:
    info = await redis.info("memory")
    return float(info["used_memory"]) / 1024 / 1024


async def made(
    redis: Any, case_ids: list[str], deadline: float, pause: float = 0.25
) -> dict[str, list[dict[str, str]]]:
    """Wait until every delivery of `case_ids` is made (sent, failed or superseded), by
    `deadline` (time.time()) or TimeoutError; each case's delivery rows.

    First the service's consumer groups are watched until none has an entry unread or pending
    (a few commands a look, whatever the number of cases): reading every waiting case's rows
    four times a second took the harness more than a quarter as much CPU as the service, on
    a 2-core machine CPU taken from the service. Then the rows are read; only cases not yet
    finished are read again, and less often the more there are. Latencies come from
    `sent_at`, so the polling pace does not bias them."""
    while time.time() < deadline:
        if not await backlog(redis):
            break
        await asyncio.sleep(pause)
    statuses: dict[str, list[dict[str, str]]] = {}
    waiting = case_ids
    while True:
        found = await _statuses(redis, waiting)
        statuses.update(found)
        waiting = [
            cid
            for cid, rs in found.items()
            if not rs or any(r.get("status") not in TERMINAL for r in rs)
        ]
        if not waiting:
            return statuses
        if time.time() > deadline:
            raise TimeoutError(f"{len(waiting)} of {len(case_ids)} cases still pending")
        await asyncio.sleep(max(pause, len(waiting) / 4000))


def _cpu_seconds(services: list[Service]) -> float:
    """CPU seconds the service processes have used so far."""
    return sum(common.cpu_seconds(s.proc.pid) for s in services)


# The processes of a pipeline run that share the machine, as `machine_budget` names them, and
# as the pipeline section words them.
MACHINE_PARTS = {
    "service": "the service",
    "redis": "Redis",
    "smtp_sink": "the SMTP sink",
    "bot_api": "the Bot API server",
    "harness": "the harness",
}


async def _machine_cpu(
    service_cpu: float, redis: Any, sink: SinkProcess, api: BotApiProcess
) -> dict[str, float]:
    """CPU seconds used so far by each process of the run (`MACHINE_PARTS`): the service
    processes (`service_cpu`, as the caller has just read it), the Redis server (its own
    `INFO cpu`, every thread), the SMTP sink, the Bot API server and this harness (its own
    process only: the others are its children)."""
    return {
        "service": service_cpu,
        "redis": await common.redis_cpu_seconds(redis),
        "smtp_sink": common.cpu_seconds(sink.proc.pid),
        "bot_api": common.cpu_seconds(api.proc.pid),
        "harness": time.process_time(),
    }


def machine_budget(
    cpu_s: Mapping[str, float], deliveries: int, processes: int, cores: int
) -> dict[str, Any]:
    """What the measured CPU says the machine can carry.

    `cpu_s` is the CPU seconds each process of the run used over the measured window
    (`MACHINE_PARTS`), `deliveries` those made in it. Two bounds on deliveries/s follow, with
    the costs per delivery as measured: the machine's (its `cores` shared by every process:
    cores / CPU of all per delivery) and the service's (`processes` event loops, each on at
    most one core: processes / the service's CPU per delivery). The lower is the ceiling.
    """
    ms = {part: cpu_s[part] / max(1, deliveries) * 1000 for part in MACHINE_PARTS}
    total = sum(ms.values())
    machine = cores * 1000 / total if total > 0 else float("inf")
    service = processes * 1000 / ms["service"] if ms["service"] > 0 else float("inf")
    return {
        "ms_per_delivery": {part: round(v, 3) for part, v in ms.items()},
        "total_ms_per_delivery": round(total, 3),
        "cores": cores,
        "machine_bound_per_s": round(machine, 1),
        "service_bound_per_s": round(service, 1),
        "ceiling_per_s": round(min(machine, service), 1),
        "bound_by": "service" if service <= machine else "machine",
    }


def service_settings(
    directory: Path,
    smtp_port: int,
    telegram_api_url: str,
    prefix: str,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The settings a benchmark's `serve` processes run with (bench/service_proc.py): the
    benchmark's Redis, the given directory, the sink and the Bot API server; `overrides` (one
    run's own, e.g. `smtp_pool_size`) over them."""
    return {
        # redis-py 8's asyncio pool holds at most 100 connections and fails at once beyond
        # that ("Too many connections" → 503); the service does not set a size, so the URL does.
        "redis_url": common.redis_url(max_connections=POOL),
        "data_dir": str(Path(tempfile.mkdtemp(prefix=prefix))),
        "directory": str(directory),
        "http_host": "127.0.0.1",
        "http_port": 0,
        "public_url": "http://ankomst.example.se",
        "secret_key": "bench-secret-key-for-signing",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_from": FROM,
        "telegram_token": TOKEN,
        "telegram_api_url": telegram_api_url,
        **(overrides or {}),
    }


async def run(
    n: int,
    processes: int = 1,
    say: Any = print,
    rate: float | None = None,
    latency: tuple[float, float] = (0.0, 0.0),
    overrides: dict[str, Any] | None = None,
    wrapper: Sequence[str] = (),
    window: Callable[[str, list[Service]], None] | None = None,
) -> tuple[str, dict[str, float]]:
    """Post `n` arrivals (as fast as taken, or paced at `rate`/s) and wait for every delivery.

    `latency` = (ms per SMTP reply, ms per Bot API request), simulated at the two servers;
    `overrides` are service settings on top of the defaults (e.g. `smtp_pool_size`).
    `wrapper`: a command the first service process runs under; `window("start" | "end",
    services)` is called where the measured window (the service's CPU) starts and ends.
    """
    smtp_delay_ms, bot_api_ms = latency
    redis, _ = await fresh_redis()
    clock = SystemClock()
    # Arrivals go round the directory's municipalities, each posted by its own reception unit,
    # and every organisation has a chat: a county's mix, not one municipality's five chats
    # (one message at a time goes to a chat, so five chats would cap the Telegram side).
    tokens = {
        mid: await ApiTokens(redis, clock).create(DIRECTORY.reception_unit(mid).id)
        for mid in DIRECTORY.municipalities
    }
    municipalities = list(tokens)
    chats = ChatLinks(redis, clock, {})
    for org_id, chat_id in bench_chats().items():
        code = await chats.create_invite(org_id, "member", 3600)
        assert await chats.redeem(code, chat_id, "bench") is not None
    sink, api = await start_servers(smtp_delay_ms, latency_ms=bot_api_ms)
    settings = service_settings(
        EXAMPLE_DIRECTORY, sink.port, api.base_url, "ankomst-bench-", overrides
    )
    services: list[Service] = await start_together(
        *(
            Service.start(
                settings,
                relax=True,
                profile=PROFILE if i == 0 else None,
                wrapper=wrapper if i == 0 else (),
            )
            for i in range(processes)
        )
    )
    date = (datetime.now(STOCKHOLM).date() + timedelta(days=2)).isoformat()
    run_id = int(time.time())
    started: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            sem = asyncio.Semaphore(32)

            async def post(i: int, prefix: str = "BENCH") -> None:
                where = municipalities[i % len(municipalities)]
                body = arrival(
                    external_ref=f"{prefix}-{run_id}-{i:06d}", arrival_date=date, municipality=where
                )
                port = services[i % len(services)].port
                if rate is not None and prefix != "WARMUP":
                    await asyncio.sleep(max(0.0, t_start + i / rate - time.time()))
                async with sem:
                    case_id, t0 = await common.post_arrival(http, port, body, tokens[where])
                started[case_id] = t0

            # Warm-up: a long-running service is warm. What the first messages cost once (the
            # lazy pydantic models of aiogram's getUpdates reply, Jinja's compiled templates,
            # the Lua scripts loaded, the SMTP connections opened) is not a delivery's, so a
            # few arrivals go through first and the measurement starts after them.
            await asyncio.gather(*(post(i, "WARMUP") for i in range(WARMUP)))
            await made(redis, list(started), time.time() + 60.0, pause=0.1)
            warm_cases = len(started)
            started.clear()
            await settled(redis, within=30.0)
            cpu_warm = _cpu_seconds(services)
            if window is not None:
                window("start", services)
            machine_warm = await _machine_cpu(cpu_warm, redis, sink, api)
            redis_before = await _redis_used_mb(redis)
            # What the db holds before the first measured arrival (tokens, chat links, the
            # service's streams and groups, the warm-up's cases) is not the measured cases':
            # it is taken off the per-case figure.
            setup = await db_usage(redis)
            t_start = time.time()
            await asyncio.gather(*(post(i) for i in range(n)))
            t_posted = time.time()
        accept_rate = n / (t_posted - t_start)
        say(f"  {n} arrivals accepted in {t_posted - t_start:.1f} s ({accept_rate:,.0f}/s)")
        case_ids = list(started)
        statuses = await made(redis, case_ids, time.time() + max(120.0, n * 0.5))
        rows = [r for rs in statuses.values() for r in rs]
        # What stays behind: open cases, their deadline timers, and the store's memory for them,
        # once the service is done (every group finished, the timers made, the streams trimmed).
        # The CPU of that wait is not the deliveries': it is taken off (the service idles).
        cpu_before_settle = _cpu_seconds(services)
        if window is not None:
            window("end", services)
        machine_done = await _machine_cpu(cpu_before_settle, redis, sink, api)
        settle = await settled(redis, within=60.0)
        settle_cpu = _cpu_seconds(services) - cpu_before_settle
        open_cases = await redis.scard(keys.OPEN_CASES) - warm_cases
        timers = await redis.zcard(keys.TIMERS)
        redis_after = await _redis_used_mb(redis)
        usage = await db_usage(redis)
        of_cases = usage.minus(setup)
    finally:
        usages = [await s.stop() for s in services]
        bot_api_messages = await api.sent()
        await api.stop()
        sink_stats = await sink.stats()
        await sink.stop()
        await redis.flushdb()
        await redis.aclose()

    latencies = []
    last_sent = 0.0
    for cid, rs in statuses.items():
        sent = [datetime.fromisoformat(r["sent_at"]).timestamp() for r in rs if r.get("sent_at")]
        if sent:
            latencies.append(max(sent) - started[cid])
            last_sent = max(last_sent, max(sent))
    total = len(rows)
    by_status: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    for r in rows:
        by_status[r.get("status", "?")] = by_status.get(r.get("status", "?"), 0) + 1
        kind = "telegram" if r.get("channel", "").startswith("tg:") else r.get("channel", "?")
        by_channel[kind] = by_channel.get(kind, 0) + 1
    delivery_rate = total / (last_sent - t_start)
    # CPU spent from the end of the warm-up until every delivery was made (start-up, warm-up
    # and the wait for the service to settle excluded), all processes.
    cpu = cpu_before_settle - cpu_warm
    # With two processes: the larger of the two (each process is its own footprint).
    rss = max(u["maxrss_mb"] for u in usages)
    rss_ready = max(u["ready_rss_mb"] for u in usages)
    rss_end = max(u["rss_mb"] for u in usages)
    figures = {
        "arrivals": n,
        "deliveries": total,
        "emails": by_channel.get("email", 0),
        "chats": by_channel.get("telegram", 0),
        "accept_rate": accept_rate,
        "delivery_rate": delivery_rate,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "rss": rss,
        "rss_ready": rss_ready,
        "rss_end": rss_end,
        "cpu_per_1000": cpu / total * 1000,
        "sink_messages": sink_stats["messages"],
        "sink_connections": sink_stats["connections"],
        "bot_api_messages": bot_api_messages,
        "open_cases": open_cases,
        "timers": timers,
        "redis_before_mb": redis_before,
        "redis_after_mb": redis_after,
        "db_keys": usage.keys,
        "db_mb": usage.mb,
        "setup_mb": setup.mb,  # the db before the first arrival: tokens, chat links, groups
        "cases_mb": of_cases.mb,  # the db after less the db before: what the cases hold
        "kb_per_case": of_cases.kb_per_case(open_cases),
        "kb_per_case_by_key": of_cases.per_case_kb(open_cases),
        **settle,
        "settle_cpu_s": settle_cpu,
        **_round_trips(usages, total),
        # Every process's CPU over the same window, and what it says the machine can carry.
        "machine": machine_budget(
            {part: machine_done[part] - machine_warm[part] for part in MACHINE_PARTS},
            total,
            processes,
            common.cores(),
        ),
    }
    say(f"  pipeline: {figures}")
    figures["statuses"] = by_status  # type: ignore[assignment]
    return "", figures


def _round_trips(usages: list[dict[str, Any]], deliveries: int) -> dict[str, Any]:
    """Redis round trips per delivery over the service processes (bench/service_proc.py)."""
    counts: dict[str, int] = {}
    for u in usages:
        for name, k in (u.get("redis") or {}).items():
            counts[name] = counts.get(name, 0) + int(k)
    special = {n: counts.pop(n) for n in list(counts) if n.startswith("(")}
    trips = sum(counts.values())
    reads = special.get("(xreadgroup reads)", 0)
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:TOP]
    return {
        "round_trips_per_delivery": trips / max(1, deliveries),
        "commands_in_pipelines_per_delivery": special.get("(commands in pipelines)", 0)
        / max(1, deliveries),
        "entries_per_stream_read": special.get("(xreadgroup entries)", 0) / max(1, reads),
        "stream_reads_per_delivery": reads / max(1, deliveries),
        "top_round_trips_per_delivery": {n: round(k / max(1, deliveries), 3) for n, k in top},
    }


async def naive(
    emails: int, chats: int, say: Any = print, latency: tuple[float, float] = (0.0, 0.0)
) -> float:
    """Deliveries/s of the naive sequential sender over `emails` mails and `chats` messages."""
    sink = await SinkProcess.start(latency[0])
    chat_ids = list(bench_chats().values())
    try:
        async with (
            await BotApiProcess.start(latency_ms=latency[1]) as api,
            peers.make_bot(api.base_url) as bot,
        ):
            # Interleave the two kinds as the deliveries of successive cases would come.
            jobs = [
                "email"
                if (i * emails) // (emails + chats) != ((i + 1) * emails) // (emails + chats)
                else "telegram"
                for i in range(emails + chats)
            ]
            # The same warm-up as the pipeline's: its first mails and messages (aiogram's lazy
            # models) are not counted; 8 deliveries an arrival, as the fan-out makes.
            for i in range(WARMUP * 8):
                if i % 2:
                    await plain_send(sink.port, mail(i))
                else:
                    await bot.send_message(chat_ids[i % len(chat_ids)], HTML[:900])
            start = time.perf_counter()
            for i, kind in enumerate(jobs):
                if kind == "email":
                    await plain_send(sink.port, mail(i))
                else:
                    await bot.send_message(chat_ids[i % len(chat_ids)], HTML[:900])
            elapsed = time.perf_counter() - start
    finally:
        await sink.stop()
    rate = (emails + chats) / elapsed
    say(f"  naive sequential: {emails + chats} deliveries in {elapsed:.1f} s ({rate:,.0f}/s)")
    return rate


# The simulated network for the latency rows: ms per SMTP reply, ms per Bot API request.
# 20 ms is a round trip to a mail server in the same country or a neighbour (a municipality's
# relay or a hosted mail service in the EU); 50 ms is a round trip from Sweden to
# api.telegram.org, whose Bot API servers are in Amsterdam, plus its own handling.
LATENCY = (20.0, 50.0)
# With 20 ms per reply a mail on a reused connection takes 4 round trips (MAIL, RCPT, DATA, the
# end of data): 80 ms, so the default POOL_SIZE connections carry at most 12.5 mails/s each.
# The setting is the lever.
WIDE_POOL = 16


def _label(p: int, how: str) -> str:
    return f"Ankomst, {p} serve process{'es' if p > 1 else ''}, {how}"


async def bench(
    n: int,
    naive_n: int,
    processes: list[int],
    say: Any = print,
    paced: list[tuple[int, float]] | None = None,
    latency: tuple[float, float] | None = LATENCY,
) -> tuple[str, dict[str, Any]]:
    """Rounds (`ROUNDS`) of the one-process flat-out run, the naive sender and the arq and
    taskiq peers (bench/peers.py) on the same arrivals, one after the other, each ratio taken
    within a round and reported as the median round's; flat-out runs with each other process
    count; (optionally) `paced` = (arrivals, per s); then, if `latency` is given, the flat-out
    pipeline and the naive sender again with that simulated network latency (ms per SMTP reply,
    ms per Bot API request).

    Returns the Markdown section and the summary `python -m bench --json` prints."""
    results: list[tuple[str, dict[str, Any]]] = []
    # Ankomst's one-process run, the naive sender on loopback and the peers, in rounds: each
    # ratio is of runs of the same round, a minute apart at most, and the one reported is the
    # median round's. The machines here swing by a factor of two within minutes (a short run
    # once made 193 deliveries/s where the runs before and after it made 729 and 466; another's
    # taskiq run beat Ankomst's of minutes before by a sixth, where the run before had
    # Ankomst ahead by a third), and one such moment decided a whole run's ratio.
    peers_here = [(name, peer) for name, peer in PEERS if peer.available()]
    for name, peer in PEERS:
        if not peer.available():
            say(f"  {name} is not installed: its peer row is skipped")
    rounds: list[_Round] = []
    for i in range(ROUNDS):
        say(f"  round {i + 1} of {ROUNDS}: pipeline with 1 service process, {n} arrivals …")
        _, figures = await run(n, 1, say)
        # On loopback the naive sender makes as many deliveries as the one-process run made:
        # two rates over runs of the same length. Over a fifth of them (200 in short mode, half
        # a second) its rate swung with the machine's moment by a third from run to run.
        loopback_n = max(naive_n, figures["deliveries"])
        emails = round(loopback_n * figures["emails"] / max(1, figures["deliveries"]))
        naive_here = await naive(emails, loopback_n - emails, say)
        peer_runs: dict[str, dict[str, Any]] = {}
        for name, peer in peers_here:
            say(f"  the same fan-out on {name}, {n} arrivals …")
            peer_runs[name] = await peer.run(n, say)
        rounds.append(_Round(figures, naive_here, loopback_n, peer_runs))
    middle = _median_round(rounds, lambda r: r.ankomst["delivery_rate"] / r.naive)
    f0, naive_rate = middle.ankomst, middle.naive
    results.append((_label(1, "flat out"), f0))
    for p in processes:
        if p == 1:
            continue
        say(f"  pipeline with {p} service process(es), {n} arrivals …")
        _, figures = await run(n, p, say)
        results.append((_label(p, "flat out"), figures))
    # Each peer's figures and Ankomst's of the same round, from the round whose ratio of
    # deliveries per CPU second is the median.
    peer_figures: dict[str, tuple[dict[str, Any], dict[str, Any]] | None] = {
        name: None for name, _ in PEERS
    }
    for name, _ in peers_here:
        at = _median_round(rounds, lambda r, name=name: _per_cpu(r.ankomst, r.peers[name]))
        peer_figures[name] = (at.peers[name], at.ankomst)
    for count, per_s in paced or []:
        say(f"  pipeline, 1 process, {count} arrivals paced at {per_s:g}/s …")
        _, figures = await run(count, 1, say, rate=per_s)
        results.append((_label(1, f"{count} arrivals paced at {per_s:g}/s"), figures))
    share = f0["emails"] / max(1, f0["deliveries"])
    loopback_n = middle.naive_deliveries
    rows = [_row(label, f, naive_rate) for label, f in results]
    rows.append(("naive sequential sender", "–", naive_rate, "–", "–", "–", "1.0×"))
    ankomst_per_cpu = 1000 / f0["cpu_per_1000"]
    summary: dict[str, Any] = {
        "cpu_ms_per_delivery": round(f0["cpu_per_1000"], 3),
        "p99_s_at_50": next(
            (round(f["p99"], 3) for label, f in results if "paced at 50/s" in label), None
        ),
        "deliveries_per_s": round(f0["delivery_rate"], 1),
        "naive_deliveries_per_s": round(naive_rate, 1),
        "vs_naive": round(f0["delivery_rate"] / naive_rate, 3),
        # Every round's (deliveries/s, naive deliveries/s), in the order run.
        "vs_naive_rounds": [
            [round(r.ankomst["delivery_rate"], 1), round(r.naive, 1)] for r in rounds
        ],
        "redis_kb_per_case": round(f0["kb_per_case"], 2),
        "redis_kb_per_case_by_key": f0["kb_per_case_by_key"],
        "deliveries_per_cpu_s": round(ankomst_per_cpu, 1),
        # What the machine can carry at the costs measured (`machine_budget`), against the
        # naive sender of the same round.
        "machine_cpu_ms_per_delivery": f0["machine"]["ms_per_delivery"],
        "machine_total_cpu_ms_per_delivery": f0["machine"]["total_ms_per_delivery"],
        "ceiling_deliveries_per_s": f0["machine"]["ceiling_per_s"],
        "ceiling_bound_by": f0["machine"]["bound_by"],
        "ceiling_vs_naive": round(f0["machine"]["ceiling_per_s"] / naive_rate, 3),
    }
    two = [f for label, f in results if "2 serve processes" in label]
    if two:
        summary["deliveries_per_s_2_processes"] = round(two[0]["delivery_rate"], 1)
        summary["scale_2_over_1"] = round(two[0]["delivery_rate"] / f0["delivery_rate"], 3)
    peer_rows = []
    for name, found in peer_figures.items():
        if found is None:
            summary[f"vs_{name}_per_cpu"] = None
            continue
        pf, same_round = found
        summary[f"{name}_deliveries_per_s"] = round(pf["delivery_rate"], 1)
        summary[f"{name}_cpu_ms_per_delivery"] = round(pf["cpu_ms_per_delivery"], 3)
        summary[f"vs_{name}_per_cpu"] = round(_per_cpu(same_round, pf), 3)
        summary[f"vs_{name}_per_cpu_rounds"] = [
            round(_per_cpu(r.ankomst, r.peers[name]), 3) for r in rounds
        ]
        peer_rows.append(
            (
                f"{name} (aiohttp handler + worker, one job per delivery)",
                pf["accept_rate"],
                pf["delivery_rate"],
                pf["deliveries"],
                pf["cpu_ms_per_delivery"],
                pf["deliveries_per_cpu_s"],
                f"{_per_cpu(same_round, pf):.2f}× (Ankomst {same_round['cpu_per_1000']:.3f} ms "
                "that round)",
            )
        )
    text = (
        f"{n} arrivals (round the {len(DIRECTORY.municipalities)} municipalities of the example "
        f"directory, each posted by its reception unit; children 9 and 4; a chat linked to each "
        f"of its {len(bench_chats())} organisations), {f0['deliveries']} deliveries "
        f"({f0['emails']} e-mail, {f0['chats']} Telegram; statuses {f0['statuses']}); "
        f"sink received {f0['sink_messages']} mails over {f0['sink_connections']} connections, "
        f"Bot API {f0['bot_api_messages']} messages. Bot API limits off and the service's "
        "Telegram limiter relaxed (see below). The SMTP sink and the Bot API server each run "
        "in a process of their own (bench/smtp_sink_proc.py, bench/botapi_proc.py), apart from "
        "the benchmark's, which posts the arrivals and reads Redis. Naive baseline: "
        f"{loopback_n} deliveries (as many as the one-process run made; {naive_n // 4} with the "
        "simulated latency) in the same e-mail/chat proportion, each awaited in turn, a new "
        f"SMTP connection per mail. The one-process flat-out run and the naive sender on "
        f"loopback ran {ROUNDS} times, alternating; their rows are the round with the median "
        "ratio (deliveries/s, one process against naive, in the order run: "
        + ", ".join(f"{r.ankomst['delivery_rate']:.0f} / {r.naive:.0f}" for r in rounds)
        + "). RSS and CPU are the service process(es) only; CPU counts "
        "from the moment the service was ready and is summed over the processes; RSS is the "
        "larger of the processes (each is its own footprint). The ratio to naive is to the naive "
        "sender under the same network (loopback, or the simulated latency). "
        + _budget_text(f0["machine"], naive_rate)
    )
    if latency is not None:
        smtp_ms, api_ms = latency
        say(
            f"  pipeline, 1 process, {n} arrivals, {smtp_ms:g} ms per SMTP reply, "
            f"{api_ms:g} ms per Bot API request …"
        )
        _, figures = await run(n, 1, say, latency=latency)
        say(f"  … again with smtp_pool_size={WIDE_POOL}")
        _, wide = await run(n, 1, say, latency=latency, overrides={"smtp_pool_size": WIDE_POOL})
        # A quarter of the deliveries: each waits its round trips in turn, so the rate is
        # steady within a few dozen, and 200 took 27 s of an 8-minute short run.
        slow_emails = round(naive_n // 4 * share)
        slow_naive = await naive(slow_emails, naive_n // 4 - slow_emails, say, latency)
        where = f"{smtp_ms:g} ms per SMTP reply, {api_ms:g} ms per Bot API request"
        rows.append(_row(_label(1, f"flat out, {where}"), figures, slow_naive))
        rows.append(
            _row(_label(1, f"flat out, {where}, smtp_pool_size={WIDE_POOL}"), wide, slow_naive)
        )
        rows.append((f"naive sequential sender, {where}", "–", slow_naive, "–", "–", "–", "1.0×"))
        text += (
            f" The last three rows simulate a network at the servers: the SMTP sink holds each "
            f"reply a client waits on {smtp_ms:g} ms, the Bot API server every request "
            f"{api_ms:g} ms "
            f"(statuses {figures['statuses']} and {wide['statuses']}); the naive sender there "
            f"made {naive_n // 4} deliveries; pipeline / naive there = "
            f"**{figures['delivery_rate'] / slow_naive:.1f}×** with the default {POOL_SIZE} SMTP "
            f"connections and **{wide['delivery_rate'] / slow_naive:.1f}×** with "
            f"{WIDE_POOL} (target ≥ 20×)."
        )
    peers_text = ""
    if peer_rows:
        peers_text = (
            "\n\nThe same fan-out written the plain way on a job queue (bench/peers.py), "
            f"same {n} arrivals, same sink, same Bot API server, same Redis, one run each in "
            f"each of the {ROUNDS} rounds, right after Ankomst's one-process run and the naive "
            "sender; each peer's row is from the round whose ratio per CPU second is the "
            "median, against Ankomst's run of that round (ratios in the order run: "
            + "; ".join(
                f"{name} " + ", ".join(f"{_per_cpu(r.ankomst, r.peers[name]):.2f}×" for r in rounds)
                for name, _ in peers_here
            )
            + "): an aiohttp handler that routes with the same "
            "directory and enqueues one job per delivery, a worker (64 at a time) that sends "
            "each with `aiosmtplib.send()` (a connection per mail, the bytes of benchmark 1) "
            "or aiogram's `Bot.send_message`. CPU is the handler and worker processes "
            "(children included, psutil) from ready to the last delivery; Ankomst's is its "
            "`serve` process from ready to stop. The peers keep no idempotency, deadlines, "
            "history or claim.\n\n"
            + table(
                [
                    "",
                    "arrivals/s accepted",
                    "deliveries/s",
                    "deliveries",
                    "CPU ms / delivery",
                    "deliveries per CPU s",
                    "Ankomst per CPU s / peer's",
                ],
                [
                    (
                        _label(1, "flat out"),
                        f0["accept_rate"],
                        f0["delivery_rate"],
                        f0["deliveries"],
                        f0["cpu_per_1000"],
                        ankomst_per_cpu,
                        "1.00×",
                    ),
                    *peer_rows,
                ],
            )
        )
    return (
        text
        + "\n\n"
        + table(
            [
                "",
                "arrivals/s accepted",
                "deliveries/s",
                "request→last delivery p50/p95/p99 (s)",
                "peak RSS, MB (idle / after)",
                "CPU s / 1000 deliveries",
                "ratio to naive",
            ],
            rows,
        )
        + peers_text
    ), summary


PEERS = (("arq", peers_arq), ("taskiq", peers_taskiq))


@dataclass(frozen=True)
class _Round:
    """One round of `bench`: Ankomst's one-process run, the naive sender's rate, the peers'."""

    ankomst: dict[str, Any]
    naive: float
    naive_deliveries: int  # how many the naive sender made (as many as Ankomst's run, at least)
    peers: dict[str, dict[str, Any]]


def _median_round(rounds: list[_Round], ratio: Callable[[_Round], float]) -> _Round:
    """The round whose `ratio` is the median (the higher middle one of an even count)."""
    return sorted(rounds, key=ratio)[len(rounds) // 2]


def _per_cpu(ankomst: dict[str, Any], peer: dict[str, Any]) -> float:
    """Ankomst's deliveries per CPU second over the peer's."""
    return (1000 / ankomst["cpu_per_1000"]) / peer["deliveries_per_cpu_s"]


def _budget_text(budget: dict[str, Any], naive_rate: float) -> str:
    """The sentences of the pipeline section on `machine_budget`'s figures."""
    ms = budget["ms_per_delivery"]
    parts = ", ".join(f"{words} {ms[part]:.2f}" for part, words in MACHINE_PARTS.items())
    cores, total = budget["cores"], budget["total_ms_per_delivery"]
    machine, service = budget["machine_bound_per_s"], budget["service_bound_per_s"]
    ceiling = budget["ceiling_per_s"]
    return (
        "Every process shares this machine's cores, so the one-process run's rate has two "
        "bounds. The CPU each process used in that run's measured window, ms per delivery: "
        f"{parts}; {total:.2f} in all on {cores} cores. At these costs the machine carries at "
        f"most {cores} × 1000 / {total:.2f} = {machine:,.0f} deliveries/s, and one process, on "
        f"one core at most, 1000 / {ms['service']:.2f} = {service:,.0f}: the ceiling is "
        f"**{ceiling:,.0f} deliveries/s, {ceiling / naive_rate:.2f}× the naive sender** of that "
        "round."
    )


def _row(label: str, f: dict[str, Any], naive_rate: float) -> tuple[Any, ...]:
    return (
        label,
        f["accept_rate"],
        f["delivery_rate"],
        f"{f['p50']:.2f} / {f['p95']:.2f} / {f['p99']:.2f}",
        f"{f['rss']:.0f} ({f['rss_ready']:.0f} idle, {f['rss_end']:.0f} after)",
        f["cpu_per_1000"],
        "(paced)" if "paced" in label else f"{f['delivery_rate'] / naive_rate:.1f}×",
    )


async def memory(n: int, say: Any = print) -> str:
    """One service, `n` arrivals through the API, every delivery made: what it holds then."""
    say(f"  {n} open cases through one service …")
    _, f = await run(n, 1, say)
    per_case_kb = f["kb_per_case"]
    by_key = cast(dict[str, float], f["kb_per_case_by_key"])
    text = (
        f"{n} arrivals posted to one `serve` process flat out, as in benchmark 2; measured once "
        f"every delivery was made ({f['deliveries']}; statuses {f['statuses']}), with the cases "
        "still open (nobody acknowledges) and their deadline timers pending in Redis. RSS is "
        "the service process (VmRSS when ready, VmRSS after the last delivery, VmHWM); Redis "
        "is `INFO memory` used_memory of the whole server (other databases and clients "
        "included) before the first POST and after the last delivery, and the sum of `MEMORY "
        "USAGE` over every key of the benchmark's database once the service was done (every "
        "consumer group finished, the timers made, the streams trimmed: "
        f"{f['settle_s']:.1f} s after the last delivery), less the same sum before the first "
        f"POST ({f['setup_mb'] * 1024:.0f} KB: API tokens, chat links, empty streams and "
        "groups), per open case. The largest key shapes, KB per open case: "
        + ", ".join(f"`{k}` {v:.2f}" for k, v in by_key.items())
        + ".\n\n"
    )
    return text + table(
        [
            "open cases",
            "deadline timers pending",
            "service RSS idle, MB",
            "service RSS after, MB",
            "service peak RSS, MB",
            "Redis used_memory before → after, MB",
            "keys in the db (MEMORY USAGE, MB)",
            "Redis per open case (tokens and chat links not counted), KB",
        ],
        [
            (
                f["open_cases"],
                f["timers"],
                f["rss_ready"],
                f["rss_end"],
                f["rss"],
                f"{f['redis_before_mb']:.1f} → {f['redis_after_mb']:.1f}",
                f"{f['db_keys']:,} ({f['db_mb']:.1f})",
                per_case_kb,
            )
        ],
    )
