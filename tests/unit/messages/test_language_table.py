from __future__ import annotations

import json

from messages.language_table import TABLE, build_table


def test_shipped_language_table_matches_pycountry_and_babel() -> None:
    # messages/languages_sv.json is generated; after upgrading pycountry or Babel, regenerate it
    # with `python -m messages.language_table`.
    shipped = json.loads(TABLE.read_text(encoding="utf-8"))
    assert shipped == build_table()


def test_language_table_covers_639_1_639_2_639_3_and_families() -> None:
    shipped = json.loads(TABLE.read_text(encoding="utf-8"))
    assert {"ar", "ara", "ger", "deu", "zza", "ber"} <= shipped.keys()
    assert all(code == code.lower() and name == name.lower() for code, name in shipped.items())
