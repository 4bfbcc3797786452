"""The board as a workplace (issue 14): what each role does on a case in the browser.

- the health centre reports the booked health conversation and the clearance
  (`HealthCentre.book` / `.clear`, the same calls and rules as the API);
- any party raises a disagreement; a supervisor of a party escalates it; a party or
  management resolves it (`Disagreements`);
- signed links from mails (`/dashboard/l/{token}`) lead to a case page or the health
  centre's booking form, through the sign-in when needed. A GET never changes anything.

Every POST carries the session's form token (`handlers.http.forms.require_csrf`). Every refusal
of the core (Forbidden, InvalidInput, Conflict) is a Swedish line on the page, field errors
beside their field with what was typed kept — never an error page. Who may do what is asked of
the one policy (`bot.domain.policy`), also to decide which links the case page offers.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import ValidationError

from bot.domain.arrival import InvalidInput, field_errors
from bot.domain.case import Case, CaseNotFound, Conflict
from bot.domain.policy import Forbidden
from bot.runtime.services import Services
from bot.usecases.access import LinkExpired
from bot.usecases.audit import record_refused
from bot.usecases.disagreements import (
    DecisionIn,
    Disagreement,
    DisagreementIn,
    DisagreementNotFound,
)
from bot.usecases.healthcare import BookingIn, ClearanceIn
from bot.usecases.sessions import DashboardSession
from bot.usecases.views import case_view_for
from handlers.http.forms import current_session, html, require_csrf, see_other, services_of
from messages.dashboard import Viewer
from messages.dates import swedish_datetime
from messages.workplace import (
    DisagreementAction,
    DisagreementPage,
    HealthPage,
    LinkPage,
    RaisePage,
    WorkplaceActions,
    render_disagreement_page,
    render_health_page,
    render_link_page,
    render_raise_page,
)

LOGIN = "/dashboard/login"
# Where a sign-in may lead afterwards: a page of the board, nothing else (no other site, no
# scheme, no "//host").
_NEXT = re.compile(r"/dashboard(/[A-Za-z0-9._~\-/]*)?(\?[A-Za-z0-9._~\-=&%]*)?(#[a-z]+)?")
_YES_NO = {"ja": True, "nej": False}
_ANSWER = "Svara ja eller nej."

_DONE = {
    "bokning": "Den bokade tiden är rapporterad. Mottagningsenheten får besked.",
    "klarbesked": (
        "Klarbeskedet är lämnat. Mottagningsenheten, skolan och förskolan får veta om starten "
        "kan ske, aldrig varför."
    ),
    "anmald": "Oenigheten är anmäld. De andra parterna får besked.",
    "lyft": "Oenigheten är lyft till ledningen för varje part.",
    "avgjord": "Oenigheten är avgjord. Alla inblandade får besked.",
}
_NOT_FOUND = LinkPage(
    title="Ärendet hittades inte",
    text="Det finns inget sådant ärende, eller så är er organisation inte part i det.",
)


def safe_next(value: str | None) -> str | None:
    """`value` if it is a page of the board to go to after signing in, else None."""
    if value and len(value) <= 600 and _NEXT.fullmatch(value):
        return value
    return None


def login_with_next(target: str) -> str:
    """The sign-in page, leading to `target` afterwards."""
    return f"{LOGIN}?next={quote(target, safe='/')}"


def _name(services: Services, org_id: str | None) -> str:
    if not org_id:
        return ""
    org = services.directory.organisations.get(org_id)
    return org.name if org else org_id


def _viewer(services: Services, session: DashboardSession) -> Viewer:
    return Viewer(
        organisation=_name(services, session.org_id),
        scope="",
        csrf=session.csrf,
        may_register=services.cases.policy.may_register(
            session.org_id,
            getattr(services.directory.organisations.get(session.org_id), "municipality", ""),
        ),
    )


def _page(text: str, status: int = 200) -> web.Response:
    return html(text, status)


def _not_found() -> web.Response:
    return _page(render_link_page(_NOT_FOUND), 404)


async def _readable_case(
    services: Services, session: DashboardSession, case_id: str
) -> Case | None:
    """The case, if the signed-in organisation may read it (else None, and the refusal is
    kept in the audit trail)."""
    try:
        case = await services.cases.store.get(case_id)
        services.cases.policy.require_read(session.actor(), case)
    except (CaseNotFound, Forbidden) as exc:
        reason = "not_found" if isinstance(exc, CaseNotFound) else "forbidden"
        now = services.clock.now()
        await record_refused(services.redis, session.actor(), case_id, "dashboard", now, reason)
        return None
    return case


# -- what the case page offers ---------------------------------------------------------------


def _may_report_health(services: Services, session: DashboardSession, case: Case) -> bool:
    try:
        services.health.require_health_centre(session.actor(), case)
    except (Forbidden, Conflict):
        return False
    return True


async def case_actions(
    services: Services, session: DashboardSession, case: Case
) -> WorkplaceActions:
    """What the signed-in organisation may do on `case`, as the policy answers it: the case
    page shows a link to each form, and nothing to those not allowed."""
    policy = services.cases.policy
    actor = session.actor()
    disagreements = []
    for d in await services.disagreements.of_case(case.id):
        if not policy.may_see_disagreement(actor.org_id, case, d.referred_to):
            continue
        disagreements.append(
            DisagreementAction(
                id=d.id,
                raised_by=_name(services, d.raised_by),
                status=d.status,
                may_escalate=d.status == "open" and policy.may_escalate(actor, case),
                may_resolve=d.status != "resolved",
            )
        )
    return WorkplaceActions(
        case_id=case.id,
        may_report_health=_may_report_health(services, session, case),
        may_raise=actor.org_id in case.parties() and case.status != "cancelled",
        disagreements=tuple(disagreements),
    )


# -- deep links from mails -----------------------------------------------------------------


async def deep_link(request: web.Request) -> web.Response:
    """GET /dashboard/l/{token}: a signed link from a mail, bound to a case and an
    organisation. Leads on (through the sign-in when needed); changes nothing."""
    services = services_of(request)
    token = request.match_info["token"]
    try:
        claim = services.signer.read_deep_link(token)
    except LinkExpired:
        page = LinkPage(
            title="Länken är för gammal",
            text="Länken i e-posten gäller inte längre. Logga in på statustavlan och öppna "
            "ärendet där.",
        )
        return _page(render_link_page(page), 410)
    if claim is None:
        page = LinkPage(
            title="Länken gäller inte",
            text="Länken är inte giltig. Kontrollera att hela länken kom med, eller logga in "
            "på statustavlan och öppna ärendet där.",
        )
        return _page(render_link_page(page), 404)
    session = await current_session(request)
    if session is None:
        return see_other(login_with_next(f"/dashboard/l/{token}"))
    if session.org_id != claim.org_id:
        page = LinkPage(
            title="Länken gäller en annan organisation",
            text=f"Länken skickades till {_name(services, claim.org_id)}, men ni är inloggade "
            f"som {_name(services, session.org_id)}. Logga ut och logga in som rätt "
            "organisation.",
        )
        return _page(render_link_page(page), 403)
    if claim.target == "booking":
        return see_other(f"/dashboard/cases/{claim.case_id}/halsa#bokning")
    return see_other(f"/dashboard/cases/{claim.case_id}")


# -- the health centre ---------------------------------------------------------------------


def _booking_words(booking: dict[str, Any] | None) -> str | None:
    if not booking or not booking.get("at"):
        return None
    text = swedish_datetime(datetime.fromisoformat(booking["at"]))
    if booking.get("interpreter_booked") is not None:
        text += ", tolk bokad" if booking["interpreter_booked"] else ", tolk inte bokad"
    return text


def _clearance_words(clearance: dict[str, Any] | None) -> str | None:
    if not clearance:
        return None
    results = (
        "alla provsvar har kommit"
        if clearance.get("all_results_received")
        else ("alla provsvar har inte kommit")
    )
    obstacle = "hinder för start" if clearance.get("start_obstacle") else "inget hinder för start"
    return f"{results}, {obstacle}"


async def _health_page(
    services: Services,
    session: DashboardSession,
    case: Case,
    *,
    status: int = 200,
    notice: str | None = None,
    refusal: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> web.Response:
    view = await case_view_for(services.redis, services.directory, case, session.org_id)
    page = HealthPage(
        viewer=_viewer(services, session),
        case_id=case.id,
        reference=case.reference,
        booking=_booking_words(view.get("booking")),
        clearance=_clearance_words(view.get("clearance")),
        notice=notice,
        refusal=refusal,
        errors=errors or {},
        values=values or {},
    )
    return _page(render_health_page(page), status)


async def health_page(request: web.Request) -> web.Response:
    """GET /dashboard/cases/{case_id}/halsa: the health centre's booking and clearance forms."""
    services = services_of(request)
    session = await current_session(request)
    case_id = request.match_info["case_id"]
    if session is None:
        return see_other(login_with_next(f"/dashboard/cases/{case_id}/halsa"))
    case = await _readable_case(services, session, case_id)
    if case is None:
        return _not_found()
    refusal = None
    try:
        services.health.require_health_centre(session.actor(), case)
    except (Forbidden, Conflict) as exc:
        refusal = str(exc)
    notice = _DONE.get(request.query.get("klart", ""))
    return await _health_page(services, session, case, notice=notice, refusal=refusal)


def _text(form: Any, name: str) -> str:
    return str(form.get(name, "")).strip()


def _booking_input(form: Any) -> tuple[BookingIn | None, dict[str, str], dict[str, str]]:
    """The booking typed into the form, or the errors beside each field; and what was typed."""
    values = {n: _text(form, n) for n in ("date", "time", "interpreter_booked")}
    errors: dict[str, str] = {}
    day: date | None = None
    at: time | None = None
    try:
        day = date.fromisoformat(values["date"])
    except ValueError:
        errors["date"] = "Ange datumet som ÅÅÅÅ-MM-DD, till exempel 2026-12-08."
    try:
        at = time.fromisoformat(values["time"]) if len(values["time"]) <= 8 else None
    except ValueError:
        at = None
    if at is None:
        errors["time"] = "Ange klockslaget som TT:MM, till exempel 09:30."
    if values["interpreter_booked"] not in _YES_NO:
        errors["interpreter_booked"] = _ANSWER
    if errors or day is None or at is None:
        return None, errors, values
    booking = BookingIn(
        at=datetime.combine(day, at), interpreter_booked=_YES_NO[values["interpreter_booked"]]
    )
    return booking, errors, values


def _booking_errors(exc: InvalidInput) -> dict[str, str]:
    # The core names `at`: a time of day outside office hours stands beside the time, the rest
    # (passed, a holiday, too far ahead, the same as now) beside the date.
    out: dict[str, str] = {}
    for e in exc.errors:
        where = e.get("field", "")
        if where == "interpreter_booked":
            out["interpreter_booked"] = e["message"]
        elif "kontorstid" in e["message"]:
            out["time"] = e["message"]
        else:
            out.setdefault("date", e["message"])
    return out


async def report_booking(request: web.Request) -> web.Response:
    """POST /dashboard/cases/{case_id}/halsa/bokning: `HealthCentre.book`, as the API."""
    services = services_of(request)
    session, form = await require_csrf(request)
    case = await _readable_case(services, session, request.match_info["case_id"])
    if case is None:
        return _not_found()
    booking, errors, values = _booking_input(form)
    if booking is not None:
        try:
            await services.health.book(case.id, booking, session.actor())
        except InvalidInput as exc:
            errors = _booking_errors(exc)
        except (Forbidden, Conflict) as exc:
            return await _health_page(
                services, session, case, status=403, refusal=str(exc), values=values
            )
        else:
            return see_other(f"/dashboard/cases/{case.id}/halsa?klart=bokning")
    return await _health_page(services, session, case, status=422, errors=errors, values=values)


async def report_clearance(request: web.Request) -> web.Response:
    """POST /dashboard/cases/{case_id}/halsa/klarbesked: the two yes/no answers and nothing
    else (`HealthCentre.clear`)."""
    services = services_of(request)
    session, form = await require_csrf(request)
    case = await _readable_case(services, session, request.match_info["case_id"])
    if case is None:
        return _not_found()
    names = ("all_results_received", "start_obstacle")
    values = {n: _text(form, n) for n in names}
    errors = {n: _ANSWER for n in names if values[n] not in _YES_NO}
    if not errors:
        clearance = ClearanceIn(
            all_results_received=_YES_NO[values["all_results_received"]],
            start_obstacle=_YES_NO[values["start_obstacle"]],
        )
        try:
            await services.health.clear(case.id, clearance, session.actor())
        except (Forbidden, Conflict) as exc:
            return await _health_page(
                services, session, case, status=403, refusal=str(exc), values=values
            )
        return see_other(f"/dashboard/cases/{case.id}/halsa?klart=klarbesked#klarbesked")
    return await _health_page(services, session, case, status=422, errors=errors, values=values)


# -- disagreements ---------------------------------------------------------------------------


def _raise_page(
    services: Services,
    session: DashboardSession,
    case: Case,
    *,
    status: int = 200,
    refusal: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> web.Response:
    page = RaisePage(
        viewer=_viewer(services, session),
        case_id=case.id,
        reference=case.reference,
        refusal=refusal,
        errors=errors or {},
        values=values or {},
    )
    return _page(render_raise_page(page), status)


async def raise_form(request: web.Request) -> web.Response:
    """GET /dashboard/cases/{case_id}/oenighet."""
    services = services_of(request)
    session = await current_session(request)
    case_id = request.match_info["case_id"]
    if session is None:
        return see_other(login_with_next(f"/dashboard/cases/{case_id}/oenighet"))
    case = await _readable_case(services, session, case_id)
    if case is None:
        return _not_found()
    refusal = None
    try:
        services.cases.policy.require_raise(session.actor(), case)
    except Forbidden as exc:
        refusal = str(exc)
    return _raise_page(services, session, case, refusal=refusal)


def _text_errors(exc: ValidationError, name: str) -> dict[str, str]:
    # The one field of these forms: the first message the core gives is shown beside it.
    return {name: field_errors(exc)[0]["message"]}


async def raise_disagreement(request: web.Request) -> web.Response:
    """POST /dashboard/cases/{case_id}/oenighet: `Disagreements.raise_`, as the API."""
    services = services_of(request)
    session, form = await require_csrf(request)
    case = await _readable_case(services, session, request.match_info["case_id"])
    if case is None:
        return _not_found()
    values = {"text": str(form.get("text", ""))}
    try:
        body = DisagreementIn(text=values["text"])
    except ValidationError as exc:
        return _raise_page(
            services, session, case, status=422, errors=_text_errors(exc, "text"), values=values
        )
    try:
        d = await services.disagreements.raise_(case.id, body, session.actor())
    except (Forbidden, Conflict) as exc:
        return _raise_page(services, session, case, status=403, refusal=str(exc), values=values)
    return see_other(f"/dashboard/oenigheter/{d.id}?klart=anmald")


async def _visible_disagreement(
    services: Services, session: DashboardSession, ident: str
) -> tuple[Disagreement, Case] | None:
    try:
        d = await services.disagreements.get(ident)
        case = await services.disagreements.require_visible(session.actor(), d)
    except (DisagreementNotFound, CaseNotFound, Forbidden):
        return None
    return d, case


def _disagreement_page(
    services: Services,
    session: DashboardSession,
    d: Disagreement,
    case: Case,
    *,
    status: int = 200,
    notice: str | None = None,
    refusal: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> web.Response:
    policy = services.cases.policy
    actor = session.actor()
    page = DisagreementPage(
        viewer=_viewer(services, session),
        id=d.id,
        case_id=case.id,
        reference=case.reference,
        raised_by=_name(services, d.raised_by),
        raised_at=d.raised_at,
        text=d.text,
        status=d.status,
        referred_to=tuple(_name(services, o) for o in d.referred_to),
        decision=d.decision,
        resolved_by=_name(services, d.resolved_by) or None,
        may_escalate=d.status == "open" and policy.may_escalate(actor, case),
        may_resolve=d.status != "resolved",
        notice=notice,
        refusal=refusal,
        errors=errors or {},
        values=values or {},
    )
    return _page(render_disagreement_page(page), status)


async def disagreement_page(request: web.Request) -> web.Response:
    """GET /dashboard/oenigheter/{id}: the disagreement, and the forms the viewer may use."""
    services = services_of(request)
    session = await current_session(request)
    ident = request.match_info["id"]
    if session is None:
        return see_other(login_with_next(f"/dashboard/oenigheter/{ident}"))
    found = await _visible_disagreement(services, session, ident)
    if found is None:
        return _not_found()
    notice = _DONE.get(request.query.get("klart", ""))
    return _disagreement_page(services, session, *found, notice=notice)


async def escalate(request: web.Request) -> web.Response:
    """POST /dashboard/oenigheter/{id}/lyft: a supervisor of a party refers it upwards."""
    services = services_of(request)
    session, _ = await require_csrf(request)
    found = await _visible_disagreement(services, session, request.match_info["id"])
    if found is None:
        return _not_found()
    d, case = found
    try:
        await services.disagreements.escalate(d.id, session.actor())
    except (Forbidden, Conflict) as exc:
        return _disagreement_page(services, session, d, case, status=403, refusal=str(exc))
    return see_other(f"/dashboard/oenigheter/{d.id}?klart=lyft")


async def resolve(request: web.Request) -> web.Response:
    """POST /dashboard/oenigheter/{id}/avgor: a party or management decides it."""
    services = services_of(request)
    session, form = await require_csrf(request)
    found = await _visible_disagreement(services, session, request.match_info["id"])
    if found is None:
        return _not_found()
    d, case = found
    values = {"decision": str(form.get("decision", ""))}
    try:
        body = DecisionIn(decision=values["decision"])
    except ValidationError as exc:
        errors = _text_errors(exc, "decision")
        return _disagreement_page(
            services, session, d, case, status=422, errors=errors, values=values
        )
    try:
        await services.disagreements.resolve(d.id, body, session.actor())
    except (Forbidden, Conflict) as exc:
        return _disagreement_page(
            services, session, d, case, status=403, refusal=str(exc), values=values
        )
    return see_other(f"/dashboard/oenigheter/{d.id}?klart=avgjord")


def add_workplace_routes(app: web.Application) -> None:
    """Every workplace route; `build_web_app` calls this once."""
    app.router.add_get("/dashboard/l/{token}", deep_link)
    app.router.add_get("/dashboard/cases/{case_id}/halsa", health_page)
    app.router.add_post("/dashboard/cases/{case_id}/halsa/bokning", report_booking)
    app.router.add_post("/dashboard/cases/{case_id}/halsa/klarbesked", report_clearance)
    app.router.add_get("/dashboard/cases/{case_id}/oenighet", raise_form)
    app.router.add_post("/dashboard/cases/{case_id}/oenighet", raise_disagreement)
    app.router.add_get("/dashboard/oenigheter/{id}", disagreement_page)
    app.router.add_post("/dashboard/oenigheter/{id}/lyft", escalate)
    app.router.add_post("/dashboard/oenigheter/{id}/avgor", resolve)
