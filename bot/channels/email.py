"""The e-mail sender: builds safe messages and sends them over a small pool of SMTP connections.

Reliability (DESIGN.md "Reliability model"): transient trouble (refused or dropped connections,
timeouts, 4xx replies) is retried with capped exponential backoff and full jitter; a 5xx reply is
permanent and reported at once, so the caller can mark the delivery failed and try the
organisation's other channel. SMTP problems never escape as exceptions: `send` always returns an
`EmailResult`.

A failure to reach the relay at all — the connection, TLS or the login — is the relay's fault,
not the message's: the result says so (`relay_fault`, naming the setting to check), the sender
marks the relay down (`relay_up`, for /readyz and the metrics) and logs one error line per
distinct fault, and the caller keeps the delivery waiting instead of failing it. A wrong password
or an untrusted certificate is not retried within the send (an operator must act first, and
repeated logins can lock the account); a refused connection is.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import logging
import random
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import MIMEPart
from email.utils import format_datetime, parseaddr

import aiosmtplib
import aiosmtplib.email
from aiosmtplib import SMTPStatus
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX, normalize_message_line_endings

from bot.domain.addresses import CONTROL, HeaderInjectionError, plain_address

__all__ = [
    "Attachment",
    "EmailResult",
    "EmailSender",
    "HeaderInjectionError",
    "OutgoingMail",
    "plain_address",
    "relay_tls_context",
    "render_message",
]

log = logging.getLogger(__name__)

# RFC 5322 msg-id, kept to printable ASCII without "<", ">" or a second "@".
_MESSAGE_ID = re.compile(r"^<[!-;=?A-~]+@[!-;=?A-~]+>$")
_SEND_POLICY = policy.SMTP  # CRLF line ends, 78-column folding, RFC 2047 for non-ASCII headers


@dataclass(frozen=True)
class Attachment:
    """A file sent along, e.g. an `.ics` invitation (`text/calendar; method=REQUEST`)."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutgoingMail:
    """One e-mail to one address. Threading ids look like `<case-v1-org@ankomst.example>`."""

    to: str
    subject: str
    text: str
    html: str
    message_id: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class EmailResult:
    """What became of a send. `permanent` failures must not be retried."""

    ok: bool
    permanent: bool
    code: int | None
    error: str | None
    attempts: int
    # Set when the relay could not be reached, secured or logged in to: the settings to check.
    # Such a failure is never permanent, and says nothing about the message.
    relay_fault: str | None = None
    relay_attempts: int = 0  # of `attempts`, those that failed on the relay


def relay_tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The TLS context for the relay: the system's CA certificates, plus those of `ca_file` (a
    PEM file; ANKOMST_SMTP_CA_FILE) when given. Certificates and host names are always
    verified: there is no way to turn verification off."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _clean_subject(subject: str) -> str:
    # Controls become spaces so "Ändrat\r\nBcc: x" cannot start a header; runs collapse.
    return " ".join(CONTROL.sub(" ", subject).split())


def _message_id(value: str) -> str:
    if not _MESSAGE_ID.match(value):
        raise HeaderInjectionError(f"not a message id of the form <local@domain>: {value!r}")
    return value


def _content_type(value: str) -> tuple[str, str, dict[str, str]]:
    if CONTROL.search(value):
        raise HeaderInjectionError("content type contains control characters")
    main, _, rest = value.partition(";")
    maintype, slash, subtype = main.strip().lower().partition("/")
    if not slash or not maintype.isascii() or not subtype.isascii() or not maintype or not subtype:
        raise HeaderInjectionError(f"not a content type: {value!r}")
    params: dict[str, str] = {}
    for item in rest.split(";"):
        key, eq, param = item.partition("=")
        if eq and key.strip():
            params[key.strip().lower()] = param.strip().strip('"')
    return maintype, subtype, params


def _filename(value: str) -> str:
    # Receivers save attachments under this name: no controls and no directories.
    name = CONTROL.sub("", value).replace("/", "_").replace("\\", "_").strip(" .")
    return name or "attachment"


def _header(name: str, value: str) -> bytes:
    """One header line, CRLF-terminated. Every caller has refused controls already, so the
    value cannot end the line early; plain short ASCII is written as it is (the common case,
    and no parsing), anything else is folded and RFC 2047-encoded by the SMTP policy."""
    if value.isascii() and len(name) + len(value) <= 76:
        return f"{name}: {value}\r\n".encode("ascii")
    return _folded(name, value)


def _folded(name: str, value: str) -> bytes:
    # As EmailMessage writes a header: parsed into its header type, then folded with RFC 2047
    # for non-ASCII text (a header object is folded always; a plain string only when long).
    header = _SEND_POLICY.header_factory(name, value)
    folded: str = header.fold(policy=_SEND_POLICY)
    return folded.encode("ascii")


def _qp(text: str) -> bytes:
    """`text` quoted-printable, with CRLF line ends, as `binascii.b2a_qp(istext=True)` makes it
    of the whole text (tests/unit/test_email_qp.py).

    Quoted-printable keeps the body 7-bit, so no server needs 8BITMIME for Swedish text; line
    ends become CRLF as SMTP wants them, and "=" is always escaped, so no body line can look
    like a boundary of the form "=_...". The encoder works line by line (a soft break's count
    starts again at each line end), so each line is encoded apart and kept (`_qp_line`):
    `b2a_qp` over a whole message was 4 % of the service's instructions per delivery (issue 17,
    callgrind), most of it on lines every arrival message has.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"  # as EmailMessage.set_content does
    return b"".join(map(_qp_line, text.encode("utf-8").split(b"\n")[:-1]))


@functools.lru_cache(maxsize=2048)
def _qp_line(line: bytes) -> bytes:
    # One line (without its end) and its CRLF: the templates' lines, the same for every
    # recipient and case, come back mail after mail.
    return binascii.b2a_qp(line + b"\n", istext=True).replace(b"\n", b"\r\n")


def _text_part(subtype: str, text: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode("ascii")
        + _qp(text)
    )


def _attachment_part(attachment: Attachment) -> bytes:
    # Rare (the health booking's .ics): the library writes its headers, so parameters and
    # a non-ASCII filename get their RFC 2231 encoding.
    maintype, subtype, params = _content_type(attachment.content_type)
    part = MIMEPart(policy=_SEND_POLICY)
    part.set_content(
        attachment.data,
        maintype=maintype,
        subtype=subtype,
        filename=_filename(attachment.filename),
        params=params,
    )
    return part.as_bytes(policy=_SEND_POLICY)


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    # "=" cannot start a quoted-printable line nor appear in base64, so this boundary never
    # occurs inside a part.
    boundary = f"=_{secrets.token_hex(16)}"
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()]
    for part in parts:
        out.append(f"--{boundary}\r\n".encode())
        # The CRLF before a delimiter belongs to the delimiter, not to the part.
        out.append(part + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


def render_message(mail: OutgoingMail, from_addr: str, *, now: datetime | None = None) -> bytes:
    """The mail as it goes over SMTP (CRLF line ends): text and HTML alternatives, then
    attachments (multipart/mixed).

    Written out directly rather than through `EmailMessage`, which cost more CPU than all the
    rest of a delivery. Raises `HeaderInjectionError` for a `to` that is not one plain address,
    a message id that is not `<...@...>`, or a From with control characters. Control characters
    in the subject are replaced by spaces.
    """
    if CONTROL.search(from_addr):
        raise HeaderInjectionError("the From address contains control characters")
    headers = [
        _from_header(from_addr),
        _header("To", plain_address(mail.to)),
        _subject_header(mail.subject),
        _date_header((now or datetime.now(UTC)).replace(microsecond=0)),
        _header("Message-ID", _message_id(mail.message_id)),
    ]
    if mail.in_reply_to is not None:
        headers.append(_header("In-Reply-To", _message_id(mail.in_reply_to)))
    if mail.references:
        headers.append(_header("References", " ".join(_message_id(ref) for ref in mail.references)))
    # RFC 3834: tells auto-responders (out-of-office) not to answer; the second header is the
    # Exchange equivalent, which ignores the first.
    headers.append(b"Auto-Submitted: auto-generated\r\nX-Auto-Response-Suppress: All\r\n")
    headers.append(b"MIME-Version: 1.0\r\n")
    body = _multipart(
        "alternative", [_text_part("plain", mail.text), _text_part("html", mail.html)]
    )
    if mail.attachments:
        body = _multipart("mixed", [body, *(_attachment_part(a) for a in mail.attachments)])
    return b"".join(headers) + body


@functools.lru_cache(maxsize=256)
def _subject_header(subject: str) -> bytes:
    # The same for every recipient of a message: cleaned, folded and encoded once.
    return _header("Subject", _clean_subject(subject))


@functools.lru_cache(maxsize=4)
def _date_header(second: datetime) -> bytes:
    # The Date header names the second (RFC 5322 has no fractions): the mails of one second
    # share it, formatted once.
    return _header("Date", format_datetime(second))


@functools.lru_cache(maxsize=8)
def _from_header(from_addr: str) -> bytes:
    # The same for every mail of a sender: parsed and encoded once.
    return _folded("From", from_addr)


async def _transaction(
    client: aiosmtplib.SMTP, sender: str, recipient: str, payload: bytes, reply_within: float
) -> None:
    """MAIL, RCPT and DATA for one message to one recipient, as aiosmtplib's `sendmail` does
    (EHLO first if not yet said, RSET after a refusal, the SIZE the server asks for), each
    reply within `reply_within` seconds (the one to the message within twice that), the
    connection closed when one does not come. To a server that offers PIPELINING (RFC 2920,
    as Postfix and Exchange do) MAIL, RCPT and DATA go out together (`_envelope_together`).

    Cheaper than `sendmail`: no second pass over the message to count it (`payload` is
    `render_message`'s, CRLF throughout, so its length is the size as sent, checked in
    tests/e2e/test_email_sender.py), no second parse of both addresses, and one timer for the
    whole exchange, moved on at each step, where aiosmtplib's `wait_for` made a timer, a
    waiter and two callbacks of every reply (issue 17)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as step:

            def within(replies: int = 1) -> None:
                step.reschedule(loop.time() + reply_within * replies)

            if client.is_ehlo_or_helo_needed:
                # EHLO once per connection, HELO if the server will not have it; before MAIL,
                # so the server's extensions (SIZE, PIPELINING) are known.
                within()
                try:
                    await client.ehlo(timeout=None)
                except aiosmtplib.SMTPHeloError:
                    if not client.is_connected:
                        raise
                    within()
                    await client.helo(timeout=None)
            mail_from = b"FROM:" + _mailbox(sender)
            if client.supports_extension("size"):
                mail_from += b" SIZE=%d" % len(payload)
            try:
                if _CAN_PIPELINE and client.supports_extension("pipelining"):
                    within(3)
                    await _envelope_together(client, mail_from, sender, recipient)
                else:
                    within()
                    reply = await client.execute_command(b"MAIL", mail_from, timeout=None)
                    _check(_MAIL, reply, sender, recipient)
                    within()
                    rcpt_to = b"TO:" + _mailbox(recipient)
                    reply = await client.execute_command(b"RCPT", rcpt_to, timeout=None)
                    _check(_RCPT, reply, sender, recipient)
                    within()
                    reply = await client.execute_command(b"DATA", timeout=None)
                    _check(_DATA, reply, sender, recipient)
                within(2)
                await _message(client, data_lines(payload, crlf=True))  # CRLF throughout
            except aiosmtplib.SMTPResponseException:
                # The envelope is reset so the connection is clean for the next message; a
                # reset that fails leaves the refusal to be reported, not the reset's trouble.
                within()
                with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
                    await client.rset(timeout=None)
                raise
    except TimeoutError as exc:
        # Only this exchange's own timer ends here as TimeoutError (the caller's deadline
        # passes through as a cancellation). A reply cut off mid-way leaves the connection in
        # an unknown state: it is closed, as aiosmtplib closes it on its own timeout.
        client.close()
        raise aiosmtplib.SMTPReadTimeoutError(f"no reply within {reply_within:g} s") from exc


@functools.lru_cache(maxsize=4096)
def _mailbox(address: str) -> bytes:
    """`<address>` for MAIL FROM and RCPT TO, as aiosmtplib's `mail` and `rcpt` write it (its
    own parse and its check against command injection), once per address: the parse is
    pure Python and was a measurable part of a mail's CPU (issue 17). The addresses are the
    directory's and the sender's, a few thousand at most."""
    quoted = aiosmtplib.email.quote_address(address).encode("ascii")
    # aiosmtplib checks each command it sends; the commands sent together are written here,
    # so the check is here too (a line break would start a command of its own).
    if COMMAND_INJECTION_REGEX.search(quoted):
        raise ValueError("Command arg contains a prohibited control character")
    return quoted


# The replies MAIL, RCPT and DATA must have, in that order: the one rule for what each is
# answered, whether they go one by one or together (`_check`).
_ENVELOPE_OK = (
    (SMTPStatus.completed,),
    (SMTPStatus.completed, SMTPStatus.will_forward),
    (SMTPStatus.start_input,),
)
_MAIL, _RCPT, _DATA = range(3)


def _check(step: int, reply: aiosmtplib.SMTPResponse, sender: str, recipient: str) -> None:
    """Raise the refusal `reply` is to `step` (MAIL, RCPT or DATA), as aiosmtplib's `mail`,
    `rcpt` and `data` would; nothing if it is the reply the step must have."""
    if reply.code in _ENVELOPE_OK[step]:
        return
    if step == _MAIL:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    if step == _RCPT:
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
    raise aiosmtplib.SMTPDataError(reply.code, reply.message)


# aiosmtplib reads one reply per command it wrote and keeps what came after it in its buffer
# until more arrives; the replies to commands sent together come in one read as often as not,
# so the ones after the first are taken from that buffer (`_next_reply`). Should a release of
# aiosmtplib no longer have it, commands go one by one as before (tests/e2e/test_email_sender.py
# checks that they do go together).
_CAN_PIPELINE = hasattr(aiosmtplib.protocol.SMTPProtocol, "_read_response_from_buffer")


async def _envelope_together(
    client: aiosmtplib.SMTP, mail_from: bytes, sender: str, recipient: str
) -> None:
    """MAIL, RCPT and DATA in one write, then their three replies, each checked as when sent
    one by one (RFC 2920: a server that offers PIPELINING takes them so). Two round trips a
    mail instead of four, for the service and the relay (issue 17)."""
    protocol = _protocol(client)
    protocol.write(b"MAIL %s\r\nRCPT TO:%s\r\nDATA\r\n" % (mail_from, _mailbox(recipient)))
    replies: list[aiosmtplib.SMTPResponse] = []
    try:
        while len(replies) < 3:
            replies.append(await _next_reply(protocol))
    except aiosmtplib.SMTPServerDisconnected:
        # A server that refuses and hangs up (421) says why before it goes: that is the
        # failure to report, as when the commands go one by one.
        for step, reply in enumerate(replies):
            _check(step, reply, sender, recipient)
        raise
    mail, rcpt, data = replies
    envelope_taken = mail.code in _ENVELOPE_OK[_MAIL] and rcpt.code in _ENVELOPE_OK[_RCPT]
    if data.code in _ENVELOPE_OK[_DATA] and not envelope_taken:
        # RFC 2920 3.1: DATA taken though the envelope was not; a lone dot ends the message
        # there, and the refusal below is reported.
        await _message(client, b".\r\n", checked=False)
    for step, reply in enumerate(replies):
        _check(step, reply, sender, recipient)


def _protocol(client: aiosmtplib.SMTP) -> aiosmtplib.protocol.SMTPProtocol:
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    return protocol


async def _next_reply(protocol: aiosmtplib.protocol.SMTPProtocol) -> aiosmtplib.SMTPResponse:
    """The next reply of the server: one that came with an earlier one (still in aiosmtplib's
    buffer), or the next to arrive.

    aiosmtplib's `data_received` drops what arrives while a reply it has read waits to be
    taken. Nothing arrives then: the reply's waiter wakes this task before the loop reads the
    socket again (asyncio runs its callbacks in order, and the wake-up is queued before the
    next poll's reads), and the caller asks for the next reply at once, with no turn of the
    loop in between. tests/e2e/test_smtp_pipelining.py sends the replies in one packet, one
    each and cut in the middle."""
    reply: aiosmtplib.SMTPResponse | None = protocol._read_response_from_buffer()
    if reply is None:
        reply = await protocol.read_response(timeout=None)
    return reply


async def _message(client: aiosmtplib.SMTP, lines: bytes, *, checked: bool = True) -> None:
    """The message as `data_lines` sends it, after DATA's 354, and the reply to it: 250, or
    the refusal (SMTPDataError). Sent as aiosmtplib's `data` sends it, without its two regular
    expression passes over the whole message: they cost about 57 µs a mail, as much as the
    rest of the exchange (issue 17)."""
    protocol = _protocol(client)
    protocol.write(lines)
    try:
        reply = await protocol.read_response(timeout=None)
    except aiosmtplib.SMTPServerDisconnected:
        client.close()
        raise
    if checked and reply.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)


def data_lines(payload: bytes, *, crlf: bool = False) -> bytes:
    """The message as DATA sends it: CRLF line ends, a line that begins with a dot given a
    second one (RFC 5321 4.5.2), then the closing dot. The same bytes as aiosmtplib's own
    passes make (tests/unit/test_smtp_data.py). Where the payload is CRLF throughout already,
    that is told by counting and the rest is a `bytes.replace`; aiosmtplib's own pass mends
    any other. `crlf`: the caller knows it is, as `render_message`'s payload always is (a
    property tested in tests/unit/test_smtp_data.py), and the three counts over the whole
    message are left out (issue 17)."""
    if not crlf:
        ends = payload.count(b"\r\n")
        if payload.count(b"\r") != ends or payload.count(b"\n") != ends:
            payload = normalize_message_line_endings(payload)
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    stuffed = payload.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    permanent: bool
    code: int | None
    error: str | None
    relay_fault: str | None = None  # the settings to check (see EmailResult)
    retry_now: bool = True  # False: retrying within this send cannot help (login, certificate)


_DELIVERED = _Outcome(ok=True, permanent=False, code=250, error=None)
# Everything aiosmtplib or the network can raise for one send.
_SEND_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


def _outcome_of(exc: BaseException) -> _Outcome:
    """Sort a failure into permanent (5xx, unsupported) or transient (everything else)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        if exc.recipients:
            refused = exc.recipients[0]
            return _Outcome(False, 500 <= refused.code < 600, refused.code, refused.message)
        return _Outcome(False, False, None, str(exc))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _Outcome(False, 500 <= exc.code < 600, exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # e.g. STARTTLS demanded but not offered: retrying will not change the server.
        return _Outcome(False, True, None, str(exc))
    return _Outcome(False, False, None, str(exc) or type(exc).__name__)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (aiosmtplib wraps the ssl and socket errors)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


PASSWORD_SETTINGS = "ANKOMST_SMTP_PASSWORD (and ANKOMST_SMTP_USERNAME)"  # noqa: S105 (a name)
CA_SETTINGS = "ANKOMST_SMTP_CA_FILE"
TLS_SETTINGS = "ANKOMST_SMTP_STARTTLS / ANKOMST_SMTP_TLS"
ADDRESS_SETTINGS = "ANKOMST_SMTP_HOST / ANKOMST_SMTP_PORT"


def _relay_outcome(exc: BaseException) -> _Outcome:
    """A failure to connect, secure or log in: which settings to check, and whether retrying
    at once may help (a refused connection may; a refused password or certificate will not)."""
    chain = _chain(exc)
    text = str(exc) or type(exc).__name__
    code = None
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        code = exc.code
        text = f"{exc.code} {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _Outcome(False, False, code, f"login refused: {text}", PASSWORD_SETTINGS, False)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return _Outcome(False, False, None, f"certificate not trusted: {text}", CA_SETTINGS, False)
    if any(isinstance(e, ssl.SSLError) for e in chain) or "STARTTLS" in text or "TLS" in text:
        return _Outcome(False, False, code, f"TLS failed: {text}", TLS_SETTINGS, False)
    if "AUTH" in text:  # the relay offers no login (often: only after STARTTLS)
        return _Outcome(False, False, code, text, f"{TLS_SETTINGS}, {PASSWORD_SETTINGS}", False)
    return _Outcome(False, False, code, f"relay unreachable: {text}", ADDRESS_SETTINGS)


# SMTP connections a sender keeps (`ANKOMST_SMTP_POOL_SIZE`). Each carries one exchange at a
# time, four round trips to the relay, each of them waiting for a turn of the event loop: with
# 4, under load, the e-mails fell behind the chats and the service sat idle a seventh of the time
# waiting on them; with 8 it delivered 10-17 % more a second, at no more CPU a delivery (issue
# 17, bench/, docs/benchmarks.md). Two processes hold 16 connections to the relay: a relay that
# allows fewer per client needs the setting lowered.
POOL_SIZE = 8


class EmailSender:
    """Sends `OutgoingMail` over at most `pool_size` reused SMTP connections.

    Each connection carries one message at a time and is kept open for the next one. A pooled
    connection the server has dropped meanwhile is replaced and the message sent again at once;
    other failures are retried after a backoff delay (`sleep` is injectable for tests).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        from_addr: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        ca_file: str | None = None,
        pool_size: int = POOL_SIZE,
        timeout: float = 30.0,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        local_hostname: str | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if starttls and use_tls:
            raise ValueError("starttls and use_tls are mutually exclusive")
        if pool_size < 1 or max_attempts < 1:
            raise ValueError("pool_size and max_attempts must be at least 1")
        envelope_from = parseaddr(from_addr)[1]
        if not envelope_from or CONTROL.search(from_addr):
            raise ValueError(f"not a usable From address: {from_addr!r}")
        self.host = host
        self.port = port
        self.from_addr = from_addr
        self.pool_size = pool_size
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.connections_opened = 0
        self._envelope_from = envelope_from
        self._username = username
        self._password = password
        self._starttls = starttls
        self._use_tls = use_tls
        # Our own context, so a private CA can be trusted besides the system's; verification
        # stays on whatever the file holds.
        self._tls_context = relay_tls_context(ca_file) if (starttls or use_tls) else None
        # The relay as last seen: down after a failure to connect, secure or log in, up again
        # after the next connection that works. `relay_fault` names the settings to check.
        self.relay_up = True
        self.relay_fault: str | None = None
        self._reported_fault: str | None = None
        self._local_hostname = local_hostname
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(pool_size)
        # A stack, so a quiet period reuses one warm connection instead of cycling them all.
        self._idle: list[aiosmtplib.SMTP] = []
        self._closed = False

    async def send(
        self, mail: OutgoingMail, in_hand: Callable[[], Awaitable[object]] | None = None
    ) -> EmailResult:
        """Send one mail, retrying transient failures; never raises for SMTP trouble.

        A mail refused by `render_message` (header injection) is a permanent failure with
        `attempts=0`: nothing was sent. `in_hand` is awaited once, when the first attempt has
        a place in the pool and before anything of the mail goes out (the deliverer marks the
        delivery "sending" there, not while it waits its turn); what it raises ends the send.
        """
        if self._closed:
            raise RuntimeError("EmailSender is closed")
        try:
            recipient = plain_address(mail.to)
            payload = render_message(mail, self.from_addr)
        except HeaderInjectionError as exc:
            return EmailResult(ok=False, permanent=True, code=None, error=str(exc), attempts=0)
        attempt = relay_attempts = 0
        while True:
            attempt += 1
            outcome = await self._attempt(recipient, payload, in_hand)
            in_hand = None
            if outcome.relay_fault is not None:
                relay_attempts += 1
            if (
                outcome.ok
                or outcome.permanent
                or not outcome.retry_now
                or attempt >= self.max_attempts
            ):
                return EmailResult(
                    ok=outcome.ok,
                    permanent=outcome.permanent,
                    code=outcome.code,
                    error=outcome.error,
                    attempts=attempt,
                    relay_fault=outcome.relay_fault,
                    relay_attempts=relay_attempts,
                )
            await self._sleep(self._backoff(attempt))

    def _relay_down(self, outcome: _Outcome) -> _Outcome:
        """Mark the relay down; the first time for each distinct fault, tell the operator
        which setting to check (one error line, not one per message)."""
        self.relay_up = False
        self.relay_fault = outcome.relay_fault
        if outcome.relay_fault != self._reported_fault:
            self._reported_fault = outcome.relay_fault
            log.error(
                "SMTP relay %s:%s unusable (%s); mail waits until it works. Check %s",
                self.host,
                self.port,
                outcome.error,
                outcome.relay_fault,
            )
        return outcome

    def _relay_back(self) -> None:
        if not self.relay_up:
            log.warning("SMTP relay %s:%s works again; waiting mail goes out", self.host, self.port)
        self.relay_up = True
        self.relay_fault = self._reported_fault = None

    def _backoff(self, attempt: int) -> float:
        # Full jitter: senders that failed together do not all come back together.
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return self._rng.uniform(0, ceiling)

    async def _attempt(
        self, recipient: str, payload: bytes, in_hand: Callable[[], Awaitable[object]] | None
    ) -> _Outcome:
        async with self._slots:
            if in_hand is not None:
                await in_hand()
            client = self._idle.pop() if self._idle else None
            # Only a connection whose last command was answered goes back to the pool: one cut
            # off mid-transaction (the caller's deadline) is in an unknown state.
            clean = False
            try:
                while True:
                    reused = client is not None and client.is_connected
                    if client is None or not reused:
                        client = None
                        try:
                            client = await self._connect()
                        except _SEND_ERRORS as exc:
                            return self._relay_down(_relay_outcome(exc))
                        self._relay_back()
                    try:
                        await _transaction(
                            client, self._envelope_from, recipient, payload, self.timeout
                        )
                    except ConnectionError:
                        client.close()
                        if reused:
                            # The server hung up on the idle connection: not a delivery
                            # failure, so retry at once on a fresh connection.
                            continue
                        raise
                    clean = True
                    return _DELIVERED
            except _SEND_ERRORS as exc:
                # `_transaction` has already sent RSET after a refusal, so a connection that is
                # still open is clean for the next message.
                clean = True
                return _outcome_of(exc)
            finally:
                if client is not None:
                    if clean and client.is_connected and not self._closed:
                        self._idle.append(client)
                    else:
                        client.close()

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self._username,
            password=self._password,
            use_tls=self._use_tls,
            # Explicit either way: opportunistic STARTTLS would fail on servers with
            # certificates we cannot verify, and silently skip TLS on ones that drop it.
            start_tls=self._starttls,
            tls_context=self._tls_context,
            timeout=self.timeout,
            local_hostname=self._local_hostname,
        )
        await client.connect()
        self.connections_opened += 1
        return client

    async def close(self) -> None:
        """Say QUIT on the idle connections and close them; further sends raise RuntimeError."""
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await client.quit(timeout=min(self.timeout, 5.0))
            except _SEND_ERRORS:
                pass  # closing anyway
            finally:
                client.close()
