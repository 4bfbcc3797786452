"""The fan-out written the plain way on arq: an aiohttp handler that enqueues one job per
delivery (`ArqRedis.enqueue_job`), an arq `Worker` that sends each (bench/peers.py).

    python -m bench.peers_arq worker REDIS_URL SMTP_PORT BOT_API_URL   # prints READY
    python -m bench.peers_arq handler REDIS_URL                         # prints PORT <n>

arq's defaults are kept (results kept an hour, a 0.5 s poll), except `max_jobs=64`: as many
sends at a time as Ankomst's Telegram consumer runs.

arq pins `redis<6` while Ankomst needs redis-py 8 (and taskiq-redis ≥ 1.2 needs it too), so arq
is not in the `bench` extra (pip cannot resolve it with them); install it beside it with
`pip install --no-deps 'arq>=0.26'` (it runs on redis-py 8 here). Without it this peer is
skipped and reported as such.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bench import peers


async def _send_email(ctx: dict[str, Any], to: str, ref: str) -> None:
    await peers.send_email(ctx["smtp_port"], to, ref)


async def _send_chat(ctx: dict[str, Any], chat_id: int, ref: str) -> None:
    await ctx["bot"].send_message(chat_id, peers.CHAT_TEXT)


async def worker(url: str, smtp_port: int, api_base: str) -> None:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    bot = peers.make_bot(api_base)

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["smtp_port"] = smtp_port
        ctx["bot"] = bot
        print("READY", flush=True)

    w = Worker(
        functions=[func(_send_email, name="send_email"), func(_send_chat, name="send_chat")],
        redis_settings=RedisSettings.from_dsn(url),
        on_startup=startup,
        max_jobs=peers.CONCURRENCY,
        handle_signals=False,
    )
    await w.main()


async def handler(url: str) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url))

    async def enqueue(name: str, kwargs: dict[str, Any]) -> None:
        await pool.enqueue_job(name, **kwargs)

    await peers.serve_handler(enqueue)
    await peers.wait_forever()


def available() -> bool:
    """Whether arq is installed (it is not in the `bench` extra; see the module's docstring)."""
    try:
        import arq  # noqa: F401
    except ImportError:
        return False
    return True


async def run(n: int, say: Any = print) -> dict[str, Any]:
    """The arq peer's figures for `n` arrivals (bench/peers.py `run_peer`)."""
    return await peers.run_peer("bench.peers_arq", n, say)


if __name__ == "__main__":
    role, url, *rest = sys.argv[1:]
    if role == "worker":
        asyncio.run(worker(url, int(rest[0]), rest[1]))
    else:
        asyncio.run(handler(url))
