"""A relay slower than the claim: two senders, and still each mail arrives once.

Issue 12 item 3: the claim was one `SET NX PX`, never renewed, so a send that outlasted it (claim
1 s, DATA answered after 1.5 s) was taken over by another process and sent again (5 mails, 4
distinct). Now the claim is renewed while the delivery is in hand, and the send is cut off a
margin before a claim the renewals could not keep.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.pipeline.delivery import ClaimLease
from bot.runtime.services import build_services, email_sender
from bot.store import RedisConnectionError, keys
from bot.store.deliveries import DeliveryStore
from bot.store.streams import StreamConsumer
from tests.fault.conftest import all_settled
from tests.support.process import all_deliveries
from tests.support.world import World, arrival, eventually, running_world

CLAIM_SECONDS = 1
DATA_SECONDS = 1.5  # the relay answers DATA after this: longer than the claim


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path, claim_seconds=CLAIM_SECONDS) as w:
        yield w


@dataclass
class SecondSender:
    """A second process's e-mail sender on the same store and relay: its own services (own
    consumer name, own SMTP connections), of which only the e-mail outbox consumer is used."""

    consumer: StreamConsumer
    refused: int = 0  # entries it took over but found claimed by the first sender

    async def take_over(self) -> None:
        """Take every pending entry, however briefly idle (XAUTOCLAIM), and try it: what a
        second process does with entries whose claim it believes lapsed."""
        await self.consumer.drain_once()


@pytest.fixture
async def second_sender(world: World) -> AsyncIterator[SecondSender]:
    assert world.config is not None
    email = email_sender(world.config)
    services = build_services(
        world.config,
        directory=world.services.directory,
        redis=world.services.redis,
        clock=world.clock,
        email=email,
        bot=None,
        run_workers=True,
    )
    (consumer,) = [c for c in services.consumers if c.stream == keys.OUTBOX_EMAIL]
    second = SecondSender(consumer)
    handle = consumer.handler

    async def counting(entry_id: str, fields: dict[str, str]) -> bool:
        done = await handle(entry_id, fields)
        second.refused += not done
        return done

    consumer.handler = counting
    try:
        yield second
    finally:
        await email.close()


async def test_a_send_longer_than_the_claim_is_not_taken_over_and_each_mail_arrives_once(
    world: World, second_sender: SecondSender
) -> None:
    world.smtp.slow(DATA_SECONDS, "DATA")
    redis = world.services.redis
    first = await world.register(arrival())
    second = await world.register(arrival(external_ref="MIG-2026-222222"))

    async def settled() -> bool:
        # While the first process's slow DATA outlasts the claim, the second keeps taking the
        # entries over and trying them, as its XAUTOCLAIM would once they are idle a claim long.
        # It starts once the first has deliveries in hand ("sending"): before that it would
        # only race the first for entries nobody holds yet, which is not the case tested.
        rows = (await all_deliveries(redis)).values()
        if any(d["status"] == "sending" for d in rows):
            await second_sender.take_over()
        return await all_settled(redis)

    await eventually(settled, 60, "every delivery sent")
    mails = {
        d["message_id"]: d
        for d in (await all_deliveries(redis)).values()
        if d["channel"] == "email"
    }
    counts = Counter(str(m["Message-ID"]) for m in world.smtp.messages)
    assert set(counts) == set(mails), "every e-mail delivery arrived"
    assert max(counts.values()) == 1, f"sent twice: {[k for k, n in counts.items() if n > 1]}"
    assert all(d["status"] == "sent" for d in mails.values())
    assert {d["case"] for d in mails.values()} == {first["id"], second["id"]}
    # The takeover was really tried, past the claim time, and refused by the renewed claim.
    assert second_sender.refused > 0


class _StoreAway(DeliveryStore):
    """A store whose renewals never get through (as in an outage)."""

    def __init__(self) -> None:
        pass

    async def renew(self, ident: str, token: str, ms: int) -> bool:
        raise RedisConnectionError("store away")


async def test_a_send_the_renewals_cannot_cover_is_cut_off_before_the_claim_lapses() -> None:
    loop = asyncio.get_running_loop()
    taken_at = loop.time()
    lease = ClaimLease(_StoreAway(), "d", "t", 400, taken_at)
    lease.keep()
    try:
        with pytest.raises(TimeoutError):
            async with lease.bounded():
                await asyncio.sleep(10)  # a send that would outlast the claim
    finally:
        await lease.stop()
    cut_at = loop.time()
    assert cut_at < taken_at + 0.4, "cut off before the claim could lapse"
    assert cut_at >= taken_at + 0.4 - lease.margin - 0.05
