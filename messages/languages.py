"""ISO 639 language codes: which are real, and what they are called in Swedish."""

from __future__ import annotations

import gettext
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import pycountry
from babel import Locale

# Codes for the chat's language buttons, roughly by how common they are among children arriving
# in Sweden as asylum seekers.
COMMON_LANGUAGES: tuple[str, ...] = (
    "ar",
    "prs",
    "fa",
    "so",
    "ti",
    "uk",
    "ps",
    "kmr",
    "ckb",
    "ru",
    "en",
)

# Names where Babel and the ISO tables are missing or wrong for this audience. Babel calls
# Pashto "afghanska", which is not what anyone in Swedish reception work says; dari and the
# two big Kurdish varieties need to be told apart, because interpreters are booked by them.
_OVERRIDES: dict[str, str] = {
    "prs": "dari",
    "ps": "pashto",
    "pus": "pashto",
    "kmr": "nordkurdiska (kurmanji)",
    "ckb": "centralkurdiska (sorani)",
}


@lru_cache(maxsize=1)
def _index() -> dict[str, Any]:
    """Every ISO 639 code, lowercase, to its pycountry record.

    ISO 639-3 (with the 639-1 and 639-2/T and /B codes pycountry keeps on each record), plus the
    ISO 639-5 families, which are where ISO 639-2's collective codes (e.g. `ber`) live.
    """
    index: dict[str, Any] = {}
    for family in pycountry.language_families:
        index[family.alpha_3.lower()] = family
    for language in pycountry.languages:
        for attribute in ("alpha_3", "alpha_2", "bibliographic"):
            code = getattr(language, attribute, None)
            if code:
                index[code.lower()] = language
    return index


@lru_cache(maxsize=1)
def _swedish_babel_names() -> dict[str, str]:
    return dict(Locale("sv").languages)


@lru_cache(maxsize=2)
def _swedish_iso_names(domain: str) -> gettext.NullTranslations:
    return gettext.translation(domain, pycountry.LOCALES_DIR, languages=["sv"], fallback=True)


def is_language_code(code: str) -> bool:
    """Tell whether `code` is an ISO 639-1, 639-2 (T or B) or 639-3 code (any case)."""
    return code.strip().lower() in _index() if code else False


@lru_cache(maxsize=1024)
def language_name(code: str) -> str:
    """The Swedish name of a language, lowercase as Swedish writes it: `ara` → "arabiska".

    Looks in our own overrides first, then Babel's Swedish names (asking by the two-letter code
    when there is one), then the Swedish ISO 639 translation pycountry ships, then the English
    ISO name; an unknown code is returned as it was given.
    """
    key = code.strip().lower()
    if key in _OVERRIDES:
        return _OVERRIDES[key]
    record = _index().get(key)
    alpha_2 = getattr(record, "alpha_2", None) if record is not None else None
    if alpha_2 in _OVERRIDES:
        return _OVERRIDES[alpha_2]
    babel_names = _swedish_babel_names()
    for candidate in (alpha_2, getattr(record, "alpha_3", None), key):
        if candidate and candidate in babel_names:
            return babel_names[candidate].lower()
    if record is None:
        return code
    domain = "iso639-3" if hasattr(record, "scope") else "iso639-5"
    english: str = record.name
    swedish = _swedish_iso_names(domain).gettext(english)
    return (swedish or english).lower()


def language_list(codes: Iterable[str]) -> str:
    """Swedish names of the languages, comma-separated: "arabiska, dari"."""
    return ", ".join(language_name(code) for code in codes)
