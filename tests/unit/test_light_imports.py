"""`import bot` and the commands that need no chat load no aiogram (seconds, ~100 MB)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: in the test process aiogram may already have been imported by others.
# `token create` and `report` stop on a refusal made after their own imports, before any store.
CHECK = textwrap.dedent(
    """
    import sys
    import bot, handlers.cli
    assert "aiogram" not in sys.modules, "import bot loaded aiogram"
    assert handlers.cli.main(["--help"]) == 0
    assert handlers.cli.main(["token", "create", "nobody"]) == 1
    assert handlers.cli.main(["invite", "nobody"]) == 1
    assert handlers.cli.main(["report", "--from", "2026-02-01", "--to", "2026-01-01"]) == 1
    heavy = sorted(m for m in ("aiogram", "aiohttp", "handlers.main") if m in sys.modules)
    assert not heavy, heavy
    """
)


def test_import_bot_and_the_light_commands_load_no_aiogram() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANKOMST_")}
    done = subprocess.run(
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
