"""The Telegram sender: keeps Telegram's limits across every process, retries what may pass.

Limits (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
about 30 messages/s per bot, 1/s per chat, 20/min per group. They are kept, not discovered:
Lua scripts in Redis decide, so all processes sharing Redis share one budget and one clock
(Redis `TIME`).

- Per bot, a sliding log (`keys.TELEGRAM_SENT`): a message may go when fewer than
  `GLOBAL_LIMIT` others are in flight or were answered within the last `GLOBAL_WINDOW_MS`.
  Counting from the *answer* is what makes this safe without a grid: Telegram stamped the
  earlier message before it answered, and stamps the new one after we send it, so their gap as
  Telegram sees it is longer than the gap we measured. Bursts of 30 are therefore allowed — the
  pace is the limit itself, not an even spread under it.
- Per chat, the next message starts `PRIVATE_SPACING_MS` / `GROUP_SPACING_MS` after the
  previous one *to that chat* was answered (`keys.telegram_chat_done`), and a reservation
  (`keys.telegram_chat_next`) gives each queued message its own future start, so a backlog for
  one chat takes far-off times without holding back anyone else.
- Per group, at most `GROUP_WINDOW_LIMIT` messages in any `GROUP_WINDOW_MS`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from aiogram import Bot
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
from aiogram.types import InlineKeyboardMarkup, LinkPreviewOptions

from bot.store import Redis, keys
from bot.store.scripts import register

log = logging.getLogger(__name__)

GLOBAL_LIMIT = 30  # messages per bot ...
GLOBAL_WINDOW_MS = 1005  # ... in any second (5 ms for the ms rounding of two TIME readings)
# An entry in flight counts as if answered this far ahead, until its answer sets the real time.
# Longer than any request can take (ANKOMST_TELEGRAM_TIMEOUT is at most 600 s), so a slow
# request is never forgotten; a process killed mid-send costs 1/30 of the budget for that long.
IN_FLIGHT_MS = 600_000
POLL_MS = 20  # when the budget is held by messages still in flight: look again this soon
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


class TelegramRateLimiter:
    """Decides when each message may go so that all processes sharing Redis keep the limits.

    A send is `reserve` (the chat's turn), then `take` until it says go (the chat's spacing
    since its last answer and the bot's budget), then `answered` once Telegram has replied.
    """

    def __init__(self, redis: Redis) -> None:
        self._reserve = register(redis, "redis_now", "telegram_reserve")
        self._take = register(redis, "redis_now", "telegram_take")
        self._answered = register(redis, "redis_now", "telegram_answered")
        self._push_back = register(redis, "redis_now", "telegram_push_back")

    async def reserve(self, chat_id: int, *, max_wait: float | None = None) -> Reservation:
        """Take the next start for a message to `chat_id`; reserve in order to keep order.

        With `max_wait`, a start further away than that is not taken (`taken` is False).
        """
        limit = -1 if max_wait is None else int(max_wait * 1000)
        wait_ms, at_ms, now_ms = await self._reserve(
            keys=[keys.telegram_chat_next(chat_id)], args=[chat_spacing_ms(chat_id), limit]
        )
        at, now = int(at_ms), int(now_ms)
        return Reservation(at_ms=at, wait_ms=at - now, taken=int(wait_ms) >= 0)

    async def take(self, chat_id: int, send_id: str) -> Turn:
        """Whether the message `send_id` to `chat_id` may go now (it is then counted as in
        flight) or how long until asking again makes sense, and who it waits for."""
        window_limit, window_ms = chat_window(chat_id)
        status, wait_ms = await self._take(
            keys=[
                keys.TELEGRAM_SENT,
                keys.telegram_chat_done(chat_id),
                keys.telegram_chat_window(chat_id),
            ],
            args=[
                send_id,
                chat_spacing_ms(chat_id),
                GLOBAL_LIMIT,
                GLOBAL_WINDOW_MS,
                IN_FLIGHT_MS,
                POLL_MS,
                window_limit,
                window_ms,
            ],
        )
        if int(status) == 1:
            return Turn(0.0, chat=False)
        return Turn(max(int(wait_ms), 1) / 1000, chat=int(status) == 2)

    async def answered(self, chat_id: int, send_id: str) -> None:
        """Telegram has replied to (or we gave up on) the message `send_id` to `chat_id`."""
        await self._answered(
            keys=[
                keys.TELEGRAM_SENT,
                keys.telegram_chat_done(chat_id),
                keys.telegram_chat_window(chat_id),
            ],
            args=[send_id],
        )

    async def push_back(self, chat_id: int, seconds: float) -> None:
        """Let nothing go to `chat_id` for `seconds` from now (Telegram's retry_after)."""
        await self._push_back(keys=[keys.telegram_chat_next(chat_id)], args=[int(seconds * 1000)])


@dataclass
class _Waiter:
    chat_id: int
    send_id: str
    seq: int
    turn: asyncio.Future[Turn] = field(repr=False)


class _Gate:
    """Hands the bot's budget to this process's waiting messages, busiest chat first.

    Under a backlog the order matters: a chat with many messages queued can take only one a
    second, so serving it late stretches the whole batch by its remaining chain, while a chat
    with one message can go any time. One task asks Redis on behalf of every waiter, so the
    choice is made here and not by whichever waiter happens to ask first.
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
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    async def turn(self, chat_id: int, send_id: str) -> Turn:
        """Wait until `send_id` may go (Turn(0)) or its chat must wait (Turn(wait, chat=True))."""
        self._seq += 1
        waiter = _Waiter(chat_id, send_id, self._seq, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return await waiter.turn

    def _next(self) -> _Waiter | None:
        self._waiters = [w for w in self._waiters if not w.turn.done()]
        if not self._waiters:
            return None
        return min(self._waiters, key=lambda w: (-self._queued.get(w.chat_id, 0), w.seq))

    async def _run(self) -> None:
        while (waiter := self._next()) is not None:
            try:
                turn = await self._limiter.take(waiter.chat_id, waiter.send_id)
            except Exception as e:  # the store is unreachable: the sender's caller decides
                if not waiter.turn.done():
                    waiter.turn.set_exception(e)
                continue
            if turn.wait == 0 or turn.chat:
                if waiter.turn.done():  # given up while we asked: free what was taken
                    if turn.wait == 0:
                        await self._limiter.answered(waiter.chat_id, waiter.send_id)
                else:
                    waiter.turn.set_result(turn)
            else:
                await self._sleep(turn.wait)  # the budget is spent for everyone


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
    """Sends HTML messages within Telegram's limits, retrying what may pass later."""

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

    def backoff(self, failures: int) -> float:
        """Capped exponential backoff with full jitter after `failures` transient failures."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return self._random.uniform(0, ceiling)

    async def send(
        self, chat_id: int, html: str, reply_markup: InlineKeyboardMarkup | None = None
    ) -> TelegramResult:
        """Send one message; never raises for Telegram's known failures (see the result)."""
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
        self, chat_id: int, html: str, reply_markup: InlineKeyboardMarkup | None
    ) -> TelegramResult:
        target = chat_id
        migrated_to: int | None = None
        attempts = failures = throttled = 0
        retry_after_total = 0.0

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
            slot = await self.limiter.reserve(target, max_wait=self.max_wait)
            if not slot.taken:
                return result(False, error=f"chat {target} is throttled for {slot.wait:.0f} s")
            if slot.wait > 0:
                await self._sleep(slot.wait)
            send_id = uuid.uuid4().hex
            while (turn := await self._gate.turn(target, send_id)).wait > 0:
                if turn.wait > self.max_wait:  # a group's minute is spent: retry later
                    return result(False, error=f"chat {target} is throttled for {turn.wait:.0f} s")
                await self._sleep(turn.wait)  # the chat's spacing, or a group's 20 a minute
            attempts += 1
            try:
                try:
                    message = await self.bot.send_message(
                        chat_id=target,
                        text=html,
                        parse_mode="HTML",
                        reply_markup=reply_markup,
                        link_preview_options=LinkPreviewOptions(is_disabled=True),
                    )
                finally:
                    # Also after an error or a timeout: the request may have reached Telegram.
                    await self.limiter.answered(target, send_id)
            # TelegramRetryAfter and TelegramMigrateToChat subclass TelegramAPIError, like every
            # other case here: each is caught by name, and nothing catches TelegramAPIError.
            except TelegramRetryAfter as e:
                throttled += 1
                retry_after_total += e.retry_after
                # Every process must hold back for this chat, not only this one.
                await self.limiter.push_back(target, e.retry_after)
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
                return result(True, message_id=message.message_id)


__all__ = [
    "GLOBAL_LIMIT",
    "GLOBAL_WINDOW_MS",
    "GROUP_SPACING_MS",
    "PRIVATE_SPACING_MS",
    "Reservation",
    "TelegramRateLimiter",
    "TelegramResult",
    "TelegramSender",
    "chat_spacing_ms",
    "chat_window",
]
