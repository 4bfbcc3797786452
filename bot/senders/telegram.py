"""The Telegram sender: keeps Telegram's limits across every process, retries what may pass.

Limits (https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this):
about 30 messages/s per bot, 1/s per chat, 20/min per group. They are kept, not discovered:
before each send a Lua script in Redis reserves a slot, so all processes sharing Redis share
one budget and one clock (Redis `TIME`).

- A global grid of slots `SLOT_MS` wide; at most one message per slot, and a message never
  goes before its slot starts, so any 1-second window holds at most ceil(1000 / 34) = 30.
  Taken slots live in the sorted set `keys.TELEGRAM_SLOTS` (score = slot number).
- Per chat, the earliest time of its next message in `keys.telegram_chat_next(chat_id)`:
  `PRIVATE_SPACING_MS` after the last one for users, `GROUP_SPACING_MS` for groups
  (chat_id < 0). A reservation takes the first free slot at or after max(now, chat next), so
  a backlog for one chat takes far-off slots without holding back anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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
from redis.asyncio import Redis

from bot import keys

log = logging.getLogger(__name__)

SLOT_MS = 35  # ≈ 28.6 messages/s for the whole bot: under 30/s with room for send jitter
PRIVATE_SPACING_MS = 1000  # 1 message/s per chat; safe because it is also counted from the answer
GROUP_SPACING_MS = 1000  # groups too get 1/s, within ...
GROUP_WINDOW_LIMIT = 20  # ... at most 20 messages in any ...
GROUP_WINDOW_MS = 60_500  # ... minute (half a second of room) — bursts allowed, not evenly spread

# KEYS: slots, chat next, chat window.  ARGV: slot ms, spacing ms, max wait ms (< 0: no limit),
# window limit (0: none), window ms.
# Returns {wait ms, slot start ms, now ms}; wait is -1 (and nothing is taken) when the slot
# would be more than max wait away.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local slot_ms = tonumber(ARGV[1])
local spacing = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local function int(x) return string.format('%.0f', x) end

local start = now
local chat_next = tonumber(redis.call('GET', KEYS[2]) or '0')
if chat_next > start then start = chat_next end

-- Groups: no more than `limit` messages in any window; the oldest of the last `limit` decides.
local limit = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. int(now - window))
  if redis.call('ZCARD', KEYS[3]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[3], -limit, -limit, 'WITHSCORES')
    local free = tonumber(oldest[2]) + window
    if free > start then start = free end
  end
end

-- Slots already begun are past: never send before a slot's start.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(math.ceil(now / slot_ms)))

local slot = math.ceil(start / slot_ms)
local batch = 256
while true do
  local taken = redis.call('ZRANGEBYSCORE', KEYS[1], int(slot), '+inf', 'LIMIT', 0, batch)
  local gap = false
  for _, member in ipairs(taken) do
    if tonumber(member) == slot then
      slot = slot + 1
    else
      gap = true
      break
    end
  end
  if gap or #taken < batch then break end
end

local at = slot * slot_ms
local wait = at - now
if max_wait >= 0 and wait > max_wait then
  return {-1, at, now}
end
redis.call('ZADD', KEYS[1], int(slot), int(slot))
local keep = wait + 60000
if redis.call('PTTL', KEYS[1]) < keep then redis.call('PEXPIRE', KEYS[1], int(keep)) end
local next_at = at + spacing
redis.call('SET', KEYS[2], int(next_at), 'PX', int(next_at - now + 1000))
if limit > 0 then
  redis.call('ZADD', KEYS[3], int(at), int(at))
  redis.call('PEXPIRE', KEYS[3], int(at - now + window + 1000))
end
return {wait, at, now}
"""

# KEYS: chat next.  ARGV: ms from now before the chat's next message may go.
_PUSH_BACK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if want > current then
  redis.call('SET', KEYS[1], string.format('%.0f', want), 'PX',
             string.format('%.0f', want - now + 1000))
  return want
end
return current
"""


# KEYS: chat done.  ARGV: spacing ms.  Returns ms to wait so that this message starts at least
# `spacing` after the previous one to the chat was answered (Telegram stamped it before that).
_GAP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
local wait = done + tonumber(ARGV[1]) - now
if wait < 0 then return 0 end
return wait
"""

# KEYS: chat done.  Marks "the last message to this chat was answered now" (Redis time).
_DONE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', now), 'PX', 120000)
return now
"""


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


class TelegramRateLimiter:
    """Hands out send slots that keep Telegram's limits across all processes sharing Redis."""

    def __init__(self, redis: Redis) -> None:
        self._reserve = redis.register_script(_RESERVE)
        self._push_back = redis.register_script(_PUSH_BACK)
        self._gap = redis.register_script(_GAP)
        self._done = redis.register_script(_DONE)

    async def reserve(self, chat_id: int, *, max_wait: float | None = None) -> Reservation:
        """Take the next slot for a message to `chat_id`; reserve in order to keep order.

        With `max_wait`, a slot further away than that is not taken (`taken` is False).
        """
        limit = -1 if max_wait is None else int(max_wait * 1000)
        window_limit, window_ms = chat_window(chat_id)
        wait_ms, at_ms, now_ms = await self._reserve(
            keys=[
                keys.TELEGRAM_SLOTS,
                keys.telegram_chat_next(chat_id),
                keys.telegram_chat_window(chat_id),
            ],
            args=[SLOT_MS, chat_spacing_ms(chat_id), limit, window_limit, window_ms],
        )
        at, now = int(at_ms), int(now_ms)
        return Reservation(at_ms=at, wait_ms=at - now, taken=int(wait_ms) >= 0)

    async def gap(self, chat_id: int) -> float:
        """Seconds to wait so this message starts a full spacing after the previous one to the
        chat was answered: the slot says when the previous one was due, not when it arrived."""
        wait_ms = await self._gap(
            keys=[keys.telegram_chat_done(chat_id)], args=[chat_spacing_ms(chat_id)]
        )
        return int(wait_ms) / 1000

    async def answered(self, chat_id: int) -> None:
        """The message just sent to `chat_id` has been answered."""
        await self._done(keys=[keys.telegram_chat_done(chat_id)])

    async def push_back(self, chat_id: int, seconds: float) -> None:
        """Let nothing go to `chat_id` for `seconds` from now (Telegram's retry_after)."""
        await self._push_back(keys=[keys.telegram_chat_next(chat_id)], args=[int(seconds * 1000)])


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
        # the last was answered, so send jitter cannot bunch two (and order is kept).
        self._chat_locks: dict[int, asyncio.Lock] = {}

    def backoff(self, failures: int) -> float:
        """Capped exponential backoff with full jitter after `failures` transient failures."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (failures - 1))
        return self._random.uniform(0, ceiling)

    async def send(
        self, chat_id: int, html: str, reply_markup: InlineKeyboardMarkup | None = None
    ) -> TelegramResult:
        """Send one message; never raises for Telegram's known failures (see the result)."""
        lock = self._chat_locks.setdefault(chat_id, asyncio.Lock())
        async with lock:
            return await self._send(chat_id, html, reply_markup)

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
            gap = await self.limiter.gap(target)
            if gap > 0:
                await self._sleep(gap)
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
                    await self.limiter.answered(target)
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
    "GROUP_SPACING_MS",
    "PRIVATE_SPACING_MS",
    "SLOT_MS",
    "Reservation",
    "TelegramRateLimiter",
    "TelegramResult",
    "TelegramSender",
    "chat_spacing_ms",
    "chat_window",
]
