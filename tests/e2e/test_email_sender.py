"""The e-mail sender against a real SMTP server (tests/support/smtp_sink.py), no mocks."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from bot.channels.email import (
    Attachment,
    EmailSender,
    HeaderInjectionError,
    OutgoingMail,
    render_message,
)
from bot.runtime.services import email_sender
from bot.runtime.settings import Settings
from tests.support.smtp_sink import SmtpSink

FROM = "Ankomst <ankomst@ankomst.example>"


def parsed(mail: OutgoingMail, from_addr: str) -> EmailMessage:
    """The mail as `render_message` writes it, read back by the standard library."""
    raw = render_message(mail, from_addr)
    message = BytesParser(_class=EmailMessage, policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


HEALTH = "vardcentral@ostersund.example.se"
SCHOOL = "skola@ostersund.example.se"


def mail(n: int = 1, to: str = HEALTH, **changes: object) -> OutgoingMail:
    fields: dict[str, object] = {
        "to": to,
        "subject": f"Ankomst OSD-2026-{n:04d}: fredag 27 november 2026",
        "text": f"Ärende OSD-2026-{n:04d}. Språk: arabiska, dari. Tolk behövs.",
        "html": f"<p>Ärende <b>OSD-2026-{n:04d}</b>. Språk: arabiska, dari.</p>",
        "message_id": f"<case-{n}-v2-vc@ankomst.example>",
        "in_reply_to": f"<case-{n}-v1-vc@ankomst.example>",
        "references": (f"<case-{n}-v1-vc@ankomst.example>",),
    }
    fields.update(changes)
    return OutgoingMail(**fields)  # type: ignore[arg-type]


class Sleeps:
    """An injected sleep: records each delay and runs a hook instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.hook: Callable[[int], Awaitable[None]] | None = None

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.hook is not None:
            await self.hook(len(self.delays))


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])
async def sink(request: pytest.FixtureRequest) -> AsyncIterator[SmtpSink]:
    """Every exchange is tried against a relay that takes commands one by one and against one
    that offers PIPELINING (RFC 2920), as Postfix and Exchange do: MAIL, RCPT and DATA then
    go out together, and every refusal, hang-up and late reply must come out the same."""
    async with SmtpSink(pipelining=request.param) as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def make_sender(sink: SmtpSink, sleeps: Sleeps) -> AsyncIterator[Callable[..., EmailSender]]:
    made: list[EmailSender] = []

    def factory(**options: object) -> EmailSender:
        settings: dict[str, object] = {
            "host": sink.host,
            "port": sink.port,
            "from_addr": FROM,
            "local_hostname": "ankomst.test",
            "timeout": 5.0,
            "sleep": sleeps,
        }
        settings.update(options)
        sender = EmailSender(**settings)  # type: ignore[arg-type]
        made.append(sender)
        return sender

    yield factory
    for sender in made:
        await sender.close()


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(plain, EmailMessage)
    assert isinstance(html, EmailMessage)
    return plain.get_content(), html.get_content()


async def test_twenty_messages_go_over_two_reused_connections(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    sender = make_sender(pool_size=2)

    results = await asyncio.gather(*(sender.send(mail(n)) for n in range(1, 21)))

    assert all(r.ok and r.attempts == 1 for r in results)
    assert sink.connections_opened <= 2
    assert sender.connections_opened <= 2
    ids = sorted(m["Message-ID"] for m in sink.messages)
    assert ids == sorted(f"<case-{n}-v2-vc@ankomst.example>" for n in range(1, 21))
    for message in sink.messages:
        n = int(message["Message-ID"].split("-")[1])
        assert message.get_content_type() == "multipart/alternative"
        text, html = text_and_html(message)
        assert f"Ärende OSD-2026-{n:04d}" in text
        assert f"<b>OSD-2026-{n:04d}</b>" in html
        assert message["In-Reply-To"] == f"<case-{n}-v1-vc@ankomst.example>"
        assert message["References"] == f"<case-{n}-v1-vc@ankomst.example>"
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["Subject"] == f"Ankomst OSD-2026-{n:04d}: fredag 27 november 2026"
        assert message.envelope_from == "ankomst@ankomst.example"
        assert message.envelope_to == (HEALTH,)


async def test_messages_one_after_another_reuse_one_connection(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    sender = make_sender(pool_size=4)

    for n in range(1, 4):
        assert (await sender.send(mail(n))).ok

    assert sink.connections_opened == 1
    assert {m.connection for m in sink.messages} == {1}
    assert [m["Message-ID"] for m in sink.messages] == [
        f"<case-{n}-v2-vc@ankomst.example>" for n in range(1, 4)
    ]
    # To a relay that offers PIPELINING, MAIL, RCPT and DATA go in one write (RFC 2920: two
    # round trips a mail instead of four). The relay reads once for EHLO, then per mail once
    # for the envelope and DATA (or three times, one by one) and once for the message.
    assert sink.reads == 1 + (2 if sink.pipelining else 4) * 3


@pytest.mark.parametrize("client_noticed", [True, False], ids=["noticed", "unnoticed"])
async def test_a_dropped_idle_connection_is_reopened_and_the_next_message_arrives_once(
    sink: SmtpSink,
    make_sender: Callable[..., EmailSender],
    sleeps: Sleeps,
    client_noticed: bool,
) -> None:
    sender = make_sender(pool_size=1)
    assert (await sender.send(mail(1))).ok

    sink.drop_connections()
    if client_noticed:
        await asyncio.sleep(0.05)
    result = await sender.send(mail(2))

    assert result.ok
    assert result.attempts == 1
    assert sleeps.delays == []  # a stale pooled connection is not a failed attempt
    assert sink.connections_opened == 2
    assert [m["Message-ID"] for m in sink.messages] == [
        "<case-1-v2-vc@ankomst.example>",
        "<case-2-v2-vc@ankomst.example>",
    ]
    assert sink.messages[1].connection == 2


async def test_421_on_the_first_mail_command_is_retried_and_delivered(
    sink: SmtpSink, make_sender: Callable[..., EmailSender], sleeps: Sleeps
) -> None:
    sender = make_sender(base_delay=1.0)
    sink.fail_next("MAIL", 421)

    result = await sender.send(mail())

    assert result.ok
    assert result.attempts == 2
    assert len(sink.messages) == 1
    assert len(sleeps.delays) == 1
    assert 0.0 <= sleeps.delays[0] <= 1.0


async def test_421_greeting_is_transient(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    sender = make_sender()
    sink.fail_next("CONNECT", 421)

    result = await sender.send(mail())

    assert result.ok
    assert result.attempts == 2
    assert len(sink.messages) == 1


async def test_refused_connections_are_retried_until_the_server_is_back(
    sink: SmtpSink, make_sender: Callable[..., EmailSender], sleeps: Sleeps
) -> None:
    sender = make_sender()
    sink.refuse_connections()

    async def back_after_two_waits(waits: int) -> None:
        if waits == 2:
            await sink.accept_connections()

    sleeps.hook = back_after_two_waits

    result = await sender.send(mail())

    assert result.ok
    assert result.attempts == 3
    assert len(sink.messages) == 1


async def test_a_server_that_stays_away_gives_a_transient_failure_after_max_attempts(
    sink: SmtpSink, make_sender: Callable[..., EmailSender], sleeps: Sleeps
) -> None:
    sender = make_sender(max_attempts=5, base_delay=1.0, max_delay=3.0)
    sink.refuse_connections()

    result = await sender.send(mail())

    assert not result.ok
    assert not result.permanent
    assert result.attempts == 5
    assert result.error
    # Capped exponential backoff with full jitter: each wait is within [0, min(cap, base*2^i)].
    assert len(sleeps.delays) == 4
    for i, delay in enumerate(sleeps.delays):
        assert 0.0 <= delay <= min(3.0, 1.0 * 2**i)


async def test_a_slow_server_times_out_and_the_retry_delivers(
    sink: SmtpSink, make_sender: Callable[..., EmailSender], sleeps: Sleeps
) -> None:
    sender = make_sender(timeout=0.2)
    sink.slow(1.0, "MAIL")

    async def speed_up(waits: int) -> None:
        sink.slow(0.0, "MAIL")

    sleeps.hook = speed_up

    result = await sender.send(mail())

    assert result.ok
    assert result.attempts == 2
    assert len(sink.messages) == 1


async def test_a_reply_that_does_not_come_closes_the_connection_for_the_retry(
    sink: SmtpSink, make_sender: Callable[..., EmailSender], sleeps: Sleeps
) -> None:
    # The RCPT reply is late: the connection is in an unknown state (the reply may still come
    # and be taken for the next command's), so it is closed and the retry opens a new one.
    sender = make_sender(timeout=0.2, pool_size=1)
    sink.slow(1.0, "RCPT")

    async def speed_up(waits: int) -> None:
        sink.slow(0.0, "RCPT")

    sleeps.hook = speed_up

    result = await sender.send(mail())

    assert (result.ok, result.attempts) == (True, 2)
    assert sink.connections_opened == 2
    assert [m.connection for m in sink.messages] == [2]


async def test_550_for_one_address_fails_only_that_message_and_keeps_the_connection(
    sink: SmtpSink, make_sender: Callable[..., EmailSender], sleeps: Sleeps
) -> None:
    sender = make_sender(pool_size=1)
    sink.reject_recipient("flyttad@ostersund.example.se")

    refused = await sender.send(mail(1, to="flyttad@ostersund.example.se"))
    delivered = await sender.send(mail(2, to=SCHOOL))

    assert not refused.ok
    assert refused.permanent
    assert refused.code == 550
    assert refused.attempts == 1
    assert sleeps.delays == []
    assert delivered.ok
    assert sink.connections_opened == 1
    assert [m.envelope_to for m in sink.messages] == [(SCHOOL,)]
    assert sink.messages[0].connection == 1


async def test_5xx_after_data_is_permanent_and_the_connection_stays_usable(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    sender = make_sender(pool_size=1)
    sink.fail_next("DATA", 554, text="5.7.1 Message rejected")

    refused = await sender.send(mail(1))
    delivered = await sender.send(mail(2))

    assert (refused.ok, refused.permanent, refused.code) == (False, True, 554)
    assert delivered.ok
    assert sink.connections_opened == 1
    assert [m["Message-ID"] for m in sink.messages] == ["<case-2-v2-vc@ankomst.example>"]


async def test_the_size_declared_is_the_size_sent(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    # RFC 1870: MAIL FROM says how big the message is, as sent; the sender counts the message
    # it wrote instead of passing over it again, so line ends written any other way than CRLF,
    # in the text, the HTML or an attachment, would make the count wrong.
    invite = Attachment("kallelse.ics", "text/calendar; method=REQUEST", b"BEGIN:VCALENDAR\nX\r")
    sender = make_sender()

    result = await sender.send(
        mail(
            1,
            text="rad ett\nrad två\r\n.punkt först\rslut",
            html="<p>a\nb</p>\r",
            attachments=(invite,),
        )
    )

    assert result.ok
    (message,) = sink.messages
    assert message.mail_options == (f"SIZE={message.size}",)
    assert message.size > 1000


async def test_line_breaks_in_the_subject_are_stripped(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    sender = make_sender()

    result = await sender.send(mail(subject="Ankomst\r\nBcc: spion@example.com\n\tX: 1"))

    assert result.ok
    (message,) = sink.messages
    assert message["Subject"] == "Ankomst Bcc: spion@example.com X: 1"
    assert message["Bcc"] is None
    assert message["X"] is None
    assert message.envelope_to == (HEALTH,)


@pytest.mark.parametrize(
    "to",
    [
        f"{HEALTH}\r\nBcc: spion@example.com",
        f"{HEALTH}\n",
        f"Vårdcentralen <{HEALTH}>",
        f"{HEALTH}, spion@example.com",
        "spion@example.com\x00",
        "not-an-address",
        "",
    ],
)
async def test_a_recipient_that_is_not_one_plain_address_is_refused(
    sink: SmtpSink, make_sender: Callable[..., EmailSender], to: str
) -> None:
    sender = make_sender()

    with pytest.raises(HeaderInjectionError):
        parsed(mail(to=to), FROM)
    result = await sender.send(mail(to=to))

    assert (result.ok, result.permanent, result.attempts) == (False, True, 0)
    assert sink.connections_opened == 0
    assert sink.messages == []


@pytest.mark.parametrize("field", ["message_id", "in_reply_to"])
def test_message_ids_must_look_like_message_ids(field: str) -> None:
    with pytest.raises(HeaderInjectionError):
        parsed(mail(1, **{field: "<x@y>\r\nBcc: spion@example.com"}), FROM)
    with pytest.raises(HeaderInjectionError):
        parsed(mail(1, **{field: "no-angle-brackets@ankomst.example"}), FROM)


def test_an_international_domain_is_sent_in_punycode() -> None:
    message = parsed(mail(to="mottagning@malmö.example"), FROM)
    assert message["To"] == "mottagning@xn--malm-8qa.example"


async def test_an_ics_attachment_arrives_as_text_calendar(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    sender = make_sender()
    ics = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Ankomst//SV\r\nMETHOD:REQUEST\r\n"
        b"BEGIN:VEVENT\r\nUID:case-1@ankomst.example\r\nDTSTART:20261127T080000Z\r\n"
        b"SUMMARY:Ankomst OSD-2026-0001\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    attachment = Attachment("ankomst.ics", "text/calendar; method=REQUEST", ics)

    result = await sender.send(mail(attachments=(attachment,)))

    assert result.ok
    (message,) = sink.messages
    assert message.get_content_type() == "multipart/mixed"
    text, html = text_and_html(message)
    assert "Ärende OSD-2026-0001" in text
    assert "<b>OSD-2026-0001</b>" in html
    (calendar,) = list(message.iter_attachments())
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_filename() == "ankomst.ics"
    assert calendar.get_payload(decode=True) == ics


async def test_close_says_quit_on_pooled_connections(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    sender = make_sender()
    assert (await sender.send(mail())).ok

    await sender.close()

    assert (1, "QUIT") in sink.commands
    with pytest.raises(RuntimeError):
        await sender.send(mail())


@pytest.fixture
def no_ankomst_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ANKOMST_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_ankomst_env")
def test_the_sender_is_built_from_the_smtp_settings() -> None:
    settings = Settings(
        _env_file=None,
        smtp_host="smtp.ostersund.example.se",
        smtp_port=587,
        smtp_username="ankomst",
        smtp_password="hemligt",
        smtp_starttls=True,
        smtp_from="Ankomst <ankomst@ostersund.example.se>",
        smtp_pool_size=3,
        send_attempts=4,
    )

    sender = email_sender(settings)
    embedded = email_sender(settings, host="127.0.0.1", port=2525)

    assert (sender.host, sender.port, sender.pool_size) == ("smtp.ostersund.example.se", 587, 3)
    assert sender.max_attempts == 4
    assert sender.from_addr == "Ankomst <ankomst@ostersund.example.se>"
    assert (embedded.host, embedded.port) == ("127.0.0.1", 2525)
    with pytest.raises(ValueError, match="SMTP host"):
        email_sender(Settings(_env_file=None))


async def test_in_hand_is_told_once_a_mail_has_its_connection_and_before_it_goes(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    # One connection, three mails at once: each is told "in hand" only when the mails before
    # it are out (what the server had then), never while it waits its turn.
    sender = make_sender(pool_size=1)
    seen: list[tuple[int, int]] = []

    def told(n: int) -> Callable[[], Awaitable[None]]:
        async def in_hand() -> None:
            seen.append((n, len(sink.messages)))

        return in_hand

    results = await asyncio.gather(*(sender.send(mail(n), told(n)) for n in (1, 2, 3)))

    assert all(r.ok for r in results)
    assert sorted(received for _, received in seen) == [0, 1, 2]
    assert len(seen) == 3


async def test_in_hand_is_told_once_though_the_mail_is_retried(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    sender = make_sender()
    sink.fail_next("MAIL", 421)
    told = 0

    async def in_hand() -> None:
        nonlocal told
        told += 1

    result = await sender.send(mail(1), in_hand)

    assert result.ok and result.attempts == 2
    assert told == 1


async def test_what_in_hand_raises_ends_the_send_before_anything_goes_out(
    sink: SmtpSink, make_sender: Callable[..., EmailSender]
) -> None:
    sender = make_sender(pool_size=1)

    async def store_away() -> None:
        raise ConnectionError("the store is away")

    with pytest.raises(ConnectionError):
        await sender.send(mail(1), store_away)
    assert sink.messages == []
    # The connection's place was given back: the next mail goes.
    assert (await sender.send(mail(2))).ok
    assert len(sink.messages) == 1
