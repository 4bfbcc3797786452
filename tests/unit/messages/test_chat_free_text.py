"""No free text a person typed reaches a chat message with ANKOMST_CHAT_DETAILS=minimal (the
default); the e-mail always carries it, and `full` chat shows it as before. The end-to-end
version, through the pipeline to a Bot API server, is tests/e2e/test_chat_free_text.py."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import date

import pytest
from jinja2 import meta

import messages.models as m
from messages.render import (
    _markup,
    chat_leaves_out,
    notice_topics,
    render_arrival,
    render_case_notice,
)
from messages.values import FREE_TEXT_FIELDS, FREE_TEXT_POINTER

from .markup import visible

SECRET = "Pappa-Ahmed-070-7654321-Krokom"
POINTER = FREE_TEXT_POINTER

# Values Ankomst itself makes or takes from the directory (organisation names, dates, yes/no,
# counts, the same-day alert's and a failed delivery's own explanation) — never typed about a
# family. A new field of a message model or a new fact of a notice must be put here or in
# messages.values.FREE_TEXT_FIELDS before these tests pass.
NOT_TYPED = frozenset(
    {
        # message models
        "reference",
        "municipality",
        "name",
        "email",
        "phone",
        "ack_url",
        "booking_url",  # signed links into the board, made by Ankomst
        "case_url",
        "draft_url",  # a notice draft's link into the board and its /ny hint (made by Ankomst)
        "chat_hint",
        "received_at",
        "readable",
        "topic",
        "field",
        "languages",
        # facts of case notices
        "organisation",
        "organisations",
        "sent_at",
        "waited",
        "basis",
        "deadline",
        "informed_at",
        "booked_at",
        "previous_at",
        "interpreter_booked",
        "may_start",
        # words made by Ankomst that agree with the children (messages.values.child_words),
        # the working day a booking reminder comes on, the phone of the organisation it is about
        "the_children",
        "The_children",
        "children_phrase",
        "Children_phrase",
        "comes",
        "them",
        "invite",
        "working_day",
        "organisation_phone",
        "channel",
        "error",
        "reason",  # the same-day alert's: which organisations were not reached, and why
        "raised_by",
        "escalated_by",
        "resolved_by",
        "automatic",
        "days",
        "managements",
        "arrival_on",
        "previous_arrival_on",
    }
)
# What every notice template sees besides its facts (messages/render.py).
NOTICE_CONTEXT = frozenset(
    {"reference", "municipality", "arrival_date", "arrival_day", "recipient", "form"}
)


def hostile(notice: m.ArrivalNotice) -> m.ArrivalNotice:
    """Every free-text field of an arrival message holds the secret (HTML around it too)."""
    return replace(
        notice,
        facts=replace(
            notice.facts,
            details=f"<b>{SECRET} details</b>",
            children=(m.Child(9, "Ah.M."), m.Child(4, "Zx.Q.")),
        ),
        changes=(
            m.Change("details", f"{SECRET} old", f"{SECRET} new"),
            m.Change("arrival_date", date(2026, 11, 27), date(2026, 12, 1)),
        ),
        cancel_reason=f"{SECRET} reason & <i>more</i>",
    )


ARRIVAL_SECRETS = (SECRET, "Ah.M.", "Zx.Q.")


@pytest.mark.parametrize("kind", ["new", "changed", "cancelled"])
def test_a_minimal_chat_arrival_carries_no_free_text(
    notice: m.ArrivalNotice, kind: m.NoticeKind
) -> None:
    n = replace(hostile(notice), kind=kind)
    minimal = render_arrival(n, "minimal")
    for secret in ARRIVAL_SECRETS:
        assert secret not in minimal.telegram
    assert POINTER in minimal.telegram
    # The e-mail carries all of it, in both modes.
    for part in (minimal.text, visible(minimal.html)):
        assert SECRET in part
        assert "Ah.M." in part
    # `full` chat keeps today's behaviour.
    full = render_arrival(n, "full").telegram
    assert SECRET in full and "Ah.M." in full
    assert POINTER not in full


def test_a_minimal_chat_change_still_says_what_changed(notice: m.ArrivalNotice) -> None:
    telegram = render_arrival(replace(hostile(notice), kind="changed"), "minimal").telegram
    assert f"Övriga uppgifter: ändrade. {POINTER}" in telegram
    assert "tisdag 1 december 2026" in telegram  # a date is no free text


def test_no_pointer_where_there_is_no_free_text(notice: m.ArrivalNotice) -> None:
    plain = replace(notice, facts=replace(notice.facts, details=""), kind="cancelled")
    assert POINTER not in render_arrival(plain, "minimal").telegram


TEXT_NOTICES = {
    "disagreement_raised": {"raised_by": "Lugnviksskolan", "text": SECRET},
    "disagreement_escalated": {
        "raised_by": "Lugnviksskolan",
        "text": SECRET,
        "automatic": False,
        "days": 5,
        "escalated_by": "Lugnviksskolan",
        "managements": ["Kommunledningen"],
    },
    "disagreement_resolved": {
        "raised_by": "Lugnviksskolan",
        "resolved_by": "Kommunledningen",
        "decision": SECRET,
    },
}


@pytest.mark.parametrize("topic", sorted(TEXT_NOTICES))
def test_a_minimal_chat_notice_carries_no_disagreement_text_or_decision(topic: str) -> None:
    n = m.CaseNotice(
        topic,
        "OSD-2026-0001",
        "Östersund",
        date(2026, 11, 27),
        m.Contact("Mottagningsenheten"),
        dict(TEXT_NOTICES[topic]),
    )
    minimal = render_case_notice(n, "minimal")
    assert SECRET not in minimal.telegram
    assert POINTER in minimal.telegram
    assert "Lugnviksskolan" in minimal.telegram  # who raised it is no free text
    assert SECRET in minimal.text and SECRET in visible(minimal.html)
    assert SECRET in render_case_notice(n, "full").telegram


def test_minimal_leaves_out_every_free_text_field_and_full_none() -> None:
    assert chat_leaves_out("minimal") == FREE_TEXT_FIELDS
    assert chat_leaves_out("full") == frozenset()


def _str_fields(cls: type) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(cls)
        if "str" in str(f.type) and f.name not in ("kind", "recipient_kind")
    }


def test_every_text_field_of_the_message_models_is_classified() -> None:
    # Literal-typed kinds are chosen by Ankomst; every other text is one or the other.
    text_fields = set().union(
        *(_str_fields(cls) for cls in (m.ArrivalFacts, m.Child, m.ArrivalNotice, m.Change))
    )
    text_fields |= _str_fields(m.Contact)
    unclassified = text_fields - FREE_TEXT_FIELDS - NOT_TYPED
    assert not unclassified, f"free text or made by Ankomst? {sorted(unclassified)}"


@pytest.mark.parametrize("topic", notice_topics())
def test_every_fact_a_notice_shows_is_classified(topic: str) -> None:
    assert _markup.loader is not None
    source = _markup.loader.get_source(_markup, f"notices/{topic}.jinja")[0]
    used = meta.find_undeclared_variables(_markup.parse(source)) - NOTICE_CONTEXT
    unclassified = used - FREE_TEXT_FIELDS - NOT_TYPED
    assert not unclassified, f"{topic}: free text or made by Ankomst? {sorted(unclassified)}"
