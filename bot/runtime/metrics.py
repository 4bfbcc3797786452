"""Prometheus metrics of one process (each `serve` process exposes its own at /metrics).

Counters and the histogram count what this process did (deliveries it made, acknowledgements
whose events it handled); the gauges of queue lengths, overdue deadlines and due timers are read
from Redis at each scrape, so every process reports the same shared figures for those.

A scrape costs the same however many cases are open: nothing is read per case. The overdue
gauges count members of two sorted sets scored by when each open deadline is late
(`keys.ACK_DEADLINES`, `keys.BOOKING_DEADLINES`; "overdue now" is one ZCOUNT up to the clock's
now), kept as things happen: after the deadline worker has handled an event that changes a
recipient's deadline (a version told, an acknowledgement, a cancellation, a booking, a health
centre reached — an arrival message sent to anyone else changes none), the case's members are
recomputed from its stored state by the one progress derivation's inputs (`ack_due`,
`booking_due`). The recomputation is idempotent and writes only if the state it read is still
the case's (bot/store/lua/deadline_index.lua: one round trip reads the state and the members
there; a second writes, compared against the state read in the same script, only if something
is to change), so events handled twice or out of order converge. After a change of the case
every organisation of the directory is looked at (a recipient may have been dropped); after any
other event the recipients are (the recipients change only with a change, whose own event puts
the dropped ones right). A store that has cases but no index yet (the first start after an
upgrade) is indexed once, in batches.

`ankomst_stream_lag` is what a group has not finished: its pending entries (read, not
acknowledged) plus the entries after its last-delivered id, counted in the stream itself (exact
up to `LAG_EXACT_UP_TO`; beyond that Redis's own estimate, never less). Redis's XINFO `lag` is
not used below that: after a failover it stayed at ~1,200 for groups that were caught up.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from bot.domain.calendar import WorkingDayCalendar
from bot.domain.case import parse_recipients
from bot.domain.clock import Clock
from bot.domain.deadline_rules import DeadlineRules, ack_due, booking_due
from bot.domain.directory import Directory
from bot.domain.events import EventType
from bot.runtime.logs import log_context
from bot.store import Pipeline, Redis, keys
from bot.store.batching import Coalescer, LuaScript
from bot.store.streams import StreamConsumer
from bot.store.trim import count_after

DEADLINE_INDEX = LuaScript.of("case_lib", "deadline_index")  # see Metrics.keep_deadlines

Handler = Callable[[str, dict[str, str]], Awaitable[bool]]

# Hours a recipient takes to acknowledge range from minutes to days.
ACK_BUCKETS = (300, 900, 1800, 3600, 7200, 4 * 3600, 8 * 3600, 86400, 2 * 86400, 5 * 86400)
GROUPS = (
    (keys.EVENTS, keys.FANOUT_GROUP),
    (keys.EVENTS, keys.DEADLINES_GROUP),
    (keys.OUTBOX_EMAIL, keys.SENDER_GROUP),
    (keys.OUTBOX_TELEGRAM, keys.SENDER_GROUP),
    (keys.INTAKE, keys.INTAKE_GROUP),
)
# Past this many undelivered entries a group's lag is Redis's estimate (never less): counting
# them (in Redis, ~1 µs each) would make a scrape cost as much as the backlog.
LAG_EXACT_UP_TO = 10_000
# Events after which a case's open deadlines may have changed (delivery.sent: a health centre
# told starts its booking deadline).
DEADLINE_EVENTS = frozenset(
    {
        EventType.CASE_REGISTERED,
        EventType.CASE_CHANGED,
        EventType.CASE_CANCELLED,
        EventType.CASE_ACKNOWLEDGED,
        EventType.CASE_HEALTH_BOOKED,
        EventType.DELIVERY_SENT,
    }
)
CASE_FIELDS = ["version", "status", "booking", "updated_at", "recipients"]


@dataclass(frozen=True)
class _Inputs:
    """What one case's open deadlines derive from, as stored."""

    version: str
    status: str
    booked: bool
    told: str  # when the current version was registered (the case's updated_at)
    recipients: tuple[str, ...]
    acked: frozenset[str]  # recipients that acknowledged the current version
    informed: Mapping[str, str]  # health centre -> when it was first told
    reported: frozenset[str]  # health centres that reported a booking

    @classmethod
    def of_hashes(
        cls, case: list[str | None], acks: Mapping[str, str], markers: Mapping[str, str]
    ) -> _Inputs:
        """From the case's CASE_FIELDS, its acknowledgements and its markers."""
        version, status, booked, told, recipients = case
        orgs = parse_recipients(recipients)
        return cls(
            version=version or "",
            status=status or "",
            booked=bool(booked),
            told=told or "",
            recipients=orgs,
            acked=frozenset(o for o in orgs if version and f"{int(version)}:{o}" in acks),
            informed={
                o: markers[keys.booking_informed_marker(o)]
                for o in orgs
                if markers.get(keys.booking_informed_marker(o))
            },
            reported=frozenset(o for o in orgs if keys.booking_reported_marker(o) in markers),
        )

    @classmethod
    def of_script(cls, read: list[str]) -> _Inputs:
        """From what deadline_index.lua read: the case's fields, then per recipient its id,
        acknowledged ('1' or ''), informed (ISO or ''), reported ('1' or '')."""
        version, status, booked, told, _ = read[:5]
        rows = [read[i : i + 4] for i in range(5, len(read), 4)]
        return cls(
            version=version,
            status=status,
            booked=bool(booked),
            told=told,
            recipients=tuple(r[0] for r in rows),
            acked=frozenset(r[0] for r in rows if r[1]),
            informed={r[0]: r[2] for r in rows if r[2]},
            reported=frozenset(r[0] for r in rows if r[3]),
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
            "Entries of a stream a consumer group has not finished: read and not yet "
            "acknowledged, or not yet read.",
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
        # Called after many events at once under load: with the others of its loop turn, in
        # one round trip (bot/store/batching.py).
        self._index_batch = Coalescer.of(redis)
        self._org_ids = tuple(directory.organisations)

    # -- what this process does ----------------------------------------------------------

    def observe_deliveries(self, handle: Handler) -> Handler:
        """Wrap the deliverer's handler: bind the case to the log lines written meanwhile.
        (Outcomes are counted by `count_delivery`, which the deliverer calls.)"""

        async def observed(entry_id: str, entry: dict[str, str]) -> bool:
            ident = entry.get("delivery", "")
            with log_context(case=ident.split(":", 1)[0], delivery=ident):
                return await handle(entry_id, entry)

        return observed

    def count_delivery(self, channel: str, outcome: str, retries: int) -> None:
        """Count one delivery's outcome (sent, failed, superseded, retrying) and its send
        attempts beyond the delivery's first."""
        kind = "email" if channel == "email" else "telegram"
        self.deliveries.labels(kind, outcome).inc()
        if retries > 0:
            self.retries.labels(kind).inc(retries)

    def observe_events(
        self, handle: Handler, *, time_acks: bool, keep_deadlines: bool = False
    ) -> Handler:
        """Wrap an event-stream handler: bind the case to logs; with `time_acks`, time each
        acknowledgement; with `keep_deadlines`, recompute the case's open deadlines after an
        event that may move them (give each to one group only: the deadlines are kept after
        the deadline worker, which writes the booking markers, has handled the event)."""

        async def observed(entry_id: str, event: dict[str, str]) -> bool:
            case_id = event.get("case", "")
            with log_context(case=case_id, event=event.get("type")):
                done = await handle(entry_id, event)
            if time_acks and done and self.times(event):
                await self._observe_ack(case_id, event)
            if keep_deadlines and done and case_id and self._moves_deadlines(event):
                await self.keep_deadlines(
                    case_id, everyone=event.get("type") == EventType.CASE_CHANGED
                )
            return done

        return observed

    @staticmethod
    def times(event: Mapping[str, str]) -> bool:
        """Whether a wrapper with `time_acks` times the event: an acknowledgement."""
        return event.get("type") == EventType.CASE_ACKNOWLEDGED

    def _moves_deadlines(self, event: Mapping[str, str]) -> bool:
        """Whether the event may change the case's open deadlines: a message sent moves one
        only when it reaches a health centre (its booking clock starts)."""
        kind = event.get("type")
        if kind == EventType.DELIVERY_SENT:
            org = self.directory.organisations.get(event.get("org", ""))
            return org is not None and org.kind == "health_centre"
        return kind in DEADLINE_EVENTS

    async def _observe_ack(self, case_id: str, event: dict[str, str]) -> None:
        version = await self.redis.hget(keys.case_versions(case_id), event.get("version", ""))
        if version is None or not event.get("at"):
            return
        told = datetime.fromisoformat(json.loads(version)["at"])
        org = self.directory.organisations.get(event.get("org", ""))
        seconds = (datetime.fromisoformat(event["at"]) - told).total_seconds()
        self.ack_seconds.labels(org.kind if org else "unknown").observe(max(seconds, 0.0))

    # -- open deadlines, kept as things happen ----------------------------------------------

    def _deadlines_of(
        self, case_id: str, state: _Inputs
    ) -> tuple[dict[str, float], dict[str, float]]:
        """(acknowledgement, booking) deadlines still open on one case: member -> when late
        (epoch seconds), judged from its stored state as bot.domain.progress judges it."""
        ack: dict[str, float] = {}
        booking: dict[str, float] = {}
        if not state.version or not state.told or state.status == "cancelled":
            return ack, booking
        # A version's acknowledgement clock starts when it was registered (updated_at).
        ack_late = ack_due(self.calendar, self.rules, datetime.fromisoformat(state.told)).deadline
        for org_id in state.recipients:
            member = keys.deadline_member(case_id, org_id)
            if org_id not in state.acked:
                ack[member] = ack_late.timestamp()
            informed = state.informed.get(org_id)
            if informed and not state.booked and org_id not in state.reported:
                due = booking_due(self.calendar, self.rules, datetime.fromisoformat(informed))
                booking[member] = due.escalation.timestamp()
        return ack, booking

    def _write_deadlines(
        self, pipe: Pipeline, case_id: str, ack: dict[str, float], booking: dict[str, float]
    ) -> None:
        """Queue the writes that make the two sets hold exactly `ack` and `booking` for the
        case: every other organisation's member of the case is removed (recipients change)."""
        for key, keep in ((keys.ACK_DEADLINES, ack), (keys.BOOKING_DEADLINES, booking)):
            gone = [
                keys.deadline_member(case_id, org_id)
                for org_id in self.directory.organisations
                if keys.deadline_member(case_id, org_id) not in keep
            ]
            if gone:
                pipe.zrem(key, *gone)
            if keep:
                pipe.zadd(key, keep)

    async def keep_deadlines(self, case_id: str, *, everyone: bool = False) -> None:
        """Recompute one case's members of the open-deadline sets from its stored state: the
        recipients' members, and with `everyone` those of every organisation in the directory
        (after a change that may have dropped a recipient). One round trip when nothing is to
        change, two when something is (more only if the case changes in between)."""
        index_keys = [
            keys.case(case_id),
            keys.case_acks(case_id),
            keys.case_markers(case_id),
            keys.ACK_DEADLINES,
            keys.BOOKING_DEADLINES,
        ]
        prefixes = [
            keys.deadline_member(case_id, ""),
            keys.booking_informed_marker(""),
            keys.booking_reported_marker(""),
        ]
        others = self._org_ids if everyone else ()
        while True:
            reply = await self._index_batch.script(
                DEADLINE_INDEX, index_keys, [*prefixes, "", len(others), *others]
            )
            state = _Inputs.of_script(json.loads(reply[0]))
            want = self._deadlines_of(case_id, state)
            writes: list[str | int] = []
            changes = 0
            for n, wanted in enumerate(want):  # ACK_DEADLINES, then BOOKING_DEADLINES
                gone: list[str] = []
                kept: list[str] = []
                for i in range(1, len(reply), 3):
                    member = keys.deadline_member(case_id, reply[i])
                    score = wanted.get(member)
                    there = reply[i + 1 + n]
                    if score is None and there != "":
                        gone.append(member)
                    elif score is not None and (there == "" or float(there) != score):
                        kept += [member, repr(score)]
                writes += [len(gone), *gone, len(kept) // 2, *kept]
                changes += len(gone) + len(kept)
            if not changes:
                return  # the sets already say what the state says
            if await self._index_batch.script(
                DEADLINE_INDEX, index_keys, [*prefixes, reply[0], *writes]
            ):
                return

    async def index_open_cases(self, batch: int = 500) -> int:
        """Build the open-deadline sets from every open case (once per store: the first scrape
        after an upgrade); returns how many cases were read. Batched: a few round trips per
        `batch` cases."""
        case_ids = sorted(await self.redis.smembers(keys.OPEN_CASES))
        for i in range(0, len(case_ids), batch):
            chunk = case_ids[i : i + batch]
            async with self.redis.pipeline(transaction=False) as pipe:
                for case_id in chunk:
                    pipe.hmget(keys.case(case_id), CASE_FIELDS)
                    pipe.hgetall(keys.case_acks(case_id))
                    pipe.hgetall(keys.case_markers(case_id))
                replies = await pipe.execute()
            async with self.redis.pipeline(transaction=False) as pipe:
                for n, case_id in enumerate(chunk):
                    case, acks, markers = replies[3 * n : 3 * n + 3]
                    state = _Inputs.of_hashes(case, acks, markers)
                    ack, booking = self._deadlines_of(case_id, state)
                    self._write_deadlines(pipe, case_id, ack, booking)
                await pipe.execute()
        await self.redis.set(keys.DEADLINES_INDEXED, self.clock.now().isoformat())
        return len(case_ids)

    # -- read at each scrape ---------------------------------------------------------------

    async def _stream_figures(self, stream: str) -> dict[str, tuple[int, int]]:
        """Group name -> (lag, pending) of one stream: pending entries from the group's PEL,
        undelivered ones counted after its last-delivered id."""
        out: dict[str, tuple[int, int]] = {}
        if not await self.redis.exists(stream):
            return out
        for info in await self.redis.xinfo_groups(stream):
            pending = int(info.get("pending") or 0)
            last = str(info.get("last-delivered-id") or "0-0")
            undelivered = await count_after(self.redis, stream, last, LAG_EXACT_UP_TO)
            if undelivered >= LAG_EXACT_UP_TO:
                undelivered = max(undelivered, int(info.get("lag") or 0))
            out[str(info["name"])] = (pending + undelivered, pending)
        return out

    async def refresh(self) -> None:
        """Read the shared figures from Redis into the gauges: a fixed number of round trips,
        however many cases are open."""
        figures: dict[str, dict[str, tuple[int, int]]] = {}
        for stream, group in GROUPS:
            if stream not in figures:
                figures[stream] = await self._stream_figures(stream)
            lag, pending = figures[stream].get(group, (0, 0))
            self.stream_lag.labels(stream, group).set(lag)
            self.stream_pending.labels(stream, group).set(pending)
        if not await self.redis.exists(keys.DEADLINES_INDEXED):
            await self.index_open_cases()
        now = self.clock.now().timestamp()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.DEAD_LETTER)
            pipe.zcount(keys.TIMERS, "-inf", now)
            pipe.scard(keys.OPEN_CASES)
            pipe.zcount(keys.ACK_DEADLINES, "-inf", now)
            pipe.zcount(keys.BOOKING_DEADLINES, "-inf", now)
            dead, due, open_cases, ack, booking = await pipe.execute()
        self.dead_letters.set(dead)
        self.timers_due.set(due)
        self.open_cases.set(open_cases)
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
