"""Callback data of the inline buttons: short (Telegram allows 64 bytes) and signed."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class AckButton(CallbackData, prefix="ack"):
    """**Mottaget** under an arrival message: acknowledges that version for the chat's organisation.

    `sig` is a MAC over (action, case, version) so a client cannot forge a press for another case.
    """

    case: str
    version: int
    sig: str
