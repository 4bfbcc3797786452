"""Rendering asks the policy who reports the health centre's part (issue 11: one home for each
rule): the booking link and the booking deadline in an arrival mail follow
`Policy.may_report_health`, not the organisation's kind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain.policy import CaseParties, Policy
from tests.support.world import World, arrival, running_world

HC_ADDRESS = "hc-lugnvik@regionjh.example.se"
SCHOOL_ADDRESS = "skola@ostersund.example.se"


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        yield w


def text_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


class _Swapped(Policy):
    """A policy under which the school, not the health centre, reports the booking."""

    def may_report_health(self, org_id: str, case: CaseParties) -> bool:
        return org_id == "ostersund-skola" and org_id in case.recipients


async def test_the_booking_link_and_deadline_follow_the_policy(world: World) -> None:
    answer = await world.register(arrival())
    await world.settled(answer["id"])
    hc = text_of(world.mails_to(HC_ADDRESS)[-1])
    school = text_of(world.mails_to(SCHOOL_ADDRESS)[-1])
    assert "Rapportera bokad tid: http" in hc and "Rapportera bokad tid" not in school

    renderer = world.services.deliverer.renderer
    renderer.policy = _Swapped(renderer.directory)
    answer = await world.register(arrival(external_ref="MIG-2026-654321"))
    await world.settled(answer["id"])
    hc = text_of(world.mails_to(HC_ADDRESS)[-1])
    school = text_of(world.mails_to(SCHOOL_ADDRESS)[-1])
    assert answer["reference"] in hc and answer["reference"] in school
    assert "Rapportera bokad tid" not in hc
    assert "Rapportera bokad tid: http" in school
