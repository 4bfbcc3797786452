"""bench/pipeline.py `machine_budget`: what a run's CPU, process by process, says the machine
can carry. docs/benchmarks.md reports its ceiling against the naive sender, so its arithmetic
is checked here, where a mistake would fail, not only read in a table."""

from __future__ import annotations

from bench.pipeline import MACHINE_PARTS, machine_budget


def _cpu(service: float, others: float) -> dict[str, float]:
    """CPU seconds: `service` for the service, `others` spread evenly over the rest."""
    rest = [p for p in MACHINE_PARTS if p != "service"]
    return {"service": service, **{p: others / len(rest) for p in rest}}


def test_one_process_bound_by_its_own_core() -> None:
    # 1,000 deliveries: 1.5 ms of the service's and 1.0 ms of the others' CPU each.
    budget = machine_budget(_cpu(1.5, 1.0), 1000, processes=1, cores=2)
    assert budget["ms_per_delivery"]["service"] == 1.5
    assert budget["total_ms_per_delivery"] == 2.5
    assert budget["machine_bound_per_s"] == 800.0  # 2 cores / 2.5 ms
    assert budget["service_bound_per_s"] == 666.7  # 1 core / 1.5 ms
    assert budget["ceiling_per_s"] == 666.7
    assert budget["bound_by"] == "service"


def test_two_processes_bound_by_the_machine() -> None:
    budget = machine_budget(_cpu(1.5, 1.0), 1000, processes=2, cores=2)
    assert budget["service_bound_per_s"] == 1333.3
    assert budget["ceiling_per_s"] == 800.0
    assert budget["bound_by"] == "machine"


def test_every_part_is_counted() -> None:
    # Each part's CPU alone moves the total: none is left out of the machine's bound.
    base = machine_budget(_cpu(1.0, 1.0), 1000, processes=1, cores=2)["total_ms_per_delivery"]
    for part in MACHINE_PARTS:
        cpu = _cpu(1.0, 1.0)
        cpu[part] += 0.5
        budget = machine_budget(cpu, 1000, processes=1, cores=2)
        assert budget["total_ms_per_delivery"] == base + 0.5, part
