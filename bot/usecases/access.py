"""Who may do what: API tokens, chat links, invite codes, signed ack links and buttons."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from bot.domain.actor import ROLES, SYSTEM, Actor, Role, Via
from bot.domain.clock import Clock
from bot.store import Pipeline, Redis, keys, optimistic

# The actor types live in the domain; named here too for the adapters that ask for access.
__all__ = [
    "ROLES",
    "SYSTEM",
    "AckClaim",
    "Actor",
    "ApiTokens",
    "ChatLink",
    "ChatLinks",
    "LinkExpired",
    "Role",
    "Signer",
    "Via",
]


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class ApiTokens:
    """API tokens: printed once, stored only as their SHA-256."""

    def __init__(self, redis: Redis, clock: Clock) -> None:
        self._redis = redis
        self._clock = clock

    async def create(self, org_id: str, role: Role = "member") -> str:
        """Make a new token for an organisation; the caller shows it once."""
        token = "ank_" + secrets.token_urlsafe(32)
        digest = _sha256(token)
        await self._redis.hset(
            keys.api_token(digest),
            mapping={
                "org": org_id,
                "role": role,
                "id": digest[:12],
                "created_at": self._clock.now().isoformat(),
            },
        )
        return token

    async def actor(self, token: str) -> Actor | None:
        """The actor a bearer token stands for, or None.

        Lookup is by the token's hash, so no stored secret is ever compared byte by byte.
        """
        if not token or len(token) > 200:
            return None
        data = await self._redis.hgetall(keys.api_token(_sha256(token)))
        if not data:
            return None
        role: Role = "supervisor" if data.get("role") == "supervisor" else "member"
        return Actor(org_id=data["org"], role=role, via="api", who=f"token:{data.get('id', '')}")


@dataclass(frozen=True)
class ChatLink:
    """A Telegram chat linked to an organisation."""

    chat_id: int
    org_id: str
    role: Role


class ChatLinks:
    """Which Telegram chat speaks for which organisation (invites, links, directory chats)."""

    def __init__(self, redis: Redis, clock: Clock, directory_chats: dict[int, str]) -> None:
        self._redis = redis
        self._clock = clock
        self._directory_chats = directory_chats  # chat id -> org id, from the directory file

    async def create_invite(self, org_id: str, role: Role, ttl_seconds: int) -> str:
        """A one-time code for `/start CODE`; stored by hash with an expiry."""
        code = secrets.token_urlsafe(9)
        await self._redis.set(
            keys.invite(_sha256(code)), f"{org_id}|{role}", ex=ttl_seconds, nx=True
        )
        return code

    async def redeem(self, code: str, chat_id: int, user: str) -> ChatLink | None:
        """Link the chat with a valid, unused code (GETDEL: a code works exactly once)."""
        if not code or len(code) > 64:
            return None
        value = await self._redis.getdel(keys.invite(_sha256(code)))
        if not value:
            return None
        org_id, _, role_text = value.partition("|")
        role: Role = "supervisor" if role_text == "supervisor" else "member"
        chat_key = keys.chat(chat_id)

        async def link(pipe: Pipeline) -> None:
            # Under WATCH of the chat's link: two codes redeemed in one chat at once must not
            # both keep the chat in their organisation's set.
            previous = await pipe.hget(chat_key, "org")
            pipe.multi()
            if previous and previous != org_id:
                pipe.srem(keys.organisation_chats(previous), chat_id)
            pipe.hset(
                chat_key,
                mapping={
                    "org": org_id,
                    "role": role,
                    "linked_at": self._clock.now().isoformat(),
                    "linked_by": user,
                },
            )
            pipe.sadd(keys.organisation_chats(org_id), chat_id)
            await pipe.execute()

        await optimistic(self._redis, [chat_key], link)
        return ChatLink(chat_id, org_id, role)

    async def link_of(self, chat_id: int) -> ChatLink | None:
        """The organisation (and role) a chat speaks for, or None."""
        data = await self._redis.hgetall(keys.chat(chat_id))
        if data:
            role: Role = "supervisor" if data.get("role") == "supervisor" else "member"
            return ChatLink(chat_id, data["org"], role)
        org = self._directory_chats.get(chat_id)
        return ChatLink(chat_id, org, "member") if org else None

    async def chats_of(self, org_id: str) -> list[int]:
        """Every chat of an organisation: from the directory and linked by invite."""
        linked = {int(c) for c in await self._redis.smembers(keys.organisation_chats(org_id))}
        listed = {c for c, o in self._directory_chats.items() if o == org_id}
        return sorted(linked | listed)

    async def move(self, old_chat: int, new_chat: int) -> None:
        """A group became a supergroup: keep its link under the new id."""
        old_key = keys.chat(old_chat)

        async def move(pipe: Pipeline) -> None:
            data = await pipe.hgetall(old_key)
            org = data.get("org") or self._directory_chats.get(old_chat)
            if not org:
                await pipe.unwatch()
                return
            pipe.multi()
            pipe.hset(keys.chat(new_chat), mapping={**data, "org": org, "migrated_from": old_chat})
            pipe.sadd(keys.organisation_chats(org), new_chat)
            pipe.srem(keys.organisation_chats(org), old_chat)
            pipe.delete(old_key)
            await pipe.execute()

        await optimistic(self._redis, [old_key], move)


@dataclass(frozen=True)
class AckClaim:
    """What a signed ack link or button stands for."""

    case_id: str
    version: int
    org_id: str | None = None


class LinkExpired(Exception):
    """A signed link was genuine but is too old."""


def _clock_signer(clock: Clock) -> type[TimestampSigner]:
    """A TimestampSigner that reads our clock, so link expiry is testable without waiting."""

    class _ClockTimestampSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock.now().timestamp())

    return _ClockTimestampSigner


class Signer:
    """Signs ack links (itsdangerous, expiring) and Telegram callback data (HMAC, ≤ 64 bytes)."""

    def __init__(self, secret: bytes, ack_link_seconds: int, clock: Clock) -> None:
        self._secret = secret
        self._max_age = ack_link_seconds
        self._links = URLSafeTimedSerializer(
            secret, salt="ankomst.ack-link", signer=_clock_signer(clock)
        )

    def ack_token(self, case_id: str, version: int, org_id: str) -> str:
        """A token for PUBLIC_URL/a/{token}, bound to case, version and organisation."""
        return self._links.dumps([case_id, version, org_id])

    def read_ack_token(self, token: str) -> AckClaim | None:
        """The claim in a genuine token; None if forged; LinkExpired if too old."""
        try:
            data = self._links.loads(token, max_age=self._max_age)
        except SignatureExpired as exc:
            raise LinkExpired from exc
        except BadSignature:
            return None
        if (
            not isinstance(data, list)
            or len(data) != 3
            or not isinstance(data[0], str)
            or not isinstance(data[1], int)
            or not isinstance(data[2], str)
        ):
            return None
        return AckClaim(case_id=data[0], version=data[1], org_id=data[2])

    def button_signature(self, action: str, case_id: str, version: int) -> str:
        """A short MAC for callback data: 16 characters of HMAC-SHA256."""
        mac = hmac.new(self._secret, f"{action}:{case_id}:{version}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:12]).decode().rstrip("=")

    def check_button(self, action: str, case_id: str, version: int, signature: str) -> bool:
        """Constant-time check of a callback signature."""
        expected = self.button_signature(action, case_id, version)
        return hmac.compare_digest(expected.encode(), signature.encode())
