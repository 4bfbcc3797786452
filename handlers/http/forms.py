"""What every /dashboard form shares: the session, its form token (CSRF), and the page answers.

Every POST made while signed in must carry the session's form token in the field `csrf`;
`require_csrf` checks it (constant time) and answers a Swedish page when it is missing or
another session's, so nothing is changed. Handlers (the board's and the workplace's) use it as:

    session, form = await require_csrf(request)

It raises an aiohttp HTTP exception (a redirect to sign-in, or a 403 page) when the POST must
not go on, so a handler never forgets to check. The session cookie is `SameSite=Lax` and
`HttpOnly` (set in handlers/http/dashboard.py), which already keeps other sites' forms from
carrying it; the token is the second lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from bot.usecases.sessions import COOKIE, DashboardSession
from messages.dashboard import ErrorPage, render_error_page

if TYPE_CHECKING:
    from bot.runtime.services import Services

CSRF_FIELD = "csrf"
STALE_FORM = "Formuläret gäller inte längre. Ladda om sidan och försök igen."

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

Form = MultiDictProxy[str | bytes | bytearray | FileField]


def services_of(request: web.Request) -> Services:
    """The app's services (set up by handlers/http/routes.py)."""
    from handlers.http.routes import SERVICES

    return request.app[SERVICES]


def html(text: str, status: int = 200) -> web.Response:
    """An HTML answer with the board's security headers."""
    response = web.Response(status=status, text=text, content_type="text/html", charset="utf-8")
    response.headers.update(HEADERS)
    return response


def see_other(location: str) -> web.Response:
    """A 303 redirect (after a POST, or to the sign-in page)."""
    response = web.Response(status=303, headers={"Location": location})
    response.headers.update(HEADERS)
    return response


def refused(text: str, status: int = 403, *, title: str = "Inte tillåtet") -> web.Response:
    """A refusal as a Swedish page."""
    return html(render_error_page(ErrorPage(title=title, text=text)), status)


async def current_session(request: web.Request) -> DashboardSession | None:
    """The signed-in session, or None (no cookie, forged, expired or signed out)."""
    return await services_of(request).dashboard.read(request.cookies.get(COOKIE))


def csrf_token(session: DashboardSession) -> str:
    """The form token to put in a hidden `csrf` field of every form this session posts."""
    return session.csrf


def _raise(response: web.Response, exc: type[web.HTTPException]) -> web.HTTPException:
    return exc(
        text=response.text,
        content_type="text/html",
        headers={k: v for k, v in response.headers.items() if k in HEADERS},
    )


async def require_csrf(request: web.Request) -> tuple[DashboardSession, Form]:
    """The session and the posted form, once the form's token is the session's.

    Raises `web.HTTPSeeOther` to the sign-in page when not signed in, and `web.HTTPForbidden`
    with a Swedish page when the token is missing or not this session's (nothing is changed).
    """
    session = await current_session(request)
    if session is None:
        raise web.HTTPSeeOther("/dashboard/login", headers=HEADERS)
    form = await request.post()
    if not session.csrf_ok(str(form.get(CSRF_FIELD, ""))):
        raise _raise(refused(STALE_FORM), web.HTTPForbidden)
    return session, form
