"""The policy, table by table: every kind of organisation × every action and every guarded part
of a case. Pure: the example directory and a case made in the test, no Redis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.domain.policy import SIGHTS, CaseScope, Forbidden, Policy, Refusal, Sight, project
from bot.runtime.directory_file import load_directory

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "directory.example.toml"
POLICY = Policy(load_directory(EXAMPLE))

RECEPTION = "ostersund-mottagning"
HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
PRESCHOOL = "ostersund-forskola"
SOCIAL = "ostersund-socialtjanst"
MANAGEMENT = "ostersund-ledning"
# The health centres' management; in the directory it belongs to Östersund, so it counts as
# Östersund's management too.
REGION = "region-primarvard"
OTHER_RECEPTION = "berg-mottagning"
OTHER_SCHOOL = "berg-skola"
OTHER_MANAGEMENT = "berg-ledning"
NOT_ON_CASE_HC = "hc-hede"


@dataclass(frozen=True)
class Acting:
    org_id: str
    role: str = "member"


@dataclass(frozen=True)
class CaseOnFile:
    """The part of a case the policy reads."""

    municipality: str = "ostersund"
    reception_unit: str = RECEPTION
    recipients: tuple[str, ...] = (HC, PRESCHOOL, SCHOOL)
    status: str = "open"

    def parties(self) -> tuple[str, ...]:
        return (self.reception_unit, *self.recipients)


CASE = CaseOnFile()
# An unaccompanied child's case: social services on it too.
WITH_SOCIAL = CaseOnFile(recipients=(HC, SCHOOL, SOCIAL))
# Every organisation of the table, with the answer each question must get for CASE.
EVERYONE = (
    RECEPTION,
    HC,
    SCHOOL,
    PRESCHOOL,
    SOCIAL,
    MANAGEMENT,
    REGION,
    OTHER_RECEPTION,
    OTHER_SCHOOL,
    OTHER_MANAGEMENT,
    NOT_ON_CASE_HC,
)


def refusal(check: Any) -> str | None:
    """None if `check()` passes, else the refusal's text."""
    try:
        check()
    except Forbidden as exc:
        return str(exc)
    return None


# -- acting ------------------------------------------------------------------------------------

# org → (register in Östersund, change/cancel CASE, read CASE, report booking/clearance on CASE)
ACTIONS: dict[str, tuple[str | None, str | None, str | None, str | None]] = {
    RECEPTION: (None, None, None, Refusal.HEALTH_CENTRE),
    HC: (Refusal.REGISTER, Refusal.REGISTER, None, None),
    SCHOOL: (Refusal.REGISTER, Refusal.REGISTER, None, Refusal.HEALTH_CENTRE),
    PRESCHOOL: (Refusal.REGISTER, Refusal.REGISTER, None, Refusal.HEALTH_CENTRE),
    SOCIAL: (Refusal.REGISTER, Refusal.REGISTER, Refusal.READ, Refusal.HEALTH_CENTRE),
    MANAGEMENT: (Refusal.REGISTER, Refusal.REGISTER, None, Refusal.HEALTH_CENTRE),
    # Management of another municipality's health centres reads no case it is not on.
    REGION: (Refusal.REGISTER, Refusal.REGISTER, None, Refusal.HEALTH_CENTRE),
    OTHER_RECEPTION: (Refusal.REGISTER, Refusal.REGISTER, Refusal.READ, Refusal.HEALTH_CENTRE),
    OTHER_SCHOOL: (Refusal.REGISTER, Refusal.REGISTER, Refusal.READ, Refusal.HEALTH_CENTRE),
    OTHER_MANAGEMENT: (Refusal.REGISTER, Refusal.REGISTER, Refusal.READ, Refusal.HEALTH_CENTRE),
    NOT_ON_CASE_HC: (Refusal.REGISTER, Refusal.REGISTER, Refusal.READ, Refusal.HEALTH_CENTRE),
    "nobody": (Refusal.REGISTER, Refusal.REGISTER, Refusal.READ, Refusal.HEALTH_CENTRE),
}


@pytest.mark.parametrize("org_id", list(ACTIONS))
def test_who_may_register_change_read_and_report(org_id: str) -> None:
    who = Acting(org_id)
    register, change, read, report = ACTIONS[org_id]
    assert refusal(lambda: POLICY.require_register(who, "ostersund")) == register
    assert refusal(lambda: POLICY.require_change(who, CASE)) == change
    assert refusal(lambda: POLICY.require_read(who, CASE)) == read
    assert POLICY.may_read(org_id, CASE) is (read is None)
    assert refusal(lambda: POLICY.require_health_centre(who, CASE)) == report


def test_only_the_registering_reception_unit_changes() -> None:
    theirs = CaseOnFile(reception_unit="ostersund-mottagning-2")
    assert refusal(lambda: POLICY.require_change(Acting(RECEPTION), theirs)) == Refusal.CHANGE_OWN
    elsewhere = CaseOnFile(municipality="berg", reception_unit=OTHER_RECEPTION)
    assert refusal(lambda: POLICY.require_change(Acting(RECEPTION), elsewhere)) == Refusal.REGISTER
    assert refusal(lambda: POLICY.require_register(Acting(RECEPTION), "berg")) == Refusal.REGISTER


# org → the API list's scope (or its refusal), with a municipality filter of its own or Berg's
LISTS: dict[str, tuple[CaseScope | str, CaseScope | str]] = {
    RECEPTION: (CaseScope(municipality="ostersund"), Refusal.LIST_OWN_MUNICIPALITY),
    MANAGEMENT: (CaseScope(municipality="ostersund"), Refusal.LIST_OWN_MUNICIPALITY),
    OTHER_MANAGEMENT: (Refusal.LIST_OWN_MUNICIPALITY, CaseScope(municipality="berg")),
    HC: (Refusal.LIST, Refusal.LIST),
    SCHOOL: (Refusal.LIST, Refusal.LIST),
    PRESCHOOL: (Refusal.LIST, Refusal.LIST),
    SOCIAL: (Refusal.LIST, Refusal.LIST),
    "nobody": (Refusal.LIST, Refusal.LIST),
}


@pytest.mark.parametrize("org_id", list(LISTS))
def test_who_may_list_cases_and_which(org_id: str) -> None:
    for municipality, expected in zip(("ostersund", "berg"), LISTS[org_id], strict=True):
        try:
            got: CaseScope | str = POLICY.list_scope(Acting(org_id), municipality)
        except Forbidden as exc:
            got = str(exc)
        assert got == expected, municipality


@pytest.mark.parametrize("org_id", EVERYONE)
def test_the_board_shows_what_may_be_read(org_id: str) -> None:
    scope = POLICY.board_scope(org_id)
    kind = POLICY.directory.organisation(org_id).kind
    if kind == "management":
        municipality = POLICY.directory.organisation(org_id).municipality
        assert scope == CaseScope(municipality=municipality)
    else:
        assert scope == CaseScope(organisation=org_id)
    # Whatever the board lists, the case page opens: the two scopes agree.
    on_board = (
        scope.municipality == CASE.municipality
        if scope.municipality
        else scope.organisation in CASE.parties()
    )
    assert on_board == POLICY.may_read(org_id, CASE)


def test_the_start_answer_goes_to_the_reception_unit_school_and_preschool_only() -> None:
    with_social = CaseOnFile(recipients=(HC, PRESCHOOL, SCHOOL, SOCIAL))
    assert POLICY.told_of_start(with_social) == [RECEPTION, PRESCHOOL, SCHOOL]


# -- disagreements -----------------------------------------------------------------------------

MANAGEMENTS = POLICY.managements(CASE)

# org, role → (raise, escalate, see/resolve before escalation)
DISAGREEMENTS: dict[tuple[str, str], tuple[str | None, str | None, str | None]] = {
    (SCHOOL, "member"): (None, Refusal.ESCALATE_SUPERVISOR, None),
    (SCHOOL, "supervisor"): (None, None, None),
    (HC, "supervisor"): (None, None, None),
    (RECEPTION, "member"): (None, Refusal.ESCALATE_SUPERVISOR, None),
    (MANAGEMENT, "supervisor"): (Refusal.RAISE, Refusal.ESCALATE_PARTY, None),
    (REGION, "member"): (Refusal.RAISE, Refusal.ESCALATE_PARTY, None),
    (OTHER_SCHOOL, "supervisor"): (Refusal.RAISE, Refusal.ESCALATE_PARTY, Refusal.RESOLVE),
    (OTHER_MANAGEMENT, "member"): (Refusal.RAISE, Refusal.ESCALATE_PARTY, Refusal.RESOLVE),
    (SOCIAL, "supervisor"): (Refusal.RAISE, Refusal.ESCALATE_PARTY, Refusal.RESOLVE),
}


def test_the_next_management_level_of_every_party() -> None:
    assert set(MANAGEMENTS) == {MANAGEMENT, REGION}


@pytest.mark.parametrize(("org_id", "role"), list(DISAGREEMENTS))
def test_who_may_raise_escalate_see_and_resolve(org_id: str, role: str) -> None:
    who = Acting(org_id, role)
    raise_, escalate, resolve = DISAGREEMENTS[(org_id, role)]
    assert refusal(lambda: POLICY.require_raise(who, CASE)) == raise_
    assert refusal(lambda: POLICY.require_escalate(who, CASE)) == escalate
    assert POLICY.may_escalate(who, CASE) is (escalate is None)
    assert refusal(lambda: POLICY.require_resolve(who, CASE)) == resolve
    seen = refusal(lambda: POLICY.require_see_disagreement(who, CASE))
    assert seen == (None if resolve is None else Refusal.SEE_DISAGREEMENT)


def test_a_management_it_was_referred_to_may_see_and_resolve() -> None:
    who = Acting(OTHER_MANAGEMENT)
    assert POLICY.may_see_disagreement(OTHER_MANAGEMENT, CASE, (OTHER_MANAGEMENT,))
    assert refusal(lambda: POLICY.require_resolve(who, CASE, (OTHER_MANAGEMENT,))) is None


# -- what each kind sees -----------------------------------------------------------------------

VIEW: dict[str, Any] = {
    "id": "c1",
    "reference": "OSD-2026-0001",
    "arrival": {"arrival_date": "2026-11-27", "children": [{"age": 9}]},
    "status": "notified",
    "reception_unit": {
        "organisation": RECEPTION,
        "deliveries": [
            {"topic": "notice", "version": 1},
            {"topic": "health_booking", "version": 1},
            {"topic": "clearance", "version": 1},
        ],
    },
    "recipients": [
        {"organisation": SCHOOL, "acknowledged": None, "deliveries": [{"topic": "notice"}]},
        {"organisation": HC, "acknowledged": {"version": 1}, "deliveries": [{"topic": "notice"}]},
    ],
    "deadlines": [
        {"kind": "ack_reminder", "organisation": SCHOOL},
        {"kind": "booking_reminder", "organisation": HC},
        {"kind": "booking_escalation", "organisation": HC},
    ],
    "booking": {"at": "2026-12-09T09:30:00+01:00", "interpreter_booked": True},
    "clearance": {"all_results_received": True, "start_obstacle": True, "may_start": False},
    "start": {"school": "must_wait", "preschool": "must_wait"},
    "history": [
        {"what": "registered", "version": 1},
        {
            "what": "health_booked",
            "booked_for": "2026-12-09T09:30:00+01:00",
            "interpreter_booked": True,
            "replaces": None,
        },
        {"what": "clearance", "may_start": False},
    ],
}

# org → (sees the booking, sees the clearance record)
SEES: dict[str, tuple[bool, bool]] = {
    RECEPTION: (True, True),
    HC: (True, True),
    SCHOOL: (False, False),
    PRESCHOOL: (False, False),
    MANAGEMENT: (False, False),
    REGION: (False, False),
    SOCIAL: (False, False),
    # Not on the case: nothing guarded at all (and the API refuses the read).
    OTHER_SCHOOL: (False, False),
    NOT_ON_CASE_HC: (False, False),
}


def test_every_kind_has_a_row_in_the_table_of_sights() -> None:
    assert set(SIGHTS) == {
        "reception_unit",
        "health_centre",
        "school",
        "preschool",
        "social_services",
        "management",
    }
    assert SIGHTS["social_services"] == frozenset()


@pytest.mark.parametrize("org_id", list(SEES))
def test_each_kind_sees_its_own_part_of_a_case(org_id: str) -> None:
    booking, clearance = SEES[org_id]
    sight = POLICY.sight(org_id, WITH_SOCIAL)
    assert (Sight.BOOKING in sight, Sight.CLEARANCE in sight) == (booking, clearance)
    seen = project(VIEW, sight)
    text = repr(seen)
    # Everyone who may read sees the arrival, the parties and whether start may go ahead.
    assert seen["arrival"] == VIEW["arrival"]
    assert seen["start"] == {"school": "must_wait", "preschool": "must_wait"}
    assert [p["organisation"] for p in seen["recipients"]] == [SCHOOL, HC]
    assert seen["recipients"][1]["acknowledged"] == {"version": 1}
    assert ("clearance" in seen) is clearance
    assert ("all_results_received" in text or "start_obstacle" in text) is clearance
    assert ("booking" in seen) is booking
    for secret in ("2026-12-09T09:30", "interpreter_booked", "booked_for", "health_booking"):
        assert (secret in text) is booking, secret
    booking_deadlines = {"booking_reminder", "booking_escalation"}
    kinds = {d["kind"] for d in seen["deadlines"]}
    assert kinds == ({"ack_reminder"} | (booking_deadlines if booking else set()))
    # The history keeps every line (what happened, when); only the booking's details go.
    assert [h["what"] for h in seen["history"]] == [h["what"] for h in VIEW["history"]]


def test_projection_leaves_the_full_view_untouched() -> None:
    before = repr(VIEW)
    project(VIEW, frozenset())
    assert repr(VIEW) == before
