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

from bot.channels.email import (
    Attachment,
    OutgoingMail,
    _mailbox,
    data_lines,
    render_message,
)


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


TEXT = st.lists(
    st.sampled_from(["a", "å", " ", ".", "=", "\r", "\n", "\r\n", "\t", "x" * 90]), max_size=30
).map("".join)


@given(
    TEXT,
    TEXT,
    TEXT,
    st.booleans(),
    st.binary(max_size=300) | st.sampled_from([b"BEGIN:VCALENDAR\nEND:VCALENDAR\n", b"a\rb"]),
)
@example("Ärende\r\nBcc: x", "rad\r", "\n.", True, b"BEGIN:VCALENDAR\nEND:VCALENDAR\n")
def test_a_rendered_mail_is_crlf_throughout_so_data_need_not_count(
    subject: str, text: str, html: str, attached: bool, data: bytes
) -> None:
    """What lets the sender skip the counts (`data_lines(crlf=True)`): whatever the text, the
    subject and an attachment hold, `render_message` writes CRLF line ends only, and the framed
    message is the same as with the counts."""
    mail = OutgoingMail(
        to="skola@example.se",
        subject=subject,
        text=text,
        html=html,
        message_id="<x@example.se>",
        in_reply_to="<r@example.se>",
        references=("<r@example.se>",),
        attachments=(Attachment("kallelse.ics", "text/calendar; method=REQUEST", data),)
        if attached
        else (),
    )
    payload = render_message(mail, "Ankomst <noreply@example.se>")
    ends = payload.count(b"\r\n")
    assert payload.count(b"\r") == ends
    assert payload.count(b"\n") == ends
    assert payload.endswith(b"\r\n")
    assert data_lines(payload, crlf=True) == data_lines(payload) == aiosmtplib_data(payload)


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
