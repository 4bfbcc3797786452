"""bench/instructions.py reads the instruction count of a callgrind dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.instructions import totals


def test_the_count_is_read_from_the_totals_line(tmp_path: Path) -> None:
    dump = tmp_path / "callgrind.out.1.1"
    dump.write_text(
        "# callgrind format\nevents: Ir\nfn=(1) main\n3 10\nsummary: 1234\ntotals: 5678\n"
    )
    assert totals(dump) == 1234  # the first of the two (callgrind writes one or the other)


def test_a_dump_without_one_is_refused(tmp_path: Path) -> None:
    dump = tmp_path / "callgrind.out.2.1"
    dump.write_text("events: Ir\n")
    with pytest.raises(ValueError, match="no totals line"):
        totals(dump)
