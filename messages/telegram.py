"""Keeping a Telegram message within Telegram's 4096-character limit."""

from __future__ import annotations

import re
from collections.abc import Callable

TELEGRAM_LIMIT = 4096
ELLIPSIS = "…"

# A tag, an entity, or one character; our templates only ever emit these three.
_TOKEN = re.compile(r"<[^<>]*>|&#?[A-Za-z0-9]+;|.", re.DOTALL)
_TAG_NAME = re.compile(r"</?\s*([A-Za-z0-9-]+)")


def telegram_length(text: str) -> int:
    """The length Telegram is asked to accept, counted the strictest way.

    Telegram counts UTF-16 code units of the text after parsing the markup; counting the
    markup itself too, in UTF-16 code units, is never less than that.
    """
    return len(text.encode("utf-16-le")) // 2


def shorten(text: str, limit: int | None) -> str:
    """`text` cut to at most `limit` characters plus "…" (unchanged if it fits or no limit)."""
    if limit is None or len(text) <= limit:
        return text
    return text[:limit].rstrip() + ELLIPSIS


def fit_telegram(
    render: Callable[[int | None], str], longest: int, limit: int = TELEGRAM_LIMIT
) -> str:
    """Render a Telegram message so that it fits within `limit`.

    `render(cap)` renders the message with every free-text value (already plain text, escaped
    by the template) cut to `cap` characters by `shorten`, or uncut when `cap` is None;
    `longest` is the length of the longest such value. Cutting the plain text before it is
    escaped means no cut can ever land inside an entity. The longest cap that fits is found by
    bisection; if even no free text at all is too long, the markup is cut tag-aware.
    """
    text = render(None)
    if telegram_length(text) <= limit:
        return text
    low, high = 0, max(longest - 1, 0)
    best: str | None = None
    while low <= high:
        cap = (low + high) // 2
        candidate = render(cap)
        if telegram_length(candidate) <= limit:
            best, low = candidate, cap + 1
        else:
            high = cap - 1
    if best is not None:
        return best
    return truncate_html(render(0), limit)


def truncate_html(text: str, limit: int = TELEGRAM_LIMIT) -> str:
    """Cut Telegram HTML to `limit`, never inside a tag or entity, closing open tags, with "…"."""
    if telegram_length(text) <= limit:
        return text
    kept: list[str] = []
    used = 0
    open_tags: list[str] = []

    def closing(tags: list[str]) -> int:
        return sum(len(f"</{tag}>") for tag in tags)

    for match in _TOKEN.finditer(text):
        token = match.group()
        tags = open_tags
        if token.startswith("<") and len(token) > 1:
            name_match = _TAG_NAME.match(token)
            name = name_match.group(1).lower() if name_match else ""
            if token.startswith("</"):
                tags = open_tags[:-1] if open_tags and open_tags[-1] == name else open_tags
            elif name and not token.endswith("/>"):
                tags = [*open_tags, name]
        size = telegram_length(token)
        if used + size + closing(tags) + len(ELLIPSIS) > limit:
            break
        kept.append(token)
        used += size
        open_tags = tags
    kept.append(ELLIPSIS)
    kept.extend(f"</{tag}>" for tag in reversed(open_tags))
    return "".join(kept)
