from __future__ import annotations

import pytest

from messages.languages import COMMON_LANGUAGES, is_language_code, language_list, language_name


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("prs", "dari"),
        ("kmr", "nordkurdiska (kurmanji)"),
        ("ckb", "centralkurdiska (sorani)"),
        ("ps", "pashto"),
        ("pus", "pashto"),
        ("ar", "arabiska"),
        ("ara", "arabiska"),
        ("so", "somaliska"),
        ("som", "somaliska"),
        ("ti", "tigrinja"),
        ("uk", "ukrainska"),
        ("fa", "persiska"),
        ("ger", "tyska"),
        ("deu", "tyska"),
        ("AR", "arabiska"),
    ],
)
def test_language_is_named_in_swedish(code: str, name: str) -> None:
    assert language_name(code) == name


def test_language_without_a_babel_name_falls_back_to_the_swedish_iso_table() -> None:
    assert language_name("zza") == "zazaiska"


def test_swedish_language_names_are_lowercase() -> None:
    for code in COMMON_LANGUAGES:
        name = language_name(code)
        assert name == name.lower()
        assert name != code


def test_unknown_code_is_shown_as_given() -> None:
    assert language_name("xx1") == "xx1"


@pytest.mark.parametrize(
    "code", ["ar", "ara", "prs", "kmr", "ger", "deu", "ti", "uk", "DEU", "ber"]
)
def test_real_codes_are_accepted(code: str) -> None:
    assert is_language_code(code)


@pytest.mark.parametrize("code", ["xx1", "zzzz", "", "a", "arabic", "q"])
def test_invalid_codes_are_rejected(code: str) -> None:
    assert not is_language_code(code)


def test_language_list_is_comma_separated_without_och() -> None:
    assert language_list(["ar", "prs"]) == "arabiska, dari"
    assert language_list(["ar", "prs", "so"]) == "arabiska, dari, somaliska"
    assert language_list([]) == ""


def test_common_languages_are_all_real_codes() -> None:
    assert COMMON_LANGUAGES[0] == "ar"
    assert len(set(COMMON_LANGUAGES)) == len(COMMON_LANGUAGES)
    assert all(is_language_code(code) for code in COMMON_LANGUAGES)
