"""MAIL, RCPT and DATA sent together (RFC 2920) against a scripted SMTP server on 127.0.0.1.

aiosmtpd (tests/support/smtp_sink.py) answers each command with a write of its own. A relay
may answer commands sent together in one packet, in several, or cut a reply across two: each
must give the same result. The server here answers from a script, in the pieces the test
chooses, and records what it read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from bot.channels.email import EmailSender, OutgoingMail

TO = "skola@ostersund.example.se"
GREETING = b"220 relay.test ESMTP\r\n"
EHLO = b"250-relay.test\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n"


def mail(n: int = 1, to: str = TO) -> OutgoingMail:
    return OutgoingMail(
        to=to,
        subject=f"Ankomst OSD-2026-{n:04d}",
        text=f"Ärende OSD-2026-{n:04d}.",
        html=f"<p>Ärende OSD-2026-{n:04d}.</p>",
        message_id=f"<case-{n}-v1-sk@ankomst.example>",
    )


class ScriptedRelay:
    """Answers EHLO with PIPELINING, each envelope (MAIL, RCPT, DATA, read together) with the
    pieces of `envelope_replies` and each message with `message_reply`, pausing between the
    pieces so that they reach the client apart; RSET with 250 and QUIT with 221."""

    def __init__(self) -> None:
        self.envelope_replies: Sequence[bytes] = (b"250 ok\r\n250 ok\r\n354 go ahead\r\n",)
        self.message_reply = b"250 queued\r\n"
        self.hang_up_after_envelope = False  # once, as a server going down after its 421
        self.messages: list[bytes] = []
        self.commands: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedRelay:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(GREETING)
        try:
            while line := await reader.readline():
                self.commands.append(line.strip())
                verb = line[:4].upper()
                if verb == b"EHLO":
                    writer.write(EHLO)
                elif verb == b"MAIL":
                    # RCPT and DATA came with it; read them before answering any.
                    for _ in range(2):
                        self.commands.append((await reader.readline()).strip())
                    await self._answer(writer, self.envelope_replies)
                    if self.hang_up_after_envelope:
                        self.hang_up_after_envelope = False
                        self.envelope_replies = (REPLIES,)
                        break
                    if self.commands[-1] == b"DATA" and self._data_taken():
                        self.messages.append(await _message(reader))
                        writer.write(self.message_reply)
                elif verb == b"RSET":
                    writer.write(b"250 reset\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                await writer.drain()
        finally:
            writer.close()

    def _data_taken(self) -> bool:
        return b"\r\n354 " in b"\r\n" + b"".join(self.envelope_replies)

    async def _answer(self, writer: asyncio.StreamWriter, pieces: Sequence[bytes]) -> None:
        for i, piece in enumerate(pieces):
            if i:
                # Not a wait for an outcome: a pause, so the piece before goes in a packet of
                # its own and the client reads it before this one is sent.
                await asyncio.sleep(0.02)
            writer.write(piece)
            await writer.drain()


async def _message(reader: asyncio.StreamReader) -> bytes:
    """The lines up to and with the lone dot that ends a message."""
    lines = [await reader.readline()]
    while lines[-1] not in (b".\r\n", b""):
        lines.append(await reader.readline())
    return b"".join(lines)


@pytest.fixture
async def relay() -> AsyncIterator[ScriptedRelay]:
    async with ScriptedRelay() as server:
        yield server


@pytest.fixture
async def make_sender(relay: ScriptedRelay) -> AsyncIterator[Callable[..., EmailSender]]:
    made: list[EmailSender] = []

    async def no_wait(_: float) -> None:
        return None

    def factory(max_attempts: int = 3) -> EmailSender:
        sender = EmailSender(
            host="127.0.0.1",
            port=relay.port,
            from_addr="Ankomst <ankomst@ankomst.example>",
            local_hostname="ankomst.test",
            timeout=5.0,
            pool_size=1,
            max_attempts=max_attempts,
            sleep=no_wait,
        )
        made.append(sender)
        return sender

    yield factory
    for sender in made:
        await sender.close()


REPLIES = b"250 sender ok\r\n250 recipient ok\r\n354 go ahead\r\n"


@pytest.mark.parametrize(
    "pieces",
    [
        (REPLIES,),
        (b"250 sender ok\r\n", b"250 recipient ok\r\n", b"354 go ahead\r\n"),
        (b"250 sender ok\r\n250 recip", b"ient ok\r\n35", b"4 go ahead\r\n"),
        (b"250 sender ok\r\n250 recipient ok\r\n", b"354 go ahead\r\n"),
    ],
    ids=["in-one-packet", "one-packet-each", "cut-mid-reply", "two-then-one"],
)
async def test_the_replies_to_commands_sent_together_may_come_in_any_pieces(
    relay: ScriptedRelay, make_sender: Callable[..., EmailSender], pieces: tuple[bytes, ...]
) -> None:
    relay.envelope_replies = pieces
    sender = make_sender()

    first = await sender.send(mail(1))
    second = await sender.send(mail(2))

    assert (first.ok, first.attempts, second.ok, second.attempts) == (True, 1, True, 1)
    assert len(relay.messages) == 2
    assert b"Message-ID: <case-2-v1-sk@ankomst.example>" in relay.messages[1]
    assert relay.commands[1].startswith(b"MAIL FROM:<ankomst@ankomst.example> SIZE=")
    assert relay.commands[2:4] == [b"RCPT TO:<skola@ostersund.example.se>", b"DATA"]


async def test_data_taken_after_a_refused_recipient_gets_a_lone_dot_and_the_refusal_counts(
    relay: ScriptedRelay, make_sender: Callable[..., EmailSender]
) -> None:
    # RFC 2920 3.1: a server may take DATA though no recipient was taken; the client ends the
    # message at once with a lone dot, and the recipient's refusal is what is reported.
    relay.envelope_replies = (b"250 ok\r\n550 5.1.1 no such user\r\n354 go ahead\r\n",)
    relay.message_reply = b"554 5.5.1 no valid recipients\r\n"
    sender = make_sender()

    refused = await sender.send(mail(1))

    assert (refused.ok, refused.permanent, refused.code, refused.attempts) == (False, True, 550, 1)
    assert relay.messages == [b".\r\n"]
    assert relay.commands[-1] == b"RSET"


async def test_a_refused_sender_is_reported_though_the_server_hangs_up_before_the_rest(
    relay: ScriptedRelay, make_sender: Callable[..., EmailSender]
) -> None:
    # 421 to MAIL, then the server closes: the replies to RCPT and DATA never come. The 421 is
    # the failure (transient: retried), not the lost connection.
    relay.envelope_replies = (b"421 4.3.2 going down\r\n",)
    relay.hang_up_after_envelope = True

    once = await make_sender(max_attempts=1).send(mail(1))
    result = await make_sender().send(mail(2))

    assert (once.ok, once.permanent, once.code) == (False, False, 421)
    assert "going down" in (once.error or "")
    assert (result.ok, result.attempts) == (True, 1)
    assert len(relay.messages) == 1
