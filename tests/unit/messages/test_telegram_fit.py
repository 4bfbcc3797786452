from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape

from messages.telegram import (
    TELEGRAM_LIMIT,
    fit_telegram,
    shorten,
    telegram_length,
    truncate_html,
)

ENTITY_OR_TAG = re.compile(r"<[^<>]*>|&(?:amp|lt|gt|quot|#\d+);")


def test_shorten_cuts_and_marks_the_cut() -> None:
    assert shorten("abcdef", 3) == "abc…"
    assert shorten("abc", 3) == "abc"
    assert shorten("abc def", 4) == "abc…"
    assert shorten("abcdef", None) == "abcdef"


def test_length_counts_utf16_code_units() -> None:
    assert telegram_length("å") == 1
    assert telegram_length("😀") == 2


def test_fit_telegram_keeps_as_much_free_text_as_fits() -> None:
    free = "&" * 2000

    def render(cap: int | None) -> str:
        return f"<b>Rubrik</b>\n<blockquote>{escape(shorten(free, cap))}</blockquote>"

    text = fit_telegram(render, len(free), limit=1000)
    assert telegram_length(text) <= 1000
    assert telegram_length(render(text.count("&amp;") + 1)) > 1000
    assert text.endswith("…</blockquote>")


def test_fit_telegram_leaves_short_text_alone() -> None:
    assert fit_telegram(lambda cap: "kort", 0) == "kort"


def test_fit_telegram_cuts_the_markup_when_free_text_is_not_enough() -> None:
    fixed = "<b>" + "&lt;" * 3000 + "</b>"
    text = fit_telegram(lambda cap: fixed, 0)
    assert telegram_length(text) <= TELEGRAM_LIMIT
    assert text.endswith("…</b>")


@given(
    st.lists(
        st.one_of(
            st.text(min_size=1, max_size=30).map(lambda s: str(escape(s))),
            st.sampled_from(["<b>", "</b>", "<i>", "</i>", "<blockquote>", "</blockquote>"]),
            st.just('<a href="https://example.se/?a=1&amp;b=2">'),
        ),
        max_size=400,
    ),
    st.integers(min_value=10, max_value=600),
)
def test_truncated_markup_always_fits_and_never_splits_a_tag_or_entity(
    tokens: list[str], limit: int
) -> None:
    source = "".join(tokens)
    result = truncate_html(source, limit)
    assert telegram_length(result) <= limit
    stripped = ENTITY_OR_TAG.sub("", result)
    assert "<" not in stripped
    assert ">" not in stripped
    assert "&" not in stripped
    if telegram_length(source) <= limit:
        assert result == source


def test_truncated_markup_closes_what_it_opened() -> None:
    source = "<b>fet <i>" + "x" * 100 + "</i></b>"
    result = truncate_html(source, 40)
    assert result.endswith("…</i></b>")
    assert telegram_length(result) <= 40
