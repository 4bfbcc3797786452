"""Text that would run over Telegram's 4096 characters is cut cleanly, never refused."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from messages.telegram import TELEGRAM_LIMIT, telegram_length
from tests.support.world import CHATS, arrival, running_world
from tests.unit.messages.markup import TELEGRAM_TAGS, telegram_tags


async def test_details_that_escape_past_4096_characters_are_cut_cleanly(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    # 1000 characters of "&<>" escape to about 4.3 times as many: over Telegram's limit.
    details = "&<>" * 333 + "X"
    async with running_world(redis_url, tmp_path, chat_details="full") as world:
        answer = await world.register(arrival(details=details))
        view = await world.settled(answer["id"])
        chat = [
            c
            for c in world.telegram.sent_to(CHATS["hc-lugnvik"])
            if answer["reference"] in (c.text or "")
        ]
        assert len(chat) == 1
        text = chat[0].text or ""
        assert telegram_length(text) <= TELEGRAM_LIMIT
        assert "&amp;&lt;&gt;" in text and "…" in text  # cut inside the details, not in an entity
        assert telegram_tags(text) <= TELEGRAM_TAGS  # the cut left no broken or foreign tag
        assert all(d["status"] == "sent" for p in view["recipients"] for d in p["deliveries"])
