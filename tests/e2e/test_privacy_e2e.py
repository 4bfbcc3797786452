"""Privacy end to end: personal fields are gone from Redis a set time after a case closed, the
anonymous statistics stay, and every read of a case is in the audit trail."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.store import keys
from bot.usecases.audit import export
from bot.usecases.report import build_report
from tests.support.chat import button, chat_says, press, say
from tests.support.world import CHATS, World, arrival, eventually, running_world

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
PRESCHOOL = "ostersund-forskola"
RECEPTION = "ostersund-mottagning"
PERSONAL = ("A.K.", "B.M.", "Storgatan", "Kyrkgatan", "Sjögatan", "MIG-2026-77", "Flyttat")


async def everything_in(redis: Redis) -> dict[str, str]:
    """Every key in the database with its whole content as text."""
    out: dict[str, str] = {}
    async for key in redis.scan_iter(count=500):
        kind = await redis.type(key)
        if kind == "string":
            value: Any = await redis.get(key)
        elif kind == "hash":
            value = await redis.hgetall(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(await redis.smembers(key))
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1)
        elif kind == "stream":
            value = await redis.xrange(key)
        else:
            value = kind
        out[key] = json.dumps(value, ensure_ascii=False)
    return out


def holding(contents: dict[str, str], words: tuple[str, ...]) -> dict[str, list[str]]:
    return {
        k: [w for w in words if w in v] for k, v in contents.items() if any(w in v for w in words)
    }


async def closed_case(world: World) -> str:
    """A case that went the whole routine: changed, disputed and decided, booked, cleared."""
    answer = await world.register(
        arrival(
            external_ref="MIG-2026-770001",
            children=[{"age": 9, "initials": "B.M."}, {"age": 4, "initials": "A.K."}],
            details="Bor på Storgatan 1.",
        )
    )
    case_id = answer["id"]
    await world.settled(case_id)
    status, _ = await world.call(
        "PATCH", f"/api/v1/arrivals/{case_id}", RECEPTION, {"details": "Flyttar till Kyrkgatan 5."}
    )
    assert status == 200
    await world.settled(case_id)
    status, raised = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/disagreements",
        SCHOOL,
        {"text": "Skolplats nära Kyrkgatan saknas."},
    )
    assert status == 201
    status, _ = await world.call(
        "POST",
        f"/api/v1/disagreements/{raised['id']}/resolve",
        RECEPTION,
        {"decision": "Skolskjuts från Sjögatan ordnas."},
    )
    assert status == 200
    for org in (HC, SCHOOL, PRESCHOOL):
        status, _ = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", org)
        assert status == 200
    status, _ = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/health-booking",
        HC,
        {"at": "2026-11-27T09:30", "interpreter_booked": True},
    )
    assert status == 200
    status, _ = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/clearance",
        HC,
        {"all_results_received": True, "start_obstacle": False},
    )
    assert status == 200
    await world.settled(case_id)
    return str(case_id)


async def test_personal_data_are_gone_from_redis_after_the_retention_time(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, retention_days=90) as world:
        services = world.services
        assert services.retention is not None
        done = await closed_case(world)
        cancelled = (
            await world.register(
                arrival(external_ref="MIG-2026-770002", details="Sjögatan 3, port B.")
            )
        )["id"]
        await world.settled(cancelled)
        status, _ = await world.call(
            "POST",
            f"/api/v1/arrivals/{cancelled}/cancel",
            RECEPTION,
            {"reason": "Flyttat till annan kommun."},
        )
        assert status == 200
        await world.settled(cancelled)
        still_open = (
            await world.register(
                arrival(
                    external_ref="MIG-2026-880003",
                    children=[{"age": 7, "initials": "C.D."}],
                    details="Inga särskilda uppgifter.",
                )
            )
        )["id"]
        await world.settled(still_open)
        # A poison notice about the closed case, as the stream consumer leaves it.
        await redis.xadd(
            keys.DEAD_LETTER,
            {
                "stream": keys.EVENTS,
                "entry": "1-0",
                "error": "RuntimeError: boom",
                "fields": json.dumps(
                    {"type": "notice", "case": done, "params": json.dumps({"text": "Storgatan"})}
                ),
            },
        )
        # The same arrival as another system put it on the intake stream.
        await redis.xadd(
            keys.INTAKE,
            {
                "organisation": RECEPTION,
                "arrival": json.dumps(arrival(external_ref="MIG-2026-770001")),
            },
        )
        before = holding(await everything_in(redis), PERSONAL)
        assert any(done in k for k in before), before  # the test data are really there
        year = (world.clock.now().date().replace(month=1, day=1), world.clock.now().date())

        world.clock.advance(timedelta(days=89))
        assert await services.retention.sweep() == []
        world.clock.advance(timedelta(days=2))
        # Timers due by now (the same-day check of the second version) fire first, as the
        # scheduler would have done long before: drained, not raced against its poll.
        await world.drain()
        # Both reports are made as at this instant (a report judges lateness by when it is
        # made), just before and just after the erasure: erasure changes no figure.
        made = world.clock.now()
        report_before = await build_report(
            redis, services.directory, services.calendar, *year, now=made
        )
        erased = await services.retention.sweep()
        assert sorted(erased) == sorted([done, cancelled])

        left = holding(await everything_in(redis), PERSONAL)
        assert left == {}, left
        # The open case keeps its data: it is not closed.
        view = await world.case(still_open)
        assert view["arrival"]["children"] == [{"age": 7, "initials": "C.D."}]
        # The erased case is still there, without its personal fields.
        view = await world.case(done)
        assert view["arrival"]["children"] == [{"age": 9}, {"age": 4}]
        assert "details" not in view["arrival"]
        assert view["external_ref"] == ""
        # ... and the statistics are the same as before.
        assert await redis.exists(keys.case_stats(done), keys.case_stats(cancelled)) == 2
        report_after = await build_report(
            redis, services.directory, services.calendar, *year, now=made
        )
        assert report_after["rows"] == report_before["rows"]
        # A second sweep has nothing to do.
        assert await services.retention.sweep() == []


async def test_a_case_without_clearance_is_never_erased(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        assert world.services.retention is not None
        case_id = (await world.register(arrival()))["id"]
        await world.settled(case_id)
        world.clock.advance(timedelta(days=400))
        await world.tick()
        assert await world.services.retention.sweep() == []
        assert await world.services.retention.closed_at(case_id) is None


async def test_every_read_of_a_case_is_in_the_audit_trail(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, link_chats=False) as world:
        case_id = (await world.register(arrival()))["id"]
        await world.case(case_id, HC)
        status, _ = await world.call("GET", "/api/v1/arrivals?status=all", RECEPTION)
        assert status == 200
        status, _ = await world.call("GET", f"/api/v1/arrivals/{case_id}", "ostersund-socialtjanst")
        assert status == 403  # not on the case (no children's social services here): no read
        lines = [json.loads(line) async for line in export(redis)]
        reads = [r for r in lines if r["kind"] == "read"]
        assert [(r["by"], r["via"], r["case"]) for r in reads] == [
            (HC, "api", case_id),
            (RECEPTION, "api:list", case_id),
        ]
        assert all(r["at"] == world.clock.now().isoformat() for r in reads)
        assert all(r["who"].startswith("token:") for r in reads)
        changes = [r for r in lines if r["kind"] == "change"]
        assert changes[0]["what"] == "registered" and changes[0]["by"] == RECEPTION
        assert "Storgatan" not in json.dumps(lines, ensure_ascii=False)


# -- chat dialogues ------------------------------------------------------------------------------

# ASCII on purpose: aiogram stores dialogue data as JSON with \u escapes for other letters.
DIALOGUE_TEXT = ("Lindgatan", "Amina", "Granbacken")


async def dialogue_keys(redis: Redis) -> dict[str, int]:
    """Every key of a chat dialogue (aiogram's FSM storage) with its TTL in seconds."""
    return {key: await redis.ttl(key) async for key in redis.scan_iter(f"{keys.FSM_PREFIX}:*")}


async def test_chat_dialogues_leave_nothing_in_redis(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    """What a dialogue holds lives under the service's prefix with ANKOMST_CHAT_STATE_HOURS as
    its TTL; /avbryt and the end of a dialogue clear it; an abandoned one expires."""
    async with running_world(redis_url, tmp_path, chat_state_hours=2) as world:
        chat = CHATS[RECEPTION]
        case_id = (await world.register(arrival()))["id"]
        reference = (await world.case(case_id))["reference"]
        await world.settled(case_id)

        # /stall_in with a typed reason, then /avbryt: cleared at once, nothing cancelled.
        say(world, chat, f"/stall_in {reference}")
        await chat_says(world, chat, "Skriv kort varför")
        say(world, chat, "Flyttar till Lindgatan 7 hos moster Amina")
        await chat_says(world, chat, "Alla mottagare får besked (INSTÄLLD)")
        held = await dialogue_keys(redis)
        assert held and all(k.startswith(f"{keys.FSM_PREFIX}:") for k in held), held
        assert all(0 < ttl <= 2 * 3600 for ttl in held.values()), held
        assert holding(await everything_in(redis), DIALOGUE_TEXT) != {}
        assert not [k async for k in redis.scan_iter("fsm:*")]  # nothing under aiogram's default
        say(world, chat, "/avbryt")
        await chat_says(world, chat, "Avbrutet")
        assert await dialogue_keys(redis) == {}
        assert (await world.case(case_id))["status"] != "cancelled"

        # A dialogue that ends clears what it held: a disagreement raised in chat.
        say(world, CHATS[SCHOOL], f"/oenighet {reference}")
        await chat_says(world, CHATS[SCHOOL], "beskriv kort")
        assert await dialogue_keys(redis) != {}
        say(world, CHATS[SCHOOL], "Skolskjuts från Sjögatan?")
        await chat_says(world, CHATS[SCHOOL], "anmäld")
        assert await dialogue_keys(redis) == {}

        # An abandoned /ny: the details typed stay only until the TTL has passed.
        say(world, chat, "/ny")
        await press(world, chat, button(await chat_says(world, chat, "Migrationsverkets"), "Hoppa"))
        await chat_says(world, chat, "Vilket datum")
        say(world, chat, "27/11")
        await chat_says(world, chat, "Hur gamla")
        say(world, chat, "9")
        languages = await chat_says(world, chat, "Vilka språk")
        await press(world, chat, button(languages, "arabiska"))
        await press(world, chat, button(languages, "Klar"))
        await press(world, chat, button(await chat_says(world, chat, "Behövs tolk"), "Nej"))
        await press(world, chat, button(await chat_says(world, chat, "ensamkommande"), "Nej"))
        await chat_says(world, chat, "Övriga uppgifter")
        say(world, chat, "Bor hos moster Amina på Granbacken 3")
        await chat_says(world, chat, "Stämmer det här")
        held = await dialogue_keys(redis)
        assert holding(await everything_in(redis), DIALOGUE_TEXT) != {}
        assert all(0 < ttl <= 2 * 3600 for ttl in held.values()), held
        # Two hours pass, as Redis counts them: each key's remaining TTL runs out now.
        for key in held:
            await redis.pexpire(key, 1)

        async def expired() -> bool:
            return await dialogue_keys(redis) == {}

        await eventually(expired, 2.0, "the abandoned dialogue to expire")
        assert holding(await everything_in(redis), DIALOGUE_TEXT) == {}
