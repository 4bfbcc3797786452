"""The case as an organisation sees it: facts, recipients, deliveries, acknowledgements, history."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.domain.case import Case
from bot.domain.deadline_kinds import what_then
from bot.domain.delivery import delivery_row
from bot.domain.directory import Directory
from bot.domain.events import ChannelKind
from bot.domain.policy import Policy, project
from bot.domain.progress import Progress, arrival_messages, case_progress, progress
from bot.store import Redis, keys
from bot.store.cases import CaseStore
from bot.store.deliveries import case_delivery_rows
from bot.store.timers import timers_of_case

_DELIVERY_FIELDS = (
    "id",
    "channel",
    "version",
    "topic",
    "status",
    "queued_at",
    "sent_at",
    "failed_at",
    "attempts",
    "error",
)


async def deliveries(redis: Redis, case_id: str) -> list[dict[str, str]]:
    """Every delivery of a case, oldest first, each with the fields its id names
    (`delivery_row`)."""
    rows = [delivery_row(i, r) for i, r in await case_delivery_rows(redis, case_id)]
    return sorted(rows, key=lambda r: (r.get("queued_at", ""), r["id"]))


def _delivery_view(row: dict[str, str]) -> dict[str, Any]:
    view: dict[str, Any] = {k: row[k] for k in _DELIVERY_FIELDS if row.get(k)}
    view["version"] = int(row["version"])
    view["attempts"] = int(row.get("attempts", "0"))
    view["channel_kind"] = str(ChannelKind.of(row["channel"]))
    view["topic"] = row["topic"].split("/", 1)[0]
    return view


def recipient_progress(
    case: Case, rows: list[dict[str, str]], acks: dict[str, Any], org_id: str
) -> Progress:
    """`org_id`'s progress on the case's current version, without deadlines (nothing is
    overdue); the board adds the deadlines and the clock (bot.domain.progress)."""
    ack = acks.get(f"{case.version}:{org_id}")
    return progress(
        version=case.version,
        cancelled=case.status == "cancelled",
        messages=arrival_messages(rows, org_id),
        acknowledged_at=datetime.fromisoformat(ack["at"]) if ack and ack.get("at") else None,
    )


def status_of(case: Case, rows: list[dict[str, str]], acks: dict[str, Any]) -> str:
    """notifying → notified → acknowledged; or cancelled (bot.domain.progress.case_progress)."""
    return case_progress(
        cancelled=case.status == "cancelled",
        recipients=[recipient_progress(case, rows, acks, o) for o in case.recipients],
        copies=[recipient_progress(case, rows, acks, case.reception_unit)],
    )


async def case_view(redis: Redis, directory: Directory, case: Case) -> dict[str, Any]:
    """Everything known of a case, as the reception unit on it sees it; any other viewer gets
    `case_view_for`, which cuts this down to what the policy lets it see."""
    store = CaseStore(redis)
    rows = await deliveries(redis, case.id)
    acks = await store.acks(case.id)
    history = await store.history(case.id)

    def party(org_id: str) -> dict[str, Any]:
        org = directory.organisations.get(org_id)
        mine = [_delivery_view(r) for r in rows if r["org"] == org_id]
        ack = acks.get(f"{case.version}:{org_id}")
        return {
            "organisation": org_id,
            "name": org.name if org else org_id,
            "kind": org.kind if org else None,
            "acknowledged": ({"version": case.version, **ack} if ack is not None else None),
            "acknowledgements": [
                {"version": int(k.split(":", 1)[0]), **v}
                for k, v in sorted(acks.items())
                if k.split(":", 1)[1] == org_id
            ],
            "deliveries": mine,
        }

    deadlines = await pending_deadlines(redis, directory, case, acks)
    same_day_by, notified_at, notified_same_day = await redis.hmget(
        keys.case(case.id), ["same_day_by", "notified_at", "notified_same_day"]
    )
    return {
        "id": case.id,
        "reference": case.reference,
        "external_ref": case.external_ref,
        "municipality": case.municipality,
        "status": status_of(case, rows, acks),
        "version": case.version,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
        "arrival": case.facts,
        "reception_unit": party(case.reception_unit),
        "recipients": [party(o) for o in case.recipients],
        "deadlines": deadlines,
        **await health_view(redis, case),
        # Same-day notification (counted by the yearly follow-up): the working day by which every
        # recipient should have been reached, when they all had been, and whether in time
        # (null until known).
        "same_day_by": same_day_by,
        "notified_at": notified_at,
        "notified_same_day": (None if notified_same_day is None else notified_same_day == "true"),
        "history": history,
    }


async def case_view_for(
    redis: Redis, directory: Directory, case: Case, org_id: str
) -> dict[str, Any]:
    """The case view as organisation `org_id` may see it: the one projection the API, the
    board and chat show (the policy decides which guarded parts are left in)."""
    view = await case_view(redis, directory, case)
    return project(view, Policy(directory).sight(org_id, case))


async def health_view(redis: Redis, case: Case) -> dict[str, Any]:
    """The health centre's reports: the booking, the clearance (yes/no only) and what it means
    for the starts — the preschool waits until clearance exists (routine step 8)."""
    booking, clearance = await redis.hmget(keys.case(case.id), ["booking", "clearance"])
    cleared = json.loads(clearance) if clearance else None
    start = "waiting" if cleared is None else ("may_start" if cleared["may_start"] else "must_wait")
    return {
        "booking": json.loads(booking) if booking else None,
        "clearance": cleared,
        "start": {"school": start, "preschool": start},
    }


async def pending_deadlines(
    redis: Redis, directory: Directory, case: Case, acks: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Each deadline still ahead of the case: kind, organisation, due time, what happens then."""
    if case.status == "cancelled":
        return []
    if acks is None:
        acks = await CaseStore(redis).acks(case.id)
    out: list[dict[str, Any]] = []
    for timer in await timers_of_case(redis, case.id):
        if not timer.pending:
            continue
        then = what_then(directory, timer.kind, timer.payload)
        if not then:
            continue  # done, or bookkeeping nobody needs to see
        version = timer.payload.get("version")
        org = timer.payload.get("organisation")
        if version is not None and int(version) != case.version:
            continue  # an older version's, about to be cancelled
        if version is not None and org and f"{version}:{org}" in acks:
            continue  # acknowledged meanwhile, about to be cancelled
        out.append(
            {
                "kind": timer.kind,
                "organisation": org,
                "due_at": timer.due_at.isoformat(),
                "then": then,
            }
        )
    return out


def summary(case: Case) -> dict[str, Any]:
    """A line of a case list."""
    return {
        "id": case.id,
        "reference": case.reference,
        "municipality": case.municipality,
        "arrival_date": case.facts.get("arrival_date"),
        "status": case.status,
        "version": case.version,
        "recipients": list(case.recipients),
    }


def dumps(data: Any) -> str:
    """JSON as the API writes it (UTF-8, Swedish letters as they are)."""
    return json.dumps(data, ensure_ascii=False)
