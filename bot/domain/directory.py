"""The directory of organisations: loading, validation and the routing rule.

The directory is a TOML file (CONTRACT.md "Directory file"). `check_directory` reports every
problem in one pass so an operator can fix a file in one go; `load_directory` refuses a file with
any problem. `Directory.route` is the one place that decides who is told about an arrival.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from bot.domain.addresses import CONTROL, is_plain_address
from messages.models import OrgKind

__all__ = [
    "MAX_AGE",
    "MIN_AGE",
    "ROUTABLE_KINDS",
    "Directory",
    "DirectoryError",
    "Municipality",
    "OrgKind",
    "Organisation",
    "RoutingError",
    "check_directory",
    "load_directory",
]

# The agreement covers children aged 0-17; an organisation without serves_ages serves them all.
MIN_AGE: Final = 0
MAX_AGE: Final = 17
ALL_AGES: Final = (MIN_AGE, MAX_AGE)

ORG_KINDS: Final[tuple[str, ...]] = get_args(OrgKind)
# Who may be named as a recipient of an arrival; the reception unit gets its copy anyway and
# management is only ever escalated to.
ROUTABLE_KINDS: Final[frozenset[str]] = frozenset(
    {"health_centre", "school", "preschool", "social_services"}
)
# Route order: the health centre first because it has the deadline, then by age.
_ROUTE_ORDER: Final[tuple[OrgKind, ...]] = (
    "health_centre",
    "preschool",
    "school",
    "social_services",
)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# Short code used in case references ("OSD-2026-0001"), so it must be safe in a subject line.
_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,7}$")


class DirectoryError(Exception):
    """The directory file cannot be used; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(self.errors)


class RoutingError(ValueError):
    """An arrival cannot be routed (unknown municipality or organisation, unusable recipient)."""


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError(
            f"{value!r} is not a valid id (lower-case letters a-z, digits and hyphens, "
            "starting with a letter or digit)"
        )
    return value


def _text(value: str) -> str:
    # Names end up in mail headers and chat messages; a stray newline would break both.
    if not value.strip():
        raise ValueError("must not be empty")
    if CONTROL.search(value):
        raise ValueError("must not contain line breaks or control characters")
    return value


Slug = Annotated[str, AfterValidator(_slug)]
Text = Annotated[str, AfterValidator(_text)]


class Municipality(BaseModel):
    """A municipality arrivals are registered in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Slug
    name: Text
    code: str

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CODE.match(value):
            raise ValueError(
                f"{value!r} is not a valid code (2-8 upper-case letters or digits, "
                "starting with a letter)"
            )
        return value


class Organisation(BaseModel):
    """One organisation: who it is, where it is, how it is reached, whom it escalates to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Slug
    municipality: str
    kind: OrgKind
    name: Text
    email: str | None = None
    phone: Text | None = None
    telegram_chats: tuple[StrictInt, ...] = ()
    supervisor: str | None = None
    serves_ages: tuple[StrictInt, StrictInt] | None = None
    default: StrictBool = False

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not is_plain_address(value):
            raise ValueError(
                f"{value!r} is not a single plain e-mail address (name@domain.tld, "
                "no spaces, quotes, angle brackets or lists)"
            )
        return value

    @field_validator("serves_ages")
    @classmethod
    def _ages(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is None:
            return None
        low, high = value
        if not (MIN_AGE <= low <= MAX_AGE and MIN_AGE <= high <= MAX_AGE):
            raise ValueError(f"[{low}, {high}] is not within {MIN_AGE}-{MAX_AGE}")
        if low > high:
            raise ValueError(f"[{low}, {high}] is reversed (first age must be the lower)")
        return value

    @property
    def ages(self) -> tuple[int, int]:
        """The inclusive age range served; all ages 0-17 when `serves_ages` is not set."""
        return self.serves_ages if self.serves_ages is not None else ALL_AGES

    def serves_age(self, age: int) -> bool:
        """Whether a child of `age` is within this organisation's age range."""
        low, high = self.ages
        return low <= age <= high


class Directory(BaseModel):
    """Every municipality and organisation of the region, by id, in file order."""

    model_config = ConfigDict(frozen=True)

    region_name: str
    municipalities: dict[str, Municipality]
    organisations: dict[str, Organisation]
    closed_days: tuple[date, ...] = ()

    def organisation(self, org_id: str) -> Organisation:
        """Return the organisation with this id; KeyError if there is none."""
        try:
            return self.organisations[org_id]
        except KeyError:
            raise KeyError(f"unknown organisation {org_id!r}") from None

    def municipality(self, municipality_id: str) -> Municipality:
        """Return the municipality with this id; KeyError if there is none."""
        try:
            return self.municipalities[municipality_id]
        except KeyError:
            raise KeyError(f"unknown municipality {municipality_id!r}") from None

    def organisations_in(
        self, municipality: str, kind: OrgKind | None = None
    ) -> tuple[Organisation, ...]:
        """The organisations of a municipality (optionally only of one kind), in file order."""
        return tuple(
            org
            for org in self.organisations.values()
            if org.municipality == municipality and (kind is None or org.kind == kind)
        )

    def default_for(
        self, municipality: str, kind: OrgKind, age: int | None = None
    ) -> Organisation | None:
        """The municipality's default organisation of `kind` serving `age`.

        With `age` None, the first default of that kind whatever ages it serves. None if the
        municipality has no such default.
        """
        for org in self.organisations_in(municipality, kind):
            if org.default and (age is None or org.serves_age(age)):
                return org
        return None

    def reception_unit(self, municipality: str) -> Organisation:
        """The municipality's default reception unit; KeyError if it has none."""
        org = self.default_for(municipality, "reception_unit")
        if org is None:
            raise KeyError(f"municipality {municipality!r} has no default reception unit")
        return org

    def route(
        self,
        municipality: str,
        ages: Sequence[int],
        unaccompanied: bool,
        explicit: Sequence[str] | None = None,
    ) -> tuple[Organisation, ...]:
        """Who is told about an arrival (CONTRACT.md "Routing"); the reception unit is not.

        Without `explicit`: the default health centre of the municipality, for each child's age
        the default preschool (1-5) and school (6-17) serving it, and social services if the
        child is unaccompanied — de-duplicated, ordered health centre, preschool(s), school(s),
        social services, and within a kind in file order. With `explicit`: exactly those
        organisations, de-duplicated, in the order given. Raises RoutingError naming what is
        wrong.
        """
        if explicit is not None:
            return self._explicit_recipients(explicit)
        if municipality not in self.municipalities:
            raise RoutingError(f"unknown municipality {municipality!r}")
        for age in ages:
            if not MIN_AGE <= age <= MAX_AGE:
                raise RoutingError(f"age {age} is outside {MIN_AGE}-{MAX_AGE}")

        chosen: dict[OrgKind, list[Organisation]] = {kind: [] for kind in _ROUTE_ORDER}

        def add(org: Organisation | None) -> None:
            if org is not None and org not in chosen[org.kind]:
                chosen[org.kind].append(org)

        for age in ages:
            add(self.default_for(municipality, "health_centre", age))
            if 1 <= age <= 5:
                add(self.default_for(municipality, "preschool", age))
            elif 6 <= age <= MAX_AGE:
                add(self.default_for(municipality, "school", age))
        if not chosen["health_centre"]:
            # The health centre is told always, even if no default covers these ages exactly.
            add(self.default_for(municipality, "health_centre"))
        if not chosen["health_centre"]:
            raise RoutingError(f"municipality {municipality!r} has no default health centre")
        if unaccompanied:
            add(self._social_services(municipality, ages))

        # Within a kind, file order: the result must not depend on the order children are listed.
        position = {org_id: i for i, org_id in enumerate(self.organisations)}
        return tuple(
            org
            for kind in _ROUTE_ORDER
            for org in sorted(chosen[kind], key=lambda o: position[o.id])
        )

    def _social_services(self, municipality: str, ages: Sequence[int]) -> Organisation:
        for age in ages:
            org = self.default_for(municipality, "social_services", age)
            if org is not None:
                return org
        org = self.default_for(municipality, "social_services")
        if org is not None:
            return org
        candidates = self.organisations_in(municipality, "social_services")
        if len(candidates) == 1:
            return candidates[0]
        # An unaccompanied child must never go unreported to social services: refuse loudly.
        if not candidates:
            raise RoutingError(f"municipality {municipality!r} has no social services")
        raise RoutingError(
            f"municipality {municipality!r} has several social services and none is default"
        )

    def _explicit_recipients(self, explicit: Sequence[str]) -> tuple[Organisation, ...]:
        if not explicit:
            raise RoutingError("no recipients named")
        result: list[Organisation] = []
        for org_id in explicit:
            org = self.organisations.get(org_id)
            if org is None:
                raise RoutingError(f"unknown organisation {org_id!r}")
            if org.kind not in ROUTABLE_KINDS:
                raise RoutingError(
                    f"organisation {org_id!r} is of kind {org.kind} and cannot be a recipient"
                )
            if org not in result:
                result.append(org)
        return tuple(result)


def load_directory(path: Path) -> Directory:
    """Read and validate a directory file; DirectoryError lists every problem found."""
    directory, errors = _parse(path)
    if errors or directory is None:
        raise DirectoryError(errors or [f"{path}: unusable directory"])
    return directory


def check_directory(path: Path) -> list[str]:
    """Every problem in a directory file, one message each; empty when the file is fine."""
    return _parse(path)[1]


# --- parsing ------------------------------------------------------------------------------------

_M = TypeVar("_M", bound=BaseModel)

_TOP_LEVEL: Final = frozenset({"region", "municipalities", "organisations"})
_REGION_FIELDS: Final = frozenset({"name", "closed_days"})


def _parse(path: Path) -> tuple[Directory | None, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read file: {exc}"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends with "(at line N, column M)".
        return None, [f"{path}: TOML syntax error: {exc}"]

    errors: list[str] = []
    for key in sorted(set(data) - _TOP_LEVEL):
        errors.append(
            f"{key}: unknown top-level entry (expected region, municipalities, organisations)"
        )

    region_name, closed_days = _parse_region(data.get("region"), errors)
    raw_municipalities = _array_of_tables(data, "municipalities", errors)
    raw_organisations = _array_of_tables(data, "organisations", errors)

    municipalities = _validate_entries(Municipality, "municipalities", raw_municipalities, errors)
    organisations = _validate_entries(Organisation, "organisations", raw_organisations, errors)

    _check_municipalities(raw_municipalities, errors)
    _check_organisations(raw_municipalities, raw_organisations, organisations, errors)

    if errors or region_name is None:
        return None, sorted(errors, key=_section_order)
    directory = Directory(
        region_name=region_name,
        municipalities={m.id: m for m in municipalities.values()},
        organisations={o.id: o for o in organisations.values()},
        closed_days=closed_days,
    )
    return directory, []


def _parse_region(raw: object, errors: list[str]) -> tuple[str | None, tuple[date, ...]]:
    if raw is None:
        errors.append("region: missing table [region]")
        return None, ()
    if not isinstance(raw, dict):
        errors.append("region: must be a table ([region])")
        return None, ()
    for key in sorted(set(raw) - _REGION_FIELDS):
        errors.append(f'region: unknown field "{key}"')

    name = raw.get("name")
    if name is None:
        errors.append('region: missing field "name"')
    elif not isinstance(name, str) or not name.strip() or CONTROL.search(name):
        errors.append('region: field "name" must be a non-empty one-line string')
        name = None

    days: list[date] = []
    raw_days = raw.get("closed_days", [])
    if not isinstance(raw_days, list):
        errors.append('region: field "closed_days" must be a list of dates (e.g. [2026-12-28])')
    else:
        for i, day in enumerate(raw_days):
            # datetime is a date subclass; a time of day has no meaning for a closed day.
            if isinstance(day, date) and not isinstance(day, datetime):
                days.append(day)
            else:
                errors.append(
                    f'region: field "closed_days[{i}]" must be a TOML date like 2026-12-28, '
                    f"got {day!r}"
                )
    return name, tuple(sorted(set(days)))


_PLACE = re.compile(r"^(region|municipalities|organisations)(?:\[(\d+)\])?")
_SECTIONS: Final = ("region", "municipalities", "organisations")


def _section_order(error: str) -> tuple[int, int]:
    """Sort key putting errors in file order: top level, region, municipalities, organisations."""
    match = _PLACE.match(error)
    if match is None:
        return (-1, 0)
    return (_SECTIONS.index(match.group(1)), int(match.group(2) or 0))


def _array_of_tables(data: dict[str, Any], key: str, errors: list[str]) -> list[Any]:
    raw = data.get(key)
    if raw is None:
        errors.append(f"{key}: missing (add at least one [[{key}]] table)")
        return []
    if not isinstance(raw, list) or not raw:
        errors.append(f"{key}: must be a non-empty array of tables ([[{key}]])")
        return []
    return raw


def _place(section: str, index: int, raw: object) -> str:
    ident = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(ident, str) and ident:
        return f"{section}[{index}] ({ident})"
    return f"{section}[{index}]"


def _validate_entries(
    model: type[_M], section: str, raws: list[Any], errors: list[str]
) -> dict[int, _M]:
    valid: dict[int, _M] = {}
    for index, raw in enumerate(raws):
        place = _place(section, index, raw)
        if not isinstance(raw, dict):
            errors.append(f"{place}: must be a table")
            continue
        try:
            valid[index] = model.model_validate(raw)
        except ValidationError as exc:
            errors.extend(f"{place}: {_describe(err)}" for err in exc.errors())
    return valid


def _describe(err: ErrorDetails) -> str:
    loc = err["loc"]
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    field = field.lstrip(".")
    kind = err["type"]
    if kind == "missing":
        return f'missing field "{field}"'
    if kind == "extra_forbidden":
        return f'unknown field "{field}"'
    if kind == "literal_error" and loc and loc[0] == "kind":
        return f"unknown kind {err['input']!r} (expected one of: {', '.join(ORG_KINDS)})"
    if kind == "value_error":
        return f'field "{field}": {err.get("ctx", {}).get("error", err["msg"])}'
    if loc and loc[0] == "telegram_chats":
        return f'field "{field}": a Telegram chat id must be an integer, got {err["input"]!r}'
    return f'field "{field}": {err["msg"].lower()}, got {err["input"]!r}'


def _duplicates(values: Iterable[tuple[int, object]]) -> dict[int, int]:
    """Map the index of each repeated value to the index where it first appeared."""
    first: dict[object, int] = {}
    repeated: dict[int, int] = {}
    for index, value in values:
        if value in first:
            repeated[index] = first[value]
        else:
            first[value] = index
    return repeated


def _raw_str(raw: object, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def _check_municipalities(raws: list[Any], errors: list[str]) -> None:
    ids = [(i, _raw_str(raw, "id")) for i, raw in enumerate(raws)]
    for index, first in _duplicates((i, v) for i, v in ids if v is not None).items():
        errors.append(
            f"{_place('municipalities', index, raws[index])}: duplicate id, "
            f"already used by municipalities[{first}]"
        )
    codes = [(i, _raw_str(raw, "code")) for i, raw in enumerate(raws)]
    for index, first in _duplicates((i, v) for i, v in codes if v is not None).items():
        errors.append(
            f"{_place('municipalities', index, raws[index])}: duplicate code "
            f"{_raw_str(raws[index], 'code')!r}, already used by "
            f"{_place('municipalities', first, raws[first])}"
        )


def _check_organisations(
    raw_municipalities: list[Any],
    raws: list[Any],
    valid: dict[int, Organisation],
    errors: list[str],
) -> None:
    # References are checked on the raw entries, so an entry refused for one bad field still has
    # its references checked, and is still known wherever it is named.
    municipality_ids = {
        ident for raw in raw_municipalities if (ident := _raw_str(raw, "id")) is not None
    }
    raw_ids = [(i, _raw_str(raw, "id")) for i, raw in enumerate(raws)]
    raw_kinds: dict[str, str | None] = {}
    for raw in raws:
        ident = _raw_str(raw, "id")
        if ident is not None:
            raw_kinds.setdefault(ident, _raw_str(raw, "kind"))

    for index, first in _duplicates((i, v) for i, v in raw_ids if v is not None).items():
        errors.append(
            f"{_place('organisations', index, raws[index])}: duplicate id, "
            f"already used by organisations[{first}]"
        )

    for index, raw in enumerate(raws):
        place = _place("organisations", index, raw)
        municipality = _raw_str(raw, "municipality")
        if municipality is not None and municipality not in municipality_ids:
            errors.append(f'{place}: municipality "{municipality}" is not a municipality')
        supervisor = _raw_str(raw, "supervisor")
        if supervisor is None:
            continue
        if supervisor == _raw_str(raw, "id"):
            errors.append(f"{place}: an organisation cannot be its own supervisor")
        elif supervisor not in raw_kinds:
            errors.append(f'{place}: supervisor "{supervisor}" is not an organisation')
        elif raw_kinds[supervisor] != "management":
            errors.append(
                f'{place}: supervisor "{supervisor}" is not an organisation of kind management'
            )

    _check_required_defaults(raw_municipalities, raws, errors)
    _check_overlapping_defaults(raws, valid, errors)


def _check_required_defaults(
    raw_municipalities: list[Any], raws: list[Any], errors: list[str]
) -> None:
    # Read from the raw entries: an entry already refused for another field should not also
    # make its municipality look as if it had no default.
    present: set[tuple[str, str]] = set()
    for raw in raws:
        if isinstance(raw, dict) and raw.get("default") is True:
            municipality, kind = _raw_str(raw, "municipality"), _raw_str(raw, "kind")
            if municipality is not None and kind is not None:
                present.add((municipality, kind))
    for index, raw in enumerate(raw_municipalities):
        ident = _raw_str(raw, "id")
        if ident is None:
            continue
        for kind, label in (
            ("reception_unit", "reception unit"),
            ("health_centre", "health centre"),
        ):
            if (ident, kind) not in present:
                errors.append(
                    f"{_place('municipalities', index, raw)}: no default {label} "
                    f'(an organisation with municipality = "{ident}", kind = "{kind}", '
                    "default = true)"
                )


def _check_overlapping_defaults(
    raws: list[Any], valid: dict[int, Organisation], errors: list[str]
) -> None:
    seen: dict[tuple[str, str], list[tuple[int, Organisation]]] = {}
    for index, org in valid.items():
        if not org.default:
            continue
        group = seen.setdefault((org.municipality, org.kind), [])
        for other_index, other in group:
            low = max(org.ages[0], other.ages[0])
            high = min(org.ages[1], other.ages[1])
            if low <= high:
                errors.append(
                    f"{_place('organisations', index, raws[index])}: overlapping defaults: "
                    f'default {org.kind} of "{org.municipality}" for ages {low}-{high}, '
                    f"as is {_place('organisations', other_index, raws[other_index])}"
                )
        group.append((index, org))
