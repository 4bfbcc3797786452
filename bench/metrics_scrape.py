"""How long one /metrics scrape takes with many open cases (issue 12, item 6: < 100 ms at 10,000).

The state of N open cases is written straight into Redis the way the service stores it (case
hash, acknowledgements of some recipients, the health centre's "informed" marker, the open-case
set), in pipelines: no HTTP and no pipeline run, so 10,000 cases take seconds to make. The event
and outbox streams get a backlog (a group that has read half and acknowledged a quarter) so the
lag counting is timed too. The first scrape after that builds the open-deadline sets from the
open cases (what the first scrape after an upgrade does); the scrapes timed are the ones after
it, each `Metrics.exposition()` (every gauge read from Redis, the text rendered).
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import common
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.clock import ManualClock
from bot.runtime.directory_file import load_directory
from bot.runtime.metrics import Metrics
from bot.runtime.services import deadline_settings
from bot.runtime.settings import Settings
from bot.store import keys

ROOT = Path(__file__).resolve().parents[1]
RECIPIENTS = ["hc-lugnvik", "ostersund-skola", "ostersund-forskola"]


async def _seed(redis: Any, cases: int, now: datetime) -> None:
    for start in range(0, cases, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, min(start + 1000, cases)):
                case_id = f"bench{n:06d}"
                told = now - timedelta(hours=n % 72)
                pipe.hset(
                    keys.case(case_id),
                    mapping={
                        "version": "1",
                        "status": "open",
                        "municipality": "ostersund",
                        "updated_at": told.isoformat(),
                        "created_at": told.isoformat(),
                        "recipients": json.dumps(RECIPIENTS),
                    },
                )
                if n % 3:
                    pipe.hset(
                        keys.case_acks(case_id),
                        f"1:{RECIPIENTS[n % 3]}",
                        json.dumps({"at": now.isoformat()}),
                    )
                pipe.hset(
                    keys.case_markers(case_id),
                    keys.booking_informed_marker(RECIPIENTS[0]),
                    told.isoformat(),
                )
                pipe.sadd(keys.OPEN_CASES, case_id)
                pipe.sadd(keys.ALL_CASES, case_id)
            await pipe.execute()
    for stream, group in ((keys.EVENTS, keys.FANOUT_GROUP), (keys.OUTBOX_EMAIL, "senders")):
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(2000):
                pipe.xadd(stream, {"type": "case.registered", "case": f"bench{n:06d}"})
            await pipe.execute()
        await redis.xgroup_create(stream, group, id="0")
        read = await redis.xreadgroup(group, "bench", {stream: ">"}, count=1000)
        await redis.xack(stream, group, *[entry_id for entry_id, _ in read[0][1][:250]])


async def _one(cases: int, scrapes: int) -> dict[str, Any]:
    redis, _url = await common.fresh_redis()
    settings = Settings(_env_file=None)
    directory = load_directory(ROOT / "deploy" / "directory.example.toml")
    calendar = WorkingDayCalendar(
        settings.zone, settings.office_start, settings.office_end, directory.closed_days
    )
    clock = ManualClock(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
    t0 = time.perf_counter()
    await _seed(redis, cases, clock.now())
    seeded = time.perf_counter() - t0
    metrics = Metrics(redis, directory, clock, calendar, deadline_settings(settings))
    t0 = time.perf_counter()
    await metrics.exposition()
    first = time.perf_counter() - t0
    times = []
    for _ in range(scrapes):
        t0 = time.perf_counter()
        await metrics.exposition()
        times.append((time.perf_counter() - t0) * 1000)
    figures = {
        "cases": cases,
        "times": times,
        "first": first,
        "seeded": seeded,
        "ack": metrics.overdue.labels("acknowledgement")._value.get(),
        "booking": metrics.overdue.labels("booking")._value.get(),
        "lag": metrics.stream_lag.labels(keys.EVENTS, keys.FANOUT_GROUP)._value.get(),
    }
    await redis.flushdb()
    await redis.aclose()
    return figures


async def bench(sizes: list[int], say: Any, scrapes: int = 30) -> str:
    """Seed each number of open cases in turn, then time scrapes; returns the section."""
    rows = []
    for cases in sizes:
        f = await _one(cases, scrapes)
        say(f"  {cases:,} open cases: scrape median {statistics.median(f['times']):.1f} ms")
        rows.append(
            [
                f"{cases:,}",
                scrapes,
                f"{statistics.median(f['times']):.1f}",
                f"{common.percentile(f['times'], 95):.1f}",
                f"{max(f['times']):.1f}",
                f"{f['ack']:.0f} / {f['booking']:.0f}",
                f"{f['lag']:.0f}",
                f"{f['first']:.2f}",
                f"{f['seeded']:.1f}",
            ]
        )
    table = common.table(
        [
            "open cases",
            "scrapes",
            "scrape median, ms",
            "p95, ms",
            "max, ms",
            "overdue ack / booking (gauges)",
            "events/fanout lag",
            "first scrape (builds the deadline sets), s",
            "seeding, s",
        ],
        rows,
    )
    return (
        "Open cases written straight into Redis as the service stores them (3 recipients "
        "each, a third acknowledged, the health centre told), and a backlog on "
        "`ankomst:events` and `ankomst:outbox:email` (2,000 entries each; the group has read "
        "1,000 and acknowledged 250, so its lag is 1,750). Each scrape is "
        "`Metrics.exposition()`: every gauge read from Redis and the text rendered, in one "
        "process against the shared Redis. The first scrape builds the open-deadline sets from "
        "the open cases (once per store, as after an upgrade) and is not among those timed. "
        f"Target: < 100 ms with 10,000 open cases.\n\n{table}"
    )
