"""`/arenden`: the organisation's open cases and where each stands."""

from __future__ import annotations

from html import escape

from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from bot.runtime.services import Services
from bot.usecases.views import case_view
from handlers.telegram.common import acting_for_message
from messages.dates import swedish_date

_STATUS = {
    "notifying": "skickas",
    "notified": "skickat, väntar på bekräftelser",
    "acknowledged": "alla har bekräftat",
    "cancelled": "inställt",
}
MAX_LISTED = 30


async def list_cases(message: Message, services: Services) -> None:
    """Open cases of the chat's organisation, soonest arrival first."""
    who = await acting_for_message(message, services)
    if who is None:
        return
    ids = await services.cases.store.ids(open_only=True, municipality=None, org=who.org.id)
    cases = [await services.cases.store.get(i) for i in ids]
    cases.sort(key=lambda c: (c.arrival_date, c.reference))
    if not cases:
        await message.answer(f"Inga öppna ärenden för {escape(who.org.name)}.")
        return
    lines = [f"<b>Öppna ärenden för {escape(who.org.name)}</b> ({len(cases)})"]
    for case in cases[:MAX_LISTED]:
        view = await case_view(services.redis, services.directory, case)
        status = _STATUS[view["status"]]
        line = f"• <b>{escape(case.reference)}</b> {swedish_date(case.arrival_date)}: {status}"
        mine = next((r for r in view["recipients"] if r["organisation"] == who.org.id), None)
        if mine is not None:
            line += (
                " – ni har bekräftat" if mine["acknowledged"] else " – <b>ni har inte bekräftat</b>"
            )
        lines.append(line)
    if len(cases) > MAX_LISTED:
        lines.append(f"… och {len(cases) - MAX_LISTED} till.")
    await message.answer("\n".join(lines))


def build_router() -> Router:
    """A fresh router for `/arenden`."""
    router = Router(name="overview")
    router.message.register(list_cases, Command("arenden"))
    return router
