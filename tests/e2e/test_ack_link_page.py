"""The acknowledge page a mail links to (issue 16 item 5): it shows the arrival date, and a
HEAD (as link scanners send) answers 200 with no body and acknowledges nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.world import World, arrival, running_world

PRESCHOOL = "ostersund-forskola"
PRESCHOOL_ADDRESS = "forskola@ostersund.example.se"


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(redis_url, tmp_path) as w:
        yield w


def text_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


async def test_the_ack_page_shows_the_arrival_date_and_head_changes_nothing(world: World) -> None:
    answer = await world.register(arrival(arrival_date="2026-12-07"))
    await world.settled(answer["id"])
    link = re.search(
        r"http://ankomst\.example\.se(/a/\S+)", text_of(world.mails_to(PRESCHOOL_ADDRESS)[0])
    )
    assert link is not None
    path = link.group(1)

    async with world.http.head(world.base + path) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert await response.read() == b""
    status, page = await world.call("GET", path)
    assert status == 200
    assert "måndag 7 december 2026" in page
    assert answer["reference"] in page and 'method="post"' in page.lower()

    view = await world.case(answer["id"])
    mine = next(r for r in view["recipients"] if r["organisation"] == PRESCHOOL)
    assert mine["acknowledged"] is None
    acks = await world.services.cases.store.acks(answer["id"])
    assert not any(key.endswith(f":{PRESCHOOL}") for key in acks)
