"""ANKOMST_CHAT_STATE_HOURS: how long a chat dialogue's typed text may stay in Redis."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.runtime.settings import Settings
from handlers.telegram import chat_state_seconds


def test_a_day_by_default() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.chat_state_hours == 24
    assert chat_state_seconds(settings.chat_state_hours) == 86_400


def test_never_longer_than_the_retention_time() -> None:
    with pytest.raises(ValidationError, match="ANKOMST_CHAT_STATE_HOURS"):
        Settings(_env_file=None, retention_days=1, chat_state_hours=25)  # type: ignore[call-arg]
    Settings(_env_file=None, retention_days=1, chat_state_hours=24)  # type: ignore[call-arg]


@pytest.mark.parametrize("hours", [0, -1])
def test_must_be_positive(hours: float) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, chat_state_hours=hours)  # type: ignore[call-arg]


def test_a_fraction_of_a_second_is_still_a_second() -> None:
    # Redis expires whole seconds here (SET … EX); 0 would be refused.
    assert chat_state_seconds(0.0001) == 1
    assert chat_state_seconds(1.5) == 5400
