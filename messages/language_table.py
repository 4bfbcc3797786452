"""Build messages/languages_sv.json: every ISO 639 code and its Swedish name.

    python -m messages.language_table      # after upgrading pycountry or Babel

The service only needs to know which codes are real and what each is called in Swedish, but the
sources are big: pycountry's ISO 639-3 database (~8,000 records as Python objects, ~6 MB of
RSS) and Babel's Swedish locale. So the answer is computed here, once, into a small JSON file
that messages/languages.py reads; tests/messages/test_language_table.py checks that the file
still matches what these sources say.
"""

from __future__ import annotations

import gettext
import json
from pathlib import Path
from typing import Any

TABLE = Path(__file__).with_name("languages_sv.json")

# Names where Babel and the ISO tables are missing or wrong for this audience. Babel calls
# Pashto "afghanska", which is not what anyone in Swedish reception work says; dari and the
# two big Kurdish varieties need to be told apart, because interpreters are booked by them.
OVERRIDES: dict[str, str] = {
    "prs": "dari",
    "ps": "pashto",
    "pus": "pashto",
    "kmr": "nordkurdiska (kurmanji)",
    "ckb": "centralkurdiska (sorani)",
}


def _index() -> dict[str, Any]:
    """Every ISO 639 code, lowercase, to its pycountry record.

    ISO 639-3 (with the 639-1 and 639-2/T and /B codes pycountry keeps on each record), plus the
    ISO 639-5 families, which are where ISO 639-2's collective codes (e.g. `ber`) live.
    """
    import pycountry  # only here: building the table is the one use of it

    index: dict[str, Any] = {}
    for family in pycountry.language_families:
        index[family.alpha_3.lower()] = family
    for language in pycountry.languages:
        for attribute in ("alpha_3", "alpha_2", "bibliographic"):
            code = getattr(language, attribute, None)
            if code:
                index[code.lower()] = language
    return index


def build_table() -> dict[str, str]:
    """Every ISO 639-1, 639-2 (T and B), 639-3 and 639-5 code, lowercase, to its Swedish name.

    The name, lowercase as Swedish writes it, comes from our own overrides first, then Babel's
    Swedish names (asking by the two-letter code when there is one), then the Swedish ISO 639
    translation pycountry ships, then the English ISO name.
    """
    import pycountry
    from babel import Locale

    babel_names = dict(Locale("sv").languages)
    translations = {
        domain: gettext.translation(domain, pycountry.LOCALES_DIR, languages=["sv"], fallback=True)
        for domain in ("iso639-3", "iso639-5")
    }
    table: dict[str, str] = {}
    for key, record in _index().items():
        table[key] = _name(key, record, babel_names, translations)
    return dict(sorted(table.items()))


def _name(
    key: str,
    record: Any,
    babel_names: dict[str, str],
    translations: dict[str, gettext.NullTranslations],
) -> str:
    if key in OVERRIDES:
        return OVERRIDES[key]
    alpha_2 = getattr(record, "alpha_2", None)
    if alpha_2 in OVERRIDES:
        return OVERRIDES[alpha_2]
    for candidate in (alpha_2, getattr(record, "alpha_3", None), key):
        if candidate and candidate in babel_names:
            return babel_names[candidate].lower()
    domain = "iso639-3" if hasattr(record, "scope") else "iso639-5"
    english: str = record.name
    return (translations[domain].gettext(english) or english).lower()


def write_table() -> int:
    """Write the table to messages/languages_sv.json; the number of codes."""
    table = build_table()
    TABLE.write_text(
        json.dumps(table, ensure_ascii=False, indent=0, sort_keys=True) + "\n", encoding="utf-8"
    )
    return len(table)


if __name__ == "__main__":
    print(f"{write_table()} codes written to {TABLE}")
