"""200 arrivals for one municipality at once: every message goes, within Telegram's limits as
the Bot API server's own clock measured them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.fault.conftest import all_settled, arrived_counts, link_chats
from tests.support.world import arrival, eventually, running_world

pytestmark = [pytest.mark.slow, pytest.mark.long]  # ~25 s: CI runs it with `pytest -m long`

ARRIVALS = int(os.environ.get("ANKOMST_RATE_ARRIVALS", "200"))
UNACCOMPANIED = 12  # each told to social services' 20 chats and the school's group chat
SOCIAL_CHATS = {f"social-{n}": 3000 + n for n in range(20)}
SCHOOL_GROUP = -1001000000500


async def test_two_hundred_arrivals_at_once_keep_every_telegram_limit(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(
        redis_url, tmp_path, link_chats=False, claim_seconds=5, chat_spacing_ms=None
    ) as world:
        world.telegram.enforce_limits = True  # a 429 for anything over the limits
        for chat in SOCIAL_CHATS.values():
            await link_chats(redis, {"ostersund-socialtjanst": chat})
        await link_chats(redis, {"ostersund-skola": SCHOOL_GROUP})
        bodies = [
            arrival(
                external_ref=f"MIG-2026-{500000 + n}",
                children=[{"age": 16}] if n < UNACCOMPANIED else [{"age": 2}],
                unaccompanied=n < UNACCOMPANIED,
            )
            for n in range(ARRIVALS)
        ]
        started = time.monotonic()
        await asyncio.gather(*(world.register(b) for b in bodies))
        await eventually(lambda: all_settled(redis), 120, "every delivery")
        took = time.monotonic() - started

        counts = await arrived_counts(redis, world.smtp, world.telegram)
        assert counts and set(counts.values()) == {1}, "each delivery arrived exactly once"
        sent = world.telegram.sent
        assert len(sent) == UNACCOMPANIED * (len(SOCIAL_CHATS) + 1)
        assert world.telegram.limit_violations() == []
        # The strict server answers 429 to any send that lands early by its own clock: the
        # sender keeps the limits rather than discovering them, so there is none.
        refused = [c for c in world.telegram.calls_to("sendMessage") if c.status == 429]
        assert refused == []
        print(
            f"{len(counts)} deliveries ({len(sent)} chat messages, {len(refused)} answered 429 "
            f"and retried) in {took:.1f} s"
        )
