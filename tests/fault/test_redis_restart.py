"""The Redis server stopped and started again (a real valkey-server, AOF always, same files)."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bot.runtime.embedded import EmbeddedValkey
from bot.store import keys
from tests.support.world import arrival, eventually, running_world


async def test_what_got_a_201_survives_a_restart_and_nothing_unwritten_gets_a_201(
    tmp_path: Path,
) -> None:
    with tempfile.TemporaryDirectory(prefix="akv-") as short:  # unix socket paths are short
        valkey = EmbeddedValkey(Path(short))
        await asyncio.to_thread(valkey.start)
        try:
            # Readiness rides out an outage shorter than its grace (test_store_errors.py); a
            # grace of 1 s here lets this test see it drop while the store stays away.
            async with running_world(
                valkey.url, tmp_path, claim_seconds=2, ready_grace_seconds=1
            ) as world:
                first = await world.register(arrival())
                await world.settled(first["id"])
                # A second one still being sent when the store goes away.
                world.smtp.slow(0.3, "DATA")
                second = await world.register(arrival(external_ref="MIG-2026-200000"))

                stopped = time.monotonic()
                await asyncio.to_thread(valkey.stop)

                async def not_ready() -> bool:
                    status, body = await world.call("GET", "/readyz")
                    return status == 503 and body["ready"] is False

                await eventually(not_ready, 10, "/readyz to say not ready")
                token = world.tokens["ostersund-mottagning/member"]
                for n in range(5):
                    async with world.http.post(
                        world.base + "/api/v1/arrivals",
                        json=arrival(external_ref=f"MIG-2026-30000{n}"),
                        headers={"Authorization": f"Bearer {token}"},
                    ) as response:
                        assert response.status == 503, await response.text()
                        assert response.content_type == "application/problem+json"
                        problem = json.loads(await response.text())
                        assert problem["status"] == 503 and "Traceback" not in str(problem)

                await asyncio.to_thread(valkey.start)
                restarted = time.monotonic()

                async def ready() -> bool:
                    try:
                        status, _ = await world.call("GET", "/readyz")
                    except aiohttp.ClientError:
                        return False
                    return status == 200

                await eventually(ready, 30, "/readyz to recover by itself")
                ready_after = time.monotonic() - restarted
                world.smtp.slow(0.0, "DATA")
                third = await world.register(arrival(external_ref="MIG-2026-400000"))
                for case in (first, second, third):
                    view = await world.settled(case["id"], timeout=30)
                    parties = [view["reception_unit"], *view["recipients"]]
                    assert all(d["status"] == "sent" for p in parties for d in p["deliveries"])
                recovered = time.monotonic() - stopped
                redis = world.services.redis
                # Nothing refused with 503 was written, not even in part.
                for n in range(5):
                    assert not await redis.exists(keys.external_ref(f"MIG-2026-30000{n}"))
                assert await redis.scard(keys.ALL_CASES) == 3
                counts = Counter(str(m["Message-ID"]) for m in world.smtp.messages)
                assert max(counts.values()) == 1, counts
                print(
                    f"ready {ready_after:.1f} s after the restart; all sent {recovered:.1f} s "
                    "after the stop"
                )
        finally:
            await asyncio.to_thread(valkey.stop)
