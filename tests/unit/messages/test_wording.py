"""The words agree: one child or several, accompanied or unaccompanied (who is addressed),
a past arrival or a coming one, in every message kind that speaks of the children."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from messages.models import ArrivalFacts, ArrivalNotice, CaseNotice, Child, Contact, Rendered
from messages.render import render_arrival, render_case_notice

from .markup import visible

SENT = datetime(2026, 11, 26, 13, 5, tzinfo=UTC)
ORG = "Lugnviksskolan"
ONE = (Child(16),)
SEVERAL = (Child(9), Child(4))


def forms(r: Rendered) -> list[str]:
    return [r.text, visible(r.html), r.telegram]


def arrival(
    facts: ArrivalFacts, kind: str, children: tuple[Child, ...], alone: bool, today: date
) -> Rendered:
    return render_arrival(
        ArrivalNotice(
            kind="new",
            facts=replace(facts, children=children, unaccompanied=alone),
            version=1,
            recipient=Contact(ORG),
            recipient_kind=kind,  # type: ignore[arg-type]
            reception_unit=Contact("Mottagningsenheten Östersund", phone="063-14 30 00"),
            needs_ack=True,
            booking_deadline=date(2026, 12, 4),
            today=today,
        )
    )


def notice(topic: str, count: int, alone: bool, arrived: bool, **facts: object) -> Rendered:
    return render_case_notice(
        CaseNotice(
            topic,
            "OSD-2026-0001",
            "Östersund",
            date(2026, 11, 27),
            Contact("Mottagningsenheten Östersund"),
            {
                "children_count": count,
                "unaccompanied": alone,
                "arrived": arrived,
                "organisation": ORG,
                **facts,
            },
        )
    )


def has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{word}\b", text) is not None


@pytest.mark.parametrize("children", [ONE, SEVERAL], ids=["one child", "several"])
@pytest.mark.parametrize("alone", [False, True], ids=["accompanied", "unaccompanied"])
@pytest.mark.parametrize(
    "kind", ["health_centre", "school", "preschool", "social_services", "reception_unit"]
)
def test_an_arrival_message_agrees_with_the_children_and_addresses_the_right_people(
    facts: ArrivalFacts, kind: str, children: tuple[Child, ...], alone: bool
) -> None:
    if kind == "social_services" and not alone:
        pytest.skip("social services are told of unaccompanied children only")
    one = len(children) == 1
    for text in forms(arrival(facts, kind, children, alone, today=date(2026, 11, 20))):
        assert "Asylsökande" not in text and "asylsökande" not in text
        intro = ("Ett" if one else "Två") + (" ensamkommande" if alone else "") + " barn kommer"
        assert intro in text
        if one:
            assert not has_word(text, "Barnen") and not has_word(text, "barnen"), text
        else:
            assert not has_word(text, "Barnet") and not has_word(text, "barnet"), text
        if kind == "school":
            if alone:
                assert "kontakta god man eller boendet (HVB)" in text
                assert "familjen" not in text
            else:
                assert "bjud in familjen till ett första samtal" in text
        if kind == "health_centre":
            assert ("för barnet" if one else "för barnen") in text
        if kind == "social_services":
            assert ("Barnet kommer utan" if one else "Barnen kommer utan") in text
            assert ("arbete för barnet" if one else "arbete för dem") in text


def test_a_past_arrival_date_says_the_children_came(facts: ArrivalFacts) -> None:
    for text in forms(arrival(facts, "school", ONE, False, today=date(2026, 12, 2))):
        assert "Ett barn kom till Östersund fredag 27 november 2026" in text
        assert "har alltså redan kommit" in text
        assert "kommer till" not in text


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("alone", [False, True])
@pytest.mark.parametrize("arrived", [False, True])
def test_every_notice_about_the_children_agrees_with_them(
    count: int, alone: bool, arrived: bool
) -> None:
    the, verb = ("Barnet" if count == 1 else "Barnen"), ("kom" if arrived else "kommer")
    cases = {
        "ack_escalation": ({"sent_at": SENT, "waited": "1 arbetsdag"}, f"{the} {verb} till"),
        "ack_overdue_reception": ({"sent_at": SENT}, f"{the} {verb} fredag"),
        "ack_reminder": (
            {"sent_at": SENT, "waited": "2 arbetstimmar"},
            f"om {'ett' if count == 1 else 'tre'}{' ensamkommande' if alone else ''} barn "
            f"som {verb} till",
        ),
        "booking_reminder": (
            {"informed_at": SENT, "deadline": date(2026, 12, 3), "working_day": 3},
            f"för {the.lower()} och meddela",
        ),
    }
    for topic, (facts, words) in cases.items():
        for text in forms(notice(topic, count, alone, arrived, **facts)):
            assert words in text, (topic, text)
            assert "asylsökande" not in text


def test_the_reception_unit_is_asked_to_ring_only_with_a_number() -> None:
    without = notice("ack_overdue_reception", 2, False, False, sent_at=SENT)
    assert all("Ring" not in text for text in forms(without))
    with_phone = notice(
        "ack_overdue_reception", 2, False, False, sent_at=SENT, organisation_phone="063-10 00 00"
    )
    assert all(f"Ring gärna {ORG} på 063-10 00 00" in text for text in forms(with_phone))


def test_the_booking_reminder_counts_the_days_as_the_deadlines_do() -> None:
    r = notice(
        "booking_reminder",
        2,
        False,
        False,
        informed_at=SENT,
        deadline=date(2026, 12, 3),
        working_day=3,
        waited="tre arbetsdagar",
    )
    for text in forms(r):
        assert "I dag är den tredje arbetsdagen sedan beskedet." in text
        assert "Det har gått tre arbetsdagar" not in text


def test_clearance_names_the_health_centre_once_and_escalation_names_who_escalated() -> None:
    clearance = notice("clearance", 1, False, False, may_start=False)
    for text in forms(clearance):
        assert f"Kontakta {ORG} för besked" in text
        assert "hälsocentralen (" not in text
    escalated = notice(
        "disagreement_escalated",
        1,
        False,
        False,
        raised_by="Lugnviks hälsocentral",
        text="Vem bokar tolken?",
        automatic=False,
        days=5,
        escalated_by=ORG,
        managements=["Kommunledningen"],
    )
    for text in forms(escalated):
        assert f"{ORG} har lyft en oenighet" in text
        assert "(§ 7) av" not in text
