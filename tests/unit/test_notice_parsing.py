"""Reading Migrationsverket's notices (bot/domain/notice.py) over the fictional corpus in
tests/data/notices: each .eml gives exactly the draft its .json names, and nothing personal."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from bot.domain.notice import (
    UNREADABLE,
    case_number,
    keyed_ref,
    language_of,
    load_message,
    notice_text,
    parse_notice,
    read_notice_text,
)

CORPUS = Path(__file__).parents[1] / "data" / "notices"
SECRET = b"test-secret"
RECEIVED = date(2026, 12, 1)
SAMPLES = sorted(p.stem for p in CORPUS.glob("*.eml"))


def test_the_corpus_has_every_kind_of_notice() -> None:
    assert len(SAMPLES) >= 8
    assert "unreadable" in SAMPLES


@pytest.mark.parametrize("name", SAMPLES)
def test_each_notice_gives_its_draft(name: str) -> None:
    expected = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    draft = parse_notice((CORPUS / f"{name}.eml").read_bytes(), SECRET, RECEIVED)
    assert draft.fields() == expected["draft"]


@pytest.mark.parametrize("name", SAMPLES)
def test_no_personal_data_reaches_the_draft(name: str) -> None:
    expected = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    raw = (CORPUS / f"{name}.eml").read_bytes()
    shown = json.dumps(parse_notice(raw, SECRET, RECEIVED).fields(), ensure_ascii=False)
    text = notice_text(load_message(raw))
    for personal in expected["personal"]:
        # Each item really is in the notice's text (or its PDF), so the check means something ...
        assert personal.lower() in text.lower(), personal
        # ... and never in the draft.
        assert personal.lower() not in shown.lower(), personal


def test_the_corpus_is_what_the_generator_writes() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("notice_corpus", CORPUS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, raw in module.SAMPLES.items():
        assert (CORPUS / f"{name}.eml").read_bytes() == raw, name


def test_the_same_notice_twice_has_one_ref_and_the_secret_matters() -> None:
    raw = (CORPUS / "sv_plain.eml").read_bytes()
    resent = raw.replace(b"<sv_plain@notices.example>", b"<resent@notices.example>")
    assert (
        parse_notice(raw, SECRET, RECEIVED).external_ref
        == parse_notice(resent, SECRET, RECEIVED).external_ref
    )
    assert (
        parse_notice(raw, b"other", RECEIVED).external_ref
        != parse_notice(raw, SECRET, RECEIVED).external_ref
    )
    assert "456789" not in parse_notice(raw, SECRET, RECEIVED).external_ref


def test_an_unreadable_notice_is_an_empty_draft_never_dropped() -> None:
    for raw in (b"", b"\x00\xff garbage", b"Subject: hej\r\n\r\nHej!"):
        draft = parse_notice(raw, SECRET, RECEIVED)
        assert not draft.readable
        assert draft.fields()["note"] == UNREADABLE
        assert draft.external_ref.startswith("mv-")


@pytest.mark.parametrize(
    ("word", "code"),
    [
        ("arabiska", "ar"),
        ("Arabic", "ar"),
        ("ARA", "ar"),
        ("dari", "prs"),
        ("Tigrinja", "ti"),
        ("kurmanji", "kmr"),
        ("sorani", "ckb"),
        ("somaliska", "so"),
        ("persiska", "fa"),
        ("ukrainska", "uk"),
        ("nej", None),
        ("Storgatan", None),
    ],
)
def test_languages_by_swedish_or_english_name_or_code(word: str, code: str | None) -> None:
    assert language_of(word) == code


def test_ocr_noise_and_word_dates() -> None:
    text = (
        "ANKOMSTDATUM: 3 mars 2027\nBarn: X, fodd 2020-03-04\nbarn: Y, 12 ar\n"
        "sprak: arabiska och dari\nENSAMKOMMANDE BARN: nej\n"
    )
    draft = read_notice_text(text, "mv-x", RECEIVED)
    assert draft.arrival_date == date(2027, 3, 3)
    assert draft.ages == (6, 12)
    assert draft.languages == ("ar", "prs")
    assert draft.unaccompanied is False
    assert draft.interpreter_needed is True


def test_samordningsnummer_gives_an_age_and_is_forgotten() -> None:
    draft = read_notice_text("Ankomstdatum: 2026-12-10\nBarn: 150565-1234\n", "mv-x", RECEIVED)
    assert draft.ages == (11,)
    assert "1505" not in json.dumps(draft.fields())


def test_case_number_is_found_in_swedish_and_english() -> None:
    assert case_number("Ärendenummer: 23-456789") == "23-456789"
    assert case_number("Case no: 27-123123") == "27-123123"
    assert case_number("Arende nr 12 345678") == "12-345678"
    assert case_number("no number here") is None
    assert keyed_ref(SECRET, "a") != keyed_ref(SECRET, "b")
