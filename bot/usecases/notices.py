"""Drafts from Migrationsverket's notices: made, shown, confirmed or discarded, and watched.

A notice read from the watched mailbox (bot/pipeline/mailbox.py) becomes a draft case record,
`ankomst:draft:{id}` (a hash whose fields carry ArrivalIn's names where they map, read by the
board to fill in `/dashboard/ny?draft=ID`), indexed per reception unit. Only what the service may
keep is stored (bot/domain/notice.py decides that): no name, identity number or address. The
draft's id comes from its `external_ref` (a keyed hash of Migrationsverket's case number), so
the same notice twice is one draft.

Made: in one MULTI/EXEC the draft, its index entry, its history line and a `notice` event that
tells the reception unit at once ("Ny avisering – granska och skicka", e-mail and chat); then the
same-day timers: not confirmed by the alert time → the reception unit is alerted; by office end
→ its supervisor too. `received_at` (when the notice came) starts that clock.

Confirmed: registered exactly as the API registers (`CaseService.register`), the case keeps
`notice_received_at`; the draft is marked confirmed and its timers cancelled. Discarded: a
reason is required, and who, when and why go to the draft's history and the audit stream.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bot.domain.actor import Actor
from bot.domain.arrival import ArrivalIn, InvalidInput, check_free_text
from bot.domain.calendar import WorkingDayCalendar
from bot.domain.case import Case, CaseNotFound, Conflict, Version, notice_event
from bot.domain.clock import Clock
from bot.domain.deadline_rules import DeadlineRules, same_day_due
from bot.domain.directory import Directory
from bot.domain.events import Topic, draft_case_id
from bot.domain.notice import REF_PREFIX, NoticeDraft
from bot.domain.policy import Forbidden
from bot.store import Pipeline, Redis, keys, optimistic
from bot.store.timers import Scheduler, Timer
from bot.usecases.audit import DRAFT_DISCARDED
from bot.usecases.cases import CaseService

log = logging.getLogger(__name__)

NEW: Final = "new"
CONFIRMED: Final = "confirmed"
DISCARDED: Final = "discarded"

DRAFT_CHECK: Final = "notice_draft_check"  # the same-day alert time: the reception unit
DRAFT_CLOSE: Final = "notice_draft_close"  # office end: the reception unit and its supervisor
DISCARD_REASON_MISSING: Final = "Ange varför utkastet kastas."
MAX_DISCARD_REASON: Final = 500
# The case fact that keeps when the notice came (the follow-up report's notice → notification).
NOTICE_RECEIVED_AT: Final = "notice_received_at"

MAILBOX_ACTOR: Final = Actor(org_id="ankomst", via="intake", who="mailbox")


class DraftNotFound(LookupError):
    """No draft of that id."""


@dataclass(frozen=True)
class DraftLinks:
    """Where a reception unit reviews a draft: the board's form, and the chat command."""

    public_url: str

    def url(self, draft_id: str) -> str:
        """The board's pre-filled registration form."""
        return f"{self.public_url.rstrip('/')}/dashboard/ny?draft={draft_id}"

    @staticmethod
    def chat_hint(draft_id: str) -> str:
        """The chat's pre-filled `/ny` command."""
        return f"/ny {draft_id}"


def draft_id_of(external_ref: str) -> str:
    """A draft's id: its external_ref without the prefix (hex, URL-safe)."""
    return external_ref.removeprefix(REF_PREFIX)


def is_draft_id(text: str) -> bool:
    """Whether `text` can name a draft (what a form or a chat command carries is checked
    before it is made into a key)."""
    return bool(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text))


def check_discard_reason(value: str) -> str:
    """The reason a draft is discarded: required, checked like all free text."""
    try:
        value = check_free_text(value)
    except ValueError as exc:
        raise InvalidInput([{"field": "reason", "message": str(exc)}]) from None
    if not value:
        raise InvalidInput([{"field": "reason", "message": DISCARD_REASON_MISSING}])
    if len(value) > MAX_DISCARD_REASON:
        raise InvalidInput(
            [{"field": "reason", "message": f"får vara högst {MAX_DISCARD_REASON} tecken"}]
        )
    return value


class NoticeDrafts:
    """The drafts' use cases; `watch(scheduler)` makes it fire the same-day timers."""

    def __init__(
        self,
        redis: Redis,
        cases: CaseService,
        directory: Directory,
        clock: Clock,
        calendar: WorkingDayCalendar,
        rules: DeadlineRules,
        links: DraftLinks,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.redis = redis
        self.cases = cases
        self.directory = directory
        self.clock = clock
        self.calendar = calendar
        self.rules = rules
        self.links = links
        self.scheduler = scheduler

    def watch(self, scheduler: Scheduler) -> None:
        """Fire the drafts' same-day timers from `scheduler`."""
        self.scheduler = scheduler
        scheduler.on(DRAFT_CHECK, self._fire)
        scheduler.on(DRAFT_CLOSE, self._fire)

    # -- made ---------------------------------------------------------------------------------

    def _params(self, draft_id: str, received_at: datetime, readable: bool) -> dict[str, Any]:
        return {
            "draft": draft_id,
            "received_at": received_at.isoformat(),
            "readable": readable,
            "draft_url": self.links.url(draft_id),
            "chat_hint": self.links.chat_hint(draft_id),
        }

    async def make(
        self, draft: NoticeDraft, reception_unit: str, received_at: datetime
    ) -> tuple[str, bool]:
        """Store the draft of a notice for `reception_unit` and tell it; (draft id, created).
        The same notice again (same external_ref) makes nothing and tells nobody."""
        org = self.directory.organisations.get(reception_unit)
        if org is None or org.kind != "reception_unit":
            raise Forbidden(f"{reception_unit!r} är ingen mottagningsenhet")
        draft_id = draft_id_of(draft.external_ref)
        key = keys.notice_draft(draft_id)
        fields = {
            **draft.fields(),
            "id": draft_id,
            "municipality": org.municipality,
            "reception_unit": reception_unit,
            "received_at": received_at.isoformat(),
            "status": NEW,
        }

        async def attempt(pipe: Pipeline) -> bool:
            if await pipe.hexists(key, "id"):
                await pipe.unwatch()
                return False
            now = self.clock.now()
            pipe.multi()
            pipe.hset(key, mapping=fields)
            pipe.zadd(keys.notice_drafts(reception_unit), {draft_id: received_at.timestamp()})
            # Erased by the privacy sweep this long after the notice if never handled.
            pipe.zadd(keys.NOTICE_DRAFT_RETENTION, {draft_id: received_at.timestamp()})
            pipe.rpush(
                keys.notice_draft_history(draft_id),
                json.dumps({"at": now.isoformat(), "what": "made", "by": "mailbox"}),
            )
            pipe.xadd(
                keys.EVENTS,
                notice_event(
                    draft_case_id(draft_id),
                    1,
                    MAILBOX_ACTOR,
                    now,
                    Topic.NOTICE_DRAFT,
                    [reception_unit],
                    self._params(draft_id, received_at, draft.readable),
                ),
            )
            await pipe.execute()
            return True

        created = await optimistic(self.redis, [key], attempt)
        if created:
            await self._schedule(draft_id, received_at)
        return draft_id, created

    async def _schedule(self, draft_id: str, received_at: datetime) -> None:
        """The same-day watch of a notice that came on a working day (deadline_rules)."""
        if self.scheduler is None:
            return
        if not self.calendar.is_working_day(self.calendar.local_date(received_at)):
            return
        day, check = same_day_due(self.calendar, self.rules, received_at)
        close = max(self.calendar.office_end_on(day), check)
        case = draft_case_id(draft_id)
        payload = {"draft": draft_id, "day": day.isoformat()}
        await self.scheduler.schedule(
            f"{DRAFT_CHECK}:{draft_id}", DRAFT_CHECK, case, check, payload
        )
        await self.scheduler.schedule(
            f"{DRAFT_CLOSE}:{draft_id}", DRAFT_CLOSE, case, close, payload
        )

    async def _fire(self, timer: Timer) -> None:
        """A same-day timer: if the draft is still new, alert (idempotent: one delivery id)."""
        draft_id = str(timer.payload.get("draft", ""))
        data = await self.redis.hgetall(keys.notice_draft(draft_id))
        if not data or data.get("status") != NEW:
            return
        unit = data["reception_unit"]
        told = [unit]
        if timer.kind == DRAFT_CLOSE:
            org = self.directory.organisations.get(unit)
            if org is not None and org.supervisor:
                told.append(org.supervisor)
        received_at = datetime.fromisoformat(data["received_at"])
        stage = "check" if timer.kind == DRAFT_CHECK else "close"
        await self.redis.xadd(
            keys.EVENTS,
            notice_event(
                draft_case_id(draft_id),
                1,
                MAILBOX_ACTOR,
                self.clock.now(),
                Topic.NOTICE_DRAFT_ALERT.at(stage),
                told,
                self._params(draft_id, received_at, data.get("readable") == "true"),
            ),
        )
        log.warning("notice draft %s not confirmed by its %s time", draft_id, stage)

    # -- read ---------------------------------------------------------------------------------

    async def get(self, draft_id: str) -> dict[str, str]:
        """The draft's stored fields; DraftNotFound if none."""
        data = await self.redis.hgetall(keys.notice_draft(draft_id))
        if not data:
            raise DraftNotFound(draft_id)
        return data

    async def of_unit(self, org_id: str) -> list[dict[str, str]]:
        """A reception unit's drafts still to review, oldest first."""
        ids = await self.redis.zrange(keys.notice_drafts(org_id), 0, -1)
        out = []
        for draft_id in ids:
            data = await self.redis.hgetall(keys.notice_draft(draft_id))
            if data and data.get("status") == NEW:
                out.append(data)
        return out

    async def history(self, draft_id: str) -> list[dict[str, Any]]:
        """Who made, confirmed or discarded the draft, when, and why."""
        return [
            json.loads(x)
            for x in await self.redis.lrange(keys.notice_draft_history(draft_id), 0, -1)
        ]

    # -- confirm and discard ------------------------------------------------------------------

    async def _open_draft(self, draft_id: str, actor: Actor) -> dict[str, str]:
        data = await self.get(draft_id)
        if actor.org_id != data["reception_unit"]:
            raise Forbidden("Bara mottagningsenheten som fick aviseringen kan hantera utkastet.")
        if data.get("status") == DISCARDED:
            raise Conflict("Utkastet är kastat.")
        return data

    async def confirm(self, draft_id: str, arrival: ArrivalIn, actor: Actor) -> tuple[Case, bool]:
        """Register the reviewed arrival exactly as the API does, keep when the notice came on
        the case, mark the draft confirmed; (case, created). Confirming twice is the replay of
        one registration (same external_ref)."""
        data = await self._open_draft(draft_id, actor)
        if arrival.external_ref != data["external_ref"]:
            raise InvalidInput(
                [{"field": "external_ref", "message": "ska vara utkastets referens"}]
            )
        case, created = await self.cases.register(arrival, actor)
        now = self.clock.now()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(keys.case(case.id), NOTICE_RECEIVED_AT, data["received_at"])
            pipe.hset(
                keys.notice_draft(draft_id),
                mapping={"status": CONFIRMED, "case": case.id, "confirmed_at": now.isoformat()},
            )
            pipe.zrem(keys.notice_drafts(data["reception_unit"]), draft_id)
            # Kept, like a closed case, for the retention time from now (bot/usecases/privacy.py).
            pipe.zadd(keys.NOTICE_DRAFT_RETENTION, {draft_id: now.timestamp()})
            pipe.rpush(
                keys.notice_draft_history(draft_id),
                json.dumps(
                    {
                        "at": now.isoformat(),
                        "what": "confirmed",
                        "by": actor.org_id,
                        "via": actor.via,
                        "who": actor.who,
                        "case": case.id,
                    }
                ),
            )
            await pipe.execute()
        await self._cancel_timers(draft_id)
        return case, created

    async def discard(self, draft_id: str, reason: str, actor: Actor) -> None:
        """Throw the draft away, with a reason (required; InvalidInput naming `reason`); who,
        when and why are kept in its history and on the audit stream."""
        reason = check_discard_reason(reason)
        data = await self._open_draft(draft_id, actor)
        if data.get("status") == CONFIRMED:
            raise Conflict("Utkastet är redan skickat som ett ärende.")
        now = self.clock.now()
        entry = {"at": now.isoformat(), "what": "discarded", "by": actor.org_id,
                 "via": actor.via, "who": actor.who, "reason": reason}  # fmt: skip
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.notice_draft(draft_id),
                mapping={"status": DISCARDED, "discarded_at": now.isoformat()},
            )
            pipe.zrem(keys.notice_drafts(data["reception_unit"]), draft_id)
            pipe.zadd(keys.NOTICE_DRAFT_RETENTION, {draft_id: now.timestamp()})
            pipe.rpush(keys.notice_draft_history(draft_id), json.dumps(entry, ensure_ascii=False))
            pipe.xadd(
                keys.AUDIT,
                {"at": now.isoformat(), "by": actor.org_id, "role": actor.role, "who": actor.who,
                 "via": actor.via, "what": DRAFT_DISCARDED, "draft": draft_id},
            )  # fmt: skip
            await pipe.execute()
        await self._cancel_timers(draft_id)

    async def _cancel_timers(self, draft_id: str) -> None:
        if self.scheduler is not None:
            await self.scheduler.cancel(f"{DRAFT_CHECK}:{draft_id}")
            await self.scheduler.cancel(f"{DRAFT_CLOSE}:{draft_id}")


async def draft_as_case(redis: Redis, case_id: str) -> tuple[Case, Version | None]:
    """A draft seen as the case its messages are about (the deliverer renders a draft's
    notice with it): no reference yet, the municipality, the arrival date it names (else the
    day the notice came). CaseNotFound if the draft is gone."""
    draft_id = case_id.removeprefix("draft-")
    data = await redis.hgetall(keys.notice_draft(draft_id))
    if not data:
        raise CaseNotFound(case_id)
    received = datetime.fromisoformat(data["received_at"])
    facts = {"arrival_date": data.get("arrival_date") or received.date().isoformat()}
    case = Case(
        id=case_id,
        reference=f"utkast {draft_id[:8]}",  # no case reference yet: the draft's short id
        external_ref=data.get("external_ref", ""),
        municipality=data["municipality"],
        reception_unit=data["reception_unit"],
        status="open",
        version=1,
        created_at=received,
        updated_at=received,
        recipients=(),
        facts=facts,
    )
    return case, Version(1, "new", facts, received, data["reception_unit"], "intake")
