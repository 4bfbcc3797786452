"""One Ankomst service (`Ankomst(settings)`, as `ankomst serve` builds it) in its own process.

    python -m bench.service_proc '<settings JSON>' [--relax-telegram-limiter] [--profile FILE]

Prints "PORT <http port>" once started; on SIGTERM stops the service and prints
"RUSAGE {json}" (CPU seconds and peak RSS of this process alone).

--relax-telegram-limiter lifts the Telegram limiter (global budget and per-chat spacing) for the
pipeline run, whose Bot API server has its limits switched off: otherwise the 1.02 s per chat
spacing, not the pipeline, decides the result (benchmark 3 measures the limiter itself).
--profile FILE writes a pyinstrument profile of the service, from ready to stop, to FILE.

The RUSAGE line also carries "redis": the Redis round trips the process made from ready to stop
(each command sent alone, or each pipeline/transaction sent at once, is one), by command, and
how many XREADGROUP calls returned how many entries — counted by wrapping redis-py's packing
and `xreadgroup` in this process only; the service's code is not touched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.runtime.settings import Settings

RAW: Counter[Any] = Counter()  # raw command name (bytes or str) -> sent alone
PIPELINES: Counter[frozenset[Any]] = Counter()  # the raw names a pipeline carried -> sent
COUNTING = False


def count_round_trips() -> None:
    """Count what the service sends to Redis (see the module docstring). Kept cheap, as it runs
    inside the measured process: raw command names are counted and named at the end
    (`named_round_trips`)."""
    from redis.asyncio.client import Redis
    from redis.asyncio.connection import AbstractConnection

    from bot.store.connection import HiredisPacking

    pack_many = AbstractConnection.pack_commands
    xreadgroup = Redis.xreadgroup

    inside = [False]  # pack_commands packs each command of a pipeline with pack_command

    def counting(pack_one: Any) -> Any:
        """`pack_one` (a class's pack_command), counting each command sent alone."""

        def pack_command(self: Any, *args: Any) -> Any:
            if COUNTING and not inside[0] and args:
                RAW[args[0]] += 1
            return pack_one(self, *args)

        return pack_command

    def pack_commands(self: Any, commands: Any) -> Any:
        commands = list(commands)
        if COUNTING:
            PIPELINES[frozenset(c[0] for c in commands if c)] += 1
            RAW["(commands in pipelines)"] += len(commands)
        inside[0] = True
        try:
            return pack_many(self, commands)
        finally:
            inside[0] = False

    async def counted_xreadgroup(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = await xreadgroup(self, *args, **kwargs)
        if COUNTING:
            RAW["(xreadgroup reads)"] += 1
            RAW["(xreadgroup entries)"] += sum(len(entries) for _stream, entries in response or [])
        return response

    # redis-py's packing, and the store's (bot/store/connection.py HiredisPacking), over it.
    for packing in (AbstractConnection, HiredisPacking):
        packing.pack_command = counting(packing.pack_command)  # type: ignore[method-assign]
    AbstractConnection.pack_commands = pack_commands  # type: ignore[method-assign]
    Redis.xreadgroup = counted_xreadgroup  # type: ignore[method-assign,assignment]


def _name(command: Any) -> str:
    text = command.decode() if isinstance(command, bytes) else str(command)
    return text.split()[0].upper() if text else "?"


def named_round_trips() -> dict[str, int]:
    """The counts by command name (a pipeline by the names it carried, MULTI/EXEC left out)."""
    named: Counter[str] = Counter()
    for command, k in RAW.items():
        is_special = isinstance(command, str) and command.startswith("(")
        named[command if is_special else _name(command)] += k
    for names, k in PIPELINES.items():
        inner = sorted({_name(n) for n in names} - {"MULTI", "EXEC"})
        named["pipeline:" + "+".join(inner)[:60]] += k
    named["(commands in pipelines)"] -= 2 * sum(
        k for names, k in PIPELINES.items() if {_name(n) for n in names} >= {"MULTI", "EXEC"}
    )
    return dict(named)


def _usage() -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child of a big parent
    # would report the parent's peak.
    status = {"VmRSS": float("nan"), "VmHWM": usage.ru_maxrss / 1024}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in status:
                    status[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": status["VmHWM"],
        "rss_mb": status["VmRSS"],
    }


def settings_of(raw: str) -> Settings:
    """The service's `Settings` from the JSON this process is given (no .env file: the
    benchmark's settings are all in it)."""
    from bot.runtime.settings import Settings

    return Settings(_env_file=None, **json.loads(raw))


async def main(raw: str, relax: bool, profile: str | None = None) -> None:
    global COUNTING
    count_round_trips()
    if relax:
        import bot.channels.telegram as tg

        tg.GLOBAL_LIMIT = 1_000_000
        tg.PRIVATE_SPACING_MS = 1
        tg.GROUP_SPACING_MS = 1
    from handlers.main import Ankomst, tune_garbage_collector

    logging.basicConfig(level=logging.WARNING)
    settings = settings_of(raw)
    service = Ankomst(settings, say=lambda line: None)
    await service.start()
    tune_garbage_collector()  # as `serve` does once started
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    COUNTING = True
    print(f"PORT {service.port} {json.dumps(_usage())}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    loaded: dict[str, Any] = dict(_usage())  # before stopping: what the loaded service holds
    COUNTING = False
    loaded["redis"] = named_round_trips()
    if profiler is not None and profile:
        profiler.stop()
        text = profiler.output_text(unicode=True, show_all=False)
        # Where the time goes by function: its own time, then with what it calls.
        for mode in ("self", "total"):
            flat = profiler.output_text(flat=True, flat_time=mode)
            text += f"\n\n## flat, {mode} time (top 60)\n" + "\n".join(flat.splitlines()[:70])
        await asyncio.to_thread(Path(profile).write_text, text, encoding="utf-8")
    await service.stop()
    print(f"RUSAGE {json.dumps(loaded)}", flush=True)


if __name__ == "__main__":
    rest = sys.argv[2:]
    path = rest[rest.index("--profile") + 1] if "--profile" in rest else None
    asyncio.run(main(sys.argv[1], "--relax-telegram-limiter" in rest, path))
