"""One Ankomst service (`Ankomst(settings)`, as `ankomst serve` builds it) in its own process.

    python -m bench.service_proc '<settings JSON>' [--relax-telegram-limiter] [--profile FILE]

Prints "PORT <http port>" once started; on SIGTERM stops the service and prints
"RUSAGE {json}" (CPU seconds and peak RSS of this process alone).

--relax-telegram-limiter lifts the Telegram limiter (global budget and per-chat spacing) for the
pipeline run, whose Bot API server has its limits switched off: otherwise the 1.02 s per chat
spacing, not the pipeline, decides the result (benchmark 3 measures the limiter itself).
--profile FILE writes a pyinstrument profile of the service, from ready to stop, to FILE.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import signal
import sys
from pathlib import Path


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


async def main(raw: str, relax: bool, profile: str | None = None) -> None:
    if relax:
        import bot.channels.telegram as tg

        tg.GLOBAL_LIMIT = 1_000_000
        tg.PRIVATE_SPACING_MS = 1
        tg.GROUP_SPACING_MS = 1
    from bot.runtime.settings import Settings
    from handlers.main import Ankomst

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(_env_file=None, **json.loads(raw))
    service = Ankomst(settings, say=lambda line: None)
    await service.start()
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    print(f"PORT {service.port} {json.dumps(_usage())}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    loaded = _usage()  # before stopping: what the loaded service holds
    if profiler is not None and profile:
        profiler.stop()
        text = profiler.output_text(unicode=True, show_all=False)
        await asyncio.to_thread(Path(profile).write_text, text, encoding="utf-8")
    await service.stop()
    print(f"RUSAGE {json.dumps(loaded)}", flush=True)


if __name__ == "__main__":
    rest = sys.argv[2:]
    path = rest[rest.index("--profile") + 1] if "--profile" in rest else None
    asyncio.run(main(sys.argv[1], "--relax-telegram-limiter" in rest, path))
