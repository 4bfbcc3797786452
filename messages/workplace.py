"""The workplace pages of the board: what each role does on a case in the browser besides
acknowledging — the health centre's booking and clearance, raising, escalating and resolving a
disagreement — and the block of links the case page shows to those the policy allows.

Pure rendering over plain data (the handlers in handlers/http/workplace.py decide who may do
what, through bot.domain.policy). Every refusal is a Swedish line on the page; field errors
stand beside their field, and what was typed is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from messages.dashboard import Viewer, _env

__all__ = [
    "DisagreementAction",
    "DisagreementPage",
    "HealthPage",
    "LinkPage",
    "RaisePage",
    "WorkplaceActions",
    "render_disagreement_page",
    "render_health_page",
    "render_link_page",
    "render_raise_page",
]


@dataclass(frozen=True)
class DisagreementAction:
    """A disagreement on the case, and what the viewer may do with it."""

    id: str
    raised_by: str
    status: str  # open | escalated | resolved
    may_escalate: bool
    may_resolve: bool


@dataclass(frozen=True)
class WorkplaceActions:
    """What the signed-in organisation may do on a case (the case page's action links)."""

    case_id: str
    may_report_health: bool = False  # the health centre on the case: booking and clearance
    may_raise: bool = False  # a party of the case
    disagreements: tuple[DisagreementAction, ...] = ()

    def __bool__(self) -> bool:
        return (
            self.may_report_health
            or self.may_raise
            or any(d.may_escalate or d.may_resolve for d in self.disagreements)
        )


@dataclass(frozen=True)
class HealthPage:
    """The health centre's forms for one case: the booked time and the clearance."""

    viewer: Viewer
    case_id: str
    reference: str
    booking: str | None  # the current booking, in words
    clearance: str | None  # the current clearance, in words
    notice: str | None = None  # one line after a successful POST
    refusal: str | None = None  # a refusal of the whole action (Forbidden, Conflict)
    errors: dict[str, str] = field(default_factory=dict)  # field id -> Swedish error
    values: dict[str, str] = field(default_factory=dict)  # what was typed


@dataclass(frozen=True)
class RaisePage:
    """Raise a disagreement on a case."""

    viewer: Viewer
    case_id: str
    reference: str
    refusal: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DisagreementPage:
    """One disagreement: its text, its state, and the escalate / resolve forms if allowed."""

    viewer: Viewer
    id: str
    case_id: str
    reference: str
    raised_by: str
    raised_at: datetime
    text: str
    status: str
    referred_to: tuple[str, ...] = ()
    decision: str | None = None
    resolved_by: str | None = None
    may_escalate: bool = False
    may_resolve: bool = False
    notice: str | None = None
    refusal: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LinkPage:
    """A link from a mail that cannot be followed (too old, forged, another organisation's)."""

    title: str
    text: str


def render_health_page(page: HealthPage) -> str:
    """GET/POST /dashboard/cases/{id}/halsa."""
    return _env.get_template("workplace_health.html").render(page=page, title="Hälsocentralen")


def render_raise_page(page: RaisePage) -> str:
    """GET/POST /dashboard/cases/{id}/oenighet."""
    return _env.get_template("workplace_raise.html").render(page=page, title="Anmäl oenighet")


def render_disagreement_page(page: DisagreementPage) -> str:
    """GET /dashboard/oenigheter/{id} and its POSTs."""
    return _env.get_template("workplace_disagreement.html").render(page=page, title="Oenighet")


def render_link_page(page: LinkPage) -> str:
    """A refused deep link."""
    return _env.get_template("workplace_link.html").render(page=page, title=page.title)
