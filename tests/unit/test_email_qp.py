"""A mail's text parts are quoted-printable, encoded line by line and each line kept
(bot/channels/email.py `_qp`, issue 17). The bytes must be those `binascii.b2a_qp` makes of the
whole text, whatever was encoded before, and a full store of kept lines must not change them."""

from __future__ import annotations

import binascii

from hypothesis import example, given
from hypothesis import strategies as st

from bot.channels import email
from bot.channels.email import _qp


def whole(text: str) -> bytes:
    """The whole text through `b2a_qp` at once, as `_qp` encoded it before (CRLF line ends)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


# Pieces that reach every rule of the encoder: soft breaks of long lines (at 76 columns),
# trailing space and tab, "=", a lone dot, non-ASCII, CR, LF and CRLF line ends.
PIECES = ["a", " ", "\t", "=", ".", "_", "å", "€", "\r", "\n", "\r\n", "x" * 40, "y" * 75]


@given(st.lists(st.sampled_from(PIECES), max_size=40))
@example(["x" * 40, "x" * 40, " ", "\n", "."])
@example([".", "\n", ".", "\r", "=", " "])
@example([])
def test_each_line_apart_gives_the_bytes_of_the_whole_text(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert _qp(text) == whole(text)
    assert _qp(text) == whole(text)  # the second time from the kept lines


def test_lines_beyond_what_is_kept_are_encoded_the_same() -> None:
    # More distinct lines than the store keeps: the older ones are dropped, none is wrong.
    email._qp_line.cache_clear()
    kept = email._qp_line.cache_info().maxsize
    assert kept is not None
    text = "".join(f"rad {i} = å{' ' if i % 3 == 0 else ''}\n" for i in range(kept + 500))
    assert _qp(text) == whole(text)
    assert email._qp_line.cache_info().currsize == kept
    assert _qp(text) == whole(text)
