"""Reading rendered markup the way a reader or Telegram would."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

TELEGRAM_TAGS = {"b", "i", "u", "s", "a", "code", "pre", "blockquote"}


def visible(markup: str) -> str:
    """What a reader sees of an HTML part: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]*>", " ", markup)).split())


def links(markup: str) -> list[str]:
    found: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                found.extend(value or "" for name, value in attrs if name == "href")

    Links().feed(markup)
    return found


def telegram_tags(text: str) -> set[str]:
    return {name.lower() for name in re.findall(r"</?\s*([A-Za-z0-9-]+)", text)}
