"""Telegram: TelegramSender against the local Bot API server enforcing the limits, and PTB's
AIORateLimiter on the same load.

The load: arrivals each notifying 4 distinct chats out of a fixed mix of group chats (negative
ids, 20/min) and private chats (1/s), all sent at once through 64 concurrent senders (the
service's Telegram consumer concurrency). The server's limits: 30/s overall, 1/s per chat,
20/min per group, over sliding windows.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

from redis.asyncio import Redis

from bench import common
from bench.common import table
from bot.channels.telegram import TelegramSender
from tests.support.telegram_api import FakeTelegramAPI

CONCURRENCY = 64
GROUPS = 50
PRIVATE = 100


def load(n: int, seed: int = 6) -> list[int]:
    """`n` chat ids in sending order: n/4 arrivals, 4 distinct chats each."""
    rng = random.Random(seed)
    chats = [-(1_000_000_000_000 + i) for i in range(1, GROUPS + 1)] + [
        10_000 + i for i in range(1, PRIVATE + 1)
    ]
    order: list[int] = []
    while len(order) < n:
        order += rng.sample(chats, 4)
    return order[:n]


def minimum(order: list[int]) -> float:
    """The least time from the first message to the last that the limits allow."""
    per_chat = Counter(order)
    bound = float((len(order) - 1) // 30)  # ≤ 30 in any 1 s window
    for chat, count in per_chat.items():
        bound = max(bound, float(count - 1))  # 1/s per chat
        if chat < 0:
            bound = max(bound, float((count - 1) // 20 * 60))  # ≤ 20 in any 60 s window
    return bound


def check(api: FakeTelegramAPI, order: list[int], start: float) -> dict[str, Any]:
    """Completion time, 429s, order within each chat, and the limits checked after the fact."""
    sent = api.sent
    in_order = 0
    for chat in set(order):
        seqs = [int((c.text or "0").split("#", 1)[1].split(" ", 1)[0]) for c in api.sent_to(chat)]
        in_order += seqs == sorted(seqs)
    return {
        "delivered": len(sent),
        "time": max(c.at for c in sent) - start if sent else float("nan"),
        "first": min(c.at for c in sent) - start if sent else float("nan"),
        "429": sum(1 for c in api.calls if c.status == 429),
        "chats_in_order": in_order,
        "chats": len(set(order)),
        "violations": len(api.limit_violations()),
    }


def _texts(order: list[int]) -> list[str]:
    seq: Counter[int] = Counter()
    out = []
    for chat in order:
        seq[chat] += 1
        out.append(f"<b>Ny ankomst</b> #{seq[chat]} till chatt {chat}")
    return out


async def ankomst(order: list[int]) -> dict[str, Any]:
    redis = Redis.from_url(common.redis_url(max_connections=200), decode_responses=True)
    await redis.flushdb()
    texts = _texts(order)
    async with FakeTelegramAPI(enforce_limits=True) as api, api.bot() as bot:
        sender = TelegramSender(bot, redis)
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one(chat: int, text: str) -> bool:
            async with sem:
                return (await sender.send(chat, text)).ok

        start = time.monotonic()
        results = await asyncio.gather(*(one(c, t) for c, t in zip(order, texts, strict=True)))
        figures = check(api, order, start)
        figures["failed"] = results.count(False)
    await redis.flushdb()
    await redis.aclose()
    return figures


async def ptb(order: list[int]) -> dict[str, Any]:
    from telegram.error import RetryAfter, TelegramError
    from telegram.ext import AIORateLimiter, ExtBot
    from telegram.request import HTTPXRequest

    texts = _texts(order)
    async with FakeTelegramAPI(enforce_limits=True) as api:
        bot = ExtBot(
            "123456:TEST",
            base_url=f"{api.base_url}/bot",
            request=HTTPXRequest(connection_pool_size=CONCURRENCY),
            rate_limiter=AIORateLimiter(max_retries=5),
        )
        await bot.initialize()
        sem = asyncio.Semaphore(CONCURRENCY)
        failed = 0

        async def one(chat: int, text: str) -> None:
            nonlocal failed
            async with sem:
                try:
                    await bot.send_message(chat, text, parse_mode="HTML")
                except (RetryAfter, TelegramError):
                    failed += 1

        start = time.monotonic()
        await asyncio.gather(*(one(c, t) for c, t in zip(order, texts, strict=True)))
        figures = check(api, order, start)
        figures["failed"] = failed
        await bot.shutdown()
    return figures


async def bench(n: int, with_ptb: bool = True, say: Any = print) -> str:
    order = load(n)
    floor = minimum(order)
    per_chat = Counter(order)
    rows = []
    runs = [("Ankomst TelegramSender (Redis sliding log, busiest chat first)", ankomst)]
    if with_ptb:
        runs.append(("python-telegram-bot AIORateLimiter (max_retries=5)", ptb))
    for name, fn in runs:
        say(f"  {name}: {n} messages …")
        try:
            f = await fn(order)
        except Exception as exc:  # a peer that cannot run is reported, not fatal
            say(f"  {name} failed: {type(exc).__name__}: {exc}")
            rows.append((name, "–", "–", "–", "–", "–", "–", f"error: {type(exc).__name__}"))
            continue
        say(f"  {name}: {f}")
        rows.append(
            (
                name,
                f"{f['delivered']}/{n}",
                f["time"],
                f"{f['time'] / floor:.3f}" if floor else "–",
                f["429"],
                f"{f['chats_in_order']}/{f['chats']}",
                f["violations"],
                f["failed"],
            )
        )
    groups = [c for c in per_chat if c < 0]
    head = (
        f"{n} messages, {n // 4} arrivals × 4 distinct chats out of {GROUPS} groups and "
        f"{PRIVATE} private chats (seeded); at most {max(per_chat[c] for c in groups)} messages "
        f"to one group, {max(per_chat[c] for c in per_chat if c > 0)} to one private chat; "
        f"{CONCURRENCY} concurrent senders. Limit-bound minimum (first to last message): "
        f"**{floor:.0f} s**. Time is from the start to the server's timestamp of the last "
        "message. One run each.\n\n"
    )
    return head + table(
        [
            "sender",
            "delivered",
            "time (s)",
            "time / minimum",
            "429s",
            "chats in order",
            "limit violations",
            "failed",
        ],
        rows,
    )
