"""The typed names of stored records: equal to the stored strings, topics parsed and formatted."""

from __future__ import annotations

import pytest

from bot.domain.events import (
    ChannelKind,
    DeliveryStatus,
    DeliveryTopic,
    EventType,
    Topic,
    UnknownTopic,
    chat_of,
    telegram_channel,
)


def test_members_equal_the_stored_strings() -> None:
    assert str(EventType.CASE_REGISTERED) == "case.registered"
    assert EventType("case.registered") is EventType.CASE_REGISTERED
    assert f"{EventType.NOTICE}" == "notice"
    assert DeliveryStatus("superseded") is DeliveryStatus.SUPERSEDED
    assert DeliveryStatus.SENT.done and not DeliveryStatus.RETRYING.done


@pytest.mark.parametrize(
    ("text", "kind", "suffix"),
    [
        ("notice", Topic.NOTICE, ""),
        ("health_booking/2", Topic.HEALTH_BOOKING, "2"),
        ("disagreement_raised/ab12", Topic.DISAGREEMENT_RAISED, "ab12"),
        ("ack_reminder/ostersund-skola", Topic.ACK_REMINDER, "ostersund-skola"),
    ],
)
def test_a_topic_reads_back_as_it_was_written(text: str, kind: Topic, suffix: str) -> None:
    topic = DeliveryTopic.parse(text)
    assert (topic.kind, topic.suffix) == (kind, suffix)
    assert str(topic) == text


def test_health_booking_sequence() -> None:
    assert str(Topic.HEALTH_BOOKING.at(3)) == "health_booking/3"
    assert DeliveryTopic.parse("health_booking/3").sequence == 3
    assert DeliveryTopic.parse("health_booking/").sequence == 1


def test_an_unknown_topic_is_refused_by_name() -> None:
    with pytest.raises(UnknownTopic, match="no_such_topic"):
        DeliveryTopic.parse("no_such_topic")


def test_channels() -> None:
    assert telegram_channel(-100) == "tg:-100" and chat_of("tg:-100") == -100
    assert chat_of("email") is None
    assert ChannelKind.of("email") is ChannelKind.EMAIL
    assert ChannelKind.of("tg:5") is ChannelKind.TELEGRAM
