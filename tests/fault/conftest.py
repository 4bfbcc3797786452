"""Shared parts for the fault tests: real processes, real servers, counting where it arrived."""

from __future__ import annotations

from collections import Counter
from typing import Any

from redis.asyncio import Redis

from bot.domain.clock import SystemClock
from bot.pipeline.fanout import EMAIL, chat_of
from bot.store import keys
from bot.usecases.access import ApiTokens, ChatLinks
from tests.support.process import all_deliveries
from tests.support.smtp_sink import SmtpSink
from tests.support.telegram_api import FakeTelegramAPI
from tests.support.world import CHATS

DONE = ("sent", "failed", "superseded")


async def link_chats(redis: Redis, chats: dict[str, int] = CHATS) -> None:
    """Link chats to organisations straight in the store (as `/start CODE` would)."""
    links = ChatLinks(redis, SystemClock(), {})
    for org_id, chat_id in chats.items():
        code = await links.create_invite(org_id, "member", 3600)
        assert await links.redeem(code, chat_id, "test") is not None


async def api_token(redis: Redis, org_id: str = "ostersund-mottagning") -> str:
    """An API token made in the store the processes share."""
    return await ApiTokens(redis, SystemClock()).create(org_id, "member")


async def all_settled(redis: Redis) -> bool:
    """Every delivery done and nothing pending or unread in any group."""
    deliveries = await all_deliveries(redis)
    if not deliveries or any(d.get("status") not in DONE for d in deliveries.values()):
        return False
    for stream in (keys.EVENTS, keys.OUTBOX_EMAIL, keys.OUTBOX_TELEGRAM):
        if not await redis.exists(stream):
            continue
        for info in await redis.xinfo_groups(stream):
            if info["pending"] or info.get("lag"):
                return False
    return True


async def arrived_counts(
    redis: Redis, smtp: SmtpSink, telegram: FakeTelegramAPI | None
) -> dict[str, int]:
    """For each delivery made, how many times it arrived (SMTP sink / Bot API server)."""
    mails = Counter(str(m["Message-ID"]) for m in smtp.messages)
    calls = [c for c in (telegram.calls_to("sendMessage") if telegram else []) if c.ok]
    references: dict[str, str] = {}
    out: dict[str, int] = {}
    for ident, d in (await all_deliveries(redis)).items():
        if d["channel"] == EMAIL:
            out[ident] = mails[d.get("message_id", "?")]
            continue
        case = d["case"]
        if case not in references:
            references[case] = str(await redis.hget(keys.case(case), "reference"))
        chat = chat_of(d["channel"])
        out[ident] = sum(
            1 for c in calls if c.chat_id == chat and references[case] in (c.text or "")
        )
    return out


def statuses(deliveries: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Delivery id -> status."""
    return {k: str(v.get("status")) for k, v in deliveries.items()}
