"""Fan-out: each event becomes one delivery per (case, version, organisation, channel, topic).

A delivery is created at most once (a Lua script checks, writes the record and queues the send
in one step), so an event handled twice after a crash queues nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from bot.domain.clock import Clock
from bot.domain.directory import Directory
from bot.store import keys
from bot.usecases.access import ChatLinks
from bot.usecases.cases import CaseStore

log = logging.getLogger(__name__)

EMAIL = "email"
NOTICE = "notice"  # the arrival message of a version (new / ÄNDRAT / INSTÄLLD)


def telegram_channel(chat_id: int) -> str:
    """The channel name of one Telegram chat."""
    return f"tg:{chat_id}"


def chat_of(channel: str) -> int | None:
    """The chat id of a Telegram channel name, else None."""
    return int(channel[3:]) if channel.startswith("tg:") else None


def short_hash(text: str) -> str:
    """A short stable name for a long id (keeps topic-bearing delivery ids readable)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def delivery_id(case_id: str, version: int, org_id: str, channel: str, topic: str) -> str:
    """The idempotency key of one delivery."""
    return f"{case_id}:{version}:{org_id}:{channel}:{topic}"


# Create the delivery record, index it and queue its send only if it does not exist yet.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'delivery', ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Planned:
    """A delivery to make."""

    org_id: str
    channel: str
    topic: str
    params: Mapping[str, object]


class FanOut:
    """Turns events into deliveries on every channel of every organisation concerned."""

    def __init__(self, redis: Redis, directory: Directory, chats: ChatLinks, clock: Clock) -> None:
        self.redis = redis
        self.directory = directory
        self.chats = chats
        self.clock = clock
        self.cases = CaseStore(redis)
        self._create = redis.register_script(_CREATE)

    async def channels(self, org_id: str) -> list[str]:
        """Every channel an organisation has: its e-mail, and each linked chat."""
        org = self.directory.organisations.get(org_id)
        out: list[str] = []
        if org is not None and org.email:
            out.append(EMAIL)
        out.extend(telegram_channel(c) for c in await self.chats.chats_of(org_id))
        return out

    async def plan(
        self, org_ids: Iterable[str], topic: str, params: Mapping[str, object] | None = None
    ) -> list[Planned]:
        """One planned delivery per channel of each organisation."""
        planned: list[Planned] = []
        for org_id in org_ids:
            for channel in await self.channels(org_id):
                planned.append(Planned(org_id, channel, topic, params or {}))
        return planned

    async def create(self, case_id: str, version: int, planned: Iterable[Planned]) -> int:
        """Create and queue the planned deliveries that do not exist yet; returns how many."""
        now = self.clock.now().isoformat()
        made = 0
        for item in planned:
            ident = delivery_id(case_id, version, item.org_id, item.channel, item.topic)
            outbox = keys.OUTBOX_EMAIL if item.channel == EMAIL else keys.OUTBOX_TELEGRAM
            fields = {
                "id": ident,
                "case": case_id,
                "version": str(version),
                "org": item.org_id,
                "channel": item.channel,
                "topic": item.topic,
                "params": json.dumps(dict(item.params), ensure_ascii=False, default=str),
                "status": "queued",
                "queued_at": now,
                "attempts": "0",
            }
            flat = [x for pair in fields.items() for x in pair]
            made += int(
                await self._create(
                    keys=[keys.delivery(ident), keys.case_deliveries(case_id), outbox],
                    args=[ident, *flat],
                )
            )
        return made

    async def handle(self, entry_id: str, event: dict[str, str]) -> bool:
        """Consumer-group handler for the event stream."""
        kind = event.get("type", "")
        case_id = event.get("case", "")
        version = int(event.get("version", "0") or 0)
        if kind in ("case.registered", "case.changed", "case.cancelled"):
            case = await self.cases.get(case_id)
            # Recipients must acknowledge; the reception unit gets its copy on the same path.
            planned = await self.plan(case.recipients, NOTICE)
            planned += await self.plan([case.reception_unit], NOTICE, {"copy": True})
            await self.create(case_id, version, planned)
        elif kind == "case.all_acknowledged":
            case = await self.cases.get(case_id)
            await self.create(
                case_id, version, await self.plan([case.reception_unit], "all_acknowledged")
            )
        elif kind == "delivery.failed":
            case = await self.cases.get(case_id)
            params = {
                "organisation": event.get("org", ""),
                "channel": event.get("channel", ""),
                "error": event.get("error", ""),
                "failed": event.get("delivery", ""),
            }
            # Told on the reception unit's channels other than the one that failed, if any.
            planned = [
                p
                for p in await self.plan(
                    [case.reception_unit],
                    "delivery_failed/" + short_hash(event.get("delivery", "")),
                    params,
                )
                if not (
                    event.get("org") == case.reception_unit and p.channel == event.get("channel")
                )
            ]
            await self.create(case_id, version, planned)
        elif kind == "notice":
            # A status message decided elsewhere (scheduler, reports): deliver as planned.
            orgs = json.loads(event.get("orgs", "[]"))
            params = json.loads(event.get("params", "{}"))
            await self.create(case_id, version, await self.plan(orgs, event["topic"], params))
        return True
