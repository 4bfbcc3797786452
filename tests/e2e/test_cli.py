"""The command line as an operator meets it: one clear line on a bad setting, never a traceback.

The commands run in-process (`handlers.cli.main(argv)`, tests/support/cli.py); one test starts
the real interpreter, as a shell would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import ROOT, CliResult, run_cli


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> CliResult:
    return run_cli(*args, env=env, cwd=cwd)


def test_the_command_starts_as_a_program_and_prints_its_help() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANKOMST_")}
    for command in ([sys.executable, "-m", "bot"], [str(Path(sys.executable).parent / "ankomst")]):
        result = subprocess.run(
            [*command, "--help"],
            capture_output=True,
            text=True,
            env=clean,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "usage: ankomst" in result.stdout
        for subcommand in ("serve", "demo", "directory", "token", "invite", "report", "audit"):
            assert subcommand in result.stdout


def test_help_and_usage_errors_return_their_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--help").returncode == 0
    wrong = run("token", "create")
    assert wrong.returncode == 2
    assert "org_id" in wrong.stderr
    # Nothing leaks past the in-process run into the test's own output.
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ANKOMST_HTTP_PORT", "eighty"),
        ("ANKOMST_TIMEZONE", "Mars/Olympus"),
        ("ANKOMST_REDIS_URL", "http://localhost"),
        ("ANKOMST_TELEGRAM_MODE", "pigeon"),
        ("ANKOMST_CHAT_DETAILS", "everything"),
        ("ANKOMST_SMTP_FROM", "not an address"),
    ],
)
def test_a_bad_setting_stops_the_start_with_one_line_naming_it(
    variable: str, value: str, tmp_path: Path
) -> None:
    result = run("serve", env={variable: value, "ANKOMST_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_webhook_mode_needs_its_secret(tmp_path: Path) -> None:
    result = run(
        "serve", env={"ANKOMST_TELEGRAM_MODE": "webhook", "ANKOMST_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode == 2
    assert "ANKOMST_TELEGRAM_WEBHOOK_SECRET" in result.stderr


def test_the_example_directory_is_valid() -> None:
    result = run("directory", "check", "deploy/directory.example.toml")
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_a_broken_directory_lists_every_error() -> None:
    result = run("directory", "check", "tests/data/directory.broken.toml")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip().startswith("- ")]
    assert len(errors) >= 5
    assert "Traceback" not in result.stderr


def test_token_create_prints_a_token_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    env = {"ANKOMST_DATA_DIR": str(tmp_path)}
    result = run("token", "create", "ostersund-mottagning", env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("ank_") and len(token) > 30
    # The embedded store's append-only file holds the hash, never the token.
    aof = b"".join(p.read_bytes() for p in (tmp_path / "valkey").rglob("*.aof"))
    assert b"ankomst:apitoken:" in aof
    assert token.encode() not in aof


def test_an_unknown_organisation_is_one_line(tmp_path: Path) -> None:
    result = run("invite", "nobody", env={"ANKOMST_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "ankomst: no organisation 'nobody' in deploy/directory.example.toml"
    ]


def test_an_empty_secret_is_unset_and_a_short_one_refused(tmp_path: Path) -> None:
    from bot.runtime.settings import SettingsError, load_settings

    settings = load_settings(_env_file=None, secret_key="", data_dir=tmp_path, telegram_token=" ")
    assert settings.secret_key is None and settings.telegram_token is None
    with pytest.raises(SettingsError, match="ANKOMST_SECRET_KEY"):
        load_settings(_env_file=None, secret_key="short")
