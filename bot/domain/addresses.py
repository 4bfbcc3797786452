"""The one rule for an e-mail address that may reach a mail header or an SMTP envelope."""

from __future__ import annotations

import re

# C0 and C1 controls plus the Unicode line and paragraph separators: any of them in a header
# could end the header line in some mail software.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}$")


class HeaderInjectionError(ValueError):
    """A value that would reach a mail header is not safe there."""


def plain_address(value: str) -> str:
    """Return `value` as one bare ASCII address (IDN domains in punycode), else raise.

    Display names, lists, comments and anything with control characters are refused: the
    address goes into the To header and the SMTP envelope as it is.
    """
    if CONTROL.search(value) or value != value.strip():
        raise HeaderInjectionError("the address contains control characters or spaces")
    local, at, domain = value.rpartition("@")
    if not at or not _LOCAL_PART.match(local) or len(local) > 64:
        raise HeaderInjectionError(f"not one plain e-mail address: {value!r}")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise HeaderInjectionError(f"not a valid mail domain: {domain!r}") from exc
    if not _DOMAIN.match(ascii_domain):
        raise HeaderInjectionError(f"not one plain e-mail address: {value!r}")
    return f"{local}@{ascii_domain}"


def is_plain_address(value: str) -> bool:
    """Whether `value` is one plain e-mail address."""
    try:
        plain_address(value)
    except HeaderInjectionError:
        return False
    return True
