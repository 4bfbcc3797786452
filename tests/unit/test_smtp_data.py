"""The e-mail sender writes MAIL, RCPT and DATA itself (bot/channels/email.py `_transaction`),
and the bytes are the ones aiosmtplib's `mail`, `rcpt` and `data` would send. Pure: no server
(tests/e2e/test_email_sender.py and tests/fault/ send through a real one)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import example, given
from hypothesis import strategies as st

from bot.channels.email import OutgoingMail, _mailbox, data_lines, render_message


def aiosmtplib_data(message: bytes) -> bytes:
    """What aiosmtplib's `execute_data_command` writes after DATA."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"


@given(st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"..", b"\r\n."])))
@example([])
@example([b".", b"a", b"\r\n"])
@example([b"a", b"\r"])
@example([b"a", b"\n", b"."])
def test_data_is_framed_as_aiosmtplib_frames_it(pieces: list[bytes]) -> None:
    message = b"".join(pieces)
    assert data_lines(message) == aiosmtplib_data(message)


def test_a_rendered_mail_with_dotted_lines_is_framed_as_aiosmtplib_frames_it() -> None:
    mail = OutgoingMail(
        to="skola@example.se",
        subject="Ankomst",
        text="Rad ett\n.rad som börjar med punkt\n.\nslut",
        html="<p>.punkt</p>\n.<br>",
        message_id="<x@example.se>",
    )
    payload = render_message(
        mail, "Ankomst <noreply@example.se>", now=datetime(2026, 12, 4, tzinfo=UTC)
    )
    framed = data_lines(payload)
    assert framed == aiosmtplib_data(payload)
    # The case this is for: the payload is CRLF throughout, so no regular expression pass
    # was needed, and every line that began with a dot has two.
    assert b"\r\n..rad som" in framed


@pytest.mark.parametrize(
    "address", ["skola@example.se", "Skolan <skola@example.se>", " vc@example.se ", '"a b"@x.se']
)
def test_an_envelope_address_is_written_as_aiosmtplib_writes_it(address: str) -> None:
    assert _mailbox(address) == quote_address(address).encode("ascii")


@pytest.mark.parametrize(
    "address", ["a@x.se> SIZE=1", "a@x.se\r\nRCPT TO:<b@x.se>", "a <b@x.se> c@x.se"]
)
def test_an_envelope_address_cannot_smuggle_a_command(address: str) -> None:
    written = _mailbox(address)
    assert written == quote_address(address).encode("ascii")
    assert not any(c in written for c in b" \r\n"), written


def test_an_envelope_address_that_is_no_mailbox_is_refused() -> None:
    with pytest.raises(ValueError, match="not permitted"):
        _mailbox("a b@x.se")
