"""`ankomst notice parse FILE.eml` (in-process): the draft, nothing personal; and the
ANKOMST_IMAP_* settings: a bad URL is one line that never shows the password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import run_cli

CORPUS = Path(__file__).parents[1] / "data" / "notices"


@pytest.mark.parametrize("name", ["sv_plain", "sv_pdf", "unreadable"])
def test_notice_parse_prints_the_draft_and_nothing_personal(name: str, tmp_path: Path) -> None:
    env = {"ANKOMST_DATA_DIR": str(tmp_path), "ANKOMST_SECRET_KEY": "x" * 32}
    result = run_cli("notice", "parse", str(CORPUS / f"{name}.eml"), env=env)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    want = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in shown.items() if k != "external_ref"} == {
        k: v for k, v in want["draft"].items() if k != "external_ref"
    }
    for personal in want["personal"]:
        assert personal.lower() not in (result.stdout + result.stderr).lower()


def test_notice_parse_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = run_cli("notice", "parse", str(tmp_path / "nope.eml"),
                     env={"ANKOMST_DATA_DIR": str(tmp_path)})  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "unit"),
    [
        ("ftp://u:topsecret@host/INBOX", "ostersund-mottagning"),
        ("imaps://host/INBOX", "ostersund-mottagning"),
        ("imaps://u:topsecret@host:993/INBOX", ""),
    ],
)
def test_a_bad_mailbox_setting_is_one_line_without_the_password(
    url: str, unit: str, tmp_path: Path
) -> None:
    env = {
        "ANKOMST_DATA_DIR": str(tmp_path),
        "ANKOMST_IMAP_URL": url,
        "ANKOMST_IMAP_RECEPTION_UNIT": unit,
    }
    result = run_cli("serve", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ANKOMST_IMAP" in lines[0]
    assert "topsecret" not in result.stderr
