"""The Telegram sender: keeps Telegram's limits across every process, retries what may pass.

Limits (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
about 30 messages/s per bot, 1/s per chat, 20/min per group. They are kept, not discovered:
a Lua script in Redis decides (bot/store/lua/telegram_limiter.lua), so all processes sharing
Redis share one budget and one clock (Redis `TIME`). A process calls it once per round for all
of its messages under way (`_Gate`), not once per step of each message.

- Per bot, a sliding log (`keys.TELEGRAM_SENT`): a message may go when fewer than
  `GLOBAL_LIMIT` others are in flight or were answered within the last `GLOBAL_WINDOW_MS`.
  Counting from the *answer* is what makes this safe without a grid: Telegram stamped the
  earlier message before it answered, and stamps the new one after we send it, so their gap as
  Telegram sees it is longer than the gap we measured. Bursts of 30 are therefore allowed — the
  pace is the limit itself, not an even spread under it.
- Per chat, the next message starts `PRIVATE_SPACING_MS` / `GROUP_SPACING_MS` after the
  previous one *to that chat* was answered (`keys.telegram_chat_done`), and a reservation
  (`keys.telegram_chat_next`) gives each queued message its own future start, so a backlog for
  one chat takes far-off times without holding back anyone else. A message in flight to a
  chat (taken, not yet answered; from any process) holds the chat's next one until its answer,
  for at most `CHAT_HOLD_MS`.
- Per group, at most `GROUP_WINDOW_LIMIT` messages in any `GROUP_WINDOW_MS`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import SendMessage
from aiogram.types import InlineKeyboardMarkup, LinkPreviewOptions
from aiohttp import ClientError, ClientTimeout

from bot.store import Redis, keys
from bot.store.batching import Coalescer, LuaScript

log = logging.getLogger(__name__)

GLOBAL_LIMIT = 30  # messages per bot ...
GLOBAL_WINDOW_MS = 1005  # ... in any second (5 ms for the ms rounding of two TIME readings)
# An entry in flight counts as if answered this far ahead, until its answer sets the real time.
# Longer than any request can take (ANKOMST_TELEGRAM_TIMEOUT is at most 600 s), so a slow
# request is never forgotten; a process killed mid-send costs 1/30 of the budget for that long.
IN_FLIGHT_MS = 600_000
POLL_MS = 20  # when the budget is held by messages still in flight: look again this soon
# A message taken for a chat and not yet answered holds the chat's next one until its answer,
# from which the chat's spacing counts. One process sends one message at a time to a chat;
# this is for another process's message, which the chat's reservation alone let go as soon as
# its own start came (the as-deployed scale benchmark had some 10 answers 429 a run). For at
# most this long, which a request to Telegram takes only when something is wrong: a process
# killed mid-send holds its chats no longer (its deliveries are taken over after their claim,
# tests/fault/test_worker_killed.py), and a request slower than this is followed as before, so
# answered 429 at worst and the chat pushed back.
CHAT_HOLD_MS = 5_000
PRIVATE_SPACING_MS = 1000  # 1 message/s per chat; safe because it is counted from the answer
GROUP_SPACING_MS = 1000  # groups too get 1/s, within ...
GROUP_WINDOW_LIMIT = 20  # ... at most 20 messages in any ...
GROUP_WINDOW_MS = 60_005  # ... minute, counted from each answer like the bot's budget


def chat_spacing_ms(chat_id: int) -> int:
    """Least time between two messages to one chat."""
    return GROUP_SPACING_MS if chat_id < 0 else PRIVATE_SPACING_MS


def chat_window(chat_id: int) -> tuple[int, int]:
    """(messages, ms) a chat may receive in a sliding window: groups 20/min; users no limit."""
    return (GROUP_WINDOW_LIMIT, GROUP_WINDOW_MS) if chat_id < 0 else (0, GROUP_WINDOW_MS)


@dataclass(frozen=True)
class Reservation:
    """A send slot: when it starts (Redis time, epoch ms) and how long to wait for it (ms)."""

    at_ms: int
    wait_ms: int
    taken: bool = True  # False: the slot was further away than the caller would wait

    @property
    def wait(self) -> float:
        """Seconds to wait before sending."""
        return self.wait_ms / 1000


class Turn(NamedTuple):
    """The limiter's answer to "may this message go now?"."""

    wait: float  # 0: go now; else seconds before asking again
    chat: bool  # True: the chat's own spacing holds it; False: the bot's budget


# What a limiter step answers (the codes of bot/store/lua/telegram_limiter.lua).
GO = 1  # may go now (counted in flight); for an answer or a push back: recorded
BOT = 0  # the bot's budget is spent: ask again after the wait
CHAT = 2  # the chat's spacing, or a group's 20 a minute, holds it: ask again after the wait
LATER = 3  # reserved: the chat's turn starts after the wait (then take)
FAR = -1  # not reserved: the chat's next start is further away than the caller would wait


class Step(NamedTuple):
    """One step of a limiter call (see bot/store/lua/telegram_limiter.lua)."""

    op: str  # "a" answered, "p" push back, "r" reserve, "t" take, "rt" reserve then take
    chat_id: int
    member: str  # the message's id in the logs ("" for "p" and "r")
    ms: int  # "a": ms since the answer; "p": ms to hold the chat; "r"/"rt": max wait (-1: any)


_LIMITER = LuaScript.of("redis_now", "telegram_limiter")


class TelegramRateLimiter:
    """Decides when each message may go so that all processes sharing Redis keep the limits.

    A send is `reserve` (the chat's turn), then `take` until it says go (the chat's spacing
    since its last answer and the bot's budget), then `answered` once Telegram has replied.
    `run` does any number of these steps, for any chats, in one call (one round trip), in order.
    """

    def __init__(self, redis: Redis) -> None:
        # With the process's other commands of the same loop turn (`Coalescer`): a send's
        # turn and its answer are then no round trip of their own (issue 17).
        self._batch = Coalescer.of(redis)

    async def run(self, steps: Sequence[Step]) -> list[tuple[int, int, int]]:
        """Apply `steps` in order, atomically; per step (code, wait ms, at ms), Redis time."""
        # The limits are read at each call (bench/service_proc.py relaxes them in place).
        args: list[int | str] = [
            GLOBAL_LIMIT,
            GLOBAL_WINDOW_MS,
            IN_FLIGHT_MS,
            POLL_MS,
            CHAT_HOLD_MS,
        ]
        step_keys = [keys.TELEGRAM_SENT]
        for op, chat_id, member, ms in steps:
            window_limit, window_ms = chat_window(chat_id)
            args += (op, member, chat_spacing_ms(chat_id), ms, window_limit, window_ms)
            step_keys += (
                keys.telegram_chat_next(chat_id),
                keys.telegram_chat_done(chat_id),
                keys.telegram_chat_window(chat_id),
            )
        reply = await self._batch.script(_LIMITER, step_keys, args)
        return [
            (int(reply[i]), int(reply[i + 1]), int(reply[i + 2])) for i in range(1, len(reply), 3)
        ]

    async def reserve(self, chat_id: int, *, max_wait: float | None = None) -> Reservation:
        """Take the next start for a message to `chat_id`; reserve in order to keep order.

        With `max_wait`, a start further away than that is not taken (`taken` is False).
        """
        limit = -1 if max_wait is None else int(max_wait * 1000)
        [(code, wait_ms, at_ms)] = await self.run([Step("r", chat_id, "", limit)])
        return Reservation(at_ms=at_ms, wait_ms=wait_ms, taken=code != FAR)

    async def take(self, chat_id: int, send_id: str) -> Turn:
        """Whether the message `send_id` to `chat_id` may go now (it is then counted as in
        flight) or how long until asking again makes sense, and who it waits for."""
        [(code, wait_ms, _)] = await self.run([Step("t", chat_id, send_id, 0)])
        if code == GO:
            return Turn(0.0, chat=False)
        return Turn(max(wait_ms, 1) / 1000, chat=code == CHAT)

    async def answered(self, chat_id: int, send_id: str, *, ago: float = 0.0) -> None:
        """Telegram replied `ago` seconds ago to (or we gave up on) the message `send_id`."""
        await self.run([Step("a", chat_id, send_id, int(ago * 1000))])

    async def push_back(self, chat_id: int, seconds: float) -> None:
        """Let nothing go to `chat_id` for `seconds` from now (Telegram's retry_after)."""
        await self.run([Step("p", chat_id, "", int(seconds * 1000))])


@dataclass
class _Waiter:
    step: Step
    seq: int
    turn: asyncio.Future[tuple[int, int]] = field(repr=False)


@dataclass
class _Note:
    """An answer ("a", with the loop time it came) or a push back ("p", ms) to record."""

    op: str
    chat_id: int
    member: str
    value: float
    recorded: asyncio.Future[None] = field(repr=False)  # done once sent (or kept for later)

    def step(self, now: float) -> Step:
        # An answer's age is rounded down: it is recorded no earlier than it came.
        ms = int((now - self.value) * 1000) if self.op == "a" else int(self.value)
        return Step(self.op, self.chat_id, self.member, ms)

    def done(self) -> None:
        if not self.recorded.done():
            self.recorded.set_result(None)


class _Gate:
    """This process's one door to the limiter: every step of its sends, batched, in order.

    One task asks Redis on behalf of every message, in one call per round: the answers and
    push backs noted since the last call, then each waiting message's reserve or take. So a
    send costs at most one call when others are under way (two alone: its turn, its answer).

    Under a backlog the order matters: a chat with many messages queued can take only one a
    second, so serving it late stretches the whole batch by its remaining chain, while a chat
    with one message can go any time. The waiters are asked busiest chat first, so the choice
    is made here and not by whichever waiter happens to ask first.

    An answer is noted with the time it came and recorded with that time (less the time it
    waited for its round), so it counts as if recorded at once; and its round goes as soon as
    the previous one is back, also while the bot's budget is spent, so that other processes
    see it as soon as they would have.
    """

    def __init__(
        self,
        limiter: TelegramRateLimiter,
        queued: dict[int, int],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._limiter = limiter
        self._queued = queued  # messages per chat in this process, waiting or sending
        self._sleep = sleep
        self._waiters: list[_Waiter] = []
        self._notes: list[_Note] = []  # not yet recorded
        self._noted: asyncio.Future[None] | None = None  # set when a note comes during a hold
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    async def turn(self, chat_id: int, op: str, send_id: str, max_wait_ms: int) -> tuple[int, int]:
        """Reserve ("rt") or take ("t") a turn for `send_id`: (code, wait ms), never BOT."""
        self._seq += 1
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(Step(op, chat_id, send_id, max_wait_ms), self._seq, future))
        self._start()
        return await future

    async def answered(self, chat_id: int, send_id: str) -> None:
        """Telegram has replied to (or we gave up on) `send_id`; returns once recorded.

        Noted before the first await: a send cancelled here still has its answer recorded.
        If the store is unreachable, returns all the same; the answer goes with a later round.
        """
        await self._note("a", chat_id, send_id, asyncio.get_running_loop().time())

    async def push_back(self, chat_id: int, seconds: float) -> None:
        """Hold `chat_id` for `seconds` from now, in every process; returns once recorded."""
        await self._note("p", chat_id, "", seconds * 1000)

    def _note(self, op: str, chat_id: int, member: str, value: float) -> asyncio.Future[None]:
        recorded = asyncio.get_running_loop().create_future()
        self._notes.append(_Note(op, chat_id, member, value, recorded))
        if self._noted is not None and not self._noted.done():
            self._noted.set_result(None)
        self._start()
        return recorded

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        hold: asyncio.Future[None] | None = None  # the bot's budget is spent until it is done
        failed = False  # the last call failed: its notes wait for a round with a waiter
        try:
            while True:
                self._waiters = [w for w in self._waiters if not w.turn.done()]
                if hold is not None and hold.done():
                    hold = None
                notes = [] if failed else self._notes
                if not notes and not self._waiters:
                    return
                if not notes and hold is not None:
                    # Wait out the budget, but record a note that comes meanwhile at once.
                    self._noted = asyncio.get_running_loop().create_future()
                    await asyncio.wait((hold, self._noted), return_when=asyncio.FIRST_COMPLETED)
                    self._noted = None
                    continue
                asking: list[_Waiter] = []
                if hold is None:  # while it lasts, the waiters would only be told to wait
                    asking, self._waiters = self._waiters, []
                    asking.sort(key=lambda w: (-self._queued.get(w.step.chat_id, 0), w.seq))
                notes, self._notes = self._notes, []
                now = asyncio.get_running_loop().time()
                try:
                    results = await self._limiter.run(
                        [*(n.step(now) for n in notes), *(w.step for w in asking)]
                    )
                except Exception as e:  # the store is unreachable: the sender's caller decides
                    if notes:
                        log.warning(
                            "telegram limiter: %s; %d answers and push backs kept for later",
                            e,
                            len(notes),
                        )
                    failed = True
                    self._notes[:0] = notes
                    for n in notes:
                        n.done()  # the sends go on; their answers go with a later round
                    for w in asking:
                        if not w.turn.done():
                            w.turn.set_exception(e)
                    continue
                failed = False
                for n in notes:
                    n.done()
                bot_wait = 0
                for w, (code, wait_ms, _) in zip(asking, results[len(notes) :], strict=True):
                    if code == BOT:  # stays, and asks again when the budget frees
                        w.step = w.step._replace(op="t")  # its reserve, if any, is done
                        self._waiters.append(w)
                        bot_wait = wait_ms if not bot_wait else min(bot_wait, wait_ms)
                    elif w.turn.done():  # given up while we asked: free what was taken
                        if code == GO:
                            self._note("a", w.step.chat_id, w.step.member, now)
                    else:
                        w.turn.set_result((code, wait_ms))
                if bot_wait:
                    hold = asyncio.ensure_future(self._sleep(max(bot_wait, 1) / 1000))
        finally:
            if hold is not None:
                hold.cancel()


@dataclass(frozen=True)
class TelegramResult:
    """How one message fared."""

    ok: bool
    message_id: int | None
    chat_id: int  # the chat actually used (the new one after a migration)
    migrated_to: int | None  # set when the group became a supergroup; store the new id
    permanent: bool  # True: retrying will not help (blocked, chat gone, bad request)
    error: str | None
    attempts: int
    retry_after_total: float


class TelegramSender:
    """Sends HTML messages within Telegram's limits, retrying what may pass later.

    The `sendMessage` request is built and read here, plainly: one JSON body (`json.dumps` of a
    dict) posted with the Bot's own aiohttp session to the URL the Bot uses, and of the reply
    only `message_id` read — no pydantic request or `Message` model per send. Any other reply
    (an error, a throttle, a migration, a page that is not JSON) is read by aiogram's own
    `check_response`, so it raises aiogram's exceptions as `bot.send_message` would. A Bot whose
    session is not aiohttp's, or has request middlewares, is sent through `bot.send_message`.
    """

    def __init__(
        self,
        bot: Bot,
        redis: Redis,
        *,
        max_attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        max_throttled: int = 5,
        max_wait: float = 300.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`max_attempts` caps tries after server/network errors (backoff up to `max_delay`);
        `max_throttled` caps tries after 429s; no single wait for a slot or a retry_after may
        exceed `max_wait` — beyond it the send gives up for now (not permanently)."""
        self.bot = bot
        self.limiter = TelegramRateLimiter(redis)
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_throttled = max_throttled
        self.max_wait = max_wait
        self._sleep = sleep
        self._random = random.Random()
        # One message at a time per chat in this process: the next one is reserved only after
        # the last was answered, so order is kept.
        self._chat_locks: dict[int, asyncio.Lock] = {}
        self._queued: dict[int, int] = {}
        self._gate = _Gate(self.limiter, self._queued, sleep)
        # A message's id in the limiter's logs: unique across processes, short.
        self._ids = itertools.count()
        self._id_prefix = uuid.uuid4().hex[:12]
        self._timeout: tuple[float, ClientTimeout] | None = None

    def backoff(self, failures: int) -> float:
        """Capped exponential backoff with full jitter after `failures` transient failures."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return self._random.uniform(0, ceiling)

    async def send(
        self,
        chat_id: int,
        html: str,
        reply_markup: InlineKeyboardMarkup | Mapping[str, Any] | None = None,
    ) -> TelegramResult:
        """Send one message; never raises for Telegram's known failures (see the result).

        `reply_markup` is aiogram's model or the same as plain JSON data (a dict)."""
        lock = self._chat_locks.setdefault(chat_id, asyncio.Lock())
        self._queued[chat_id] = self._queued.get(chat_id, 0) + 1
        try:
            async with lock:
                return await self._send(chat_id, html, reply_markup)
        finally:
            self._queued[chat_id] -= 1
            if not self._queued[chat_id]:  # forget idle chats: thousands may pass in a year
                del self._queued[chat_id]
                del self._chat_locks[chat_id]

    async def _send(
        self,
        chat_id: int,
        html: str,
        reply_markup: InlineKeyboardMarkup | Mapping[str, Any] | None,
    ) -> TelegramResult:
        target = chat_id
        migrated_to: int | None = None
        attempts = failures = throttled = 0
        retry_after_total = 0.0
        max_wait_ms = int(self.max_wait * 1000)
        markup = _plain_markup(reply_markup)

        def result(
            ok: bool,
            *,
            message_id: int | None = None,
            permanent: bool = False,
            error: str | None = None,
        ) -> TelegramResult:
            return TelegramResult(
                ok=ok,
                message_id=message_id,
                chat_id=target,
                migrated_to=migrated_to,
                permanent=permanent,
                error=error,
                attempts=attempts,
                retry_after_total=retry_after_total,
            )

        while True:
            send_id = f"{self._id_prefix}{next(self._ids):x}"
            op = "rt"  # the chat's next start, and the turn at once if it has come
            while (turn := await self._gate.turn(target, op, send_id, max_wait_ms))[0] != GO:
                code, wait_ms = turn
                if code == FAR or wait_ms > max_wait_ms:  # e.g. a group's minute is spent
                    wait = wait_ms / 1000
                    return result(False, error=f"chat {target} is throttled for {wait:.0f} s")
                # A reserved start later on, the chat's spacing, or a group's 20 a minute.
                await self._sleep(max(wait_ms, 1) / 1000)
                op = "t"
            attempts += 1
            try:
                try:
                    message_id = await self._post(target, html, reply_markup, markup)
                finally:
                    # Also after an error or a timeout: the request may have reached Telegram.
                    await self._gate.answered(target, send_id)
            # TelegramRetryAfter and TelegramMigrateToChat subclass TelegramAPIError, like every
            # other case here: each is caught by name, and nothing catches TelegramAPIError.
            except TelegramRetryAfter as e:
                throttled += 1
                retry_after_total += e.retry_after
                # Every process must hold back for this chat, not only this one.
                await self._gate.push_back(target, e.retry_after)
                log.warning("telegram 429 for chat %s: retry after %s s", target, e.retry_after)
                if throttled >= self.max_throttled or e.retry_after > self.max_wait:
                    return result(False, error=f"throttled: {e.message}")
            except TelegramMigrateToChat as e:
                if migrated_to is not None:  # migrated twice in one send: something is off
                    return result(False, permanent=True, error=e.message)
                target = migrated_to = e.migrate_to_chat_id
                log.info("telegram chat %s became %s", chat_id, target)
            except (
                TelegramForbiddenError,  # blocked by the user, kicked from the group
                TelegramBadRequest,  # chat not found, malformed HTML, ...
                TelegramNotFound,
                TelegramUnauthorizedError,  # bad token: fall back to the other channel
                TelegramEntityTooLarge,
            ) as e:
                return result(False, permanent=True, error=e.message)
            except (
                TelegramServerError,
                TelegramNetworkError,  # includes aiogram's request timeout
                ClientDecodeError,  # e.g. a proxy's HTML 502 page
                TimeoutError,
            ) as e:
                failures += 1
                error = getattr(e, "message", None) or type(e).__name__
                if failures >= self.max_attempts:
                    return result(False, error=error)
                delay = self.backoff(failures)
                log.warning(
                    "telegram send to %s failed (%s); retry in %.1f s", target, error, delay
                )
                await self._sleep(delay)
            else:
                return result(True, message_id=message_id)

    async def _post(
        self,
        chat_id: int,
        html: str,
        reply_markup: InlineKeyboardMarkup | Mapping[str, Any] | None,
        markup: dict[str, Any] | None,
    ) -> int:
        """sendMessage: the new message's id, or aiogram's exception for what went wrong."""
        bot = self.bot
        session = bot.session
        if not isinstance(session, AiohttpSession) or len(session.middleware):
            message = await bot.send_message(**_method_fields(chat_id, html, reply_markup))
            return message.message_id
        body: dict[str, Any] = {
            "chat_id": chat_id,
            "text": html,
            "parse_mode": "HTML",
            "link_preview_options": _NO_LINK_PREVIEW,
        }
        if markup is not None:
            body["reply_markup"] = markup
        if bot.default.protect_content is not None:  # the one default sendMessage would add
            body["protect_content"] = bot.default.protect_content
        http = await session.create_session()
        try:
            async with http.post(
                session.api.api_url(token=bot.token, method="sendMessage"),
                data=json.dumps(body).encode(),
                headers=_JSON,
                timeout=self._client_timeout(session.timeout),
            ) as resp:
                status = resp.status
                message_id = _message_id(status, await resp.read())
                content = await resp.text() if message_id is None else ""
        # As aiogram's AiohttpSession.make_request words them.
        except TimeoutError as e:
            raise TelegramNetworkError(
                method=_method(chat_id, html, reply_markup), message="Request timeout error"
            ) from e
        except ClientError as e:
            raise TelegramNetworkError(
                method=_method(chat_id, html, reply_markup), message=f"{type(e).__name__}: {e}"
            ) from e
        if message_id is not None:
            return message_id
        # Not a plain success: aiogram reads it (and raises what bot.send_message would).
        response = session.check_response(
            bot=bot,
            method=_method(chat_id, html, reply_markup),
            status_code=status,
            content=content,
        )
        if response.result is None:  # a success without the message: not a reply we know
            raise ClientDecodeError("Failed to deserialize object", ValueError(content), content)
        return response.result.message_id

    def _client_timeout(self, seconds: float) -> ClientTimeout:
        if self._timeout is None or self._timeout[0] != seconds:
            self._timeout = (seconds, ClientTimeout(total=seconds))
        return self._timeout[1]


_JSON = {"Content-Type": "application/json"}
_NO_LINK_PREVIEW = {"is_disabled": True}


def _plain_markup(markup: InlineKeyboardMarkup | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The markup as the JSON the Bot API takes (what aiogram would send: no null fields)."""
    if markup is None:
        return None
    if isinstance(markup, InlineKeyboardMarkup):
        return markup.model_dump(mode="json", exclude_none=True)
    return dict(markup)


def _message_id(status: int, raw: bytes) -> int | None:
    """The sent message's id from a successful reply; None for anything else."""
    if status != 200:
        return None
    try:
        reply = json.loads(raw)
        message_id = reply["result"]["message_id"] if reply["ok"] is True else None
    except (ValueError, TypeError, KeyError):
        return None
    return message_id if type(message_id) is int else None


def _method_fields(
    chat_id: int, html: str, reply_markup: InlineKeyboardMarkup | Mapping[str, Any] | None
) -> dict[str, Any]:
    """`bot.send_message`'s arguments for this send (a Bot with its own kind of session)."""
    markup = (
        reply_markup
        if reply_markup is None or isinstance(reply_markup, InlineKeyboardMarkup)
        else InlineKeyboardMarkup.model_validate(reply_markup)
    )
    return {
        "chat_id": chat_id,
        "text": html,
        "parse_mode": "HTML",
        "reply_markup": markup,
        "link_preview_options": LinkPreviewOptions(is_disabled=True),
    }


def _method(
    chat_id: int, html: str, reply_markup: InlineKeyboardMarkup | Mapping[str, Any] | None
) -> SendMessage:
    """The aiogram request this send was, for aiogram's exceptions (built only for them, and
    not validated: what went wrong is the reply's story, not this one's)."""
    markup = (
        reply_markup
        if reply_markup is None or isinstance(reply_markup, InlineKeyboardMarkup)
        else InlineKeyboardMarkup.model_construct(**reply_markup)
    )
    return SendMessage.model_construct(
        chat_id=chat_id,
        text=html,
        parse_mode="HTML",
        reply_markup=markup,
        link_preview_options=LinkPreviewOptions(is_disabled=True),
    )


__all__ = [
    "BOT",
    "CHAT",
    "CHAT_HOLD_MS",
    "FAR",
    "GLOBAL_LIMIT",
    "GLOBAL_WINDOW_MS",
    "GO",
    "GROUP_SPACING_MS",
    "LATER",
    "PRIVATE_SPACING_MS",
    "Reservation",
    "Step",
    "TelegramRateLimiter",
    "TelegramResult",
    "TelegramSender",
    "chat_spacing_ms",
    "chat_window",
]
