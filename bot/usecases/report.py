"""The yearly follow-up (§10): figures per municipality and organisation kind.

Every figure comes from an anonymous statistics record per case, derived from what the case
keeps that says nothing about the children: its history lines (who did what when), its
acknowledgements' times, its delivery markers, its health-centre markers and its
disagreements' times. When the personal fields of a case are erased
(bot/usecases/privacy.py), the record is frozen into `ankomst:stats:case:{id}` first and left
alone, so the figures come out the same before and after.

Time to acknowledge is counted in **working time** (office hours of working days, as the
deadlines are), from the moment a version was registered to its acknowledgement by that
organisation; wall time is given beside it. The 90th percentile is the nearest-rank one.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from bot.domain.calendar import WorkingDayCalendar
from bot.domain.directory import Directory
from bot.store import Redis, keys

ALL_KINDS = "alla"
REMINDERS = ("ack_reminder", "booking_reminder")
ESCALATIONS = ("ack_escalation", "booking_escalation")


def percentile(values: Iterable[float], share: float) -> float | None:
    """The nearest-rank percentile (`share` in 0..1) of `values`; None when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(math.ceil(share * len(ordered)), 1)
    return ordered[rank - 1]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


async def case_statistics(
    redis: Redis,
    directory: Directory,
    calendar: WorkingDayCalendar,
    case_id: str,
    *,
    booking_days: int = 5,
) -> dict[str, Any] | None:
    """The anonymous statistics record of one case, from its stored state; None if unknown.

    Only times, organisation ids and kinds go in; never initials, details or free texts.
    """
    data = await redis.hgetall(keys.case(case_id))
    if not data:
        return None

    def kind(org_id: str) -> str:
        org = directory.organisations.get(org_id)
        return org.kind if org else "okänd"

    history = [json.loads(x) for x in await redis.lrange(keys.case_history(case_id), 0, -1)]
    told: dict[int, datetime] = {}
    for entry in history:
        if entry.get("what") in ("registered", "changed"):
            told.setdefault(int(entry["version"]), datetime.fromisoformat(entry["at"]))
    acks = []
    for entry in history:
        if entry.get("what") != "acknowledged":
            continue
        version = int(entry["version"])
        org_id = str(entry.get("organisation") or entry.get("by"))
        start = told.get(version)
        at = datetime.fromisoformat(entry["at"])
        if start is None:
            continue
        acks.append(
            {
                "org": org_id,
                "kind": kind(org_id),
                "version": version,
                "working_seconds": calendar.working_time_between(start, at).total_seconds(),
                "wall_seconds": max((at - start).total_seconds(), 0.0),
            }
        )
    notices = [
        {"what": e["what"], "org": e.get("organisation"), "kind": kind(e["organisation"])}
        for e in history
        if e.get("what") in (*REMINDERS, *ESCALATIONS, "same_day_alert") and e.get("organisation")
    ] + [
        {"what": "same_day_alert", "org": None, "kind": None}
        for e in history
        if e.get("what") == "same_day_alert" and not e.get("organisation")
    ]
    recipients = json.loads(data.get("recipients") or "[]")
    markers = await redis.hgetall(keys.case_markers(case_id))
    booking = json.loads(data["booking"]) if data.get("booking") else None
    bookings = []
    for org_id in recipients:
        if kind(org_id) != "health_centre":
            continue
        informed = markers.get(keys.booking_informed_marker(org_id))
        reported = markers.get(keys.booking_reported_marker(org_id)) or (
            booking.get("reported_at") if booking and booking.get("by") == org_id else None
        )
        deadline = (
            calendar.booking_deadline(datetime.fromisoformat(informed), booking_days)
            if informed
            else None
        )
        bookings.append(
            {
                "org": org_id,
                "informed_at": informed,
                "reported_at": reported,
                "deadline": deadline.isoformat() if deadline else None,
                "within": (
                    None
                    if deadline is None or reported is None
                    else calendar.local_date(datetime.fromisoformat(reported)) <= deadline
                ),
            }
        )
    disagreements = []
    for ident in sorted(await redis.smembers(keys.case_disagreements(case_id))):
        d = await redis.hgetall(keys.disagreement(ident))
        if not d:
            continue
        disagreements.append(
            {
                "raised_by": d.get("raised_by"),
                "kind": kind(d.get("raised_by", "")),
                "raised_at": d.get("raised_at"),
                "escalated_at": d.get("escalated_at") or None,
                "resolved_at": d.get("resolved_at") or None,
            }
        )
    same_day = data.get("notified_same_day")
    return {
        "case": case_id,
        "municipality": data["municipality"],
        "created_at": data["created_at"],
        "cancelled": data.get("status") == "cancelled",
        "parties": [
            {"org": o, "kind": kind(o)}
            for o in dict.fromkeys([data["reception_unit"], *recipients])
        ],
        "notified_same_day": None if same_day is None else same_day == "true",
        "acks": acks,
        "notices": notices,
        "bookings": bookings,
        "disagreements": disagreements,
    }


async def freeze_statistics(redis: Redis, record: Mapping[str, Any]) -> None:
    """Keep a case's statistics record for good (the erasure leaves it alone)."""
    created = datetime.fromisoformat(str(record["created_at"]))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.case_stats(str(record["case"])),
            mapping={"record": json.dumps(record, ensure_ascii=False), "version": "1"},
        )
        pipe.zadd(keys.STATS_CASES, {str(record["case"]): created.timestamp()})
        await pipe.execute()


async def statistics_records(
    redis: Redis,
    directory: Directory,
    calendar: WorkingDayCalendar,
    start: datetime,
    end: datetime,
    *,
    booking_days: int = 5,
) -> list[dict[str, Any]]:
    """Records of every case registered in [start, end): frozen ones as kept, others live."""
    ids = set(await redis.smembers(keys.ALL_CASES))
    ids |= set(await redis.zrangebyscore(keys.STATS_CASES, start.timestamp(), end.timestamp()))
    out = []
    for case_id in sorted(ids):
        frozen = await redis.hget(keys.case_stats(case_id), "record")
        record = (
            json.loads(frozen)
            if frozen
            else await case_statistics(
                redis, directory, calendar, case_id, booking_days=booking_days
            )
        )
        if record is None:
            continue
        created = datetime.fromisoformat(record["created_at"])
        if start <= created < end:
            out.append(record)
    return out


@dataclass
class Row:
    """The figures of one municipality and organisation kind (or every kind: "alla")."""

    municipality: str
    municipality_name: str
    kind: str
    arrivals: int = 0
    same_day: list[bool] = field(default_factory=list)
    ack_working_hours: list[float] = field(default_factory=list)
    ack_wall_hours: list[float] = field(default_factory=list)
    bookings_within: list[bool] = field(default_factory=list)
    reminders: int = 0
    escalations: int = 0
    disagreements: int = 0
    disagreements_escalated: int = 0
    disagreements_open: int = 0
    disagreement_days: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """The row as the report prints it."""

        def rounded(value: float | None, digits: int = 2) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "municipality": self.municipality,
            "municipality_name": self.municipality_name,
            "kind": self.kind,
            "arrivals": self.arrivals,
            "notified_same_day_share": rounded(_share(self.same_day), 3),
            "notified_same_day_known": len(self.same_day),
            "acknowledgements": len(self.ack_working_hours),
            "ack_median_working_hours": rounded(_median(self.ack_working_hours)),
            "ack_p90_working_hours": rounded(percentile(self.ack_working_hours, 0.9)),
            "ack_median_wall_hours": rounded(_median(self.ack_wall_hours)),
            "ack_p90_wall_hours": rounded(percentile(self.ack_wall_hours, 0.9)),
            "booking_within_5_share": rounded(_share(self.bookings_within), 3),
            "bookings_counted": len(self.bookings_within),
            "reminders": self.reminders,
            "escalations": self.escalations,
            "disagreements": self.disagreements,
            "disagreements_escalated": self.disagreements_escalated,
            "disagreements_open": self.disagreements_open,
            "disagreement_median_days_open": rounded(_median(self.disagreement_days)),
            "disagreement_max_days_open": rounded(max(self.disagreement_days, default=None)),
        }


def aggregate(
    records: Iterable[Mapping[str, Any]],
    directory: Directory,
    calendar: WorkingDayCalendar,
    end: datetime,
) -> list[dict[str, Any]]:
    """Rows per municipality and organisation kind, plus one "alla" row per municipality.

    A booking counts when its deadline has passed or it was reported; a disagreement still open
    at `end` counts as open until `end`.
    """
    rows: dict[tuple[str, str], Row] = {}
    end_date = calendar.local_date(end - timedelta(microseconds=1))

    def row(municipality: str, kind: str) -> Row:
        key = (municipality, kind)
        if key not in rows:
            m = directory.municipalities.get(municipality)
            rows[key] = Row(municipality, m.name if m else municipality, kind)
        return rows[key]

    for record in records:
        municipality = str(record["municipality"])
        total = row(municipality, ALL_KINDS)
        kinds = {p["kind"] for p in record["parties"]}
        for target in [total, *(row(municipality, k) for k in sorted(kinds))]:
            target.arrivals += 1
            if record["notified_same_day"] is not None and not record["cancelled"]:
                target.same_day.append(bool(record["notified_same_day"]))
        for ack in record["acks"]:
            for target in (total, row(municipality, ack["kind"])):
                target.ack_working_hours.append(ack["working_seconds"] / 3600)
                target.ack_wall_hours.append(ack["wall_seconds"] / 3600)
        if not record["cancelled"]:
            for booking in record["bookings"]:
                within = booking["within"]
                if within is None and booking["deadline"] is not None:
                    # Not reported: late once its last day is over.
                    within = False if date.fromisoformat(booking["deadline"]) < end_date else None
                if within is not None:
                    for target in (total, row(municipality, "health_centre")):
                        target.bookings_within.append(bool(within))
        for notice in record["notices"]:
            targets = [total] + ([row(municipality, notice["kind"])] if notice["kind"] else [])
            for target in targets:
                if notice["what"] in REMINDERS:
                    target.reminders += 1
                elif notice["what"] in ESCALATIONS:
                    target.escalations += 1
        for d in record["disagreements"]:
            raised = datetime.fromisoformat(d["raised_at"])
            closed = datetime.fromisoformat(d["resolved_at"]) if d["resolved_at"] else None
            days = ((closed or end) - raised).total_seconds() / 86400
            for target in (total, row(municipality, d["kind"])):
                target.disagreements += 1
                target.disagreements_escalated += 1 if d["escalated_at"] else 0
                target.disagreements_open += 0 if closed else 1
                target.disagreement_days.append(max(days, 0.0))
    order = {
        k: i
        for i, k in enumerate(
            (
                ALL_KINDS,
                "reception_unit",
                "health_centre",
                "preschool",
                "school",
                "social_services",
                "management",
            )
        )
    }
    return [
        rows[k].figures() for k in sorted(rows, key=lambda k: (k[0], order.get(k[1], 99), k[1]))
    ]


async def build_report(
    redis: Redis,
    directory: Directory,
    calendar: WorkingDayCalendar,
    first: date,
    last: date,
    *,
    booking_days: int = 5,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The follow-up of arrivals registered from `first` to `last` (local dates, inclusive)."""
    start = calendar.at_local(first, time(0))
    end = calendar.at_local(last + timedelta(days=1), time(0))
    cutoff = min(end, now) if now is not None else end
    records = await statistics_records(
        redis, directory, calendar, start, end, booking_days=booking_days
    )
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "generated_at": (now or datetime.now(UTC)).isoformat(),
        "cases": len(records),
        "ack_time_basis": "working time (office hours of working days), from registration of "
        "the version to its acknowledgement; p90 by nearest rank",
        "rows": aggregate(records, directory, calendar, cutoff),
    }
