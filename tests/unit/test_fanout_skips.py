"""The fan-out's consumer group acknowledges, without a handler call, only the events none of
its handler's parts acts on (bot/runtime/services.py `fanout_group_skips`). Pure: no Redis."""

from __future__ import annotations

import json

import pytest

from bot.domain.delivery import delivery_event
from bot.domain.events import EventType
from bot.pipeline.fanout import ACTS_ON
from bot.runtime.services import fanout_group_skips

AT = "2026-12-04T10:00:00+01:00"


def sent(kind: EventType = EventType.DELIVERY_SENT, **extra: str) -> dict[str, str]:
    return delivery_event(kind, "c1", "1", "c1:1:skola:email", "skola", "email", AT, **extra)


def test_a_message_sent_is_skipped() -> None:
    # Most of the event stream: one for every message that reached someone.
    assert fanout_group_skips(sent())


@pytest.mark.parametrize("kind", sorted(ACTS_ON))
def test_what_the_fan_out_makes_messages_of_is_handled(kind: EventType) -> None:
    assert not fanout_group_skips({"type": str(kind), "case": "c1", "version": "1", "at": AT})


def test_an_acknowledgement_is_handled_to_be_timed() -> None:
    ack = {"type": "case.acknowledged", "case": "c1", "version": "1", "org": "skola", "at": AT}
    assert not fanout_group_skips(ack)


@pytest.mark.parametrize("where", ["top", "inside"])
def test_an_event_with_a_personal_field_is_handled_to_be_noted_for_erasure(where: str) -> None:
    event = sent(EventType.CASE_CLEARED)
    assert fanout_group_skips(event)
    if where == "top":
        event["reason"] = "Sjukdom i familjen"
    else:
        event["changes"] = json.dumps([{"field": "note", "details": "Allergi"}])
    assert not fanout_group_skips(event)
