"""Which record keys hold personal data: the one list the erasure and the logs both use."""

from __future__ import annotations

from typing import Final

__all__ = ["PERSONAL_KEYS"]

PERSONAL_KEYS: Final = frozenset({"initials", "details", "text", "decision", "reason"})
"""Keys that hold personal data wherever they appear (facts, params, history, log events)."""
