"""Arrivals put on the Redis stream `ankomst:intake` by another system.

Field format of one stream entry (all strings):

- `organisation`: the id of the reception unit the system acts for (as an API token would);
- `arrival`: the arrival as JSON, exactly the body of `POST /api/v1/arrivals`.

Each entry is validated exactly like the API. A good one is registered (idempotent on
`external_ref`, so a redelivered entry registers nothing twice); a bad one is moved, in one
MULTI/EXEC with its XACK, to `ankomst:intake:rejected` with the reason — never lost, never
half-processed.
"""

from __future__ import annotations

import json
import logging

from bot.domain.arrival import ArrivalIn, InvalidInput, parse
from bot.domain.calendar import local_today
from bot.domain.case import Conflict
from bot.domain.policy import Forbidden
from bot.store import Redis, keys
from bot.usecases.access import Actor
from bot.usecases.cases import CaseService

log = logging.getLogger(__name__)


class Intake:
    """Consumer-group handler for `ankomst:intake`."""

    def __init__(self, redis: Redis, cases: CaseService) -> None:
        self.redis = redis
        self.cases = cases

    async def reject(self, entry_id: str, fields: dict[str, str], reason: object) -> None:
        """Move an entry to the rejected stream with its reason, and acknowledge it, atomically."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                keys.INTAKE_REJECTED,
                {
                    **{k: v[:20_000] for k, v in fields.items()},
                    "entry": entry_id,
                    "reason": json.dumps(reason, ensure_ascii=False),
                    "rejected_at": self.cases.clock.now().isoformat(),
                },
            )
            pipe.xack(keys.INTAKE, keys.INTAKE_GROUP, entry_id)
            await pipe.execute()
        log.warning("intake entry %s rejected: %s", entry_id, reason)

    async def handle(self, entry_id: str, fields: dict[str, str]) -> bool:
        """Register a valid entry; reject an invalid one (returns False: already acknowledged)."""
        org_id = fields.get("organisation", "")
        if org_id not in self.cases.directory.organisations:
            await self.reject(
                entry_id, fields, [{"field": "organisation", "message": "okänd organisation"}]
            )
            return False
        try:
            data = json.loads(fields.get("arrival", ""))
        except json.JSONDecodeError:
            await self.reject(
                entry_id, fields, [{"field": "arrival", "message": "ska vara giltig JSON"}]
            )
            return False
        today = local_today(self.cases.clock, self.cases.zone)
        actor = Actor(org_id=org_id, via="intake", who=f"intake:{entry_id}")
        try:
            arrival = parse(ArrivalIn, data, today=today)
            case, created = await self.cases.register(arrival, actor)
        except InvalidInput as exc:
            await self.reject(entry_id, fields, exc.errors)
            return False
        except (Forbidden, Conflict) as exc:
            await self.reject(entry_id, fields, [{"field": "arrival", "message": str(exc)}])
            return False
        log.info(
            "intake entry %s: %s %s",
            entry_id,
            "registered" if created else "already registered",
            case.reference,
        )
        return True
