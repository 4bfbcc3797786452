"""The status board's pages and sign-in messages, rendered from plain view data. No I/O.

Pages are HTML from `templates/dashboard/` with autoescape on; the sign-in e-mail's text part and
subject come from `.txt` templates, which are not escaped (and never become HTML).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from html import escape
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from messages.dates import STOCKHOLM, swedish_date
from messages.languages import language_list
from messages.values import children_summary, yes_no

if TYPE_CHECKING:
    from messages.workplace import WorkplaceActions

WEEKDAYS = ("mån", "tis", "ons", "tor", "fre", "lör", "sön")

HISTORY_LABELS = {
    "registered": "Registrerat",
    "changed": "Ändrat",
    "cancelled": "Inställt",
    "acknowledged": "Bekräftat",
    "all_acknowledged": "Alla har bekräftat",
    "ack_reminder": "Påminnelse: inte bekräftat",
    "ack_escalation": "Eskalerat: inte bekräftat i tid",
    "booking_reminder": "Påminnelse: hälsosamtal inte bokat",
    "booking_escalation": "Eskalerat: hälsosamtal inte bokat i tid",
    "health_booked": "Hälsosamtal bokat",
    "clearance": "Klarbesked från hälsocentralen",
    "same_day_alert": "Larm: alla nåddes inte samma dag",
    "disagreement_raised": "Oenighet anmäld",
    "disagreement_escalated": "Oenighet eskalerad",
    "disagreement_resolved": "Oenighet avgjord",
}
DEADLINE_LABELS = {
    "ack_reminder": "Bekräftelse (påminnelse)",
    "ack_escalation": "Bekräftelse (eskalering)",
    "booking_reminder": "Bokning av hälsosamtal (påminnelse)",
    "booking_escalation": "Bokning av hälsosamtal (eskalering)",
    "same_day_check": "Underrättat samma dag",
    "disagreement_escalation": "Oenighet (eskalering)",
}
STATUS_LABELS = {
    "notifying": "Skickas",
    "notified": "Skickat, väntar på bekräftelser",
    "acknowledged": "Alla har bekräftat",
    "cancelled": "Inställt",
    "open": "Öppen",
    "escalated": "Eskalerad",
    "resolved": "Avgjord",
}
VIA_LABELS = {
    "api": "API",
    "telegram": "Telegram",
    "link": "e-postlänk",
    "cli": "kommandorad",
    "intake": "inläsning",
    "system": "Ankomst",
    "dashboard": "statustavlan",
}
SENT_LABELS = {"sent": "Skickat", "failed": "Misslyckades", "pending": "Skickas", "none": "–"}


@dataclass(frozen=True)
class RecipientRow:
    """One recipient of a case: whether told, whether acknowledged, whether late."""

    organisation: str  # display name
    sent: str  # "sent" | "failed" | "pending" | "none" (current version's arrival notice)
    sent_at: datetime | None
    acknowledged_at: datetime | None
    overdue: bool
    is_viewer: bool = False


@dataclass(frozen=True)
class CaseRow:
    """A case as the board lists it."""

    id: str
    reference: str
    municipality: str
    arrival_date: date
    status: str
    version: int
    recipients: tuple[RecipientRow, ...]
    # The health centre's booking, where the viewer may see it: None when not shown.
    booked: bool | None = None
    booking_overdue: bool = False

    @property
    def overdue(self) -> bool:
        """Whether any recipient is late acknowledging, or the booking is late."""
        return self.booking_overdue or any(r.overdue for r in self.recipients)

    @property
    def waits_on_viewer(self) -> bool:
        """Whether the viewer's organisation is a recipient that has not acknowledged."""
        return any(r.is_viewer and r.acknowledged_at is None for r in self.recipients)

    @property
    def summary(self) -> str:
        """The case in one line: "2 av 3 har bekräftat · hälsocentralen har inte bokat"."""
        if self.status == "cancelled":
            return "Inställt"
        parts = []
        if self.overdue:
            parts.append("Försenat")
        if self.waits_on_viewer:
            parts.append("Väntar på er bekräftelse")
        done = sum(1 for r in self.recipients if r.acknowledged_at is not None)
        parts.append(f"{done} av {len(self.recipients)} har bekräftat")
        if self.booked is not None:
            if self.booked:
                parts.append("hälsocentralen har bokat")
            elif self.booking_overdue:
                parts.append("hälsocentralen har inte bokat i tid")
            else:
                parts.append("hälsocentralen har inte bokat")
        return " · ".join(parts)


@dataclass(frozen=True)
class DeadlineRow:
    """A deadline still ahead: what, for whom, when, and what happens then."""

    case_id: str
    reference: str
    kind: str
    organisation: str | None
    due_at: datetime
    then: str


@dataclass(frozen=True)
class EscalationRow:
    """Something escalated on a case (from its history)."""

    case_id: str
    reference: str
    what: str
    organisation: str | None
    at: datetime


@dataclass(frozen=True)
class DisagreementRow:
    """A disagreement on a case."""

    case_id: str
    reference: str
    raised_by: str
    text: str
    status: str
    raised_at: datetime
    decision: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class HistoryRow:
    """One line of a case's history."""

    at: datetime
    what: str
    by: str
    via: str
    version: int
    organisation: str | None = None
    changes: tuple[tuple[str, str, str], ...] = ()  # (field label, old, new)
    reason: str | None = None


@dataclass(frozen=True)
class Viewer:
    """Who is signed in, and the form token their POSTs must carry."""

    organisation: str
    scope: str  # what the board shows, in words
    csrf: str
    may_register: bool = False  # a reception unit: the form at /dashboard/ny is offered


@dataclass(frozen=True)
class BoardPage:
    """The board: open cases, deadlines ahead, escalations, open disagreements."""

    viewer: Viewer
    now: datetime
    cases: tuple[CaseRow, ...]
    deadlines: tuple[DeadlineRow, ...]
    escalations: tuple[EscalationRow, ...]
    disagreements: tuple[DisagreementRow, ...]
    show: str = "oppna"  # the filter: "oppna" | "forsenade" | "mina" | "alla"
    notice: str | None = None


BOARD_FILTERS: tuple[tuple[str, str], ...] = (
    ("oppna", "Öppna"),
    ("forsenade", "Försenade"),
    ("mina", "Väntar på oss"),
    ("alla", "Alla"),
)


@dataclass(frozen=True)
class CasePage:
    """One case: facts, recipients, deadlines, disagreements, history, and the acknowledge form."""

    viewer: Viewer
    now: datetime
    case: CaseRow
    facts: dict[str, Any]
    booking: str | None
    clearance: str | None
    deadlines: tuple[DeadlineRow, ...]
    disagreements: tuple[DisagreementRow, ...]
    history: tuple[HistoryRow, ...]
    ack_version: int | None = None  # set when the viewer may acknowledge this version here
    notice: str | None = None  # one line of feedback after a POST
    may_change: bool = False  # the registering reception unit: change the date, cancel
    errors: dict[str, str] | None = None  # form field id -> Swedish error (date, cancel)
    values: dict[str, str] | None = None  # what was typed into those forms
    # What the viewer may do here besides (workplace_actions.html): set by the workplace.
    actions: WorkplaceActions | None = None


@dataclass(frozen=True)
class Choice:
    """One checkbox or option: its value, its label, and whether it is ticked."""

    value: str
    label: str
    checked: bool = False


@dataclass(frozen=True)
class RegisterForm:
    """The registration form: what was typed, the errors beside each field, the choices."""

    viewer: Viewer
    municipality: str
    nonce: str
    values: dict[str, str]
    languages: tuple[Choice, ...]
    recipients: tuple[Choice, ...]
    errors: dict[str, str]  # field id -> Swedish error
    min_date: str = ""
    max_date: str = ""
    notice: str | None = None


@dataclass(frozen=True)
class RegisterSummary:
    """The summary to confirm: the facts, who is told, and the form carried on hidden."""

    viewer: Viewer
    municipality: str
    facts: tuple[tuple[str, str], ...]
    recipients: tuple[str, ...]
    hidden: tuple[tuple[str, str], ...]  # every field of the form, to post again
    error: str | None = None


@dataclass(frozen=True)
class LoginPage:
    """The sign-in pages: the e-mail form, "link sent", the confirm button, or a refusal."""

    state: str  # "form" | "sent" | "confirm" | "invalid" | "signed_out" | "limited"
    post_url: str | None = None
    organisation: str | None = None
    next: str | None = None  # a board page to go to once signed in (a link from a mail)
    minutes: int = 15


@dataclass(frozen=True)
class ErrorPage:
    """A refusal or a missing page, in words."""

    title: str
    text: str
    signed_in: bool = False
    csrf: str = ""


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("messages", "templates/dashboard"),
        autoescape=select_autoescape(["html"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["day"] = swedish_date
    env.globals.update(
        history_label=lambda w: HISTORY_LABELS.get(w, w),
        deadline_label=lambda k: DEADLINE_LABELS.get(k, k),
        status_label=lambda s: STATUS_LABELS.get(s, s),
        via_label=lambda v: VIA_LABELS.get(v, v),
        sent_label=lambda s: SENT_LABELS.get(s, s),
    )
    return env


def when(moment: datetime, zone: ZoneInfo = STOCKHOLM) -> str:
    """A short Swedish time for tables: "fre 27/11 kl. 09.30"."""
    local = moment.astimezone(zone)
    return f"{WEEKDAYS[local.weekday()]} {local.day}/{local.month} kl. {local:%H.%M}"


_env = _environment()


def describe_facts(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The case's facts as label and value, in Swedish; what is missing (deleted) is left out."""
    rows: list[tuple[str, str]] = []
    if facts.get("arrival_date"):
        rows.append(("Ankomstdag", swedish_date(date.fromisoformat(str(facts["arrival_date"])))))
    children = facts.get("children")
    if children:
        rows.append(("Barn", children_summary(children)))
    if facts.get("languages"):
        rows.append(("Språk", language_list(facts["languages"])))
    if "interpreter_needed" in facts:
        rows.append(("Tolk behövs", yes_no(bool(facts["interpreter_needed"]))))
    if "unaccompanied" in facts:
        rows.append(("Ensamkommande", yes_no(bool(facts["unaccompanied"]))))
    if facts.get("details"):
        rows.append(("Övrigt", str(facts["details"])))
    return rows


def render_board(page: BoardPage) -> str:
    """The board page (HTML)."""
    labels = dict(BOARD_FILTERS)
    show_label = {"oppna": "Öppna ärenden", "forsenade": "Försenade ärenden"}.get(
        page.show, labels.get(page.show, "Ärenden")
    )
    return _env.get_template("board.html").render(
        page=page, title="Statustavla", filters=BOARD_FILTERS, show_label=show_label
    )


def render_case_page(page: CasePage) -> str:
    """A case page (HTML)."""
    return _env.get_template("case.html").render(
        page=page, facts=describe_facts(page.facts), title=f"Ärende {page.case.reference}"
    )


def render_login_page(page: LoginPage) -> str:
    """A sign-in page (HTML)."""
    return _env.get_template("login.html").render(page=page, title="Logga in")


def render_register_form(page: RegisterForm) -> str:
    """The registration form, with its errors (HTML)."""
    title = "Ny ankomst" + (" – fel i formuläret" if page.errors else "")
    return _env.get_template("register.html").render(page=page, title=title, labels=FORM_LABELS)


def render_register_summary(page: RegisterSummary) -> str:
    """The summary to confirm before anything is registered (HTML)."""
    return _env.get_template("register_summary.html").render(
        page=page, title="Kontrollera och skicka"
    )


def render_statement() -> str:
    """The accessibility statement (DIGG's model), in Swedish (HTML)."""
    return _env.get_template("statement.html").render(title="Tillgänglighetsredogörelse")


# The registration form's fields, by id, as the error summary names them.
FORM_LABELS = {
    "external_ref": "Migrationsverkets ärendenummer",
    "arrival_date": "Ankomstdag",
    "ages": "Barnens åldrar",
    "languages": "Språk",
    "interpreter_needed": "Tolk",
    "unaccompanied": "Ensamkommande",
    "details": "Övrigt",
    "recipients": "Mottagare",
    "form": "Formuläret",
    "reason": "Skäl",
}


def render_error_page(page: ErrorPage) -> str:
    """A refusal or a not-found page (HTML)."""
    return _env.get_template("error.html").render(page=page, title=page.title)


@dataclass(frozen=True)
class LoginMail:
    """The sign-in e-mail, in every part."""

    subject: str
    text: str
    html: str


def render_login_mail(organisation: str, url: str, minutes: int) -> LoginMail:
    """The e-mail carrying a sign-in link to the board."""
    values = {"organisation": organisation, "url": url, "minutes": minutes}
    return LoginMail(
        subject=_env.get_template("login_mail_subject.txt").render(**values).strip(),
        text=_env.get_template("login_mail.txt").render(**values),
        html=_env.get_template("login_mail.html").render(**values),
    )


def login_link_chat(organisation: str, url: str, minutes: int) -> str:
    """The chat reply to /tavla: the one-time link (Telegram HTML)."""
    return (
        f"Här är er inloggningslänk till statustavlan för <b>{escape(organisation)}</b>:\n"
        f"{escape(url)}\n\n"
        f"Länken gäller i {minutes} minuter och kan användas en gång. Dela den inte."
    )


def stylesheet() -> str:
    """The board's one stylesheet (served by the app itself: the pages make no outside requests)."""
    loader = _env.loader
    assert loader is not None
    source, _, _ = loader.get_source(_env, "tavla.css")
    return source
