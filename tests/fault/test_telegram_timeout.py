"""A Bot API request that hangs past the client's timeout is given up and retried."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from tests.support.world import CHATS, arrival, running_world


async def test_a_timed_out_send_is_retried_and_delivered(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, telegram_timeout=1.0) as world:
        chat = CHATS["hc-lugnvik"]
        world.telegram.delay_next("sendMessage", 3.0, chat_id=chat)
        answer = await world.register(arrival())
        view = await world.settled(answer["id"], timeout=30)
        hc = next(r for r in view["recipients"] if r["organisation"] == "hc-lugnvik")
        telegram = next(d for d in hc["deliveries"] if d["channel_kind"] == "telegram")
        assert telegram["status"] == "sent" and telegram["attempts"] >= 2
        # The fake server drops a request whose client went away, as a proxy would:
        # the message arrives once.
        notices = [c for c in world.telegram.sent_to(chat) if answer["reference"] in (c.text or "")]
        assert len(notices) == 1
