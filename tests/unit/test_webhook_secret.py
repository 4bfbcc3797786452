"""ANKOMST_TELEGRAM_WEBHOOK_SECRET is checked at start against Telegram's rule (1-256 characters
of A-Z, a-z, 0-9, _ and -); a bad one stops the start with one line naming it (exit 2)."""

from __future__ import annotations

import pytest

from bot.runtime.settings import SettingsError, load_or_exit, load_settings

GOOD = ("a", "A-z_09", "x" * 256, "Ab3_-" * 50)
BAD = ("bad secret!", "x" * 257, "å", "with/slash", "tab\tbed", "colon:")


@pytest.mark.parametrize("secret", GOOD)
def test_telegram_accepts_these_secrets(secret: str) -> None:
    settings = load_settings(
        _env_file=None, telegram_mode="webhook", telegram_webhook_secret=secret
    )
    assert settings.telegram_webhook_secret is not None
    assert settings.telegram_webhook_secret.get_secret_value() == secret


@pytest.mark.parametrize("secret", BAD)
def test_a_secret_telegram_would_refuse_is_refused_at_start(secret: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, telegram_mode="webhook", telegram_webhook_secret=secret)
    message = str(caught.value)
    assert message.startswith("ANKOMST_TELEGRAM_WEBHOOK_SECRET: ")
    assert secret not in message  # a secret is never echoed


def test_bad_secret_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.chdir(str(tmp_path))  # no .env file of the working tree
    monkeypatch.setenv("ANKOMST_TELEGRAM_MODE", "webhook")
    monkeypatch.setenv("ANKOMST_TELEGRAM_WEBHOOK_SECRET", "bad secret!")
    with pytest.raises(SystemExit) as caught:
        load_or_exit()
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "ANKOMST_TELEGRAM_WEBHOOK_SECRET" in err and "bad secret!" not in err
