"""What happens when an entry is given up on (moved to the dead-letter stream).

An outbox entry that keeps failing is a delivery that will not be made: it is recorded as
failed and a `delivery.failed` event is written, so the reception unit is told on its other
channels, as for any permanent failure. An event that keeps failing is logged as an error with
its case; both stay on `ankomst:deadletter` with their error for an operator to look at.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from bot.domain.clock import Clock
from bot.pipeline.delivery import delivery_event, reports_failure
from bot.store import keys

log = logging.getLogger(__name__)

OUTBOXES = (keys.OUTBOX_EMAIL, keys.OUTBOX_TELEGRAM)
DONE = ("sent", "failed", "superseded")


class DeadLetterAlarm:
    """`StreamConsumer.on_dead_letter`: makes a given-up entry seen, never silent."""

    def __init__(self, redis: Redis, clock: Clock) -> None:
        self.redis = redis
        self.clock = clock

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
            log.exception("ALERT: could not report a dead-lettered %s entry %s", stream, fields)

    async def _delivery_given_up(self, ident: str, error: str) -> None:
        d = await self.redis.hgetall(keys.delivery(ident))
        if not d or d.get("status") in DONE:
            return
        now = self.clock.now().isoformat()
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.delivery(ident),
                mapping={"status": "failed", "failed_at": now, "error": error[:300]},
            )
            if reports_failure(d):
                pipe.xadd(keys.EVENTS, delivery_event("delivery.failed", d, now, error=error[:300]))
            pipe.delete(keys.delivery_claim(ident))
            await pipe.execute()
        log.error("ALERT: delivery %s given up after repeated errors: %s", ident, error)
