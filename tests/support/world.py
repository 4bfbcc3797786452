"""The whole service on real parts: Redis, an SMTP sink, a Bot API server, HTTP on port 0."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock
from zoneinfo import ZoneInfo

import aiohttp

import bot.channels.telegram as telegram_channel
from bot.domain.clock import ManualClock
from bot.runtime.services import Services
from bot.runtime.settings import Settings
from handlers.main import Ankomst
from tests.support.smtp_sink import SmtpSink
from tests.support.telegram_api import FakeTelegramAPI, sessions_close_without_tls_wait

STOCKHOLM = ZoneInfo("Europe/Stockholm")
TOKEN = "123456:TEST-TOKEN"
EXAMPLE_DIRECTORY = Path(__file__).resolve().parents[2] / "deploy" / "directory.example.toml"

# Chats the tests link to Östersund's organisations with `/start CODE`.
# A chat's messages in the test world go this far apart (ms), not Telegram's 1000.
FAST_CHAT_SPACING_MS = 20

CHATS = {
    "ostersund-mottagning": 1001,
    "hc-lugnvik": 1002,
    "ostersund-skola": 1003,
    "ostersund-forskola": 1004,
    "ostersund-socialtjanst": 1005,
}


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Wait until `check()` holds (the pipeline runs on its own tasks); fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def started(service: Ankomst) -> Services:
    """Start `service` and, where it polls Telegram, wait until its polling has begun.

    aiogram logs "Start polling" when the polling task first runs, after the dispatcher's
    start-up handlers. A test that runs the command line in-process right after the start
    (`tests/support/cli.py`, which captures stderr while the command runs) caught that line in
    the command's output when the task ran late. The handler added here runs after the
    service's own and returns without waiting, so the line is written before this returns."""
    services = await service.start()
    dispatcher = service.dispatcher
    if dispatcher is None or service.settings.telegram_mode != "polling":
        return services
    begun = asyncio.Event()

    async def polling_begins() -> None:
        begun.set()

    dispatcher.startup.register(polling_begins)
    await asyncio.wait_for(begun.wait(), 30)
    return services


@dataclass
class World:
    """Handles on every part of a running service, for a test to drive and inspect."""

    services: Services
    service: Ankomst
    smtp: SmtpSink
    telegram: FakeTelegramAPI
    clock: ManualClock
    http: aiohttp.ClientSession
    config: Settings | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """The service's HTTP root."""
        return f"http://127.0.0.1:{self.service.port}"

    async def token(self, org_id: str, role: str = "member") -> str:
        """An API token for an organisation (made once per test)."""
        key = f"{org_id}/{role}"
        if key not in self.tokens:
            self.tokens[key] = await self.services.tokens.create(org_id, role)  # type: ignore[arg-type]
        return self.tokens[key]

    async def call(
        self, method: str, path: str, org_id: str | None = None, body: Any = None, **kw: Any
    ) -> tuple[int, Any]:
        """An API call as `org_id`; returns (status, parsed JSON or text)."""
        headers = dict(kw.pop("headers", {}))
        if org_id is not None:
            headers["Authorization"] = f"Bearer {await self.token(org_id)}"
        async with self.http.request(
            method, self.base + path, json=body, headers=headers, **kw
        ) as response:
            text = await response.text()
            if response.content_type.endswith("json") and text:
                import json

                return response.status, json.loads(text)
            return response.status, text

    async def register(self, body: dict[str, Any], org_id: str = "ostersund-mottagning") -> Any:
        """POST an arrival that must be accepted; returns the answer."""
        status, answer = await self.call("POST", "/api/v1/arrivals", org_id, body)
        assert status == 201, answer
        return answer

    async def case(self, case_id: str, org_id: str = "ostersund-mottagning") -> Any:
        """GET the case view."""
        status, answer = await self.call("GET", f"/api/v1/arrivals/{case_id}", org_id)
        assert status == 200, answer
        return answer

    async def settled(self, case_id: str, timeout: float = 10.0) -> Any:
        """Do the work there is (`drain`) until no delivery of the case is queued, sending or
        retrying; returns the case view then.

        Usually one drain settles it. Only a delivery that waits in real time (a transient
        failure retried once its claim has expired) makes it look again until `timeout`.
        """
        view: Any = None

        async def done() -> bool:
            nonlocal view
            await self.drain()
            view = await self.case(case_id)
            rows = [
                d for p in [view["reception_unit"], *view["recipients"]] for d in p["deliveries"]
            ]
            return bool(rows) and all(d["status"] in ("sent", "failed", "superseded") for d in rows)

        if not await done():
            await eventually(done, timeout, f"deliveries of {case_id}")
        return view

    async def drain(self, *, timers: bool = True) -> int:
        """Do now all the work there is, as a burst worker does; returns how many timers fired.

        Rounds of: every consumer group of the service takes what is pending or unread and
        handles it (`StreamConsumer.drain_once`), then, with `timers`, the timers due by the
        test's clock fire (`Scheduler.run_due`); until a round moves nothing. Deterministic and
        without waiting, whatever the service's own loops are doing meanwhile.

        Only an entry that waits in real time (a delivery retried once its claim has expired)
        can outlast the rounds; for that the streams are then watched until empty (10 s).
        """
        fired = await self._bursts(timers)
        if not await self._streams_empty():

            async def empty() -> bool:
                nonlocal fired
                fired += await self._bursts(timers)
                return await self._streams_empty()

            await eventually(empty, 10.0, "streams to drain")
        return fired

    async def _bursts(self, timers: bool) -> int:
        fired = 0
        for _round in range(1000):
            moved = 0
            for consumer in self.services.consumers:
                moved += await consumer.drain_once()
            if timers:
                now_fired = await self.services.scheduler.run_due()
                fired += now_fired
                moved += now_fired
            if not moved:
                return fired
        raise AssertionError("the service kept finding work for 1000 rounds")

    async def _streams_empty(self) -> bool:
        redis = self.services.redis
        for stream, group in (
            ("ankomst:events", "fanout"),
            ("ankomst:events", "deadlines"),
            ("ankomst:outbox:email", "senders"),
            ("ankomst:outbox:telegram", "senders"),
        ):
            if not await redis.exists(stream):
                continue
            for info in await redis.xinfo_groups(stream):
                if info["name"] == group and (info["pending"] or info.get("lag")):
                    return False
        return True

    async def tick(self) -> int:
        """One scheduler round at the clock's time, and all the work it caused; returns how
        many timers that round fired (timers it makes already due wait for the next tick)."""
        await self.drain(timers=False)  # timers come from events: let them be made first
        fired = await self.services.scheduler.run_due()
        await self.drain(timers=False)
        return fired

    async def restart(self, between: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stop the service and start a new one on the same Redis, clock and sinks."""
        assert self.config is not None
        await self.service.stop()
        if between is not None:
            await between()
        self.service = Ankomst(self.config, clock=self.clock)
        self.services = await started(self.service)

    async def link_chat(self, org_id: str, chat_id: int, role: str = "member") -> None:
        """Link a chat the way people do: an invite code, then `/start CODE` in the chat."""
        code = await self.services.chats.create_invite(org_id, role, 3600)  # type: ignore[arg-type]
        before = len(self.telegram.sent_to(chat_id))
        self.telegram.push_update(self.telegram.message_update(chat_id, f"/start {code}"))

        def replied() -> bool:
            return len(self.telegram.sent_to(chat_id)) > before

        await self.telegram.until(replied, 10.0, f"/start reply in chat {chat_id}")
        link = await self.services.chats.link_of(chat_id)
        assert link is not None and link.org_id == org_id

    def mails_to(self, address: str) -> list[Any]:
        """Mail the sink received for one address."""
        return self.smtp.to(address)


def arrival(**overrides: Any) -> dict[str, Any]:
    """A valid arrival for Östersund (a family with a 9- and a 4-year-old)."""
    body: dict[str, Any] = {
        "external_ref": "MIG-2026-123456",
        "municipality": "ostersund",
        "arrival_date": "2026-11-27",
        "children": [{"age": 9}, {"age": 4, "initials": "A.K."}],
        "languages": ["ar", "prs"],
        "interpreter_needed": True,
        "unaccompanied": False,
        "details": "Familj om fyra, bor på Storgatan 1 från ankomstdagen.",
        "recipients": None,
    }
    body.update(overrides)
    return body


@contextlib.asynccontextmanager
async def running_world(
    redis_url: str,
    data_dir: Path,
    *,
    now: datetime | None = None,
    link_chats: bool = True,
    chats: dict[str, int] | None = None,
    directory: Path = EXAMPLE_DIRECTORY,
    chat_spacing_ms: int | None = FAST_CHAT_SPACING_MS,
    **settings: Any,
) -> AsyncIterator[World]:
    """Start the service against real parts; stop everything afterwards.

    The scheduler loop looks only once an hour unless told otherwise, so a test decides when
    timers fire (`world.tick()`) after moving the clock; the streams are likewise trimmed only
    when a test sweeps (`services.retention.sweep()`) unless `stream_trim_seconds` says.

    Telegram's 1 message a second per chat is kept in real time (Redis's clock), so a chat
    told three things would make the test wait two seconds. The world spaces a chat's messages
    `chat_spacing_ms` apart instead; the limits themselves are tested with the real spacing
    (tests/e2e/test_telegram_sender.py, tests/fault/test_rate_limits.py, which passes None:
    the real spacing).
    """
    settings.setdefault("scheduler_poll_seconds", 3600)
    settings.setdefault("stream_trim_seconds", 3600)  # trimmed by the sweep a test calls
    clock = ManualClock(now or datetime(2026, 11, 25, 9, 0, tzinfo=STOCKHOLM))
    spacing = (
        mock.patch.multiple(
            telegram_channel,
            PRIVATE_SPACING_MS=chat_spacing_ms,
            GROUP_SPACING_MS=chat_spacing_ms,
        )
        if chat_spacing_ms is not None
        else contextlib.nullcontext()
    )
    # The service closes aiogram's session less aiogram's wait for TLS connections to close:
    # the world's Bot API is plain HTTP (tests/support/telegram_api.py).
    with spacing, sessions_close_without_tls_wait():
        async with _running_world(
            redis_url, data_dir, clock, link_chats, chats, directory, settings
        ) as world:
            yield world


@contextlib.asynccontextmanager
async def _running_world(
    redis_url: str,
    data_dir: Path,
    clock: ManualClock,
    link_chats: bool,
    chats: dict[str, int] | None,
    directory: Path,
    settings: dict[str, Any],
) -> AsyncIterator[World]:
    # The relay offers PIPELINING, as municipalities' relays (Postfix, Exchange) do.
    async with SmtpSink(pipelining=True) as smtp, FakeTelegramAPI() as telegram:
        config = Settings(
            _env_file=None,
            redis_url=redis_url,
            data_dir=data_dir,
            directory=directory,
            http_host="127.0.0.1",
            http_port=0,
            public_url="http://ankomst.example.se",
            secret_key="test-secret-key-for-signing",
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_from="Ankomst <ankomst@ostersund.example.se>",
            telegram_token=TOKEN,
            telegram_api_url=telegram.base_url,
            **settings,
        )
        service = Ankomst(config, clock=clock)
        services = await started(service)
        world: World | None = None
        try:
            async with aiohttp.ClientSession() as http:
                world = World(services, service, smtp, telegram, clock, http, config)
                if link_chats:
                    for org_id, chat_id in (CHATS if chats is None else chats).items():
                        await world.link_chat(org_id, chat_id)
                yield world
        finally:
            await (world.service if world is not None else service).stop()
