"""The yearly follow-up (§10): figures per municipality and organisation kind (and month).

Every figure comes from an anonymous statistics record per case, derived from what the case
keeps that says nothing about who the children are: its history lines (who did what when), its
acknowledgements' times, its delivery markers, its health-centre markers, its disagreements'
times, and counts of what the follow-up asks for (children per age band, languages,
unaccompanied, interpreter needed). When the personal fields of a case are erased
(bot/usecases/privacy.py), the record is frozen into `ankomst:stats:case:{id}` first and left
alone, so the figures come out the same before and after.

Every share is taken over the cases it concerns, judged by what is known **when the report is
made** (`now`, the injected clock), not by the end of the period asked for:

- a cancelled case is counted in `cancelled`, not among `arrivals`, and in no share;
- a health centre's booking is *in time* when it was reported before the office closed on its
  last day (bot/domain/deadline_rules.py, the one working-day rule), *late* when reported after
  that or never reported once that moment has passed (`bookings_never_booked` of them), and
  *pending* while that moment is still ahead; the share is in time / (in time + late).

Time to acknowledge is counted in **working time** (office hours of working days, as the
deadlines are), from the moment a version was registered to its acknowledgement by that
organisation; wall time is given beside it. The 90th percentile is the nearest-rank one.
Notice → notification is wall time in hours from when the notice reached the reception unit
(the case fact `notice_received_at`, else the registration) to when every recipient had been
reached; arrival → health conversation is calendar days from the arrival date to the booked
conversation's local date.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from bot.domain.calendar import WorkingDayCalendar
from bot.domain.case import CaseNotFound
from bot.domain.directory import Directory
from bot.store import Redis, keys
from bot.store.cases import read_case
from messages.languages import canonical_language

ALL_KINDS = "alla"
REMINDERS = ("ack_reminder", "booking_reminder")
ESCALATIONS = ("ack_escalation", "booking_escalation")
# The age bands of the follow-up: (key, youngest, oldest), inclusive.
AGE_BANDS = (("0", 0, 0), ("1_5", 1, 5), ("6_15", 6, 15), ("16_17", 16, 17))
KIND_ORDER = (
    ALL_KINDS,
    "reception_unit",
    "health_centre",
    "preschool",
    "school",
    "social_services",
    "management",
)


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


def age_band(age: int) -> str:
    """The follow-up's age band of a child's age: "0", "1_5", "6_15" or "16_17"."""
    for key, youngest, oldest in AGE_BANDS:
        if youngest <= age <= oldest:
            return key
    raise ValueError(f"age {age} is outside 0-17")


async def case_statistics(
    redis: Redis,
    directory: Directory,
    calendar: WorkingDayCalendar,
    case_id: str,
    *,
    booking_days: int = 5,
) -> dict[str, Any] | None:
    """The anonymous statistics record of one case, from its stored state; None if unknown.

    Only times, organisation ids, kinds and counts go in; never initials, details or free
    texts, and the children only as a count per age band.
    """
    try:
        case, data, _ = await read_case(redis, case_id)
    except CaseNotFound:
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
    recipients = case.recipients
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
    facts = case.facts
    bands = Counter(age_band(int(c["age"])) for c in facts.get("children", []))
    same_day = data.get("notified_same_day")
    return {
        "case": case_id,
        "municipality": data["municipality"],
        "created_at": data["created_at"],
        "notice_received_at": (
            facts.get("notice_received_at") or data.get("notice_received_at") or None
        ),
        "notified_at": data.get("notified_at") or None,
        "cancelled": data.get("status") == "cancelled",
        "arrival_date": facts.get("arrival_date"),
        "children": {key: bands.get(key, 0) for key, _, _ in AGE_BANDS},
        "languages": sorted({canonical_language(code) for code in facts.get("languages", [])}),
        "unaccompanied": bool(facts.get("unaccompanied")),
        "interpreter_needed": bool(facts.get("interpreter_needed")),
        "booked_for": booking.get("at") if booking else None,
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
            mapping={"record": json.dumps(record, ensure_ascii=False), "version": "2"},
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


def booking_outcome(booking: Mapping[str, Any], calendar: WorkingDayCalendar, now: datetime) -> str:
    """ "in_time", "late", "never_booked" (late, and still not reported) or "pending".

    The booking's last day ends when the office closes on it (bot/domain/deadline_rules.py):
    reported by then is in time; reported after, or not at all once it has passed by `now`
    (when the report is made), is late; otherwise it is still pending.
    """
    deadline = booking.get("deadline")
    if deadline is None:
        return "pending"  # the health centre has not been told yet
    closes = calendar.office_end_on(date.fromisoformat(str(deadline)))
    reported = booking.get("reported_at")
    if reported:
        return "in_time" if datetime.fromisoformat(str(reported)) <= closes else "late"
    return "never_booked" if now >= closes else "pending"


@dataclass
class Row:
    """The figures of one municipality and organisation kind (or every kind: "alla"), in one
    month or over the whole period."""

    municipality: str
    municipality_name: str
    kind: str
    month: str | None = None
    arrivals: int = 0
    cancelled: int = 0
    children: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    unaccompanied: int = 0
    interpreter_needed: int = 0
    same_day: list[bool] = field(default_factory=list)
    notice_hours: list[float] = field(default_factory=list)
    ack_working_hours: list[float] = field(default_factory=list)
    ack_wall_hours: list[float] = field(default_factory=list)
    bookings: Counter[str] = field(default_factory=Counter)
    arrival_to_health_days: list[float] = field(default_factory=list)
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

        in_time = self.bookings["in_time"]
        late = self.bookings["late"] + self.bookings["never_booked"]
        head: dict[str, Any] = {} if self.month is None else {"month": self.month}
        return head | {
            "municipality": self.municipality,
            "municipality_name": self.municipality_name,
            "kind": self.kind,
            "arrivals": self.arrivals,
            "cancelled": self.cancelled,
            **{f"children_{key}": self.children[key] for key, _, _ in AGE_BANDS},
            "unaccompanied": self.unaccompanied,
            "interpreter_needed": self.interpreter_needed,
            "languages": dict(sorted(self.languages.items(), key=lambda kv: (-kv[1], kv[0]))),
            "notified_same_day_share": rounded(_share(self.same_day), 3),
            "notified_same_day_known": len(self.same_day),
            "notice_to_notified_median_hours": rounded(_median(self.notice_hours)),
            "notice_to_notified_counted": len(self.notice_hours),
            "acknowledgements": len(self.ack_working_hours),
            "ack_median_working_hours": rounded(_median(self.ack_working_hours)),
            "ack_p90_working_hours": rounded(percentile(self.ack_working_hours, 0.9)),
            "ack_median_wall_hours": rounded(_median(self.ack_wall_hours)),
            "ack_p90_wall_hours": rounded(percentile(self.ack_wall_hours, 0.9)),
            "booking_within_5_share": rounded(
                in_time / (in_time + late) if in_time + late else None, 3
            ),
            "bookings_counted": in_time + late,
            "bookings_in_time": in_time,
            "bookings_late": late,
            "bookings_never_booked": self.bookings["never_booked"],
            "bookings_pending": self.bookings["pending"],
            "arrival_to_health_median_days": rounded(_median(self.arrival_to_health_days)),
            "arrival_to_health_counted": len(self.arrival_to_health_days),
            "reminders": self.reminders,
            "escalations": self.escalations,
            "disagreements": self.disagreements,
            "disagreements_escalated": self.disagreements_escalated,
            "disagreements_open": self.disagreements_open,
            "disagreement_median_days_open": rounded(_median(self.disagreement_days)),
            "disagreement_max_days_open": rounded(max(self.disagreement_days, default=None)),
        }


def _months(first: date, last: date) -> list[str]:
    months, day = [], first.replace(day=1)
    while day <= last:
        months.append(f"{day.year:04d}-{day.month:02d}")
        day = (day + timedelta(days=32)).replace(day=1)
    return months


def aggregate(
    records: Iterable[Mapping[str, Any]],
    directory: Directory,
    calendar: WorkingDayCalendar,
    now: datetime,
    *,
    months: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows per municipality and organisation kind, plus one "alla" row per municipality of
    the directory (zeros included); with `months`, that for each month (of registration).

    Lateness and open disagreements are judged at `now`, when the report is made.
    """
    rows: dict[tuple[str, str, str], Row] = {}

    def row(month: str, municipality: str, kind: str) -> Row:
        key = (month, municipality, kind)
        if key not in rows:
            m = directory.municipalities.get(municipality)
            rows[key] = Row(
                municipality, m.name if m else municipality, kind, month if months else None
            )
        return rows[key]

    for month in months or [""]:
        for municipality in directory.municipalities:
            row(month, municipality, ALL_KINDS)

    for record in records:
        created = datetime.fromisoformat(str(record["created_at"]))
        local = calendar.local_date(created)
        month = f"{local.year:04d}-{local.month:02d}" if months else ""
        municipality = str(record["municipality"])
        total = row(month, municipality, ALL_KINDS)
        cancelled = bool(record["cancelled"])
        kinds = {p["kind"] for p in record["parties"]}
        for target in [total, *(row(month, municipality, k) for k in sorted(kinds))]:
            if cancelled:
                target.cancelled += 1
                continue
            target.arrivals += 1
            target.children.update(record.get("children") or {})
            target.languages.update(record.get("languages") or [])
            target.unaccompanied += 1 if record.get("unaccompanied") else 0
            target.interpreter_needed += 1 if record.get("interpreter_needed") else 0
            if record["notified_same_day"] is not None:
                target.same_day.append(bool(record["notified_same_day"]))
            if record.get("notified_at"):
                notice = datetime.fromisoformat(
                    str(record.get("notice_received_at") or record["created_at"])
                )
                hours = (datetime.fromisoformat(str(record["notified_at"])) - notice) / timedelta(
                    hours=1
                )
                target.notice_hours.append(max(hours, 0.0))
        for ack in record["acks"]:
            for target in (total, row(month, municipality, ack["kind"])):
                target.ack_working_hours.append(ack["working_seconds"] / 3600)
                target.ack_wall_hours.append(ack["wall_seconds"] / 3600)
        if not cancelled:
            for booking in record["bookings"]:
                outcome = booking_outcome(booking, calendar, now)
                for target in (total, row(month, municipality, "health_centre")):
                    target.bookings[outcome] += 1
            if record.get("booked_for") and record.get("arrival_date"):
                booked = calendar.local_date(datetime.fromisoformat(str(record["booked_for"])))
                days = (booked - date.fromisoformat(str(record["arrival_date"]))).days
                for target in (total, row(month, municipality, "health_centre")):
                    target.arrival_to_health_days.append(float(days))
        for notice in record["notices"]:
            targets = [total] + (
                [row(month, municipality, notice["kind"])] if notice["kind"] else []
            )
            for target in targets:
                if notice["what"] in REMINDERS:
                    target.reminders += 1
                elif notice["what"] in ESCALATIONS:
                    target.escalations += 1
        for d in record["disagreements"]:
            raised = datetime.fromisoformat(d["raised_at"])
            closed = datetime.fromisoformat(d["resolved_at"]) if d["resolved_at"] else None
            if closed is not None and closed > now:
                closed = None
            days_open = ((closed or now) - raised).total_seconds() / 86400
            for target in (total, row(month, municipality, d["kind"])):
                target.disagreements += 1
                target.disagreements_escalated += 1 if d["escalated_at"] else 0
                target.disagreements_open += 0 if closed else 1
                target.disagreement_days.append(max(days_open, 0.0))
    order = {k: i for i, k in enumerate(KIND_ORDER)}
    return [
        rows[k].figures()
        for k in sorted(rows, key=lambda k: (k[0], k[1], order.get(k[2], 99), k[2]))
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
    per_month: bool = False,
) -> dict[str, Any]:
    """The follow-up of arrivals registered from `first` to `last` (local dates, inclusive),
    as known at `now` (when the report is made: the injected clock; the system clock if None).
    With `per_month`, every row is given per month of registration."""
    made = now or datetime.now(UTC)
    start = calendar.at_local(first, time(0))
    end = calendar.at_local(last + timedelta(days=1), time(0))
    records = await statistics_records(
        redis, directory, calendar, start, end, booking_days=booking_days
    )
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "generated_at": made.isoformat(),
        "timezone": calendar.zone.key,
        "booking_days": booking_days,
        "per_month": per_month,
        "cases": len(records),
        "ack_time_basis": "working time (office hours of working days), from registration of "
        "the version to its acknowledgement; p90 by nearest rank",
        "booking_basis": "a booking is in time when reported before the office closes on the "
        f"last day ({booking_days} working days after the day the health centre was told, that "
        "day not counted); never booked counts as late once that has passed when the report is "
        "made, and as pending before",
        "rows": aggregate(
            records,
            directory,
            calendar,
            made,
            months=_months(first, last) if per_month else None,
        ),
    }
