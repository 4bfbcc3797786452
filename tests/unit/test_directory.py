"""The directory file: validation that reports everything at once, lookups, and routing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.domain.directory import Directory, Organisation, RoutingError
from bot.runtime.directory_file import DirectoryError, check_directory, load_directory

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "directory.example.toml"
BROKEN = Path(__file__).resolve().parents[1] / "data" / "directory.broken.toml"

JAMTLAND = {
    "berg": ("Berg", "BRG"),
    "bracke": ("Bräcke", "BRA"),
    "harjedalen": ("Härjedalen", "HJD"),
    "krokom": ("Krokom", "KRK"),
    "ragunda": ("Ragunda", "RGA"),
    "stromsund": ("Strömsund", "STR"),
    "are": ("Åre", "ARE"),
    "ostersund": ("Östersund", "OSD"),
}

# A valid one-municipality directory; tests append organisations to it.
BASE = """
[region]
name = "Testlän"

[[municipalities]]
id = "alfa"
name = "Alfa"
code = "ALF"

[[organisations]]
id = "ledning"
municipality = "alfa"
kind = "management"
name = "Alfa kommun, ledningen"

[[organisations]]
id = "mottagning"
municipality = "alfa"
kind = "reception_unit"
name = "Alfa kommun, mottagningsenheten"
email = "mottagning@alfa.example.se"
supervisor = "ledning"
default = true

[[organisations]]
id = "hc"
municipality = "alfa"
kind = "health_centre"
name = "Hälsocentralen Alfa"
email = "hc@alfa.example.se"
supervisor = "ledning"
default = true
"""


def org(org_id: str, kind: str, **fields: object) -> str:
    """One [[organisations]] table in municipality alfa, as TOML."""
    lines = [
        "[[organisations]]",
        f'id = "{org_id}"',
        'municipality = "alfa"',
        f'kind = "{kind}"',
        f'name = "{org_id} name"',
    ]
    for key, value in fields.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value!r}".replace("(", "[").replace(")", "]"))
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, *tables: str, base: str = BASE) -> Path:
    path = tmp_path / "directory.toml"
    path.write_text(base + "\n" + "\n".join(tables), encoding="utf-8")
    return path


def load(tmp_path: Path, *tables: str) -> Directory:
    return load_directory(write(tmp_path, *tables))


# --- the example directory -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def example() -> Directory:
    return load_directory(EXAMPLE)


def test_the_example_directory_passes_validation() -> None:
    assert check_directory(EXAMPLE) == []


def test_the_example_directory_covers_the_eight_municipalities_of_jamtland(
    example: Directory,
) -> None:
    assert example.region_name == "Jämtlands län"
    assert {m.id: (m.name, m.code) for m in example.municipalities.values()} == JAMTLAND


@pytest.mark.parametrize("municipality", sorted(JAMTLAND))
def test_every_example_municipality_has_a_full_set_of_defaults(
    example: Directory, municipality: str
) -> None:
    assert example.reception_unit(municipality).phone
    assert example.default_for(municipality, "health_centre") is not None
    school = example.default_for(municipality, "school")
    preschool = example.default_for(municipality, "preschool")
    assert school is not None
    assert school.serves_ages == (6, 17)
    assert preschool is not None
    assert preschool.serves_ages == (1, 5)
    assert example.default_for(municipality, "social_services") is not None
    assert example.organisations_in(municipality, "management")


def test_example_organisations_are_fictional_and_escalate_to_management(
    example: Directory,
) -> None:
    for o in example.organisations.values():
        assert o.email is not None
        assert o.email.endswith("example.se"), o.id
        assert o.telegram_chats == (), o.id
        if o.kind != "management":
            assert o.supervisor is not None, o.id
            assert example.organisation(o.supervisor).kind == "management", o.id


# --- validation ----------------------------------------------------------------------------------

BROKEN_ERRORS = [
    "extras: unknown top-level entry (expected region, municipalities, organisations)",
    'region: unknown field "colour"',
    "region: field \"closed_days[1]\" must be a TOML date like 2026-12-28, got '2026-12-29'",
    "municipalities[1] (alfa): duplicate id, already used by municipalities[0]",
    "municipalities[2] (Beta Kommun): field \"id\": 'Beta Kommun' is not a valid id "
    "(lower-case letters a-z, digits and hyphens, starting with a letter or digit)",
    "municipalities[2] (Beta Kommun): duplicate code 'ALF', already used by "
    "municipalities[0] (alfa)",
    'municipalities[3] (gamma): missing field "code"',
    'municipalities[3] (gamma): unknown field "mayor"',
    "municipalities[3] (gamma): no default reception unit (an organisation with "
    'municipality = "gamma", kind = "reception_unit", default = true)',
    "municipalities[3] (gamma): no default health centre (an organisation with "
    'municipality = "gamma", kind = "health_centre", default = true)',
    'organisations[1] (alfa-mottagning): field "email": \'Mottagning '
    "<mottagning@alfa.example.se>' is not a single plain e-mail address (name@domain.tld, "
    "no spaces, quotes, angle brackets or lists)",
    "organisations[2] (alfa-hc): field \"email\": 'hc@alfa' is not a single plain e-mail "
    "address (name@domain.tld, no spaces, quotes, angle brackets or lists)",
    'organisations[2] (alfa-hc): supervisor "alfa-mottagning" is not an organisation of kind '
    "management",
    'organisations[3] (alfa-skola): supervisor "ingen-sadan" is not an organisation',
    'organisations[4] (alfa-skola-2): overlapping defaults: default school of "alfa" for ages '
    "13-17, as is organisations[3] (alfa-skola)",
    'organisations[5] (alfa-forskola): field "serves_ages": [5, 1] is reversed (first age must '
    "be the lower)",
    "organisations[6] (alfa-fritids): unknown kind 'youth_club' (expected one of: "
    "reception_unit, health_centre, school, preschool, social_services, management)",
    'organisations[7] (alfa-social): field "telegram_chats[1]": a Telegram chat id must be an '
    "integer, got '-1002'",
    'organisations[7] (alfa-social): field "serves_ages": [0, 19] is not within 0-17',
    'organisations[7] (alfa-social): unknown field "fax"',
    "organisations[8] (alfa-hc): duplicate id, already used by organisations[2]",
    'organisations[9] (delta-mottagning): municipality "delta" is not a municipality',
    'organisations[10] (gamma-mottagning): missing field "name"',
    'organisations[10] (gamma-mottagning): field "default": input should be a valid boolean, '
    "got 'yes'",
]


@pytest.mark.parametrize("expected", BROKEN_ERRORS)
def test_check_reports_every_error_in_a_broken_directory(expected: str) -> None:
    assert expected in check_directory(BROKEN)


def test_check_lists_the_errors_in_file_order_and_nothing_else() -> None:
    errors = check_directory(BROKEN)
    # The municipality with an invalid id has no defaults either; that is reported too.
    extra = [e for e in errors if e not in BROKEN_ERRORS]
    assert all(e.startswith("municipalities[2] (Beta Kommun): no default") for e in extra)
    assert len(extra) == 2
    assert [e for e in errors if e in BROKEN_ERRORS] == BROKEN_ERRORS


def test_load_refuses_a_broken_directory_listing_every_error_one_per_line() -> None:
    with pytest.raises(DirectoryError) as caught:
        load_directory(BROKEN)
    assert caught.value.errors == check_directory(BROKEN)
    assert str(caught.value).splitlines() == caught.value.errors


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text('[region]\nname = "Testlän"\ncode = \n', encoding="utf-8")
    [error] = check_directory(path)
    assert "TOML syntax error" in error
    assert "line 3" in error


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    [error] = check_directory(tmp_path / "nowhere.toml")
    assert "cannot read file" in error


def test_an_empty_file_lists_every_missing_part(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text("", encoding="utf-8")
    assert check_directory(path) == [
        "region: missing table [region]",
        "municipalities: missing (add at least one [[municipalities]] table)",
        "organisations: missing (add at least one [[organisations]] table)",
    ]


def test_the_minimal_directory_is_valid(tmp_path: Path) -> None:
    assert check_directory(write(tmp_path)) == []


def test_a_municipality_needs_a_default_reception_unit_and_health_centre(tmp_path: Path) -> None:
    base = BASE.replace("default = true\n", "")
    errors = check_directory(write(tmp_path, base=base))
    assert errors == [
        'municipalities[0] (alfa): no default reception unit (an organisation with municipality = "alfa", kind = "reception_unit", default = true)',  # noqa: E501
        'municipalities[0] (alfa): no default health centre (an organisation with municipality = "alfa", kind = "health_centre", default = true)',  # noqa: E501
    ]


def test_supervisor_must_be_of_kind_management(tmp_path: Path) -> None:
    path = write(tmp_path, org("alfa-skola", "school", supervisor="hc"))
    assert check_directory(path) == [
        'organisations[3] (alfa-skola): supervisor "hc" is not an organisation of kind management'
    ]


def test_an_organisation_cannot_supervise_itself(tmp_path: Path) -> None:
    path = write(tmp_path, org("boss", "management", supervisor="boss"))
    assert check_directory(path) == [
        "organisations[3] (boss): an organisation cannot be its own supervisor"
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((6, 12), (13, 17)),
        ((6, 6), (7, 17)),
    ],
)
def test_defaults_of_one_kind_may_split_the_ages(
    tmp_path: Path, first: tuple[int, int], second: tuple[int, int]
) -> None:
    path = write(
        tmp_path,
        org("s1", "school", serves_ages=first, default=True),
        org("s2", "school", serves_ages=second, default=True),
    )
    assert check_directory(path) == []


@pytest.mark.parametrize(
    ("first", "second", "overlap"),
    [
        ((6, 12), (12, 17), "12-12"),
        ((6, 17), None, "6-17"),  # no serves_ages means all ages
        (None, None, "0-17"),
    ],
)
def test_overlapping_defaults_are_refused(
    tmp_path: Path,
    first: tuple[int, int] | None,
    second: tuple[int, int] | None,
    overlap: str,
) -> None:
    def school(org_id: str, ages: tuple[int, int] | None) -> str:
        return org(org_id, "school", default=True, **({"serves_ages": ages} if ages else {}))

    path = write(tmp_path, school("s1", first), school("s2", second))
    assert check_directory(path) == [
        f'organisations[4] (s2): overlapping defaults: default school of "alfa" for ages '
        f"{overlap}, as is organisations[3] (s1)"
    ]


def test_non_default_organisations_may_overlap(tmp_path: Path) -> None:
    path = write(tmp_path, org("s1", "school", default=True), org("s2", "school"))
    assert check_directory(path) == []


@pytest.mark.parametrize(
    "address",
    [
        "mottagning@alfa.example.se",
        "first.last+tag@sub.alfa.example.se",
        "hc-lit@regionjh.example.se",
    ],
)
def test_plain_addresses_are_accepted(address: str) -> None:
    o = Organisation(id="x", municipality="alfa", kind="school", name="X", email=address)
    assert o.email == address


@pytest.mark.parametrize(
    "address",
    [
        "mottagning@alfa",  # no dot in the domain
        "mottagning alfa@alfa.example.se",
        "mottagning@alfa.example.se\r\nBcc: x@evil.example",
        "Alfa <mottagning@alfa.example.se>",
        '"alfa"@alfa.example.se',
        "a@alfa.example.se, b@alfa.example.se",
        "a@alfa.example.se;b@alfa.example.se",
        "a@@alfa.example.se",
        "a@.example.se",
        "a@example.se.",
        "@alfa.example.se",
        "",
    ],
)
def test_malformed_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValidationError, match="e-mail address"):
        Organisation(id="x", municipality="alfa", kind="school", name="X", email=address)


@pytest.mark.parametrize("ident", ["Alfa", "alfa skola", "-alfa", "alfa_skola", "ålfa", ""])
def test_ids_must_be_slugs(ident: str) -> None:
    with pytest.raises(ValidationError, match="not a valid id"):
        Organisation(id=ident, municipality="alfa", kind="school", name="X")


def test_region_closed_days_are_read_as_dates(tmp_path: Path) -> None:
    base = BASE.replace(
        'name = "Testlän"', 'name = "Testlän"\nclosed_days = [2026-12-29, 2026-12-28]'
    )
    directory = load_directory(write(tmp_path, base=base))
    assert directory.closed_days == (date(2026, 12, 28), date(2026, 12, 29))


def test_models_are_frozen(tmp_path: Path) -> None:
    directory = load(tmp_path)
    with pytest.raises(ValidationError):
        directory.organisation("hc").name = "changed"  # type: ignore[misc]


# --- lookups -------------------------------------------------------------------------------------


def test_lookups(example: Directory) -> None:
    assert example.organisation("ostersund-skola").kind == "school"
    assert example.municipality("are").name == "Åre"
    assert example.reception_unit("krokom").id == "krokom-mottagning"
    assert [o.kind for o in example.organisations_in("berg")] == [
        "management",
        "reception_unit",
        "health_centre",
        "preschool",
        "school",
        "social_services",
    ]
    assert [o.id for o in example.organisations_in("berg", "school")] == ["berg-skola"]
    with pytest.raises(KeyError, match="nowhere"):
        example.organisation("nowhere")
    with pytest.raises(KeyError, match="nowhere"):
        example.municipality("nowhere")


def test_default_for_respects_the_age(example: Directory) -> None:
    school = example.default_for("ostersund", "school", 9)
    assert school is not None
    assert school.id == "ostersund-skola"
    assert example.default_for("ostersund", "school", 4) is None
    preschool = example.default_for("ostersund", "preschool", 4)
    assert preschool is not None
    assert preschool.id == "ostersund-forskola"
    assert example.default_for("ostersund", "preschool", 0) is None
    assert example.default_for("ostersund", "school") == school


# --- routing -------------------------------------------------------------------------------------


def ids(orgs: tuple[Organisation, ...]) -> list[str]:
    return [o.id for o in orgs]


@pytest.mark.parametrize(
    ("ages", "unaccompanied", "expected"),
    [
        ([9, 4], False, ["hc-lugnvik", "ostersund-forskola", "ostersund-skola"]),
        ([4, 9], False, ["hc-lugnvik", "ostersund-forskola", "ostersund-skola"]),
        ([0], False, ["hc-lugnvik"]),  # an infant: the health centre only
        ([1], False, ["hc-lugnvik", "ostersund-forskola"]),
        ([5, 6], False, ["hc-lugnvik", "ostersund-forskola", "ostersund-skola"]),
        ([17], False, ["hc-lugnvik", "ostersund-skola"]),
        ([16], True, ["hc-lugnvik", "ostersund-skola", "ostersund-socialtjanst"]),
        ([8, 8, 12], False, ["hc-lugnvik", "ostersund-skola"]),  # told once
    ],
)
def test_an_arrival_goes_to_the_defaults_for_the_childrens_ages(
    example: Directory, ages: list[int], unaccompanied: bool, expected: list[str]
) -> None:
    assert ids(example.route("ostersund", ages, unaccompanied)) == expected


def test_the_reception_unit_is_not_a_recipient(example: Directory) -> None:
    routed = example.route("berg", [3, 10], True)
    assert all(o.kind != "reception_unit" for o in routed)
    assert all(o.municipality == "berg" for o in routed)


def test_each_age_goes_to_the_school_serving_it(tmp_path: Path) -> None:
    directory = load(
        tmp_path,
        org("lagstadiet", "school", serves_ages=(6, 12), default=True),
        org("hogstadiet", "school", serves_ages=(13, 17), default=True),
        org("forskolan", "preschool", serves_ages=(1, 5), default=True),
    )
    assert ids(directory.route("alfa", [15], False)) == ["hc", "hogstadiet"]
    assert ids(directory.route("alfa", [15, 3, 8], False)) == [
        "hc",
        "forskolan",
        "lagstadiet",
        "hogstadiet",
    ]


def test_unaccompanied_goes_to_the_only_social_services_even_if_not_default(
    tmp_path: Path,
) -> None:
    directory = load(tmp_path, org("soc", "social_services"))
    assert ids(directory.route("alfa", [16], True)) == ["hc", "soc"]


def test_unaccompanied_without_social_services_is_refused(tmp_path: Path) -> None:
    directory = load(tmp_path)
    with pytest.raises(RoutingError, match="no social services"):
        directory.route("alfa", [16], True)
    assert ids(directory.route("alfa", [16], False)) == ["hc"]


def test_health_centre_is_told_even_if_no_default_covers_the_age(tmp_path: Path) -> None:
    base = BASE.replace(
        'email = "hc@alfa.example.se"', 'email = "hc@alfa.example.se"\nserves_ages = [0, 5]'
    )
    directory = load_directory(write(tmp_path, base=base))
    assert ids(directory.route("alfa", [12], False)) == ["hc"]


def test_explicit_recipients_replace_the_defaults(example: Directory) -> None:
    routed = example.route(
        "ostersund",
        [9],
        True,
        explicit=["ostersund-skola", "hc-jarpen", "ostersund-skola"],
    )
    assert ids(routed) == ["ostersund-skola", "hc-jarpen"]


@pytest.mark.parametrize("explicit", [["nowhere"], ["ostersund-mottagning"], ["ostersund-ledning"]])
def test_explicit_recipients_must_exist_and_be_recipients(
    example: Directory, explicit: list[str]
) -> None:
    with pytest.raises(RoutingError, match=explicit[0]):
        example.route("ostersund", [9], False, explicit=["hc-lugnvik", *explicit])


def test_an_empty_explicit_list_is_refused(example: Directory) -> None:
    with pytest.raises(RoutingError, match="no recipients"):
        example.route("ostersund", [9], False, explicit=[])


@pytest.mark.parametrize(("municipality", "ages"), [("nowhere", [9]), ("ostersund", [18])])
def test_unroutable_arrivals_are_refused(
    example: Directory, municipality: str, ages: list[int]
) -> None:
    with pytest.raises(RoutingError):
        example.route(municipality, ages, False)


# --- a reception unit's own watched mailbox ------------------------------------------------------

MAILBOX = {
    "imap_url": "imaps://ankomst@imap.alfa.example.se:993/INBOX",
    "imap_password_env": "ANKOMST_IMAP_PASSWORD_ALFA",
}


def test_a_reception_unit_may_name_its_mailbox_without_the_password(tmp_path: Path) -> None:
    directory = load(tmp_path, org("mottagning-2", "reception_unit", **MAILBOX))
    unit = directory.organisation("mottagning-2")
    assert unit.imap_url == MAILBOX["imap_url"]
    assert unit.imap_password_env == "ANKOMST_IMAP_PASSWORD_ALFA"


def test_a_mailbox_url_with_a_password_is_refused_naming_the_organisation(
    tmp_path: Path,
) -> None:
    url = "imaps://ankomst:hemligt@imap.alfa.example.se:993/INBOX"
    fields = {**MAILBOX, "imap_url": url}
    errors = check_directory(write(tmp_path, org("mottagning-2", "reception_unit", **fields)))
    assert errors == [
        'organisations[3] (mottagning-2): field "imap_url": must not contain a password '
        "(keep it out of the directory file: name the environment variable holding it in "
        "imap_password_env)"
    ]
    assert "hemligt" not in "\n".join(errors)


def test_only_a_reception_unit_may_have_a_mailbox(tmp_path: Path) -> None:
    errors = check_directory(write(tmp_path, org("skola", "school", **MAILBOX)))
    assert errors == [
        'organisations[3] (skola): field "imap_url": only a reception unit may have a watched '
        "mailbox, not a school"
    ]


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"imap_url": MAILBOX["imap_url"]},
            "imap_url and imap_password_env go together: name both or neither",
        ),
        (
            {**MAILBOX, "imap_password_env": "ANKOMST-PASSWORD"},
            "field \"imap_password_env\": 'ANKOMST-PASSWORD' is not the name of an environment "
            "variable (letters, digits and _)",
        ),
        (
            {**MAILBOX, "imap_url": "https://ankomst@imap.alfa.example.se/INBOX"},
            'field "imap_url": must start with imaps:// or imap:// (STARTTLS)',
        ),
        (
            {**MAILBOX, "imap_url": "imaps://imap.alfa.example.se/INBOX"},
            'field "imap_url": must name the user (imaps://user@host:993/INBOX)',
        ),
    ],
)
def test_a_mailbox_entry_must_be_complete(
    tmp_path: Path, fields: dict[str, str], error: str
) -> None:
    errors = check_directory(write(tmp_path, org("mottagning-2", "reception_unit", **fields)))
    assert errors == [f"organisations[3] (mottagning-2): {error}"]


def test_two_units_cannot_watch_the_same_mailbox(tmp_path: Path) -> None:
    errors = check_directory(
        write(
            tmp_path,
            org("mottagning-2", "reception_unit", **MAILBOX),
            org("mottagning-3", "reception_unit", **MAILBOX),
        )
    )
    assert errors == [
        "organisations[4] (mottagning-3): the same imap_url as organisations[3] (mottagning-2)"
    ]
