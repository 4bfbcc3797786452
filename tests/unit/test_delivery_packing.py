"""A delivery record packed for its case's index reads back exactly as it was written, whatever
its values (bot/domain/delivery.py `pack_items`, `unpack`; the times relative to the time
queued, which the scripts work out, are tested on Redis: tests/e2e/test_delivery_record_e2e.py)."""

from __future__ import annotations

import pytest

from bot.domain.delivery import UnreadableDelivery, mail_ids, pack_items, unpack
from bot.domain.events import DeliveryTopic

CASE = "97243abcacdd6d19"
COPY = f"{CASE}:1:ragunda-mottagning:email:notice"
LATER = f"{CASE}:2:ragunda-mottagning:email:notice"
TG = f"{CASE}:1:bracke-skola:tg:-200011:health_booking/2"
DOMAIN = "ostersund.example.se"


def own_id(ident: str) -> str:
    case, version, org, _, topic = ident.split(":")
    return mail_ids(ident, case, org, int(version), DeliveryTopic.parse(topic), DOMAIN)[0]


@pytest.mark.parametrize(
    ("ident", "fields"),
    [
        (
            COPY,
            {
                "params": '{"copy": true}',
                "status": "sent",
                "queued_at": "2026-12-02T16:17:55.353142+00:00",
                "sending_at": "2026-12-02T16:17:57.495910+00:00",
                "sent_at": "2026-12-02T16:17:57+00:00",
                "attempts": "1",
                "message_id": own_id(COPY),
            },
        ),
        (LATER, {"status": "sent", "message_id": own_id(LATER)}),
        (LATER, {"status": "sent", "message_id": f"<{CASE}.x@{DOMAIN}>"}),  # not its own
        (TG, {"status": "sent", "message_id": "390", "migrated_to": "-100123"}),
        (
            TG,
            {
                "status": "retrying",
                "queued_at": "2026-12-02T16:17:55.5+00:00",  # not as isoformat writes it
                "retry_at": "2026-12-02T17:17:55.353142+01:00",
                "error": "421 | try again 100% =later",
                "attempts": "007",
                "relay_attempts": "0",
                "params": '{"booked_at": "2026-12-09T10:00", "note": "a|b%7C"}',
            },
        ),
        (TG, {"status": "some_new_status", "superseded_at": "not a time", "error": ""}),
        # The time queued kept as text (not as isoformat writes UTC): the others' base is then
        # no number (each time's own packing: the test below).
        (TG, {"status": "sending", "queued_at": "2026-12-02T16:17:55Z"}),
        (TG, {"status": "failed", "error": "=", "message_id": "@x"}),
        (TG, {"status": "failed", "error": "+1 retry", "migrated_to": "+7"}),
        (TG, {"status": "sent", "params": "*"}),  # not the copy's mark: kept as text
        (TG, {"status": "sent", "params": "*x", "error": "*"}),
        ("c1:d1", {"id": "c1:d1", "case": "c1", "status": "queued", "topic": "no|such"}),
    ],
)
def test_a_packed_record_reads_back_as_written(ident: str, fields: dict[str, str]) -> None:
    packed = "|".join(pack_items(ident, fields))
    assert unpack(ident, packed, DOMAIN) == fields
    assert unpack(ident, packed, "other.example") == fields or "@" in packed


@pytest.mark.parametrize(
    ("text", "packed"),
    [
        ("2026-12-02T16:17:55.353142+00:00", "t+1796228275353142"),
        ("2026-12-02T16:17:55+00:00", "t+1796228275000000"),
        ("2026-12-02T16:17:55Z", "t=2026-12-02T16:17:55Z"),
        ("2026-12-02T16:17:55-00:00", "t=2026-12-02T16:17:55-00:00"),
        ("2026-12-02T17:17:55+01:00", "t=2026-12-02T17:17:55+01:00"),
        ("2026-12-02T16:17:55.000000+00:00", "t=2026-12-02T16:17:55.000000+00:00"),
    ],
)
def test_only_a_time_isoformat_writes_in_utc_is_packed_as_a_number(text: str, packed: str) -> None:
    assert pack_items(TG, {"sent_at": text}) == [packed]
    assert unpack(TG, packed) == {"sent_at": text}


def test_a_sent_copy_is_short_and_its_message_id_not_stored() -> None:
    fields = {
        "params": '{"copy": true}',
        "status": "sent",
        "sent_at": "2026-12-02T16:17:57.631627+00:00",
        "attempts": "1",
        "message_id": own_id(COPY),
    }
    items = pack_items(COPY, fields)
    assert f"m@{DOMAIN}" in items  # the script keeps the domain once per case: "m@"
    assert "t+1796228277631627" in items  # epoch microseconds; made relative by the script
    assert "ss" in items and "a1" in items
    assert "p*" in items  # the copy's params, as the fan-out writes them, in one mark


def test_a_text_the_script_would_read_as_a_mark_is_kept_as_text() -> None:
    """The script takes a value beginning "+" for a time and "@" for a shared value."""
    items = pack_items(TG, {"error": "+1 retry", "message_id": "@x", "params": "=y"})
    assert items == ["e=+1 retry", "m=@x", "p==y"]


def test_a_message_id_told_from_the_id_needs_the_domain() -> None:
    with pytest.raises(UnreadableDelivery):
        unpack(COPY, "ss|m@", None)
    assert unpack(COPY, f"ss|m@{DOMAIN}", None)["message_id"] == own_id(COPY)


def test_a_record_packed_otherwise_is_unreadable_not_misread() -> None:
    with pytest.raises(UnreadableDelivery):
        unpack(COPY, "sz|a1")
    with pytest.raises(UnreadableDelivery):
        unpack(COPY, "Zx")
