"""ANKOMST_PUBLIC_URL, when not set, follows where the service listens."""

from __future__ import annotations

import pytest

from bot.runtime.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ANKOMST_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "http://127.0.0.1:8080"),
        ({"ANKOMST_HTTP_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"ANKOMST_HTTP_HOST": "192.0.2.7", "ANKOMST_HTTP_PORT": "8443"}, "http://192.0.2.7:8443"),
        ({"ANKOMST_HTTP_HOST": "0.0.0.0", "ANKOMST_HTTP_PORT": "9001"}, "http://127.0.0.1:9001"),  # noqa: S104
        ({"ANKOMST_HTTP_HOST": "::1"}, "http://[::1]:8080"),
        (
            {"ANKOMST_HTTP_PORT": "9000", "ANKOMST_PUBLIC_URL": "https://ankomst.kommun.se"},
            "https://ankomst.kommun.se",
        ),
    ],
)
def test_the_links_in_mails_follow_the_http_address_unless_set(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings(_env_file=None).public_url == expected  # type: ignore[call-arg]
