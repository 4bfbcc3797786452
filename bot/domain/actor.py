"""Who is acting: an organisation, in a role, through a channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["member", "supervisor"]
Via = Literal["api", "telegram", "link", "cli", "intake", "system", "dashboard"]
ROLES: tuple[Role, ...] = ("member", "supervisor")


@dataclass(frozen=True)
class Actor:
    """Someone acting for an organisation, and through which channel."""

    org_id: str
    role: Role = "member"
    via: Via = "api"
    who: str = ""  # token id, Telegram user id, ... (never a name)
    label: str = ""  # an API token's label (what the audit trail names it by), else empty


SYSTEM = Actor(org_id="ankomst", role="member", via="system", who="ankomst")
