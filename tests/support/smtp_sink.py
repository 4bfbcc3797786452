"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, port 0, recording and fault-injecting.

    async with SmtpSink() as sink:
        sender = EmailSender(host=sink.host, port=sink.port, ...)
        sink.fail_next("MAIL", code=421)        # next MAIL gets 421 and the line is closed
        sink.reject_recipient("gone@example.se")  # 550 for that address only
        sink.slow(0.2, "DATA")                  # answer DATA late
        sink.refuse_connections(); await sink.accept_connections()
        sink.drop_connections()                 # the server hangs up on idle sessions

    # A relay as organisations run them: STARTTLS required, then AUTH (PLAIN/LOGIN).
    async with SmtpSink(tls_context=server_context, logins={"ankomst": "rätt"}) as relay: ...

    # One that offers PIPELINING (RFC 2920), as Postfix and Exchange do; `sink.reads` counts
    # the reads the server made of what clients sent.
    async with SmtpSink(pipelining=True) as relay: ...

The server runs on the test's own event loop (no thread), so faults apply at once and
shutdown is deterministic.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

CommandMethod = Callable[[str | None], Awaitable[None]]


class ReceivedMessage(EmailMessage):
    """A message the sink accepted, with the envelope and the connection it came on."""

    envelope_from: str = ""
    envelope_to: tuple[str, ...] = ()
    connection: int = 0  # 1-based number of the TCP connection, in order of opening
    mail_options: tuple[str, ...] = ()  # the MAIL command's parameters (SIZE=...)
    size: int = 0  # octets of the message as received (line ends CRLF, dots unstuffed)


@dataclass
class _Fault:
    command: str  # CONNECT, EHLO, MAIL, RCPT, DATA, RSET, NOOP, ...
    code: int | None  # None: hang up without a word
    text: str
    close: bool
    remaining: int


class OffersPipelining:
    """The part of an aiosmtpd handler that offers PIPELINING (RFC 2920) in the reply to EHLO,
    as Postfix and Exchange do, while `pipelining` is true. aiosmtpd reads command by command,
    so commands sent together are answered in turn: offering the extension is all it takes.
    Also the benchmark's sink's (bench/smtp_sink_proc.py)."""

    @property
    def pipelining(self) -> bool:
        return True

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class _Recorder(OffersPipelining):
    """aiosmtpd handler: refuses the listed recipients and records every message."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    @property
    def pipelining(self) -> bool:
        return self._sink.pipelining

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        code = self._sink.rejected.get(address.lower())
        if code is not None:
            return f"{code} 5.1.1 <{address}>: recipient rejected"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = BytesParser(_class=ReceivedMessage, policy=policy.default).parsebytes(content)
        assert isinstance(message, ReceivedMessage)
        message.envelope_from = str(envelope.mail_from or "")
        message.envelope_to = tuple(envelope.rcpt_tos)
        message.connection = getattr(server, "number", 0)
        message.mail_options = tuple(envelope.mail_options)
        message.size = len(content)
        self._sink.messages.append(message)
        self._sink.arrived.set()
        return f"250 2.0.0 Ok: queued as {len(self._sink.messages)}"


class _SinkSession(SMTP):
    """One SMTP connection; every command passes the sink's fault rules first."""

    def __init__(self, sink: SmtpSink, handler: _Recorder) -> None:
        relay: dict[str, Any] = {}
        if sink.tls_context is not None:
            relay.update(tls_context=sink.tls_context, require_starttls=True)
        if sink.logins is not None:
            relay.update(authenticator=sink._authenticate, auth_required=True)
        super().__init__(handler, hostname="sink.test", loop=asyncio.get_running_loop(), **relay)
        self.sink = sink
        self.number = 0
        # aiosmtpd dispatches through this table; wrapping it puts the fault check in
        # front of every command without copying aiosmtpd's command handling.
        methods: dict[str, CommandMethod] = self._smtp_methods
        self._smtp_methods = {verb: self._guarded(verb, m) for verb, m in methods.items()}

    def _guarded(self, verb: str, method: CommandMethod) -> CommandMethod:
        async def run(arg: str | None) -> None:
            if await self.sink._intercept(self, verb):
                return
            await method(arg)

        return run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.number = self.sink._opened(self)

    def data_received(self, data: bytes) -> None:
        self.sink.reads += 1
        super().data_received(data)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink._closed(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if await self.sink._intercept(self, "CONNECT"):
            return
        await super()._handle_client()

    async def reply_and_maybe_close(self, code: int | None, text: str, close: bool) -> None:
        """Answer with a fault; hang up if asked (as a real server does after 421)."""
        if code is not None:
            await self.push(f"{code} {text}")
        if (close or code is None) and self.transport is not None:
            self.transport.close()


class SmtpSink:
    """A recording SMTP server with per-test fault injection."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        tls_context: ssl.SSLContext | None = None,
        logins: dict[str, str] | None = None,
        pipelining: bool = False,
    ) -> None:
        """`tls_context`: STARTTLS is offered with it and required before anything else;
        `logins` (user -> password): AUTH is required (after STARTTLS, when offered);
        `pipelining`: PIPELINING is offered (RFC 2920)."""
        self.host = host
        self.pipelining = pipelining
        self.reads = 0  # reads of what clients sent, over every connection
        self.tls_context = tls_context
        self.logins = logins
        self.logins_refused = 0
        self.port = 0
        self.messages: list[ReceivedMessage] = []
        self.commands: list[tuple[int, str]] = []  # (connection number, command verb)
        self.connections_opened = 0
        self.rejected: dict[str, int] = {}
        self.arrived = asyncio.Event()
        self._faults: list[_Fault] = []
        self._delays: dict[str | None, float] = {}
        self._server: asyncio.Server | None = None
        self._sessions: set[_SinkSession] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        self._handler = _Recorder(self)

    async def __aenter__(self) -> SmtpSink:
        await self.accept_connections()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # Recording

    def to(self, address: str) -> list[ReceivedMessage]:
        """Messages whose envelope named this recipient."""
        wanted = address.lower()
        return [m for m in self.messages if wanted in (a.lower() for a in m.envelope_to)]

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least `count` messages have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()

    # Faults

    def fail_next(
        self,
        command: str,
        code: int | None = 421,
        *,
        times: int = 1,
        text: str | None = None,
        close: bool | None = None,
    ) -> None:
        """The next `times` uses of `command` (or CONNECT) get `code`; 421 also hangs up."""
        self._faults.append(
            _Fault(
                command=command.upper(),
                code=code,
                text=text or ("4.3.2 Service not available" if code == 421 else "Injected"),
                close=(code == 421 or code is None) if close is None else close,
                remaining=times,
            )
        )

    def reject_recipient(self, address: str, code: int = 550) -> None:
        """Refuse this one recipient at RCPT; others are accepted."""
        self.rejected[address.lower()] = code

    def slow(self, seconds: float, command: str | None = None) -> None:
        """Wait `seconds` before answering `command` (every command if None)."""
        self._delays[command.upper() if command else None] = seconds

    def refuse_connections(self) -> None:
        """Stop listening: new connections are refused; open sessions continue."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def accept_connections(self) -> None:
        """Listen (again, on the same port once one is known)."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _SinkSession(self, self._handler), self.host, self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def drop_connections(self) -> None:
        """Hang up on every open session, as a server does with idle connections."""
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    async def close(self) -> None:
        """Stop listening, hang up, and wait for every session task to end."""
        self.refuse_connections()
        self.drop_connections()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # Let the closed transports deliver connection_lost before the loop goes away.
        await asyncio.sleep(0)

    # Called by the sessions

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and self.logins is not None
            and self.logins.get(data.login.decode()) == data.password.decode()
        )
        if not ok:
            self.logins_refused += 1
        # handled=False: aiosmtpd answers 535 itself (True would mean we had answered).
        return AuthResult(success=ok, handled=False)

    def _opened(self, session: _SinkSession) -> int:
        self.connections_opened += 1
        self._sessions.add(session)
        if session._handler_coroutine is not None:
            self._tasks.append(session._handler_coroutine)
        return self.connections_opened

    def _closed(self, session: _SinkSession) -> None:
        self._sessions.discard(session)

    async def _intercept(self, session: _SinkSession, verb: str) -> bool:
        """Record the command, apply delays and faults; True if the fault answered it."""
        self.commands.append((session.number, verb))
        delay = self._delays.get(verb, self._delays.get(None, 0.0))
        if delay:
            await asyncio.sleep(delay)
        for fault in self._faults:
            if fault.command == verb and fault.remaining > 0:
                fault.remaining -= 1
                await session.reply_and_maybe_close(fault.code, fault.text, fault.close)
                return True
        return False
