"""The directory of organisations: the model (municipalities, organisations and their fields'
rules) and the routing rule.

`Directory.route` is the one place that decides who is told about an arrival. Reading the TOML
file, with its whole-file checks, is bot/runtime/directory_file.py.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import date
from typing import Annotated, Final, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.domain.actor import Role
from bot.domain.addresses import CONTROL, is_plain_address
from messages.models import OrgKind

__all__ = [
    "MAX_AGE",
    "MIN_AGE",
    "ROUTABLE_KINDS",
    "Directory",
    "Municipality",
    "OrgKind",
    "Organisation",
    "RoutingError",
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
# The name of an environment variable, as a shell would accept it.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    # The personal work addresses of those who lead the organisation (rektor, verksamhetschef,
    # enhetschef): a sign-in link mailed to one of them signs in as the organisation's
    # supervisor, who may escalate; `email`, the functional mailbox, signs in as a member.
    supervisor_emails: tuple[str, ...] = ()
    serves_ages: tuple[StrictInt, StrictInt] | None = None
    default: StrictBool = False
    # A reception unit's own watched mailbox of Migrationsverket's notices, besides
    # ANKOMST_IMAP_URL: the URL without its password (the directory file is no place for a
    # secret), and the name of the environment variable that holds the password.
    imap_url: str | None = None
    imap_password_env: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not is_plain_address(value):
            raise ValueError(
                f"{value!r} is not a single plain e-mail address (name@domain.tld, "
                "no spaces, quotes, angle brackets or lists)"
            )
        return value

    @field_validator("supervisor_emails")
    @classmethod
    def _supervisor_emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            if not is_plain_address(address):
                raise ValueError(
                    f"{address!r} is not a single plain e-mail address (name@domain.tld, "
                    "no spaces, quotes, angle brackets or lists)"
                )
        return value

    @field_validator("imap_url")
    @classmethod
    def _imap_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        kind = info.data.get("kind")
        if kind is not None and kind != "reception_unit":
            raise ValueError(f"only a reception unit may have a watched mailbox, not a {kind}")
        parts = urlsplit(value)
        if parts.scheme not in ("imap", "imaps"):
            raise ValueError("must start with imaps:// or imap:// (STARTTLS)")
        if parts.password is not None:
            # Never echo the URL: it holds the password.
            raise ValueError(
                "must not contain a password (keep it out of the directory file: name the "
                "environment variable holding it in imap_password_env)"
            )
        if not parts.hostname:
            raise ValueError("names no host")
        if not parts.username:
            raise ValueError("must name the user (imaps://user@host:993/INBOX)")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when it is read
        except ValueError:
            raise ValueError("has a port that is not a number") from None
        if CONTROL.search(value):
            raise ValueError("must not contain line breaks or control characters")
        return value

    @field_validator("imap_password_env")
    @classmethod
    def _imap_password_env(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                f"{value!r} is not the name of an environment variable (letters, digits and _)"
            )
        return value

    @model_validator(mode="after")
    def _imap_complete(self) -> Organisation:
        if (self.imap_url is None) != (self.imap_password_env is None):
            raise ValueError("imap_url and imap_password_env go together: name both or neither")
        return self

    def role_of_address(self, address: str) -> Role | None:
        """The role a sign-in mailed to `address` gives at this organisation: "supervisor" for
        one of its supervisor addresses, "member" for its own mailbox, None for neither.
        Addresses compare without regard to case or surrounding spaces."""
        wanted = address.strip().lower()
        if not wanted:
            return None
        if any(a.strip().lower() == wanted for a in self.supervisor_emails):
            return "supervisor"
        if self.email and self.email.strip().lower() == wanted:
            return "member"
        return None

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
        return self._by_place.get((municipality, kind), ())

    @functools.cached_property
    def _file_order(self) -> dict[str, int]:
        # Each organisation's place in the file, made once (routing sorts by it per arrival).
        return {org_id: i for i, org_id in enumerate(self.organisations)}

    @functools.cached_property
    def _by_place(self) -> dict[tuple[str, str | None], tuple[Organisation, ...]]:
        # Routing asks this for every arrival: a national directory has thousands of
        # organisations, so they are grouped once (by municipality, and by municipality and
        # kind), in file order, instead of walked for each question.
        groups: dict[tuple[str, str | None], list[Organisation]] = {}
        for org in self.organisations.values():
            groups.setdefault((org.municipality, None), []).append(org)
            groups.setdefault((org.municipality, org.kind), []).append(org)
        return {where: tuple(orgs) for where, orgs in groups.items()}

    def sign_ins_for(self, address: str) -> tuple[tuple[str, Role], ...]:
        """Every organisation (with the role) a sign-in link mailed to `address` is for, in
        file order; empty when the address is no organisation's."""
        found: list[tuple[str, Role]] = []
        for org in self.organisations.values():
            role = org.role_of_address(address)
            if role is not None:
                found.append((org.id, role))
        return tuple(found)

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
        position = self._file_order
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
