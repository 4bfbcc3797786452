"""A local HTTP server that speaks the Telegram Bot API, for tests.

The real aiogram `Bot` is pointed at it (`AiohttpSession(api=TelegramAPIServer.from_base(url))`),
so tests exercise aiogram's own request building and response parsing. The server records every
call with its own monotonic timestamp, queues updates for `getUpdates`, injects faults per test
(429, 5xx, 403, 400, migrations, delays) and can enforce Telegram's send limits.

    async with FakeTelegramAPI() as api, api.bot() as bot:
        await bot.send_message(42, "<b>hej</b>")
        assert api.sent_to(42)[0].text == "<b>hej</b>"
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self
from unittest import mock

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.base import BaseSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web

DEFAULT_TOKEN = "123456:TEST"

# How aiogram's form encoding flattens values: these come back as JSON, ints or booleans.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "link_preview_options",
        "entities",
        "caption_entities",
        "reply_parameters",
        "commands",
        "scope",
        "allowed_updates",
    }
)
_INT_FIELDS = frozenset({"message_id", "offset", "limit", "timeout", "cache_time", "user_id"})
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
    }
)

_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


async def close_without_tls_wait(session: BaseSession) -> None:
    """aiogram's `AiohttpSession.close` without its wait of 250 ms for TLS connections to close.

    The fake Bot API is plain HTTP on 127.0.0.1: there is nothing to wait for, and every test
    world stops a Bot (250 ms each).
    """
    if not isinstance(session, AiohttpSession):
        await session.close()
        return
    client = session._session
    if client is not None and not client.closed:
        await client.close()


# The answer models kept by `keep_answer_types` (strong references: pydantic's are weak).
_KEPT_ANSWER_TYPES: list[type[Any]] = []


def keep_answer_types() -> None:
    """Build aiogram's answer model of every method this server answers, and keep it.

    aiogram reads each answer as `Response[the method's result type]`, a pydantic generic model
    that pydantic caches only weakly. Once the garbage collector has taken it, the next answer
    builds it again: ~100 ms of CPU for `Response[Message]` or `Response[list[Update]]`, twice
    or more in every test world. The test session keeps them (tests/conftest.py); nothing else
    calls this, so a bench measuring the service (which imports this module) is not changed.
    """
    if _KEPT_ANSWER_TYPES:
        return
    import aiogram.methods
    from aiogram.methods.base import Response

    answer_of: Any = Response  # subscripted with types known only at run time
    returning = {
        name.lower(): getattr(method, "__returning__", None)
        for name in aiogram.methods.__all__
        if isinstance(method := getattr(aiogram.methods, name), type)
    }
    for name in FakeTelegramAPI._methods:
        _KEPT_ANSWER_TYPES.append(answer_of[returning[name]])


def sessions_close_without_tls_wait() -> contextlib.AbstractContextManager[Any]:
    """While in it, every `AiohttpSession.close` is `close_without_tls_wait` (for a service
    that closes its own Bot's session)."""
    return mock.patch.object(AiohttpSession, "close", close_without_tls_wait)


@dataclass(frozen=True)
class Call:
    """One API call the server answered."""

    method: str
    params: dict[str, Any]
    at: float  # the server's clock (time.monotonic() unless given) when it answered
    status: int = 200
    token: str = DEFAULT_TOKEN

    @property
    def chat_id(self) -> int | str | None:
        """The call's chat_id parameter, if any."""
        value: int | str | None = self.params.get("chat_id")
        return value

    @property
    def text(self) -> str | None:
        """The call's text parameter, if any."""
        value: str | None = self.params.get("text")
        return value

    @property
    def ok(self) -> bool:
        """Whether the server answered with success."""
        return self.status == 200


@dataclass
class Fault:
    """A rule that makes matching calls fail (or wait) instead of succeeding."""

    method: str  # lower-case method name, or "*" for every method
    times: int | None  # None: every matching call, for good
    chat_id: int | None
    status: int | None  # None: only delay, then answer normally
    body: dict[str, Any] | str | None
    delay: float

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method not in ("*", method.lower()):
            return False
        return self.chat_id is None or params.get("chat_id") == self.chat_id


@dataclass(frozen=True)
class LimitViolation:
    """More messages inside one sliding window than Telegram allows."""

    rule: str  # "per_chat", "per_group" or "global"
    chat_id: int | None
    limit: int
    window: float
    count: int
    first_at: float
    last_at: float


@dataclass(frozen=True)
class _Limit:
    rule: str
    limit: int
    window: float


PER_CHAT = _Limit("per_chat", 1, 1.0)
PER_GROUP = _Limit("per_group", 20, 60.0)
GLOBAL = _Limit("global", 30, 1.0)


def _violations(
    times: list[float], limit: _Limit, chat_id: int | None, tolerance: float
) -> list[LimitViolation]:
    """Windows [t, t + window - tolerance) that hold more than `limit` of the sorted `times`."""
    times = sorted(times)
    window = limit.window - tolerance
    found = []
    for i in range(len(times) - limit.limit):
        j = i + limit.limit
        if times[j] - times[i] < window:
            end = j
            while end + 1 < len(times) and times[end + 1] - times[i] < window:
                end += 1
            found.append(
                LimitViolation(
                    rule=limit.rule,
                    chat_id=chat_id,
                    limit=limit.limit,
                    window=limit.window,
                    count=end - i + 1,
                    first_at=times[i],
                    last_at=times[end],
                )
            )
    return found


def _coerce(params: dict[str, Any]) -> dict[str, Any]:
    """Turn form-encoded strings back into the values aiogram meant."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, str):
            if key in _JSON_FIELDS:
                value = json.loads(value)
            elif key in _INT_FIELDS or (key.endswith("chat_id") and value.lstrip("-").isdigit()):
                value = int(value)
            elif key in _BOOL_FIELDS:
                value = value.lower() == "true"
        out[key] = value
    return out


class FakeTelegramAPI:
    """A Telegram Bot API server on 127.0.0.1 (an ephemeral port), recording what bots do."""

    def __init__(
        self,
        *,
        enforce_limits: bool = False,
        limit_tolerance: float = 0.0,
        long_poll_cap: float = 1.0,
        bot_username: str = "ankomst_test_bot",
        latency: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # The server's clock (seconds), for each call's time and the limits: real time, or a
        # test's own clock so that a burst is at one instant however slow the machine is.
        self.clock = clock
        # Seconds every request waits before it is handled: a network round trip to
        # api.telegram.org, simulated at the server (bench/pipeline.py's latency rows).
        self.latency = latency
        self.enforce_limits = enforce_limits
        self.limit_tolerance = limit_tolerance
        self.long_poll_cap = long_poll_cap
        self.bot_username = bot_username
        self.calls: list[Call] = []
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.webhook_url = ""
        # What the last setWebhook asked for besides the URL (the secret Telegram sends back).
        self.webhook_secret = ""
        self.webhook_allowed_updates: list[str] | None = None
        self._faults: list[Fault] = []
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._messages: dict[tuple[int | str, int], dict[str, Any]] = {}
        self._update_arrived = asyncio.Event()
        self._answered = asyncio.Event()  # set at every call answered (`until` waits on it)
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to 127.0.0.1 on a free port and start answering."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        # Cancel a handler whose client went away (e.g. after a provoked client timeout).
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}"

    async def close(self) -> None:
        """Stop the server, ending any pending long poll first."""
        self._closing = True
        self._update_arrived.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        """The server root, for `TelegramAPIServer.from_base`."""
        if self._base_url is None:
            raise RuntimeError("FakeTelegramAPI is not started")
        return self._base_url

    @property
    def api_server(self) -> TelegramAPIServer:
        """aiogram's description of this server."""
        return TelegramAPIServer.from_base(self.base_url)

    def make_bot(self, token: str = DEFAULT_TOKEN, *, timeout: float = 60.0) -> Bot:
        """A real aiogram Bot talking to this server; the caller closes `bot.session`."""
        session = AiohttpSession(api=self.api_server, timeout=timeout)
        return Bot(token, session=session, default=DefaultBotProperties(parse_mode="HTML"))

    @contextlib.asynccontextmanager
    async def bot(self, token: str = DEFAULT_TOKEN, *, timeout: float = 60.0) -> AsyncIterator[Bot]:
        """`make_bot`, closing the bot's session afterwards."""
        bot = self.make_bot(token, timeout=timeout)
        try:
            yield bot
        finally:
            await close_without_tls_wait(bot.session)

    # --- what bots did -----------------------------------------------------------------------

    @property
    def sent(self) -> list[Call]:
        """The sendMessage calls that succeeded (the messages Telegram would have delivered)."""
        return [c for c in self.calls if c.method == "sendMessage" and c.ok]

    def sent_to(self, chat_id: int) -> list[Call]:
        """The messages delivered to one chat, in order."""
        return [c for c in self.sent if c.chat_id == chat_id]

    def calls_to(self, method: str) -> list[Call]:
        """Every answered call of one method (successful or not)."""
        return [c for c in self.calls if c.method.lower() == method.lower()]

    async def until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until `check()` holds, looking again at every call this server answers (no
        polling interval); fail after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self._answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), remaining)

    def limit_violations(self, tolerance: float | None = None) -> list[LimitViolation]:
        """Check the delivered messages' server timestamps against Telegram's limits.

        1 message/s per chat, 20/min per group chat (chat_id < 0), 30/s overall, over sliding
        windows. `tolerance` shortens every window, allowing for scheduling jitter.
        """
        tol = self.limit_tolerance if tolerance is None else tolerance
        sent = self.sent
        found = _violations([c.at for c in sent], GLOBAL, None, tol)
        by_chat: dict[int | str | None, list[float]] = {}
        for c in sent:
            by_chat.setdefault(c.chat_id, []).append(c.at)
        for chat_id, times in by_chat.items():
            cid = chat_id if isinstance(chat_id, int) else None
            found += _violations(times, PER_CHAT, cid, tol)
            if cid is not None and cid < 0:
                found += _violations(times, PER_GROUP, cid, tol)
        return found

    # --- faults ------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        times: int | None = 1,
        chat_id: int | None = None,
        status: int | None = 500,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
        body: dict[str, Any] | str | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """Make the next `times` matching calls (None: all of them) fail.

        `method` is an API method name or "*"; `chat_id` narrows it to one chat. The answer is
        `body` as given (a str is sent raw, like a proxy's HTML error page), else Telegram's
        error JSON built from `status`, `description` and `parameters`. `delay` seconds pass
        first; with `status=None` the call then succeeds normally.
        """
        if body is None and status is not None:
            retry_after = (parameters or {}).get("retry_after", 1)
            text = description or _DESCRIPTIONS.get(status, "Error").format(retry_after=retry_after)
            body = {"ok": False, "error_code": status, "description": text}
            if parameters:
                body["parameters"] = parameters
        fault = Fault(method.lower(), times, chat_id, status, body, delay)
        self._faults.append(fault)
        return fault

    def throttle_next(
        self, method: str = "sendMessage", *, retry_after: int = 1, **kwargs: Any
    ) -> Fault:
        """429 Too Many Requests with `parameters.retry_after`."""
        return self.fail_next(method, status=429, parameters={"retry_after": retry_after}, **kwargs)

    def delay_next(self, method: str, seconds: float, **kwargs: Any) -> Fault:
        """Answer normally, but only after `seconds` (to provoke client timeouts)."""
        return self.fail_next(method, status=None, delay=seconds, **kwargs)

    def block_chat(self, chat_id: int) -> Fault:
        """From now on, every call for this chat gets 403 "bot was blocked by the user"."""
        return self.fail_next("*", times=None, chat_id=chat_id, status=403)

    def forget_chat(self, chat_id: int) -> Fault:
        """From now on, every call for this chat gets 400 "chat not found"."""
        return self.fail_next("*", times=None, chat_id=chat_id, status=400)

    def migrate_chat(self, chat_id: int, to_chat_id: int) -> Fault:
        """The group became a supergroup: calls for the old id get 400 with migrate_to_chat_id."""
        return self.fail_next(
            "*",
            times=None,
            chat_id=chat_id,
            status=400,
            description="Bad Request: group chat was upgraded to a supergroup chat",
            parameters={"migrate_to_chat_id": to_chat_id},
        )

    def clear_faults(self) -> None:
        """Drop every fault rule."""
        self._faults.clear()

    # --- updates -----------------------------------------------------------------------------

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (given an update_id if it has none)."""
        update.setdefault("update_id", next(self._update_ids))
        self._updates.append(update)
        self._update_arrived.set()
        return update

    @staticmethod
    def user(
        user_id: int, *, first_name: str = "Test", username: str | None = None
    ) -> dict[str, Any]:
        """A User object."""
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        user["language_code"] = "sv"
        return user

    @staticmethod
    def chat(chat_id: int | str, chat_type: str | None = None) -> dict[str, Any]:
        """A Chat object; the type follows from the id unless given."""
        if chat_type is None:
            if isinstance(chat_id, str) or chat_id > 0:
                chat_type = "private"
            elif chat_id <= -1_000_000_000_000:
                chat_type = "supergroup"
            else:
                chat_type = "group"
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = "Test"
        else:
            chat["title"] = f"Test {chat_type} {chat_id}"
        return chat

    def message_update(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        first_name: str = "Test",
        username: str | None = None,
    ) -> dict[str, Any]:
        """An Update with a text message from a user (not queued; see `push_update`).

        In a private chat the user is the chat; elsewhere `user_id` defaults to 1000.
        A leading /command gets its bot_command entity, as Telegram adds it.
        """
        if user_id is None:
            user_id = chat_id if chat_id > 0 else 1000
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": self.chat(chat_id, chat_type),
            "from": self.user(user_id, first_name=first_name, username=username),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return {"update_id": next(self._update_ids), "message": message}

    def callback_update(
        self,
        chat_id: int,
        data: str,
        *,
        message_id: int | None = None,
        user_id: int | None = None,
        chat_type: str | None = None,
    ) -> dict[str, Any]:
        """An Update with a button press on a bot message (not queued; see `push_update`).

        The message defaults to the last one the bot sent to the chat.
        """
        if user_id is None:
            user_id = chat_id if chat_id > 0 else 1000
        message = self._find_message(chat_id, message_id)
        if message is None:
            message = self._bot_message(chat_id, "…", message_id=message_id, chat_type=chat_type)
        callback = {
            "id": str(next(self._update_ids) * 7919),
            "from": self.user(user_id),
            "chat_instance": str(abs(chat_id) * 31 + 7),
            "message": message,
            "data": data,
        }
        return {"update_id": next(self._update_ids), "callback_query": callback}

    # --- the Bot API -------------------------------------------------------------------------

    def bot_user(self, token: str = DEFAULT_TOKEN) -> dict[str, Any]:
        """The bot's own User object (its id is the token's prefix, as on Telegram)."""
        prefix = token.split(":", 1)[0]
        return {
            "id": int(prefix) if prefix.isdigit() else 1,
            "is_bot": True,
            "first_name": "Ankomst",
            "username": self.bot_username,
        }

    def _bot_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        message_id: int | None = None,
        chat_type: str | None = None,
        token: str = DEFAULT_TOKEN,
        reply_markup: Any = None,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": message_id if message_id is not None else next(self._message_ids),
            "date": int(time.time()),
            "chat": self.chat(chat_id, chat_type),
            "from": self.bot_user(token),
            "text": text,
        }
        if reply_markup:
            message["reply_markup"] = reply_markup
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _find_message(self, chat_id: int | str, message_id: int | None) -> dict[str, Any] | None:
        if message_id is not None:
            return self._messages.get((chat_id, message_id))
        ours = [m for (cid, _), m in self._messages.items() if cid == chat_id]
        return ours[-1] if ours else None

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                for key, value in (await request.post()).items():
                    # A file part is kept as its FileField; the rest are strings.
                    params[key] = value
        return _coerce(params)

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        method = request.match_info["method"]
        params = await self._params(request)
        if self.latency:
            await asyncio.sleep(self.latency)

        fault = next((f for f in self._faults if f.matches(method, params)), None)
        if fault is not None:
            if fault.times is not None:
                fault.times -= 1
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.status is not None:
                return self._answer(method, params, token, fault.status, fault.body)

        handler = self._methods.get(method.lower())
        if handler is None:
            return self._error(method, params, token, 404, "Not Found")
        if (
            method.lower() == "sendmessage"
            and self.enforce_limits
            and (retry_after := self._would_exceed(params.get("chat_id"))) is not None
        ):
            return self._error(
                method,
                params,
                token,
                429,
                f"Too Many Requests: retry after {retry_after}",
                {"retry_after": retry_after},
            )
        result = await handler(self, params, token)
        return self._answer(method, params, token, 200, {"ok": True, "result": result})

    def _answer(
        self,
        method: str,
        params: dict[str, Any],
        token: str,
        status: int,
        body: dict[str, Any] | str | None,
    ) -> web.Response:
        self.calls.append(Call(method, params, self.clock(), status, token))
        self._answered.set()
        if isinstance(body, str):
            return web.Response(status=status, text=body, content_type="text/html")
        return web.json_response(body, status=status)

    def _error(
        self,
        method: str,
        params: dict[str, Any],
        token: str,
        status: int,
        description: str,
        parameters: dict[str, Any] | None = None,
    ) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return self._answer(method, params, token, status, body)

    def _would_exceed(self, chat_id: int | str | None) -> int | None:
        """The retry_after to answer if one more message now would break a limit."""
        now = self.clock()
        tol = self.limit_tolerance
        sent = self.sent

        def count(limit: _Limit, times: list[float]) -> int:
            return sum(1 for t in times if now - t < limit.window - tol)

        if count(GLOBAL, [c.at for c in sent]) >= GLOBAL.limit:
            return 1
        to_chat = [c.at for c in sent if c.chat_id == chat_id]
        if count(PER_CHAT, to_chat) >= PER_CHAT.limit:
            return 1
        if isinstance(chat_id, int) and chat_id < 0 and count(PER_GROUP, to_chat) >= 20:
            return 1
        return None

    # Each method takes (params, token) and returns the `result` object.

    async def _get_me(self, params: dict[str, Any], token: str) -> Any:
        return self.bot_user(token) | {
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _send_message(self, params: dict[str, Any], token: str) -> Any:
        return self._bot_message(
            params["chat_id"],
            params["text"],
            token=token,
            reply_markup=params.get("reply_markup"),
        )

    async def _edit_message(self, params: dict[str, Any], token: str) -> Any:
        if "inline_message_id" in params:
            return True
        chat_id, message_id = params["chat_id"], params["message_id"]
        message = self._find_message(chat_id, message_id) or self._bot_message(
            chat_id, "…", message_id=message_id, token=token
        )
        if "text" in params:
            message["text"] = params["text"]
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        else:
            message.pop("reply_markup", None)
        message["edit_date"] = int(time.time())
        return message

    async def _true(self, params: dict[str, Any], token: str) -> Any:
        return True

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> str:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps([scope, params.get("language_code", "")], sort_keys=True)

    async def _set_my_commands(self, params: dict[str, Any], token: str) -> Any:
        self.commands[self._commands_key(params)] = params["commands"]
        return True

    async def _delete_my_commands(self, params: dict[str, Any], token: str) -> Any:
        self.commands.pop(self._commands_key(params), None)
        return True

    async def _get_my_commands(self, params: dict[str, Any], token: str) -> Any:
        return self.commands.get(self._commands_key(params), [])

    async def _set_webhook(self, params: dict[str, Any], token: str) -> Any:
        self.webhook_url = str(params.get("url", ""))
        self.webhook_secret = str(params.get("secret_token", ""))
        allowed = params.get("allowed_updates")
        self.webhook_allowed_updates = list(allowed) if allowed is not None else None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _delete_webhook(self, params: dict[str, Any], token: str) -> Any:
        self.webhook_url = ""
        self.webhook_secret = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: dict[str, Any], token: str) -> Any:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _get_updates(self, params: dict[str, Any], token: str) -> Any:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = min(float(params.get("timeout") or 0), self.long_poll_cap)
        if offset > 0:
            # Asking from an offset confirms every earlier update, as on Telegram.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = asyncio.get_running_loop().time() + timeout

        def pending() -> list[dict[str, Any]]:
            if offset < 0:
                return self._updates[offset:][:limit]
            return [u for u in self._updates if u["update_id"] >= offset][:limit]

        while not (found := pending()) and not self._closing:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            self._update_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._update_arrived.wait(), remaining)
        return found

    _methods: ClassVar[
        dict[str, Callable[[FakeTelegramAPI, dict[str, Any], str], Awaitable[Any]]]
    ] = {
        "getme": _get_me,
        "sendmessage": _send_message,
        "editmessagetext": _edit_message,
        "editmessagereplymarkup": _edit_message,
        "answercallbackquery": _true,
        "setmycommands": _set_my_commands,
        "deletemycommands": _delete_my_commands,
        "getmycommands": _get_my_commands,
        "setwebhook": _set_webhook,
        "deletewebhook": _delete_webhook,
        "getwebhookinfo": _get_webhook_info,
        "getupdates": _get_updates,
        "close": _true,
        "logout": _true,
        "sendchataction": _true,
    }


__all__ = [
    "DEFAULT_TOKEN",
    "Call",
    "FakeTelegramAPI",
    "Fault",
    "LimitViolation",
    "close_without_tls_wait",
    "keep_answer_types",
    "sessions_close_without_tls_wait",
]
