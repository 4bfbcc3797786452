"""`serve` tunes the garbage collector once started (handlers/main.py `tune_garbage_collector`).
Run in a process of its own: the tuning is process-wide."""

from __future__ import annotations

import subprocess
import sys


def test_the_start_up_heap_is_frozen_and_the_young_generation_collected_less_often() -> None:
    code = (
        "import gc; from handlers.main import GC_YOUNG_THRESHOLD, tune_garbage_collector; "
        "before = gc.get_threshold(); tune_garbage_collector(); after = gc.get_threshold(); "
        "print(gc.get_freeze_count() > 10_000, after == (GC_YOUNG_THRESHOLD, *before[1:]), "
        "before[0] < GC_YOUNG_THRESHOLD)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "True", "True"]
