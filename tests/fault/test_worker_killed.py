"""A `serve` process killed (SIGKILL) at each point of a delivery; another process takes over.

The failpoint (tests/support/failpoint.py: the real `serve` with a test-only delivery hook) kills
the first process the first time a delivery reaches the point. The second process is a new
consumer: it takes the dead one's pending entries with XAUTOCLAIM once they have been idle for
the claim time (2 s here), by which time the dead one's claim has expired too.

What may arrive twice: only a delivery that was already being sent ("sending") when the process
died — the send may have gone out without being recorded. Everything else arrives exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.store import keys
from tests.fault.conftest import all_settled, api_token, arrived_counts, link_chats, statuses
from tests.support.failpoint import Point, command, failpoint_key
from tests.support.process import ServeProcess, all_deliveries, post_arrival, serve_env
from tests.support.smtp_sink import SmtpSink
from tests.support.telegram_api import FakeTelegramAPI
from tests.support.world import arrival, eventually

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("point", ["after_claim", "after_send", "after_record"])
async def test_a_worker_killed_mid_delivery_loses_nothing_and_sends_twice_only_in_the_window(
    point: Point, redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with SmtpSink() as smtp, FakeTelegramAPI() as telegram, aiohttp.ClientSession() as http:
        await link_chats(redis)
        token = await api_token(redis)
        env = serve_env(redis_url, tmp_path, smtp, telegram)
        first = await ServeProcess(env, tmp_path / "a.log", command=command(point)).start()
        try:
            status, answer = await post_arrival(http, first.base, token, arrival())
            assert status == 201, answer
            code = await first.died()
        finally:
            await first.kill()
        assert code == -9, first.failure("was not killed by its failpoint")
        killed_at = time.monotonic()
        hit = await redis.get(failpoint_key(point))
        assert hit
        at_death = statuses(await all_deliveries(redis))
        # Where the process died: before the send nothing is "sending" for the hit delivery;
        # after the send it is; after the record it is "sent" but its entry is still pending.
        assert (
            at_death[hit]
            == {
                "after_claim": "queued",
                "after_send": "sending",
                "after_record": "sent",
            }[point]
        )

        second = await ServeProcess(env, tmp_path / "b.log").start()
        try:
            # Work keeps coming in while the dead process's work is taken over.
            status, later = await post_arrival(
                http, second.base, token, arrival(external_ref="MIG-2026-654321")
            )
            assert status == 201, later
            await eventually(lambda: all_settled(redis), 30, "every delivery to be made")
            recovered = time.monotonic() - killed_at
        finally:
            await second.stop()

    final = await all_deliveries(redis)
    assert all(d["status"] == "sent" for d in final.values()), statuses(final)
    counts = await arrived_counts(redis, smtp, telegram)
    assert len({d["case"] for d in final.values()}) == 2
    window = {ident for ident, s in at_death.items() if s == "sending"}
    for ident, count in counts.items():
        if ident in window:
            assert 1 <= count <= 2, (ident, count)
        else:
            assert count == 1, (ident, count, at_death.get(ident))
    if point == "after_record":
        assert counts[hit] == 1
    # A claim left by the dead worker expired and did not hold its delivery back for good.
    assert not await redis.exists(keys.delivery_claim(hit))
    print(
        f"{point}: {len(counts)} deliveries, duplicates {sum(c - 1 for c in counts.values())}, "
        f"recovered in {recovered:.1f} s"
    )
