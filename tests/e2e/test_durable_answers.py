"""Every answer that promises something to another party is given only once it is durable.

With `ANKOMST_REDIS_MIN_REPLICAS=1` against a single server (no replica, so nothing can ever be
confirmed), each such write — the health centre's booking and clearance, a disagreement raised,
escalated or resolved, a token made or revoked, an invite code made — is answered 503
(problem+json, Retry-After) through the API, and exit 1 with one line and nothing printed to use
through the CLI. With 0 (the default) the same calls answer as before. A real failover is in
tests/fault/test_failover.py; this is the cheap proof that each path asks `Durability`.

The board's sign-in links and sessions are not confirmed (they promise nothing to another
party; one lost in a failover costs a new sign-in): a sign-in works with the setting on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from bot.domain.actor import Actor
from bot.domain.arrival import ArrivalIn
from bot.domain.clock import SystemClock
from bot.usecases.access import ApiTokens
from bot.usecases.cases import CaseService
from bot.usecases.disagreements import DisagreementIn, Disagreements
from tests.support.cli import run_cli
from tests.support.world import World, arrival, running_world

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
RECEPTION = "ostersund-mottagning"


async def post(world: World, path: str, token: str, body: Any = None) -> tuple[int, Any, Any]:
    """(status, content type, Retry-After) of a POST with a bearer token."""
    async with world.http.post(
        world.base + path, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        await response.read()
        return response.status, response.content_type, response.headers.get("Retry-After")


@pytest.mark.parametrize("min_replicas", [0, 1])
async def test_the_health_centre_and_disagreements_answer_only_what_is_durable(
    redis_url: str, redis: Redis, tmp_path: Path, min_replicas: int
) -> None:
    # No chats linked: linking makes invite codes, which are confirmed too.
    async with running_world(
        redis_url, tmp_path, link_chats=False, redis_min_replicas=min_replicas, redis_wait_ms=50
    ) as world:
        s = world.services
        # What the calls act on is written without confirmation (off by default), since on
        # this server nothing could be confirmed.
        tokens = ApiTokens(s.redis, s.clock)
        hc, school = await tokens.create(HC), await tokens.create(SCHOOL)
        boss = await tokens.create(SCHOOL, "supervisor")
        case, _ = await CaseService(s.redis, s.directory, s.clock, s.settings.zone).register(
            ArrivalIn(**arrival()), Actor(RECEPTION)
        )
        plain = Disagreements(s.redis, s.directory, s.clock)
        to_escalate = await plain.raise_(case.id, DisagreementIn(text="Vem bokar?"), Actor(SCHOOL))
        to_resolve = await plain.raise_(case.id, DisagreementIn(text="Vem ringer?"), Actor(SCHOOL))

        calls = {
            "health-booking": (
                f"/api/v1/arrivals/{case.id}/health-booking",
                hc,
                {"at": "2026-12-01T09:30", "interpreter_booked": True},
                200,
            ),
            "clearance": (
                f"/api/v1/arrivals/{case.id}/clearance",
                hc,
                {"all_results_received": True, "start_obstacle": False},
                200,
            ),
            "raise": (
                f"/api/v1/arrivals/{case.id}/disagreements",
                school,
                {"text": "Vem hämtar?"},
                201,
            ),
            "escalate": (f"/api/v1/disagreements/{to_escalate.id}/escalate", boss, None, 200),
            "resolve": (
                f"/api/v1/disagreements/{to_resolve.id}/resolve",
                school,
                {"decision": "Skolan ringer."},
                200,
            ),
        }
        for name, (path, token, body, answered) in calls.items():
            status, content_type, retry_after = await post(world, path, token, body)
            if min_replicas == 0:
                assert status == answered, name
            else:
                assert status == 503, name
                assert content_type == "application/problem+json", name
                assert retry_after is not None, name

        # Not a promise to anyone else: a board sign-in is not held up by the replicas.
        assert await s.dashboard.create_login(RECEPTION, "member", "test")


@pytest.mark.parametrize("min_replicas", [0, 1])
async def test_the_cli_prints_a_token_or_code_only_once_it_is_durable(
    redis_url: str, redis: Redis, tmp_path: Path, min_replicas: int
) -> None:
    made, info = await ApiTokens(redis, SystemClock()).issue(RECEPTION, label="Att återkalla")
    env = {
        "ANKOMST_REDIS_URL": redis_url,
        "ANKOMST_REDIS_MIN_REPLICAS": str(min_replicas),
        "ANKOMST_REDIS_WAIT_MS": "50",
        "ANKOMST_DATA_DIR": str(tmp_path),
    }
    for args in (
        ("token", "create", RECEPTION),
        ("invite", RECEPTION),
        ("token", "revoke", info.id),
    ):
        result = await asyncio.to_thread(run_cli, *args, env=env)
        if min_replicas == 0:
            assert result.returncode == 0, (args, result.stderr)
            assert result.stdout.strip(), args
        else:
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            assert result.stdout == "", args  # no token or code to use, no "revoked"
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "ANKOMST_REDIS_MIN_REPLICAS" in lines[0], lines
            assert "Traceback" not in result.stderr
    assert made  # made without confirmation: the setting only holds up what is answered
