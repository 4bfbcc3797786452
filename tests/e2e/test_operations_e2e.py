"""Operations end to end: /metrics for Prometheus, /healthz and /readyz, JSON logs."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from bot.store import keys
from tests.support.world import World, arrival, eventually, running_world

ROOT = Path(__file__).resolve().parents[2]
HC = "hc-lugnvik"


async def scrape(world: World) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with world.http.get(world.base + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_deliveries_acknowledgements_queues_and_overdue(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        case_id = (await world.register(arrival()))["id"]
        await world.settled(case_id)
        world.clock.advance(timedelta(minutes=30))
        status, _ = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", HC)
        assert status == 200
        await world.drain()
        # Past the 2-working-hour reminder: school and preschool are overdue.
        world.clock.advance(timedelta(hours=3))
        await world.tick()

        samples = await scrape(world)
        email_sent = samples[
            ("ankomst_deliveries_total", (("channel", "email"), ("outcome", "sent")))
        ]
        chat_sent = samples[
            ("ankomst_deliveries_total", (("channel", "telegram"), ("outcome", "sent")))
        ]
        assert email_sent >= 4 and chat_sent >= 4  # three recipients and the reception copy
        ack = samples[("ankomst_acknowledgement_seconds_count", (("kind", "health_centre"),))]
        assert ack == 1
        assert (
            samples[("ankomst_acknowledgement_seconds_sum", (("kind", "health_centre"),))] == 1800
        )
        assert samples[("ankomst_overdue", (("deadline", "acknowledgement"),))] == 2
        assert samples[("ankomst_overdue", (("deadline", "booking"),))] == 0
        lag = ("ankomst_stream_lag", (("group", "senders"), ("stream", "ankomst:outbox:email")))
        assert samples[lag] == 0
        assert (
            "ankomst_stream_pending",
            (("group", "fanout"), ("stream", "ankomst:events")),
        ) in samples
        assert samples[("ankomst_dead_letters", ())] == 0
        assert samples[("ankomst_open_cases", ())] == 1


async def test_readyz_answers_for_redis_every_worker_and_the_scheduler(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, link_chats=False) as world:
        async with world.http.get(world.base + "/healthz") as response:
            assert response.status == 200

        async def ready() -> tuple[int, dict[str, object]]:
            async with world.http.get(world.base + "/readyz") as response:
                return response.status, await response.json()

        async def all_up() -> bool:
            return (await ready())[0] == 200

        await eventually(all_up, 10, "readiness")
        _, body = await ready()
        workers = body["workers"]
        assert isinstance(workers, dict)
        assert {"scheduler", "privacy", "telegram", "ankomst:events/fanout"} <= set(workers)
        assert body["redis"] is True

        await world.services.scheduler.stop()

        async def scheduler_down() -> bool:
            status, body = await ready()
            return status == 503 and body["workers"]["scheduler"] is False  # type: ignore[index]

        await eventually(scheduler_down, 10, "the stopped scheduler to show")

        consumer = world.services.consumers[0]
        await consumer.stop()

        async def consumer_down() -> bool:
            _, body = await ready()
            return body["workers"][f"{consumer.stream}/{consumer.group}"] is False  # type: ignore[index]

        await eventually(consumer_down, 10, "the stopped consumer to show")


async def test_the_deliverer_logs_with_the_case_bound(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    import structlog

    from bot.runtime.logs import log_context

    async with running_world(redis_url, tmp_path, link_chats=False) as world:
        metrics = world.services.metrics
        assert metrics is not None
        seen: dict[str, object] = {}

        async def handle(entry_id: str, entry: dict[str, str]) -> bool:
            seen.update(structlog.contextvars.get_contextvars())
            return True

        observed = metrics.observe_deliveries(handle)
        await observed("1-0", {"delivery": "abc123:1:hc-lugnvik:email:notice"})
        assert seen == {"case": "abc123", "delivery": "abc123:1:hc-lugnvik:email:notice"}
        assert structlog.contextvars.get_contextvars() == {}
        # What was bound before (a case around it) is put back, not dropped.
        with log_context(case="outer"):
            await observed("2-0", {"delivery": "def456:1:hc-lugnvik:email:notice"})
            assert seen["case"] == "def456"
            assert structlog.contextvars.get_contextvars() == {"case": "outer"}
        assert structlog.contextvars.get_contextvars() == {}


def test_logs_are_json_with_the_case_and_never_the_personal_fields() -> None:
    program = """
import logging, structlog
from bot.runtime.logs import configure_logging
configure_logging("json")
with structlog.contextvars.bound_contextvars(case="c0ffee"):
    logging.getLogger("bot.pipeline.delivery").warning(
        "sent %s", "notice", extra={"initials": "A.K.", "details": "Storgatan 1", "org": "hc"}
    )
    structlog.get_logger("bot.x").info("done", text="Storgatan", attempts=2)
"""
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines[0]["event"] == "sent notice"
    assert lines[0]["case"] == "c0ffee" and lines[0]["org"] == "hc"
    assert lines[0]["level"] == "warning" and lines[0]["logger"] == "bot.pipeline.delivery"
    assert lines[1]["case"] == "c0ffee" and lines[1]["attempts"] == 2
    assert "Storgatan" not in result.stderr and "A.K." not in result.stderr


async def test_api_log_lines_carry_the_case(redis_url: str, redis: Redis, tmp_path: Path) -> None:
    import structlog

    from handlers.http.observability import bind_log_context

    seen: dict[str, object] = {}

    async def handler(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        seen.update(structlog.contextvars.get_contextvars())
        return aiohttp.web.Response(text="ok")

    app = aiohttp.web.Application(middlewares=[bind_log_context])
    app.router.add_get("/api/v1/arrivals/{case_id}", handler)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/api/v1/arrivals/abc") as response,
        ):
            assert response.status == 200
    finally:
        await runner.cleanup()
    assert seen["case"] == "abc" and seen["method"] == "GET"


async def test_the_overdue_index_is_put_right_from_the_state_however_often_events_come(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    """The open-deadline sets are recomputed from the case's state: an event handled twice or
    late changes nothing, a member that no longer stands or has a wrong time is put right; an
    arrival message moves a deadline only when it reaches a health centre."""
    async with running_world(redis_url, tmp_path) as world:
        metrics = world.services.metrics
        case_id = (await world.register(arrival()))["id"]
        await world.settled(case_id)
        await world.drain()
        sets = (keys.ACK_DEADLINES, keys.BOOKING_DEADLINES)

        async def index() -> list[dict[str, float]]:
            return [dict(await redis.zrange(k, 0, -1, withscores=True)) for k in sets]

        kept = await index()
        school = keys.deadline_member(case_id, "ostersund-skola")
        hc = keys.deadline_member(case_id, HC)
        assert len(kept[0]) == 3 and school in kept[0]  # three recipients, none acknowledged
        assert list(kept[1]) == [hc]  # the health centre was told: its booking deadline
        await metrics.keep_deadlines(case_id)
        await metrics.keep_deadlines(case_id, everyone=True)
        assert await index() == kept

        stray = keys.deadline_member(case_id, "berg-skola")  # as if dropped by a change
        await redis.zadd(keys.ACK_DEADLINES, {stray: 1.0})
        await redis.zadd(keys.BOOKING_DEADLINES, {hc: 2.0})
        await redis.zrem(keys.ACK_DEADLINES, school)
        await metrics.keep_deadlines(case_id)  # the recipients' members only
        ack, booking = await index()
        assert ack == {**kept[0], stray: 1.0} and booking == kept[1]
        await metrics.keep_deadlines(case_id, everyone=True)
        assert await index() == kept

        async def handled(entry_id: str, event: dict[str, str]) -> bool:
            return True

        observed = metrics.observe_events(handled, time_acks=False, keep_deadlines=True)
        sent = {"type": "delivery.sent", "case": case_id, "version": "1"}
        await redis.zadd(keys.BOOKING_DEADLINES, {hc: 2.0})
        await observed("1-1", {**sent, "org": "ostersund-skola"})
        assert (await index())[1] == {hc: 2.0}  # a message to the school moves nothing
        await observed("1-2", {**sent, "org": HC})
        assert await index() == kept
        await redis.zadd(keys.ACK_DEADLINES, {stray: 1.0})
        await observed("1-3", {"type": "case.changed", "case": case_id, "version": "1"})
        assert await index() == kept  # after a change, every organisation is looked at
