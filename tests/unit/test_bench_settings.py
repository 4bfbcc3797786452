"""bench/pipeline.py: a run's own service settings (`overrides`) reach the service as it loads
them (bench/service_proc.py). They once did not, and the 16-connection latency row of
docs/benchmarks.md ran with the default 4 (its fourth pass says so)."""

from __future__ import annotations

import json

from bench.pipeline import service_settings
from bench.service_proc import settings_of
from bot.runtime.settings import Settings
from tests.support.world import EXAMPLE_DIRECTORY


def _as_served(raw: dict[str, object]) -> Settings:
    return settings_of(json.dumps(raw))


def test_overrides_reach_the_service() -> None:
    raw = service_settings(
        EXAMPLE_DIRECTORY, 2525, "http://127.0.0.1:9", "test-", {"smtp_pool_size": 16}
    )
    assert _as_served(raw).smtp_pool_size == 16


def test_without_overrides_the_service_default_holds() -> None:
    raw = service_settings(EXAMPLE_DIRECTORY, 2525, "http://127.0.0.1:9", "test-")
    assert _as_served(raw).smtp_pool_size == Settings.model_fields["smtp_pool_size"].default
