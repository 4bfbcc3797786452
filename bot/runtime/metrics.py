"""Prometheus metrics of one process (each `serve` process exposes its own at /metrics).

Counters and the histogram count what this process did (deliveries it made, acknowledgements
whose events it handled); the gauges of queue lengths, overdue deadlines and due timers are read
from Redis at each scrape, so every process reports the same shared figures for those.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.domain.calendar import WorkingDayCalendar
from bot.domain.clock import Clock
from bot.domain.deadline_rules import DeadlineRules, ack_due, booking_due
from bot.domain.directory import Directory
from bot.domain.progress import progress
from bot.store import Redis, keys
from bot.store.streams import StreamConsumer

Handler = Callable[[str, dict[str, str]], Awaitable[bool]]

# Hours a recipient takes to acknowledge range from minutes to days.
ACK_BUCKETS = (300, 900, 1800, 3600, 7200, 4 * 3600, 8 * 3600, 86400, 2 * 86400, 5 * 86400)
GROUPS = (
    (keys.EVENTS, keys.FANOUT_GROUP),
    (keys.EVENTS, keys.DEADLINES_GROUP),
    (keys.OUTBOX_EMAIL, keys.SENDER_GROUP),
    (keys.OUTBOX_TELEGRAM, keys.SENDER_GROUP),
    (keys.INTAKE, "intake"),
)


class Metrics:
    """The metrics of one running service, in a registry of its own."""

    def __init__(
        self,
        redis: Redis,
        directory: Directory,
        clock: Clock,
        calendar: WorkingDayCalendar,
        rules: DeadlineRules,
    ) -> None:
        self.redis = redis
        self.directory = directory
        self.clock = clock
        self.calendar = calendar
        self.rules = rules  # the overdue gauges judge deadlines as the deadline worker sets them
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "ankomst_deliveries",
            "Deliveries handled by this process, by channel kind and outcome.",
            ["channel", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "ankomst_sender_retries",
            "Send attempts beyond a delivery's first, by channel kind.",
            ["channel"],
            registry=r,
        )
        self.ack_seconds = Histogram(
            "ankomst_acknowledgement_seconds",
            "Wall time from a version's registration to its acknowledgement, by organisation kind.",
            ["kind"],
            buckets=ACK_BUCKETS,
            registry=r,
        )
        self.stream_lag = Gauge(
            "ankomst_stream_lag",
            "Entries of a stream not yet read by a consumer group.",
            ["stream", "group"],
            registry=r,
        )
        self.stream_pending = Gauge(
            "ankomst_stream_pending",
            "Entries read by a consumer group but not yet acknowledged.",
            ["stream", "group"],
            registry=r,
        )
        self.dead_letters = Gauge(
            "ankomst_dead_letters", "Entries in the dead-letter stream.", registry=r
        )
        self.overdue = Gauge(
            "ankomst_overdue",
            "Open deadlines already passed: acknowledgements (the acknowledgement deadline "
            "has passed, no acknowledgement of the current version) and health bookings (the "
            "last day to book is over, no booking).",
            ["deadline"],
            registry=r,
        )
        self.timers_due = Gauge(
            "ankomst_timers_due", "Timers due by the clock and not yet fired.", registry=r
        )
        self.open_cases = Gauge("ankomst_open_cases", "Cases open.", registry=r)
        self.consumer_errors = Gauge(
            "ankomst_consumer_failures",
            "Handler failures and dead-lettered entries of this process's consumers.",
            ["stream", "group", "what"],
            registry=r,
        )
        self.consumers: Sequence[StreamConsumer] = ()

    # -- what this process does ----------------------------------------------------------

    def observe_deliveries(self, handle: Handler) -> Handler:
        """Wrap the deliverer's handler: bind the case to the log lines written meanwhile.
        (Outcomes are counted by `count_delivery`, which the deliverer calls.)"""
        import structlog

        async def observed(entry_id: str, entry: dict[str, str]) -> bool:
            ident = entry.get("delivery", "")
            with structlog.contextvars.bound_contextvars(
                case=ident.split(":", 1)[0], delivery=ident
            ):
                return await handle(entry_id, entry)

        return observed

    def count_delivery(self, channel: str, outcome: str, retries: int) -> None:
        """Count one delivery's outcome (sent, failed, superseded, retrying) and its send
        attempts beyond the delivery's first."""
        kind = "email" if channel == "email" else "telegram"
        self.deliveries.labels(kind, outcome).inc()
        if retries > 0:
            self.retries.labels(kind).inc(retries)

    def observe_events(self, handle: Handler, *, time_acks: bool) -> Handler:
        """Wrap an event-stream handler: bind the case to logs; with `time_acks`, time each
        acknowledgement (give it to one group only, so none is counted twice)."""
        import structlog

        async def observed(entry_id: str, event: dict[str, str]) -> bool:
            case_id = event.get("case", "")
            with structlog.contextvars.bound_contextvars(case=case_id, event=event.get("type")):
                done = await handle(entry_id, event)
            if time_acks and done and event.get("type") == "case.acknowledged":
                await self._observe_ack(case_id, event)
            return done

        return observed

    async def _observe_ack(self, case_id: str, event: dict[str, str]) -> None:
        version = await self.redis.hget(keys.case_versions(case_id), event.get("version", ""))
        if version is None or not event.get("at"):
            return
        told = datetime.fromisoformat(json.loads(version)["at"])
        org = self.directory.organisations.get(event.get("org", ""))
        seconds = (datetime.fromisoformat(event["at"]) - told).total_seconds()
        self.ack_seconds.labels(org.kind if org else "unknown").observe(max(seconds, 0.0))

    # -- read at each scrape ---------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the shared figures from Redis into the gauges."""
        for stream, group in GROUPS:
            lag = pending = 0
            if await self.redis.exists(stream):
                for info in await self.redis.xinfo_groups(stream):
                    if info["name"] == group:
                        lag = int(info.get("lag") or 0)
                        pending = int(info.get("pending") or 0)
            self.stream_lag.labels(stream, group).set(lag)
            self.stream_pending.labels(stream, group).set(pending)
        self.dead_letters.set(await self.redis.xlen(keys.DEAD_LETTER))
        now = self.clock.now()
        self.timers_due.set(await self.redis.zcount(keys.TIMERS, "-inf", now.timestamp()))
        open_ids = await self.redis.smembers(keys.OPEN_CASES)
        self.open_cases.set(len(open_ids))
        ack, booking = await self._overdue(sorted(open_ids), now)
        self.overdue.labels("acknowledgement").set(ack)
        self.overdue.labels("booking").set(booking)
        for c in self.consumers:
            self.consumer_errors.labels(c.stream, c.group, "failed").set(c.stats.failed)
            self.consumer_errors.labels(c.stream, c.group, "dead_lettered").set(
                c.stats.dead_lettered
            )

    async def _overdue(self, case_ids: list[str], now: datetime) -> tuple[int, int]:
        """(recipients late acknowledging, health centres late booking) over `case_ids`, each
        judged by the one progress derivation (bot.domain.progress) at `now`."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for case_id in case_ids:
                pipe.hmget(
                    keys.case(case_id), ["version", "status", "booking", "updated_at", "recipients"]
                )
                pipe.hgetall(keys.case_acks(case_id))
                pipe.hgetall(keys.case_markers(case_id))
            replies = await pipe.execute()
        ack = booking = 0
        for i in range(len(case_ids)):
            (version, status, booked, told, recipients), acks, markers = replies[3 * i : 3 * i + 3]
            if version is None or told is None or recipients is None:
                continue  # removed meanwhile
            number = int(version)
            # A version's acknowledgement clock starts when it was registered (updated_at).
            ack_deadline = ack_due(self.calendar, self.rules, datetime.fromisoformat(told))
            for org_id in json.loads(recipients):
                informed = markers.get(keys.booking_informed_marker(org_id))
                ack_record = acks.get(f"{number}:{org_id}")
                mine = progress(
                    version=number,
                    cancelled=status == "cancelled",
                    messages=(),  # how far a message got does not make anyone late
                    acknowledged_at=(
                        datetime.fromisoformat(json.loads(ack_record)["at"]) if ack_record else None
                    ),
                    now=now,
                    ack_due=ack_deadline,
                    booking_due=(
                        booking_due(self.calendar, self.rules, datetime.fromisoformat(informed))
                        if informed
                        else None
                    ),
                    booked=bool(booked) or keys.booking_reported_marker(org_id) in markers,
                )
                ack += mine.ack_overdue
                booking += mine.booking_overdue
        return ack, booking

    async def exposition(self) -> bytes:
        """The text format Prometheus scrapes, refreshed from Redis first."""
        await self.refresh()
        return generate_latest(self.registry)
