"""The yearly follow-up from a case that went the whole routine, and the command that prints it."""

from __future__ import annotations

import asyncio
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.usecases.report import build_report, percentile
from tests.support.cli import CliResult, run_cli
from tests.support.world import EXAMPLE_DIRECTORY, STOCKHOLM, World, arrival, running_world

ROOT = Path(__file__).resolve().parents[2]
HC, SCHOOL, PRESCHOOL = "hc-lugnvik", "ostersund-skola", "ostersund-forskola"
RECEPTION = "ostersund-mottagning"


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=STOCKHOLM)


async def move_to(world: World, moment: datetime) -> None:
    world.clock.advance(moment - world.clock.now())
    await world.tick()


async def ack(world: World, case_id: str, org: str) -> None:
    status, body = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", org)
    assert status == 200, body
    await world.drain()


def row(report: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(r for r in report["rows"] if r["municipality"] == "ostersund" and r["kind"] == kind)


async def cli(*args: str, redis_url: str, data_dir: Path) -> CliResult:
    """`ankomst ARGS` in this process (on a thread: the command runs its own event loop)."""
    env = {
        "ANKOMST_REDIS_URL": redis_url,
        "ANKOMST_DIRECTORY": str(EXAMPLE_DIRECTORY),
        "ANKOMST_DATA_DIR": str(data_dir),
    }
    return await asyncio.to_thread(run_cli, *args, env=env, cwd=ROOT)


def test_the_90th_percentile_is_the_nearest_rank() -> None:
    assert percentile([], 0.9) is None
    assert percentile([1.0, 3.0, 11.0], 0.9) == 11.0
    assert percentile([float(x) for x in range(1, 11)], 0.9) == 9.0


async def test_the_follow_up_counts_a_case_that_went_the_whole_routine(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    # Wednesday 25 November 2026, 09:00.
    async with running_world(redis_url, tmp_path, now=at(25, 9)) as world:
        case_id = (await world.register(arrival()))["id"]
        await world.settled(case_id)
        await move_to(world, at(25, 10))
        await ack(world, case_id, HC)  # 1 working hour
        await move_to(world, at(25, 12))  # the reminders went at 11:00
        await ack(world, case_id, SCHOOL)  # 3 working hours
        status, raised = await world.call(
            "POST", f"/api/v1/arrivals/{case_id}/disagreements", SCHOOL, {"text": "Skolplats?"}
        )
        assert status == 201
        status, _ = await world.call(
            "POST",
            f"/api/v1/arrivals/{case_id}/health-booking",
            HC,
            {"at": "2026-11-30T09:30", "interpreter_booked": True},
        )
        assert status == 200
        await move_to(world, at(26, 11))  # escalated at 10:00
        await ack(world, case_id, PRESCHOOL)  # 8 + 3 = 11 working hours, 26 wall hours
        await move_to(world, at(27, 9))
        status, _ = await world.call(
            "POST",
            f"/api/v1/disagreements/{raised['id']}/resolve",
            RECEPTION,
            {"decision": "Plats ordnas."},
        )
        assert status == 200
        await world.drain()

        report = await build_report(
            redis,
            world.services.directory,
            world.services.calendar,
            date(2026, 1, 1),
            date(2026, 12, 31),
            now=world.clock.now(),
        )
        total = row(report, "alla")
        assert total["arrivals"] == 1
        assert total["notified_same_day_share"] == 1.0
        assert total["acknowledgements"] == 3
        assert total["ack_median_working_hours"] == 3.0
        assert total["ack_p90_working_hours"] == 11.0
        assert total["ack_p90_wall_hours"] == 26.0
        assert total["booking_within_5_share"] == 1.0
        assert (total["reminders"], total["escalations"]) == (2, 1)
        assert (total["disagreements"], total["disagreements_open"]) == (1, 0)
        assert total["disagreement_median_days_open"] == round(45 / 24, 2)
        assert row(report, "health_centre")["ack_median_working_hours"] == 1.0
        assert row(report, "school")["reminders"] == 1
        assert row(report, "school")["disagreements"] == 1
        preschool = row(report, "preschool")
        assert (preschool["reminders"], preschool["escalations"]) == (1, 1)
        assert preschool["booking_within_5_share"] is None

        # The command prints the same figures, in each format.
        as_json = await cli(
            "report",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--format",
            "json",
            redis_url=redis_url,
            data_dir=tmp_path,
        )
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout)["rows"] == report["rows"]
        as_csv = await cli(
            "report",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            redis_url=redis_url,
            data_dir=tmp_path,
        )
        header, *lines = as_csv.stdout.splitlines()
        assert header.startswith("municipality,kind,arrivals,cancelled,children_0,")
        assert any(line.startswith("ostersund,alla,1,0,") for line in lines)
        out = tmp_path / "uppfoljning.html"
        as_html = await cli(
            "report",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-30",
            "--format",
            "html",
            "--output",
            str(out),
            redis_url=redis_url,
            data_dir=tmp_path,
        )
        assert as_html.returncode == 0 and as_html.stdout == ""
        page = out.read_text()
        assert "<h1>Uppföljning av ankomster</h1>" in page
        assert page.count("<svg") == 5
        assert "Andel underrättade samma arbetsdag" in page
        for outside in ("<script", "src=", "href=", "url("):
            assert outside not in page
        # Nothing registered in October.
        empty = await cli(
            "report",
            "--from",
            "2026-10-01",
            "--to",
            "2026-10-31",
            "--format",
            "json",
            redis_url=redis_url,
            data_dir=tmp_path,
        )
        # Every municipality of the directory is listed all the same, with zeros.
        empty_rows = json.loads(empty.stdout)["rows"]
        assert [r["municipality"] for r in empty_rows] == sorted(
            world.services.directory.municipalities
        )
        assert all(r["arrivals"] == 0 and r["kind"] == "alla" for r in empty_rows)

        trail = tmp_path / "audit.jsonl"
        exported = await cli(
            "audit", "export", "--output", str(trail), redis_url=redis_url, data_dir=tmp_path
        )
        assert exported.returncode == 0, exported.stderr
        lines_out = [json.loads(line) for line in trail.read_text().splitlines()]
        assert {r["kind"] for r in lines_out} == {"read", "change"}
        assert "Skolplats" not in trail.read_text()
