"""The watched mailboxes a process starts: ANKOMST_IMAP_URL's and each the directory names."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.domain.directory import Directory
from bot.runtime.directory_file import load_directory
from bot.runtime.services import mailbox_configs
from bot.runtime.settings import Settings, SettingsError
from tests.unit.test_directory import org, write

BERG = "imaps://ankomst@imap.berg.example.se:993/INBOX"
ENV = "ANKOMST_IMAP_PASSWORD_BERG_TEST"


def directory(tmp_path: Path, url: str = BERG) -> Directory:
    unit = org("mottagning-2", "reception_unit", imap_url=url, imap_password_env=ENV)
    return load_directory(write(tmp_path, unit))


def settings(**fields: object) -> Settings:
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def test_each_directory_mailbox_is_watched_beside_the_settings_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, "lösen ord")
    configs = mailbox_configs(
        settings(
            imap_url="imaps://mv:secret@imap.alfa.example.se/INBOX",
            imap_reception_unit="mottagning",
        ),
        directory(tmp_path),
    )
    assert [(c.reception_unit, c.user, c.name, c.from_directory) for c in configs] == [
        ("mottagning", "mv", "imap.alfa.example.se:993/INBOX", False),
        ("mottagning-2", "ankomst", "imap.berg.example.se:993/INBOX", True),
    ]
    assert configs[1].password == "lösen ord"
    assert ENV not in repr(configs[1]) and "lösen" not in repr(configs[1])


def test_a_missing_password_variable_stops_the_start_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(SettingsError) as caught:
        mailbox_configs(settings(), directory(tmp_path))
    message = str(caught.value)
    assert ENV in message and "mottagning-2" in message and "\n" not in message


def test_the_same_mailbox_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "x")
    with pytest.raises(SettingsError, match="watched twice"):
        mailbox_configs(
            settings(
                imap_url="imaps://ankomst:pw@imap.berg.example.se/INBOX",
                imap_reception_unit="mottagning",
            ),
            directory(tmp_path),
        )
