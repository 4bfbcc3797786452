"""The time rules end to end on real parts: reminders, escalations, the booking deadline and the
same-day watch, with the clock moved by the test (never slept for)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.domain.case import CaseNotFound
from bot.pipeline.deadlines import DIGEST_TIMERS, ESCALATION_DIGEST, digest_timer_id
from bot.store import keys
from bot.store.timers import FIRED, PENDING, Timer, case_timer_ids, pack
from handlers.main import Ankomst
from tests.support.world import (
    CHATS,
    EXAMPLE_DIRECTORY,
    STOCKHOLM,
    World,
    arrival,
    eventually,
    running_world,
)

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
PRESCHOOL = "ostersund-forskola"
RECEPTION = "ostersund-mottagning"
HC_SUPERVISOR = "region-primarvard"
MUNICIPAL_SUPERVISOR = "ostersund-ledning"
ADDRESS = {
    HC: "hc-lugnvik@regionjh.example.se",
    SCHOOL: "skola@ostersund.example.se",
    PRESCHOOL: "forskola@ostersund.example.se",
    RECEPTION: "mottagning@ostersund.example.se",
    HC_SUPERVISOR: "primarvardsledning@regionjh.example.se",
    MUNICIPAL_SUPERVISOR: "kommunledning@ostersund.example.se",
}
SUPERVISOR_CHAT = 1006


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=STOCKHOLM)


def iso(moment: datetime) -> str:
    """How the case view writes a due time (UTC)."""
    return moment.astimezone(UTC).isoformat()


def text_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


def mails(world: World, org: str, subject_start: str) -> list[Any]:
    return [m for m in world.mails_to(ADDRESS[org]) if str(m["Subject"]).startswith(subject_start)]


def chats(world: World, chat_id: int, words: str) -> list[Any]:
    return [c for c in world.telegram.sent_to(chat_id) if words in (c.text or "")]


def deadlines(view: dict[str, Any]) -> dict[tuple[str, str | None], str]:
    return {(d["kind"], d["organisation"]): d["due_at"] for d in view["deadlines"]}


async def acknowledge(world: World, case_id: str, *orgs: str) -> None:
    for org in orgs:
        status, body = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", org)
        assert status == 200, body
    await world.drain()


REMINDER = "Påminnelse: bekräfta"
NOT_ACKED = "Ej bekräftat"
SAME_DAY = "Ring i dag"


# --- the acknowledgement deadline -----------------------------------------------------------


async def test_a_case_registered_before_christmas_escalates_on_the_monday_after(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    # Wednesday 23 December 2026, 15:00. Julafton, juldagen, annandag jul and the weekend are
    # closed: 2 working hours run out at 17:00 the same day, the escalation is at 10:00 on
    # Monday 28 December.
    async with running_world(
        redis_url,
        tmp_path,
        now=local(2026, 12, 23, 15),
        chats={**CHATS, HC_SUPERVISOR: SUPERVISOR_CHAT},
    ) as world:
        answer = await world.register(arrival(arrival_date="2026-12-28"))
        case_id, reference = answer["id"], answer["reference"]
        view = await world.settled(case_id)

        due = deadlines(view)
        for org in (HC, PRESCHOOL, SCHOOL):
            assert due[("ack_reminder", org)] == iso(local(2026, 12, 23, 17))
            assert due[("ack_escalation", org)] == iso(local(2026, 12, 28, 10))
        # Everyone was reached at once: the same-day check has nothing left to watch.
        assert ("same_day_check", None) not in due
        assert view["notified_same_day"] is True
        # Told on 23 December: three working days on is 30 December, five is 5 January.
        assert due[("booking_reminder", HC)] == iso(local(2026, 12, 30, 8))
        assert due[("booking_escalation", HC)] == iso(local(2027, 1, 5, 17))
        escalation = next(
            d
            for d in view["deadlines"]
            if d["kind"] == "ack_escalation" and d["organisation"] == HC
        )
        assert "Region Jämtland Härjedalen, primärvårdsledningen" in escalation["then"]
        assert all(d["then"] for d in view["deadlines"])

        await acknowledge(world, case_id, SCHOOL)
        view = await world.case(case_id)
        assert ("ack_reminder", SCHOOL) not in deadlines(view)

        world.clock.set(local(2026, 12, 23, 16, 59))
        await world.tick()
        assert not any(mails(world, org, REMINDER) for org in (HC, PRESCHOOL, SCHOOL))

        world.clock.set(local(2026, 12, 23, 17))
        await world.tick()
        for org in (HC, PRESCHOOL):
            [reminder] = mails(world, org, REMINDER)
            assert reference in str(reminder["Subject"])
            text = text_of(reminder)
            assert "onsdag 23 december 2026 kl. 15.00" in text
            assert "Det har gått 2 arbetstimmar" in text
            assert "Enligt överenskommelsen ska mottagandet bekräftas inom två arbetstimmar" in text
            assert "http://ankomst.example.se/a/" in text  # the acknowledge link, by e-mail
            assert len(chats(world, CHATS[org], "Påminnelse")) == 1  # and on the chat too
        assert mails(world, SCHOOL, REMINDER) == []  # it had acknowledged

        # Julafton and the weekend: nothing escalates.
        for moment in (
            local(2026, 12, 24, 10),
            local(2026, 12, 27, 12),
            local(2026, 12, 28, 9, 59),
        ):
            world.clock.set(moment)
            await world.tick()
            assert mails(world, HC_SUPERVISOR, NOT_ACKED) == []
            assert mails(world, RECEPTION, NOT_ACKED) == []

        world.clock.set(local(2026, 12, 28, 10))
        await world.tick()
        [to_region] = mails(world, HC_SUPERVISOR, NOT_ACKED)
        assert "Hälsocentralen Lugnvik" in str(to_region["Subject"])
        assert "Det har gått 4 arbetstimmar" in text_of(to_region)
        assert len(chats(world, SUPERVISOR_CHAT, "Hälsocentralen Lugnvik har inte bekräftat")) == 1
        [to_municipality] = mails(world, MUNICIPAL_SUPERVISOR, NOT_ACKED)
        assert "förskolan" in str(to_municipality["Subject"])
        # The reception unit gets ONE digest for 10:00 naming both (not one mail per recipient).
        [overdue] = mails(world, RECEPTION, NOT_ACKED)
        assert str(overdue["Subject"]).startswith("Ej bekräftat: Hälsocentralen Lugnvik, Östersund")
        assert reference in str(overdue["Subject"])
        assert "Hälsocentralen Lugnvik har inte bekräftat" in text_of(overdue)
        assert "förskolan" in text_of(overdue) and "/dashboard/l/" in text_of(overdue)
        assert all("Lugnviksskolan" not in str(m["Subject"]) for m in world.smtp.messages)

        # Firing again changes nothing; the acknowledgement deadlines are gone from the view.
        await world.tick()
        assert len(mails(world, HC_SUPERVISOR, NOT_ACKED)) == 1
        view = await world.case(case_id)
        assert {kind for kind, _ in deadlines(view)} == {"booking_reminder", "booking_escalation"}
        what = [h["what"] for h in view["history"]]
        assert what.count("ack_reminder") == 2 and what.count("ack_escalation") == 2


async def test_a_reminder_is_sent_once_with_two_processes_watching(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, scheduler_poll_seconds=0.02) as world:
        assert world.config is not None
        # A second `serve` on the same Redis and clock (e-mail only, so one poller of the bot).
        second = Ankomst(
            world.config.model_copy(update={"telegram_token": None, "data_dir": tmp_path / "2"}),
            clock=world.clock,
        )
        other = await second.start()
        try:
            answer = await world.register(arrival())
            await world.settled(answer["id"])
            await eventually(
                lambda: _has_deadlines(world, answer["id"]), what="deadlines to be made"
            )
            world.clock.set(local(2026, 11, 25, 11))  # 2 working hours after 09:00

            async def all_reminded() -> bool:
                return all(mails(world, org, REMINDER) for org in (HC, PRESCHOOL, SCHOOL))

            await eventually(all_reminded, what="the reminders")
            await world.drain()
            await asyncio.sleep(0.2)  # both loops go round many more times
            await world.drain()
            for org in (HC, PRESCHOOL, SCHOOL):
                assert len(mails(world, org, REMINDER)) == 1, org
                assert len(chats(world, CHATS[org], "Påminnelse")) == 1, org
            fired = world.services.scheduler.stats.fired + other.scheduler.stats.fired
            assert fired == 3
        finally:
            await second.stop()


async def _has_deadlines(world: World, case_id: str) -> bool:
    return bool((await world.case(case_id))["deadlines"])


async def test_a_restart_between_due_time_and_firing_still_fires_once(
    redis_url: str, redis: Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival())
        await world.settled(answer["id"])
        await acknowledge(world, answer["id"], SCHOOL, PRESCHOOL)

        async def down_until_thursday() -> None:
            # Every process is down over the reminder (Wed 11:00) and the escalation (Thu 10:00).
            world.clock.set(local(2026, 11, 26, 10, 30))

        with caplog.at_level(logging.WARNING, logger="bot.store.timers"):
            await world.restart(between=down_until_thursday)

            async def fired() -> bool:
                return bool(mails(world, HC, REMINDER) and mails(world, HC_SUPERVISOR, NOT_ACKED))

            await eventually(fired, what="the late reminder and escalation")
            await world.drain()
        assert len(mails(world, HC, REMINDER)) == 1
        assert len(mails(world, HC_SUPERVISOR, NOT_ACKED)) == 1
        assert len(mails(world, RECEPTION, NOT_ACKED)) == 1
        late = [r.getMessage() for r in caplog.records if " late" in r.getMessage()]
        assert any(
            m.startswith(f"timer ack_reminder:{answer['id']}:1:{HC} fired 23 h 30 min late")
            for m in late
        ), late
        assert any(f"ack_escalation:{answer['id']}:1:{HC} fired 30 min late" in m for m in late)
        await world.tick()
        assert len(mails(world, HC, REMINDER)) == 1


async def test_an_acknowledgement_cancels_what_is_pending(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival())
        case_id = answer["id"]
        await world.settled(case_id)
        await acknowledge(world, case_id, HC)

        view = await world.case(case_id)
        assert {kind for kind, org in deadlines(view) if org == HC} == {
            "booking_reminder",
            "booking_escalation",
        }
        for kind in ("ack_reminder", "ack_escalation"):
            timer = await world.services.scheduler.get(f"{kind}:{case_id}:1:{HC}")
            assert timer is not None and timer.state == "cancelled"

        world.clock.set(local(2026, 11, 26, 10))
        await world.tick()
        assert mails(world, HC, REMINDER) == []
        assert mails(world, HC_SUPERVISOR, NOT_ACKED) == []
        assert len(mails(world, SCHOOL, REMINDER)) == 1  # the others are still chased
        # School and preschool share a supervisor: one digest names both (it was two mails).
        [digest] = mails(world, MUNICIPAL_SUPERVISOR, NOT_ACKED)
        assert "Lugnviksskolan har inte bekräftat" in text_of(digest)
        assert "förskolan" in text_of(digest)


async def test_a_date_change_restarts_the_clock(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival())
        case_id = answer["id"]
        await world.settled(case_id)
        world.clock.set(local(2026, 11, 25, 10, 30))
        status, _ = await world.call(
            "PATCH", f"/api/v1/arrivals/{case_id}", RECEPTION, {"arrival_date": "2026-12-01"}
        )
        assert status == 200
        view = await world.settled(case_id)
        assert deadlines(view)[("ack_reminder", HC)] == iso(local(2026, 11, 25, 12, 30))

        world.clock.set(local(2026, 11, 25, 11))  # version 1's reminder time: cancelled
        await world.tick()
        assert mails(world, HC, REMINDER) == []

        world.clock.set(local(2026, 11, 25, 12, 30))
        await world.tick()
        [reminder] = mails(world, HC, REMINDER)
        assert "onsdag 25 november 2026 kl. 10.30" in text_of(reminder)


async def test_a_timer_fired_again_after_a_crash_queues_nothing_twice(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival())
        case_id = answer["id"]
        await world.settled(case_id)
        world.clock.set(local(2026, 11, 25, 11))
        await world.tick()
        assert len(mails(world, HC, REMINDER)) == 1
        # As if the process had died after firing but before recording it: due once more.
        ident = f"ack_reminder:{case_id}:1:{HC}"
        index = keys.case_timers(case_id)
        fired = Timer.from_packed(ident, await redis.hget(index, ident) or "")
        assert fired.state == FIRED
        again = pack(ident, fired.kind, fired.case, fired.due_at, fired.payload, PENDING, 1)
        assert again is not None
        await redis.hset(index, ident, again)
        await redis.zadd(keys.TIMERS, {ident: world.clock.now().timestamp()})
        assert await world.tick() == 1
        assert len(mails(world, HC, REMINDER)) == 1
        history = (await world.case(case_id))["history"]
        assert [h["organisation"] for h in history if h["what"] == "ack_reminder"].count(HC) == 1


async def test_cancellation_cancels_every_deadline(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival())
        case_id = answer["id"]
        await world.settled(case_id)
        status, _ = await world.call(
            "POST", f"/api/v1/arrivals/{case_id}/cancel", RECEPTION, {"reason": "Flyttar inte."}
        )
        assert status == 200
        await world.settled(case_id)
        assert (await world.case(case_id))["deadlines"] == []
        assert all(not t.pending for t in await world.services.scheduler.of_case(case_id))
        world.clock.set(local(2026, 12, 10, 12))
        await world.tick()
        assert mails(world, HC, REMINDER) == [] and mails(world, HC, "Påminnelse: boka") == []


# --- the booking deadline -------------------------------------------------------------------


async def test_the_booking_reminder_and_escalation_come_on_their_working_days(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        # Told Wednesday 25 November at 09:00: reminder Monday 30 November in the morning,
        # escalation when the last day to book, Wednesday 2 December, is over.
        answer = await world.register(arrival())
        case_id, reference = answer["id"], answer["reference"]
        await world.settled(case_id)
        await acknowledge(world, case_id, HC, SCHOOL, PRESCHOOL)
        due = deadlines(await world.case(case_id))
        assert due[("booking_reminder", HC)] == iso(local(2026, 11, 30, 8))
        assert due[("booking_escalation", HC)] == iso(local(2026, 12, 2, 17))

        world.clock.set(local(2026, 11, 30, 7, 59))
        await world.tick()
        assert mails(world, HC, "Påminnelse: boka") == []
        world.clock.set(local(2026, 11, 30, 8))
        await world.tick()
        [reminder] = mails(world, HC, "Påminnelse: boka")
        assert "senast onsdag 2 december 2026" in str(reminder["Subject"])
        text = text_of(reminder)
        assert reference in text
        # Day 0 (25 Nov, when it was told) is not counted: the reminder comes as day 3 begins.
        assert "inom fem arbetsdagar" in text and "I dag är den tredje arbetsdagen" in text
        assert "Det har gått tre arbetsdagar" not in text
        assert "onsdag 25 november 2026 kl. 09.00" in text
        assert len(chats(world, CHATS[HC], "boka hälsosamtal")) == 1

        world.clock.set(local(2026, 12, 2, 16, 59))
        await world.tick()
        assert mails(world, HC_SUPERVISOR, "Ingen bokad tid") == []
        world.clock.set(local(2026, 12, 2, 17))
        await world.tick()
        for org in (HC_SUPERVISOR, RECEPTION):
            [escalation] = mails(world, org, "Ingen bokad tid")
            assert "Hälsocentralen Lugnvik" in str(escalation["Subject"])
            assert "Sista dag för bokning är onsdag 2 december 2026" in text_of(escalation)
        assert (await world.case(case_id))["deadlines"] == []


async def test_a_reported_booking_stops_the_booking_deadline(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival())
        case_id = answer["id"]
        await world.settled(case_id)
        assert ("booking_reminder", HC) in deadlines(await world.case(case_id))
        # The hook the health-booking call will use.
        assert await world.services.deadlines.booking_reported(case_id) == 2
        assert await world.services.deadlines.booking_reported(case_id) == 0
        view = await world.case(case_id)
        assert not {k for k, _ in deadlines(view)} & {"booking_reminder", "booking_escalation"}
        world.clock.set(local(2026, 12, 3, 12))
        await world.tick()
        assert mails(world, HC, "Påminnelse: boka") == []
        assert mails(world, HC_SUPERVISOR, "Ingen bokad tid") == []


# --- the same-day watch ---------------------------------------------------------------------


async def test_every_case_records_that_it_reached_everyone_the_same_working_day(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival())
        view = await world.settled(answer["id"])
        await world.drain()
        view = await world.case(answer["id"])
        assert view["same_day_by"] == "2026-11-25"
        assert view["notified_same_day"] is True
        assert view["notified_at"].startswith("2026-11-25T08:00")
        world.clock.set(local(2026, 11, 25, 16, 30))
        await world.tick()
        assert mails(world, RECEPTION, SAME_DAY) == []  # everyone reached: no alert


async def test_a_saturday_registration_must_reach_everyone_by_monday(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path, now=local(2026, 11, 28, 10)) as world:
        answer = await world.register(arrival(arrival_date="2026-12-01"))
        await world.settled(answer["id"])
        view = await world.case(answer["id"])
        assert view["same_day_by"] == "2026-11-30"
        due = deadlines(view)
        assert due[("ack_reminder", HC)] == iso(local(2026, 11, 30, 10))
        assert due[("ack_escalation", HC)] == iso(local(2026, 12, 1, 10))
        assert view["notified_same_day"] is True
        check = await world.services.scheduler.get(f"same_day_check:{answer['id']}:1")
        assert check is not None and check.due_at == local(2026, 11, 30, 16, 30)


async def test_the_reception_unit_is_alerted_when_a_recipient_has_no_channel(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    directory = tmp_path / "directory.toml"
    directory.write_text(
        EXAMPLE_DIRECTORY.read_text().replace('email = "forskola@ostersund.example.se"\n', "")
    )
    linked = {org: chat for org, chat in CHATS.items() if org != PRESCHOOL}
    async with running_world(redis_url, tmp_path, directory=directory, chats=linked) as world:
        answer = await world.register(arrival())
        await world.settled(answer["id"])
        # At once: nothing can reach the preschool, so the reception unit should phone.
        [alert] = mails(world, RECEPTION, SAME_DAY)
        text = text_of(alert)
        assert "Östersunds kommun, förskolan" in text and "Ingen e-postadress" in text
        assert len(chats(world, CHATS[RECEPTION], "Östersunds kommun, förskolan")) == 1
        view = await world.case(answer["id"])
        assert view["notified_same_day"] is None and view["notified_at"] is None
        assert deadlines(view)[("same_day_check", None)] == iso(local(2026, 11, 25, 16, 30))

        world.clock.set(local(2026, 11, 25, 16, 30))  # and again before the office closes
        await world.tick()
        alerts = mails(world, RECEPTION, SAME_DAY)
        assert len(alerts) == 2
        assert "ingen e-postadress och ingen kopplad chatt" in text_of(alerts[1])

        world.clock.set(local(2026, 11, 26, 0, 0))  # the day is over
        await world.tick()
        view = await world.case(answer["id"])
        assert view["notified_same_day"] is False and view["notified_at"] is None


async def test_the_reception_unit_is_alerted_when_a_delivery_is_stuck(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(
        redis_url, tmp_path, chats={RECEPTION: CHATS[RECEPTION]}, send_attempts=1
    ) as world:
        world.smtp.reject_recipient(ADDRESS[SCHOOL], 451)  # "try again later", for ever
        answer = await world.register(arrival())
        case_id = answer["id"]

        async def stuck() -> bool:
            view = await world.case(case_id)
            school = next(r for r in view["recipients"] if r["organisation"] == SCHOOL)
            statuses = [d["status"] for d in school["deliveries"]]
            return bool(view["deadlines"]) and statuses == ["retrying"]

        await eventually(stuck, what="the school's delivery to be retrying")
        scheduler = world.services.scheduler
        world.clock.set(local(2026, 11, 25, 16, 29))
        await scheduler.run_due()
        assert chats(world, CHATS[RECEPTION], SAME_DAY) == []

        world.clock.set(local(2026, 11, 25, 16, 30))
        assert await scheduler.run_due() == 1

        async def alerted() -> bool:
            return bool(mails(world, RECEPTION, SAME_DAY)) and bool(
                chats(world, CHATS[RECEPTION], "Lugnviksskolan")
            )

        await eventually(alerted, what="the same-day alert")
        [alert] = mails(world, RECEPTION, SAME_DAY)
        text = text_of(alert)
        assert "Lugnviksskolan: meddelandet har ännu inte kunnat skickas" in text
        assert "Hälsocentralen Lugnvik" not in text.split("Orsak")[0]
        assert (await world.case(case_id))["notified_same_day"] is None


@pytest.fixture
async def world(redis_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        yield w


async def test_readiness_includes_the_scheduler(world: World) -> None:
    status, body = await world.call("GET", "/readyz")
    assert status == 200 and body["workers"]["scheduler"] is True
    assert body["workers"]["ankomst:events/deadlines"] is True


async def test_a_booking_reported_through_the_event_stream_stops_the_deadline(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival())
        case_id = answer["id"]
        await world.settled(case_id)
        # What the health-booking call writes along with the booking itself.
        await redis.xadd(
            keys.EVENTS,
            {
                "type": "case.health_booked",
                "case": case_id,
                "version": "1",
                "at": world.clock.now().isoformat(),
                "by": HC,
                "via": "api",
            },
        )
        await world.drain()
        view = await world.case(case_id)
        assert not {k for k, _ in deadlines(view)} & {"booking_reminder", "booking_escalation"}


@pytest.mark.parametrize(
    ("registered", "day", "check"),
    [
        (local(2026, 11, 25, 9), date(2026, 11, 25), local(2026, 11, 25, 16, 30)),
        # Later than the check time: checked a few minutes after, still that day.
        (local(2026, 11, 25, 16, 45), date(2026, 11, 25), local(2026, 11, 25, 16, 50)),
        # After the office has closed, or on a closed day: the next working day counts.
        (local(2026, 11, 25, 18), date(2026, 11, 26), local(2026, 11, 26, 16, 30)),
        (local(2026, 11, 27, 18), date(2026, 11, 30), local(2026, 11, 30, 16, 30)),
        (local(2026, 12, 24, 9), date(2026, 12, 28), local(2026, 12, 28, 16, 30)),
    ],
)
async def test_the_same_working_day_and_its_check(
    world: World, registered: datetime, day: date, check: datetime
) -> None:
    assert world.services.deadlines.same_day_due(registered) == (day, check)


# --- escalations as a digest ----------------------------------------------------------------


async def test_three_overdue_cases_give_one_digest_per_organisation(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    """Three cases told the same day, none acknowledged: at 10:00 the next working day the
    reception unit gets ONE mail listing all three, and so does each supervisor; each case
    still records its own escalations in its history."""
    async with running_world(redis_url, tmp_path) as world:
        references = []
        ids = []
        for n in range(3):
            answer = await world.register(arrival(external_ref=f"MIG-2026-99900{n}"))
            ids.append(answer["id"])
            references.append(answer["reference"])
        for case_id in ids:
            await world.settled(case_id)
        # Registered Wednesday 25 November 09:00: escalation Thursday 26 November at 10:00.
        world.clock.set(local(2026, 11, 26, 9, 59))
        await world.tick()
        assert mails(world, RECEPTION, NOT_ACKED) == []
        listed = await case_timer_ids(redis, DIGEST_TIMERS)
        world.clock.set(local(2026, 11, 26, 10))
        await world.tick()
        await world.drain()
        # A fired digest timer is forgotten whole (it belongs to no case): nothing of it is
        # left in the digests' index, the due set or a hash of its own.
        fired = [i for i in listed if i.endswith(f":{int(local(2026, 11, 26, 10).timestamp())}")]
        assert len(fired) == 3  # the reception unit's and the two supervisors'
        assert all(i.startswith(f"escalation_digest:{DIGEST_TIMERS}:") for i in fired)
        assert not set(fired) & set(await case_timer_ids(redis, DIGEST_TIMERS))
        for ident in fired:
            assert await world.services.scheduler.get(ident) is None
            assert await redis.zscore(keys.TIMERS, ident) is None

        for org in (RECEPTION, HC_SUPERVISOR, MUNICIPAL_SUPERVISOR):
            [digest] = mails(world, org, NOT_ACKED)
            assert str(digest["Subject"]) == "Ej bekräftat: 3 ärenden", org
            text = text_of(digest)
            assert "3 ärenden har passerat en tidsgräns" in text
            for reference in references:
                assert reference in text
            assert text.count("/dashboard/l/") == 3  # a link to each case
            assert "fredag 27 november 2026" in text  # the arrival date
            assert "Familj" not in text and "A.K." not in text  # nothing private
        reception = text_of(mails(world, RECEPTION, NOT_ACKED)[0])
        assert reception.count("Hälsocentralen Lugnvik har inte bekräftat") == 3
        assert reception.count("Lugnviksskolan har inte bekräftat") == 3
        # The region's supervisor hears only of its own health centre.
        region = text_of(mails(world, HC_SUPERVISOR, NOT_ACKED)[0])
        assert "Lugnviksskolan" not in region
        # One chat message too, not three.
        assert len(chats(world, CHATS[RECEPTION], "Försenade ärenden")) == 1

        # Firing again sends nothing more; each case's history keeps its escalations.
        await world.tick()
        await world.drain()
        assert len(mails(world, RECEPTION, NOT_ACKED)) == 1
        # A replayed event may make a fired digest's timer again (it left no tombstone): it
        # fires, finds its digest sent, and nothing more goes out.
        instant = local(2026, 11, 26, 10)
        for ident in fired:
            org = ident.rsplit(":", 1)[0].split(":", 2)[2]
            payload = {"organisation": org, "stamp": int(instant.timestamp())}
            made = await world.services.scheduler.schedule(
                ident, ESCALATION_DIGEST, DIGEST_TIMERS, instant, payload
            )
            assert made
        await world.tick()
        await world.drain()
        assert await case_timer_ids(redis, DIGEST_TIMERS) == sorted(set(listed) - set(fired))
        for org in (RECEPTION, HC_SUPERVISOR, MUNICIPAL_SUPERVISOR):
            assert len(mails(world, org, NOT_ACKED)) == 1, org
        for case_id in ids:
            what = [h["what"] for h in (await world.case(case_id))["history"]]
            assert what.count("ack_escalation") == 3


async def test_a_case_acknowledged_before_the_digest_is_left_out(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        first = await world.register(arrival(external_ref="MIG-2026-999100"))
        second = await world.register(arrival(external_ref="MIG-2026-999101"))
        for case_id in (first["id"], second["id"]):
            await world.settled(case_id)
        await acknowledge(world, second["id"], HC, SCHOOL, PRESCHOOL)
        world.clock.set(local(2026, 11, 26, 10))
        await world.tick()
        await world.drain()
        [digest] = mails(world, RECEPTION, NOT_ACKED)
        assert first["reference"] in str(digest["Subject"])
        assert second["reference"] not in text_of(digest)


async def test_a_digest_timer_of_the_older_form_fires_the_same_and_leaves_nothing(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    """A digest timer made before its id said its pseudo-case (`escalation_digest:{org}:{when}`,
    a hash of its own listed in the digests' index with ""), as a deployment has it after the
    upgrade: it fires the digest, and is then forgotten whole. Beside one of the new form for the
    same digest (a replayed event after the upgrade), the digest still goes out once."""
    async with running_world(redis_url, tmp_path) as world:
        case_id = (await world.register(arrival(external_ref="MIG-2026-999200")))["id"]
        await world.settled(case_id)
        instant = local(2026, 11, 26, 10)
        stamp = int(instant.timestamp())
        older = {
            org: f"{ESCALATION_DIGEST}:{org}:{stamp}" for org in (RECEPTION, MUNICIPAL_SUPERVISOR)
        }
        # The reception unit's digest timer only of the older form; the supervisor's of both.
        await redis.zrem(keys.TIMERS, digest_timer_id(RECEPTION, stamp))
        await redis.hdel(keys.case_timers(DIGEST_TIMERS), digest_timer_id(RECEPTION, stamp))
        for org, ident in older.items():
            payload = {"organisation": org, "stamp": stamp}
            made = await world.services.scheduler.schedule(
                ident, ESCALATION_DIGEST, DIGEST_TIMERS, instant, payload
            )
            assert made
            assert await redis.exists(keys.timer(ident))
            assert await redis.hget(keys.case_timers(DIGEST_TIMERS), ident) == ""
        world.clock.set(instant)
        await world.tick()
        await world.drain()
        for org in (RECEPTION, MUNICIPAL_SUPERVISOR):
            [digest] = mails(world, org, NOT_ACKED)
            assert str(digest["Subject"]).startswith("Ej bekräftat"), org
        for ident in [*older.values(), digest_timer_id(MUNICIPAL_SUPERVISOR, stamp)]:
            assert not await redis.exists(keys.timer(ident))
            assert not await redis.hexists(keys.case_timers(DIGEST_TIMERS), ident)
            assert await redis.zscore(keys.TIMERS, ident) is None


# --- made in one step, and only while it stands ----------------------------------------------


async def _forget_timers(redis: Redis, case_id: str, *kinds: str) -> None:
    """As if the timers (of `kinds`, else all) of the case had not been made yet."""
    ids = [
        i for i in await case_timer_ids(redis, case_id) if not kinds or i.split(":", 1)[0] in kinds
    ]
    if ids:
        await redis.delete(*(keys.timer(i) for i in ids))
        await redis.zrem(keys.TIMERS, *ids)
        await redis.hdel(keys.case_timers(case_id), *ids)


async def test_a_version_handled_after_an_acknowledgement_makes_no_chase_of_it(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    """Events are handled concurrently: when the version's event is handled after a
    recipient acknowledged, the recipient gets no reminder, no escalation and no digest entry,
    and the others get theirs (the check is made where the timers are written)."""
    async with running_world(redis_url, tmp_path) as world:
        case_id = (await world.register(arrival()))["id"]
        await world.settled(case_id)
        await acknowledge(world, case_id, SCHOOL)
        await _forget_timers(redis, case_id)
        stamp = int(local(2026, 11, 26, 10).timestamp())
        digests = [keys.escalation_digest(o, stamp) for o in (RECEPTION, MUNICIPAL_SUPERVISOR)]
        await redis.delete(*digests)

        await world.services.deadlines.version_told(case_id, 1, local(2026, 11, 25, 9))
        made = {t.id for t in await world.services.scheduler.of_case(case_id) if t.pending}
        for org in (HC, PRESCHOOL):
            assert f"ack_reminder:{case_id}:1:{org}" in made
            assert f"ack_escalation:{case_id}:1:{org}" in made
        assert not any(SCHOOL in ident for ident in made)
        assert f"same_day_check:{case_id}:1" in made
        listed = [m for d in digests for m in await redis.hkeys(d)]
        assert any(PRESCHOOL in m for m in listed)
        assert not any(SCHOOL in m for m in listed)

        # Handled once more (a redelivered entry): nothing new, nothing twice.
        before = await redis.zrange(keys.TIMERS, 0, -1, withscores=True)
        await world.services.deadlines.version_told(case_id, 1, local(2026, 11, 25, 9))
        assert await redis.zrange(keys.TIMERS, 0, -1, withscores=True) == before


async def test_a_health_centres_booking_clock_starts_once_from_its_first_message(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        case_id = (await world.register(arrival()))["id"]
        await world.settled(case_id)
        deadlines_ = world.services.deadlines
        scheduler = world.services.scheduler
        reminder_id = f"booking_reminder:{case_id}:{HC}"
        first = await scheduler.get(reminder_id)
        assert first is not None and first.due_at == local(2026, 11, 30, 8)
        informed = await redis.hget(keys.case_markers(case_id), keys.booking_informed_marker(HC))

        # Another message to it two days later (a second channel, a redelivered event):
        # nothing moves.
        await deadlines_.delivered(case_id, 1, HC, local(2026, 11, 27, 9))
        assert await scheduler.get(reminder_id) == first
        assert (
            await redis.hget(keys.case_markers(case_id), keys.booking_informed_marker(HC))
            == informed
        )

        # As if the process had died after the first reach was recorded but before the
        # booking timers were made: the next message makes them, from the first reach.
        await _forget_timers(redis, case_id, "booking_reminder", "booking_escalation")
        await deadlines_.delivered(case_id, 1, HC, local(2026, 11, 27, 9))
        again = await scheduler.get(reminder_id)
        assert again is not None and again.due_at == first.due_at
        assert again.payload == first.payload

        # A booking reported: no message brings the timers back.
        assert await deadlines_.booking_reported(case_id, HC) == 2
        await _forget_timers(redis, case_id, "booking_reminder", "booking_escalation")
        await deadlines_.delivered(case_id, 1, HC, local(2026, 11, 27, 10))
        assert await scheduler.get(reminder_id) is None

        # A message to an organisation not on the case changes nothing; a case gone is said.
        await deadlines_.delivered(case_id, 1, "berg-skola", local(2026, 11, 27, 10))
        assert not await redis.hexists(keys.case_reached(case_id), "berg-skola")
        with pytest.raises(CaseNotFound):
            await deadlines_.delivered("no-such-case", 1, HC, local(2026, 11, 27, 10))


async def test_a_digest_entry_enlisted_in_the_older_layout_is_still_listed(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        answer = await world.register(arrival())
        case_id = answer["id"]
        await world.settled(case_id)
        digest = keys.escalation_digest(RECEPTION, int(local(2026, 11, 26, 10).timestamp()))
        entries = await redis.hgetall(digest)
        assert entries and all(len(v) <= 64 for v in entries.values())
        for member, value in entries.items():
            kind, case, org, version = str(member).split("|")
            older = {"kind": kind, "case": case, "organisation": org, "version": int(version)}
            await redis.hset(digest, member, json.dumps({**older, **json.loads(value)}))
        world.clock.set(local(2026, 11, 26, 10))
        await world.tick()
        await world.drain()
        [overdue] = mails(world, RECEPTION, NOT_ACKED)
        assert answer["reference"] in str(overdue["Subject"])
        assert "Hälsocentralen Lugnvik har inte bekräftat" in text_of(overdue)
