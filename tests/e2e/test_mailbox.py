"""The watched mailbox against a real IMAP server (pymap, dict backend, STARTTLS with a private
CA): notices become drafts once, across listeners and server restarts, with nothing personal
stored or logged; confirming registers; an unconfirmed draft alerts at the same-day time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme

from bot.domain.actor import Actor
from bot.domain.arrival import ArrivalIn, InvalidInput, parse
from bot.domain.events import Topic
from bot.domain.notice import NoticeDraft
from bot.pipeline.deadletters import DeadLetterAlarm
from bot.pipeline.mailbox import DONE_FOLDER, MailboxConfig, MailboxListener, in_hierarchy
from bot.store import keys
from bot.usecases.notices import CONFIRMED, DISCARDED, NOTICE_RECEIVED_AT
from tests.support.chat import button, chat_says, press, say
from tests.support.process import ServeProcess, all_deliveries, serve_env
from tests.support.world import CHATS, STOCKHOLM, World, eventually, running_world

CORPUS = Path(__file__).parents[1] / "data" / "notices"
USER, PASSWORD = "ankomst", "hemligt-imap-lösen"
RECEPTION = "ostersund-mottagning"
RECEPTION_MAIL = "mottagning@ostersund.example.se"
SUPERVISOR_MAIL = "kommunledning@ostersund.example.se"
# Tuesday 1 December 2026, 09:00 in Östersund: a working day, the office open.
MORNING = datetime(2026, 12, 1, 9, 0, tzinfo=STOCKHOLM)
IMAP_WAIT = 45.0  # a bounded wait for the IMAP round trip (IDLE push, reconnect), not for time
# A bound on noticing a closed connection, which takes milliseconds: well under the 30 s a
# command waits for its answer, the old way a dead connection showed itself.
NOTICED = 10.0
# The command timeout of the listeners the fault tests run: a dead connection noticed only by a
# command timing out would stall them for ten minutes, far past IMAP_WAIT.
PATIENT = 600.0


@pytest.fixture(autouse=True)
def _flushed(redis: Any) -> None:
    """Every test starts from an empty database (the `redis` fixture flushes it)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# pymap as its own command runs, but declaring less than it has: no IDLE (its dict backend's
# capabilities with idle=False; pymap's own disable_idle setting is accepted and ignored), a
# server to poll; or no MOVE (taken out of what it announces after login), a server whose
# processed messages are flagged.
PYMAP_DECLARING_LESS = """
import sys
from pymap.backend.dict import Config
from pymap.config import BackendCapability
if "{idle}" == "no":
    Config.backend_capability = property(
        lambda self: BackendCapability(idle=False, object_id=True, multi_append=True)
    )
if "{move}" == "no":
    announced = Config.login_capability.fget
    Config.login_capability = property(lambda self: [c for c in announced(self) if c != b"MOVE"])
from pymap.main import main
sys.argv[0] = "pymap"
sys.exit(main())
"""


def listening_on(process: subprocess.Popen[bytes], port: int, what: str) -> None:
    """Until the server process listens on `port` (up to 30 s: a process start, not time)."""
    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"{what} did not start")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), 0.1),
        ):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen")


def stopped(process: subprocess.Popen[bytes] | None) -> None:
    """Ask a server process to end, and make it end if it does not within 10 s."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Pymap:
    """A pymap server in a subprocess (in-memory dict backend: a restart empties it)."""

    def __init__(self, cert: Path, port: int, idle: bool = True, move: bool = True) -> None:
        self.cert = cert
        self.port = port
        self.idle = idle
        self.move = move
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        less = {"idle": "" if self.idle else "no", "move": "" if self.move else "no"}
        command = (
            [str(Path(sys.executable).with_name("pymap"))]
            if self.idle and self.move
            else [sys.executable, "-c", PYMAP_DECLARING_LESS.format(**less)]
        )
        self.process = subprocess.Popen(
            [
                *command,
                "--host", "127.0.0.1", "--port", str(self.port),
                "--cert", str(self.cert), "--key", str(self.cert),
                "dict", "--demo-user", USER, "--demo-password", PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        listening_on(self.process, self.port, "pymap")

    def stop(self) -> None:
        stopped(self.process)
        self.process = None


DOVECOT = shutil.which("dovecot") or next(
    (p for p in ("/usr/sbin/dovecot",) if Path(p).exists()), None
)


class Dovecot:
    """Debian's Dovecot as an instance of its own: configuration, maildir and sockets under
    `root`, STARTTLS with the test CA's certificate, the same user and password as pymap's.
    Unlike pymap's dict backend it keeps the mail on disk, so a restart keeps the mailbox."""

    def __init__(self, cert: Path, port: int, root: Path) -> None:
        self.cert = cert
        self.port = port  # IMAP, STARTTLS
        self.tls_port = free_port()  # IMAPS, TLS from the first byte
        self.root = root
        self.process: subprocess.Popen[bytes] | None = None

    def _configure(self) -> Path:
        conf = self.root / "dovecot.conf"
        if conf.exists():
            return conf
        # Dovecot refuses mail access as root: as root its mail runs as its own system user.
        me = pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        home = self.root / "home"
        home.mkdir()
        os.chown(home, me.pw_uid, me.pw_gid)
        # Dovecot's login and mail processes (another user) reach their sockets through it.
        os.chmod(self.root, 0o711)  # noqa: S103
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n", "utf-8")
        unprivileged = (
            ""
            if os.geteuid() == 0
            else f"default_internal_user = {me.pw_name}\ndefault_login_user = {me.pw_name}\n"
        )
        conf.write_text(
            f"""base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
instance_name = {self.root.name}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{self.cert}
ssl_key = <{self.cert}
auth_mechanisms = plain login
first_valid_uid = {me.pw_uid}
{unprivileged}passdb {{
  driver = passwd-file
  args = {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={me.pw_uid} gid={me.pw_gid} home={home}/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.tls_port}
  }}
}}
service anvil {{
  chroot =
}}
""",
            "utf-8",
        )
        return conf

    def start(self) -> None:
        assert DOVECOT is not None
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self._configure())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its master and every process it starts: one group
        )
        listening_on(self.process, self.port, "dovecot")

    def stop(self) -> None:
        """The whole server ends, as a restarted server's does: the master, and every login and
        mail process it started. (Once, in a full run, a listener idling on Dovecot was not told
        within 10 s of the master's exit; why was not found — a mail process outliving its
        master is the likely cause, and ending the whole group rules it out.)"""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            stopped(self.process)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None


ImapServer = Pymap | Dovecot
Served = TypeVar("Served", Pymap, Dovecot)


class Proxy:
    """A TCP relay between a listener and pymap that breaks connections the way networks do:
    `cut` closes both ends (the listener's side sees the connection go), `freeze` lets nothing
    through and closes nothing (a silent drop: a dead NAT entry, a pulled cable). New
    connections always pass."""

    def __init__(self, target: ImapServer) -> None:
        self.target = target
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.frozen: set[int] = set()  # indexes into links
        self.cut_next_write = False  # the next bytes a listener sends cut its link instead
        # For each new connection in turn: how many of the listener's writes (one command
        # each: it waits for the answer before the next) pass before the link is cut there.
        self.cut_new: list[int] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()

    def cut(self) -> None:
        """Every open connection closed at both ends, without a word."""
        for down, up in self.links:
            down.transport.abort()
            up.transport.abort()

    def freeze(self) -> None:
        """Every open connection silent from now on, in both directions, and left open."""
        self.frozen.update(range(len(self.links)))

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target.port)
        index = len(self.links)
        self.links.append((writer, up_writer))
        cut_at = self.cut_new.pop(0) if self.cut_new else None
        await asyncio.gather(
            self._pump(index, reader, up_writer, from_listener=True, cut_at=cut_at),
            self._pump(index, up_reader, writer, from_listener=False),
            return_exceptions=True,
        )
        writer.transport.abort()
        up_writer.transport.abort()

    async def _pump(
        self,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        from_listener: bool,
        cut_at: int | None = None,
    ) -> None:
        writes = 0
        while data := await reader.read(65536):
            if index in self.frozen:
                continue  # swallowed
            if from_listener and (self.cut_next_write or writes == cut_at):
                self.cut_next_write = False
                down, up = self.links[index]
                down.transport.abort()
                up.transport.abort()
                return
            writes += 1
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_pem, ca_pem = tmp_path / "imap.pem", tmp_path / "imap-ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    return server_pem, ca_pem


def _serving(server: Served) -> Iterator[Served]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap(request: pytest.FixtureRequest, tls: tuple[Path, Path]) -> Iterator[ImapServer]:
    """pymap, or with `ON_BOTH` each of pymap and Dovecot in turn."""
    if getattr(request, "param", "pymap") == "pymap":
        yield from _serving(Pymap(tls[0], free_port()))
        return
    with tempfile.TemporaryDirectory(prefix="ankomst-dovecot-") as root:
        yield from _serving(Dovecot(tls[0], free_port(), Path(root)))


# The acceptance tests run against both servers: pymap everywhere, Debian's Dovecot where it is
# installed (.ci/run installs dovecot-imapd).
WITH_DOVECOT = pytest.param(
    "dovecot",
    marks=pytest.mark.skipif(DOVECOT is None, reason="Debian's dovecot-imapd is not installed"),
)
ON_BOTH = pytest.mark.parametrize("imap", ["pymap", WITH_DOVECOT], indirect=True)
ON_DOVECOT = pytest.mark.parametrize("imap", [WITH_DOVECOT], indirect=True)


@pytest.fixture
def imap_without_idle(tls: tuple[Path, Path]) -> Iterator[Pymap]:
    yield from _serving(Pymap(tls[0], free_port(), idle=False))


@pytest.fixture
def imap_without_move(tls: tuple[Path, Path]) -> Iterator[Pymap]:
    yield from _serving(Pymap(tls[0], free_port(), move=False))


@pytest.fixture
async def proxy(imap: ImapServer) -> AsyncIterator[Proxy]:
    relay = Proxy(imap)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


def imap_url(server: ImapServer | Proxy) -> str:
    return f"imap://{USER}:{PASSWORD.replace('ö', '%C3%B6')}@127.0.0.1:{server.port}/INBOX"


def imaps_url(server: Dovecot) -> str:
    return f"imaps://{USER}:{PASSWORD.replace('ö', '%C3%B6')}@127.0.0.1:{server.tls_port}/INBOX"


def notice(name: str) -> bytes:
    return (CORPUS / f"{name}.eml").read_bytes()


def expected(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    return data


@contextlib.asynccontextmanager
async def world_with_mailbox(
    redis_url: str, tmp_path: Path, server: ImapServer | Proxy, ca: Path, **settings: Any
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


def listener_of(
    world: World, server: ImapServer, ca: Path, reception_unit: str = RECEPTION, **options: Any
) -> MailboxListener:
    """Another listener on the same mailbox and store (a second `serve` process's)."""
    config = MailboxConfig.from_url(
        imap_url(server), reception_unit=reception_unit, ca_file=ca, backoff_cap=1.0, **options
    )
    s = world.services
    return MailboxListener(config, s.drafts, s.redis, s.clock, s.settings.secret())


async def idling(listener: MailboxListener) -> bool:
    return listener.stats.waiting == "idle"


async def polling(listener: MailboxListener) -> bool:
    return listener.stats.waiting == "poll"


async def disconnected(listener: MailboxListener) -> bool:
    return not listener.stats.connected


async def until_counted(listener: MailboxListener, drafted: int) -> None:
    """Until the listener has counted its drafts (it counts once the message is put away)."""

    async def counted() -> bool:
        return listener.stats.drafted >= drafted

    await eventually(counted, IMAP_WAIT, f"{drafted} draft(s) counted by the listener")
    assert listener.stats.drafted == drafted


@contextlib.asynccontextmanager
async def listening(listener: MailboxListener) -> AsyncIterator[MailboxListener]:
    """The listener's loop on a task of its own, as `serve` runs it; stopped afterwards."""
    task = asyncio.create_task(listener.run())
    try:
        yield listener
    finally:
        await listener.stop()
        try:
            await asyncio.wait_for(task, IMAP_WAIT)
        finally:
            task.cancel()


def patient_listener(world: World, proxy: Proxy, ca: Path, **options: Any) -> MailboxListener:
    """A listener through the proxy whose commands wait PATIENT seconds for an answer."""
    config = MailboxConfig.from_url(
        imap_url(proxy),
        reception_unit=RECEPTION,
        ca_file=ca,
        backoff_cap=1.0,
        **{"timeout": PATIENT, **options},
    )
    s = world.services
    return MailboxListener(config, s.drafts, s.redis, s.clock, s.settings.secret())


async def append(world: World, server: ImapServer, ca: Path, *raws: bytes) -> None:
    client = await listener_of(world, server, ca).connect()
    try:
        for raw in raws:
            response = await client.append(raw, mailbox="INBOX")
            assert response.result == "OK"
    finally:
        await client.logout()


async def folder_count(world: World, server: ImapServer, ca: Path, folder: str) -> int:
    client = await listener_of(world, server, ca).connect()
    try:
        response = await client.select(f'"{folder}"')
        if response.result != "OK":
            return 0
        search = await client.uid_search("ALL", charset=None)
        return sum(len(bytes(line).split()) for line in search.lines[:-1])
    finally:
        await client.logout()


def done_folder(server: ImapServer) -> str:
    """Ankomst/Behandlat as the server spells it (Dovecot's Maildir++ levels are "."-separated)."""
    return in_hierarchy(DONE_FOLDER, "." if isinstance(server, Dovecot) else "/")


async def drafts(world: World) -> list[dict[str, str]]:
    return await world.services.drafts.of_unit(RECEPTION)


async def until_drafts(world: World, count: int) -> list[dict[str, str]]:
    async def there() -> bool:
        return len(await drafts(world)) >= count

    await eventually(there, IMAP_WAIT, f"{count} draft(s) from the mailbox")
    return await drafts(world)


def without_ref(fields: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k != "external_ref"}


@ON_BOTH
async def test_a_notice_in_the_mailbox_becomes_one_draft_and_the_unit_is_told(
    redis_url: str, tmp_path: Path, imap: ImapServer, tls: tuple[Path, Path]
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
        # Out of the inbox, into Ankomst/Behandlat (created by the listener), once counted.
        await until_counted(world.services.workers.mailbox, 1)
        assert await folder_count(world, imap, tls[1], "INBOX") == 0
        assert await folder_count(world, imap, tls[1], done_folder(imap)) == 1

        await world.drain()
        records = list((await all_deliveries(world.services.redis)).values())
        assert records and all(r.get("status") == "sent" for r in records), records
        [mail] = world.mails_to(RECEPTION_MAIL)
        assert str(mail["Subject"]).startswith("Ny avisering – granska och skicka")
        text = mail.get_body(preferencelist=("plain",)).get_content()  # type: ignore[attr-defined]
        assert f"/dashboard/ny?draft={draft['id']}" in text
        chat = [c.text or "" for c in world.telegram.sent_to(CHATS[RECEPTION])]
        assert any(f"/ny {draft['id']}" in t and "granska" in t for t in chat), chat


@ON_BOTH
async def test_the_same_notice_twice_is_one_draft(
    redis_url: str, tmp_path: Path, imap: ImapServer, tls: tuple[Path, Path]
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


@ON_BOTH
async def test_two_listeners_take_each_notice_once(
    redis_url: str, tmp_path: Path, imap: ImapServer, tls: tuple[Path, Path]
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


async def mailbox_counts(world: World, base: str) -> dict[str, float]:
    """A `serve` process's mailbox counter by outcome, from its /metrics."""
    async with world.http.get(f"{base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    found = re.findall(r'ankomst_mailbox_messages_total\{outcome="(\w+)"\} ([\d.e+]+)', text)
    return {outcome: float(value) for outcome, value in found}


async def test_two_serve_processes_take_each_notice_once(
    redis_url: str, tmp_path: Path, imap: ImapServer, proxy: Proxy, tls: tuple[Path, Path]
) -> None:
    # The world's service is one `serve`; a real `ankomst serve` subprocess is the other, on
    # the same store and mailbox. Both reach it through the proxy, which shows when the second
    # has connected (and gives both the same mailbox name, as one ANKOMST_IMAP_URL would).
    names = ["sv_plain", "en_plain", "sv_html", "sv_pdf", "sv_ocr", "en_forwarded", "en_html"]
    async with world_with_mailbox(redis_url, tmp_path, proxy, tls[1]) as world:
        ours = world.services.workers.mailbox
        assert ours is not None
        await eventually(lambda: idling(ours), IMAP_WAIT, "our listener to idle")
        assert len(proxy.links) == 1
        env = serve_env(
            redis_url,
            tmp_path / "second",
            world.smtp,
            None,
            imap_url=imap_url(proxy),
            imap_reception_unit=RECEPTION,
            imap_ca_file=tls[1],
            stream_trim_seconds=3600,  # as the world's: the events stay to be counted
        )
        second = ServeProcess(env, tmp_path / "second.log")
        await second.start()
        try:

            async def second_connected() -> bool:
                return len(proxy.links) == 2

            await eventually(second_connected, IMAP_WAIT, "the second process to connect")
            await append(world, imap, tls[1], *(notice(n) for n in names))
            await until_drafts(world, len(names))

            async def all_put_away() -> bool:
                return await folder_count(world, imap, tls[1], done_folder(imap)) == len(names)

            await eventually(all_put_away, IMAP_WAIT, "every notice put away")
            theirs = await mailbox_counts(world, second.base)
        finally:
            await second.stop()
        assert len(await drafts(world)) == len(names)
        assert await folder_count(world, imap, tls[1], "INBOX") == 0
        # Each message read once, by one process: none drafted twice, none seen as a duplicate.
        assert ours.stats.drafted + theirs.get("drafted", 0) == len(names), theirs
        assert ours.stats.duplicates + theirs.get("duplicate", 0) == 0, theirs
        assert ours.stats.failed + theirs.get("failed", 0) == 0, theirs
        # Each draft told once: no draft's notice event twice. (Counted as at most one each,
        # not as exactly seven entries: an event every group has finished may already have been
        # trimmed from the stream — in one full run on a loaded machine 6 of 7 were left.)
        events = await world.services.redis.xrange(keys.EVENTS)
        told = [f["case"] for _, f in events if f.get("topic") == str(Topic.NOTICE_DRAFT)]
        assert len(told) == len(set(told)) and 0 < len(told) <= len(names)


@ON_BOTH
async def test_the_server_restarted_mid_idle_loses_nothing(
    redis_url: str, tmp_path: Path, imap: ImapServer, tls: tuple[Path, Path]
) -> None:
    async with world_with_mailbox(redis_url, tmp_path, imap, tls[1]) as world:
        listener = world.services.workers.mailbox
        assert listener is not None
        await eventually(lambda: idling(listener), IMAP_WAIT, "the listener to idle")
        connects = listener.stats.connects
        # Stopped (pymap says BYE, then closes) while the service runs on: the listener sees
        # the connection go at once — long before a command timeout (30 s) would tell it.
        await asyncio.to_thread(imap.stop)
        await eventually(lambda: disconnected(listener), NOTICED, "the listener to notice")
        await asyncio.to_thread(imap.start)  # a new, empty server on the same port
        await append(world, imap, tls[1], notice("sv_ocr"))
        [draft] = await until_drafts(world, 1)
        assert listener.stats.connects > connects
        assert draft["arrival_date"] == "2026-12-09"


async def test_a_connection_cut_while_a_command_waits_is_noticed_at_once(
    redis_url: str, tmp_path: Path, imap: ImapServer, proxy: Proxy, tls: tuple[Path, Path]
) -> None:
    # The listener idles; a notice comes; the server tells it (EXISTS) and it ends the IDLE
    # (DONE) — and the connection is cut just then, the answer never comes. Noticed at once,
    # not after PATIENT seconds: it reconnects and takes the notice.
    async with running_world(redis_url, tmp_path, now=MORNING) as world:
        async with listening(patient_listener(world, proxy, tls[1])) as listener:
            await eventually(lambda: idling(listener), IMAP_WAIT, "the listener to idle")
            proxy.cut_next_write = True
            await append(world, imap, tls[1], notice("sv_plain"))
            [draft] = await until_drafts(world, 1)
            await until_counted(listener, 1)
            assert not proxy.cut_next_write  # the cut did happen, on the way to the DONE
            assert listener.stats.connects == 2
            assert draft["arrival_date"] == expected("sv_plain")["draft"]["arrival_date"]
        assert await folder_count(world, imap, tls[1], "INBOX") == 0


async def test_a_connection_cut_while_it_is_made_is_noticed_at_once(
    redis_url: str, tmp_path: Path, imap: ImapServer, proxy: Proxy, tls: tuple[Path, Path]
) -> None:
    # The first connection is cut as the listener asks for the greeting's CAPABILITY, the
    # second as it asks for STARTTLS: aioimaplib would wait PATIENT seconds for the first
    # answer and for ever for the second. The listener tries again by itself and gets in.
    async with running_world(redis_url, tmp_path, now=MORNING) as world:
        proxy.cut_new = [0, 1]
        async with listening(patient_listener(world, proxy, tls[1])) as listener:
            await eventually(lambda: idling(listener), IMAP_WAIT, "the listener to idle")
            assert proxy.cut_new == []
            assert len(proxy.links) == 3
            assert listener.stats.connects == 1  # the cut tries never got as far as LOGIN
            await append(world, imap, tls[1], notice("en_plain"))
            await until_drafts(world, 1)
            await until_counted(listener, 1)


async def test_a_connection_that_goes_silent_is_left_at_the_idle_renewal(
    redis_url: str, tmp_path: Path, imap: ImapServer, proxy: Proxy, tls: tuple[Path, Path]
) -> None:
    # No FIN, no RST, no answer: only asking tells. The IDLE renewal asks (DONE, answered within
    # `timeout`); unanswered, the listener connects anew and misses nothing.
    async with running_world(redis_url, tmp_path, now=MORNING) as world:
        listener = patient_listener(world, proxy, tls[1], idle_seconds=1.0, timeout=5.0)
        async with listening(listener):
            await eventually(lambda: idling(listener), IMAP_WAIT, "the listener to idle")
            proxy.freeze()
            await append(world, imap, tls[1], notice("sv_html"))
            await until_drafts(world, 1)
            await until_counted(listener, 1)
            assert listener.stats.connects >= 2


async def offers_idle(world: World, server: ImapServer, ca: Path) -> bool:
    client = await listener_of(world, server, ca).connect()
    try:
        return bool(client.has_capability("IDLE"))
    finally:
        await client.logout()


async def test_without_idle_the_service_polls_the_mailbox(
    redis_url: str, tmp_path: Path, imap_without_idle: Pymap, tls: tuple[Path, Path]
) -> None:
    server = imap_without_idle
    async with world_with_mailbox(
        redis_url, tmp_path, server, tls[1], imap_poll_seconds=0.5
    ) as world:
        assert not await offers_idle(world, server, tls[1])
        listener = world.services.workers.mailbox
        assert listener is not None
        await eventually(lambda: polling(listener), IMAP_WAIT, "the listener to wait a poll")
        await append(world, server, tls[1], notice("sv_plain"))
        await until_drafts(world, 1)
        await until_counted(listener, 1)
        assert listener.stats.connects == 1  # found by a later look, on the same connection


async def test_without_idle_a_cut_is_noticed_at_once_not_at_the_next_poll(
    redis_url: str, tmp_path: Path, imap_without_idle: Pymap, tls: tuple[Path, Path]
) -> None:
    # Polling only every PATIENT seconds: a notice appended now waits for the next look,
    # unless the connection drops — then the listener reconnects at once and takes it.
    server = imap_without_idle
    relay = Proxy(server)
    await relay.start()
    try:
        async with running_world(redis_url, tmp_path, now=MORNING) as world:
            listener = patient_listener(world, relay, tls[1], poll_seconds=PATIENT)
            async with listening(listener):
                await eventually(lambda: polling(listener), IMAP_WAIT, "the listener to wait")
                await append(world, server, tls[1], notice("en_html"))
                assert listener.stats.waiting == "poll"  # the next look is PATIENT s away
                relay.cut()
                await until_drafts(world, 1)
                await until_counted(listener, 1)
                assert listener.stats.connects == 2
    finally:
        await relay.stop()


@ON_BOTH
async def test_nothing_personal_in_redis_or_the_log(
    redis_url: str,
    tmp_path: Path,
    imap: ImapServer,
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
    redis_url: str, tmp_path: Path, imap: ImapServer, tls: tuple[Path, Path]
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
    redis_url: str, tmp_path: Path, imap: ImapServer, tls: tuple[Path, Path]
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
    redis_url: str, tmp_path: Path, imap: ImapServer, tls: tuple[Path, Path]
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


# -- drafts handled in chat, erased by retention, failing deliveries (no mailbox needed) -----


async def made_draft(world: World, **fields: Any) -> str:
    """A draft as the listener makes it from a notice that came now (Tuesday 09:00)."""
    draft = NoticeDraft(
        external_ref=fields.pop("external_ref", "mv-0123456789abcdef01234567"),
        **{
            "arrival_date": date(2026, 12, 15),
            "ages": (9, 4),
            "languages": ("ar",),
            "unaccompanied": False,
            "interpreter_needed": True,
            "people": 4,
            **fields,
        },
    )
    draft_id, created = await world.services.drafts.make(draft, RECEPTION, world.clock.now())
    assert created
    await world.drain()
    return draft_id


async def test_ny_with_a_draft_id_in_chat_is_prefilled_and_confirms_the_draft(
    redis_url: str, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, now=MORNING) as world:
        draft_id = await made_draft(world)
        chat_id = CHATS[RECEPTION]
        # The notice's chat message gives the hint; it starts the dialogue with all answered.
        say(world, chat_id, f"/ny {draft_id}")
        details = await chat_says(world, chat_id, "Övriga uppgifter")
        assert "Utkast från en avisering som kom tisdag 1 december 2026 kl. 09.00" in (
            details.text or ""
        )
        await press(world, chat_id, button(details, "Hoppa"))
        summary = await chat_says(world, chat_id, "Stämmer det här")
        text = summary.text or ""
        assert "15 december 2026" in text and "9 år, 4 år" in text and "arabiska" in text
        assert "Utkast från en avisering" in text
        await press(world, chat_id, button(summary, "Registrera"))
        await chat_says(world, chat_id, "Registrerat")
        s = world.services
        stored = await s.drafts.get(draft_id)
        assert stored["status"] == CONFIRMED
        case = await s.cases.store.get(stored["case"])
        assert await s.redis.hget(keys.case(case.id), NOTICE_RECEIVED_AT) == stored["received_at"]
        assert (await s.drafts.history(draft_id))[-1]["via"] == "telegram"
        # Confirmed in chat before the alert time: no alert comes.
        world.clock.set(MORNING.replace(hour=18))
        await world.tick()
        assert not any("Ej skickad" in str(m["Subject"]) for m in world.mails_to(RECEPTION_MAIL))
        # Handled drafts and unknown ids are answered in words, no dialogue starts.
        say(world, chat_id, f"/ny {draft_id}")
        await chat_says(world, chat_id, "redan bekräftad")
        say(world, chat_id, "/ny saknas")
        await chat_says(world, chat_id, "inget sådant utkast")


async def test_ny_with_an_unreadable_draft_asks_what_the_notice_did_not_say(
    redis_url: str, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, now=MORNING) as world:
        draft_id = await made_draft(
            world,
            arrival_date=None,
            ages=(),
            languages=(),
            unaccompanied=None,
            interpreter_needed=None,
            people=None,
            readable=False,
        )
        chat_id = CHATS[RECEPTION]
        say(world, chat_id, f"/ny {draft_id}")
        first = await chat_says(world, chat_id, "Vilket datum")
        assert "kunde inte läsas" in (first.text or "")
        say(world, chat_id, "15/12")
        await chat_says(world, chat_id, "Hur gamla")
        say(world, chat_id, "7")
        languages = await chat_says(world, chat_id, "Vilka språk")
        await press(world, chat_id, button(languages, "arabiska"))
        await press(world, chat_id, button(languages, "Klar"))
        await press(world, chat_id, button(await chat_says(world, chat_id, "Behövs tolk"), "Nej"))
        await press(world, chat_id, button(await chat_says(world, chat_id, "ensamkommande"), "Nej"))
        await press(world, chat_id, button(await chat_says(world, chat_id, "Övriga"), "Hoppa"))
        await press(
            world, chat_id, button(await chat_says(world, chat_id, "Stämmer"), "Registrera")
        )
        await chat_says(world, chat_id, "Registrerat")
        assert (await world.services.drafts.get(draft_id))["status"] == CONFIRMED


async def test_drafts_are_deleted_after_the_retention_time(redis_url: str, tmp_path: Path) -> None:
    async with running_world(redis_url, tmp_path, now=MORNING, retention_days=30) as world:
        s = world.services
        confirmed = await made_draft(world, external_ref="mv-aaaaaaaaaaaaaaaaaaaaaaaa")
        discarded = await made_draft(world, external_ref="mv-bbbbbbbbbbbbbbbbbbbbbbbb")
        waiting = await made_draft(world, external_ref="mv-cccccccccccccccccccccccc")
        actor = Actor(org_id=RECEPTION, via="dashboard", who="test")
        world.clock.set(MORNING + timedelta(days=10))
        draft = await s.drafts.get(confirmed)
        arrival = parse(
            ArrivalIn,
            {
                "external_ref": draft["external_ref"],
                "municipality": "ostersund",
                "arrival_date": "2026-12-15",
                "children": [{"age": 9}],
                "languages": ["ar"],
                "interpreter_needed": True,
                "unaccompanied": False,
            },
            today=world.clock.now().date(),
        )
        case, _ = await s.drafts.confirm(confirmed, arrival, actor)
        await s.drafts.discard(discarded, "Dubblett", actor)

        def stored(draft_id: str) -> list[str]:
            return [keys.notice_draft(draft_id), keys.notice_draft_history(draft_id)]

        async def left(draft_id: str) -> bool:
            in_index = draft_id in await s.redis.zrange(keys.NOTICE_DRAFT_RETENTION, 0, -1)
            return bool(await s.redis.exists(*stored(draft_id))) or in_index

        # 30 days after the notice: the draft nobody handled goes, the handled ones stay.
        world.clock.set(MORNING + timedelta(days=30, seconds=1))
        await s.retention.sweep()
        assert not await left(waiting)
        assert waiting not in await s.redis.zrange(keys.notice_drafts(RECEPTION), 0, -1)
        assert await left(confirmed) and await left(discarded)
        # 30 days after they were handled: they go too; the case keeps when the notice came.
        world.clock.set(MORNING + timedelta(days=40, seconds=1))
        await s.retention.sweep()
        assert not await left(confirmed) and not await left(discarded)
        assert [k async for k in s.redis.scan_iter("ankomst:draft:*")] == []
        assert await s.redis.hget(keys.case(case.id), NOTICE_RECEIVED_AT)
        assert s.retention.stats.drafts_erased == 3


async def test_a_draft_notice_that_cannot_be_delivered_is_reported_not_dead_lettered(
    redis_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_world(redis_url, tmp_path, now=MORNING) as world:
        world.smtp.reject_recipient(RECEPTION_MAIL, 550)
        draft_id = await made_draft(world)
        await world.drain()
        s = world.services
        assert await s.redis.xrange(keys.DEAD_LETTER) == []
        records = (await all_deliveries(s.redis)).values()
        mine = [r for r in records if r.get("case") == f"draft-{draft_id}"]
        by_topic = {(r["topic"].split("/")[0], r["channel"].split(":")[0]): r for r in mine}
        assert by_topic[("notice_draft", "email")]["status"] == "failed"
        # The failure is told on the unit's other channel, about the draft.
        report = by_topic[("delivery_failed", "tg")]
        assert report["status"] == "sent", report
        chat = [c.text or "" for c in world.telegram.sent_to(CHATS[RECEPTION])]
        assert any(f"utkast {draft_id[:8]}" in t and "levereras" in t for t in chat), chat
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
        # The dead-letter path too: a given-up draft delivery is failed and reported, no error.
        alarm = DeadLetterAlarm(s.redis, s.clock)
        tg = by_topic[("notice_draft", "tg")]
        await alarm.deliveries.update(tg["id"], status="queued")
        await alarm(keys.OUTBOX_TELEGRAM, {"delivery": tg["id"]}, "gave up")
        await world.drain()
        assert (await alarm.deliveries.raw(tg["id"]))["status"] == "failed"
        assert await s.redis.xrange(keys.DEAD_LETTER) == []
        # Only the alarm's own line; nothing looked the draft up as a case and failed.
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == [f"ALERT: delivery {tg['id']} given up after repeated errors: gave up"]


async def test_a_mailbox_named_in_the_directory_drafts_for_its_reception_unit(
    redis_url: str,
    tmp_path: Path,
    imap: ImapServer,
    tls: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Berg's reception unit names the mailbox in the directory; its password comes from the
    # environment. No ANKOMST_IMAP_URL at all.
    unit, password_env = "berg-mottagning", "ANKOMST_IMAP_PASSWORD_BERG"
    example = (Path(__file__).parents[2] / "deploy" / "directory.example.toml").read_text("utf-8")
    entry = f'id = "{unit}"\n'
    assert entry in example
    directory = tmp_path / "directory.toml"
    directory.write_text(
        example.replace(
            entry,
            entry + f'imap_url = "imap://{USER}@127.0.0.1:{imap.port}/INBOX"\n'
            f'imap_password_env = "{password_env}"\n',
            1,
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv(password_env, PASSWORD)
    async with running_world(
        redis_url, tmp_path, now=MORNING, directory=directory, imap_ca_file=str(tls[1])
    ) as world:
        [listener] = world.services.workers.mailboxes
        assert listener.config.reception_unit == unit
        assert "mailbox/berg-mottagning" in world.services.workers.liveness()
        await append(world, imap, tls[1], notice("sv_plain"))

        async def there() -> bool:
            return len(await world.services.drafts.of_unit(unit)) == 1

        await eventually(there, IMAP_WAIT, "a draft for Berg from its own mailbox")
        [draft] = await world.services.drafts.of_unit(unit)
        assert draft["reception_unit"] == unit
        assert draft["municipality"] == "berg"
        assert await drafts(world) == []  # not Östersund's
        assert await folder_count(world, imap, tls[1], "INBOX") == 0


# -- the mailbox left tidy: failed messages stay, deletion only when set, flags without MOVE --


async def inbox_flags(world: World, server: ImapServer, ca: Path) -> list[str]:
    """The flags of each message in INBOX, as the server lists them."""
    client = await listener_of(world, server, ca).connect()
    try:
        assert (await client.select("INBOX")).result == "OK"
        response = await client.uid("fetch", "1:*", "(FLAGS)")
        return [bytes(line).decode() for line in response.lines if b"FLAGS" in bytes(line)]
    finally:
        await client.logout()


async def test_a_message_that_cannot_be_drafted_stays_in_the_inbox_logged_and_counted(
    redis_url: str,
    tmp_path: Path,
    imap: ImapServer,
    tls: tuple[Path, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_world(redis_url, tmp_path, now=MORNING) as world:
        raw = notice("sv_plain")
        await append(world, imap, tls[1], raw)
        # Set up for a school, which is no reception unit: the draft cannot be made.
        wrong = listener_of(world, imap, tls[1], reception_unit="ostersund-skola")
        with caplog.at_level(logging.INFO):
            assert await wrong.run_once() == 1
        assert (wrong.stats.failed, wrong.stats.drafted) == (1, 0)
        assert await drafts(world) == []
        # Still in the inbox for a person to see; nothing moved, nothing marked done.
        assert await folder_count(world, imap, tls[1], "INBOX") == 1
        assert await folder_count(world, imap, tls[1], done_folder(imap)) == 0
        [line] = [
            r.getMessage() for r in caplog.records if "not made into a draft" in r.getMessage()
        ]
        assert re.search(r"uid \d+ not made into a draft \(Forbidden\)", line), line
        subject = re.search(rb"^Subject: (.*)$", raw, re.M)
        assert subject is not None
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert subject.group(1).decode().strip() not in logged

        # Nothing is lost: set up right, the next listener takes it.
        right = listener_of(world, imap, tls[1])
        assert await right.run_once() == 1
        assert right.stats.drafted == 1
        assert len(await drafts(world)) == 1
        assert await folder_count(world, imap, tls[1], "INBOX") == 0
        assert await folder_count(world, imap, tls[1], done_folder(imap)) == 1


async def test_a_processed_message_is_deleted_only_when_the_setting_says_so(
    redis_url: str, tmp_path: Path, imap: ImapServer, tls: tuple[Path, Path]
) -> None:
    async with running_world(redis_url, tmp_path, now=MORNING) as world:
        await append(world, imap, tls[1], notice("sv_plain"))
        deleting = listener_of(world, imap, tls[1], delete_processed=True)
        assert await deleting.run_once() == 1
        assert deleting.stats.drafted == 1
        assert await folder_count(world, imap, tls[1], "INBOX") == 0
        assert await folder_count(world, imap, tls[1], done_folder(imap)) == 0  # gone, not moved
        assert len(await drafts(world)) == 1


async def test_without_move_a_processed_message_is_flagged_and_not_taken_again(
    redis_url: str, tmp_path: Path, imap_without_move: Pymap, tls: tuple[Path, Path]
) -> None:
    server = imap_without_move
    async with running_world(redis_url, tmp_path, now=MORNING) as world:
        await append(world, server, tls[1], notice("sv_plain"), notice("en_html"))
        first = listener_of(world, server, tls[1])
        assert await first.run_once() == 2
        assert first.stats.drafted == 2
        # Left where it was, flagged as processed; no folder made.
        assert await folder_count(world, server, tls[1], "INBOX") == 2
        assert await folder_count(world, server, tls[1], done_folder(server)) == 0
        flags = await inbox_flags(world, server, tls[1])
        assert len(flags) == 2 and all("\\Seen" in f for f in flags), flags
        # The marks that they are done would lapse MAILBOX_DONE_TTL after they were taken
        # (shortened here to a second); each look at the folder renews them.
        redis = world.services.redis
        done = [k async for k in redis.scan_iter(keys.mailbox_done(first.config.key, "uid:*"))]
        assert len(done) == 2
        for key in done:
            await redis.pexpire(key, 1000)
        # Another listener (a restart, a second process) takes neither again.
        again = listener_of(world, server, tls[1])
        assert await again.run_once() == 0
        assert (again.stats.drafted, again.stats.duplicates, again.stats.failed) == (0, 0, 0)
        assert len(await drafts(world)) == 2
        for key in done:
            assert await redis.pttl(key) > (keys.MAILBOX_DONE_TTL - 60) * 1000


@ON_DOVECOT
async def test_imaps_with_a_private_ca(
    redis_url: str, tmp_path: Path, imap: ImapServer, tls: tuple[Path, Path]
) -> None:
    # TLS from the first byte (imaps://, port 993 in real life), the server's certificate from
    # the municipality's own CA, trusted through ANKOMST_IMAP_CA_FILE alone.
    assert isinstance(imap, Dovecot)
    async with running_world(
        redis_url,
        tmp_path,
        now=MORNING,
        imap_url=imaps_url(imap),
        imap_reception_unit=RECEPTION,
        imap_ca_file=str(tls[1]),
    ) as world:
        listener = world.services.workers.mailbox
        assert listener is not None and listener.config.implicit_tls
        await append(world, imap, tls[1], notice("sv_plain"))
        [draft] = await until_drafts(world, 1)
        assert draft["reception_unit"] == RECEPTION
        await until_counted(listener, 1)
        assert await folder_count(world, imap, tls[1], done_folder(imap)) == 1

        # Without the CA the server is not trusted: no connection, so nothing is taken.
        s = world.services
        config = MailboxConfig.from_url(imaps_url(imap), reception_unit=RECEPTION)
        untrusting = MailboxListener(config, s.drafts, s.redis, s.clock, s.settings.secret())
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusting.connect()
