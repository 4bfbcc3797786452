from __future__ import annotations

import re
from typing import get_args

import pytest

from messages.models import AckPage, AckPageState
from messages.render import render_ack_page

HEADINGS = {
    "confirm": "Bekräfta mottaget",
    "done": "Tack! Mottagandet är bekräftat.",
    "already": "Redan bekräftat",
    "stale": "nyare meddelande",
    "cancelled": "inställd",
    "invalid": "inte giltig",
    "expired": "slutat gälla",
}


def page(state: AckPageState) -> str:
    return render_ack_page(
        AckPage(
            state=state,
            reference="OSD-2026-0001",
            organisation="Lugnviks hälsocentral",
            version=2,
            post_url="/a/tok123",
        )
    )


def test_every_state_has_a_page() -> None:
    assert set(HEADINGS) == set(get_args(AckPageState))


@pytest.mark.parametrize("state", sorted(HEADINGS))
def test_each_state_renders_a_small_self_contained_page(state: AckPageState) -> None:
    html = page(state)
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="sv">' in html
    assert '<meta name="viewport"' in html
    assert HEADINGS[state] in html
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html


def test_confirm_page_posts_and_never_acknowledges_on_get() -> None:
    html = page("confirm")
    assert '<form method="post" action="/a/tok123">' in html
    assert '<button type="submit">Bekräfta mottaget</button>' in html
    assert "OSD-2026-0001" in html
    assert "Lugnviks hälsocentral" in html


@pytest.mark.parametrize("state", sorted(set(HEADINGS) - {"confirm"}))
def test_only_the_confirm_page_has_a_form(state: AckPageState) -> None:
    assert "<form" not in page(state)


def test_stale_page_sends_people_to_the_latest_message() -> None:
    assert "senaste meddelandet" in page("stale")


def test_expired_page_says_what_to_do_instead() -> None:
    html = page("expired")
    assert "senaste meddelandet" in html
    assert "mottagningsenheten" in html


def test_confirm_page_needs_somewhere_to_post() -> None:
    with pytest.raises(ValueError, match="post_url"):
        render_ack_page(AckPage(state="confirm"))


def test_page_values_are_escaped() -> None:
    html = render_ack_page(
        AckPage(state="confirm", organisation="<script>x</script>", post_url='/a/"x"')
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'action="/a/&#34;x&#34;"' in html


def test_states_without_details_still_read_well() -> None:
    for state in HEADINGS:
        if state != "confirm":
            assert "None" not in render_ack_page(AckPage(state=state))
