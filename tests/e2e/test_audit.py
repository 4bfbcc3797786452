"""The audit trail: every read of a case through the API, the board and chat, every refused read,
every state change — each with who (organisation, role, token label or chat), when and through
which channel — and `ankomst audit export` with its filters."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.store import keys
from bot.store.trim import TRIMMED, trim_streams
from bot.usecases.audit import export
from tests.support.cli import CliResult, run_cli
from tests.support.world import CHATS, World, arrival, eventually, running_world

RECEPTION = "ostersund-mottagning"
SCHOOL = "ostersund-skola"
HC = "hc-lugnvik"
OTHER_SCHOOL = "berg-skola"  # another municipality's school


@dataclass
class Trail:
    """A running world with one registered case, made with labelled tokens."""

    world: World
    case_id: str
    reference: str
    labels: dict[str, str]  # org -> its token's label


@pytest.fixture
async def trail(redis_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[Trail]:
    async with running_world(redis_url, tmp_path) as world:
        labels = {}
        for org_id in (RECEPTION, SCHOOL, HC, OTHER_SCHOOL):
            labels[org_id] = f"System för {org_id}"
            token, _ = await world.services.tokens.issue(org_id, label=labels[org_id])
            world.tokens[f"{org_id}/member"] = token
        answer = await world.register(arrival())
        await world.settled(answer["id"])  # reads the case as the reception unit: not the test's
        await world.services.redis.delete(keys.AUDIT)
        yield Trail(world, answer["id"], answer["reference"], labels)


async def rows(world: World) -> list[dict[str, Any]]:
    return [json.loads(line) async for line in export(world.services.redis)]


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def signed_in(world: World, org_id: str) -> aiohttp.ClientSession:
    """A browser signed in to the board as `org_id` (person "test")."""
    token = await world.services.dashboard.create_login(org_id, "member", "test")
    client = browser()
    async with client.post(f"{world.base}/dashboard/login/{token}", allow_redirects=False) as r:
        assert r.status == 303
    return client


async def test_an_api_read_names_organisation_role_label_time_and_channel(trail: Trail) -> None:
    world = trail.world
    world.clock.advance(timedelta(minutes=5))
    status, _ = await world.call("GET", f"/api/v1/arrivals/{trail.case_id}", HC)
    assert status == 200
    (read,) = [r for r in await rows(world) if r["kind"] == "read"]
    assert read["case"] == trail.case_id and read["what"] == "read"
    assert (read["by"], read["role"], read["label"]) == (HC, "member", trail.labels[HC])
    assert read["via"] == "api" and read["who"].startswith("token:tk")
    assert read["at"] == world.clock.now().isoformat()


async def test_a_board_read_is_logged(trail: Trail) -> None:
    world = trail.world
    async with await signed_in(world, SCHOOL) as client:
        async with client.get(f"{world.base}/dashboard") as r:
            assert r.status == 200
        async with client.get(f"{world.base}/dashboard/cases/{trail.case_id}") as r:
            assert r.status == 200
    reads = [r for r in await rows(world) if r["kind"] == "read"]
    assert {(r["by"], r["via"], r["case"], r["who"]) for r in reads} == {
        (SCHOOL, "dashboard:list", trail.case_id, "test"),
        (SCHOOL, "dashboard", trail.case_id, "test"),
    }
    assert all(r["role"] == "member" for r in reads)


async def test_a_chat_case_list_is_logged_with_the_chat(trail: Trail) -> None:
    world = trail.world
    chat = CHATS[SCHOOL]
    before = len(world.telegram.sent_to(chat))
    world.telegram.push_update(world.telegram.message_update(chat, "/arenden"))

    async def answered() -> bool:
        return any("Öppna ärenden" in (c.text or "") for c in world.telegram.sent_to(chat)[before:])

    await eventually(answered, 10.0, "/arenden")
    reads = [r for r in await rows(world) if r["kind"] == "read"]
    assert [(r["by"], r["via"], r["case"], r["chat"]) for r in reads] == [
        (SCHOOL, "telegram:list", trail.case_id, str(chat))
    ]
    assert reads[0]["who"].startswith("tg-user:") and reads[0]["role"] == "member"


async def test_a_case_shown_in_a_chat_dialogue_is_logged(trail: Trail) -> None:
    world = trail.world
    chat = CHATS[RECEPTION]
    before = len(world.telegram.sent_to(chat))
    world.telegram.push_update(world.telegram.message_update(chat, f"/andra {trail.reference}"))

    async def asked() -> bool:
        return any("nya datumet" in (c.text or "") for c in world.telegram.sent_to(chat)[before:])

    await eventually(asked, 10.0, "/andra")
    reads = [r for r in await rows(world) if r["kind"] == "read"]
    assert [(r["by"], r["via"], r["case"], r["chat"]) for r in reads] == [
        (RECEPTION, "telegram", trail.case_id, str(chat))
    ]


async def test_refused_reads_are_logged_with_who_tried_what(trail: Trail) -> None:
    world = trail.world
    status, _ = await world.call("GET", f"/api/v1/arrivals/{trail.case_id}", OTHER_SCHOOL)
    assert status == 403
    status, _ = await world.call("GET", "/api/v1/arrivals/no-such-case", OTHER_SCHOOL)
    assert status == 404
    status, _ = await world.call(
        "GET", f"/api/v1/arrivals/{trail.case_id}/disagreements", OTHER_SCHOOL
    )
    assert status == 403
    status, _ = await world.call("GET", "/api/v1/arrivals?municipality=berg", RECEPTION)
    assert status == 403
    async with (
        await signed_in(world, OTHER_SCHOOL) as client,
        client.get(f"{world.base}/dashboard/cases/{trail.case_id}") as r,
    ):
        assert r.status == 404
    everything = await rows(world)
    refused = [r for r in everything if r["kind"] == "refused"]
    assert [(r["by"], r["case"], r["via"], r["reason"]) for r in refused] == [
        (OTHER_SCHOOL, trail.case_id, "api", "forbidden"),
        (OTHER_SCHOOL, "no-such-case", "api", "not_found"),
        (OTHER_SCHOOL, trail.case_id, "api", "forbidden"),
        (RECEPTION, "municipality:berg", "api:list", "forbidden"),
        (OTHER_SCHOOL, trail.case_id, "dashboard", "forbidden"),
    ]
    assert refused[0]["label"] == trail.labels[OTHER_SCHOOL]
    assert not [r for r in everything if r["kind"] == "read"]  # a refusal is never a read


async def test_patch_and_cancel_answers_are_reads_and_their_changes_are_in_the_trail(
    trail: Trail,
) -> None:
    world = trail.world
    path = f"/api/v1/arrivals/{trail.case_id}"
    status, _ = await world.call("PATCH", path, RECEPTION, {"arrival_date": "2026-11-30"})
    assert status == 200
    status, _ = await world.call(
        "POST", path + "/cancel", RECEPTION, {"reason": "Familjen har flyttat till Krokom."}
    )
    assert status == 200
    everything = await rows(world)
    reads = [(r["by"], r["via"], r["label"]) for r in everything if r["kind"] == "read"]
    label = trail.labels[RECEPTION]
    assert reads == [(RECEPTION, "api:change", label), (RECEPTION, "api:cancel", label)]
    changes = [(r["what"], r["by"], r.get("label")) for r in everything if r["kind"] == "change"]
    for what in ("registered", "changed", "cancelled"):
        assert (what, RECEPTION, label) in changes
    assert "Krokom" not in json.dumps(everything, ensure_ascii=False)  # the reason stays put


async def cli(redis_url: str, tmp_path: Path, *args: str) -> CliResult:
    env = {"ANKOMST_REDIS_URL": redis_url, "ANKOMST_DATA_DIR": str(tmp_path / "cli")}
    return await asyncio.to_thread(run_cli, *args, env=env)


def lines_of(result: CliResult) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


async def test_export_filters_by_case_organisation_and_dates(
    trail: Trail, redis_url: str, tmp_path: Path
) -> None:
    world = trail.world
    second = (await world.register(arrival(external_ref="MIG-2026-999999")))["id"]
    await world.settled(second)
    await world.case(trail.case_id, HC)  # 25 November (Stockholm)
    world.clock.advance(timedelta(days=2))
    await world.case(second, SCHOOL)  # 27 November
    await world.case(trail.case_id, SCHOOL)

    every = lines_of(await cli(redis_url, tmp_path, "audit", "export"))
    assert {r["kind"] for r in every} == {"read", "change"}
    by_case = lines_of(await cli(redis_url, tmp_path, "audit", "export", "--case", second))
    assert by_case and all(r["case"] == second for r in by_case)
    by_reference = lines_of(
        await cli(redis_url, tmp_path, "audit", "export", "--case", trail.reference)
    )
    assert by_reference and all(r["case"] == trail.case_id for r in by_reference)
    by_school = lines_of(await cli(redis_url, tmp_path, "audit", "export", "--org", SCHOOL))
    assert [(r["case"], r["by"]) for r in by_school] == [(second, SCHOOL), (trail.case_id, SCHOOL)]
    first_day = lines_of(
        await cli(
            redis_url, tmp_path, "audit", "export", "--from", "2026-11-25", "--to", "2026-11-25"
        )
    )
    assert first_day and all(r["at"].startswith("2026-11-25") for r in first_day)
    assert (HC, "read") in {(r["by"], r["kind"]) for r in first_day}
    later = lines_of(await cli(redis_url, tmp_path, "audit", "export", "--from", "2026-11-26"))
    assert [(r["by"], r["case"]) for r in later] == [(SCHOOL, second), (SCHOOL, trail.case_id)]
    both = lines_of(
        await cli(
            redis_url, tmp_path, "audit", "export",
            "--case", trail.case_id, "--org", SCHOOL, "--to", "2026-11-30",
        )
    )  # fmt: skip
    assert [(r["by"], r["case"]) for r in both] == [(SCHOOL, trail.case_id)]
    assert len(every) == len(
        lines_of(
            await cli(
                redis_url, tmp_path, "audit", "export", "--from", "2026-11-01", "--to", "2026-12-31"
            )
        )
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--from", "2026-13-01"), "--from: not a date (YYYY-MM-DD): '2026-13-01'"),
        (("--to", "igår"), "--to: not a date (YYYY-MM-DD): 'igår'"),
        (("--from", "2026-12-02", "--to", "2026-12-01"), "--to is before --from"),
        (("--org", ""), "--org: empty"),
    ],
)
async def test_export_refuses_bad_filters_in_one_line(
    redis_url: str, redis: Redis, tmp_path: Path, options: tuple[str, ...], words: str
) -> None:
    result = await cli(redis_url, tmp_path, "audit", "export", *options)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"ankomst: {words}"]


async def test_the_trail_is_kept_by_stream_trimming_and_retention(trail: Trail) -> None:
    world = trail.world
    redis = world.services.redis
    path = f"/api/v1/arrivals/{trail.case_id}"
    await world.case(trail.case_id, HC)
    status, _ = await world.call("POST", path + "/cancel", RECEPTION, {"reason": "Flyttat."})
    assert status == 200
    await world.drain()
    before = await redis.xrange(keys.AUDIT)
    assert before and not await redis.xinfo_groups(keys.AUDIT)  # no group consumes it
    assert keys.AUDIT not in TRIMMED
    await trim_streams(redis)
    assert world.services.retention is not None
    world.clock.advance(timedelta(days=400))  # far beyond the retention time
    await world.tick()
    assert trail.case_id in await world.services.retention.sweep()
    assert await redis.xrange(keys.AUDIT) == before


# -- refused reads in chat, and the e-mail acknowledge page ------------------------------------

SOCIAL = "ostersund-socialtjanst"  # not on the case (the children came with their family)
OTHER_RECEPTION = "berg-mottagning"
OTHER_RECEPTION_CHAT = 2101


def button(world: World, chat: int, reference: str, text: str) -> str:
    """The callback data of the button `text` under the message about `reference` in `chat`."""
    for call in world.telegram.sent_to(chat):
        if reference not in (call.text or ""):
            continue
        markup = call.params.get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            for b in row:
                if b["text"].startswith(text):
                    return str(b["callback_data"])
    raise AssertionError(f"no {text!r} button in chat {chat}")


async def pressed(world: World, chat: int, data: str) -> str:
    """Press a button in `chat`; the answer's text."""
    before = len(world.telegram.calls_to("answerCallbackQuery"))
    world.telegram.push_update(world.telegram.callback_update(chat, data))

    async def answered() -> bool:
        return len(world.telegram.calls_to("answerCallbackQuery")) > before

    await eventually(answered, 10.0, f"the press in chat {chat} to be answered")
    return str(world.telegram.calls_to("answerCallbackQuery")[-1].params.get("text", ""))


async def said(world: World, chat: int, text: str) -> str:
    """Say `text` in `chat`; the reply."""
    before = len(world.telegram.sent_to(chat))
    world.telegram.push_update(world.telegram.message_update(chat, text))

    async def replied() -> bool:
        return len(world.telegram.sent_to(chat)) > before

    await eventually(replied, 10.0, f"a reply to {text!r} in chat {chat}")
    return world.telegram.sent_to(chat)[before].text or ""


async def test_refused_reads_in_chat_are_logged_as_refused(trail: Trail) -> None:
    world = trail.world
    await world.link_chat(OTHER_RECEPTION, OTHER_RECEPTION_CHAT)
    # Case buttons forwarded to a chat of an organisation that may not use them.
    book = button(world, CHATS[HC], trail.reference, "Boka")
    assert (await pressed(world, CHATS[SCHOOL], book)).startswith("Bara hälsocentralen")
    ack = button(world, CHATS[SCHOOL], trail.reference, "Mottaget")
    await pressed(world, CHATS[SOCIAL], ack)
    # A case command from a chat that is not the case's reception unit.
    assert "Bara kommunens" in await said(world, CHATS[SCHOOL], f"/andra {trail.reference}")
    reply = await said(world, OTHER_RECEPTION_CHAT, f"/stall_in {trail.reference}")
    assert "mottagningsenhet" in reply
    everything = await rows(world)
    refused = [r for r in everything if r["kind"] == "refused"]
    assert [(r["by"], r["case"], r["via"], r["reason"], r["chat"]) for r in refused] == [
        (SCHOOL, trail.case_id, "telegram:button", "forbidden", str(CHATS[SCHOOL])),
        (SOCIAL, trail.case_id, "telegram:button", "forbidden", str(CHATS[SOCIAL])),
        (SCHOOL, trail.case_id, "telegram", "forbidden", str(CHATS[SCHOOL])),
        (OTHER_RECEPTION, trail.case_id, "telegram", "forbidden", str(OTHER_RECEPTION_CHAT)),
    ]
    assert all(r["who"].startswith("tg-user:") and r["role"] == "member" for r in refused)
    assert not [r for r in everything if r["kind"] == "read"]  # a refusal is never a read
    # Nothing was done: the school's acknowledgement still waits, the case is as it was.
    case = await world.services.cases.store.get(trail.case_id)
    assert (case.version, case.status) == (1, "open")
    assert f"1:{SOCIAL}" not in await world.services.cases.store.acks(trail.case_id)


async def test_the_email_acknowledge_page_is_a_read(trail: Trail) -> None:
    world = trail.world
    (mail,) = world.mails_to("skola@ostersund.example.se")
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    link = re.search(r"(/a/\S+)", str(body.get_content()))
    assert link is not None
    world.clock.advance(timedelta(minutes=3))
    status, page = await world.call("GET", link.group(1))
    assert status == 200 and trail.reference in page
    (read,) = [r for r in await rows(world) if r["kind"] == "read"]
    assert (read["by"], read["case"], read["via"], read["what"]) == (
        SCHOOL,
        trail.case_id,
        "email-link",
        "read",
    )
    assert read["at"] == world.clock.now().isoformat()
    # A page that cannot be read (a forged link) is no read of any case.
    status, _ = await world.call("GET", "/a/forged-token")
    assert status == 404
    assert len([r for r in await rows(world) if r["kind"] == "read"]) == 1
