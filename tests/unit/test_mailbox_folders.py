"""The done folder as each kind of IMAP server spells it (bot/pipeline/mailbox.py in_hierarchy);
Dovecot's "." is proved against Dovecot itself in tests/e2e/test_mailbox.py."""

from __future__ import annotations

import pytest

from bot.pipeline.mailbox import DONE_FOLDER, in_hierarchy


@pytest.mark.parametrize(
    ("delimiter", "spelt"),
    [
        ("/", "Ankomst/Behandlat"),  # pymap, Gmail, Exchange
        (".", "Ankomst.Behandlat"),  # Dovecot's Maildir++ layout, Courier, Cyrus
        (None, "Ankomst-Behandlat"),  # a server without levels (LIST answers NIL)
    ],
)
def test_the_done_folder_follows_the_servers_delimiter(delimiter: str | None, spelt: str) -> None:
    assert in_hierarchy(DONE_FOLDER, delimiter) == spelt
