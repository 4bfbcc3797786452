"""The kinds of deadline timers, and what happens when one falls due, in words.

`bot.pipeline.deadlines` makes and fires the timers (it says when each falls, through
`bot.domain.deadline_rules`); the case view shows each pending one with the sentence
`what_then` makes from its kind and payload. The sentence is not stored with the timer: a
timer holds only the ids and instants its firing needs, and the names in the sentence are the
directory's as it is when the case is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final

from bot.domain.directory import Directory
from messages import deadlines as words

ACK_REMINDER: Final = "ack_reminder"
ACK_ESCALATION: Final = "ack_escalation"
BOOKING_REMINDER: Final = "booking_reminder"
BOOKING_ESCALATION: Final = "booking_escalation"
SAME_DAY_CHECK: Final = "same_day_check"
SAME_DAY_CLOSE: Final = "same_day_close"  # records "not the same working day" if still unmet
DISAGREEMENT_ESCALATION: Final = "disagreement_escalation"  # §7: unresolved too long goes up
# One message per (organisation, instant) listing every case escalated to it then.
ESCALATION_DIGEST: Final = "escalation_digest"
ACK_KINDS: Final = (ACK_REMINDER, ACK_ESCALATION)
BOOKING_KINDS: Final = (BOOKING_REMINDER, BOOKING_ESCALATION)

# What the payload of a deadline timer of each kind holds (bot/pipeline/deadlines.py makes it):
# its items' names in order, each with its type; `datetime` stands for the ISO text of an aware
# time. bot/store/timers.py stores such a payload as the items' values in this order, without
# the names and without the values the timer's id already says, so that a timer takes a few
# dozen bytes. A changed list cannot read the timers stored by the one before it (the scheduler
# leaves such a timer to the lease, as one of a kind it has no handler for): add a kind, or
# change a kind's items only with no timer of it stored.
_ACK_PAYLOAD: Final = (("version", int), ("organisation", str), ("told_at", datetime))
_BOOKING_PAYLOAD: Final = (("organisation", str), ("informed_at", datetime), ("deadline", str))
_SAME_DAY_PAYLOAD: Final = (("version", int), ("day", str))
PAYLOAD_ITEMS: Final[Mapping[str, tuple[tuple[str, type], ...]]] = {
    ACK_REMINDER: _ACK_PAYLOAD,
    ACK_ESCALATION: _ACK_PAYLOAD,
    BOOKING_REMINDER: _BOOKING_PAYLOAD,
    BOOKING_ESCALATION: _BOOKING_PAYLOAD,
    SAME_DAY_CHECK: _SAME_DAY_PAYLOAD,
    SAME_DAY_CLOSE: _SAME_DAY_PAYLOAD,
    DISAGREEMENT_ESCALATION: (("disagreement", str), ("days", int)),
    # Both said by its id ("escalation_digest:digests:{organisation}:{stamp}"): stored as "|".
    ESCALATION_DIGEST: (("organisation", str), ("stamp", int)),
}


def name_of(directory: Directory, org_id: str) -> str:
    """An organisation's name, or its id if the directory no longer has it."""
    org = directory.organisations.get(org_id)
    return org.name if org else org_id


def supervisor_of(directory: Directory, org_id: str) -> str | None:
    """The organisation an escalation about `org_id` goes to, if it has one in the directory."""
    org = directory.organisations.get(org_id)
    if org is None or org.supervisor is None:
        return None
    return org.supervisor if org.supervisor in directory.organisations else None


def what_then(directory: Directory, kind: str, payload: Mapping[str, Any]) -> str | None:
    """What happens when a timer of `kind` with `payload` falls due, as the case view says it;
    None for a timer that is bookkeeping nobody needs to see."""
    stored = payload.get("then")
    if stored:
        return str(stored)  # a timer made while the sentence was still stored with it
    org_id = str(payload.get("organisation", ""))
    if kind in (ACK_REMINDER, BOOKING_REMINDER, ACK_ESCALATION, BOOKING_ESCALATION):
        name = name_of(directory, org_id)
        supervisor = supervisor_of(directory, org_id)
        above = name_of(directory, supervisor) if supervisor else None
        if kind == ACK_REMINDER:
            return words.then_ack_reminder(name)
        if kind == ACK_ESCALATION:
            return words.then_ack_escalation(name, above)
        if kind == BOOKING_REMINDER:
            return words.then_booking_reminder(name, date.fromisoformat(str(payload["deadline"])))
        return words.then_booking_escalation(name, above)
    if kind == SAME_DAY_CHECK:
        return words.then_same_day()
    if kind == DISAGREEMENT_ESCALATION and "days" in payload:
        return words.disagreement_then(int(payload["days"]))
    return None
