"""What one Telegram send costs this process: CPU ms and Redis round trips per message.

    python -m bench.telegram_send_cost [--n 2000] [--chats 400] [--concurrency 64] [--json]

Sends `n` messages (HTML, each with an inline button, as the pipeline sends them) through
`TelegramSender` to the local Bot API test server (tests/support/telegram_api.py), which runs
in a child process so that its work is not counted. The limiter is relaxed as in
`bench/service_proc.py --relax-telegram-limiter` (global budget lifted, 1 ms per-chat spacing)
so that the limits do not set the pace; the limiter's scripts still run for every message. The
messages go round `chats` chats, `concurrency` at a time (the service's Telegram consumer
concurrency; `--concurrency 1` shows a send on its own). The buttons are built as aiogram
models per message, as the pipeline builds them, so that cost is in the figure too. A warm-up of
200 messages (connections, scripts loaded, models built) is not counted.

Prints CPU ms per send (`time.process_time()` of this process over the timed sends), Redis
round trips per send (each command sent alone, or each pipeline sent at once, is one; counted by
wrapping redis-py's packing in this process), and sends per second. Redis: the bench's database
(ANKOMST_BENCH_REDIS_URL, default db 14), flushed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections import Counter
from typing import Any

from bench import common

WARM_UP = 200
ROUND_TRIPS: Counter[str] = Counter()
_counting = [False]


def _count_round_trips() -> None:
    """Count every round trip redis-py makes in this process (one per command or pipeline)."""
    from redis.asyncio.connection import AbstractConnection

    pack_one = AbstractConnection.pack_command
    pack_many = AbstractConnection.pack_commands
    inside = [False]  # pack_commands packs each command of a pipeline with pack_command

    def pack_command(self: Any, *args: Any) -> Any:
        if _counting[0] and args and not inside[0]:
            name = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            ROUND_TRIPS[name.split()[0].upper()] += 1
        return pack_one(self, *args)

    def pack_commands(self: Any, commands: Any) -> Any:
        commands = list(commands)
        if _counting[0]:
            ROUND_TRIPS["pipeline"] += 1
        inside[0] = True
        try:
            return pack_many(self, commands)
        finally:
            inside[0] = False

    AbstractConnection.pack_command = pack_command  # type: ignore[method-assign]
    AbstractConnection.pack_commands = pack_commands  # type: ignore[method-assign]


async def serve() -> None:
    """The child: the Bot API test server, limits off, until SIGTERM."""
    from tests.support.telegram_api import FakeTelegramAPI

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with FakeTelegramAPI(enforce_limits=False) as api:
        print(f"URL {api.base_url}", flush=True)
        await stop.wait()


async def measure(n: int, chats: int, concurrency: int) -> dict[str, Any]:
    """Send WARM_UP + n messages; the figures of the last n."""
    from bot.channels.telegram_types import defer_aiogram_model_builds

    defer_aiogram_model_builds()  # as the service's `import bot` has it: before aiogram
    from aiogram import Bot
    from aiogram.client.default import DefaultBotProperties
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
    from redis.asyncio import Redis

    import bot.channels.telegram as tg
    from tests.support.telegram_api import DEFAULT_TOKEN

    tg.GLOBAL_LIMIT = 1_000_000
    tg.PRIVATE_SPACING_MS = 1
    tg.GROUP_SPACING_MS = 1
    _count_round_trips()

    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.telegram_send_cost", "--serve", stdout=asyncio.subprocess.PIPE
    )
    assert server.stdout is not None
    base_url = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().split()[1]
    redis = Redis.from_url(common.redis_url(max_connections=200), decode_responses=True)
    await redis.flushdb()
    try:
        # The Bot as the service makes it (handlers/main.py make_bot), pointed at the child.
        bot = Bot(
            DEFAULT_TOKEN,
            session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)),
            default=DefaultBotProperties(parse_mode="HTML"),
        )
        async with bot.session:
            sender = tg.TelegramSender(bot, redis)
            sem = asyncio.Semaphore(concurrency)
            ids = [1000 + i for i in range(chats // 2)] + [
                -(1_000_000_000_000 + i) for i in range(chats - chats // 2)
            ]

            async def one(i: int) -> int | None:
                chat = ids[i % len(ids)]
                markup = InlineKeyboardMarkup(
                    inline_keyboard=[
                        [InlineKeyboardButton(text="Mottaget", callback_data=f"ack:c{i}:1:sig")]
                    ]
                )
                async with sem:
                    result = await sender.send(chat, f"<b>Ny ankomst</b> #{i} till {chat}", markup)
                return result.message_id if result.ok else None

            await asyncio.gather(*(one(i) for i in range(WARM_UP)))
            ROUND_TRIPS.clear()
            _counting[0] = True
            cpu0, wall0 = time.process_time(), time.perf_counter()
            message_ids = await asyncio.gather(*(one(i) for i in range(WARM_UP, WARM_UP + n)))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            _counting[0] = False
    finally:
        await redis.flushdb()
        await redis.aclose()
        server.terminate()
        await server.wait()
    sent = [m for m in message_ids if m is not None]
    if len(sent) != n or len(set(sent)) != n:
        raise RuntimeError(f"{n - len(sent)} of {n} sends failed, {len(set(sent))} distinct ids")
    trips = sum(ROUND_TRIPS.values())
    return {
        "n": n,
        "chats": chats,
        "concurrency": concurrency,
        "cpu_ms_per_send": round(cpu * 1000 / n, 3),
        "redis_round_trips_per_send": round(trips / n, 3),
        "redis_by_command": {k: round(v / n, 3) for k, v in ROUND_TRIPS.most_common()},
        "sends_per_s": round(n / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--n", type=int, default=2000, help="messages timed (default 2000)")
    parser.add_argument("--chats", type=int, default=400, help="chats they go round")
    parser.add_argument("--concurrency", type=int, default=64, help="sends at once")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    common.raise_fd_limit()
    figures = asyncio.run(measure(args.n, args.chats, args.concurrency))
    if args.json:
        print(json.dumps(figures))
        return
    by_command = ", ".join(f"{k} {v}" for k, v in figures["redis_by_command"].items())
    print(
        f"{figures['n']} sends over {figures['chats']} chats, {figures['concurrency']} at a time: "
        f"{figures['cpu_ms_per_send']:.3f} CPU ms per send, "
        f"{figures['redis_round_trips_per_send']:.2f} Redis round trips per send ({by_command}), "
        f"{figures['sends_per_s']:.0f} sends/s"
    )


if __name__ == "__main__":
    main()
