"""The store's ceiling: redis-benchmark XADD against the same Redis (db 14), if installed."""

from __future__ import annotations

import asyncio
import re
import shutil
from typing import Any

from bench import common
from bench.common import table

STREAM = "bench:xadd"


async def bench(requests: int, say: Any = print) -> tuple[str, list[str]]:
    """Returns the Markdown and the commands run."""
    binary = shutil.which("redis-benchmark") or shutil.which("valkey-benchmark")
    if not common.REDIS_URL.startswith("redis://127.0.0.1:6379"):
        return "Redis at 127.0.0.1:6379 not used (embedded Valkey); skipped.", []
    if binary is None:
        return "redis-benchmark not found; skipped.", []
    rows = []
    commands = []
    for pipeline in (1, 16):
        args = [
            binary,
            "-h",
            "127.0.0.1",
            "-p",
            "6379",
            "--dbnum",
            "14",
            "-q",
            "-n",
            str(requests),
            "-c",
            "50",
            "-P",
            str(pipeline),
            "XADD",
            STREAM,
            "MAXLEN",
            "~",
            "100000",
            "*",
            "kind",
            "case.registered",
        ]
        commands.append(" ".join(args))
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out = (await proc.communicate())[0].decode(errors="replace")
        # -q prints "XADD ...: 123456.78 requests per second, p50=0.191 msec" (after \r updates)
        last = out.replace("\r", "\n").strip().splitlines()[-1] if out.strip() else ""
        m = re.search(r"([\d.]+) requests per second(?:, p50=([\d.]+) msec)?", last)
        say(f"  redis-benchmark -P {pipeline}: {last}")
        rows.append(
            (
                f"XADD, 50 clients, pipeline {pipeline}",
                float(m.group(1)) if m else float("nan"),
                m.group(2) if m and m.group(2) else "–",
            )
        )
    cleanup = await asyncio.create_subprocess_exec(
        "redis-cli", "-n", "14", "DEL", STREAM, stdout=asyncio.subprocess.DEVNULL
    )
    await cleanup.wait()
    return (
        f"{requests:,} requests each, `redis-benchmark` against the Redis the pipeline used.\n\n"
        + table(["command", "requests/s", "p50 (ms)"], rows)
    ), commands
