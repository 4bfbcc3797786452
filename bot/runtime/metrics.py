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
from redis.asyncio import Redis

from bot.domain.clock import Clock
from bot.domain.directory import Directory
from bot.store import keys
from bot.store.streams import StreamConsumer
from bot.store.timers import timers_of_case

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

    def __init__(self, redis: Redis, directory: Directory, clock: Clock) -> None:
        self.redis = redis
        self.directory = directory
        self.clock = clock
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
            "Open deadlines already passed: acknowledgements (reminder sent, no "
            "acknowledgement) and health bookings (reminder sent, no booking).",
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
        ack = booking = 0
        for case_id in open_ids:
            fired = [
                t
                for t in await timers_of_case(self.redis, case_id)
                if t.state == "fired" and t.kind in ("ack_reminder", "booking_reminder")
            ]
            if not fired:
                continue
            data = await self.redis.hmget(keys.case(case_id), ["version", "status", "booking"])
            version, status, booked = data
            if status == "cancelled":
                continue
            acks = await self.redis.hkeys(keys.case_acks(case_id))
            for t in fired:
                org = str(t.payload.get("organisation", ""))
                if t.kind == "ack_reminder":
                    v = int(t.payload.get("version", 0))
                    if str(v) == version and f"{v}:{org}" not in acks:
                        ack += 1
                elif not booked:
                    booking += 1
        self.overdue.labels("acknowledgement").set(ack)
        self.overdue.labels("booking").set(booking)
        for c in self.consumers:
            self.consumer_errors.labels(c.stream, c.group, "failed").set(c.stats.failed)
            self.consumer_errors.labels(c.stream, c.group, "dead_lettered").set(
                c.stats.dead_lettered
            )

    async def exposition(self) -> bytes:
        """The text format Prometheus scrapes, refreshed from Redis first."""
        await self.refresh()
        return generate_latest(self.registry)
