"""A delivery record holds only what its id does not name (issue 17: Redis per open case):
the id gives back the case, version, organisation, channel and topic, a topic keeping any ":"
it holds; records written before, which hold every field, read the same."""

from __future__ import annotations

import json

import pytest

from bot.domain.delivery import (
    Delivery,
    delivery_id,
    delivery_row,
    id_fields,
    stored_fields,
)
from bot.domain.events import DeliveryStatus, Topic, telegram_channel

NOW = "2026-11-25T09:00:00+01:00"


def full(
    case: str, version: int, org: str, channel: str, topic: str, **extra: str
) -> dict[str, str]:
    """Every field of a new delivery, as the fan-out gives them."""
    return {
        "id": delivery_id(case, version, org, channel, topic),
        "case": case,
        "version": str(version),
        "org": org,
        "channel": channel,
        "topic": topic,
        "params": "{}",
        "status": "queued",
        "queued_at": NOW,
        "attempts": "0",
        **extra,
    }


@pytest.mark.parametrize(
    ("case", "org", "channel", "topic"),
    [
        ("9dc00c8a49aedbe0", "ostersund-skola", "email", "notice"),
        ("9dc00c8a49aedbe0", "hc-lugnvik", telegram_channel(-1001234567), "health_booking/2"),
        ("draft-0a1b2c3d4e5f", "reception", telegram_channel(7001), "notice_draft_alert/1"),
        ("c1", "x", "email", "disagreement_raised/ab:cd:ef"),  # a suffix holding ":"
        ("c1", "x", telegram_channel(5), "escalation_digest/a:b"),
    ],
)
def test_the_id_names_what_is_not_stored_and_the_row_gives_it_back(
    case: str, org: str, channel: str, topic: str
) -> None:
    fields = full(case, 3, org, channel, topic)
    ident = fields["id"]
    assert id_fields(ident) == {
        k: fields[k] for k in ("id", "case", "version", "org", "channel", "topic")
    }
    stored = stored_fields(ident, fields)
    assert stored == {"status": "queued", "queued_at": NOW}
    assert delivery_row(ident, stored) == fields
    d = Delivery.from_hash(ident, stored)
    assert (d.id, d.case, d.version, d.org, d.channel, str(d.topic)) == (
        ident,
        case,
        3,
        org,
        channel,
        topic,
    )
    assert (d.params, d.attempts, d.status) == ({}, 0, DeliveryStatus.QUEUED)


def test_params_and_attempts_are_stored_when_not_their_default() -> None:
    params = json.dumps({"copy": True})
    fields = full("c1", 1, "reception", "email", "notice", params=params, attempts="2")
    stored = stored_fields(fields["id"], fields)
    assert stored == {"params": params, "attempts": "2", "status": "queued", "queued_at": NOW}
    d = Delivery.from_hash(fields["id"], stored)
    assert d.is_copy and d.attempts == 2 and d.topic.kind is Topic.NOTICE


def test_a_record_written_before_reads_the_same() -> None:
    fields = full("c1", 2, "hc-lugnvik", telegram_channel(7002), "clearance/1", sent_at=NOW)
    ident = fields["id"]
    assert delivery_row(ident, fields) == fields
    assert Delivery.from_hash(ident, fields) == Delivery.from_hash(
        ident, stored_fields(ident, fields)
    )
    # Even under an id that does not have the shape: all it needs is in the record.
    old = {**fields, "id": "d1"}
    assert delivery_row("d1", old) == old
    assert Delivery.from_hash("d1", old).case == "c1"


@pytest.mark.parametrize(
    "ident",
    [
        "d1",
        "c1:x:org:email:notice",
        "c1:1:org:tg:abc:notice",
        "c1:1:org:sms:5:notice",
        "c1:1::email:notice",
        "c1:1:org:email:",
    ],
)
def test_an_id_not_of_the_shape_is_refused_and_its_record_kept_whole(ident: str) -> None:
    with pytest.raises(ValueError, match="not a delivery id"):
        id_fields(ident)
    fields = {"id": ident, "case": "c1", "status": "queued", "topic": "notice"}
    assert stored_fields(ident, fields) == fields


def test_fields_the_id_does_not_agree_with_are_all_stored() -> None:
    fields = full("c1", 1, "org", "email", "notice")
    other = {**fields, "org": "another"}
    stored = stored_fields(fields["id"], other)
    assert stored["org"] == "another" and stored["case"] == "c1" and stored["id"] == fields["id"]
    assert delivery_row(fields["id"], stored)["org"] == "another"
