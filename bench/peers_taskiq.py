"""The fan-out written the plain way on taskiq with taskiq-redis: an aiohttp handler that kicks
one task per delivery (`task.kiq`), a receiver that sends each (bench/peers.py).

    python -m bench.peers_taskiq worker REDIS_URL SMTP_PORT BOT_API_URL   # prints READY
    python -m bench.peers_taskiq handler REDIS_URL                         # prints PORT <n>

The broker is taskiq-redis's `RedisStreamBroker` (a stream and a consumer group with
acknowledgements, as Ankomst's outboxes are), with no result backend (the handler waits for no
result); the receiver runs in the worker process (`taskiq.api.run_receiver_task`) with
`max_async_tasks=64`, as many sends at a time as Ankomst's Telegram consumer runs.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bench import peers

STATE: dict[str, Any] = {}


def _broker(url: str) -> Any:
    from taskiq_redis import RedisStreamBroker

    broker = RedisStreamBroker(url, queue_name="bench:taskiq", consumer_group_name="bench")

    @broker.task(task_name="send_email")
    async def send_email(to: str, ref: str) -> None:
        await peers.send_email(STATE["smtp_port"], to, ref)

    @broker.task(task_name="send_chat")
    async def send_chat(chat_id: int, ref: str) -> None:
        await STATE["bot"].send_message(chat_id, peers.CHAT_TEXT)

    STATE["tasks"] = {"send_email": send_email, "send_chat": send_chat}
    return broker


async def worker(url: str, smtp_port: int, api_base: str) -> None:
    from taskiq.api import run_receiver_task

    broker = _broker(url)
    broker.is_worker_process = True
    STATE["smtp_port"] = smtp_port
    STATE["bot"] = peers.make_bot(api_base)
    await broker.startup()
    task = asyncio.create_task(run_receiver_task(broker, max_async_tasks=peers.CONCURRENCY))
    await asyncio.sleep(0.2)  # the receiver has created the consumer group and is reading
    print("READY", flush=True)
    await task


async def handler(url: str) -> None:
    broker = _broker(url)
    await broker.startup()
    tasks = STATE["tasks"]

    async def enqueue(name: str, kwargs: dict[str, Any]) -> None:
        await tasks[name].kiq(**kwargs)

    await peers.serve_handler(enqueue)
    await peers.wait_forever()


def available() -> bool:
    """Whether taskiq and taskiq-redis are installed (`pip install -e '.[bench]'`)."""
    try:
        import taskiq  # noqa: F401
        import taskiq_redis  # noqa: F401
    except ImportError:
        return False
    return True


async def run(n: int, say: Any = print) -> dict[str, Any]:
    """The taskiq peer's figures for `n` arrivals (bench/peers.py `run_peer`)."""
    return await peers.run_peer("bench.peers_taskiq", n, say)


if __name__ == "__main__":
    role, url, *rest = sys.argv[1:]
    if role == "worker":
        asyncio.run(worker(url, int(rest[0]), rest[1]))
    else:
        asyncio.run(handler(url))
