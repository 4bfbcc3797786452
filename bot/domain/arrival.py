"""The arrival as the outside world gives it, validated; errors every inbound path shares."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from messages.languages import canonical_language, is_language_code

# A Swedish personal identity or co-ordination number: YYMMDD-NNNN, YYYYMMDDNNNN, with - or +.
_PERSONNUMMER = re.compile(r"(?<!\d)(?:19|20)?\d{2}[01]\d[0-9]\d[-+ ]?\d{4}(?!\d)")
# Words that show medical facts: the agreement lets only "cleared / not cleared" travel.
_MEDICAL = re.compile(
    r"\b(tuberkulos|tbc|hiv|hepatit\w*|diagnos\w*|sjukdom\w*|smitt\w*|medicin\w*|"
    r"provsvar\w*|blodprov\w*|vaccin\w*|psykiatri\w*|ptsd|trauma\w*|graviditet\w*|gravid|"
    r"tuberculosis|diagnosis|disease|infection|pregnan\w*)\b",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
_INITIALS = re.compile(r"^[^\W\d_]{1,3}(?:[.\- ]?[^\W\d_]{1,3}){0,3}\.?$")

MAX_DAYS_PAST = 7
MAX_DAYS_AHEAD = 366


class InvalidInput(Exception):
    """Input broke one or more rules; `errors` names each field in Swedish."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


class Child(BaseModel):
    """One child: an age, and optionally initials (never names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    age: StrictInt = Field(ge=0, le=17)
    initials: str | None = Field(default=None, max_length=8)

    @field_validator("initials")
    @classmethod
    def _initials(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            return None
        if not _INITIALS.match(value):
            raise ValueError("initialer skrivs med bokstäver, t.ex. A.K.")
        return value


def is_external_ref(value: str) -> bool:
    """Whether `value` is usable as an external reference (the idempotency key)."""
    return bool(_REF.match(value))


def _clean_text(value: str) -> str:
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    if _CONTROL.search(value):
        raise ValueError("innehåller otillåtna styrtecken")
    return value.strip()


def check_free_text(value: str) -> str:
    """Free text as stored: no control characters, identity numbers or medical words."""
    value = _clean_text(value)
    if _PERSONNUMMER.search(value):
        raise ValueError("får inte innehålla person- eller samordningsnummer")
    if _MEDICAL.search(value):
        raise ValueError("får inte innehålla medicinska uppgifter")
    return value


def arrival_date_problem(value: date, today: date) -> str | None:
    """Why an arrival date is refused (in Swedish), or None: the one date rule of every path."""
    if value < today - timedelta(days=MAX_DAYS_PAST):
        return f"får inte ligga mer än {MAX_DAYS_PAST} dagar bakåt i tiden"
    if value > today + timedelta(days=MAX_DAYS_AHEAD):
        return "ligger för långt fram i tiden"
    return None


def _check_date(value: date, info: ValidationInfo) -> date:
    today = (info.context or {}).get("today")
    if isinstance(today, date):
        problem = arrival_date_problem(value, today)
        if problem:
            raise ValueError(problem)
    return value


def _check_languages(value: list[str]) -> list[str]:
    # Every bad code is named at once; the 639-1 and 639-2/-3 codes of one language (`ar`,
    # `ara`) are one language, stored once as given first.
    bad = [code.strip() for code in value if not is_language_code(code)]
    if bad:
        named = ", ".join(repr(code) for code in bad)
        raise ValueError(
            f"{named} är ingen ISO 639-kod för ett språk"
            if len(bad) == 1
            else f"{named} är inga ISO 639-koder för språk"
        )
    cleaned: dict[str, str] = {}
    for code in value:
        code = code.strip().lower()
        cleaned.setdefault(canonical_language(code), code)
    return list(cleaned.values())


LanguageList = Annotated[
    list[Annotated[str, Field(max_length=8)]], Field(min_length=1, max_length=5)
]
ChildList = Annotated[list[Child], Field(min_length=1, max_length=20)]


class ArrivalIn(BaseModel):
    """An arrival as registered (CONTRACT.md "Arrival"). Validate with context {"today": date}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    external_ref: str = Field(max_length=64)
    municipality: str = Field(max_length=64)
    arrival_date: date
    children: ChildList
    languages: LanguageList
    interpreter_needed: StrictBool
    unaccompanied: StrictBool
    details: str = Field(default="", max_length=1000)
    recipients: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=10
    )

    @field_validator("external_ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not _REF.match(value):
            raise ValueError("får bara innehålla bokstäver a–z, siffror och . _ : / -")
        return value

    @field_validator("details")
    @classmethod
    def _details(cls, value: str) -> str:
        return check_free_text(value)

    @field_validator("arrival_date")
    @classmethod
    def _date(cls, value: date, info: ValidationInfo) -> date:
        return _check_date(value, info)

    @field_validator("languages")
    @classmethod
    def _langs(cls, value: list[str]) -> list[str]:
        return _check_languages(value)

    def facts(self) -> dict[str, Any]:
        """The case facts as stored (JSON-ready), without the routing request."""
        return {
            "arrival_date": self.arrival_date.isoformat(),
            "children": [c.model_dump(exclude_none=True) for c in self.children],
            "languages": list(self.languages),
            "interpreter_needed": self.interpreter_needed,
            "unaccompanied": self.unaccompanied,
            "details": self.details,
        }


class ArrivalPatch(BaseModel):
    """The fields a reception unit may change after registration (each optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arrival_date: date | None = None
    children: ChildList | None = None
    languages: LanguageList | None = None
    interpreter_needed: StrictBool | None = None
    unaccompanied: StrictBool | None = None
    details: str | None = Field(default=None, max_length=1000)

    @field_validator("details")
    @classmethod
    def _details(cls, value: str | None) -> str | None:
        return None if value is None else check_free_text(value)

    @field_validator("arrival_date")
    @classmethod
    def _date(cls, value: date | None, info: ValidationInfo) -> date | None:
        return None if value is None else _check_date(value, info)

    @field_validator("languages")
    @classmethod
    def _langs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_languages(value)

    def facts(self) -> dict[str, Any]:
        """The changed facts only, JSON-ready."""
        out: dict[str, Any] = {}
        if self.arrival_date is not None:
            out["arrival_date"] = self.arrival_date.isoformat()
        if self.children is not None:
            out["children"] = [c.model_dump(exclude_none=True) for c in self.children]
        for name in ("languages", "interpreter_needed", "unaccompanied", "details"):
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if name == "languages" else value
        return out


CANCEL_REASON_MISSING = "Ange varför ankomsten ställs in."
MAX_CANCEL_REASON = 500


def check_cancel_reason(value: str) -> str:
    """The reason of a cancellation as stored: required, because a cancellation is final (the
    case can never change again) and the recipients must learn why their preparations stop;
    checked like all free text. ValueError in Swedish otherwise."""
    value = check_free_text(value)
    if not value:
        raise ValueError(CANCEL_REASON_MISSING)
    if len(value) > MAX_CANCEL_REASON:
        raise ValueError(f"får vara högst {MAX_CANCEL_REASON} tecken")
    return value


class CancelIn(BaseModel):
    """A cancellation, with the reason the recipients are told (required: see
    `check_cancel_reason`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The default lets a missing reason reach the validator, so `{}` is refused with the same
    # Swedish sentence as `{"reason": ""}` instead of a bare "saknas".
    reason: str = Field(default="", max_length=MAX_CANCEL_REASON, validate_default=True)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return check_cancel_reason(value)


M = TypeVar("M", bound=BaseModel)

_MESSAGES = {
    "missing": "saknas",
    "extra_forbidden": "okänt fält",
    "int_type": "ska vara ett heltal",
    "int_parsing": "ska vara ett heltal",
    "bool_type": "ska vara true eller false",
    "bool_parsing": "ska vara true eller false",
    "string_type": "ska vara text",
    "list_type": "ska vara en lista",
    "date_type": "ska vara ett datum (ÅÅÅÅ-MM-DD)",
    "date_parsing": "ska vara ett datum (ÅÅÅÅ-MM-DD)",
    "date_from_datetime_parsing": "ska vara ett datum (ÅÅÅÅ-MM-DD)",
    "model_type": "ska vara ett objekt",
    "model_attributes_type": "ska vara ett objekt",
    "dict_type": "ska vara ett objekt",
}


def _message(item: Any) -> str:
    kind = item.get("type", "")
    ctx = item.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", item.get("msg", "har ett värde som inte går att använda")))
    if kind in ("greater_than_equal", "greater_than"):
        return f"får inte vara mindre än {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"får inte vara större än {ctx.get('le', ctx.get('lt'))}"
    field = next((part for part in reversed(item.get("loc", ())) if isinstance(part, str)), "")
    if kind == "too_short":
        return f"ska ha minst {_counted(ctx.get('min_length'), field)}"
    if kind == "too_long":
        return f"får ha högst {_counted(ctx.get('max_length'), field)}"
    if kind == "string_too_long":
        return f"får vara högst {ctx.get('max_length')} tecken"
    if kind == "string_too_short":
        return "får inte vara tom" if ctx.get("min_length") == 1 else "är för kort"
    return _MESSAGES.get(kind, "har ett värde som inte går att använda")


# What a list field holds, as (one, several), so a length limit reads "minst ett barn".
_LIST_NOUNS = {
    "children": ("ett barn", "barn"),
    "languages": ("ett språk", "språk"),
    "recipients": ("en mottagare", "mottagare"),
}


def _counted(n: object, field: str) -> str:
    one, several = _LIST_NOUNS.get(field, ("en uppgift", "uppgifter"))
    return one if n == 1 else f"{n} {several}"


def field_errors(error: ValidationError) -> list[dict[str, str]]:
    """Turn a pydantic error into [{"field": "children[1].age", "message": "..."}] in Swedish."""
    out: list[dict[str, str]] = []
    for item in error.errors():
        field = ""
        for part in item.get("loc", ()):
            if isinstance(part, int):
                field += f"[{part}]"
            else:
                field += ("." if field else "") + str(part)
        out.append({"field": field or "body", "message": _message(item)})
    return out


def parse(model: type[M], data: object, *, today: date | None = None) -> M:
    """Validate `data` as `model`; bad input raises InvalidInput naming each field."""
    try:
        return model.model_validate(data, context={"today": today} if today else None)
    except ValidationError as exc:
        raise InvalidInput(field_errors(exc)) from None
