"""API tokens as an operator manages them: made with a label and an expiry, listed without the
secret, revoked with immediate effect in every process on the same Redis; the audit trail names
a token by its label and organisation. Tokens made before labels keep working."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from redis.asyncio import Redis

from bot.store import keys
from bot.usecases.access import NO_LABEL, token_records
from bot.usecases.audit import export
from handlers.main import Ankomst
from tests.support.cli import CliResult, run_cli
from tests.support.world import World, arrival, running_world

RECEPTION = "ostersund-mottagning"
SCHOOL = "ostersund-skola"


@pytest.fixture
async def world(redis_url: str, redis: Redis, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path, link_chats=False) as w:
        yield w


async def cli(redis_url: str, tmp_path: Path, *args: str) -> CliResult:
    """`ankomst ARGS` in-process against the test's Redis."""
    env = {"ANKOMST_REDIS_URL": redis_url, "ANKOMST_DATA_DIR": str(tmp_path / "cli")}
    return await asyncio.to_thread(run_cli, *args, env=env)


async def status_with(base: str, token: str, path: str = "/api/v1/arrivals") -> int:
    """The status a request with `token` gets from the service at `base`."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(base + path, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        return response.status


@pytest.fixture
async def second(world: World) -> AsyncIterator[str]:
    """A second Ankomst process-equivalent on the same Redis (no chat): its HTTP root."""
    assert world.config is not None
    config = world.config.model_copy(update={"telegram_token": None})
    other = Ankomst(config, clock=world.clock)
    await other.start()
    try:
        yield f"http://127.0.0.1:{other.port}"
    finally:
        await other.stop()


async def test_create_with_label_and_expiry_then_list_without_the_secret(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    made = await cli(
        redis_url,
        tmp_path,
        "token", "create", SCHOOL, "--role", "supervisor",
        "--label", "Elevregistret Procapita", "--expires", "30",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("ank_") and len(made.stdout.splitlines()) == 1
    (info,) = await token_records(world.services.redis)
    assert (info.org_id, info.role, info.label) == (SCHOOL, "supervisor", "Elevregistret Procapita")
    assert info.created_at is not None and info.expires_at is not None
    assert info.expires_at - info.created_at == timedelta(days=30)
    assert info.id in made.stderr and "revoke" in made.stderr
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert info.id not in digest  # the public id is not a piece of the hash

    other = await world.services.tokens.issue(RECEPTION, label="Mottagningens system")
    listed = await cli(redis_url, tmp_path, "token", "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "ORGANISATION", "ROLE"]
    assert any(info.id in line and "Elevregistret Procapita" in line for line in lines)
    assert any(other[1].id in line and "Mottagningens system" in line for line in lines)
    for secret in (token, other[0], digest, digest[:12]):
        assert secret not in listed.stdout + listed.stderr
    only_school = await cli(redis_url, tmp_path, "token", "list", SCHOOL)
    assert info.id in only_school.stdout and other[1].id not in only_school.stdout


async def test_last_use_is_recorded_at_most_once_a_minute(world: World) -> None:
    token, info = await world.services.tokens.issue(RECEPTION, label="Mottagningen")
    assert info.last_used_at is None
    assert await status_with(world.base, token) == 200
    first = world.clock.now()
    world.clock.advance(timedelta(seconds=30))
    assert await status_with(world.base, token) == 200
    (seen,) = await token_records(world.services.redis)
    assert seen.last_used_at == first  # within the minute: not written again
    world.clock.advance(timedelta(seconds=31))
    assert await status_with(world.base, token) == 200
    (seen,) = await token_records(world.services.redis)
    assert seen.last_used_at == world.clock.now()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--label", ""), "--label: the label is empty"),
        (("--label", "   "), "--label: the label is empty"),
        (("--label", "två\nrader"), "--label: the label has a control character"),
        (("--label", "x" * 61), "--label: the label is longer than 60"),
        (("--expires", "0"), "--expires: a whole number of days"),
        (("--expires", "en vecka"), "--expires: a whole number of days"),
        (("--expires", "-3"), "--expires: a whole number of days"),
    ],
)
async def test_a_bad_label_or_expiry_is_one_line_and_status_2(
    world: World, redis_url: str, tmp_path: Path, options: tuple[str, str], words: str
) -> None:
    result = await cli(redis_url, tmp_path, "token", "create", SCHOOL, *options)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr
    assert await token_records(world.services.redis) == []


async def test_revoked_token_gets_401_at_once_in_every_process(
    world: World, second: str, redis_url: str, tmp_path: Path
) -> None:
    made = await cli(redis_url, tmp_path, "token", "create", RECEPTION, "--label", "Integration")
    token = made.stdout.strip()
    (info,) = await token_records(world.services.redis)
    assert await status_with(world.base, token) == 200
    assert await status_with(second, token) == 200
    revoked = await cli(redis_url, tmp_path, "token", "revoke", info.id)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked {info.id}" in revoked.stdout and "Integration" in revoked.stdout
    # No waiting, no cache to expire: the very next request in either process is refused.
    assert await status_with(second, token) == 401
    assert await status_with(world.base, token) == 401
    again = await cli(redis_url, tmp_path, "token", "revoke", info.id)
    assert again.returncode == 0 and "already revoked" in again.stdout
    listed = await cli(redis_url, tmp_path, "token", "list")
    assert "revoked" in next(line for line in listed.stdout.splitlines() if info.id in line)
    unknown = await cli(redis_url, tmp_path, "token", "revoke", "tk00000000")
    assert unknown.returncode == 1 and "no API token 'tk00000000'" in unknown.stderr


async def test_an_expired_token_gets_401(world: World, second: str) -> None:
    token, _ = await world.services.tokens.issue(RECEPTION, label="Test", expires_days=2)
    world.clock.advance(timedelta(days=2) - timedelta(seconds=1))
    assert await status_with(world.base, token) == 200
    world.clock.advance(timedelta(seconds=1))
    assert await status_with(world.base, token) == 401
    assert await status_with(second, token) == 401
    (seen,) = await token_records(world.services.redis)
    assert seen.state(world.clock.now()) == "expired"


async def test_a_token_made_before_labels_keeps_working_and_lists_without_a_label(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    # As `token create` stored tokens before labels: no label, no expiry, no index entry.
    token = "ank_legacy-token-made-before-labels"
    digest = hashlib.sha256(token.encode()).hexdigest()
    await world.services.redis.hset(
        keys.api_token(digest),
        mapping={
            "org": RECEPTION,
            "role": "member",
            "id": digest[:12],
            "created_at": "2026-01-05T10:00:00+00:00",
        },
    )
    assert await status_with(world.base, token) == 200
    listed = await cli(redis_url, tmp_path, "token", "list")
    line = next(line for line in listed.stdout.splitlines() if digest[:12] in line)
    assert NO_LABEL in line and RECEPTION in line and token not in listed.stdout
    revoked = await cli(redis_url, tmp_path, "token", "revoke", digest[:12])
    assert revoked.returncode == 0, revoked.stderr
    assert await status_with(world.base, token) == 401


async def test_the_audit_trail_names_the_token_by_label_and_organisation(world: World) -> None:
    reception, _ = await world.services.tokens.issue(RECEPTION, label="Mottagningens system")
    school, school_info = await world.services.tokens.issue(SCHOOL, label="Elevregistret")
    world.tokens[f"{RECEPTION}/member"] = reception
    world.tokens[f"{SCHOOL}/member"] = school
    case_id = (await world.register(arrival()))["id"]
    await world.settled(case_id)
    status, _ = await world.call("GET", f"/api/v1/arrivals/{case_id}", SCHOOL)
    assert status == 200
    rows = [json.loads(line) async for line in export(world.services.redis)]
    read = next(r for r in rows if r["kind"] == "read" and r["by"] == SCHOOL)
    assert read["label"] == "Elevregistret" and read["who"] == f"token:{school_info.id}"
    assert read["role"] == "member" and read["via"] == "api"
    registered = next(r for r in rows if r["kind"] == "change" and r["what"] == "registered")
    assert (registered["by"], registered["label"]) == (RECEPTION, "Mottagningens system")
    for row in rows:
        assert reception not in json.dumps(row) and school not in json.dumps(row)
