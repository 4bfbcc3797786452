"""`/arenden`: the organisation's open cases and where each stands — as the policy's projection
shows each case to that organisation (the school learns whether start may go ahead, never why,
and never the booked health conversation)."""

from __future__ import annotations

from datetime import datetime
from html import escape

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.runtime.services import Services
from bot.usecases.audit import record_reads
from bot.usecases.views import case_view_for
from handlers.telegram.common import Acting, Linked
from messages.dates import swedish_date, swedish_datetime

_STATUS = {
    "notifying": "skickas",
    "notified": "skickat, väntar på bekräftelser",
    "acknowledged": "alla har bekräftat",
    "cancelled": "inställt",
}
# Whether start may go ahead (every viewer sees this answer; never why).
_START = {"may_start": "start kan ske", "must_wait": "start får vänta"}
MAX_LISTED = 30


async def list_cases(message: Message, services: Services, who: Acting) -> None:
    """Open cases the chat's organisation may see (the board's scope), soonest arrival first;
    each as the policy's projection shows it to that organisation."""
    scope = services.cases.policy.board_scope(who.org.id)
    ids = await services.cases.store.ids(
        open_only=True, municipality=scope.municipality, org=scope.organisation
    )
    cases = [await services.cases.store.get(i) for i in ids]
    cases.sort(key=lambda c: (c.arrival_date, c.reference))
    if not cases:
        await message.answer(f"Inga öppna ärenden för {escape(who.org.name)}.")
        return
    lines = [f"<b>Öppna ärenden för {escape(who.org.name)}</b> ({len(cases)})"]
    for case in cases[:MAX_LISTED]:
        view = await case_view_for(services.redis, services.directory, case, who.org.id)
        status = _STATUS[view["status"]]
        line = f"• <b>{escape(case.reference)}</b> {swedish_date(case.arrival_date)}: {status}"
        mine = next((r for r in view["recipients"] if r["organisation"] == who.org.id), None)
        if mine is not None:
            line += (
                " – ni har bekräftat" if mine["acknowledged"] else " – <b>ni har inte bekräftat</b>"
            )
        booking = view.get("booking")  # present only for those the policy shows it to
        if booking and booking.get("at"):
            at = datetime.fromisoformat(booking["at"])
            line += f" – hälsosamtal {swedish_datetime(at, services.settings.zone)}"
        start = _START.get(view["start"]["school"])
        if start:
            line += f" – {start}"
        lines.append(line)
    if len(cases) > MAX_LISTED:
        lines.append(f"… och {len(cases) - MAX_LISTED} till.")
    # Every case shown in the chat is a read: who (organisation, role, person, chat), when.
    shown = [c.id for c in cases[:MAX_LISTED]]
    now = services.clock.now()
    await record_reads(
        services.redis, who.actor, shown, "telegram:list", now, chat_id=message.chat.id
    )
    await message.answer("\n".join(lines))


def build_router() -> Router:
    """A fresh router for `/arenden`."""
    router = Router(name="overview")
    router.message.register(list_cases, Command("arenden"), Linked())
    return router
