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
from typing import Final

from bot.domain.case import CaseNotFound
from bot.domain.clock import Clock
from bot.domain.delivery import COPY_PARAMS, delivery_id
from bot.domain.directory import Directory
from bot.domain.events import (
    DRAFT_CASE_PREFIX,
    VERSION_EVENTS,
    ChannelKind,
    DeliveryStatus,
    DeliveryTopic,
    EventType,
    Topic,
    chat_of,
    telegram_channel,
)
from bot.domain.policy import GUARDED_NOTICES, Policy
from bot.store import Redis, keys
from bot.store.cases import CaseStore
from bot.store.deliveries import DeliveryStore
from bot.usecases.access import ChatLinks

log = logging.getLogger(__name__)

# Named here too for the callers (and tests) that plan deliveries by hand.
EMAIL = ChannelKind.EMAIL
NOTICE = Topic.NOTICE
# The events the fan-out makes messages of (`FanOut.handle`); it only says it is done with any
# other. Most entries of the event stream are messages sent, which it has nothing to do with.
ACTS_ON: Final = frozenset(
    {*VERSION_EVENTS, EventType.CASE_ALL_ACKNOWLEDGED, EventType.DELIVERY_FAILED, EventType.NOTICE}
)

__all__ = [
    "EMAIL",
    "NOTICE",
    "FanOut",
    "Planned",
    "chat_of",
    "delivery_id",
    "short_hash",
    "telegram_channel",
]


# The free texts a disagreement notice shows, by topic: the event names the disagreement (the
# topic's suffix) and the text is read from its record here, so no free text is written on the
# event stream (issue 13: nothing personal outside the case record; erasure blanks the record).
RECORD_TEXTS: Final[Mapping[Topic, tuple[str, ...]]] = {
    Topic.DISAGREEMENT_RAISED: ("text",),
    Topic.DISAGREEMENT_ESCALATED: ("text",),
    Topic.DISAGREEMENT_RESOLVED: ("decision",),
}


def short_hash(text: str) -> str:
    """A short stable name for a long id (keeps topic-bearing delivery ids readable)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Planned:
    """A delivery to make. `topic` is as stored: a `Topic`, a `DeliveryTopic` or its text."""

    org_id: str
    channel: str
    topic: Topic | DeliveryTopic | str
    params: Mapping[str, object]


class FanOut:
    """Turns events into deliveries on every channel of every organisation concerned."""

    def __init__(self, redis: Redis, directory: Directory, chats: ChatLinks, clock: Clock) -> None:
        self.redis = redis
        self.directory = directory
        self.chats = chats
        self.clock = clock
        self.cases = CaseStore(redis)
        self.deliveries = DeliveryStore(redis)
        self.policy = Policy(directory)

    def _channels(self, org_id: str, chat_ids: Iterable[int]) -> list[str]:
        org = self.directory.organisations.get(org_id)
        out: list[str] = []
        if org is not None and org.email:
            out.append(EMAIL)
        out.extend(telegram_channel(c) for c in chat_ids)
        return out

    async def channels(self, org_id: str) -> list[str]:
        """Every channel an organisation has: its e-mail, and each linked chat."""
        return self._channels(org_id, await self.chats.chats_of(org_id))

    async def channels_of(self, org_ids: Iterable[str]) -> dict[str, list[str]]:
        """`channels` of several organisations, in one round trip."""
        chats = await self.chats.chats_of_many(org_ids)
        return {org_id: self._channels(org_id, chat_ids) for org_id, chat_ids in chats.items()}

    async def plan(
        self,
        org_ids: Iterable[str],
        topic: Topic | DeliveryTopic | str,
        params: Mapping[str, object] | None = None,
    ) -> list[Planned]:
        """One planned delivery per channel of each organisation."""
        return await self.plan_all([(org_ids, topic, params)])

    async def plan_all(
        self,
        groups: Iterable[
            tuple[Iterable[str], Topic | DeliveryTopic | str, Mapping[str, object] | None]
        ],
    ) -> list[Planned]:
        """`plan` for several (organisations, topic, params) at once, in order: the channels of
        all their organisations are read in one round trip."""
        wanted = [(list(org_ids), topic, params or {}) for org_ids, topic, params in groups]
        channels = await self.channels_of(o for org_ids, _, _ in wanted for o in org_ids)
        return [
            Planned(org_id, channel, topic, params)
            for org_ids, topic, params in wanted
            for org_id in org_ids
            for channel in channels[org_id]
        ]

    async def create(self, case_id: str, version: int, planned: Iterable[Planned]) -> int:
        """Create and queue the planned deliveries that do not exist yet, in one round trip;
        returns how many."""
        now = self.clock.now().isoformat()
        items: list[tuple[str, str, Mapping[str, str]]] = []
        for item in planned:
            topic = str(item.topic)
            ident = delivery_id(case_id, version, item.org_id, item.channel, topic)
            outbox = keys.OUTBOX_EMAIL if item.channel == EMAIL else keys.OUTBOX_TELEGRAM
            fields = {
                "id": ident,
                "case": case_id,
                "version": str(version),
                "org": item.org_id,
                "channel": item.channel,
                "topic": topic,
                "params": json.dumps(dict(item.params), ensure_ascii=False, default=str),
                "status": str(DeliveryStatus.QUEUED),
                "queued_at": now,
                "attempts": "0",
            }
            items.append((ident, outbox, fields))
        if not items:
            return 0
        return sum(await self.deliveries.create_many(case_id, items))

    async def record_texts(self, topic: DeliveryTopic) -> dict[str, str]:
        """The free texts a notice of `topic` shows, read from the record it is about (see
        RECORD_TEXTS); none for other topics."""
        names = RECORD_TEXTS.get(topic.kind)
        if not names or not topic.suffix:
            return {}
        values = await self.redis.hmget(keys.disagreement(topic.suffix), list(names))
        return {name: value for name, value in zip(names, values, strict=True) if value is not None}

    async def told(self, case_id: str, topic: DeliveryTopic, orgs: list[str]) -> list[str]:
        """`orgs` as far as the policy lets a notice of `topic` reach them
        (`Policy.may_be_told`): whoever planned the notice, a booking, a clearance or a
        disagreement's text goes to no one the policy keeps it from. One left out is a bug of
        the planner, so it is logged (organisation ids only)."""
        if topic.kind not in GUARDED_NOTICES:
            return orgs
        try:
            case = await self.cases.get(case_id)
        except CaseNotFound:
            return []  # nothing to tell of a case that is gone
        referred: list[str] = []
        if topic.kind in RECORD_TEXTS and topic.suffix:
            raw = await self.redis.hget(keys.disagreement(topic.suffix), "referred_to")
            referred = json.loads(raw) if raw else []
        allowed = [o for o in orgs if self.policy.may_be_told(o, case, topic.kind, referred)]
        if len(allowed) < len(orgs):
            log.warning(
                "notice %s of case %s not sent to %s: the policy keeps it from them",
                topic.kind,
                case_id,
                sorted(set(orgs) - set(allowed)),
            )
        return allowed

    async def reception_unit_of(self, case_id: str) -> str | None:
        """Who is told that a delivery about `case_id` failed: the case's reception unit, or
        for a notice draft (`draft-…`, not a case; none while the draft is gone) the draft's.
        CaseNotFound for a case that does not exist."""
        if case_id.startswith(DRAFT_CASE_PREFIX):
            draft_id = case_id.removeprefix(DRAFT_CASE_PREFIX)
            unit = await self.redis.hget(keys.notice_draft(draft_id), "reception_unit")
            return str(unit) if unit else None
        return (await self.cases.get(case_id)).reception_unit

    @staticmethod
    def acts_on(event: Mapping[str, str]) -> bool:
        """Whether `handle` makes messages of the event (`ACTS_ON`); any other it only says
        it is done with."""
        return event.get("type", "") in ACTS_ON

    async def handle(self, entry_id: str, event: dict[str, str]) -> bool:
        """Consumer-group handler for the event stream."""
        if not self.acts_on(event):
            return True
        kind = EventType(event["type"])
        case_id = event.get("case", "")
        version = int(event.get("version", "0") or 0)
        if kind in VERSION_EVENTS:
            case = await self.cases.get(case_id)
            # Recipients must acknowledge; the reception unit gets its copy on the same path.
            planned = await self.plan_all(
                [
                    (case.recipients, Topic.NOTICE, None),
                    ([case.reception_unit], Topic.NOTICE, COPY_PARAMS),
                ]
            )
            await self.create(case_id, version, planned)
        elif kind is EventType.CASE_ALL_ACKNOWLEDGED:
            case = await self.cases.get(case_id)
            await self.create(
                case_id, version, await self.plan([case.reception_unit], Topic.ALL_ACKNOWLEDGED)
            )
        elif kind is EventType.DELIVERY_FAILED:
            unit = await self.reception_unit_of(case_id)
            if unit is None:
                log.warning("delivery %s failed; its draft is gone", event.get("delivery", "-"))
                return True
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
                    [unit],
                    Topic.DELIVERY_FAILED.at(short_hash(event.get("delivery", ""))),
                    params,
                )
                if not (event.get("org") == unit and p.channel == event.get("channel"))
            ]
            await self.create(case_id, version, planned)
        elif kind is EventType.NOTICE:
            # A status message decided elsewhere (scheduler, reports): deliver as planned.
            topic = DeliveryTopic.parse(event["topic"])
            orgs = await self.told(case_id, topic, json.loads(event.get("orgs", "[]")))
            params = json.loads(event.get("params", "{}"))
            params.update(await self.record_texts(topic))
            await self.create(case_id, version, await self.plan(orgs, event["topic"], params))
        return True
