"""A timer packed in its case's index reads back exactly as it was made, or is not packed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.store.timers import CLAIMED, PACKED_MAX, PENDING, Timer, UnreadableTimer, pack

DUE = datetime(2026, 11, 25, 9, 0, 0, 123457, tzinfo=UTC)
TOLD = datetime(2026, 11, 25, 8, 0, 0, 7, tzinfo=UTC).isoformat()
ACK = "ack_reminder:9dc00c8a49aedbe0:1:ostersund-skola"


@pytest.mark.parametrize(
    ("ident", "payload"),
    [
        (ACK, {"version": 1, "organisation": "ostersund-skola", "told_at": TOLD}),
        # Not as the kind's items say (a text version, another time zone, an item more or
        # less, a value holding "|", one the id does not say): read back the same all the same.
        (ACK, {"version": "1", "organisation": "ostersund-skola", "told_at": TOLD}),
        (
            ACK,
            {
                "version": 1,
                "organisation": "ostersund-skola",
                "told_at": DUE.astimezone(timezone(timedelta(hours=1))).isoformat(),
            },
        ),
        (ACK, {"version": 1, "organisation": "ostersund-skola", "told_at": "2026-11-25"}),
        (ACK, {"version": 1, "organisation": "ostersund-skola"}),
        (ACK, {"version": 1, "organisation": "x", "told_at": TOLD}),
        (ACK, {"version": 1, "organisation": "ostersund-skola", "told_at": TOLD, "n": 1}),
        ("disagreement_escalation:c1:d|7", {"disagreement": "d|7", "days": 3}),
        ("disagreement_escalation:c1:d7", {"disagreement": "", "days": 3}),
        ("same_day_close:c1", {"version": 1, "day": "{2026-11-25}"}),
        ("same_day_check:c1:1", {}),
        ("remind:c1", {"n": [1, 2], "text": "Något"}),
    ],
)
def test_a_packed_timer_reads_back_as_made(ident: str, payload: dict[str, Any]) -> None:
    kind, case = ident.split(":")[:2]
    packed = pack(ident, kind, case, DUE, payload, CLAIMED, 999)
    if packed is None:
        return  # too long: the timer gets a hash of its own
    assert len(packed.encode()) <= PACKED_MAX + 2
    timer = Timer.from_packed(ident, packed)
    assert (timer.id, timer.kind, timer.case, timer.due_at) == (ident, kind, case, DUE)
    assert (dict(timer.payload), timer.state, timer.attempts) == (payload, CLAIMED, 999)


def test_a_deadline_timer_packs_short() -> None:
    payload = {"version": 1, "organisation": "ostersund-skola", "told_at": TOLD}
    packed = pack(ACK, "ack_reminder", "9dc00c8a49aedbe0", DUE, payload)
    assert packed == "p0|1795597200.123457|||1795593600.000007"


def test_a_digest_timer_packs_to_its_state_and_instant() -> None:
    """Its organisation and instant are in its id ("escalation_digest:digests:{org}:{stamp}")."""
    ident = "escalation_digest:digests:ostersund-ledning:1795597200"
    payload = {"organisation": "ostersund-ledning", "stamp": 1795597200}
    packed = pack(ident, "escalation_digest", "digests", DUE, payload)
    assert packed == "p0|1795597200.123457||"
    timer = Timer.from_packed(ident, packed)
    assert (timer.kind, timer.case) == ("escalation_digest", "digests")
    assert dict(timer.payload) == payload


def test_a_timer_whose_id_does_not_say_its_case_is_not_packed() -> None:
    assert pack("t1", "remind", "c1", DUE, {}) is None
    assert pack("escalation_digest:org:1", "escalation_digest", "digests", DUE, {}) is None
    assert pack("remind:c1", "remind", "c1", DUE, {"text": "x" * 60}, PENDING) is None


def test_a_timer_packed_otherwise_is_unreadable_not_misread() -> None:
    with pytest.raises(UnreadableTimer):
        Timer.from_packed(ACK, "p0|1795597200.123457||x")  # an item fewer than the kind has
    with pytest.raises(UnreadableTimer):
        Timer.from_packed(ACK, "q0|1795597200.123457|{}")
