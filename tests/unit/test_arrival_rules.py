"""The one arrival-date rule shared by the API, the intake stream and the chat flows."""

from __future__ import annotations

from datetime import date

import pytest

from bot.domain.arrival import ArrivalPatch, InvalidInput, arrival_date_problem, parse

TODAY = date(2026, 11, 25)


@pytest.mark.parametrize(
    ("day", "refused"),
    [
        (date(2026, 11, 18), False),  # seven days back: a late registration is still taken
        (date(2026, 11, 17), True),
        (date(2027, 11, 26), False),  # 366 days ahead
        (date(2027, 11, 27), True),
    ],
)
def test_the_arrival_date_window(day: date, refused: bool) -> None:
    assert (arrival_date_problem(day, TODAY) is not None) is refused


def test_the_api_refuses_with_the_same_words() -> None:
    with pytest.raises(InvalidInput) as error:
        parse(ArrivalPatch, {"arrival_date": "2026-11-01"}, today=TODAY)
    assert error.value.errors == [
        {"field": "arrival_date", "message": arrival_date_problem(date(2026, 11, 1), TODAY)}
    ]
