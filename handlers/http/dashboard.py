"""The status board (/dashboard): sign-in by one-time link, the board, case pages, acknowledging.

Server-rendered HTML that works without JavaScript. Every page needs a session (else a redirect
to the sign-in page); every POST made while signed in carries the session's form token. An
organisation sees the cases it is on; management sees its municipality's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.channels.email import OutgoingMail
from bot.domain.actor import Role
from bot.domain.arrival import (
    MAX_DAYS_AHEAD,
    MAX_DAYS_PAST,
    ArrivalIn,
    ArrivalPatch,
    CancelIn,
    InvalidInput,
    parse,
)
from bot.domain.calendar import local_today
from bot.domain.case import Case
from bot.domain.deadline_rules import ack_due, booking_due
from bot.domain.directory import ROUTABLE_KINDS, RoutingError
from bot.domain.progress import arrival_messages, progress
from bot.runtime.services import Services, from_domain
from bot.store import keys
from bot.usecases.audit import record_reads, record_refused
from bot.usecases.cases import CaseNotFound, Conflict, Forbidden
from bot.usecases.notices import CONFIRMED, DISCARDED, DraftNotFound, is_draft_id
from bot.usecases.sessions import COOKIE, EMAIL_LINK_WHO, DashboardSession
from bot.usecases.views import case_view_for
from handlers.http.forms import (
    STALE_FORM,
    current_session,
    html,
    refused,
    require_csrf,
    see_other,
    services_of,
)
from handlers.http.workplace import case_actions, safe_next
from messages.dashboard import (
    BoardPage,
    CasePage,
    CaseRow,
    Choice,
    DeadlineRow,
    DisagreementRow,
    ErrorPage,
    EscalationRow,
    HistoryRow,
    LoginPage,
    RecipientRow,
    RegisterForm,
    RegisterSummary,
    Viewer,
    describe_facts,
    login_link_chat,
    render_board,
    render_case_page,
    render_error_page,
    render_login_mail,
    render_login_page,
    render_register_form,
    render_register_summary,
    render_statement,
    stylesheet,
)
from messages.dates import swedish_datetime
from messages.languages import COMMON_LANGUAGES, language_name
from messages.report import KIND_NAMES
from messages.values import change_value, field_label

log = logging.getLogger(__name__)

ESCALATIONS = ("ack_escalation", "booking_escalation", "disagreement_escalated")
MAX_CASES = 200
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")
# Mails sent from the sign-in form run after the answer, so its timing says nothing either;
# the set keeps the tasks alive until done.
_mailing: set[asyncio.Task[None]] = set()

_services = services_of
_html = html
_see_other = see_other
_refused = refused


def _login_url(services: Services, token: str) -> str:
    return f"{services.settings.public_url}/dashboard/login/{token}"


def _name(services: Services, org_id: str | None) -> str:
    if not org_id:
        return ""
    org = services.directory.organisations.get(org_id)
    return org.name if org else org_id


_session = current_session


def _viewer(services: Services, session: DashboardSession) -> Viewer:
    seen = services.cases.policy.board_scope(session.org_id)
    if seen.municipality is not None:
        municipality = services.directory.municipalities.get(seen.municipality)
        scope = f"Alla ärenden i {municipality.name if municipality else seen.municipality}"
    else:
        scope = "Ärenden där er organisation är mottagare eller avsändare"
    org = services.directory.organisations.get(session.org_id)
    may_register = org is not None and services.cases.policy.may_register(
        session.org_id, org.municipality
    )
    return Viewer(
        organisation=_name(services, session.org_id),
        scope=scope,
        csrf=session.csrf,
        may_register=may_register,
    )


async def _audit_reads(
    services: Services, session: DashboardSession, case_ids: list[str], via: str
) -> None:
    """Every case shown on the board is logged in the audit trail: who, when, which case."""
    if case_ids:
        await record_reads(services.redis, session.actor(), case_ids, via, services.clock.now())


def _not_found(services: Services, session: DashboardSession | None) -> web.Response:
    return _html(
        render_error_page(
            ErrorPage(
                title="Ärendet hittades inte",
                text="Det finns inget sådant ärende, eller så är er organisation inte part i det.",
            )
        ),
        404,
    )


# -- reading -------------------------------------------------------------------------------


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _case_row(
    services: Services,
    case: Case,
    view: dict[str, Any],
    viewer_org: str,
    informed: dict[str, str] | None = None,
) -> CaseRow:
    # Each recipient's row is its progress (bot.domain.progress): overdue once its
    # acknowledgement deadline has passed by the service's clock; the health centre's booking
    # (where the viewer sees it: the view keeps "booking" only then) late once its last day
    # to book is over.
    rules = services.deadlines.settings
    due = ack_due(services.calendar, rules, case.updated_at)
    now = services.clock.now()
    sees_booking = "booking" in view
    booked_now = bool(view.get("booking"))
    rows = []
    booked: bool | None = None
    booking_overdue = False
    for party in view["recipients"]:
        ack = party["acknowledged"]
        health = sees_booking and party.get("kind") == "health_centre"
        told = (informed or {}).get(party["organisation"]) if health else None
        mine = progress(
            version=case.version,
            cancelled=case.status == "cancelled",
            messages=arrival_messages(party.get("deliveries", ())),
            acknowledged_at=_dt(ack["at"]) if ack else None,
            now=now,
            ack_due=due,
            booking_due=booking_due(services.calendar, rules, datetime.fromisoformat(told))
            if told
            else None,
            booked=booked_now,
        )
        if health:
            booked = mine.booked
            booking_overdue = booking_overdue or mine.booking_overdue
        rows.append(
            RecipientRow(
                organisation=party["name"],
                sent=str(mine.reach),
                sent_at=mine.first_sent_at,
                acknowledged_at=mine.acknowledged_at,
                overdue=mine.ack_overdue,
                is_viewer=party["organisation"] == viewer_org,
            )
        )
    municipality = services.directory.municipalities.get(case.municipality)
    return CaseRow(
        id=case.id,
        reference=case.reference,
        municipality=municipality.name if municipality else case.municipality,
        arrival_date=case.arrival_date,
        status=view["status"],
        version=case.version,
        recipients=tuple(rows),
        booked=booked,
        booking_overdue=booking_overdue,
    )


def _deadlines(services: Services, case: Case, view: dict[str, Any]) -> list[DeadlineRow]:
    return [
        DeadlineRow(
            case_id=case.id,
            reference=case.reference,
            kind=d["kind"],
            organisation=_name(services, d.get("organisation")) or None,
            due_at=datetime.fromisoformat(d["due_at"]),
            then=str(d["then"]),
        )
        for d in view["deadlines"]
    ]


def _escalations(services: Services, case: Case, view: dict[str, Any]) -> list[EscalationRow]:
    return [
        EscalationRow(
            case_id=case.id,
            reference=case.reference,
            what=h["what"],
            organisation=_name(services, h.get("organisation")) or None,
            at=datetime.fromisoformat(h["at"]),
        )
        for h in view["history"]
        if h.get("what") in ESCALATIONS
    ]


async def _disagreements(
    services: Services, case: Case, viewer_org: str, *, open_only: bool
) -> list[DisagreementRow]:
    policy = services.cases.policy
    return [
        DisagreementRow(
            case_id=case.id,
            reference=case.reference,
            raised_by=_name(services, d.raised_by),
            text=d.text,
            status=d.status,
            raised_at=d.raised_at,
            decision=d.decision,
            resolved_by=_name(services, d.resolved_by) or None,
            resolved_at=d.resolved_at,
        )
        for d in await services.disagreements.of_case(case.id)
        if (not open_only or d.status != "resolved")
        and policy.may_see_disagreement(viewer_org, case, d.referred_to)
    ]


async def visible_case_ids(services: Services, org_id: str) -> list[str]:
    """Open cases the organisation may see (the policy's board scope)."""
    scope = services.cases.policy.board_scope(org_id)
    return await services.cases.store.ids(
        open_only=True, municipality=scope.municipality, org=scope.organisation
    )


# -- pages ---------------------------------------------------------------------------------


async def _informed(services: Services, case: Case) -> dict[str, str]:
    """When each health centre on the case was told (the booking clock's start)."""
    out: dict[str, str] = {}
    for org_id in case.recipients:
        org = services.directory.organisations.get(org_id)
        if org is not None and org.kind == "health_centre":
            told = await services.cases.store.marker(case.id, keys.booking_informed_marker(org_id))
            if told:
                out[org_id] = told
    return out


BOARD_SHOWS = {"oppna", "forsenade", "mina", "alla"}
_SHOW_ALIASES = {"öppna": "oppna", "försenade": "forsenade"}


async def board(request: web.Request) -> web.Response:
    """GET /dashboard?visa=oppna|forsenade|mina|alla: overdue first, one line per case."""
    services = _services(request)
    session = await _session(request)
    if session is None:
        return _see_other("/dashboard/login")
    show = request.query.get("visa", "oppna")
    show = _SHOW_ALIASES.get(show, show)
    if show not in BOARD_SHOWS:
        show = "oppna"
    cases: list[CaseRow] = []
    deadlines: list[DeadlineRow] = []
    escalations: list[EscalationRow] = []
    disagreements: list[DisagreementRow] = []
    scope = services.cases.policy.board_scope(session.org_id)
    ids = await services.cases.store.ids(
        open_only=show != "alla", municipality=scope.municipality, org=scope.organisation
    )
    for case_id in ids[:MAX_CASES]:
        try:
            case = await services.cases.store.get(case_id)
        except CaseNotFound:
            continue
        view = await case_view_for(services.redis, services.directory, case, session.org_id)
        row = _case_row(services, case, view, session.org_id, await _informed(services, case))
        if show == "forsenade" and not row.overdue:
            continue
        if show == "mina" and not _waits_on(row, case, session.org_id):
            continue
        cases.append(row)
        deadlines += _deadlines(services, case, view)
        escalations += _escalations(services, case, view)
        disagreements += await _disagreements(services, case, session.org_id, open_only=True)
    await _audit_reads(services, session, [c.id for c in cases], "dashboard:list")
    cases.sort(key=lambda c: (not c.overdue, c.arrival_date, c.reference))
    page = BoardPage(
        viewer=_viewer(services, session),
        now=services.clock.now(),
        cases=tuple(cases),
        deadlines=tuple(sorted(deadlines, key=lambda d: d.due_at)),
        escalations=tuple(sorted(escalations, key=lambda e: e.at, reverse=True)),
        disagreements=tuple(sorted(disagreements, key=lambda d: d.raised_at)),
        show=show,
        notice=_NOTICES.get(request.query.get("kvittens", "")),
    )
    return _html(render_board(page))


def _waits_on(row: CaseRow, case: Case, org_id: str) -> bool:
    """ "Väntar på oss": the organisation has not acknowledged, or (the reception unit that
    registered it) someone is late or has not acknowledged yet."""
    if row.waits_on_viewer:
        return True
    return case.reception_unit == org_id and (
        row.overdue or any(r.acknowledged_at is None for r in row.recipients)
    )


async def _visible_case(services: Services, session: DashboardSession, case_id: str) -> Case | None:
    try:
        case = await services.cases.store.get(case_id)
        services.cases.require_party(session.actor(), case)
    except (CaseNotFound, Forbidden) as exc:
        # The same answer either way (the board does not say which cases exist), but the
        # audit trail keeps who tried which case.
        reason = "not_found" if isinstance(exc, CaseNotFound) else "forbidden"
        now = services.clock.now()
        await record_refused(services.redis, session.actor(), case_id, "dashboard", now, reason)
        return None
    return case


_NOTICES = {
    "recorded": "Mottaget är registrerat.",
    "draft_discarded": "Aviseringen är kastad. Skälet är sparat; inget skickades.",
    "already": "Er organisation hade redan bekräftat den här versionen.",
    "stale": "Ärendet har ändrats sedan sidan visades. Läs den nya versionen och bekräfta igen.",
    "cancelled": "Ärendet är inställt; det finns inget att bekräfta.",
    "not_recipient": "Er organisation är inte mottagare i ärendet.",
    "registered": "Ankomsten är registrerad och skickas till mottagarna.",
    "changed": "Det nya datumet är sparat och skickas till mottagarna.",
    "unchanged": "Datumet var redan det; inget ändrades.",
    "cancelled_now": "Ankomsten är inställd och mottagarna får veta det.",
}


async def case_page(request: web.Request) -> web.Response:
    """GET /dashboard/cases/{case_id}."""
    services = _services(request)
    session = await _session(request)
    if session is None:
        return _see_other("/dashboard/login")
    case = await _visible_case(services, session, request.match_info["case_id"])
    if case is None:
        return _not_found(services, session)
    notice = _NOTICES.get(request.query.get("kvittens", ""))
    return _html(await _render_case(services, session, case, notice=notice))


async def _render_case(
    services: Services,
    session: DashboardSession,
    case: Case,
    *,
    notice: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> str:
    await _audit_reads(services, session, [case.id], "dashboard")
    # The one projection: what the policy lets this organisation see, nothing more.
    view = await case_view_for(services.redis, services.directory, case, session.org_id)
    row = _case_row(services, case, view, session.org_id, await _informed(services, case))
    mine = next((r for r in view["recipients"] if r["organisation"] == session.org_id), None)
    may_ack = mine is not None and mine["acknowledged"] is None and case.status != "cancelled"
    page = CasePage(
        viewer=_viewer(services, session),
        now=services.clock.now(),
        case=row,
        facts=dict(view["arrival"]),
        booking=_booking_text(view.get("booking")),
        clearance=_START_TEXT.get(view["start"]["school"]),
        deadlines=tuple(sorted(_deadlines(services, case, view), key=lambda d: d.due_at)),
        disagreements=tuple(await _disagreements(services, case, session.org_id, open_only=False)),
        history=tuple(_history_row(services, h) for h in reversed(view["history"])),
        ack_version=case.version if may_ack else None,
        notice=notice,
        may_change=_may_change(services, session, case),
        errors=errors,
        values=values,
        actions=await case_actions(services, session, case),
    )
    return render_case_page(page)


def _history_row(services: Services, entry: dict[str, Any]) -> HistoryRow:
    """A history line with what changed (old → new) in words."""
    changes = tuple(
        (
            field_label(str(c.get("field", ""))),
            change_value(str(c.get("field", "")), c.get("old")),
            change_value(str(c.get("field", "")), c.get("new")),
        )
        for c in entry.get("changes") or ()
        if isinstance(c, dict)
    )
    return HistoryRow(
        at=datetime.fromisoformat(entry["at"]),
        what=entry["what"],
        by=_name(services, entry.get("by")),
        via=entry.get("via", ""),
        version=int(entry.get("version", 0)),
        organisation=_name(services, entry.get("organisation")) or None,
        changes=changes,
        reason=entry.get("reason") or None,
    )


def _may_change(services: Services, session: DashboardSession, case: Case) -> bool:
    """The policy's rule (the registering reception unit), on a case not cancelled."""
    try:
        services.cases.require_change(session.actor(), case)
    except (Forbidden, Conflict):
        return False
    return True


# Whether start may go ahead, as every viewer sees it (never why).
_START_TEXT = {"may_start": "Start kan ske", "must_wait": "Start får vänta"}


def _booking_text(booking: dict[str, Any] | None) -> str | None:
    if not booking:
        return None
    from messages.dates import swedish_datetime

    at = booking.get("at")
    text = swedish_datetime(datetime.fromisoformat(at)) if at else "bokat"
    interpreter = booking.get("interpreter_booked")
    if interpreter is not None:
        text += ", tolk bokad" if interpreter else ", tolk inte bokad"
    return text


async def acknowledge(request: web.Request) -> web.Response:
    """POST /dashboard/cases/{case_id}/ack: the acknowledge button (form token required)."""
    services = _services(request)
    session, form = await require_csrf(request)
    case = await _visible_case(services, session, request.match_info["case_id"])
    if case is None:
        return _not_found(services, session)
    try:
        version = int(str(form.get("version", "")))
    except ValueError:
        return _refused("Versionen saknas i formuläret.", 400)
    outcome, _ = await services.cases.acknowledge(
        case.id, session.org_id, session.actor(), version, sender=session.sender
    )
    return _see_other(f"/dashboard/cases/{case.id}?kvittens={outcome}")


# -- sign-in ---------------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    """GET /dashboard/login: the e-mail form."""
    state = "signed_out" if request.query.get("ut") == "1" else "form"
    return _html(
        render_login_page(LoginPage(state=state, next=safe_next(request.query.get("next"))))
    )


async def login_by_email(request: web.Request) -> web.Response:
    """POST /dashboard/login: mail a link if the address is an organisation's; answer the same
    page either way, so the form does not reveal the directory."""
    services = _services(request)
    form = await request.post()
    address = str(form.get("email", "")).strip().lower()
    minutes = services.dashboard.login_seconds // 60
    # Counted per address and per client before the directory is asked, so the answer when
    # limited is the same for every address. request.remote is the peer: behind a proxy, the
    # proxy (one shared limit) unless it is told to pass the client on.
    client = request.remote or "unknown"
    if not await services.dashboard.login_attempt_allowed(address, client):
        return _html(render_login_page(LoginPage(state="limited", minutes=minutes)), 429)
    if _EMAIL.match(address):
        # The organisation's mailbox signs in as a member, a supervisor address listed in the
        # directory as its supervisor (who may escalate).
        sign_ins = services.directory.sign_ins_for(address)
        if sign_ins and await services.dashboard.mail_allowed(address):
            after = safe_next(request.query.get("next"))
            task = asyncio.create_task(_mail_links(services, address, list(sign_ins), after))
            _mailing.add(task)
            task.add_done_callback(_mailing.discard)
    return _html(render_login_page(LoginPage(state="sent", minutes=minutes)))


async def _mail_links(
    services: Services, address: str, sign_ins: list[tuple[str, Role]], after: str | None = None
) -> None:
    sender = services.deliverer.email
    if sender is None:
        log.warning("dashboard sign-in: e-mail is not configured")
        return
    minutes = services.dashboard.login_seconds // 60
    for org_id, role in sign_ins:
        try:
            token = await services.dashboard.create_login(org_id, role, EMAIL_LINK_WHO[role])
            url = _login_url(services, token) + (f"?next={quote(after, safe='/')}" if after else "")
            mail = render_login_mail(_name(services, org_id), url, minutes)
            result = await sender.send(
                OutgoingMail(
                    to=address,
                    subject=mail.subject,
                    text=mail.text,
                    html=mail.html,
                    message_id=f"<login-{secrets.token_hex(8)}@{from_domain(services.settings)}>",
                )
            )
            if not result.ok:
                log.warning("dashboard sign-in mail to org %s failed: %s", org_id, result.error)
        except Exception:
            log.exception("dashboard sign-in mail to org %s failed", org_id)


async def login_link(request: web.Request) -> web.Response:
    """GET /dashboard/login/{token} shows a button (mail scanners fetch links); POST signs in."""
    services = _services(request)
    token = request.match_info["token"]
    minutes = services.dashboard.login_seconds // 60
    invalid = LoginPage(state="invalid", minutes=minutes)
    if request.method != "POST":
        claim = await services.dashboard.peek_login(token)
        if claim is None:
            return _html(render_login_page(invalid), 410)
        after = safe_next(request.query.get("next"))
        page = LoginPage(
            state="confirm",
            post_url=f"/dashboard/login/{token}"
            + (f"?next={quote(after, safe='/')}" if after else ""),
            organisation=_name(services, claim.org_id),
            minutes=minutes,
        )
        return _html(render_login_page(page))
    claim = await services.dashboard.redeem_login(token)
    if claim is None or claim.org_id not in services.directory.organisations:
        return _html(render_login_page(invalid), 410)
    _, cookie = await services.dashboard.open(claim)
    # A link from a mail (handlers/http/workplace.py) leads on to where it pointed.
    response = _see_other(safe_next(request.query.get("next")) or "/dashboard")
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=services.dashboard.session_seconds,
        path="/dashboard",
        httponly=True,
        samesite="Lax",
        secure=services.settings.public_url.startswith("https://"),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /dashboard/logout: end the session here and in Redis."""
    services = _services(request)
    session = await _session(request)
    if session is not None:
        form = await request.post()
        if not session.csrf_ok(str(form.get("csrf", ""))):
            return _refused(STALE_FORM)
        await services.dashboard.close(session)
    response = _see_other("/dashboard/login?ut=1")
    response.del_cookie(COOKIE, path="/dashboard")
    return response


async def css(request: web.Request) -> web.Response:
    """GET /dashboard/tavla.css."""
    response = web.Response(text=stylesheet(), content_type="text/css", charset="utf-8")
    response.headers["Cache-Control"] = "max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def chat_login_link(services: Services, org_id: str, role: str, who: str) -> str:
    """The reply to /tavla: a one-time sign-in link for the chat's organisation."""
    token = await services.dashboard.create_login(
        org_id, "supervisor" if role == "supervisor" else "member", who
    )
    minutes = services.dashboard.login_seconds // 60
    return login_link_chat(_name(services, org_id), _login_url(services, token), minutes)


def add_dashboard_routes(app: web.Application) -> None:
    """Every /dashboard route; `build_web_app` calls this once."""
    app.router.add_get("/dashboard", board)
    app.router.add_get("/dashboard/", board)
    app.router.add_get("/dashboard/tavla.css", css)
    app.router.add_get("/dashboard/cases/{case_id}", case_page)
    app.router.add_post("/dashboard/cases/{case_id}/ack", acknowledge)
    app.router.add_get("/dashboard/login", login_form)
    app.router.add_post("/dashboard/login", login_by_email)
    app.router.add_route("GET", "/dashboard/login/{token}", login_link)
    app.router.add_route("POST", "/dashboard/login/{token}", login_link)
    app.router.add_post("/dashboard/logout", logout)
    app.router.add_get("/dashboard/tillganglighet", statement)
    app.router.add_get("/dashboard/ny", register_form)
    app.router.add_post("/dashboard/ny", register_review)
    app.router.add_post("/dashboard/ny/bekrafta", register_confirm)
    app.router.add_post("/dashboard/ny/kasta", register_discard)
    app.router.add_post("/dashboard/cases/{case_id}/datum", change_date)
    app.router.add_post("/dashboard/cases/{case_id}/installd", cancel_case)


# -- the accessibility statement -----------------------------------------------------------


async def statement(request: web.Request) -> web.Response:
    """GET /dashboard/tillganglighet: the accessibility statement (open to everyone)."""
    return _html(render_statement())


# -- registering an arrival (the reception unit) -------------------------------------------------
#
# The form is only a way of typing what POST /api/v1/arrivals takes: the fields become the
# same ArrivalIn (bot.domain.arrival) and CaseService.register decides; the errors it names
# are shown beside the fields they belong to. A form nonce stands in for Migrationsverket's
# number when there is none, so posting the summary twice registers once.

FORM_FIELDS = (
    "ref_mode",
    "external_ref",
    "arrival_date",
    "ages",
    "other_languages",
    "interpreter_needed",
    "unaccompanied",
    "details",
    "mottagare",
    "draft",  # the notice draft the form was opened from (`?draft=ID`), carried to the end
)
_NONCE = re.compile(r"^[0-9a-f]{16}$")
_CHOICE_ERRORS = {"ska vara true eller false": "Välj ja eller nej.", "saknas": "Välj ja eller nej."}


def _field_of(core_field: str) -> str:
    """The form field a core rule's error belongs to ("children[1].age" → "ages")."""
    head = re.split(r"[.\[]", core_field, maxsplit=1)[0]
    return {
        "children": "ages",
        "languages": "languages",
        "external_ref": "external_ref",
        "arrival_date": "arrival_date",
        "interpreter_needed": "interpreter_needed",
        "unaccompanied": "unaccompanied",
        "details": "details",
        "recipients": "recipients",
    }.get(head, "form")


def _form_errors(errors: list[dict[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for error in errors:
        field = _field_of(error["field"])
        message = error["message"]
        if field in ("interpreter_needed", "unaccompanied"):
            message = _CHOICE_ERRORS.get(message, message)
        elif field == "arrival_date" and message == "saknas":
            message = "Ange ankomstdagen."
        elif field == "ages" and message.startswith("ska ha minst"):
            message = "Ange minst ett barns ålder."
        elif field == "languages" and message.startswith("ska ha minst"):
            message = "Välj eller skriv minst ett språk."
        elif field == "recipients" and message.startswith("ska ha minst"):
            message = "Välj minst en mottagare."
        if field not in out:
            out[field] = message[:1].upper() + message[1:]
    return out


def _split(text: str) -> list[str]:
    return [p for p in re.split(r"[\s,;]+", text.strip()) if p]


def _yes_no(value: str) -> bool | None:
    return {"ja": True, "nej": False}.get(value)


def _arrival_body(
    values: dict[str, str], langs: list[str], chosen: list[str], municipality: str, nonce: str
) -> dict[str, Any]:
    """The form's fields as the API's JSON body; every rule is left to ArrivalIn."""
    ref = values.get("external_ref", "").strip()
    if values.get("ref_mode") == "none" or not ref:
        ref = f"WEB-{nonce}"
    ages: list[object] = [int(p) if p.isdigit() else p for p in _split(values.get("ages", ""))]
    codes = [*langs, *(c.lower() for c in _split(values.get("other_languages", "")))]
    body: dict[str, Any] = {
        "external_ref": ref,
        "municipality": municipality,
        "arrival_date": values.get("arrival_date", "").strip() or None,
        "children": [{"age": a} for a in ages],
        "languages": list(dict.fromkeys(codes)),
        "interpreter_needed": _yes_no(values.get("interpreter_needed", "")),
        "unaccompanied": _yes_no(values.get("unaccompanied", "")),
        "details": values.get("details", "").replace("\r\n", "\n"),
    }
    if values.get("mottagare") == "valda":
        body["recipients"] = chosen
    return body


def _form_values(form: Any) -> tuple[dict[str, str], list[str], list[str]]:
    values = {name: str(form.get(name, ""))[:2000] for name in FORM_FIELDS if name in form}
    langs = [str(v)[:8] for v in form.getall("lang", [])][:20]
    chosen = [str(v)[:64] for v in form.getall("recipient", [])][:20]
    return values, langs, chosen


def _reception_municipality(services: Services, session: DashboardSession) -> str | None:
    """The municipality the signed-in organisation registers in, if the policy lets it."""
    org = services.directory.organisations.get(session.org_id)
    if org is None or not services.cases.policy.may_register(org.id, org.municipality):
        return None
    return org.municipality


def _today(services: Services) -> date:
    return local_today(services.clock, services.settings.zone)


def _render_form(
    services: Services,
    session: DashboardSession,
    municipality: str,
    values: dict[str, str],
    langs: list[str],
    chosen: list[str],
    nonce: str,
    errors: dict[str, str],
    notice: str | None = None,
) -> str:
    today = _today(services)
    common = list(COMMON_LANGUAGES)
    language_choices = tuple(
        Choice(code, language_name(code), code in langs)
        for code in [*common, *(c for c in langs if c not in common)]
    )
    recipient_choices = tuple(
        Choice(o.id, f"{o.name} ({KIND_NAMES.get(o.kind, o.kind).lower()})", o.id in chosen)
        for o in services.directory.organisations_in(municipality)
        if o.kind in ROUTABLE_KINDS
    )
    place = services.directory.municipalities.get(municipality)
    return render_register_form(
        RegisterForm(
            viewer=_viewer(services, session),
            municipality=place.name if place else municipality,
            nonce=nonce,
            values=values,
            languages=language_choices,
            recipients=recipient_choices,
            errors=errors,
            min_date=(today - timedelta(days=MAX_DAYS_PAST)).isoformat(),
            max_date=(today + timedelta(days=MAX_DAYS_AHEAD)).isoformat(),
            notice=notice,
        )
    )


async def _draft_data(services: Services, draft_id: str) -> dict[str, str] | None:
    """A notice draft's stored fields (bot/store/keys.notice_draft); None when there is none."""
    if not is_draft_id(draft_id):
        return None
    try:
        return await services.drafts.get(draft_id)
    except DraftNotFound:
        return None


def _draft_values(data: dict[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
    """A notice draft as form values: its fields carry ArrivalIn's names, the children as
    JSON ages."""
    values, langs, chosen = _query_values(data)
    if not values.get("ages") and data.get("children"):
        try:
            ages = [str(c["age"]) for c in json.loads(data["children"]) if "age" in c]
        except (ValueError, TypeError, KeyError):
            ages = []
        if ages:
            values["ages"] = ", ".join(ages)
    values.pop("draft", None)
    return values, langs, chosen


def _draft_note(services: Services, data: dict[str, str]) -> str:
    """The line that says the form comes from a notice, and when the notice came."""
    received = data.get("received_at")
    when = (
        swedish_datetime(datetime.fromisoformat(received), services.settings.zone)
        if received
        else "vid okänd tid"
    )
    note = f"Utkast från en avisering som kom {when}. Kontrollera uppgifterna innan du skickar."
    if data.get("note"):
        note += f" Aviseringen {data['note']}."
    return note


async def _draft_closed(
    services: Services, session: DashboardSession, data: dict[str, str]
) -> web.Response | None:
    """The Swedish answer for a draft that can no longer be confirmed or discarded here (already
    confirmed, discarded, or another reception unit's); None when it is open to this one."""
    unit = data.get("reception_unit")
    if unit and unit != session.org_id:
        return _refused("Bara mottagningsenheten som fick aviseringen kan hantera utkastet.")
    if data.get("status") == CONFIRMED:
        text = "Aviseringen är redan bekräftad och skickad"
        try:
            case = await services.cases.store.get(data.get("case", ""))
            text += f" som ärende {case.reference}"
        except CaseNotFound:
            pass
        return _refused(text + ".", 409, title="Aviseringen är redan hanterad")
    if data.get("status") == DISCARDED:
        return _refused(
            "Aviseringen är redan kastad. Den kan inte skickas.",
            409,
            title="Aviseringen är redan hanterad",
        )
    return None


def _query_values(data: Any) -> tuple[dict[str, str], list[str], list[str]]:
    """Prefill from query parameters or a draft: the form's own field names; `languages`
    (comma-separated codes) and `lang` are both taken, unknown names are ignored."""
    values = {n: str(data.get(n, ""))[:2000] for n in FORM_FIELDS if data.get(n) is not None}
    if values.get("external_ref"):
        values.setdefault("ref_mode", "ref")
    getall = getattr(data, "getall", None)
    langs = [str(c) for c in getall("lang", [])] if getall else []
    langs += _split(str(data.get("languages", "")))
    common = set(COMMON_LANGUAGES)
    other = [c.lower() for c in langs if c.lower() not in common]
    if other:
        values["other_languages"] = ", ".join(
            dict.fromkeys([*_split(values.get("other_languages", "")), *other])
        )
    chosen = [str(c) for c in getall("recipient", [])] if getall else []
    chosen += _split(str(data.get("recipients", "")))
    if chosen:
        values.setdefault("mottagare", "valda")
    for name in ("interpreter_needed", "unaccompanied"):
        if values.get(name) in ("true", "1"):
            values[name] = "ja"
        elif values.get(name) in ("false", "0"):
            values[name] = "nej"
    return values, [c.lower() for c in langs if c.lower() in common], chosen


def _not_reception_unit() -> web.Response:
    return _refused("Bara kommunens mottagningsenhet registrerar ankomster.")


async def register_form(request: web.Request) -> web.Response:
    """GET /dashboard/ny[?draft=ID or field=value...]: the registration form, maybe prefilled."""
    services = _services(request)
    session = await _session(request)
    if session is None:
        return _see_other("/dashboard/login")
    municipality = _reception_municipality(services, session)
    if municipality is None:
        return _not_reception_unit()
    notice = None
    draft_id = request.query.get("draft", "")
    data = await _draft_data(services, draft_id)
    if data is not None:
        closed = await _draft_closed(services, session, data)
        if closed is not None:
            return closed
        values, langs, chosen = _draft_values(data)
        notice = "Formuläret är ifyllt från en avisering. Kontrollera uppgifterna."
        if data.get("reception_unit"):
            # A draft from the mailbox: confirming and discarding go through it.
            values["draft"] = draft_id
            notice = _draft_note(services, data)
    else:
        values, langs, chosen = _query_values(request.query)
        values.pop("draft", None)
        if request.query.get("draft"):
            notice = "Utkastet finns inte längre; fyll i formuläret."
    nonce = secrets.token_hex(8)
    page = _render_form(
        services, session, municipality, values, langs, chosen, nonce, {}, notice=notice
    )
    return _html(page)


def _check(
    services: Services, municipality: str, form: Any
) -> tuple[dict[str, str], list[str], list[str], str, ArrivalIn | None, dict[str, str]]:
    values, langs, chosen = _form_values(form)
    nonce = str(form.get("nonce", ""))
    if not _NONCE.match(nonce):
        nonce = secrets.token_hex(8)
    body = _arrival_body(values, langs, chosen, municipality, nonce)
    try:
        arrival = parse(ArrivalIn, body, today=_today(services))
        # Who is told: the directory's routing, the same call register makes.
        services.directory.route(
            municipality,
            [c.age for c in arrival.children],
            arrival.unaccompanied,
            arrival.recipients,
        )
    except InvalidInput as exc:
        return values, langs, chosen, nonce, None, _form_errors(exc.errors)
    except RoutingError as exc:
        return values, langs, chosen, nonce, None, {"recipients": str(exc)}
    return values, langs, chosen, nonce, arrival, {}


def _hidden(
    values: dict[str, str], langs: list[str], chosen: list[str], nonce: str, csrf: str
) -> tuple[tuple[str, str], ...]:
    out = [("csrf", csrf), ("nonce", nonce)]
    out += [(k, v) for k, v in values.items()]
    out += [("lang", c) for c in langs]
    out += [("recipient", c) for c in chosen]
    return tuple(out)


async def register_review(request: web.Request) -> web.Response:
    """POST /dashboard/ny: check by the core rules; the form again with errors beside the
    fields, or the summary to confirm (nothing is registered yet)."""
    services = _services(request)
    session, form = await require_csrf(request)
    municipality = _reception_municipality(services, session)
    if municipality is None:
        return _not_reception_unit()
    values, langs, chosen, nonce, arrival, errors = _check(services, municipality, form)
    draft = await _carried_draft(services, session, values)
    if isinstance(draft, web.Response):
        return draft
    note = _draft_note(services, draft) if draft else None
    if arrival is None or form.get("andra"):
        page = _render_form(
            services, session, municipality, values, langs, chosen, nonce, errors, notice=note
        )
        return _html(page, 400 if errors else 200)
    return _html(
        _summary(services, session, municipality, arrival, values, langs, chosen, nonce, note=note)
    )


async def _carried_draft(
    services: Services, session: DashboardSession, values: dict[str, str]
) -> dict[str, str] | web.Response | None:
    """The notice draft a posted form carries (hidden `draft`): its fields, a Swedish answer
    when it is gone or already handled, or None when the form is not from a draft."""
    draft_id = values.get("draft", "")
    if not draft_id:
        return None
    data = await _draft_data(services, draft_id)
    if data is None:
        return _refused("Utkastet finns inte längre.", 404, title="Utkastet finns inte")
    return await _draft_closed(services, session, data) or data


def _summary(
    services: Services,
    session: DashboardSession,
    municipality: str,
    arrival: ArrivalIn,
    values: dict[str, str],
    langs: list[str],
    chosen: list[str],
    nonce: str,
    error: str | None = None,
    note: str | None = None,
) -> str:
    told = services.directory.route(
        municipality, [c.age for c in arrival.children], arrival.unaccompanied, arrival.recipients
    )
    facts = describe_facts(arrival.facts())
    if not arrival.external_ref.startswith("WEB-"):
        facts.insert(0, ("Migrationsverkets ärendenummer", arrival.external_ref))
    if note:
        facts.insert(0, ("Avisering", note))
    place = services.directory.municipalities.get(municipality)
    return render_register_summary(
        RegisterSummary(
            viewer=_viewer(services, session),
            municipality=place.name if place else municipality,
            facts=tuple(facts),
            recipients=tuple(o.name for o in told),
            hidden=_hidden(values, langs, chosen, nonce, session.csrf),
            error=error,
        )
    )


async def register_confirm(request: web.Request) -> web.Response:
    """POST /dashboard/ny/bekrafta: register (CaseService.register); a second post of the same
    summary finds the same case (the nonce or Migrationsverket's number is the key)."""
    services = _services(request)
    session, form = await require_csrf(request)
    municipality = _reception_municipality(services, session)
    if municipality is None:
        return _not_reception_unit()
    values, langs, chosen, nonce, arrival, errors = _check(services, municipality, form)
    draft = await _carried_draft(services, session, values)
    if isinstance(draft, web.Response):
        return draft
    if arrival is None:
        note = _draft_note(services, draft) if draft else None
        page = _render_form(
            services, session, municipality, values, langs, chosen, nonce, errors, notice=note
        )
        return _html(page, 400)
    try:
        if draft is not None:
            # From a notice: the draft is marked confirmed, the case keeps when the notice
            # came, and the same-day alerts are called off (NoticeDrafts.confirm).
            case, _created = await services.drafts.confirm(
                values["draft"], arrival, session.actor()
            )
        else:
            case, _created = await services.cases.register(arrival, session.actor())
    except DraftNotFound:
        return _refused("Utkastet finns inte längre.", 404, title="Utkastet finns inte")
    except InvalidInput as exc:
        page = _render_form(
            services, session, municipality, values, langs, chosen, nonce, _form_errors(exc.errors)
        )
        return _html(page, 400)
    except Conflict as exc:
        text = (
            "Ärendenumret finns redan för ett ärende med andra uppgifter. Kontrollera numret."
            if "external_ref" in str(exc)
            else str(exc)
        )
        page = _render_form(
            services, session, municipality, values, langs, chosen, nonce, {"external_ref": text}
        )
        return _html(page, 409)
    except Forbidden:
        return _not_reception_unit()
    return _see_other(f"/dashboard/cases/{case.id}?kvittens=registered")


async def register_discard(request: web.Request) -> web.Response:
    """POST /dashboard/ny/kasta: throw a notice draft away with a reason (required; the error
    beside the field), through NoticeDrafts.discard, which writes the history and the audit."""
    services = _services(request)
    session, form = await require_csrf(request)
    municipality = _reception_municipality(services, session)
    if municipality is None:
        return _not_reception_unit()
    draft_id = str(form.get("draft", ""))[:64]
    data = await _draft_data(services, draft_id)
    if data is None or not data.get("reception_unit"):
        return _refused("Utkastet finns inte längre.", 404, title="Utkastet finns inte")
    closed = await _draft_closed(services, session, data)
    if closed is not None:
        return closed
    typed = str(form.get("reason", ""))[:2000]
    try:
        await services.drafts.discard(draft_id, typed.replace("\r\n", "\n"), session.actor())
    except InvalidInput as exc:
        values, langs, chosen = _draft_values(data)
        values.update(draft=draft_id, reason=typed)
        errors = {"reason": exc.errors[0]["message"]} if exc.errors else {}
        page = _render_form(
            services,
            session,
            municipality,
            values,
            langs,
            chosen,
            secrets.token_hex(8),
            errors,
            notice=_draft_note(services, data),
        )
        return _html(page, 400)
    except Conflict as exc:
        return _refused(str(exc), 409, title="Aviseringen är redan hanterad")
    except DraftNotFound:
        return _refused("Utkastet finns inte längre.", 404, title="Utkastet finns inte")
    return _see_other("/dashboard?kvittens=draft_discarded")


# -- changing the date and cancelling (the registering reception unit) --------------------------


async def _changeable(
    request: web.Request,
) -> tuple[Services, DashboardSession, Any, Case] | web.Response:
    services = _services(request)
    session, form = await require_csrf(request)
    case = await _visible_case(services, session, request.match_info["case_id"])
    if case is None:
        return _not_found(services, session)
    try:
        services.cases.require_change(session.actor(), case)
    except Forbidden:
        return _refused("Bara mottagningsenheten som registrerade ärendet kan ändra det.")
    except Conflict as exc:
        return _refused(str(exc), 409)
    return services, session, form, case


async def change_date(request: web.Request) -> web.Response:
    """POST /dashboard/cases/{case_id}/datum: a new arrival date (CaseService.change)."""
    found = await _changeable(request)
    if isinstance(found, web.Response):
        return found
    services, session, form, case = found
    typed = str(form.get("arrival_date", ""))[:40].strip()
    values = {"arrival_date": typed}
    try:
        patch = parse(ArrivalPatch, {"arrival_date": typed or None}, today=_today(services))
        if patch.arrival_date is None:
            raise InvalidInput([{"field": "arrival_date", "message": "Ange ankomstdagen."}])
        before = case.version
        updated = await services.cases.change(case.id, patch, session.actor())
    except InvalidInput as exc:
        errors = _form_errors(exc.errors)
        page = await _render_case(services, session, case, errors=errors, values=values)
        return _html(page, 400)
    except Conflict as exc:
        page = await _render_case(
            services, session, case, errors={"arrival_date": str(exc)}, values=values
        )
        return _html(page, 409)
    outcome = "changed" if updated.version != before else "unchanged"
    return _see_other(f"/dashboard/cases/{case.id}?kvittens={outcome}")


async def cancel_case(request: web.Request) -> web.Response:
    """POST /dashboard/cases/{case_id}/installd: cancel with a reason (CaseService.cancel)."""
    found = await _changeable(request)
    if isinstance(found, web.Response):
        return found
    services, session, form, case = found
    typed = str(form.get("reason", ""))[:2000]
    try:
        reason = parse(CancelIn, {"reason": typed.replace("\r\n", "\n")}).reason
        await services.cases.cancel(case.id, reason, session.actor())
    except InvalidInput as exc:
        errors = {"reason": exc.errors[0]["message"]} if exc.errors else {}
        page = await _render_case(services, session, case, errors=errors, values={"reason": typed})
        return _html(page, 400)
    except Conflict as exc:
        page = await _render_case(
            services, session, case, errors={"reason": str(exc)}, values={"reason": typed}
        )
        return _html(page, 409)
    return _see_other(f"/dashboard/cases/{case.id}?kvittens=cancelled_now")
