"""The escalation digest (issue 14 item 5, issue 16): times in ANKOMST_TIMEZONE, and Swedish
that agrees with one case and with several."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.domain.calendar import WorkingDayCalendar
from bot.domain.clock import ManualClock
from bot.domain.delivery import Delivery
from bot.domain.events import DeliveryStatus, Topic
from bot.pipeline.rendering import MessageRenderer, RenderSettings
from bot.runtime.directory_file import load_directory
from messages.digest import DigestCase, EscalationDigest, NotAcknowledged, NotBooked, render_digest
from messages.models import Contact

EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "directory.example.toml"
SENT = datetime(2026, 12, 2, 8, 5, tzinfo=UTC)  # 09.05 in Stockholm, 10.05 in Helsinki


def case(n: int) -> DigestCase:
    return DigestCase(
        reference=f"OSD-2026-000{n}",
        municipality="Östersund",
        arrival_date=date(2026, 12, 7),
        url=None,
        not_acknowledged=(NotAcknowledged("Lugnviksskolan", SENT, "två arbetsdagar"),),
        not_booked=(NotBooked("Hälsocentralen Lugnvik", date(2026, 12, 9)),),
    )


def digest(count: int) -> EscalationDigest:
    return EscalationDigest(
        recipient=Contact("Östersunds kommun, mottagningsenheten", "mottagning@example.se"),
        cases=tuple(case(n) for n in range(1, count + 1)),
    )


def forms(rendered: Any) -> dict[str, str]:
    return {
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
        "telegram": rendered.telegram,
    }


def test_one_case_reads_as_one() -> None:
    out = forms(render_digest(digest(1)))
    assert out["subject"] == (
        "Ej bekräftat, ingen bokad tid: Lugnviksskolan, Hälsocentralen Lugnvik, "
        "OSD-2026-0001 (Östersund)"
    )
    for form in ("text", "html", "telegram"):
        assert "Ett ärende har passerat en tidsgräns" in out[form], form
        assert "1 ärende" not in out[form] and "ärenden" not in out[form], form


def test_several_cases_read_as_several() -> None:
    out = forms(render_digest(digest(3)))
    assert out["subject"] == "Försenat (ej bekräftat, ingen bokad tid): 3 ärenden"
    for form in ("text", "html", "telegram"):
        assert "3 ärenden har passerat en tidsgräns" in out[form], form
        assert "Ett ärende" not in out[form], form
        for n in (1, 2, 3):
            assert f"OSD-2026-000{n}" in out[form], form


@pytest.mark.parametrize(
    ("zone", "shown"),
    [("Europe/Stockholm", "kl. 09.05"), ("Europe/Helsinki", "kl. 10.05"), ("UTC", "kl. 08.05")],
)
def test_times_are_shown_in_the_zone_given(zone: str, shown: str) -> None:
    out = forms(render_digest(digest(1), ZoneInfo(zone)))
    for form in ("text", "html", "telegram"):
        assert f"skickades onsdag 2 december 2026 {shown}" in out[form], form


def test_the_renderer_shows_the_digest_in_ankomst_timezone() -> None:
    """The deliverer passes ANKOMST_TIMEZONE (its calendar's zone), not Stockholm."""
    helsinki = ZoneInfo("Europe/Helsinki")
    renderer = MessageRenderer(
        cases=None,  # type: ignore[arg-type]  # a digest reads no case
        directory=load_directory(EXAMPLE),
        chats=None,  # type: ignore[arg-type]
        calendar=WorkingDayCalendar(helsinki, time(8), time(17)),
        signer=None,  # type: ignore[arg-type]  # a chat digest carries no links
        clock=ManualClock(SENT),
        settings=RenderSettings("http://ankomst.example.se", "example.se", "minimal", 5),
    )
    params = {
        "cases": [
            {
                "id": "c1",
                "reference": "OSD-2026-0001",
                "municipality": "ostersund",
                "arrival_date": "2026-12-07",
                "overdue": [
                    {
                        "kind": "ack",
                        "organisation": "Lugnviksskolan",
                        "sent_at": SENT.isoformat(),
                        "waited": "två arbetsdagar",
                    }
                ],
            }
        ]
    }
    delivery = Delivery(
        id="d1",
        case="c1",
        version=1,
        org="ostersund-mottagning",
        channel="tg:1001",
        topic=Topic.ESCALATION_DIGEST.at("20261204T1000"),
        status=DeliveryStatus.QUEUED,
        params=params,
    )
    rendered = renderer._digest(delivery)
    assert "skickades onsdag 2 december 2026 kl. 10.05" in rendered.telegram
    assert "Ett ärende har passerat" in rendered.telegram
