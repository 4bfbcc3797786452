"""ISO 639 language codes: which are real, and what they are called in Swedish."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache

from messages.language_table import TABLE

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


@lru_cache(maxsize=1)
def _swedish_names() -> dict[str, str]:
    """Every ISO 639 code, lowercase, to its Swedish name: messages/languages_sv.json.

    Computed from pycountry and Babel by messages/language_table.py, which holds the naming
    rules; reading the result instead of the sources saves ~6 MB of RSS in the service.
    """
    names: dict[str, str] = json.loads(TABLE.read_text(encoding="utf-8"))
    return names


def is_language_code(code: str) -> bool:
    """Tell whether `code` is an ISO 639-1, 639-2 (T or B) or 639-3 code (any case)."""
    return code.strip().lower() in _swedish_names() if code else False


def language_name(code: str) -> str:
    """The Swedish name of a language, lowercase as Swedish writes it: `ara` → "arabiska".

    Our own overrides first, then Babel's Swedish names, then the Swedish ISO 639 translation
    pycountry ships, then the English ISO name (see messages/language_table.py); an unknown
    code is returned as it was given.
    """
    return _swedish_names().get(code.strip().lower(), code)


def language_list(codes: Iterable[str]) -> str:
    """Swedish names of the languages, comma-separated: "arabiska, dari"."""
    return ", ".join(language_name(code) for code in codes)


@lru_cache(maxsize=1)
def _canonical_codes() -> dict[str, str]:
    """Every code to the shortest code of the same language (by its Swedish name): ISO 639-1
    where there is one (`ara` → `ar`), else 639-2/-3."""
    shortest: dict[str, str] = {}
    for code, name in sorted(_swedish_names().items(), key=lambda kv: (len(kv[0]), kv[0])):
        shortest.setdefault(name, code)
    return {code: shortest[name] for code, name in _swedish_names().items()}


def canonical_language(code: str) -> str:
    """One code per language: the ISO 639-1 and -2/-3 codes of the same language give the same
    code (`ar`, `ara` → `ar`); an unknown code is returned lowercased."""
    key = code.strip().lower()
    return _canonical_codes().get(key, key)
