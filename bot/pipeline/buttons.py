"""Callback data of the inline buttons: short (Telegram allows 64 bytes) and signed."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton

from bot.usecases.access import Signer


class AckButton(CallbackData, prefix="ack"):
    """**Mottaget** under an arrival message: acknowledges that version for the chat's organisation.

    `sig` is a MAC over (action, case, version) so a client cannot forge a press for another case.
    """

    case: str
    version: int
    sig: str


class Action(StrEnum):
    """What a case-action button does; the value is what travels in the callback data."""

    BOOK = "book"  # report the booked health conversation
    CLEAR_OK = "clear_ok"  # all results in, start may go ahead
    CLEAR_WAIT = "clear_wait"  # start must wait
    ESCALATE = "escalate"  # refer a disagreement to management


class CaseAction(CallbackData, prefix="ca"):
    """Other buttons on a case: book a health conversation, report clearance, escalate.

    `ref` is the case id (or the disagreement id for ESCALATE); `sig` a MAC over both.
    """

    action: Action
    ref: str
    sig: str


def action_button(signer: Signer, text: str, action: Action, ref: str) -> InlineKeyboardButton:
    """One signed case-action button."""
    data = CaseAction(action=action, ref=ref, sig=signer.button_signature(action, ref, 0))
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def check_action(signer: Signer, data: CaseAction) -> bool:
    """Whether a pressed case-action button is one we made."""
    return signer.check_button(data.action, data.ref, 0, data.sig)


def ack_row(signer: Signer, case_id: str, version: int) -> list[InlineKeyboardButton]:
    """The **Mottaget** button for one version of a case."""
    data = AckButton(
        case=case_id, version=version, sig=signer.button_signature("ack", case_id, version)
    )
    return [InlineKeyboardButton(text="Mottaget", callback_data=data.pack())]


def booking_row(signer: Signer, case_id: str) -> list[InlineKeyboardButton]:
    """For the health centre: report the booked health conversation."""
    return [action_button(signer, "Boka hälsosamtal", Action.BOOK, case_id)]


def clearance_rows(signer: Signer, case_id: str) -> list[list[InlineKeyboardButton]]:
    """For the health centre: the two clearance answers, nothing else."""
    return [
        [action_button(signer, "Alla provsvar klara – start kan ske", Action.CLEAR_OK, case_id)],
        [action_button(signer, "Start måste vänta", Action.CLEAR_WAIT, case_id)],
    ]


def escalate_row(signer: Signer, disagreement_id: str) -> list[InlineKeyboardButton]:
    """For supervisors: refer a disagreement to the management level."""
    return [action_button(signer, "Eskalera", Action.ESCALATE, disagreement_id)]


def plain_rows(rows: list[list[InlineKeyboardButton]]) -> list[list[dict[str, Any]]]:
    """Rows of buttons as the Bot API's JSON takes them (what aiogram sends: no null fields)."""
    return [[b.model_dump(mode="json", exclude_none=True) for b in row] for row in rows if row]
