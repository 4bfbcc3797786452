"""The directory file (CONTRACT.md "Directory file"): reading the TOML and checking it whole.

`check_directory` reports every problem in one pass so an operator can fix a file in one go;
`load_directory` refuses a file with any problem. The model and the routing rule are
bot/domain/directory.py.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bot.domain.addresses import CONTROL
from bot.domain.directory import ORG_KINDS, Directory, Municipality, Organisation

__all__ = ["DirectoryError", "check_directory", "load_directory"]


class DirectoryError(Exception):
    """The directory file cannot be used; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors)
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(self.errors)


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
    if kind == "value_error" and not field:  # a rule across fields says which
        return str(err.get("ctx", {}).get("error", err["msg"]))
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

    # One mailbox, one reception unit: two would race each other for its messages.
    urls = [(i, _raw_str(raw, "imap_url")) for i, raw in enumerate(raws)]
    for index, first in _duplicates((i, v) for i, v in urls if v is not None).items():
        errors.append(
            f"{_place('organisations', index, raws[index])}: the same imap_url as "
            f"{_place('organisations', first, raws[first])}"
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
