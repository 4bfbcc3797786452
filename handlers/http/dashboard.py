"""The status board (/dashboard): sign-in by one-time link, the board, case pages, acknowledging.

Server-rendered HTML that works without JavaScript. Every page needs a session (else a redirect
to the sign-in page); every POST made while signed in carries the session's form token. An
organisation sees the cases it is on; management sees its municipality's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from datetime import datetime
from typing import Any

from aiohttp import web

from bot.channels.email import OutgoingMail
from bot.domain.case import Case
from bot.domain.deadline_rules import ack_due
from bot.domain.progress import arrival_messages, progress
from bot.runtime.services import Services, from_domain
from bot.usecases.audit import record_reads, record_refused
from bot.usecases.cases import CaseNotFound, Forbidden
from bot.usecases.sessions import COOKIE, DashboardSession
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
from messages.dashboard import (
    BoardPage,
    CasePage,
    CaseRow,
    DeadlineRow,
    DisagreementRow,
    ErrorPage,
    EscalationRow,
    HistoryRow,
    LoginPage,
    RecipientRow,
    Viewer,
    login_link_chat,
    render_board,
    render_case_page,
    render_error_page,
    render_login_mail,
    render_login_page,
    stylesheet,
)

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
    return Viewer(organisation=_name(services, session.org_id), scope=scope, csrf=session.csrf)


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


def _case_row(services: Services, case: Case, view: dict[str, Any], viewer_org: str) -> CaseRow:
    # Each recipient's row is its progress (bot.domain.progress): overdue once its
    # acknowledgement deadline has passed by the service's clock.
    due = ack_due(services.calendar, services.deadlines.settings, case.updated_at)
    now = services.clock.now()
    rows = []
    for party in view["recipients"]:
        ack = party["acknowledged"]
        mine = progress(
            version=case.version,
            cancelled=case.status == "cancelled",
            messages=arrival_messages(party.get("deliveries", ())),
            acknowledged_at=_dt(ack["at"]) if ack else None,
            now=now,
            ack_due=due,
        )
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


async def board(request: web.Request) -> web.Response:
    """GET /dashboard."""
    services = _services(request)
    session = await _session(request)
    if session is None:
        return _see_other("/dashboard/login")
    cases: list[CaseRow] = []
    deadlines: list[DeadlineRow] = []
    escalations: list[EscalationRow] = []
    disagreements: list[DisagreementRow] = []
    for case_id in (await visible_case_ids(services, session.org_id))[:MAX_CASES]:
        try:
            case = await services.cases.store.get(case_id)
        except CaseNotFound:
            continue
        view = await case_view_for(services.redis, services.directory, case, session.org_id)
        cases.append(_case_row(services, case, view, session.org_id))
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
    )
    return _html(render_board(page))


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
    "already": "Er organisation hade redan bekräftat den här versionen.",
    "stale": "Ärendet har ändrats sedan sidan visades. Läs den nya versionen och bekräfta igen.",
    "cancelled": "Ärendet är inställt; det finns inget att bekräfta.",
    "not_recipient": "Er organisation är inte mottagare i ärendet.",
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
    await _audit_reads(services, session, [case.id], "dashboard")
    # The one projection: what the policy lets this organisation see, nothing more.
    view = await case_view_for(services.redis, services.directory, case, session.org_id)
    row = _case_row(services, case, view, session.org_id)
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
        history=tuple(
            HistoryRow(
                at=datetime.fromisoformat(h["at"]),
                what=h["what"],
                by=_name(services, h.get("by")),
                via=h.get("via", ""),
                version=int(h.get("version", 0)),
                organisation=_name(services, h.get("organisation")) or None,
            )
            for h in reversed(view["history"])
        ),
        ack_version=case.version if may_ack else None,
        notice=_NOTICES.get(request.query.get("kvittens", "")),
    )
    return _html(render_case_page(page))


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
    outcome, _ = await services.cases.acknowledge(case.id, session.org_id, session.actor(), version)
    return _see_other(f"/dashboard/cases/{case.id}?kvittens={outcome}")


# -- sign-in ---------------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    """GET /dashboard/login: the e-mail form."""
    state = "signed_out" if request.query.get("ut") == "1" else "form"
    return _html(render_login_page(LoginPage(state=state)))


async def login_by_email(request: web.Request) -> web.Response:
    """POST /dashboard/login: mail a link if the address is an organisation's; answer the same
    page either way, so the form does not reveal the directory."""
    services = _services(request)
    form = await request.post()
    address = str(form.get("email", "")).strip().lower()
    minutes = services.dashboard.login_seconds // 60
    if _EMAIL.match(address):
        orgs = [
            o
            for o in services.directory.organisations.values()
            if o.email and o.email.strip().lower() == address
        ]
        if orgs and await services.dashboard.mail_allowed(address):
            task = asyncio.create_task(_mail_links(services, address, [o.id for o in orgs]))
            _mailing.add(task)
            task.add_done_callback(_mailing.discard)
    return _html(render_login_page(LoginPage(state="sent", minutes=minutes)))


async def _mail_links(services: Services, address: str, org_ids: list[str]) -> None:
    sender = services.deliverer.email
    if sender is None:
        log.warning("dashboard sign-in: e-mail is not configured")
        return
    minutes = services.dashboard.login_seconds // 60
    for org_id in org_ids:
        try:
            token = await services.dashboard.create_login(org_id, "member", "e-postlänk")
            mail = render_login_mail(_name(services, org_id), _login_url(services, token), minutes)
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
        page = LoginPage(
            state="confirm",
            post_url=f"/dashboard/login/{token}",
            organisation=_name(services, claim.org_id),
            minutes=minutes,
        )
        return _html(render_login_page(page))
    claim = await services.dashboard.redeem_login(token)
    if claim is None or claim.org_id not in services.directory.organisations:
        return _html(render_login_page(invalid), 410)
    _, cookie = await services.dashboard.open(claim)
    response = _see_other("/dashboard")
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
