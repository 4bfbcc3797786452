"""The fan-out makes a fixed number of Redis round trips per event, however many organisations
and chats it reaches (issue 17): the case, the chats of all its organisations at once, and all
of the event's deliveries in one script call. Counted where redis-py writes to the socket (one
write is one round trip: a command, or a whole pipeline), on real servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from bot.domain.actor import SYSTEM
from bot.domain.case import notice_event
from bot.domain.clock import ManualClock
from bot.domain.delivery import unpack
from bot.domain.events import EventType, Topic, telegram_channel
from bot.pipeline.fanout import EMAIL, FanOut
from bot.store import Redis, keys
from bot.store.client import redis_py
from bot.store.deliveries import DeliveryStore, case_delivery_ids
from bot.usecases.access import ChatLinks
from tests.support.round_trips import Trips, counting_client
from tests.support.world import CHATS, World, arrival, running_world

SCHOOL = "ostersund-skola"
HC = "hc-lugnvik"
CLOCK = ManualClock(datetime.fromisoformat("2026-11-25T09:00:00+01:00"))


@pytest.fixture
async def counted(redis_url: str, redis: object) -> AsyncIterator[Redis]:
    """A client on the test database whose round trips `Trips` counts."""
    client = counting_client(redis_url)
    await client.ping()  # the connection's handshake is not the code's round trip
    try:
        yield client
    finally:
        await client.aclose()


async def test_the_chats_of_many_organisations_are_read_in_one_round_trip(
    counted: Redis,
) -> None:
    listed = {5001: SCHOOL, 5002: HC, 5003: SCHOOL}  # chats the directory file names
    chats = ChatLinks(counted, CLOCK, listed)
    for org_id, chat_id in ((SCHOOL, 7001), (SCHOOL, 5001), (HC, 7002), ("x-org", 7003)):
        code = await chats.create_invite(org_id, "member", 60)
        assert await chats.redeem(code, chat_id, "test") is not None
    asked = [SCHOOL, HC, "no-such-org", SCHOOL, "x-org"]
    with Trips() as trips:
        many = await chats.chats_of_many(asked)
    assert trips.count == 1
    assert many == {
        SCHOOL: [5001, 5003, 7001],
        HC: [5002, 7002],
        "no-such-org": [],
        "x-org": [7003],
    }
    for org_id in asked:  # the same as one at a time
        assert many[org_id] == await chats.chats_of(org_id)
    with Trips() as trips:
        assert await chats.chats_of_many([]) == {}
    assert trips.count == 0


def fields(ident: str, **extra: str) -> dict[str, str]:
    return {"id": ident, "case": "c1", "status": "queued", **extra}


@pytest.mark.parametrize("per_call", [200, 2])
async def test_create_many_creates_each_delivery_once_in_order_in_one_round_trip(
    counted: Redis, per_call: int
) -> None:
    store = DeliveryStore(counted)
    d1, d2, d3, d4 = (f"c1:d{n}" for n in range(1, 5))  # a delivery id begins with its case's
    first = [
        (d1, keys.OUTBOX_EMAIL, fields(d1, topic="notice")),
        (d2, keys.OUTBOX_TELEGRAM, fields(d2)),
        (d3, keys.OUTBOX_EMAIL, fields(d3)),
    ]
    await store.create_many("c0", [("c0:warm", keys.OUTBOX_EMAIL, fields("c0:warm"))])  # loads it
    with Trips() as trips:
        made = await store.create_many("c1", first, per_call)
    assert made == [True, True, True]
    assert trips.count == -(-len(first) // per_call)
    # Again, with one new among them and one twice: only the new one is made, once.
    again = [*first[:2], (d4, keys.OUTBOX_EMAIL, fields(d4)), first[2], first[1]]
    assert await store.create_many("c1", again, per_call) == [False, False, True, False, False]

    # Indexed without the case's prefix, each record packed as the field's value, listed back
    # whole.
    index = await counted.hgetall(keys.case_delivery_ids("c1"))
    assert set(index) == {"d1", "d2", "d3", "d4"}
    assert await case_delivery_ids(counted, "c1") == [d1, d2, d3, d4]
    assert unpack(d1, index["d1"]) == fields(d1, topic="notice")
    assert not await counted.exists(keys.delivery(d1))
    queued = [f["delivery"] for _, f in await counted.xrange(keys.OUTBOX_EMAIL)]
    assert queued == ["c0:warm", d1, d3, d4]
    assert [f["delivery"] for _, f in await counted.xrange(keys.OUTBOX_TELEGRAM)] == [d2]
    with Trips() as trips:
        assert await store.create_many("c1", []) == []
    assert trips.count == 0


async def queued(redis: Redis) -> tuple[int, int]:
    """How many sends the outboxes hold: e-mail, Telegram."""
    client = redis_py(redis)
    return await client.xlen(keys.OUTBOX_EMAIL), await client.xlen(keys.OUTBOX_TELEGRAM)


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        yield w


async def test_an_event_costs_the_same_few_round_trips_for_any_number_of_recipients(
    world: World, counted: Redis
) -> None:
    answer = await world.register(arrival(unaccompanied=True))  # social services told too
    view = await world.settled(answer["id"])
    recipients = [r["organisation"] for r in view["recipients"]]
    assert len(recipients) == 4
    services = world.services
    fanout = FanOut(
        counted,
        services.directory,
        ChatLinks(counted, world.clock, {}),
        world.clock,
    )
    await fanout.deliveries.create_many("warm", [("warm:0", "warm", {"id": "warm:0"})])

    # The version's event handled again (after a crash): the case, the chats, the script —
    # and nothing is queued twice.
    registered = {"type": str(EventType.CASE_REGISTERED), "case": answer["id"], "version": "1"}
    outbox = await queued(counted)
    with Trips() as trips:
        assert await fanout.handle("1-0", registered)
    assert trips.count == 3
    assert await queued(counted) == outbox

    # A notice to every recipient and the reception unit, on each one's e-mail and chat: the
    # chats, the script. Ten deliveries made, each queued once.
    everyone = [*recipients, "ostersund-mottagning"]
    event = notice_event(
        answer["id"], 1, SYSTEM, world.clock.now(), Topic.ACK_REMINDER, everyone, {}
    )
    with Trips() as trips:
        assert await fanout.handle("2-0", event)
    assert trips.count == 2
    made = [
        (d.org, d.channel)
        for d in await fanout.deliveries.of_case(answer["id"])
        if d.topic.kind is Topic.ACK_REMINDER
    ]
    assert sorted(made) == sorted(
        (o, c) for o in everyone for c in (EMAIL, telegram_channel(CHATS[o]))
    )
    email, chat = await queued(counted)
    assert (email - outbox[0], chat - outbox[1]) == (len(everyone), len(everyone))
