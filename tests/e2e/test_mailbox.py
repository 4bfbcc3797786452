"""The watched mailbox against a real IMAP server (pymap, dict backend, STARTTLS with a private
CA): notices become drafts once, across listeners and server restarts, with nothing personal
stored or logged; confirming registers; an unconfirmed draft alerts at the same-day time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme

from bot.domain.actor import Actor
from bot.domain.arrival import ArrivalIn, InvalidInput, parse
from bot.domain.events import Topic
from bot.pipeline.mailbox import DONE_FOLDER, MailboxConfig, MailboxListener
from bot.store import keys
from bot.usecases.notices import CONFIRMED, DISCARDED, NOTICE_RECEIVED_AT
from tests.support.world import CHATS, STOCKHOLM, World, eventually, running_world

CORPUS = Path(__file__).parents[1] / "data" / "notices"
USER, PASSWORD = "ankomst", "hemligt-imap-lösen"
RECEPTION = "ostersund-mottagning"
RECEPTION_MAIL = "mottagning@ostersund.example.se"
SUPERVISOR_MAIL = "kommunledning@ostersund.example.se"
# Tuesday 1 December 2026, 09:00 in Östersund: a working day, the office open.
MORNING = datetime(2026, 12, 1, 9, 0, tzinfo=STOCKHOLM)
IMAP_WAIT = 20.0  # a bounded wait for the IMAP round trip (IDLE push, reconnect), not for time


@pytest.fixture(autouse=True)
def _flushed(redis: Any) -> None:
    """Every test starts from an empty database (the `redis` fixture flushes it)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pymap:
    """A pymap server in a subprocess (in-memory dict backend: a restart empties it)."""

    def __init__(self, cert: Path, port: int) -> None:
        self.cert = cert
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("pymap")),
                "--host", "127.0.0.1", "--port", str(self.port),
                "--cert", str(self.cert), "--key", str(self.cert),
                "dict", "--demo-user", USER, "--demo-password", PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(300):  # up to 30 s for the server to listen (a process start, not time)
            if self.process.poll() is not None:
                raise RuntimeError("pymap did not start")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.1),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("pymap did not listen")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_pem, ca_pem = tmp_path / "imap.pem", tmp_path / "imap-ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    return server_pem, ca_pem


@pytest.fixture
def imap(tls: tuple[Path, Path]) -> Iterator[Pymap]:
    server = Pymap(tls[0], free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def imap_url(server: Pymap) -> str:
    return f"imap://{USER}:{PASSWORD.replace('ö', '%C3%B6')}@127.0.0.1:{server.port}/INBOX"


def notice(name: str) -> bytes:
    return (CORPUS / f"{name}.eml").read_bytes()


def expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    return data


@contextlib.asynccontextmanager
async def world_with_mailbox(
    redis_url: str, tmp_path: Path, server: Pymap, ca: Path, **settings: Any
) -> AsyncIterator[World]:
    async with running_world(
        redis_url,
        tmp_path,
        now=settings.pop("now", MORNING),
        imap_url=imap_url(server),
        imap_reception_unit=RECEPTION,
        imap_ca_file=str(ca),
        **settings,
    ) as world:
        yield world


def listener_of(world: World, server: Pymap, ca: Path) -> MailboxListener:
    """Another listener on the same mailbox and store (a second `serve` process's)."""
    config = MailboxConfig.from_url(
        imap_url(server), reception_unit=RECEPTION, ca_file=ca, backoff_cap=1.0
    )
    s = world.services
    return MailboxListener(config, s.drafts, s.redis, s.clock, s.settings.secret())


async def append(world: World, server: Pymap, ca: Path, *raws: bytes) -> None:
    client = await listener_of(world, server, ca).connect()
    try:
        for raw in raws:
            response = await client.append(raw, mailbox="INBOX")
            assert response.result == "OK"
    finally:
        await client.logout()


async def folder_count(world: World, server: Pymap, ca: Path, folder: str) -> int:
    client = await listener_of(world, server, ca).connect()
    try:
        response = await client.select(f'"{folder}"')
        if response.result != "OK":
            return 0
        search = await client.uid_search("ALL", charset=None)
        return sum(len(bytes(line).split()) for line in search.lines[:-1])
    finally:
        await client.logout()


async def drafts(world: World) -> list[dict[str, str]]:
    return await world.services.drafts.of_unit(RECEPTION)


async def until_drafts(world: World, count: int) -> list[dict[str, str]]:
    async def there() -> bool:
        return len(await drafts(world)) >= count

    await eventually(there, IMAP_WAIT, f"{count} draft(s) from the mailbox")
    return await drafts(world)


def without_ref(fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k != "external_ref"}


async def test_a_notice_in_the_mailbox_becomes_one_draft_and_the_unit_is_told(
    redis_url: str, tmp_path: Path, imap: Pymap, tls: tuple[Path, Path]
) -> None:
    async with world_with_mailbox(redis_url, tmp_path, imap, tls[1]) as world:
        assert world.services.workers.mailbox is not None
        await append(world, imap, tls[1], notice("sv_plain"))
        # The service's own listener, waiting in IDLE, is told by the server.
        [draft] = await until_drafts(world, 1)
        want = expected("sv_plain")["draft"]
        assert without_ref({k: draft[k] for k in want}) == without_ref(want)
        assert draft["external_ref"].startswith("mv-")
        assert draft["status"] == "new"
        assert draft["reception_unit"] == RECEPTION
        assert draft["municipality"] == "ostersund"
        assert datetime.fromisoformat(draft["received_at"]) <= world.clock.now()
        # Out of the inbox, into Ankomst/Behandlat (created by the listener).
        assert await folder_count(world, imap, tls[1], "INBOX") == 0
        assert await folder_count(world, imap, tls[1], DONE_FOLDER) == 1

        await world.drain()
        records = [
            await world.services.redis.hgetall(k)
            async for k in world.services.redis.scan_iter("ankomst:delivery:*")
        ]
        assert all(r.get("status") == "sent" for r in records), records
        [mail] = world.mails_to(RECEPTION_MAIL)
        assert str(mail["Subject"]).startswith("Ny avisering – granska och skicka")
        text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[attr-defined]
        assert f"/dashboard/ny?draft={draft['id']}" in text
        chat = [c.text or "" for c in world.telegram.sent_to(CHATS[RECEPTION])]
        assert any(f"/ny {draft['id']}" in t and "granska" in t for t in chat), chat


async def test_the_same_notice_twice_is_one_draft(
    redis_url: str, tmp_path: Path, imap: Pymap, tls: tuple[Path, Path]
) -> None:
    async with world_with_mailbox(redis_url, tmp_path, imap, tls[1]) as world:
        raw = notice("en_plain")
        resent = raw.replace(b"<en_plain@notices.example>", b"<en_plain-again@notices.example>")
        await append(world, imap, tls[1], raw, raw, resent)
        await until_drafts(world, 1)
        listener = listener_of(world, imap, tls[1])
        await listener.run_once()  # whatever the service's own listener left
        assert len(await drafts(world)) == 1
        await world.drain()
        assert len(world.mails_to(RECEPTION_MAIL)) == 1


async def test_two_listeners_take_each_notice_once(
    redis_url: str, tmp_path: Path, imap: Pymap, tls: tuple[Path, Path]
) -> None:
    names = ["sv_plain", "en_plain", "sv_html", "sv_pdf", "sv_ocr", "en_forwarded", "en_html"]
    async with world_with_mailbox(
        redis_url, tmp_path, imap, tls[1], imap_poll_seconds=3600
    ) as world:
        service_listener = world.services.workers.mailbox
        assert service_listener is not None
        await service_listener.stop()  # two listeners of our own, run to the end
        one, two = listener_of(world, imap, tls[1]), listener_of(world, imap, tls[1])
        await append(world, imap, tls[1], *(notice(n) for n in names))
        await asyncio.gather(one.run_once(), two.run_once())
        await asyncio.gather(one.run_once(), two.run_once())  # and again: nothing new
        assert one.stats.drafted + two.stats.drafted == len(names)
        assert one.stats.failed + two.stats.failed == 0
        assert len(await drafts(world)) == len(names)
        events = await world.services.redis.xrange(keys.EVENTS)
        told = [f for _, f in events if f.get("topic") == str(Topic.NOTICE_DRAFT)]
        assert len(told) == len(names)


async def test_the_server_restarted_mid_idle_loses_nothing(
    redis_url: str, tmp_path: Path, imap: Pymap, tls: tuple[Path, Path]
) -> None:
    async with world_with_mailbox(redis_url, tmp_path, imap, tls[1]) as world:
        listener = world.services.workers.mailbox
        assert listener is not None

        async def idling() -> bool:
            return listener.stats.connected

        await eventually(idling, IMAP_WAIT, "the listener to connect")
        connects = listener.stats.connects
        imap.stop()
        imap.start()  # a new, empty server on the same port
        await append(world, imap, tls[1], notice("sv_ocr"))
        [draft] = await until_drafts(world, 1)
        assert listener.stats.connects > connects
        assert draft["arrival_date"] == "2026-12-09"


async def test_nothing_personal_in_redis_or_the_log(
    redis_url: str,
    tmp_path: Path,
    imap: Pymap,
    tls: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    personal = [*expected("sv_plain")["personal"], *expected("sv_pdf")["personal"]]
    personal += [PASSWORD, "Avisering om anvisning"]
    async with world_with_mailbox(redis_url, tmp_path, imap, tls[1]) as world:
        await append(world, imap, tls[1], notice("sv_plain"), notice("sv_pdf"))
        await until_drafts(world, 2)
        await world.drain()
        redis = world.services.redis
        dump: list[str] = []
        async for key in redis.scan_iter(count=500):
            dump.append(key)
            kind = await redis.type(key)
            if kind == "string":
                dump.append(str(await redis.get(key)))
            elif kind == "hash":
                dump.append(json.dumps(await redis.hgetall(key), ensure_ascii=False))
            elif kind == "list":
                dump.extend(await redis.lrange(key, 0, -1))
            elif kind == "set":
                dump.extend(await redis.smembers(key))
            elif kind == "zset":
                dump.extend(await redis.zrange(key, 0, -1))
            elif kind == "stream":
                entries = await redis.xrange(key)
                dump.append(json.dumps(entries, ensure_ascii=False))
        everything = "\n".join(dump).lower()
        lines = "\n".join(r.getMessage() for r in caplog.records).lower()
        for item in personal:
            assert item.lower() not in everything, item
            assert item.lower() not in lines, item


async def test_confirming_a_draft_registers_and_every_recipient_is_told(
    redis_url: str, tmp_path: Path, imap: Pymap, tls: tuple[Path, Path]
) -> None:
    async with world_with_mailbox(redis_url, tmp_path, imap, tls[1]) as world:
        await append(world, imap, tls[1], notice("sv_plain"))
        [draft] = await until_drafts(world, 1)
        await world.drain()
        s = world.services
        arrival = parse(
            ArrivalIn,
            {
                "external_ref": draft["external_ref"],
                "municipality": draft["municipality"],
                "arrival_date": draft["arrival_date"],
                "children": json.loads(draft["children"]),
                "languages": draft["languages"].split(","),
                "interpreter_needed": draft["interpreter_needed"] == "true",
                "unaccompanied": draft["unaccompanied"] == "true",
            },
            today=MORNING.date(),
        )
        actor = Actor(org_id=RECEPTION, via="dashboard", who="test")
        case, created = await s.drafts.confirm(draft["id"], arrival, actor)
        assert created
        await world.drain()
        for org in case.recipients:
            address = s.directory.organisations[org].email
            assert address is not None
            mails = world.mails_to(address)
            assert any(case.reference in str(m["Subject"]) for m in mails), org
        stored = await s.drafts.get(draft["id"])
        assert stored["status"] == CONFIRMED and stored["case"] == case.id
        assert await s.redis.hget(keys.case(case.id), NOTICE_RECEIVED_AT) == draft["received_at"]
        assert await drafts(world) == []
        # Confirmed before the alert time: no alert comes.
        world.clock.set(MORNING.replace(hour=18))
        await world.tick()
        subjects = [str(m["Subject"]) for m in world.mails_to(RECEPTION_MAIL)]
        assert not any("Ej skickad" in x for x in subjects)


async def test_an_unconfirmed_draft_alerts_the_unit_then_the_supervisor(
    redis_url: str, tmp_path: Path, imap: Pymap, tls: tuple[Path, Path]
) -> None:
    async with world_with_mailbox(redis_url, tmp_path, imap, tls[1]) as world:
        await append(world, imap, tls[1], notice("unreadable"))
        [draft] = await until_drafts(world, 1)
        assert draft["readable"] == "false" and draft["arrival_date"] == ""
        await world.drain()
        world.clock.set(MORNING.replace(hour=16, minute=29))
        await world.tick()
        assert not any("Ej skickad" in str(m["Subject"]) for m in world.mails_to(RECEPTION_MAIL))
        world.clock.set(MORNING.replace(hour=16, minute=30))  # office end 17:00 - 30 min
        await world.tick()
        alerts = [m for m in world.mails_to(RECEPTION_MAIL) if "Ej skickad" in str(m["Subject"])]
        assert len(alerts) == 1
        assert world.mails_to(SUPERVISOR_MAIL) == []
        world.clock.set(MORNING.replace(hour=17) + timedelta(seconds=1))
        await world.tick()
        assert len(world.mails_to(SUPERVISOR_MAIL)) == 1


async def test_discarding_needs_a_reason_and_is_kept(
    redis_url: str, tmp_path: Path, imap: Pymap, tls: tuple[Path, Path]
) -> None:
    async with world_with_mailbox(redis_url, tmp_path, imap, tls[1]) as world:
        await append(world, imap, tls[1], notice("en_html"))
        [draft] = await until_drafts(world, 1)
        s = world.services
        actor = Actor(org_id=RECEPTION, via="dashboard", who="test")
        with pytest.raises(InvalidInput) as refused:
            await s.drafts.discard(draft["id"], "  ", actor)
        assert refused.value.errors[0]["field"] == "reason"
        await s.drafts.discard(draft["id"], "Dubblett av ett ärende vi redan har", actor)
        assert (await s.drafts.get(draft["id"]))["status"] == DISCARDED
        history = await s.drafts.history(draft["id"])
        assert history[-1]["what"] == "discarded" and history[-1]["reason"]
        audit = await s.redis.xrange(keys.AUDIT)
        assert any(f.get("what") == "draft_discarded" for _, f in audit)
        world.clock.set(MORNING.replace(hour=18))
        await world.tick()
        assert not any("Ej skickad" in str(m["Subject"]) for m in world.mails_to(RECEPTION_MAIL))
