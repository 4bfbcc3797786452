"""`python -m bench [--full] [--only NAME ...] [--no-write]`: run the benchmarks of issue 6.

Short mode (default) is the quick check; `--full` runs the sizes of the issue. Writes
docs/benchmarks.md with the tables, the machine, the date, the run time and the commands (how
long each mode took on which machine is there, not here, so it cannot go stale).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    common,
    email_peers,
    metrics_scrape,
    pipeline,
    scale,
    store_ceiling,
    telegram_limits,
)
from bot.channels.email import POOL_SIZE

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
# Everything in docs/benchmarks.md from this line on is written by hand (findings, profiles)
# and kept when the tables above it are written again.
KEPT = "<!-- Below this line: written by hand; python -m bench keeps it. -->"

SIZES: dict[str, dict[str, Any]] = {
    "short": {
        "email_n": 300,
        "email_rounds": 3,
        "arrivals": 200,
        "naive": 200,
        "processes": [1, 2],
        "paced": [(100, 10.0), (200, 50.0)],
        "open_cases": 1000,  # 16,000 deliveries at ~70/s (2026-12-02) is ~4 min: too long
        "telegram": 600,
        "xadd": 100_000,
        "metrics_cases": [1_000, 10_000],
        "scale": (60.0, 200, 0),  # s of the 10× replay, arrivals flat out, as deployed
    },
    "full": {
        "email_n": 2000,
        "email_rounds": 5,
        "arrivals": 2000,
        "naive": 1000,
        "processes": [1, 2],
        "paced": [(200, 10.0), (1000, 50.0)],
        "open_cases": 10_000,
        "telegram": 10_000,
        "xadd": 1_000_000,
        "metrics_cases": [1_000, 10_000, 50_000],
        "scale": (360.0, 2000, 1000),
    },
}
SECTIONS = ("email", "pipeline", "memory", "telegram", "store", "metrics", "scale")


# With --json, progress and the Markdown go to stderr and stdout carries one JSON line.
OUT = sys.stdout


def say(line: str) -> None:
    print(line, file=OUT, flush=True)


async def main(args: argparse.Namespace) -> int:
    mode = "full" if args.full else "short"
    size = SIZES[mode]
    only = set(args.only or SECTIONS)
    pipeline.PROFILE = args.profile
    common.raise_fd_limit()
    await common.choose_redis(say)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    parts: list[tuple[str, str]] = []
    summary: dict[str, Any] = {}
    commands = [
        "make bench" + (" BENCH_ARGS=--full" if args.full else ""),
        shlex.join([".venv/bin/python", "-m", "bench", *sys.argv[1:]]),
    ]
    try:
        if "email" in only:
            say(f"E-mail sender vs peers ({size['email_n']} messages × {size['email_rounds']}) …")
            parts.append(
                (
                    "1. E-mail sender vs peers",
                    await email_peers.run(size["email_n"], size["email_rounds"], say),
                )
            )
        if "pipeline" in only:
            say(f"Pipeline ({size['arrivals']} arrivals) …")
            text, summary = await pipeline.bench(
                size["arrivals"], size["naive"], size["processes"], say, size["paced"]
            )
            parts.append(("2. Pipeline: HTTP → Redis → e-mail and Telegram", text))
        if "memory" in only:
            say(f"Memory with {size['open_cases']:,} open cases …")
            parts.append(
                (
                    "2b. Memory with open cases",
                    await pipeline.memory(size["open_cases"], say),
                )
            )
        if "telegram" in only:
            say(f"Telegram sender under the limits ({size['telegram']} messages) …")
            parts.append(
                (
                    "3. Telegram sender against the enforced limits",
                    await telegram_limits.bench(size["telegram"], True, say),
                )
            )
        if "store" in only:
            say("Store ceiling (redis-benchmark XADD) …")
            text, cmds = await store_ceiling.bench(size["xadd"], say)
            commands += cmds
            parts.append(("4. Store ceiling", text))
        if "metrics" in only:
            say(f"/metrics scrape with {size['metrics_cases']} open cases …")
            parts.append(
                (
                    "5. /metrics scrape with open cases",
                    await metrics_scrape.bench(size["metrics_cases"], say),
                )
            )
        if "scale" in only:
            say("Scale: 290 municipalities, the 2015 peak at 10×, 2 processes, one Redis …")
            text, _ = await scale.bench(*size["scale"], say)
            parts.append(("6. Scale: all of Sweden, the 2015 peak at 10×", text))
    finally:
        common.stop_embedded()
    elapsed = time.perf_counter() - t0
    doc = render(mode, started, elapsed, parts, commands)
    say("\n" + doc)
    if args.json:
        summary = {"mode": mode, "date": f"{started:%Y-%m-%d %H:%M} UTC", **summary}
        print(json.dumps(summary), flush=True)
    elif not args.no_write:
        old = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if KEPT in old:
            doc = doc.rstrip("\n") + "\n\n" + old[old.index(KEPT) :]
        DOC.write_text(doc, encoding="utf-8")
        say(f"wrote {DOC.relative_to(ROOT)}")
    return 0


def render(
    mode: str, started: datetime, elapsed: float, parts: list[tuple[str, str]], commands: list[str]
) -> str:
    m = common.machine()
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m bench` (issue 6). Every ratio in a table was measured in the same "
        "run, side by side, on this machine; numbers from other machines are not comparable.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; mode: **{mode}**; run time {elapsed:.0f} s",
        f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, {m['os']}, "
        f"Python {m['python']}",
        f"- Redis: `{common.REDIS_URL}`",
        "",
        "Commands:",
        "",
        "```sh",
        *commands,
        "```",
        "",
    ]
    for title, body in parts:
        lines += [f"## {title}", "", body, ""]
    lines += [
        "## Notes",
        "",
        "- Everything runs on one machine over loopback: no network latency, except in the "
        "latency rows of benchmark 2. A connection per mail costs little here, so the naive "
        "sender and plain aiosmtplib look better than they would against a real mail server.",
        "- The latency rows of benchmark 2 simulate the network at the servers, not in the "
        "kernel: the SMTP sink (`bench/smtp_sink_proc.py --reply-delay-ms`) holds each reply "
        "a client waits on, the greeting included (one round trip an exchange: not each line "
        "of a reply, nor the reply to a command sent with others still unread), and the Bot "
        "API server (`bench/botapi_proc.py --latency-ms`, "
        "the tests' `FakeTelegramAPI(latency=...)` in a process of its own) holds "
        f"every request, by {pipeline.LATENCY[0]:g} ms and {pipeline.LATENCY[1]:g} ms. "
        f"{pipeline.LATENCY[0]:g} ms is a round trip to a mail relay in Sweden or a "
        "neighbouring country; a round trip from Sweden to api.telegram.org (Amsterdam) plus "
        f"its handling is around {pipeline.LATENCY[1]:g} ms. TCP handshakes are not delayed, "
        "so a new connection per mail is still cheaper than over a real network. On loopback a "
        "CPU-bound Python service cannot be 20× a sequential sender whose every step is a "
        "sub-millisecond local call; with round trips, what the naive sender waits for is what "
        "the pipeline overlaps. The sink offers PIPELINING, as Postfix and Exchange do: "
        "Ankomst sends MAIL, RCPT and DATA together, two round trips a mail; aiosmtplib's "
        "`sendmail` and smtplib, which the naive sender, the peers and Apprise use, send them "
        "one by one, four. With its default `smtp_pool_size` "
        f"({POOL_SIZE} connections) the service makes at most {POOL_SIZE} SMTP exchanges at a "
        f"time — {POOL_SIZE * 1000 // int(2 * pipeline.LATENCY[0])} mails/s at "
        f"{2 * pipeline.LATENCY[0]:g} ms per mail — so the "
        f"latency rows are run with the default and with {pipeline.WIDE_POOL} connections "
        "(`ANKOMST_SMTP_POOL_SIZE`), which a municipality's relay must be willing to accept.",
        "- Memory: the service's own idle RSS was ~199 MB before any case, ~125 MB of it "
        "aiogram's ~600 Bot API models, all compiled by pydantic at `import aiogram.types`. "
        "`bot/channels/telegram_types.py` defers each model's build to its first use "
        "(the service uses a few), which brought idle RSS to ~117 MB.",
        "- The pipeline runs (benchmarks 2 and 2b) relax the service's Telegram limiter (in "
        "the service process, `bench/service_proc.py --relax-telegram-limiter`: global budget "
        "lifted, 1 ms per-chat spacing): with the real limits (30/s, 1 s per chat) Telegram, "
        "not the pipeline, would set the pace. One message at a time still goes to each chat, "
        "so the arrivals go round the whole directory's chats. Benchmark 3 measures the "
        "limiter itself.",
        "- 50 arrivals/s is 400 deliveries/s, the rate issue 17 asks one process to carry "
        "with request→last delivery p99 under 2 s. Where one process delivers fewer than "
        "400/s flat out (the machine's two cores also run the SMTP sink, the Bot API server, "
        "the load generator and Redis), a 50/s burst queues and its latency grows with the "
        "queue; where it delivers more, the paced rows show the pipeline's own latency.",
        "- The pipeline's service gets `max_connections` in its Redis URL: redis-py 8 caps an "
        "asyncio pool at 100 connections and fails at once beyond it, which under this load "
        'answered POSTs with 503 and failed deliveries ("Too many connections").',
        "- Telegram minimum: the last message cannot come before max(⌊(N−1)/30⌋ s overall, "
        "(n−1) s for a chat with n messages, ⌊(n−1)/20⌋·60 s for a group) after the first: "
        "bursts of 30 allowed. Ankomst keeps a sliding log of the bot's sends in Redis, each "
        "counted from its answer (Telegram stamped it before answering, and stamps the next one "
        "after it is sent, so the server never sees two closer than we counted), which lets it "
        "send at the full 30/s with no grid; when the budget is spent it goes to the chat with "
        "the most messages queued, because a chat can take only one a second and serving it "
        "late would stretch the batch by its remaining chain.",
        '- "Chats in order" counts chats whose messages arrived in the order they were given '
        "to the sender. Messages are handed over by 64 concurrent tasks (the service's Telegram "
        "consumer concurrency); one message per chat is in flight at a time per process.",
        "- Latency is from just before the POST to the `sent_at` of the case's last delivery "
        "(Redis delivery hashes). Flat out, arrivals are accepted faster than they are "
        "delivered, so flat-out latency is mostly queueing; the paced rows show latency "
        "at a given arrival rate.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the sizes of issue 6 (long)")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="write a pyinstrument profile of the (first) service process in the pipeline runs",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON line of the pipeline's figures on stdout (progress and the "
        "Markdown go to stderr; docs/benchmarks.md is not written)",
    )
    logging.basicConfig(level=logging.ERROR)
    os.chdir(ROOT)
    parsed = parser.parse_args()
    if parsed.json:
        OUT = sys.stderr
    sys.exit(asyncio.run(main(parsed)))
