"""Instructions per delivery: the pipeline run with its `serve` process under callgrind.

    python -m bench.instructions [--arrivals 40] [--rounds 2] [--out DIR]

The CPU time per delivery of the pipeline benchmark moves by ±10 % from one run to the next on
these shared machines, with the same code (docs/benchmarks.md, fifteenth pass), so a change
worth a few per cent cannot be seen in it. What callgrind counts does not move with the
machine's load: the service process runs under `valgrind --tool=callgrind` with its
instrumentation off until the warm-up is over, on from there to the last delivery (the window
the pipeline's CPU figure covers), and the count of that window is divided by the deliveries.

What it leaves out: the kernel's work (system calls, page faults) and how fast the instructions
run (a tight C loop retires many per cycle, Python's interpreter few). Under callgrind the
service is some 50 times slower, so its batches are those of a slow process (more round trips
a delivery than flat out). It compares code; it is not the service's speed.

Prints one JSON line per round and one with the median. Needs valgrind (callgrind_control).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import pipeline


def totals(path: Path) -> int:
    """The instruction count of one callgrind dump (its `totals:` or `summary:` line)."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise ValueError(f"{path}: no totals line")


def _clear(out: Path) -> None:
    for old in out.glob("callgrind.out.*"):
        old.unlink()


def _measured_dump(out: Path) -> Path:
    # The dump asked for at the end of the window ("callgrind.out.PID.1"), not the one the
    # process writes at exit (of what ran after it).
    dumps = sorted(out.glob("callgrind.out.*.*"))
    if not dumps:
        raise RuntimeError(f"no callgrind dump of the measured window in {out}")
    return dumps[0]


async def one_round(arrivals: int, out: Path) -> dict[str, Any]:
    """One `pipeline.run(arrivals)` with the service under callgrind: its instructions per
    delivery over the measured window."""
    _clear(out)
    wrapper = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}/callgrind.out.%p",
        "--dump-instr=no",
    ]

    def window(edge: str, services: list[pipeline.Service]) -> None:
        pid = str(services[0].proc.pid)
        steps = (("-i", "on"), ("-z",)) if edge == "start" else (("-d", "measured"),)
        for step in steps:
            subprocess.run(["callgrind_control", *step, pid], check=True, capture_output=True)

    _, figures = await pipeline.run(arrivals, say=lambda *_: None, wrapper=wrapper, window=window)
    instructions = totals(_measured_dump(out))
    deliveries = int(figures["deliveries"])
    return {
        "arrivals": arrivals,
        "deliveries": deliveries,
        "instructions": instructions,
        "instructions_per_delivery": round(instructions / deliveries),
        "round_trips_per_delivery": round(figures["round_trips_per_delivery"], 3),
    }


async def main(arrivals: int, rounds: int, out: Path) -> None:
    """Run the rounds; print each and the median."""
    per_delivery = []
    for _ in range(rounds):
        result = await one_round(arrivals, out)
        per_delivery.append(result["instructions_per_delivery"])
        print(json.dumps(result), flush=True)
    print(json.dumps({"median_instructions_per_delivery": statistics.median(per_delivery)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arrivals", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="where the dumps go")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("bench.instructions: valgrind is not installed (apt-get install valgrind)")
    out = args.out or Path(tempfile.mkdtemp(prefix="ankomst-callgrind-"))
    out.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(args.arrivals, args.rounds, out))
