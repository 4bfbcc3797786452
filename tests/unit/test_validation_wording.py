"""Issue 16 item 4: a refusal names what it counts ("högst 20 barn", "minst ett barn"), an
empty text says it must not be empty, one language given by two codes is stored once, and
every bad language code is reported at once."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from bot.domain.arrival import ArrivalIn, InvalidInput, parse
from bot.usecases.disagreements import DecisionIn, DisagreementIn

TODAY = date(2026, 11, 25)


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "external_ref": "MIG-2026-1",
        "municipality": "ostersund",
        "arrival_date": "2026-11-27",
        "children": [{"age": 9}],
        "languages": ["ar"],
        "interpreter_needed": True,
        "unaccompanied": False,
    }
    data.update(overrides)
    return data


def refusal(model: type[Any], data: dict[str, Any], field: str) -> str:
    with pytest.raises(InvalidInput) as refused:
        parse(model, data, today=TODAY)
    messages = [e["message"] for e in refused.value.errors if e["field"] == field]
    assert len(messages) == 1, refused.value.errors
    return messages[0]


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"children": [{"age": 5}] * 21}, "children", "får ha högst 20 barn"),
        ({"children": []}, "children", "ska ha minst ett barn"),
        ({"languages": []}, "languages", "ska ha minst ett språk"),
        ({"languages": ["sv", "ar", "en", "fa", "so", "ti"]}, "languages", "får ha högst 5 språk"),
    ],
)
def test_a_count_refusal_names_what_it_counts(
    overrides: dict[str, Any], field: str, message: str
) -> None:
    assert refusal(ArrivalIn, body(**overrides), field) == message


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_an_empty_text_must_not_be_empty(text: str) -> None:
    assert refusal(DisagreementIn, {"text": text}, "text") == "får inte vara tom"
    assert refusal(DecisionIn, {"decision": text}, "decision") == "får inte vara tom"


def test_one_language_given_by_two_codes_is_stored_once() -> None:
    arrival = parse(ArrivalIn, body(languages=["ar", "ara", " AR "]), today=TODAY)
    assert arrival.facts()["languages"] == ["ar"]
    arrival = parse(ArrivalIn, body(languages=["ara", "prs", "ar", "fa"]), today=TODAY)
    assert arrival.facts()["languages"] == ["ara", "prs", "fa"]


def test_every_bad_language_code_is_reported_at_once() -> None:
    message = refusal(ArrivalIn, body(languages=["ar", "xx", "qqq", "1"]), "languages")
    assert message == "'xx', 'qqq', '1' är inga ISO 639-koder för språk"
    assert refusal(ArrivalIn, body(languages=["zz"]), "languages") == (
        "'zz' är ingen ISO 639-kod för ett språk"
    )
