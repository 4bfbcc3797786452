"""Who may do what: API tokens, chat links, invite codes, signed ack links and buttons."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.serializer import Serializer

from bot.domain.actor import ROLES, SYSTEM, Actor, Role, Via
from bot.domain.clock import Clock
from bot.store import Pipeline, Redis, keys, optimistic
from bot.store.batching import Coalescer
from bot.store.durability import Durability

# The actor types live in the domain; named here too for the adapters that ask for access.
__all__ = [
    "ROLES",
    "SYSTEM",
    "AckClaim",
    "Actor",
    "ApiTokens",
    "ChatLink",
    "ChatLinks",
    "DeepLink",
    "LinkExpired",
    "Role",
    "Signer",
    "TokenInfo",
    "Via",
    "token_records",
]


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


NO_LABEL = "(ingen etikett)"  # how a token made without a label is listed and audited
LABEL_MAX = 60
EXPIRES_MAX_DAYS = 3650
# Last use is written at most this often per token: one write a minute, not one per request.
LAST_USED_EVERY = timedelta(minutes=1)


def label_problem(label: str) -> str | None:
    """Why `label` cannot name a token, or None: a short, one-line, printable text."""
    text = label.strip()
    if not text:
        return "the label is empty"
    if len(text) > LABEL_MAX:
        return f"the label is longer than {LABEL_MAX} characters"
    if any(unicodedata.category(c).startswith("C") for c in text):
        return "the label has a control character (a line break, a tab, ...)"
    return None


@dataclass(frozen=True)
class TokenInfo:
    """What is known of an API token, never the secret: for listings and the audit trail."""

    id: str  # the public id (`token list`, `token revoke ID`, the audit's `who`)
    org_id: str
    role: Role
    label: str  # NO_LABEL when made without one (tokens made before labels too)
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def valid_at(self, now: datetime) -> bool:
        """Whether the token still opens the API at `now`: not revoked, not expired."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def state(self, now: datetime) -> str:
        """`active`, `revoked` or `expired` at `now`."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.valid_at(now) else "expired"

    @classmethod
    def from_hash(cls, data: dict[str, str], digest: str) -> TokenInfo:
        """Read the stored hash (tokens made before labels have only org, role, id, created)."""
        return cls(
            id=data.get("id") or digest[:12],
            org_id=data.get("org", ""),
            role="supervisor" if data.get("role") == "supervisor" else "member",
            label=data.get("label") or NO_LABEL,
            created_at=_instant(data.get("created_at")),
            last_used_at=_instant(data.get("last_used_at")),
            expires_at=_instant(data.get("expires_at")),
            revoked_at=_instant(data.get("revoked_at")),
        )


def _instant(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


async def token_records(redis: Redis, org_id: str | None = None) -> list[TokenInfo]:
    """Every token (of `org_id`, if given), revoked and expired ones too, oldest first."""
    found = {
        digest: public_id for public_id, digest in (await redis.hgetall(keys.API_TOKENS)).items()
    }
    # Tokens made before the index: found by their key (a CLI's rare walk, not a request's).
    async for key in redis.scan_iter(match=keys.API_TOKEN_PATTERN, count=1000):
        digest = key.rsplit(":", 1)[-1]
        found.setdefault(digest, "")
    infos = []
    for digest in found:
        data = await redis.hgetall(keys.api_token(digest))
        if data and data.get("org"):
            infos.append(TokenInfo.from_hash(data, digest))
    if org_id is not None:
        infos = [i for i in infos if i.org_id == org_id]
    epoch = datetime.min.replace(tzinfo=UTC)
    infos.sort(key=lambda i: (i.created_at or epoch, i.id))
    return infos


class ApiTokens:
    """API tokens: printed once, stored only as their SHA-256, with a public id and a label.

    Every request reads the token's record in Redis (no cache in the process), so a token
    revoked or expired is refused at once by every replica.
    """

    def __init__(self, redis: Redis, clock: Clock, durability: Durability | None = None) -> None:
        self._redis = redis
        self._clock = clock
        # A token printed (or a revocation reported) must survive a failover: confirmed on
        # the replicas first, NotDurable otherwise (off on a single server).
        self._durability = durability or Durability(redis)
        # Each request's read of its token goes with the process's other commands of the same
        # loop turn (`Coalescer`), not in a round trip of its own (issue 17).
        self._batch = Coalescer.of(redis)

    async def create(self, org_id: str, role: Role = "member") -> str:
        """Make a new token (no label, no expiry) for an organisation; the caller shows it once."""
        token, _ = await self.issue(org_id, role)
        return token

    async def issue(
        self,
        org_id: str,
        role: Role = "member",
        label: str | None = None,
        expires_days: int | None = None,
    ) -> tuple[str, TokenInfo]:
        """Make a new token; (the secret, shown once by the caller; what is kept of it).

        `label` must pass `label_problem`; `expires_days` (1..EXPIRES_MAX_DAYS) sets an expiry.
        """
        if label is not None and (problem := label_problem(label)):
            raise ValueError(problem)
        if expires_days is not None and not 1 <= expires_days <= EXPIRES_MAX_DAYS:
            raise ValueError(f"the expiry is not between 1 and {EXPIRES_MAX_DAYS} days")
        token = "ank_" + secrets.token_urlsafe(32)
        digest = _sha256(token)
        now = self._clock.now()
        fields = {
            "org": org_id,
            "role": role,
            "created_at": now.isoformat(),
        }
        if label is not None:
            fields["label"] = label.strip()
        if expires_days is not None:
            fields["expires_at"] = (now + timedelta(days=expires_days)).isoformat()
        while True:
            # A short public id of its own (not part of the hash): listings, revoke, the audit.
            public_id = "tk" + secrets.token_hex(4)
            if await self._redis.hsetnx(keys.API_TOKENS, public_id, digest):
                break
        fields["id"] = public_id
        await self._redis.hset(keys.api_token(digest), mapping=fields)
        # Confirmed before the secret is handed back to be shown: if it is not (NotDurable),
        # the secret is never shown, so a record that survives the failover is unusable.
        await self._durability.confirm_field(keys.api_token(digest), "id", public_id)
        return token, TokenInfo.from_hash(fields, digest)

    async def actor(self, token: str) -> Actor | None:
        """The actor a bearer token stands for, or None (unknown, revoked or expired).

        Lookup is by the token's hash, so no stored secret is ever compared byte by byte.
        """
        if not token or len(token) > 200:
            return None
        digest = _sha256(token)
        key = keys.api_token(digest)
        [data] = await self._batch.run(lambda pipe: pipe.hgetall(key))
        if not data or not data.get("org"):
            return None
        info = TokenInfo.from_hash(data, digest)
        now = self._clock.now()
        if not info.valid_at(now):
            return None
        if info.last_used_at is None or now - info.last_used_at >= LAST_USED_EVERY:
            await self._redis.hset(key, "last_used_at", now.isoformat())
        return Actor(
            org_id=info.org_id, role=info.role, via="api", who=f"token:{info.id}", label=info.label
        )

    async def all(self, org_id: str | None = None) -> list[TokenInfo]:
        """Every token (of `org_id`, if given), revoked and expired ones too, oldest first."""
        return await token_records(self._redis, org_id)

    async def _digest_of(self, public_id: str) -> str | None:
        if not public_id or len(public_id) > 64 or not public_id.isalnum():
            return None
        digest = await self._redis.hget(keys.API_TOKENS, public_id)
        if digest:
            return str(digest)
        # A token made before the index is named by the first 12 characters of its hash.
        async for key in self._redis.scan_iter(
            match=keys.api_token(public_id.lower()) + "*", count=1000
        ):
            candidate = str(key).rsplit(":", 1)[-1]
            data = await self._redis.hgetall(key)
            if data.get("id", candidate[:12]) == public_id:
                return candidate
        return None

    async def revoke(self, public_id: str) -> tuple[TokenInfo, bool] | None:
        """End a token at once; (what it was, whether this call revoked it), or None if no
        such token. The record stays (marked revoked), so the audit trail can still name it."""
        digest = await self._digest_of(public_id)
        if digest is None:
            return None
        key = keys.api_token(digest)
        now = self._clock.now().isoformat()
        # HSETNX: revoking twice keeps the first time; never recreates a missing record.
        data = await self._redis.hgetall(key)
        if not data:
            return None
        newly = bool(await self._redis.hsetnx(key, "revoked_at", now))
        data = await self._redis.hgetall(key)
        # Also when it was revoked already: that earlier revocation may not be replicated yet.
        await self._durability.confirm_field(key, "revoked_at", data.get("revoked_at"))
        return TokenInfo.from_hash(data, digest), newly


@dataclass(frozen=True)
class ChatLink:
    """A Telegram chat linked to an organisation."""

    chat_id: int
    org_id: str
    role: Role


class ChatLinks:
    """Which Telegram chat speaks for which organisation (invites, links, directory chats)."""

    def __init__(
        self,
        redis: Redis,
        clock: Clock,
        directory_chats: dict[int, str],
        durability: Durability | None = None,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._directory_chats = directory_chats  # chat id -> org id, from the directory file
        # A printed invite code must still work after a failover (off on a single server).
        self._durability = durability or Durability(redis)

    async def create_invite(self, org_id: str, role: Role, ttl_seconds: int) -> str:
        """A one-time code for `/start CODE`; stored by hash with an expiry."""
        code = secrets.token_urlsafe(9)
        key, value = keys.invite(_sha256(code)), f"{org_id}|{role}"
        await self._redis.set(key, value, ex=ttl_seconds, nx=True)
        await self._durability.confirm_value(key, value)
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

    async def chats_of_many(self, org_ids: Iterable[str]) -> dict[str, list[int]]:
        """`chats_of` for several organisations in one round trip: each of them (once) to its
        chats."""
        wanted = list(dict.fromkeys(org_ids))
        if not wanted:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for org_id in wanted:
                pipe.smembers(keys.organisation_chats(org_id))
            replies: list[Iterable[str]] = await pipe.execute()
        listed: dict[str, set[int]] = {}
        for chat_id, org_id in self._directory_chats.items():
            listed.setdefault(org_id, set()).add(chat_id)
        return {
            org_id: sorted({int(c) for c in linked} | listed.get(org_id, set()))
            for org_id, linked in zip(wanted, replies, strict=True)
        }

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


@dataclass(frozen=True)
class DeepLink:
    """What a signed link from a mail into the board stands for."""

    case_id: str
    org_id: str
    target: str  # "case" | "booking"


class LinkExpired(Exception):
    """A signed link was genuine but is too old."""


def _clock_signer(clock: Clock) -> type[TimestampSigner]:
    """A TimestampSigner that reads our clock, so link expiry is testable without waiting."""

    class _ClockTimestampSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock.now().timestamp())

    return _ClockTimestampSigner


class _LinkSerializer(URLSafeTimedSerializer):
    """itsdangerous's URL-safe timed serializer, writing its payload uncompressed.

    The stock one tries zlib on every payload and keeps the result only when shorter. A link
    carries three short ids, which zlib never makes shorter, and each try sets up a compressor
    afresh: about 30 µs, two thirds of signing a link, for every e-mail sent (issue 17). The
    tokens are the ones the stock serializer writes when it does not compress, and reading is
    its own (a compressed token, marked by its leading dot, is read as before):
    tests/unit/test_link_tokens.py."""

    def dump_payload(self, obj: object) -> bytes:
        """`obj` as JSON, base64-encoded, never compressed."""
        # The JSON as `Serializer` writes it; the URL-safe mixin's own step is the zlib try.
        return base64_encode(Serializer.dump_payload(self, obj))


class Signer:
    """Signs ack links (itsdangerous, expiring) and Telegram callback data (HMAC, ≤ 64 bytes)."""

    def __init__(self, secret: bytes, ack_link_seconds: int, clock: Clock) -> None:
        self._secret = secret
        self._max_age = ack_link_seconds
        self._links = _LinkSerializer(secret, salt="ankomst.ack-link", signer=_clock_signer(clock))
        self._deep_links = _LinkSerializer(
            secret, salt="ankomst.deep-link", signer=_clock_signer(clock)
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

    def deep_link_token(self, case_id: str, org_id: str, target: str) -> str:
        """A token for PUBLIC_URL/dashboard/l/{token}: a link in a mail to one page of one case
        (`target`: "case" or "booking"), bound to case and organisation, expiring like an ack
        link. It only leads there; every action still needs a signed-in session."""
        return self._deep_links.dumps([case_id, org_id, target])

    def read_deep_link(self, token: str) -> DeepLink | None:
        """The claim in a genuine deep-link token; None if forged; LinkExpired if too old."""
        try:
            data = self._deep_links.loads(token, max_age=self._max_age)
        except SignatureExpired as exc:
            raise LinkExpired from exc
        except BadSignature:
            return None
        if (
            not isinstance(data, list)
            or len(data) != 3
            or not all(isinstance(x, str) for x in data)
        ):
            return None
        return DeepLink(case_id=data[0], org_id=data[1], target=data[2])

    def button_signature(self, action: str, case_id: str, version: int) -> str:
        """A short MAC for callback data: 16 characters of HMAC-SHA256."""
        mac = hmac.new(self._secret, f"{action}:{case_id}:{version}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:12]).decode().rstrip("=")

    def check_button(self, action: str, case_id: str, version: int, signature: str) -> bool:
        """Constant-time check of a callback signature."""
        expected = self.button_signature(action, case_id, version)
        return hmac.compare_digest(expected.encode(), signature.encode())
