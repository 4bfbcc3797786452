"""The watched mailbox: Migrationsverket's notices become drafts (bot/usecases/notices.py).

One loop per watched mailbox and `serve` process (aioimaplib; ANKOMST_IMAP_URL's and each one
a reception unit names in the directory, see bot/runtime/services.py `mailbox_configs`):
connect (`imaps://` TLS from the start, or `imap://` and STARTTLS — never a password in the
clear; a private CA from ANKOMST_IMAP_CA_FILE), log in, take every message in the folder, then
wait with IMAP IDLE for more (or poll, if the server has no IDLE), re-IDLE every few minutes; on
any failure reconnect by itself with backoff and jitter, and take again whatever is in the
folder — so a server restart loses nothing.

A dropped connection is noticed at once. aioimaplib itself never fails a command whose
connection is gone: the command waits for its timeout (30 s), and some (the IDLE's start,
STARTTLS, CAPABILITY) have none and would wait for ever. So every exchange with the server goes
through `_exchange`, which races it against the connection's loss (the protocol's
connection_lost, and an untagged BYE during IDLE) and bounds it with the timeout. A connection
that goes silent without closing (a dead NAT entry) is found by TCP keepalive and by the IDLE
renewal, whose DONE must be answered within the timeout.

Exactly once across processes: before reading a message a process claims it in Redis (SET NX
with a TTL) under its UIDVALIDITY+UID; after reading, also under its Message-ID (hashed). A
done-marker (with a TTL) for both is written once its draft is stored, before the claim is let
go; a message whose marker is there — looked for before claiming and again once the claim is
held — is not read again, only moved. The draft itself is idempotent too (its id is a keyed
hash of Migrationsverket's case number). After processing the message is moved to
`Ankomst/Behandlat` (created if missing; "/" stands for the server's hierarchy delimiter,
`Ankomst.Behandlat` on Dovecot's default layout), or flagged \\Seen if the server cannot move; it is
deleted only when ANKOMST_IMAP_DELETE_PROCESSED says so. A message that fails stays in the
folder, its failure counted and logged by UID and reason — never a subject, address or body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import aioimaplib

from bot.domain.clock import Clock
from bot.domain.notice import load_message, parse_notice
from bot.store import Redis, keys
from bot.store.faults import Backoff, Heartbeat
from bot.usecases.notices import NoticeDrafts

log = logging.getLogger(__name__)
# aioimaplib logs every protocol line at DEBUG: the messages themselves (names, identity
# numbers) and the LOGIN. Never let those through, whatever the service's log level.
logging.getLogger("aioimaplib").setLevel(logging.WARNING)

DONE_FOLDER: Final = "Ankomst/Behandlat"
DONE_FLAG: Final = "\\Seen"
DONE_TTL_MS: Final = keys.MAILBOX_DONE_TTL * 1000
MAX_MESSAGE_BYTES: Final = 25 * 1024 * 1024  # a notice bigger than this is left for a person
BEAT_SECONDS: Final = 30.0  # a waiting listener beats its heartbeat this often (liveness)
# TCP keepalive on the mailbox connection: a peer silent this long is probed, and after the
# probes go unanswered the connection counts as lost (about 90 s for a silent drop).
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_PROBES = 60, 10, 3

T = TypeVar("T")

Outcome = Literal["drafted", "duplicate", "failed"]


class MailboxSettingError(ValueError):
    """ANKOMST_IMAP_URL is not usable; the message names what (never the password)."""


@dataclass(frozen=True)
class MailboxConfig:
    """Where the mailbox is and how to reach it."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    folder: str = "INBOX"
    implicit_tls: bool = True
    ca_file: Path | None = None
    reception_unit: str = ""
    done_folder: str = DONE_FOLDER
    delete_processed: bool = False
    poll_seconds: float = 60.0  # without IDLE: how often the folder is looked at
    idle_seconds: float = 300.0  # IDLE is renewed this often (servers drop it at 30 min)
    timeout: float = 30.0  # for each exchange with the server (and the DONE of an IDLE)
    backoff_cap: float = 60.0
    from_directory: bool = False  # named by the directory file rather than ANKOMST_IMAP_URL

    @classmethod
    def from_url(cls, url: str, password: str | None = None, **options: object) -> MailboxConfig:
        """Read `imaps://user:password@host:993/INBOX` or `imap://…:143/INBOX` (STARTTLS).

        With `password` (a mailbox of the directory file) the URL carries none, and must not.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps"):
            raise MailboxSettingError("must start with imaps:// or imap:// (STARTTLS)")
        if not parts.hostname:
            raise MailboxSettingError("names no host")
        if password is not None:
            if parts.password is not None:
                raise MailboxSettingError("must not contain a password")
            if not parts.username:
                raise MailboxSettingError("must name a user (user@host)")
        elif not parts.username or parts.password is None:
            raise MailboxSettingError("must name a user and a password (user:password@host)")
        try:
            port = parts.port or (993 if parts.scheme == "imaps" else 143)
        except ValueError:
            raise MailboxSettingError("has a port that is not a number") from None
        folder = unquote(parts.path.lstrip("/")) or "INBOX"
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username),
            password=password if password is not None else unquote(parts.password or ""),
            folder=folder,
            implicit_tls=parts.scheme == "imaps",
            **options,  # type: ignore[arg-type]
        )

    @property
    def name(self) -> str:
        """The mailbox as logs and keys name it: no password, no user."""
        return f"{self.host}:{self.port}/{self.folder}"

    @property
    def key(self) -> str:
        """The mailbox as its Redis claims name it. Directory mailboxes may share a server and
        folder under different users, whose UIDs would collide: theirs add a hash of the user
        (ANKOMST_IMAP_URL's keeps its name, so its claims survive an upgrade)."""
        if not self.from_directory:
            return self.name
        return f"{self.name}#{hashlib.sha256(self.user.encode()).hexdigest()[:12]}"

    def tls_context(self) -> ssl.SSLContext:
        """Verified TLS: the system's CAs and, if given, the private CA file."""
        context = ssl.create_default_context()
        if self.ca_file is not None:
            context.load_verify_locations(cafile=str(self.ca_file))
        return context


@dataclass
class MailboxStats:
    """What this process's listener has done (read by /metrics and the tests)."""

    drafted: int = 0
    duplicates: int = 0
    failed: int = 0
    connects: int = 0
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    connected: bool = False
    # Waiting for new mail now: "idle" (in IDLE, for the server to tell), "poll" (for the next
    # look, the server having no IDLE), "" (not waiting: connecting, taking, backing off).
    waiting: Literal["", "idle", "poll"] = ""


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def in_hierarchy(name: str, delimiter: str | None) -> str:
    """A folder name written with "/" between its levels (`Ankomst/Behandlat`) as the server
    spells it: Dovecot's default Maildir++ layout, Courier and Cyrus separate levels with "."
    and refuse "/" in a name, so there it is `Ankomst.Behandlat`; a server without levels
    (delimiter NIL) gets one folder, `Ankomst-Behandlat`."""
    return name.replace("/", delimiter or "-")


# LIST's answer for the hierarchy delimiter: `(\Noselect) "." ""` or `(\Noselect) NIL ""`.
_DELIMITER = re.compile(rb'^\([^)]*\) (?:"((?:[^"\\]|\\.)+)"|NIL) ')
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE "([^"]+)"')


class MailboxListener:
    """Takes the notices of one mailbox into drafts of one reception unit."""

    def __init__(
        self,
        config: MailboxConfig,
        drafts: NoticeDrafts,
        redis: Redis,
        clock: Clock,
        secret: bytes,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.config = config
        self.drafts = drafts
        self.redis = redis
        self.clock = clock
        self.secret = secret
        self.on_outcome = on_outcome
        self.stats = MailboxStats()
        self.owner = secrets.token_hex(8)  # this process's claims
        self._stopping = asyncio.Event()
        self._client: aioimaplib.IMAP4 | None = None
        self._lost = asyncio.Event()
        self._done_folder: str | None = None  # as the server spells it, asked once per connection

    # -- connection ---------------------------------------------------------------------------

    async def connect(self) -> aioimaplib.IMAP4:
        """Connect, secure, log in and select the folder; returns the client."""
        c = self.config
        if c.implicit_tls:
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                host=c.host, port=c.port, timeout=c.timeout, ssl_context=c.tls_context()
            )
        else:
            client = aioimaplib.IMAP4(host=c.host, port=c.port, timeout=c.timeout)
        self._watch_loss(client)
        self._client = client
        self._done_folder = None
        try:
            await self._exchange(client.wait_hello_from_server(), "the greeting")
            _keep_alive(client.protocol.transport)
            if not c.implicit_tls:
                await self._starttls(client)
            response = await self._exchange(client.login(c.user, c.password), "LOGIN")
            if response.result != "OK":
                raise ConnectionError("the IMAP server refused the login")
            await self._exchange(client.protocol.capability(), "CAPABILITY")
        except BaseException:
            self._client = None
            _drop(client)
            raise
        self.stats.connects += 1
        self.stats.connected = True
        return client

    def _watch_loss(self, client: aioimaplib.IMAP4) -> None:
        """Know when the connection drops: aioimaplib only calls back, and leaves its commands
        waiting (see `_exchange`)."""
        lost = asyncio.Event()
        self._lost = lost
        client.protocol.conn_lost_cb = lambda _exc: lost.set()

    async def _exchange(
        self,
        step: Awaitable[T],
        what: str,
        *,
        within: float | None = None,
        unbounded: bool = False,
    ) -> T:
        """One exchange with the server, ended at once if the connection is lost (raising
        ConnectionError), and if no answer came `within` seconds (the config's timeout unless
        given) with TimeoutError; `unbounded` leaves the bound to aioimaplib (a FETCH, whose
        timeout restarts with each piece of data). Either way the connection is unusable
        afterwards: the caller drops it."""
        limit = None if unbounded else within if within is not None else self.config.timeout
        lost = self._lost
        task = asyncio.ensure_future(step)
        watch = asyncio.ensure_future(lost.wait())
        try:
            done, _ = await asyncio.wait(
                {task, watch}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            watch.cancel()
            if not task.done():
                task.cancel()
        if task in done:
            return task.result()
        if lost.is_set():
            raise ConnectionError(f"the connection was lost (waiting for {what})")
        raise TimeoutError(f"no answer to {what} within {limit:g} s")

    async def _starttls(self, client: aioimaplib.IMAP4) -> None:
        """STARTTLS by hand (aioimaplib has none): refuse a server that does not offer it."""
        protocol = client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ConnectionError("the IMAP server offers no STARTTLS; use imaps://")
        loop = asyncio.get_running_loop()
        response = await self._exchange(
            protocol.execute(aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=loop)),
            "STARTTLS",
        )
        if response.result != "OK":
            raise ConnectionError("the IMAP server refused STARTTLS")
        transport = await self._exchange(
            loop.start_tls(
                protocol.transport,
                protocol,
                self.config.tls_context(),
                server_hostname=self.config.host,
                ssl_handshake_timeout=self.config.timeout,
            ),
            "the TLS handshake",
        )
        if transport is None:
            raise ConnectionError("TLS could not be started")
        protocol.transport = transport
        await self._exchange(protocol.capability(), "CAPABILITY")

    async def _close(self) -> None:
        """Log out if the connection is whole and idle (briefly), then close it. A lost or
        broken one (a command left unanswered) is closed at once: a LOGOUT would wait behind
        that command for nothing."""
        client, self._client = self._client, None
        self.stats.connected = False
        self.stats.waiting = ""
        if client is None:
            return
        protocol = client.protocol
        clean = (
            not self._lost.is_set()
            and protocol.pending_sync_command is None
            and not protocol.pending_async_commands
            and protocol.state in (aioimaplib.NONAUTH, aioimaplib.AUTH, aioimaplib.SELECTED)
        )
        try:
            if clean:
                await self._exchange(
                    client.logout(), "LOGOUT", within=min(5.0, self.config.timeout)
                )
        except (TimeoutError, OSError, aioimaplib.Abort, aioimaplib.CommandTimeout):
            pass
        except Exception:  # a dying connection may fail in any way on the way out
            log.debug("mailbox %s: logout failed", self.config.name)
        finally:
            _drop(client)

    # -- one pass -----------------------------------------------------------------------------

    async def _select(self, client: aioimaplib.IMAP4) -> str:
        response = await self._exchange(client.select(_quote(self.config.folder)), "SELECT")
        if response.result != "OK":
            raise ConnectionError(f"the folder {self.config.folder!r} could not be selected")
        for line in response.lines:
            if isinstance(line, bytes | bytearray):
                match = _UIDVALIDITY.search(bytes(line))
                if match:
                    return match.group(1).decode()
        return "0"

    async def take_all(self, client: aioimaplib.IMAP4) -> int:
        """Take every message now in the folder; returns how many became (or were) drafts."""
        validity = await self._select(client)
        response = await self._exchange(client.uid_search("ALL", charset=None), "UID SEARCH")
        if response.result != "OK":
            raise ConnectionError("UID SEARCH failed")
        uids = [u for line in response.lines[:-1] for u in bytes(line).split() if u.isdigit()]
        taken = 0
        for uid in uids:
            if self._stopping.is_set():
                break
            outcome = await self.take(client, validity, uid.decode())
            if outcome is not None:
                taken += 1
        return taken

    async def take(self, client: aioimaplib.IMAP4, validity: str, uid: str) -> Outcome | None:
        """Take one message exactly once (see the module); None if another process has it."""
        mailbox = self.config.key  # claims; never logged
        by_uid = f"uid:{validity}:{uid}"
        # Done before: the mark is renewed (PEXPIRE answers whether it exists), so a message
        # left in the folder — flagged on a server without MOVE — stays done for as long as it
        # is there, not only for MAILBOX_DONE_TTL after it was taken.
        if await self.redis.pexpire(keys.mailbox_done(mailbox, by_uid), DONE_TTL_MS):
            await self._put_away(client, uid)  # a move that failed before: try again
            return None
        claim = keys.mailbox_claim(mailbox, by_uid)
        if not await self.redis.set(claim, self.owner, nx=True, ex=keys.MAILBOX_CLAIM_TTL):
            return None
        try:
            # Another process may have taken it whole between the look above and this claim
            # (it marks a message done before it lets the claim go): look again, holding it.
            if await self.redis.exists(keys.mailbox_done(mailbox, by_uid)):
                return None
            outcome = await self._process(client, by_uid, uid)
        finally:
            if await self.redis.get(claim) == self.owner:
                await self.redis.delete(claim)
        self._count(outcome)
        return outcome

    async def _process(self, client: aioimaplib.IMAP4, by_uid: str, uid: str) -> Outcome:
        mailbox = self.config.name  # for the log
        key = self.config.key  # for the claims
        try:
            response = await self._exchange(
                client.uid("fetch", uid, "(BODY.PEEK[] INTERNALDATE)"), "UID FETCH", unbounded=True
            )
            raw, arrived = _fetched(response)
        except (OSError, TimeoutError, aioimaplib.Abort, aioimaplib.CommandTimeout):
            raise  # the connection: the loop reconnects and the message is taken then
        except Exception as exc:  # a message that breaks the reader stays put
            log.warning(
                "mailbox %s: message uid %s not read (%s)", mailbox, uid, type(exc).__name__
            )
            return "failed"
        if raw is None:
            log.warning("mailbox %s: message uid %s had no body", mailbox, uid)
            return "failed"
        if len(raw) > MAX_MESSAGE_BYTES:
            log.warning("mailbox %s: message uid %s too big (%d bytes)", mailbox, uid, len(raw))
            return "failed"
        by_message = _message_token(raw)
        if by_message is not None:
            done_key = keys.mailbox_done(key, by_message)
            if not await self.redis.set(
                keys.mailbox_claim(key, by_message), self.owner, nx=True,
                ex=keys.MAILBOX_CLAIM_TTL,
            ) or await self.redis.exists(done_key):  # fmt: skip
                # The same message under another UID (a copy, or a new UIDVALIDITY after a
                # server restart): already made into a draft, or being made now.
                if await self.redis.exists(done_key):
                    await self._mark_done(by_uid, None)
                    await self._put_away(client, uid)
                return "duplicate"
        try:
            now = self.clock.now()
            received_at = arrived if arrived is not None and arrived <= now else now
            draft = parse_notice(raw, self.secret, received_at.date())
            draft_id, created = await self.drafts.make(
                draft, self.config.reception_unit, received_at
            )
        except Exception as exc:  # counted and logged; the message stays
            log.warning(
                "mailbox %s: message uid %s not made into a draft (%s)",
                mailbox, uid, type(exc).__name__,
            )  # fmt: skip
            return "failed"
        finally:
            if by_message is not None:
                await self.redis.delete(keys.mailbox_claim(key, by_message))
        await self._mark_done(by_uid, by_message)
        await self._put_away(client, uid)
        log.info(
            "mailbox %s: message uid %s → draft %s%s",
            mailbox, uid, draft_id, "" if created else " (already there)",
        )  # fmt: skip
        return "drafted" if created else "duplicate"

    async def _mark_done(self, by_uid: str, by_message: str | None) -> None:
        mailbox = self.config.key
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.mailbox_done(mailbox, by_uid), "1", px=DONE_TTL_MS)
            if by_message is not None:
                pipe.set(keys.mailbox_done(mailbox, by_message), "1", px=DONE_TTL_MS)
            await pipe.execute()

    async def _put_away(self, client: aioimaplib.IMAP4, uid: str) -> None:
        """Out of the watched folder: deleted if the setting says so, else moved to the done
        folder (created if missing), else flagged."""
        c = self.config
        if c.delete_processed:
            await self._exchange(client.uid("store", uid, "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
            await self._exchange(client.expunge(), "EXPUNGE")
            return
        if "MOVE" in client.protocol.capabilities:
            folder = _quote(await self._done_folder_on(client))
            moved = await self._exchange(client.uid("move", uid, folder), "MOVE")
            if moved.result != "OK":
                await self._exchange(client.create(folder), "CREATE")
                moved = await self._exchange(client.uid("move", uid, folder), "MOVE")
            if moved.result == "OK":
                return
        await self._exchange(client.uid("store", uid, "+FLAGS.SILENT", f"({DONE_FLAG})"), "STORE")

    async def _done_folder_on(self, client: aioimaplib.IMAP4) -> str:
        """The done folder in the server's hierarchy (`LIST "" ""` names its delimiter)."""
        if self._done_folder is None:
            response = await self._exchange(client.list('""', '""'), "LIST")
            delimiter: str | None = "/"  # what the setting is written with, if LIST says nothing
            for line in response.lines:
                match = (
                    _DELIMITER.match(bytes(line)) if isinstance(line, bytes | bytearray) else None
                )
                if match:
                    found = match.group(1)
                    delimiter = found.decode().replace("\\", "") if found is not None else None
                    break
            self._done_folder = in_hierarchy(self.config.done_folder, delimiter)
        return self._done_folder

    def _count(self, outcome: Outcome) -> None:
        if outcome == "drafted":
            self.stats.drafted += 1
        elif outcome == "duplicate":
            self.stats.duplicates += 1
        else:
            self.stats.failed += 1
        if self.on_outcome is not None:
            self.on_outcome(outcome)

    # -- the loop -----------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Connect, take everything in the folder, disconnect (for the tests: a second listener)."""
        client = await self.connect()
        try:
            return await self.take_all(client)
        finally:
            await self._close()

    async def _wait(self, client: aioimaplib.IMAP4) -> None:
        """Until the server says something changed, or the IDLE/poll period is over; raises
        ConnectionError (or TimeoutError) the moment the connection is found gone."""
        if not client.has_capability("IDLE"):
            self.stats.waiting = "poll"
            try:
                await self._until(self.config.poll_seconds, self._stopping, self._lost)
            finally:
                self.stats.waiting = ""
            if self._lost.is_set():
                raise ConnectionError("the server closed the connection")
            return
        idle = await self._exchange(client.idle_start(timeout=self.config.idle_seconds), "IDLE")
        self.stats.waiting = "idle"
        # Never reached: the renewal below comes first (the wait only must not be endless).
        push = asyncio.ensure_future(
            client.wait_server_push(self.config.idle_seconds + self.config.timeout)
        )
        try:
            await self._until(self.config.idle_seconds, self._stopping, self._lost, push, idle)
        finally:
            self.stats.waiting = ""
            if not push.done():
                push.cancel()
        if self._lost.is_set():
            idle.cancel()
            raise ConnectionError("the server closed the connection")
        if idle.done():
            idle.result()  # an IDLE that ended by itself: the connection is going
            raise ConnectionError("the server ended IDLE")
        told = (
            push.result()
            if push.done() and not push.cancelled() and push.exception() is None
            else []
        )
        if any(bytes(line).startswith(b"BYE") for line in told):
            # A server going down says BYE, then closes: do not wait for the close.
            idle.cancel()
            raise ConnectionError("the server said BYE")
        # New mail, the renewal, or stopping: end the IDLE. Its answer is the heartbeat of a
        # connection that may have gone silent without closing.
        client.idle_done()
        await self._exchange(idle, "DONE (the end of IDLE)")

    async def _until(self, seconds: float, *events: asyncio.Event | asyncio.Future[Any]) -> None:
        """Until one of `events` is set (or done) or `seconds` have passed, beating the
        heartbeat every BEAT_SECONDS meanwhile (a listener waiting in IDLE is alive)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        mine: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(e.wait()) for e in events if isinstance(e, asyncio.Event)
        ]
        waits = {*mine, *(e for e in events if isinstance(e, asyncio.Future))}
        try:
            while (left := end - loop.time()) > 0:
                done, _ = await asyncio.wait(
                    waits, timeout=min(left, BEAT_SECONDS), return_when=asyncio.FIRST_COMPLETED
                )
                self.stats.heartbeat.beat()
                if done:
                    return
        finally:
            for waiting in mine:
                waiting.cancel()

    async def run(self) -> None:
        """The worker: take, wait for more, take again; reconnect after any failure."""
        backoff = Backoff(base=0.5, cap=self.config.backoff_cap)
        self.stats.heartbeat.start()
        try:
            while not self._stopping.is_set():
                try:
                    client = await self.connect()
                    while not self._stopping.is_set():
                        self.stats.heartbeat.beat()
                        await self.take_all(client)
                        backoff.reset()  # a whole pass: the next failure starts afresh
                        await self._wait(client)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any failure: reconnect
                    delay = backoff.next()
                    log.warning(
                        "mailbox %s: %s; reconnecting in %.1f s",
                        self.config.name, _reason(exc), delay,
                    )  # fmt: skip
                    await self._close()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), delay)
                    self.stats.heartbeat.beat()
        finally:
            await self._close()
            self.stats.heartbeat.running = False

    async def stop(self) -> None:
        """End the loop (an IDLE in progress is left at once)."""
        self._stopping.set()


def _keep_alive(transport: asyncio.BaseTransport | None) -> None:
    """TCP keepalive on the connection's socket, so that a peer gone without a word (a host
    down, a NAT entry dropped) ends the connection instead of leaving it open for ever."""
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (
            ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
            ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
            ("TCP_KEEPCNT", KEEPALIVE_PROBES),
        ):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _drop(client: aioimaplib.IMAP4) -> None:
    """Close the connection and end whatever aioimaplib still has waiting on it."""
    transport = client.protocol.transport
    if transport is not None:
        transport.close()
    for task in [*client.tasks, *client.protocol.tasks]:
        task.cancel()


def _reason(exc: BaseException) -> str:
    """A failure for the log: its kind and, for connection errors, their own words (which name
    no message content)."""
    if isinstance(exc, OSError | ConnectionError | TimeoutError | aioimaplib.Abort):
        return f"{type(exc).__name__}: {exc}"[:200]
    return type(exc).__name__


def _fetched(response: aioimaplib.Response) -> tuple[bytes | None, datetime | None]:
    """The message bytes and INTERNALDATE of a UID FETCH (BODY.PEEK[] INTERNALDATE)."""
    if response.result != "OK":
        raise ValueError("FETCH failed")
    raw: bytes | None = None
    arrived: datetime | None = None
    for line in response.lines:
        if isinstance(line, bytearray) and raw is None:
            raw = bytes(line)
        elif isinstance(line, bytes):
            match = _INTERNALDATE.search(line)
            if match:
                try:
                    arrived = datetime.strptime(match.group(1).decode(), "%d-%b-%Y %H:%M:%S %z")
                except ValueError:
                    arrived = None
    return raw, arrived


def _message_token(raw: bytes) -> str | None:
    """The Message-ID as a claim token (hashed: it may carry a name)."""
    try:
        value = str(load_message(raw).get("Message-ID") or "").strip()
    except Exception:  # no readable header: the UID alone identifies it
        return None
    if not value:
        return None
    return "mid:" + hashlib.sha256(value.encode()).hexdigest()[:32]


__all__ = [
    "DONE_FOLDER",
    "MailboxConfig",
    "MailboxListener",
    "MailboxSettingError",
    "MailboxStats",
]
