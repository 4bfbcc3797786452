"""What happens when an entry is given up on (moved to the dead-letter stream).

An outbox entry that keeps failing is a delivery that will not be made: it is recorded as
failed and a `delivery.failed` event is written, so the reception unit is told on its other
channels, as for any permanent failure. An event that keeps failing is logged as an error with
its case; both stay on `ankomst:deadletter` with their error for an operator to look at.
"""

from __future__ import annotations

import logging

from bot.domain.clock import Clock
from bot.domain.delivery import Delivery, delivery_event
from bot.domain.events import DONE, DeliveryStatus, EventType, UnknownTopic
from bot.store import Redis, keys
from bot.store.deliveries import DeliveryStore

log = logging.getLogger(__name__)

OUTBOXES = (keys.OUTBOX_EMAIL, keys.OUTBOX_TELEGRAM)


class DeadLetterAlarm:
    """`StreamConsumer.on_dead_letter`: makes a given-up entry seen, never silent."""

    def __init__(self, redis: Redis, clock: Clock) -> None:
        self.redis = redis
        self.clock = clock
        self.deliveries = DeliveryStore(redis)

    async def __call__(self, stream: str, fields: dict[str, str], error: str) -> None:
        """Alert about one dead-lettered entry; never raises (the entry is already moved)."""
        try:
            if stream in OUTBOXES:
                await self._delivery_given_up(fields.get("delivery", ""), error)
            else:
                log.error(
                    "ALERT: %s entry for case %s (%s) given up: %s",
                    stream,
                    fields.get("case", "-"),
                    fields.get("type", "-"),
                    error,
                )
        except Exception:
            # The entry's fields are not logged: an intake entry carries the arrival's details.
            log.exception(
                "ALERT: could not report a dead-lettered %s entry for case %s",
                stream,
                fields.get("case", "-"),
            )

    async def _delivery_given_up(self, ident: str, error: str) -> None:
        raw = await self.deliveries.raw(ident)
        if not raw or raw.get("status") in DONE:
            return
        now = self.clock.now().isoformat()
        try:
            reports = Delivery.from_hash(ident, raw).reports_failure
        except UnknownTopic:
            # A record no message exists for (the likely reason it was given up): it is failed
            # all the same, and the reception unit is told.
            reports = True
        event = None
        if reports:
            event = delivery_event(
                EventType.DELIVERY_FAILED,
                raw["case"],
                raw["version"],
                ident,
                raw["org"],
                raw["channel"],
                now,
                error=error[:300],
            )
        await self.deliveries.finish(
            ident,
            {"status": DeliveryStatus.FAILED, "failed_at": now, "error": error[:300]},
            event,
        )
        log.error("ALERT: delivery %s given up after repeated errors: %s", ident, error)
