"""Embedded servers that let `ankomst serve` run on a bare machine.

- `EmbeddedSmtp`: when ANKOMST_SMTP_HOST is unset, an SMTP server on 127.0.0.1 that captures
  every mail into a Maildir at `$ANKOMST_DATA_DIR/mail` instead of delivering it.
- `EmbeddedValkey` lives with the store (bot/store/embedded.py), which starts it when
  ANKOMST_REDIS_URL is unset; it is re-exported here with the SMTP server's siblings.
"""

from __future__ import annotations

import asyncio
import contextlib
import mailbox
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from bot.store.embedded import EmbeddedServerError, EmbeddedValkey

__all__ = ["EmbeddedServerError", "EmbeddedSmtp", "EmbeddedValkey", "read_maildir"]


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
