"""An arrival message is rendered once per version and finished per recipient (issue 17): what
each recipient gets must be exactly what rendering it alone gives, whatever was rendered before
it, and nothing of one recipient may reach another."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import date
from typing import Literal

import pytest
from jinja2 import UndefinedError

from messages import render
from messages.models import (
    ArrivalNotice,
    CaseNotice,
    Change,
    ChatDetails,
    Contact,
    OrgKind,
    Rendered,
)
from messages.render import render_arrival, render_case_notice

from .markup import visible

KINDS: tuple[OrgKind, ...] = (
    "reception_unit",
    "health_centre",
    "school",
    "preschool",
    "social_services",
    "management",
)


def recipients(notice: ArrivalNotice) -> list[ArrivalNotice]:
    """The recipients of one version: each kind, each with its own name and links."""
    out = []
    for i, kind in enumerate(KINDS):
        health = kind == "health_centre"
        out.append(
            replace(
                notice,
                recipient=Contact(f"Org-{i} <&> {kind}", f"o{i}@example.se"),
                recipient_kind=kind,
                needs_ack=kind != "reception_unit",
                ack_url=f"https://ankomst.example.se/a/tok-{i}?o={i}&k=<{kind}>",
                booking_url=f"https://ankomst.example.se/dashboard/l/b-{i}" if health else None,
                booking_deadline=date(2026, 12, 4) if health else None,
            )
        )
    return out


def forms(r: Rendered) -> tuple[str, str, str, str]:
    return (r.subject, r.text, r.html, r.telegram)


VERSIONS = {
    "new": {},
    "changed": {
        "kind": "changed",
        "version": 2,
        "changes": (
            Change("arrival_date", date(2026, 11, 20), date(2026, 11, 27)),
            Change("details", "förr <b>", "nu & sedan"),
        ),
    },
    "cancelled": {"kind": "cancelled", "version": 3, "cancel_reason": "Flyttar <annat>"},
}


@pytest.mark.parametrize("version", sorted(VERSIONS))
@pytest.mark.parametrize("chat_details", ["minimal", "full"])
def test_each_recipient_gets_what_rendering_it_alone_gives(
    notice: ArrivalNotice, version: str, chat_details: ChatDetails
) -> None:
    base = replace(notice, **VERSIONS[version])  # type: ignore[arg-type]
    alone = []
    for each in recipients(base):
        render._cached_shared_arrival.cache_clear()
        render._own_parts.cache_clear()
        alone.append(forms(render_arrival(each, chat_details)))
    render._cached_shared_arrival.cache_clear()
    render._own_parts.cache_clear()
    # Interleaved, forms asked in varying order, the shared text kept between recipients.
    for (i, each), order in zip(
        itertools.chain(enumerate(recipients(base)), reversed(list(enumerate(recipients(base))))),
        itertools.cycle([(0, 1, 2, 3), (3, 2, 1, 0), (2, 3, 0, 1)]),
        strict=False,
    ):
        r = render_arrival(each, chat_details)
        got = {k: forms(r)[k] for k in order}
        assert tuple(got[k] for k in range(4)) == alone[i], KINDS[i]
    assert render._cached_shared_arrival.cache_info().hits >= 2 * len(KINDS) - 1


def test_no_recipient_gets_anything_of_another(notice: ArrivalNotice) -> None:
    everyone = recipients(notice)
    rendered = [render_arrival(each) for each in everyone]
    for mine, r in zip(everyone, rendered, strict=True):
        parts = (r.text, visible(r.html), r.telegram)
        assert mine.recipient.name in r.text and mine.recipient.name in visible(r.html)
        if mine.needs_ack:  # the reception unit's copy asks for nothing
            assert mine.ack_url is not None and mine.ack_url in r.text
        for other in everyone:
            if other is mine:
                continue
            assert all(other.recipient.name not in p for p in parts)
            assert other.ack_url is not None and all(other.ack_url not in p for p in parts)
            if other.booking_url is not None:
                assert all(other.booking_url not in p for p in parts)
        if mine.recipient_kind == "health_centre":
            assert "senast fredag 4 december 2026" in r.text
        else:
            assert "senast" not in r.text and "Rapportera bokad tid" not in r.text
        if mine.recipient_kind == "reception_unit":
            assert "Detta är er kopia" in r.text and "Mottaget" not in r.telegram
        else:
            assert "Tryck på Mottaget nedan." in r.telegram


def test_every_slot_is_filled_and_typed_text_that_looks_like_one_stays_as_typed(
    notice: ArrivalNotice,
) -> None:
    typed = "Se \ue000own\ue001 och \ue000" + "0" * 16 + ":recipient_name\ue001"
    for each in recipients(replace(notice, facts=replace(notice.facts, details=typed))):
        r = render_arrival(each, "full")
        assert "\ue000" not in r.subject and "\ue001" not in r.subject
        for part in (r.text, r.html, r.telegram):
            assert part.count("\ue000") == part.count("\ue001") == 2
            assert typed in part


def test_a_lazy_message_makes_each_channels_forms_once_and_only_when_asked() -> None:
    made: list[str] = []

    def email() -> tuple[str, str, str]:
        made.append("email")
        return ("S", "T", "H")

    def telegram() -> str:
        made.append("telegram")
        return "M"

    r = Rendered.lazy(email, telegram)
    assert made == []
    assert r.telegram == "M" and r.telegram == "M"
    assert made == ["telegram"]
    assert (r.subject, r.text, r.html) == ("S", "T", "H")
    assert made == ["telegram", "email"]
    assert r == Rendered("S", "T", "H", "M") and hash(r) == hash(Rendered("S", "T", "H", "M"))


def test_the_channels_forms_are_rendered_at_once_and_their_problems_raised_there(
    notice: ArrivalNotice,
) -> None:
    channels: tuple[Literal["email", "telegram"], ...] = ("email", "telegram")
    for channel in channels:
        r = render_arrival(notice, forms=channel)
        assert forms(r) == forms(render_arrival(notice))
        with pytest.raises(UndefinedError):
            render_case_notice(
                CaseNotice(
                    "delivery_failed",
                    "OSD-2026-0001",
                    "Östersund",
                    date(2026, 11, 27),
                    Contact("X"),
                    {"organisation": "Y"},
                ),
                forms=channel,
            )
