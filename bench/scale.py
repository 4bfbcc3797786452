"""Scale (issue 17, item 5): all of Sweden on one Redis and two `serve` processes.

A generated directory of the 290 municipalities in their 21 regions (real region names and
municipality counts; the municipalities are numbered, not named), the 2015 peak replayed at 10×
speed against two `serve` processes and one Redis, and the same arrivals flat out, which gives
the headroom: the capacity measured flat out over the replayed rate.

The load, and what it assumes (each an assumption, named here so a reader can change it):

- The issue's figure: about 1,300 unaccompanied children a week nationally at the 2015 peak,
  each an arrival of one child (ages 12-17).
- Families: twice as many family arrivals as unaccompanied children (2,600 a week), each with
  1-4 children aged 0-17. The domain sources (/work/shared/domain) give no figure; twice is
  meant to be generous.
- Arrivals are registered on the 5 working days, in 8 office hours; the busiest hour carries
  twice the average office hour (the morning, when the night's notices are read): 195 an hour.
- Municipalities get arrivals in proportion to their population: each region's approximate
  population, split over its municipalities by rank (Zipf: the k-th gets a share ∝ 1/k).
- Arrival times are a Poisson process at the replayed rate (seeded).

The runs, each against two `serve` processes and one Redis (db flushed before each), the SMTP
sink and the Bot API server each in a process of its own (bench/common.py's SinkProcess and
BotApiProcess):

1. the replay, with the service's real Telegram limiter, a Bot API server enforcing Telegram's
   limits and the network latency of bench/pipeline.py (20 ms per SMTP reply, 50 ms per Bot API
   request);
2. flat out on loopback with the Telegram limiter relaxed (as bench/pipeline.py): the capacity;
3. the SMTP pool alone (section 1's EmailSender) against a relay answering in 20 ms;
4. (`--full`) flat out as deployed: limits and latency as in the replay.

`python -m bench --only scale --no-write` runs it (short: the first 10 minutes of the peak hour
at 10×, 60 s, and 200 arrivals flat out; `--full`: the whole peak hour at 10×, 6 minutes, 2,000
arrivals flat out and 1,000 as deployed). `python -m bench.scale` runs the short sizes alone
(`--replay-s`, `--flat`, `--deployed` change them) and prints the summary as JSON;
`--write-directory PATH` writes the generated directory (for `ankomst directory check PATH`);
`--idle` starts one process with the example directory and one with this one, three times each,
for the start time and the idle RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench import common, email_peers
from bench.common import BotApiProcess, SinkProcess, fresh_redis, percentile, table
from bench.pipeline import (
    LATENCY,
    STOCKHOLM,
    Service,
    _round_trips,
    made,
    service_settings,
)
from bench.redis_usage import db_usage, settled
from bot.channels.email import POOL_SIZE
from bot.domain.clock import SystemClock
from bot.domain.directory import Directory
from bot.runtime.directory_file import load_directory
from bot.store import keys
from bot.usecases.access import ApiTokens
from tests.support.world import EXAMPLE_DIRECTORY, TOKEN

# --- the country ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """A region (län): ISO 3166-2:SE letters, names, municipality count, population."""

    iso: str  # SE-AB → "AB"
    county: str
    name: str  # the regional health-care authority, which runs the health centres
    municipalities: int
    population_k: int  # approximate, thousands (end of 2015); used only as weights


# The 21 regions with their real names and municipality counts (290 in all). Populations are
# approximate, rounded to the thousand (about 9.85 million in all, end of 2015).
REGIONS: tuple[Region, ...] = (
    Region("AB", "Stockholms län", "Region Stockholm", 26, 2232),
    Region("C", "Uppsala län", "Region Uppsala", 8, 354),
    Region("D", "Södermanlands län", "Region Sörmland", 9, 284),
    Region("E", "Östergötlands län", "Region Östergötland", 13, 447),
    Region("F", "Jönköpings län", "Region Jönköpings län", 13, 348),
    Region("G", "Kronobergs län", "Region Kronoberg", 8, 191),
    Region("H", "Kalmar län", "Region Kalmar län", 12, 238),
    Region("I", "Gotlands län", "Region Gotland", 1, 58),
    Region("K", "Blekinge län", "Region Blekinge", 5, 156),
    Region("M", "Skåne län", "Region Skåne", 33, 1304),
    Region("N", "Hallands län", "Region Halland", 6, 315),
    Region("O", "Västra Götalands län", "Västra Götalandsregionen", 49, 1647),
    Region("S", "Värmlands län", "Region Värmland", 16, 276),
    Region("T", "Örebro län", "Region Örebro län", 12, 291),
    Region("U", "Västmanlands län", "Region Västmanland", 10, 264),
    Region("W", "Dalarnas län", "Region Dalarna", 15, 281),
    Region("X", "Gävleborgs län", "Region Gävleborg", 10, 282),
    Region("Y", "Västernorrlands län", "Region Västernorrland", 7, 244),
    Region("Z", "Jämtlands län", "Region Jämtland Härjedalen", 8, 127),
    Region("AC", "Västerbottens län", "Region Västerbotten", 15, 263),
    Region("BD", "Norrbottens län", "Region Norrbotten", 14, 250),
)

# Organisations per inhabitant (one health centre per 10,000, one school and one preschool per
# 5,000: about Sweden's ~1,100 health centres and the order of its schools), at least one each.
PER_HEALTH_CENTRE = 10_000
PER_SCHOOL = 5_000
PER_PRESCHOOL = 5_000
# Channels: every reception unit and management has e-mail; of the others 95 % have e-mail, and
# 20 % have a Telegram group chat (those without e-mail always have one).
EMAIL_SHARE = 0.95
TELEGRAM_SHARE = 0.20
SEED = 2015

# --- the 2015 peak -------------------------------------------------------------------------

UNACCOMPANIED_PER_WEEK = 1300  # the figure for the 2015 peak, nationally
FAMILIES_PER_UNACCOMPANIED = 2.0  # assumption (see the module docstring)
WORKING_DAYS = 5
OFFICE_HOURS = 8
PEAK_HOUR_FACTOR = 2.0  # the busiest hour over the average office hour (assumption)
SPEED = 10.0  # the replay runs this many times faster than real time
LANGUAGES = ("ar", "prs", "fa", "so", "ti", "kmr")  # Syria, Afghanistan, Iraq, Eritrea, Somalia


def arrivals_per_week() -> float:
    return UNACCOMPANIED_PER_WEEK * (1 + FAMILIES_PER_UNACCOMPANIED)


def peak_rate() -> float:
    """Arrivals per second in the busiest hour of the 2015 peak week, real time."""
    per_office_hour = arrivals_per_week() / (WORKING_DAYS * OFFICE_HOURS)
    return per_office_hour * PEAK_HOUR_FACTOR / 3600


@dataclass
class Generated:
    """The generated directory: its TOML, population weights, and what it holds."""

    toml: str
    weights: dict[str, float]  # municipality id → share of the population (sums to 1)
    organisations: Counter[str]  # by kind
    with_email: int
    with_telegram: int


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def generate_directory(seed: int = SEED) -> Generated:
    """The directory of all 290 municipalities, as CONTRACT.md "Directory file" asks for it."""
    rng = random.Random(seed)
    total_population = sum(r.population_k for r in REGIONS) * 1000
    municipalities: list[str] = []
    organisations: list[str] = []
    weights: dict[str, float] = {}
    kinds: Counter[str] = Counter()
    emails = telegrams = 0
    chat = 0

    def org(
        ident: str,
        municipality: str,
        kind: str,
        name: str,
        email: str | None,
        supervisor: str | None,
        ages: tuple[int, int] | None = None,
        default: bool = False,
        channels: bool = True,
    ) -> None:
        nonlocal emails, telegrams, chat
        lines = [
            "[[organisations]]",
            f"id = {_q(ident)}",
            f"municipality = {_q(municipality)}",
            f"kind = {_q(kind)}",
            f"name = {_q(name)}",
        ]
        always = kind in ("reception_unit", "management")
        keep_email = email is not None and (always or rng.random() < EMAIL_SHARE)
        if keep_email:
            lines.append(f"email = {_q(email or '')}")
            emails += 1
        if channels and (rng.random() < TELEGRAM_SHARE or not keep_email):
            chat += 1
            lines.append(f"telegram_chats = [{-(1_001_000_000_000 + chat)}]")
            telegrams += 1
        if supervisor is not None:
            lines.append(f"supervisor = {_q(supervisor)}")
        if ages is not None:
            lines.append(f"serves_ages = [{ages[0]}, {ages[1]}]")
        if default:
            lines.append("default = true")
        organisations.append("\n".join(lines))
        kinds[kind] += 1

    for region in REGIONS:
        slug = region.iso.lower()
        harmonic = sum(1 / k for k in range(1, region.municipalities + 1))
        primary_care = f"region-{slug}-primarvard"
        for k in range(1, region.municipalities + 1):
            mid = f"{slug}-{k:02d}"
            population = region.population_k * 1000 / k / harmonic
            weights[mid] = population / total_population
            municipalities.append(
                "\n".join(
                    [
                        "[[municipalities]]",
                        f"id = {_q(mid)}",
                        f"name = {_q(f'Kommun {region.iso}-{k:02d} ({region.county})')}",
                        f"code = {_q(f'{region.iso}{k:02d}')}",
                    ]
                )
            )
            town = f"Kommun {region.iso}-{k:02d}"
            domain = f"{mid}.example.se"
            lead = f"{mid}-ledning"
            if k == 1:
                org(
                    primary_care,
                    mid,
                    "management",
                    f"{region.name}, primärvårdsledningen",
                    f"primarvardsledning@region-{slug}.example.se",
                    None,
                    channels=False,
                )
            org(
                lead,
                mid,
                "management",
                f"{town}, kommunledningen",
                f"ledning@{domain}",
                None,
                channels=False,
            )
            org(
                f"{mid}-mottagning",
                mid,
                "reception_unit",
                f"{town}, mottagningsenheten",
                f"mottagning@{domain}",
                lead,
                default=True,
            )
            org(
                f"{mid}-socialtjanst",
                mid,
                "social_services",
                f"{town}, socialtjänsten",
                f"socialtjanst@{domain}",
                lead,
                default=True,
            )
            for j in range(1, max(1, round(population / PER_HEALTH_CENTRE)) + 1):
                org(
                    f"{mid}-hc-{j}",
                    mid,
                    "health_centre",
                    f"Hälsocentralen {town}:{j}",
                    f"{mid}-hc-{j}@region-{slug}.example.se",
                    primary_care,
                    default=j == 1,
                )
            schools = max(1, round(population / PER_SCHOOL))
            for j in range(1, schools + 1):
                # With two or more schools, two defaults split the ages (CONTRACT.md allows it).
                ages = (6, 17) if schools == 1 else ((6, 12) if j % 2 else (13, 17))
                org(
                    f"{mid}-skola-{j}",
                    mid,
                    "school",
                    f"Skola {j}, {town}",
                    f"skola-{j}@{domain}",
                    lead,
                    ages,
                    default=j <= 2,
                )
            for j in range(1, max(1, round(population / PER_PRESCHOOL)) + 1):
                org(
                    f"{mid}-forskola-{j}",
                    mid,
                    "preschool",
                    f"Förskola {j}, {town}",
                    f"forskola-{j}@{domain}",
                    lead,
                    (1, 5),
                    default=j == 1,
                )
    head = (
        "# Generated by bench/scale.py: all 290 municipalities of Sweden in their 21 regions.\n"
        "# Fictional: municipalities are numbered by region, every address is example.se.\n\n"
        '[region]\nname = "Sverige (21 regioner, 290 kommuner)"\n'
    )
    text = head + "\n\n" + "\n\n".join(municipalities) + "\n\n" + "\n\n".join(organisations)
    return Generated(text + "\n", weights, kinds, emails, telegrams)


def write_directory(path: Path, seed: int = SEED) -> Generated:
    generated = generate_directory(seed)
    path.write_text(generated.toml, encoding="utf-8")
    return generated


# --- the arrivals --------------------------------------------------------------------------


def arrival_bodies(
    n: int, weights: dict[str, float], rng: random.Random, arrival_date: str, tag: str
) -> list[dict[str, Any]]:
    """`n` arrivals (a third unaccompanied children, two thirds families), spread over the
    municipalities by population."""
    ids = list(weights)
    where = rng.choices(ids, weights=[weights[m] for m in ids], k=n)
    unaccompanied_share = 1 / (1 + FAMILIES_PER_UNACCOMPANIED)
    bodies = []
    for i, municipality in enumerate(where):
        alone = rng.random() < unaccompanied_share
        if alone:
            children = [{"age": rng.randint(12, 17)}]
        else:
            children = [{"age": rng.randint(0, 17)} for _ in range(rng.randint(1, 4))]
        bodies.append(
            {
                "external_ref": f"SCALE-{tag}-{i:06d}",
                "municipality": municipality,
                "arrival_date": arrival_date,
                "children": children,
                "languages": rng.sample(LANGUAGES, rng.randint(1, 2)),
                "interpreter_needed": True,
                "unaccompanied": alone,
                "details": (
                    "Ensamkommande, placeras i kommunen från ankomstdagen."
                    if alone
                    else "Familj, bor i kommunen från ankomstdagen."
                ),
                "recipients": None,
            }
        )
    return bodies


def poisson_offsets(rate: float, seconds: float, rng: random.Random) -> list[float]:
    """Arrival times (s from the start) of a Poisson process at `rate`/s over `seconds`."""
    offsets: list[float] = []
    t = rng.expovariate(rate)
    while t < seconds:
        offsets.append(t)
        t += rng.expovariate(rate)
    return offsets


@dataclass
class Paper:
    """What the directory and the arrival mix imply per arrival (routed in-process)."""

    emails: float
    chats: float
    busiest_chat_share: float  # of all arrivals, the share that reaches the busiest chat
    busiest_chat: str
    route_ms: float  # Directory.route + reception_unit per arrival, this directory
    route_ms_example: float  # the same on deploy/directory.example.toml (8 municipalities)


TIMED = 500  # arrivals routed on the whole directory, to time `Directory.route`


def slices(directory: Directory) -> dict[str, Directory]:
    """Each municipality's part of the directory (its organisations only): routing reads no
    other municipality's organisations, so `Directory.route` gives the same answer on it."""
    parts: dict[str, dict[str, Any]] = {m: {} for m in directory.municipalities}
    for org in directory.organisations.values():
        parts[org.municipality][org.id] = org
    return {
        m: Directory(
            region_name=directory.region_name,
            municipalities={m: directory.municipalities[m]},
            organisations=orgs,
        )
        for m, orgs in parts.items()
    }


def on_paper(directory: Directory, bodies: list[dict[str, Any]]) -> Paper:
    """Channels per arrival and the busiest chat, routing `bodies` with `Directory.route` on
    each municipality's slice (on the whole national directory a call costs milliseconds);
    and the time of one call on the whole directory and on the example directory."""

    def route(d: Directory, body: dict[str, Any], municipality: str) -> list[Any]:
        ages = [int(c["age"]) for c in body["children"]]
        return [
            d.reception_unit(municipality),
            *d.route(municipality, ages, bool(body["unaccompanied"])),
        ]

    timed = bodies[:TIMED]
    start = time.perf_counter()
    for body in timed:
        route(directory, body, body["municipality"])
    route_ms = (time.perf_counter() - start) * 1000 / len(timed)
    example = load_directory(EXAMPLE_DIRECTORY)
    start = time.perf_counter()
    for body in timed:
        route(example, body, "ostersund")
    route_ms_example = (time.perf_counter() - start) * 1000 / len(timed)

    parts = slices(directory)
    emails = chats = 0
    per_chat: Counter[int] = Counter()
    owner: dict[int, str] = {}
    for body in bodies:
        for o in route(parts[body["municipality"]], body, body["municipality"]):
            emails += o.email is not None
            chats += len(o.telegram_chats)
            for c in o.telegram_chats:
                per_chat[c] += 1
                owner[c] = o.id
    busiest, count = per_chat.most_common(1)[0] if per_chat else (0, 0)
    n = len(bodies)
    return Paper(
        emails / n, chats / n, count / n, owner.get(busiest, "–"), route_ms, route_ms_example
    )


def expected_deliveries(parts: dict[str, Directory], bodies: list[dict[str, Any]]) -> int:
    """Deliveries the bodies make: every channel of the reception unit and of each
    organisation told (CONTRACT.md "Routing"), routed on the municipalities' slices."""
    total = 0
    for b in bodies:
        m, ages = b["municipality"], [int(c["age"]) for c in b["children"]]
        for o in [parts[m].reception_unit(m), *parts[m].route(m, ages, bool(b["unaccompanied"]))]:
            total += (o.email is not None) + len(o.telegram_chats)
    return total


# --- one run -------------------------------------------------------------------------------


async def _redis_info(redis: Any) -> dict[str, float]:
    """Server-wide: CPU seconds and commands processed so far (every client's)."""
    stats = await redis.info("stats")
    return {
        "cpu": await common.redis_cpu_seconds(redis),
        "commands": float(stats["total_commands_processed"]),
    }


def _commands(usages: list[dict[str, Any]]) -> int:
    """Redis commands the service processes sent (bench/service_proc.py counts round trips:
    a command alone, or a pipeline with the commands in it counted apart)."""
    total = 0
    for u in usages:
        for name, k in (u.get("redis") or {}).items():
            if name == "(commands in pipelines)" or not name.startswith(("(", "pipeline:")):
                total += int(k)
    return total


async def run(
    directory_path: Path,
    directory: Directory,
    bodies: list[dict[str, Any]],
    offsets: list[float] | None,
    say: Any = print,
    *,
    expected: int = 0,
    processes: int = 2,
    relax: bool = True,
    latency: tuple[float, float] = (0.0, 0.0),
    enforce_limits: bool = False,
) -> dict[str, Any]:
    """Post `bodies` (at `offsets` s from the start, or flat out) round the processes; wait for
    every delivery (`expected` of them: the sink and the Bot API server are watched until they
    have that many, then the delivery records are read); the figures.

    `relax` lifts the service's Telegram limiter (bench/service_proc.py); `enforce_limits`
    makes the Bot API server answer 429 past Telegram's limits; `latency` = (ms per SMTP reply,
    ms per Bot API request), simulated at the two servers (as bench/pipeline.py)."""
    smtp_delay_ms, bot_api_ms = latency
    redis, _ = await fresh_redis()
    store: Any = redis  # redis-py's client; Ankomst's Protocol (bot/store/client.py) types it
    issuer = ApiTokens(store, SystemClock())
    tokens = {
        mid: await issuer.create(directory.reception_unit(mid).id)
        for mid in sorted({b["municipality"] for b in bodies})
    }
    sink, api = await common.start_servers(
        smtp_delay_ms, enforce_limits=enforce_limits, latency_ms=bot_api_ms
    )
    settings = service_settings(directory_path, sink.port, api.base_url, "ankomst-bench-scale-")
    services: list[Service] = []
    ready_at: list[float] = []
    started: dict[str, float] = {}
    load = [os.getloadavg()[0]]
    t0 = time.perf_counter()
    try:
        for _ in range(processes):
            services.append(await Service.start(settings, relax=relax))
            ready_at.append(time.time())
        start_s = (time.perf_counter() - t0) / processes
        # What the db holds before the first arrival (tokens, the service's streams and groups)
        # is not the cases': it is taken off the per-case figure.
        setup = await db_usage(redis)
        info_before = await _redis_info(redis)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            sem = asyncio.Semaphore(32)

            async def post(i: int, body: dict[str, Any]) -> None:
                if offsets is not None:
                    await asyncio.sleep(max(0.0, t_start + offsets[i] - time.time()))
                port = services[i % len(services)].port
                async with sem:
                    case_id, t = await common.post_arrival(
                        http, port, body, tokens[body["municipality"]]
                    )
                started[case_id] = t

            t_start = time.time()
            await asyncio.gather(*(post(i, b) for i, b in enumerate(bodies)))
            t_posted = time.time()
        n = len(bodies)
        say(
            f"  {n} arrivals accepted in {t_posted - t_start:.1f} s "
            f"({n / (t_posted - t_start):.2f}/s)"
        )
        case_ids = list(started)
        deadline = time.time() + max(180.0, n * 0.5)
        # Wait on the sink's and the Bot API server's counts first: reading every delivery hash
        # of 2,000 cases twice a second would be more Redis work than the service's own.
        while (await sink.stats())["messages"] + await api.sent() < expected:
            if time.time() > deadline:
                break
            await asyncio.sleep(0.5)
        info_after = await _redis_info(redis)
        statuses = await made(redis, case_ids, deadline, pause=0.5)
        load.append(os.getloadavg()[0])
        # The deliveries' CPU and time end here; the wait below is not theirs.
        t_stop = time.time()
        cpu_done = [common.cpu_seconds(s.proc.pid) for s in services]
        # Redis is measured as the pipeline section measures it (bench/redis_usage.py): once
        # every group has finished and the streams are trimmed, less what the db held before
        # the first arrival.
        settle = await settled(redis, within=60.0)
        of_cases = (await db_usage(redis)).minus(setup)
        open_cases = await redis.scard(keys.OPEN_CASES)
    finally:
        usages = [await s.stop() for s in services]
        api_stats = await api.stats(violations="1") if enforce_limits else await api.stats()
        await api.stop()
        sink_stats = await sink.stats()
        await sink.stop()
        await redis.flushdb()
        await redis.aclose()

    latencies: list[float] = []
    sent_by_channel: dict[str, list[float]] = {"email": [], "telegram": []}
    by_status: Counter[str] = Counter()
    retried: Counter[str] = Counter()  # deliveries sent after more than one attempt, by channel
    for cid, rows in statuses.items():
        sent = []
        for r in rows:
            by_status[r.get("status", "?")] += 1
            if int(r.get("attempts") or 0) > 1:
                retried["telegram" if r.get("channel", "").startswith("tg:") else "email"] += 1
            if r.get("sent_at"):
                at = datetime.fromisoformat(r["sent_at"]).timestamp()
                sent.append(at)
                kind = "telegram" if r.get("channel", "").startswith("tg:") else "email"
                sent_by_channel[kind].append(at)
        if sent:
            latencies.append(max(sent) - started[cid])
    total = sum(by_status.values())
    last_sent = max(max(v) for v in sent_by_channel.values() if v)
    cpu = [done - u["ready_cpu"] for done, u in zip(cpu_done, usages, strict=True)]
    wall = [t_stop - r for r in ready_at]
    commands = _commands(usages)
    server_commands = info_after["commands"] - info_before["commands"]
    return {
        "arrivals": n,
        "offered_rate": n / offsets[-1] if offsets else float("nan"),
        "accept_rate": n / (t_posted - t_start),
        "arrival_rate_done": n / (last_sent - t_start),
        "deliveries": total,
        "expected": expected,
        "statuses": dict(by_status),
        "emails": len(sent_by_channel["email"]),
        "chats": len(sent_by_channel["telegram"]),
        "delivery_rate": total / (last_sent - t_start),
        "seconds": last_sent - t_start,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "max": max(latencies) if latencies else float("nan"),
        "slow_cases": sum(1 for x in latencies if x > 2 * percentile(latencies, 95)),
        "retried": dict(retried),
        "cpu": cpu,
        "cpu_share": [c / w for c, w in zip(cpu, wall, strict=True)],
        "cpu_ms_per_delivery": sum(cpu) / max(1, total) * 1000,
        "rss_ready": [u["ready_rss_mb"] for u in usages],
        "rss_peak": [u["maxrss_mb"] for u in usages],
        "start_s": start_s,
        "db_keys": of_cases.keys,
        "db_mb": of_cases.mb,
        "open_cases": open_cases,
        "kb_per_case": of_cases.kb_per_case(open_cases),
        "kb_per_case_by_key": of_cases.per_case_kb(open_cases),
        **settle,
        # Our commands, and the server's average CPU per command over the run (every client's
        # commands: the shared server also serves other databases).
        "commands_per_delivery": commands / max(1, total),
        "server_commands": server_commands,
        "our_share_of_commands": commands / server_commands if server_commands else float("nan"),
        "redis_us_per_command": (info_after["cpu"] - info_before["cpu"])
        / max(1.0, server_commands)
        * 1e6,
        "sink_messages": sink_stats["messages"],
        "sink_connections": sink_stats["connections"],
        "bot_api_messages": api_stats["sent"],
        "telegram_429": api_stats["telegram_429"],
        "limit_violations": api_stats.get("limit_violations", 0),
        "load": load,
        **_round_trips(usages, total),
    }


async def relay(n: int, say: Any = print) -> float:
    """Mails/s through one process's SMTP pool (EmailSender, default POOL_SIZE connections, as
    section 1) when the relay holds each reply a client waits on `LATENCY[0]` ms: what the pool
    allows, nothing else."""
    sink = await SinkProcess.start(LATENCY[0])
    try:
        elapsed, connections = await email_peers.ankomst(sink, n)
    finally:
        await sink.stop()
    say(f"  relay: {n} mails in {elapsed:.1f} s over {connections} connections")
    return n / elapsed


async def idle(rounds: int = 3, say: Any = print) -> list[dict[str, Any]]:
    """Start time and idle RSS (when ready) of one `serve` process with the example directory
    and with the national one, alternately: what the directory itself costs a process."""
    national = Path(tempfile.mkdtemp(prefix="ankomst-bench-scale-")) / "directory.sweden.toml"
    write_directory(national)
    example = EXAMPLE_DIRECTORY
    sink = await SinkProcess.start()
    rows: list[dict[str, Any]] = []
    try:
        async with await BotApiProcess.start() as api:
            for name, path in [("example", example), ("national", national)] * rounds:
                redis, _ = await fresh_redis()
                settings = {
                    "redis_url": common.REDIS_URL,
                    "data_dir": tempfile.mkdtemp(prefix="ankomst-bench-scale-"),
                    "directory": str(path),
                    "http_host": "127.0.0.1",
                    "http_port": 0,
                    "secret_key": "bench-secret-key-for-signing",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": sink.port,
                    "telegram_token": TOKEN,
                    "telegram_api_url": api.base_url,
                }
                t = time.perf_counter()
                service = await Service.start(settings, relax=False)
                took = time.perf_counter() - t
                await service.stop()
                await redis.flushdb()
                await redis.aclose()
                row = {"directory": name, "start_s": took, "ready_rss_mb": service.ready["rss_mb"]}
                say(f"  {json.dumps(row)}")
                rows.append(row)
    finally:
        await sink.stop()
    return rows


# --- the section ---------------------------------------------------------------------------


@dataclass
class Results:
    generated: Generated
    directory: Directory
    paper: Paper
    replay_s: float
    replay: dict[str, Any]
    flat: dict[str, Any]
    relay_rate: float
    deployed: dict[str, Any] | None


async def bench(
    replay_s: float, flat_n: int, deployed_n: int, say: Any = print
) -> tuple[str, Results]:
    """The replay, the flat-out run(s), the relay's pool; the Markdown with the headroom and
    what each part allows."""
    tmp = Path(tempfile.mkdtemp(prefix="ankomst-bench-scale-"))
    path = tmp / "directory.sweden.toml"
    generated = write_directory(path)
    directory = load_directory(path)
    say(
        f"  directory: {len(directory.municipalities)} municipalities, "
        f"{len(directory.organisations):,} organisations"
    )
    date = (datetime.now(STOCKHOLM).date() + timedelta(days=2)).isoformat()
    tag = str(int(time.time()))
    replay_rate = peak_rate() * SPEED
    rng = random.Random(SEED)
    offsets = poisson_offsets(replay_rate, replay_s, rng)
    replay_bodies = arrival_bodies(len(offsets), generated.weights, rng, date, tag + "-r")
    paper = on_paper(directory, arrival_bodies(20_000, generated.weights, rng, date, "paper"))
    say(
        f"  replay: {len(offsets)} arrivals over {replay_s:g} s at {replay_rate:.3f}/s "
        f"(the 2015 peak hour at {SPEED:g}×), 2 processes, real Telegram limits, "
        f"{LATENCY[0]:g}/{LATENCY[1]:g} ms …"
    )
    parts = slices(directory)

    async def through(
        bodies: list[dict[str, Any]], at: list[float] | None, **options: Any
    ) -> dict[str, Any]:
        expected = expected_deliveries(parts, bodies)
        return await run(path, directory, bodies, at, say, expected=expected, **options)

    replay = await through(
        replay_bodies, offsets, relax=False, latency=LATENCY, enforce_limits=True
    )
    say(f"  replay: {replay}")
    say(f"  flat out, loopback, Telegram limiter relaxed: {flat_n} arrivals, 2 processes …")
    flat_bodies = arrival_bodies(flat_n, generated.weights, rng, date, tag + "-f")
    flat = await through(flat_bodies, None, relax=True)
    say(f"  flat: {flat}")
    relay_rate = await relay(400, say)
    deployed = None
    if deployed_n:
        say(
            f"  flat out as deployed (real Telegram limits, {LATENCY[0]:g}/{LATENCY[1]:g} ms, "
            f"default SMTP pool): {deployed_n} arrivals, 2 processes …"
        )
        deployed_bodies = arrival_bodies(deployed_n, generated.weights, rng, date, tag + "-d")
        deployed = await through(
            deployed_bodies, None, relax=False, latency=LATENCY, enforce_limits=True
        )
        say(f"  deployed: {deployed}")
    results = Results(generated, directory, paper, replay_s, replay, flat, relay_rate, deployed)
    return render(results), results


def _per_arrival(f: dict[str, Any]) -> float:
    return float(f["deliveries"]) / max(1, int(f["arrivals"]))


def _procs(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def summary(r: Results) -> dict[str, float]:
    """The headline figures, and what each part allows in arrivals/s."""
    replay_rate = peak_rate() * SPEED
    per_arrival = _per_arrival(r.flat)
    capacity = r.flat["arrival_rate_done"]
    redis_us = r.flat["commands_per_delivery"] * r.flat["redis_us_per_command"]
    inf = float("inf")
    return {
        "replay_rate": replay_rate,
        "capacity": capacity,
        "headroom": capacity / replay_rate,
        "deliveries_per_arrival": per_arrival,
        "cpu_process": 1000 / r.flat["cpu_ms_per_delivery"] / per_arrival,
        "relay_process": r.relay_rate / r.paper.emails,
        "telegram_global": 30 / r.paper.chats if r.paper.chats else inf,
        "telegram_group": (20 / 60) / r.paper.busiest_chat_share
        if r.paper.busiest_chat_share
        else inf,
        "redis_us_per_delivery": redis_us,
        "redis": 1e6 / redis_us / per_arrival if redis_us else inf,
    }


def render(r: Results) -> str:
    s = summary(r)
    replay_rate = s["replay_rate"]
    g, paper, flat = r.generated, r.paper, r.flat
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(g.organisations.items()))
    runs = [
        (f"replay: the 2015 peak hour at {SPEED:g}× ({r.replay_s:g} s, Poisson)", r.replay),
        ("flat out, loopback, Telegram limiter relaxed", flat),
    ]
    if r.deployed is not None:
        runs.append((f"flat out as deployed (limits, latency, SMTP pool {POOL_SIZE})", r.deployed))
    rows = [
        (
            label,
            f["arrivals"],
            f"{f['offered_rate']:.3f}" if f["offered_rate"] == f["offered_rate"] else "flat out",
            f"{f['accept_rate']:.2f}",
            f"{f['deliveries']:,} ({f['emails']:,} e-mail, {f['chats']:,} chat)",
            f["delivery_rate"],
            f"{f['p50']:.2f} / {f['p95']:.2f} / {f['p99']:.2f}",
            _procs([100 * c for c in f["cpu_share"]], ".0f"),
            f["cpu_ms_per_delivery"],
            _procs(f["rss_peak"], ".0f"),
            f"{f['db_mb']:.1f} ({f['kb_per_case']:.1f})",
            f"{f['telegram_429']} / {f['limit_violations']}",
            " → ".join(f"{x:.1f}" for x in f["load"]),
        )
        for label, f in runs
    ]
    limits = [
        (
            "CPU of one `serve` process (N processes: N ×)",
            s["cpu_process"],
            f"{flat['cpu_ms_per_delivery']:.2f} CPU ms per delivery flat out, "
            f"{s['deliveries_per_arrival']:.2f} deliveries per arrival",
        ),
        (
            f"SMTP relay through one process's pool ({POOL_SIZE} connections; N processes: N ×)",
            s["relay_process"],
            f"{r.relay_rate:.0f} mails/s through one pool with {LATENCY[0]:g} ms per reply; "
            f"{paper.emails:.2f} mails per arrival",
        ),
        (
            "Telegram: 30 messages/s per bot",
            s["telegram_global"],
            f"{paper.chats:.2f} chat messages per arrival",
        ),
        (
            "Telegram: 20 messages/min in one group (the busiest chat)",
            s["telegram_group"],
            f"`{paper.busiest_chat}` is told of {100 * paper.busiest_chat_share:.1f} % of "
            "all arrivals",
        ),
        (
            "Redis (single-threaded: one core)",
            s["redis"],
            f"{flat['commands_per_delivery']:.1f} commands per delivery × "
            f"{flat['redis_us_per_command']:.1f} µs of Redis CPU per command (the server's "
            f"average over the flat-out run; {100 * flat['our_share_of_commands']:.0f} % of "
            f"its commands were ours) = {s['redis_us_per_delivery']:.0f} µs per delivery",
        ),
    ]
    limit_rows = [
        (name, f"{cap:,.1f}", f"{cap / replay_rate:,.0f}×", basis) for name, cap, basis in limits
    ]
    return (
        f"A generated directory of all {len(r.directory.municipalities)} municipalities in the "
        f"{len(REGIONS)} regions (real region names and municipality counts; municipalities "
        f"numbered; {len(r.directory.organisations):,} organisations: {kinds}; "
        f"{g.with_email:,} with e-mail, {g.with_telegram:,} with a Telegram group chat in the "
        "file). Load: the issue's ~1,300 unaccompanied children a week at the 2015 peak, plus "
        f"{FAMILIES_PER_UNACCOMPANIED:g}× as many family arrivals (assumed), "
        f"= {arrivals_per_week():,.0f} arrivals a week, registered in {WORKING_DAYS}×"
        f"{OFFICE_HOURS} office hours, the busiest hour {PEAK_HOUR_FACTOR:g}× the average: "
        f"**{peak_rate() * 3600:.0f} arrivals/h ({peak_rate():.4f}/s)**; replayed at "
        f"{SPEED:g}× = **{replay_rate:.3f}/s** (Poisson, seeded), spread by population over "
        "the municipalities, round two `serve` processes on one Redis. The replay (and the "
        "as-deployed run) use the service's real Telegram limiter, a Bot API server enforcing "
        f"Telegram's limits (429 past them), {LATENCY[0]:g} ms per SMTP reply and "
        f"{LATENCY[1]:g} ms per Bot API request. The SMTP sink and the Bot API server each run "
        "in a process of their own (bench/smtp_sink_proc.py, bench/botapi_proc.py), apart from "
        "the benchmark's, which posts the arrivals. CPU is per process, as a share of one core "
        "from ready to the last delivery; RSS is the peak per process; Redis is the sum of "
        "`MEMORY USAGE` over the benchmark's db once the service has settled (every group "
        "finished, the streams trimmed), less what it held before the first arrival (tokens, "
        "empty streams), in all and per open case, as the pipeline section measures it; load "
        "is the machine's 1-minute load average before and after.\n\n"
        + table(
            [
                "",
                "arrivals",
                "offered/s",
                "accepted/s",
                "deliveries",
                "deliveries/s",
                "request→last delivery p50/p95/p99 (s)",
                "CPU % of a core per process",
                "CPU ms / delivery",
                "peak RSS MB per process",
                "Redis MB of the cases (KB / case)",
                "429s / limit violations",
                "load",
            ],
            rows,
        )
        + f"\n\n**Headroom: {s['headroom']:.0f}×** the replayed rate ({s['capacity']:.1f} "
        f"arrivals/s carried flat out, {s['deliveries_per_arrival']:.2f} deliveries each, "
        f"over {replay_rate:.3f}/s), i.e. {s['headroom'] * SPEED:.0f}× the 2015 peak hour. "
        f"Routing one arrival (`Directory.route` + `reception_unit`, in-process) takes "
        f"{paper.route_ms:.2f} ms on this directory against {paper.route_ms_example:.3f} ms on "
        "the 8-municipality example. A service started in "
        f"{flat['start_s']:.1f} s with this directory. Redis holds {flat['kb_per_case']:.1f} KB "
        f"per open case (flat-out run): {arrivals_per_week() * flat['kb_per_case'] / 1024:,.0f}"
        " MB for each week of peak arrivals while their cases are kept.\n\n"
        "What each part allows, in arrivals/s, and its headroom over the replayed rate:\n\n"
        + table(["limit", "arrivals/s", "over the replay", "from"], limit_rows)
    )


async def _main(args: argparse.Namespace) -> int:
    if args.write_directory:
        g = write_directory(Path(args.write_directory))
        print(f"wrote {args.write_directory}: {sum(g.organisations.values()):,} organisations")
        return 0
    common.raise_fd_limit()
    await common.choose_redis()
    if args.idle:
        await idle()
        return 0
    try:
        text, results = await bench(args.replay_s, args.flat, args.deployed)
        print(text)
        print(json.dumps(summary(results)))
    finally:
        common.stop_embedded()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--write-directory", metavar="PATH", help="write the directory and stop")
    parser.add_argument(
        "--idle",
        action="store_true",
        help="only start one process with each directory, 3 times: start time and idle RSS",
    )
    parser.add_argument("--replay-s", type=float, default=60.0, help="seconds of replay")
    parser.add_argument("--flat", type=int, default=200, help="arrivals flat out")
    parser.add_argument("--deployed", type=int, default=0, help="arrivals flat out as deployed")
    sys.exit(asyncio.run(_main(parser.parse_args())))
