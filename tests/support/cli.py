"""The `ankomst` command run inside the test process: no interpreter start, no aiogram import.

`run_cli` gives what a subprocess would (exit status, stdout, stderr) and puts back what the
command changes in the process: the environment, the working directory and the logging set-up
(`main` routes logging to the stderr it was given).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from handlers.cli import main

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CliResult:
    """What the command left: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> CliResult:
    """`ankomst ARGS` with only `env`'s ANKOMST_* variables set, as from a clean shell in `cwd`.

    Blocking (the command runs its own event loop): from an async test, call it through
    `asyncio.to_thread`.
    """
    out, err = io.StringIO(), io.StringIO()
    with (
        _environment(env or {}),
        _working_directory(cwd),
        _logging_restored(),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(list(args))
    return CliResult(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("ANKOMST_")]:
        del os.environ[name]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _working_directory(cwd: Path) -> Iterator[None]:
    before = Path.cwd()
    if before == cwd:
        yield
        return
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    named = {n: logging.getLogger(n).level for n in ("aiogram.event", "aiosmtpd", "mail.log")}
    config = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, named_level in named.items():
            logging.getLogger(name).setLevel(named_level)
        structlog.configure(**config)
