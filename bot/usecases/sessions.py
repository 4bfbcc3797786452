"""Sign-in to the status board: one-time links (by chat or e-mail) and signed, expiring sessions.

A sign-in link carries a random token stored only as its SHA-256, with a short TTL, and is used
up by the first POST (GETDEL). A session is a random id: the browser holds it signed (itsdangerous,
with a timestamp read from our clock) in a cookie; Redis holds what it stands for, by the id's
hash, with the same lifetime. Both must hold, so signing out ends a session for good and a
forged or stale cookie is refused without a lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from bot.domain.clock import Clock
from bot.store import Redis, keys
from bot.usecases.access import Actor, Role, _clock_signer

COOKIE = "ankomst_tavla"

# What the audit trail names a sign-in by mailed link by: the organisation's mailbox signs in as
# a member, an address the directory lists under `supervisor_emails` as the supervisor.
EMAIL_LINK_WHO: dict[Role, str] = {"member": "e-postlänk", "supervisor": "e-postlänk (chef)"}


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class LoginClaim:
    """Who a sign-in link signs in: an organisation, a role, and where the link came from."""

    org_id: str
    role: Role
    who: str  # "tg-user:123", "e-post" — never a name


@dataclass(frozen=True)
class DashboardSession:
    """A signed-in browser: the organisation it acts for and its form token (CSRF)."""

    sid: str
    org_id: str
    role: Role
    who: str
    csrf: str

    def actor(self) -> Actor:
        """The actor for the use cases, acting through the board."""
        return Actor(org_id=self.org_id, role=self.role, via="dashboard", who=self.who)

    @property
    def sender(self) -> str:
        """This session as the sender of a form (`CaseService.acknowledge`): a hash of its id,
        so the id itself, which signs the browser in, is never written to the store."""
        return _sha256(f"sender:{self.sid}")[:32]

    def csrf_ok(self, token: str | None) -> bool:
        """Whether a submitted form token is this session's (constant time)."""
        return bool(token) and hmac.compare_digest(self.csrf.encode(), str(token).encode())


def _role(text: object) -> Role:
    return "supervisor" if text == "supervisor" else "member"


class DashboardAccess:
    """Makes and redeems sign-in links; opens, reads and ends sessions."""

    def __init__(
        self,
        redis: Redis,
        clock: Clock,
        secret: bytes,
        *,
        login_seconds: int = 15 * 60,
        session_seconds: int = 8 * 3600,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self.login_seconds = login_seconds
        self.session_seconds = session_seconds
        self._cookies = URLSafeTimedSerializer(
            secret, salt="ankomst.dashboard-session", signer=_clock_signer(clock)
        )

    # -- sign-in links -------------------------------------------------------------------------

    async def create_login(self, org_id: str, role: Role, who: str) -> str:
        """A new one-time sign-in token; the caller puts it in a link and shows it once."""
        token = secrets.token_urlsafe(32)
        claim = json.dumps({"org": org_id, "role": role, "who": who})
        await self._redis.set(
            keys.dashboard_login(_sha256(token)), claim, ex=self.login_seconds, nx=True
        )
        return token

    async def peek_login(self, token: str) -> LoginClaim | None:
        """What a token would sign in as, without using it (for the confirm page)."""
        if not token or len(token) > 100:
            return None
        return self._claim(await self._redis.get(keys.dashboard_login(_sha256(token))))

    async def redeem_login(self, token: str) -> LoginClaim | None:
        """Use a token up (GETDEL: it works exactly once); None if unknown, used or expired."""
        if not token or len(token) > 100:
            return None
        return self._claim(await self._redis.getdel(keys.dashboard_login(_sha256(token))))

    @staticmethod
    def _claim(raw: str | None) -> LoginClaim | None:
        if not raw:
            return None
        data = json.loads(raw)
        return LoginClaim(
            org_id=str(data["org"]), role=_role(data.get("role")), who=str(data["who"])
        )

    async def mail_allowed(self, address: str, seconds: int = 60) -> bool:
        """At most one mailed link per address a minute, so the form cannot flood a mailbox."""
        key = keys.dashboard_login_mail(_sha256(address.strip().lower()))
        return bool(await self._redis.set(key, "1", ex=seconds, nx=True))

    async def login_attempt_allowed(
        self,
        address: str,
        client: str,
        *,
        per_address: int = 5,
        per_client: int = 20,
        window_seconds: int = 15 * 60,
    ) -> bool:
        """Count a request of the sign-in-by-mail form against its address and its client
        (both by hash, counters with a TTL); False once either is over its limit in the window.
        Counted whether or not the address is in the directory, so a refusal reveals nothing."""
        counters = (
            (
                keys.dashboard_login_attempts("address", _sha256(address.strip().lower())),
                per_address,
            ),
            (keys.dashboard_login_attempts("client", _sha256(client)), per_client),
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            for key, _ in counters:
                pipe.execute_command("INCR", key)
                # The window starts with its first request and is not prolonged by later ones.
                pipe.execute_command("EXPIRE", key, window_seconds, "NX")
            answers = await pipe.execute()
        counts = answers[0::2]
        return all(int(count) <= limit for count, (_, limit) in zip(counts, counters, strict=True))

    # -- sessions ------------------------------------------------------------------------------

    async def open(self, claim: LoginClaim) -> tuple[DashboardSession, str]:
        """Start a session for a redeemed claim; returns it and the signed cookie value."""
        session = DashboardSession(
            sid=secrets.token_urlsafe(24),
            org_id=claim.org_id,
            role=claim.role,
            who=claim.who,
            csrf=secrets.token_urlsafe(24),
        )
        key = keys.dashboard_session(_sha256(session.sid))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "org": session.org_id,
                    "role": session.role,
                    "who": session.who,
                    "csrf": session.csrf,
                    "created_at": self._clock.now().isoformat(),
                },
            )
            pipe.expire(key, self.session_seconds)
            await pipe.execute()
        return session, self._cookies.dumps(session.sid)

    async def read(self, cookie: str | None) -> DashboardSession | None:
        """The session a cookie stands for; None if absent, forged, expired or signed out."""
        if not cookie or len(cookie) > 300:
            return None
        try:
            sid = self._cookies.loads(cookie, max_age=self.session_seconds)
        except BadSignature:  # SignatureExpired is a BadSignature too
            return None
        if not isinstance(sid, str):
            return None
        data = await self._redis.hgetall(keys.dashboard_session(_sha256(sid)))
        if not data:
            return None
        return DashboardSession(
            sid=sid,
            org_id=data["org"],
            role=_role(data.get("role")),
            who=data.get("who", ""),
            csrf=data["csrf"],
        )

    async def close(self, session: DashboardSession) -> None:
        """Sign out: the session is gone from Redis, so its cookie no longer works anywhere."""
        await self._redis.delete(keys.dashboard_session(_sha256(session.sid)))
