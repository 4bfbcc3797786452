from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jinja2 import UndefinedError

from messages.models import AllAcknowledged, CaseNotice, Contact
from messages.render import notice_topics, render_all_acknowledged, render_case_notice
from messages.telegram import TELEGRAM_LIMIT, telegram_length

from .markup import TELEGRAM_TAGS, telegram_tags, visible

SENT = datetime(2026, 11, 26, 13, 5, tzinfo=UTC)  # 14.05 in Stockholm
ORG = "Lugnviks hälsocentral"
BASIS = "Enligt överenskommelsen ska hälsocentralen boka tid för hälsosamtal inom fem arbetsdagar"

# Every topic with facts it needs and words each form of it must carry.
DRAFT_URL = "https://ankomst.example.se/dashboard/ny?draft=d1"
TOPICS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "delivery_failed": (
        {"organisation": ORG, "channel": "email", "error": "550 no such user"},
        [ORG, "e-post", "550 no such user", "Ring"],
    ),
    "ack_reminder": (
        {"organisation": ORG, "sent_at": SENT, "waited": "2 timmar"},
        ["2 timmar", "torsdag 26 november 2026 kl. 14.05", "bekräfta"],
    ),
    "ack_escalation": (
        {"organisation": ORG, "sent_at": SENT, "waited": "1 arbetsdag"},
        [f"{ORG} har inte bekräftat", "1 arbetsdag", "kl. 14.05"],
    ),
    "ack_overdue_reception": (
        {"organisation": ORG, "sent_at": SENT},
        [f"{ORG} har ännu inte bekräftat", "kl. 14.05"],
    ),
    "booking_reminder": (
        {"organisation": ORG, "informed_at": SENT, "deadline": date(2026, 12, 3)},
        [BASIS, "torsdag 3 december 2026", "Påminnelse"],
    ),
    "booking_escalation": (
        {"organisation": ORG, "informed_at": SENT, "deadline": date(2026, 12, 3)},
        [BASIS, "torsdag 3 december 2026", ORG],
    ),
    "notice_draft": (
        {"received_at": SENT, "readable": False, "draft_url": DRAFT_URL, "chat_hint": "/ny d1"},
        ["granska", "kunde inte läsas", DRAFT_URL, "kl. 14.05"],
    ),
    "notice_draft_alert": (
        {"received_at": SENT, "readable": True, "draft_url": DRAFT_URL, "chat_hint": "/ny d1"},
        ["inte granskats", DRAFT_URL, "kl. 14.05"],
    ),
    "same_day_alert": (
        {"organisations": [ORG, "Lugnviks skola"], "reason": "Ingen kanal fungerade"},
        [f"{ORG}, Lugnviks skola", "Ingen kanal fungerade", "i dag", "Ring"],
    ),
    "health_booking": (
        {"organisation": ORG, "booked_at": SENT, "previous_at": None, "interpreter_booked": True},
        ["torsdag 26 november 2026 kl. 14.05", "Tolk: bokad"],
    ),
    "booking_before_arrival": (
        {
            "organisation": ORG,
            "booked_at": SENT,
            "arrival_on": date(2026, 12, 3),
            "previous_arrival_on": date(2026, 11, 27),
        },
        [
            "Den bokade tiden för hälsosamtalet (torsdag 26 november 2026 kl. 14.05) ligger nu "
            "före ankomstdagen (torsdag 3 december 2026).",
            "från fredag 27 november 2026",
            f"{ORG} har fått samma besked",
        ],
    ),
    "clearance": (
        {"organisation": ORG, "may_start": False},
        ["måste vänta", f"Kontakta {ORG} för besked"],
    ),
    "disagreement_raised": (
        {"raised_by": ORG, "text": "Vem bokar tolken?"},
        [ORG, "Vem bokar tolken?", "§ 7"],
    ),
    "disagreement_escalated": (
        {
            "raised_by": ORG,
            "text": "Vem bokar tolken?",
            "automatic": False,
            "days": 5,
            "escalated_by": "Lugnviksskolan",
            "managements": ["Östersunds kommun, kommunledningen", "Primärvårdsledningen"],
        },
        ["Primärvårdsledningen", "Vem bokar tolken?", "Lugnviksskolan har lyft en oenighet"],
    ),
    "disagreement_resolved": (
        {"raised_by": ORG, "resolved_by": "Kommunledningen", "decision": "Skolan bokar tolk."},
        ["Skolan bokar tolk.", "Kommunledningen"],
    ),
}


def notice(topic: str, facts: dict[str, Any]) -> CaseNotice:
    return CaseNotice(
        topic=topic,
        reference="OSD-2026-0001",
        municipality="Östersund",
        arrival_date=date(2026, 11, 27),
        recipient=Contact("Mottagningsenheten Östersund"),
        facts=facts,
    )


def test_every_topic_is_tested() -> None:
    assert set(notice_topics()) == set(TOPICS)


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_each_notice_topic_renders_in_every_form(topic: str) -> None:
    facts, words = TOPICS[topic]
    r = render_case_notice(notice(topic, facts))
    assert "\n" not in r.subject
    assert "OSD-2026-0001" in r.subject
    for part in (r.text, visible(r.html), r.telegram):
        assert "OSD-2026-0001" in part
        for word in words:
            assert word in part
    assert telegram_tags(r.telegram) <= TELEGRAM_TAGS
    assert r.html.startswith("<!DOCTYPE html>")


def test_ack_reminder_carries_the_link_when_given() -> None:
    facts = {**TOPICS["ack_reminder"][0], "ack_url": "https://ankomst.example.se/a/t"}
    r = render_case_notice(notice("ack_reminder", facts))
    assert "https://ankomst.example.se/a/t" in r.text
    assert 'href="https://ankomst.example.se/a/t"' in r.html
    assert "https://ankomst.example.se/a/t" not in r.telegram
    assert "Tryck på Mottaget" in r.telegram


def test_times_are_shown_in_the_zone_given() -> None:
    facts = {**TOPICS["ack_overdue_reception"][0], "zone": ZoneInfo("UTC")}
    assert "kl. 13.05" in render_case_notice(notice("ack_overdue_reception", facts)).text


def test_notice_values_are_escaped() -> None:
    facts = {"organisations": ["<b>Skola</b>"], "reason": "<script>x</script> & co"}
    r = render_case_notice(notice("same_day_alert", facts))
    for markup in (r.html, r.telegram):
        assert "<b>Skola</b>" not in markup
        assert "<script>" not in markup
        assert "&lt;script&gt;x&lt;/script&gt; &amp; co" in markup
    assert "<script>x</script> & co" in r.text


def test_a_huge_error_is_cut_to_fit_telegram() -> None:
    facts = {"organisation": ORG, "channel": "telegram", "error": "<&>" * 10_000}
    r = render_case_notice(notice("delivery_failed", facts))
    assert telegram_length(r.telegram) <= TELEGRAM_LIMIT
    assert "Ring" in r.telegram


def test_a_huge_list_of_organisations_still_fits_telegram() -> None:
    facts = {"organisations": [f"Organisation {i}" for i in range(1000)], "reason": "x"}
    r = render_case_notice(notice("same_day_alert", facts))
    assert telegram_length(r.telegram) <= TELEGRAM_LIMIT


@pytest.mark.parametrize("topic", ["no_such_topic", "../arrival/text", "_text", "", "Ack"])
def test_unknown_topic_is_refused(topic: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        render_case_notice(notice(topic, {}))


def test_a_missing_fact_is_an_error() -> None:
    with pytest.raises(UndefinedError):
        render_case_notice(notice("delivery_failed", {"organisation": ORG}))


def test_facts_cannot_override_the_case() -> None:
    facts = {**TOPICS["ack_overdue_reception"][0], "reference": "FEL"}
    with pytest.raises(ValueError, match="reference"):
        render_case_notice(notice("ack_overdue_reception", facts))


def test_all_acknowledged_lists_organisations_and_times() -> None:
    r = render_all_acknowledged(
        AllAcknowledged(
            reference="OSD-2026-0001",
            municipality="Östersund",
            arrival_date=date(2026, 11, 27),
            version=2,
            acknowledged=((ORG, SENT), ("Lugnviks <skola>", SENT)),
        )
    )
    assert r.subject == "Alla har bekräftat: OSD-2026-0001 (Östersund), version 2"
    for part in (r.text, visible(r.html), r.telegram):
        assert "version 2" in part
        assert ORG in part
        assert "torsdag 26 november 2026 kl. 14.05" in part
    assert f"- {ORG}: torsdag 26 november 2026 kl. 14.05" in r.text
    assert "- Lugnviks <skola>: " in r.text
    assert "Lugnviks &lt;skola&gt;" in r.telegram
    assert "Lugnviks &lt;skola&gt;" in r.html


def test_dates_that_came_through_json_are_still_shown_in_swedish() -> None:
    facts = {"organisation": ORG, "informed_at": SENT.isoformat(), "deadline": "2026-12-03"}
    r = render_case_notice(notice("booking_reminder", facts))
    assert "torsdag 3 december 2026" in r.text
    assert "torsdag 26 november 2026 kl. 14.05" in r.text
