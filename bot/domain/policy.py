"""Who may see or do what: the one answer for the API, the board and chat.

Pure (no Redis, no I/O): every question is answered from the directory and the case in hand.
A refusal raises `Forbidden` with the Swedish text the caller shows as it is. Which parts of a
case an organisation sees is answered here too (`Policy.sight` and `project`): the school and
the preschool learn *whether* a start may go ahead, never why (medical confidentiality), and
never the booked health conversation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from bot.domain.directory import Directory, Organisation
from bot.domain.events import Topic
from messages.models import OrgKind

__all__ = [
    "BOOKING_DETAILS",
    "GUARDED_NOTICES",
    "SIGHTS",
    "CaseScope",
    "Forbidden",
    "Policy",
    "Refusal",
    "Sight",
    "project",
]


class Forbidden(Exception):
    """The acting organisation may not do this; the message says why, in Swedish."""


class Refusal(StrEnum):
    """Every refusal's text, in Swedish, as the organisation reads it (tests assert on them)."""

    REGISTER = "Bara kommunens mottagningsenhet kan registrera och ändra ankomster."
    CHANGE_OWN = "Bara den mottagningsenhet som registrerade ärendet kan ändra det."
    READ = "Er organisation är inte part i det här ärendet."
    LIST = "Bara mottagningsenheter och ledningen kan lista ärenden."
    LIST_OWN_MUNICIPALITY = "Ni kan bara lista ärenden i er egen kommun."
    HEALTH_CENTRE = "Bara hälsocentralen i ärendet kan rapportera bokning och provsvar."
    RAISE = "Bara parter i ärendet kan anmäla oenighet."
    SEE_DISAGREEMENT = "Er organisation är inte part i den här oenigheten."
    ESCALATE_PARTY = "Bara en chef hos en part i ärendet kan lyfta oenigheten."
    ESCALATE_SUPERVISOR = "Bara chefer kan lyfta en oenighet till ledningen."
    RESOLVE = "Bara parter och ledningen kan avgöra oenigheten."


class Acting(Protocol):
    """Who acts: an organisation, and the role of the person (member or supervisor)."""

    @property
    def org_id(self) -> str: ...

    @property
    def role(self) -> str: ...


class CaseParties(Protocol):
    """What the policy needs to know of a case: where it is and who is on it."""

    @property
    def municipality(self) -> str: ...

    @property
    def reception_unit(self) -> str: ...

    @property
    def recipients(self) -> tuple[str, ...]: ...

    def parties(self) -> tuple[str, ...]: ...


class Sight(StrEnum):
    """The guarded parts of a case; everything else is seen by every organisation that may read
    the case (the arrival facts, who is on it and their acknowledgements, whether start may go
    ahead, the history without guarded details)."""

    BOOKING = "booking"  # the booked health conversation: time, interpreter, its deadlines
    CLEARANCE = "clearance"  # all results received / start obstacle: the why behind `start`


# Which guarded parts each kind of organisation sees on a case it may read. The school and the
# preschool see `start` (waiting | may_start | must_wait) and nothing of why; management and
# social services see what concerns them: the case, its progress and its escalations.
SIGHTS: Final[Mapping[OrgKind, frozenset[Sight]]] = {
    "reception_unit": frozenset(Sight),
    "health_centre": frozenset(Sight),
    "school": frozenset(),
    "preschool": frozenset(),
    "social_services": frozenset(),
    "management": frozenset(),
}

# History details and deadlines that are the booking itself.
BOOKING_DETAILS: Final = ("booked_for", "interpreter_booked", "replaces")
_BOOKING_HISTORY: Final = "health_booked"
_BOOKING_DEADLINES: Final = frozenset({Topic.BOOKING_REMINDER, Topic.BOOKING_ESCALATION})
_BOOKING_TOPIC: Final = Topic.HEALTH_BOOKING
# The kinds told whether start may go ahead (routine step 8).
_STARTING: Final[tuple[OrgKind, ...]] = ("school", "preschool")
_LISTING: Final[tuple[OrgKind, ...]] = ("reception_unit", "management")
# Notices that carry a guarded part or another organisation's free text; whoever plans one,
# the fan-out asks `Policy.may_be_told` for each organisation before it is sent.
_BOOKING_NOTICES: Final = frozenset({Topic.HEALTH_BOOKING, Topic.BOOKING_BEFORE_ARRIVAL})
_DISAGREEMENT_NOTICES: Final = frozenset(
    {Topic.DISAGREEMENT_RAISED, Topic.DISAGREEMENT_ESCALATED, Topic.DISAGREEMENT_RESOLVED}
)
GUARDED_NOTICES: Final = _BOOKING_NOTICES | _DISAGREEMENT_NOTICES | {Topic.CLEARANCE}


@dataclass(frozen=True)
class CaseScope:
    """Which cases a list shows: those of a municipality, or those an organisation is on."""

    municipality: str | None = None
    organisation: str | None = None


class Policy:
    """The rules of who may do and see what, over one directory."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def _org(self, org_id: str) -> Organisation | None:
        return self.directory.organisations.get(org_id)

    def _is(self, org_id: str, kind: OrgKind, municipality: str | None = None) -> bool:
        org = self._org(org_id)
        return (
            org is not None
            and org.kind == kind
            and (municipality is None or org.municipality == municipality)
        )

    # -- registering, changing, cancelling ------------------------------------------------------

    def may_register(self, org_id: str, municipality: str) -> bool:
        """Only the municipality's reception unit registers arrivals there."""
        return self._is(org_id, "reception_unit", municipality)

    def require_register(self, who: Acting, municipality: str) -> None:
        """`may_register`, or Forbidden."""
        if not self.may_register(who.org_id, municipality):
            raise Forbidden(Refusal.REGISTER)

    def require_change(self, who: Acting, case: CaseParties) -> None:
        """Change and cancel: the reception unit that registered the case, in its municipality."""
        self.require_register(who, case.municipality)
        if case.reception_unit != who.org_id:
            raise Forbidden(Refusal.CHANGE_OWN)

    # -- reading and listing --------------------------------------------------------------------

    def may_read(self, org_id: str, case: CaseParties) -> bool:
        """The organisations on the case, and management of its municipality."""
        return org_id in case.parties() or self._is(org_id, "management", case.municipality)

    def require_read(self, who: Acting, case: CaseParties) -> None:
        """`may_read`, or Forbidden."""
        if not self.may_read(who.org_id, case):
            raise Forbidden(Refusal.READ)

    def list_scope(self, who: Acting, municipality: str | None = None) -> CaseScope:
        """The API's case list: reception units and management, of their own municipality."""
        org = self._org(who.org_id)
        if org is None or org.kind not in _LISTING:
            raise Forbidden(Refusal.LIST)
        if municipality and municipality != org.municipality:
            raise Forbidden(Refusal.LIST_OWN_MUNICIPALITY)
        return CaseScope(municipality=org.municipality)

    def board_scope(self, org_id: str) -> CaseScope:
        """The board and `/arenden`: the cases the organisation is on; for management, every
        case of its municipality (the same cases `may_read` lets it open)."""
        org = self._org(org_id)
        if org is not None and org.kind == "management":
            return CaseScope(municipality=org.municipality)
        return CaseScope(organisation=org_id)

    # -- what of a case is seen -------------------------------------------------------------

    def sight(self, org_id: str, case: CaseParties) -> frozenset[Sight]:
        """The guarded parts of `case` the organisation sees (nothing if it may not read it)."""
        org = self._org(org_id)
        if org is None or not self.may_read(org_id, case):
            return frozenset()
        return SIGHTS[org.kind]

    # -- the health centre ------------------------------------------------------------------

    def may_report_health(self, org_id: str, case: CaseParties) -> bool:
        """Booking and clearance: only the health centre on the case reports them (and only
        its chat gets the booking button)."""
        return self._is(org_id, "health_centre") and org_id in case.recipients

    def require_health_centre(self, who: Acting, case: CaseParties) -> None:
        """`may_report_health`, or Forbidden."""
        if not self.may_report_health(who.org_id, case):
            raise Forbidden(Refusal.HEALTH_CENTRE)

    def told_of_start(self, case: CaseParties) -> list[str]:
        """Who is told whether start may go ahead: the reception unit, the school and the
        preschool on the case (never why)."""
        return [case.reception_unit] + [
            o for o in case.recipients if any(self._is(o, kind) for kind in _STARTING)
        ]

    # -- disagreements (§7) ---------------------------------------------------------------

    def managements(self, case: CaseParties) -> list[str]:
        """The next management level of every party: its supervisor if that is management,
        else its municipality's management organisation."""
        out: list[str] = []
        for org_id in case.parties():
            org = self._org(org_id)
            if org is None:
                continue
            chosen = None
            if org.supervisor and self._is(org.supervisor, "management"):
                chosen = org.supervisor
            if chosen is None:
                found = self.directory.organisations_in(org.municipality, "management")
                chosen = found[0].id if found else None
            if chosen and chosen not in out:
                out.append(chosen)
        return out

    def may_see_disagreement(
        self, org_id: str, case: CaseParties, referred_to: Iterable[str] = ()
    ) -> bool:
        """The parties of the case, the managements it was referred to, and the next management
        level of every party (who may have to decide it)."""
        return (
            org_id in case.parties()
            or org_id in tuple(referred_to)
            or org_id in self.managements(case)
        )

    def require_see_disagreement(
        self, who: Acting, case: CaseParties, referred_to: Iterable[str] = ()
    ) -> None:
        """`may_see_disagreement`, or Forbidden."""
        if not self.may_see_disagreement(who.org_id, case, referred_to):
            raise Forbidden(Refusal.SEE_DISAGREEMENT)

    def require_raise(self, who: Acting, case: CaseParties) -> None:
        """Only a party of the case raises a disagreement."""
        if who.org_id not in case.parties():
            raise Forbidden(Refusal.RAISE)

    def may_escalate(self, who: Acting, case: CaseParties) -> bool:
        """A supervisor of a party refers a disagreement upwards."""
        return who.org_id in case.parties() and who.role == "supervisor"

    def require_escalate(self, who: Acting, case: CaseParties) -> None:
        """`may_escalate`, or Forbidden saying which half is missing."""
        if who.org_id not in case.parties():
            raise Forbidden(Refusal.ESCALATE_PARTY)
        if who.role != "supervisor":
            raise Forbidden(Refusal.ESCALATE_SUPERVISOR)

    # -- who is told -----------------------------------------------------------------------

    def may_be_told(
        self, org_id: str, case: CaseParties, topic: Topic, referred_to: Iterable[str] = ()
    ) -> bool:
        """Whether a notice of `topic` on `case` may reach `org_id`, whoever planned it (the
        fan-out asks for every organisation before a delivery is made): the booking, and a
        booking the arrival has moved past, only those who see the booking; whether start may
        go ahead, those told of it and those who see the clearance; a disagreement's notices
        (they carry its text and decision) those who may see the disagreement. Any other
        notice is not limited here."""
        if topic in _BOOKING_NOTICES:
            return Sight.BOOKING in self.sight(org_id, case)
        if topic is Topic.CLEARANCE:
            return org_id in self.told_of_start(case) or Sight.CLEARANCE in self.sight(org_id, case)
        if topic in _DISAGREEMENT_NOTICES:
            return self.may_see_disagreement(org_id, case, referred_to)
        return True

    def require_resolve(
        self, who: Acting, case: CaseParties, referred_to: Iterable[str] = ()
    ) -> None:
        """A party, or a management level the disagreement concerns, decides it."""
        if not self.may_see_disagreement(who.org_id, case, referred_to):
            raise Forbidden(Refusal.RESOLVE)


def project(view: Mapping[str, Any], sight: frozenset[Sight]) -> dict[str, Any]:
    """The case view (as `bot.usecases.views.case_view` builds it) cut to what `sight` allows.

    Without CLEARANCE the clearance record is left out (the `start` answer stays); without
    BOOKING the booking, its deadlines, the booking details in the history and the deliveries
    that carried the booking are left out. Keys are removed, not nulled, so "hidden" is never
    mistaken for "not yet reported".
    """
    out = dict(view)
    if Sight.CLEARANCE not in sight:
        out.pop("clearance", None)
    if Sight.BOOKING not in sight:
        out.pop("booking", None)
        if "deadlines" in out:
            out["deadlines"] = [
                d for d in out["deadlines"] if d.get("kind") not in _BOOKING_DEADLINES
            ]
        if "history" in out:
            out["history"] = [_without_booking(h) for h in out["history"]]
        for name in ("reception_unit", "recipients"):
            if name in out:
                out[name] = _parties_without_booking(out[name])
    return out


def _without_booking(entry: Mapping[str, Any]) -> dict[str, Any]:
    if entry.get("what") != _BOOKING_HISTORY:
        return dict(entry)
    return {k: v for k, v in entry.items() if k not in BOOKING_DETAILS}


def _parties_without_booking(parties: Any) -> Any:
    def one(party: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(party)
        if "deliveries" in out:
            out["deliveries"] = [
                d
                for d in out["deliveries"]
                if str(d.get("topic", "")).partition("/")[0] != _BOOKING_TOPIC
            ]
        return out

    if isinstance(parties, list):
        return [one(p) for p in parties]
    return one(parties)
