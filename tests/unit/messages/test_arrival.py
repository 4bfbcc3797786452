from __future__ import annotations

import re
from dataclasses import replace
from datetime import date

import pytest

from messages.models import ArrivalNotice, Change, Child, Contact, Rendered
from messages.render import clean_header, render_arrival
from messages.telegram import TELEGRAM_LIMIT, telegram_length

from .conftest import ACK_URL
from .markup import TELEGRAM_TAGS, links, telegram_tags, visible


def all_parts(r: Rendered) -> list[str]:
    return [r.subject, r.text, visible(r.html), r.telegram]


def test_new_arrival_email_to_the_health_centre_carries_every_fact(
    notice: ArrivalNotice,
) -> None:
    r = render_arrival(notice)
    for part in (r.text, visible(r.html)):
        assert "OSD-2026-0001" in part
        assert "Östersund" in part
        assert "fredag 27 november 2026" in part
        assert "arabiska, dari" in part
        assert "9 år, 4 år" in part
        assert "2 barn" in part
        assert "Ensamkommande" in part
        assert "Familj på fyra" in part
        assert "A.K." in part
        assert "senast fredag 4 december 2026" in part
        assert "Mottagningsenheten Östersund" in part
        assert "mottagning@ostersund.se" in part
        assert "063-14 30 00" in part
        assert "Bekräfta att ni tagit emot meddelandet" in part
        assert ACK_URL in part
    assert "Tolk behövs: ja" in r.text
    assert "Tolk behövs ja" in visible(r.html)
    assert "Ensamkommande: nej" in r.text
    assert f"Bekräfta att ni tagit emot meddelandet: {ACK_URL}" in r.text
    assert ACK_URL in links(r.html)
    assert r.subject == "Ny ankomst 27 november: OSD-2026-0001 (Östersund)"


def test_html_part_is_a_swedish_document(notice: ArrivalNotice) -> None:
    r = render_arrival(notice)
    assert r.html.startswith("<!DOCTYPE html>")
    assert '<html lang="sv">' in r.html
    assert "<script" not in r.html


def test_telegram_asks_for_the_button_and_not_a_link(notice: ArrivalNotice) -> None:
    r = render_arrival(notice)
    assert "Tryck på Mottaget nedan." in r.telegram
    assert ACK_URL not in r.telegram
    assert "fredag 27 november 2026" in r.telegram
    assert "arabiska, dari" in r.telegram
    assert "Tolk behövs: ja" in r.telegram
    assert "senast fredag 4 december 2026" in r.telegram


def test_html_in_details_arrives_escaped(notice: ArrivalNotice) -> None:
    details = '<script>alert(1)</script> och <b>fet</b> & "citat"'
    notice = replace(notice, facts=replace(notice.facts, details=details))
    r = render_arrival(notice, "full")
    for markup in (r.html, r.telegram):
        assert "<script>" not in markup
        assert "<b>fet</b>" not in markup
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in markup
        assert "&lt;b&gt;fet&lt;/b&gt;" in markup
    assert details in visible(r.html)
    assert details in r.text


def test_user_given_names_are_escaped_too(notice: ArrivalNotice) -> None:
    notice = replace(
        notice,
        recipient=Contact("Skola <i>X</i>"),
        reception_unit=Contact("Mottagning & <u>Co</u>", phone="<s>1</s>"),
        facts=replace(notice.facts, children=(Child(5, "<b>"),)),
    )
    r = render_arrival(notice, "full")
    for markup in (r.html, r.telegram):
        assert "<i>X</i>" not in markup
        assert "<u>Co</u>" not in markup
        assert "<s>1</s>" not in markup
        assert "(<b>)" not in markup


def test_telegram_uses_only_the_tags_telegram_allows(notice: ArrivalNotice) -> None:
    changes = (
        Change("arrival_date", date(2026, 11, 27), date(2026, 12, 1)),
        Change("details", "a", "b"),
    )
    for kind in ("new", "changed", "cancelled"):
        for details in ("minimal", "full"):
            n = replace(notice, kind=kind, changes=changes, cancel_reason="Orsak")
            tags = telegram_tags(render_arrival(n, details).telegram)
            assert tags <= TELEGRAM_TAGS


def test_telegram_minimal_has_no_details_and_no_initials(notice: ArrivalNotice) -> None:
    r = render_arrival(notice, "minimal")
    assert "Familj på fyra" not in r.telegram
    assert "A.K." not in r.telegram
    assert "9 år, 4 år" in r.telegram


def test_telegram_full_has_details_and_initials(notice: ArrivalNotice) -> None:
    r = render_arrival(notice, "full")
    assert "Familj på fyra" in r.telegram
    assert "A.K." in r.telegram


def test_minimal_chat_does_not_show_changed_details(notice: ArrivalNotice) -> None:
    notice = replace(
        notice, kind="changed", changes=(Change("details", "Gamla hemliga", "Nya hemliga"),)
    )
    assert "hemliga" not in render_arrival(notice, "minimal").telegram
    assert "Nya hemliga" in render_arrival(notice, "full").telegram
    assert "Nya hemliga" in render_arrival(notice, "minimal").text


def test_date_change_says_andrat_and_shows_old_and_new(notice: ArrivalNotice) -> None:
    notice = replace(
        notice,
        kind="changed",
        version=2,
        facts=replace(notice.facts, arrival_date=date(2026, 12, 1)),
        changes=(Change("arrival_date", date(2026, 11, 27), date(2026, 12, 1)),),
    )
    r = render_arrival(notice)
    assert r.subject.startswith("ÄNDRAT datum: OSD-2026-0001")
    assert "1 december" in r.subject
    for part in all_parts(r):
        assert "ÄNDRAT" in part
    assert "fredag 27 november 2026 → tisdag 1 december 2026" in r.text
    assert "fredag 27 november 2026 → tisdag 1 december 2026" in visible(r.html)
    assert "<s>fredag 27 november 2026</s> → <b>tisdag 1 december 2026</b>" in r.telegram
    assert "version 2" in r.text


def test_changed_values_are_formatted_for_a_reader(notice: ArrivalNotice) -> None:
    notice = replace(
        notice,
        kind="changed",
        changes=(
            Change("languages", ("ar",), ("ar", "prs")),
            Change("interpreter_needed", False, True),
            Change("children", (Child(9),), (Child(9), Child(4))),
            Change("unaccompanied", True, False),
        ),
    )
    r = render_arrival(notice)
    assert r.subject.startswith("ÄNDRAT språk, tolk, barn, ensamkommande: ")
    assert "Språk: arabiska → arabiska, dari" in r.text
    assert "Tolk behövs: nej → ja" in r.text
    assert "Barn: 1 barn: 9 år → 2 barn: 9 år, 4 år" in r.text
    assert "Ensamkommande: ja → nej" in r.text


def test_cancellation_says_installd_with_the_reason(notice: ArrivalNotice) -> None:
    notice = replace(notice, kind="cancelled", cancel_reason="Familjen har flyttat.")
    r = render_arrival(notice)
    assert r.subject == "INSTÄLLD: OSD-2026-0001 (Östersund), ankomst 27 november"
    for part in all_parts(r):
        assert "INSTÄLLD" in part
    for part in (r.text, visible(r.html), r.telegram):
        assert "Avboka" in part
        assert "Boka tid för hälsosamtal" not in part
    # The reason is free text: in the e-mail always, in chat only with full chat details.
    for part in (r.text, visible(r.html), render_arrival(notice, "full").telegram):
        assert "Familjen har flyttat." in part
    assert "Familjen har flyttat." not in r.telegram
    assert "Orsak:</b> Läs mer i e-posten eller på tavlan." in r.telegram


def test_reception_unit_copy_needs_no_acknowledgement(
    notice: ArrivalNotice, reception_unit: Contact
) -> None:
    notice = replace(
        notice,
        recipient=reception_unit,
        recipient_kind="reception_unit",
        needs_ack=False,
        ack_url=None,
        booking_deadline=None,
    )
    r = render_arrival(notice)
    for part in (r.text, visible(r.html), r.telegram):
        assert "Detta är er kopia" in part
        assert "Bekräfta att ni tagit emot" not in part
        assert "Tryck på Mottaget" not in part
    assert "<form" not in r.html
    assert not [url for url in links(r.html) if "/a/" in url]


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("school", "Förbered skolstarten och kontakta god man eller boendet (HVB)"),
        ("preschool", "först när hälsocentralens provsvar har kommit"),
        ("social_services", "ensamkommande"),
        ("health_centre", "hälsosamtal med provtagning"),
    ],
)
def test_each_recipient_is_told_what_is_expected_of_it(
    notice: ArrivalNotice, kind: str, expected: str
) -> None:
    notice = replace(notice, recipient_kind=kind, facts=replace(notice.facts, unaccompanied=True))
    r = render_arrival(notice)
    for part in (r.text, visible(r.html), r.telegram):
        assert expected in part


def test_unaccompanied_children_are_said_to_be(notice: ArrivalNotice) -> None:
    notice = replace(notice, facts=replace(notice.facts, unaccompanied=True))
    r = render_arrival(notice)
    assert "Ensamkommande: ja" in r.text
    assert "Ensamkommande: ja" in r.telegram


def test_telegram_stays_within_4096_with_long_escaped_details(notice: ArrivalNotice) -> None:
    details = ("&<>" * 334)[:1000]
    notice = replace(notice, facts=replace(notice.facts, details=details))
    r = render_arrival(notice, "full")
    assert telegram_length(r.telegram) <= TELEGRAM_LIMIT
    assert "…</blockquote>" in r.telegram
    assert "Tryck på Mottaget nedan." in r.telegram
    # The cut is between entities, never inside one.
    quoted = r.telegram.split("<blockquote>")[1].split("…</blockquote>")[0]
    assert re.fullmatch(r"(&amp;|&lt;|&gt;)+", quoted)
    assert details in r.text


def test_telegram_stays_within_4096_with_a_huge_reason(notice: ArrivalNotice) -> None:
    notice = replace(notice, kind="cancelled", cancel_reason="<&>" * 50_000)
    r = render_arrival(notice, "full")
    assert telegram_length(r.telegram) <= TELEGRAM_LIMIT
    assert "INSTÄLLD" in r.telegram
    assert "Orsak:" in r.telegram


def test_telegram_stays_within_4096_with_huge_changed_values(notice: ArrivalNotice) -> None:
    notice = replace(notice, kind="changed", changes=(Change("details", "&" * 5000, "<" * 5000),))
    r = render_arrival(notice, "full")
    assert telegram_length(r.telegram) <= TELEGRAM_LIMIT
    assert "ÄNDRAT" in r.telegram


def test_short_telegram_is_not_cut(notice: ArrivalNotice) -> None:
    assert "…" not in render_arrival(notice, "full").telegram


def test_subject_is_one_line_even_if_a_value_had_line_breaks(notice: ArrivalNotice) -> None:
    notice = replace(
        notice,
        facts=replace(
            notice.facts, municipality="Öster\r\nsund\nBcc: x@example.se", reference="OSD\r1"
        ),
    )
    subject = render_arrival(notice).subject
    assert "\r" not in subject
    assert "\n" not in subject
    assert "Öster sund Bcc: x@example.se" in subject


def test_clean_header_drops_controls_and_line_separators() -> None:
    assert clean_header(" a\r\n\tb\x00c\u2028d\u202ee\x1b ") == "a b c d e"
    assert clean_header("Ny ankomst 27 november: OSD-2026-0001 (Östersund)") == (
        "Ny ankomst 27 november: OSD-2026-0001 (Östersund)"
    )


def test_ack_link_must_be_http(notice: ArrivalNotice) -> None:
    with pytest.raises(ValueError, match="ack_url"):
        render_arrival(replace(notice, ack_url="javascript:alert(1)"))


def test_missing_ack_url_still_says_how_to_acknowledge(notice: ArrivalNotice) -> None:
    r = render_arrival(replace(notice, ack_url=None))
    assert "Bekräfta att ni tagit emot meddelandet" in r.text
    assert "Tryck på Mottaget nedan." in r.telegram
