"""`/ny`: a reception unit registers an arrival step by step, then it fans out like the API."""

from __future__ import annotations

import json
import secrets
from datetime import date, datetime
from html import escape
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.domain.arrival import (
    ArrivalIn,
    Child,
    arrival_date_problem,
    check_free_text,
    is_external_ref,
    parse,
)
from bot.runtime.services import Services
from bot.usecases.cases import Conflict
from bot.usecases.notices import CONFIRMED, DISCARDED, DraftNotFound, is_draft_id
from handlers.telegram.common import (
    TEXT,
    Acting,
    Linked,
    Pick,
    confirm_keyboard,
    date_keyboard,
    one_button,
    parse_date,
    today,
    yes_no,
)
from messages import chat
from messages.dates import swedish_date, swedish_datetime
from messages.languages import COMMON_LANGUAGES, is_language_code, language_list, language_name


class Registration(StatesGroup):
    """The steps of `/ny`."""

    external_ref = State()
    arrival_date = State()
    ages = State()
    languages = State()
    interpreter = State()
    unaccompanied = State()
    details = State()
    confirm = State()


def language_keyboard(chosen: list[str]) -> InlineKeyboardMarkup:
    """Buttons for the common languages (✓ when chosen), and Klar."""
    buttons = [
        InlineKeyboardButton(
            text=("✓ " if code in chosen else "") + language_name(code),
            callback_data=Pick(what="lang", value=code).pack(),
        )
        for code in COMMON_LANGUAGES
    ]
    rows = [buttons[i : i + 3] for i in range(0, len(buttons), 3)]
    rows.append(
        [InlineKeyboardButton(text="Klar", callback_data=Pick(what="lang", value="-").pack())]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def summary(data: dict[str, Any], municipality: str) -> str:
    """The registration as it will be sent, for confirmation."""
    ages = ", ".join(f"{a} år" for a in data["ages"])
    lines = [
        "<b>Stämmer det här?</b>",
        f"Kommun: {escape(municipality)}",
        f"Ankomst: {swedish_date(date.fromisoformat(data['arrival_date']))}",
        f"Barn: {ages}",
        f"Språk: {escape(language_list(data['languages']))}",
        f"Tolk behövs: {'ja' if data['interpreter_needed'] else 'nej'}",
        f"Ensamkommande: {'ja' if data['unaccompanied'] else 'nej'}",
        f"Övrigt: {escape(data['details']) if data['details'] else '–'}",
        f"Referens: {escape(data['external_ref'])}",
    ]
    if data.get("draft_note"):
        lines.insert(1, escape(data["draft_note"]))
    return "\n".join(lines)


async def start(
    message: Message,
    state: FSMContext,
    services: Services,
    who: Acting,
    command: CommandObject | None = None,
) -> None:
    """`/ny`: asks the policy first, so only a reception unit is led through the steps.
    `/ny ID` (the hint a notice's message gives) starts from that notice draft."""
    services.cases.policy.require_register(who.actor, who.org.municipality)
    municipality = services.directory.municipalities[who.org.municipality].name
    await state.clear()
    draft_id = (command.args or "").strip() if command is not None else ""
    if draft_id:
        await _start_from_draft(message, state, services, who, draft_id)
        return
    await state.set_state(Registration.external_ref)
    await message.answer(
        f"Ny ankomst för <b>{escape(municipality)}</b>.\n\nAnge Migrationsverkets ärendenummer "
        "(t.ex. MIG-2026-123456), eller tryck Hoppa över. Avbryt när som helst med /avbryt.",
        reply_markup=one_button("Hoppa över", "skip"),
    )


def _draft_facts(data: dict[str, str], on: date) -> dict[str, Any]:
    """What of a notice draft the dialogue can take as answered: each fact only where the
    draft holds a usable value (the rest is asked as usual)."""
    facts: dict[str, Any] = {}
    if data.get("arrival_date"):
        try:
            day = date.fromisoformat(data["arrival_date"])
        except ValueError:
            day = None
        if day is not None and not arrival_date_problem(day, on):
            facts["arrival_date"] = day.isoformat()
    try:
        ages = [int(c["age"]) for c in json.loads(data.get("children") or "[]")]
    except (ValueError, TypeError, KeyError):
        ages = []
    if 1 <= len(ages) <= 20 and all(0 <= a <= 17 for a in ages):
        facts["ages"] = ages
    codes = [c for c in (data.get("languages") or "").split(",") if is_language_code(c)]
    if codes:
        facts["languages"] = codes[:5]
    for name in ("interpreter_needed", "unaccompanied"):
        if data.get(name) in ("true", "false"):
            facts[name] = data[name] == "true"
    return facts


async def _start_from_draft(
    message: Message, state: FSMContext, services: Services, who: Acting, draft_id: str
) -> None:
    """`/ny ID`: the dialogue with what the notice draft says already answered; confirming
    it confirms the draft (NoticeDrafts.confirm), as the board's form does."""
    try:
        if not is_draft_id(draft_id):
            raise DraftNotFound(draft_id)
        data = await services.drafts.get(draft_id)
    except DraftNotFound:
        await message.answer("Det finns inget sådant utkast. Skriv /ny för en ny ankomst.")
        return
    if data.get("reception_unit") != who.org.id:
        await message.answer("Bara mottagningsenheten som fick aviseringen kan hantera utkastet.")
        return
    if data.get("status") == CONFIRMED:
        await message.answer("Aviseringen är redan bekräftad och skickad.")
        return
    if data.get("status") == DISCARDED:
        await message.answer("Aviseringen är redan kastad. Den kan inte skickas.")
        return
    received = datetime.fromisoformat(data["received_at"])
    note = f"Utkast från en avisering som kom {swedish_datetime(received, services.settings.zone)}."
    await state.update_data(
        draft=draft_id,
        draft_note=note,
        external_ref=data["external_ref"],
        **_draft_facts(data, today(services)),
    )
    lead = f"{note} Kontrollera uppgifterna. Avbryt när som helst med /avbryt."
    if data.get("note"):
        lead += f"\nAviseringen {escape(data['note'])}."
    await _ask_next(message, state, services, lead)


async def _ask_next(target: Message, state: FSMContext, services: Services, said: str = "") -> None:
    """Ask for the first thing the registration still lacks (a notice draft may have answered
    some already), after `said`; once all is answered, the details."""
    data = await state.get_data()
    lead = f"{said}\n\n" if said else ""
    if not data.get("arrival_date"):
        await state.set_state(Registration.arrival_date)
        await target.answer(
            f"{lead}Vilket datum kommer de? Välj nedan eller skriv t.ex. "
            f"{chat.date_example(today(services))}.",
            reply_markup=date_keyboard(today(services)),
        )
    elif not data.get("ages"):
        await state.set_state(Registration.ages)
        await target.answer(f"{lead}Hur gamla är barnen? Skriv åldrarna, t.ex. <code>9, 4</code>.")
    elif not data.get("languages"):
        await state.set_state(Registration.languages)
        await target.answer(
            f"{lead}Vilka språk talar familjen? Tryck på språken (eller skriv ISO-koder, t.ex. "
            "<code>kmr</code>), och sedan Klar.",
            reply_markup=language_keyboard([]),
        )
    elif "interpreter_needed" not in data:
        await state.set_state(Registration.interpreter)
        await target.answer(f"{lead}Behövs tolk?", reply_markup=yes_no("interpreter"))
    elif "unaccompanied" not in data:
        await state.set_state(Registration.unaccompanied)
        await target.answer(f"{lead}Är barnet/barnen ensamkommande?", reply_markup=yes_no("alone"))
    else:
        await state.set_state(Registration.details)
        await target.answer(
            f"{lead}Övriga uppgifter som mottagarna behöver (boende, kontaktväg …)? Högst 1000 "
            "tecken, inga personnummer och inga medicinska uppgifter.",
            reply_markup=one_button("Hoppa över", "skip"),
        )


async def cancel_dialogue(message: Message, state: FSMContext) -> None:
    """`/avbryt`: leave whatever dialogue the chat is in."""
    await state.clear()
    await message.answer("Avbrutet. Inget har sparats.")


async def _ask_date(target: Message, state: FSMContext, services: Services) -> None:
    await _ask_next(target, state, services)


async def got_external_ref(message: Message, state: FSMContext, services: Services) -> None:
    """Step 1: the external reference (typed)."""
    text = (message.text or "").strip()
    if not is_external_ref(text):
        await message.answer(
            "Referensen får bara innehålla bokstäver a–z, siffror och . _ : / - (högst 64 tecken)."
        )
        return
    await state.update_data(external_ref=text)
    await _ask_date(message, state, services)


async def skipped_external_ref(query: CallbackQuery, state: FSMContext, services: Services) -> None:
    """Step 1: no external reference; one is made up so a replay stays idempotent."""
    await query.answer()
    ref = f"TG-{today(services):%Y%m%d}-{secrets.token_hex(3).upper()}"
    await state.update_data(external_ref=ref)
    if isinstance(query.message, Message):
        await _ask_date(query.message, state, services)


async def _take_date(target: Message, state: FSMContext, services: Services, day: date) -> None:
    problem = arrival_date_problem(day, today(services))
    if problem:
        await target.answer(f"Datumet {problem}. Försök igen.")
        return
    await state.update_data(arrival_date=day.isoformat())
    await _ask_next(target, state, services, f"Ankomst {swedish_date(day)}.")


async def typed_date(message: Message, state: FSMContext, services: Services) -> None:
    """Step 2: a typed date."""
    day = parse_date(message.text or "", today(services))
    if day is None:
        await message.answer(f"Skriv datumet som {chat.date_example(today(services))}.")
        return
    await _take_date(message, state, services, day)


async def picked_date(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services
) -> None:
    """Step 2: a date from the picker."""
    await query.answer()
    if isinstance(query.message, Message):
        await _take_date(query.message, state, services, date.fromisoformat(callback_data.value))


async def got_ages(message: Message, state: FSMContext, services: Services) -> None:
    """Step 3: the children's ages, 0–17, 1–20 children."""
    parts = (message.text or "").replace(",", " ").replace(";", " ").split()
    try:
        ages = [Child(age=int(p)).age for p in parts]
    except ValueError:
        ages = []
    if not 1 <= len(ages) <= 20:
        await message.answer("Skriv varje barns ålder i år (0–17), t.ex. <code>9, 4</code>.")
        return
    await state.update_data(ages=ages)
    await _ask_next(message, state, services)


async def _add_languages(state: FSMContext, codes: list[str]) -> list[str]:
    chosen: list[str] = list((await state.get_data()).get("languages", []))
    for code in codes:
        if code in chosen:
            chosen.remove(code)  # a second press takes it away
        elif len(chosen) < 5:
            chosen.append(code)
    await state.update_data(languages=chosen)
    return chosen


async def typed_languages(message: Message, state: FSMContext) -> None:
    """Step 4: typed language codes."""
    codes = [c.strip().lower() for c in (message.text or "").replace(",", " ").split()]
    bad = [c for c in codes if not is_language_code(c)]
    if bad or not codes:
        await message.answer(
            f"Okänd språkkod: {escape(', '.join(bad) or '–')}. "
            "Använd ISO 639-koder, t.ex. ar, prs, ti."
        )
        return
    chosen = await _add_languages(state, codes)
    await message.answer(
        f"Valda språk: {escape(language_list(chosen))}. Tryck Klar när du är färdig.",
        reply_markup=language_keyboard(chosen),
    )


async def picked_language(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services
) -> None:
    """Step 4: a language button, or Klar."""
    if callback_data.value == "-":
        chosen = (await state.get_data()).get("languages", [])
        if not chosen:
            await query.answer("Välj minst ett språk.", show_alert=True)
            return
        await query.answer()
        if isinstance(query.message, Message):
            said = f"Språk: {escape(language_list(chosen))}."
            await _ask_next(query.message, state, services, said)
        return
    if not is_language_code(callback_data.value):
        await query.answer()
        return
    chosen = await _add_languages(state, [callback_data.value])
    await query.answer(language_list(chosen) or "Inget språk valt")
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=language_keyboard(chosen))


async def picked_interpreter(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services
) -> None:
    """Step 5: interpreter yes/no."""
    await query.answer()
    await state.update_data(interpreter_needed=callback_data.value == "1")
    if isinstance(query.message, Message):
        await _ask_next(query.message, state, services)


async def picked_unaccompanied(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services
) -> None:
    """Step 6: unaccompanied yes/no."""
    await query.answer()
    await state.update_data(unaccompanied=callback_data.value == "1")
    if isinstance(query.message, Message):
        await _ask_next(query.message, state, services)


async def _show_summary(
    target: Message, state: FSMContext, services: Services, who: Acting
) -> None:
    data = await state.get_data()
    await state.set_state(Registration.confirm)
    municipality = services.directory.municipalities[who.org.municipality].name
    await target.answer(summary(data, municipality), reply_markup=confirm_keyboard("Registrera"))


async def got_details(message: Message, state: FSMContext, services: Services, who: Acting) -> None:
    """Step 7: free-text details, checked like the API checks them."""
    text = message.text or ""
    try:
        text = check_free_text(text)
    except ValueError as exc:
        await message.answer(f"Det går inte att spara: {escape(str(exc))}. Skriv om texten.")
        return
    if len(text) > 1000:
        await message.answer("Högst 1000 tecken. Korta texten.")
        return
    await state.update_data(details=text)
    await _show_summary(message, state, services, who)


async def skipped_details(
    query: CallbackQuery, state: FSMContext, services: Services, who: Acting
) -> None:
    """Step 7: no details."""
    await query.answer()
    await state.update_data(details="")
    if isinstance(query.message, Message):
        await _show_summary(query.message, state, services, who)


async def confirmed(
    query: CallbackQuery, callback_data: Pick, state: FSMContext, services: Services, who: Acting
) -> None:
    """Step 8: register exactly as the API does, or drop it."""
    if callback_data.value != "1":
        await state.clear()
        await query.answer("Avbrutet")
        if isinstance(query.message, Message):
            await query.message.answer("Avbrutet. Inget har registrerats.")
        return
    if not isinstance(query.message, Message):
        return
    data = await state.get_data()
    body = {
        "external_ref": data["external_ref"],
        "municipality": who.org.municipality,
        "arrival_date": data["arrival_date"],
        "children": [{"age": a} for a in data["ages"]],
        "languages": data["languages"],
        "interpreter_needed": data["interpreter_needed"],
        "unaccompanied": data["unaccompanied"],
        "details": data.get("details", ""),
    }
    arrival = parse(ArrivalIn, body, today=today(services))
    if data.get("draft"):
        # From a notice: the draft is marked confirmed, the case keeps when the notice came
        # and the same-day alerts are called off (NoticeDrafts.confirm), as on the board.
        try:
            case, created = await services.drafts.confirm(data["draft"], arrival, who.actor)
        except (DraftNotFound, Conflict) as exc:
            await state.clear()
            await query.answer()
            gone = isinstance(exc, DraftNotFound)
            await query.message.answer(
                "Utkastet finns inte längre." if gone else f"{escape(str(exc))} Inget skickades."
            )
            return
    else:
        case, created = await services.cases.register(arrival, who.actor)
    await state.clear()
    await query.answer("Registrerat")
    names = ", ".join(services.directory.organisation(o).name for o in case.recipients)
    verb = "Registrerat" if created else "Redan registrerat"
    await query.message.answer(
        f"{verb}: <b>{escape(case.reference)}</b>. {escape(names)} meddelas nu. "
        "Ni får besked när alla har bekräftat."
    )


def build_router() -> Router:
    """A fresh router for `/ny` (a router can belong to one dispatcher only)."""
    router = Router(name="registration")
    router.message.register(cancel_dialogue, Command("avbryt"))
    router.message.register(start, Command("ny"), Linked())
    router.message.register(got_external_ref, Registration.external_ref, TEXT)
    router.callback_query.register(
        skipped_external_ref, Registration.external_ref, Pick.filter(F.what == "skip")
    )
    router.message.register(typed_date, Registration.arrival_date, TEXT)
    router.callback_query.register(
        picked_date, Registration.arrival_date, Pick.filter(F.what == "date")
    )
    router.message.register(got_ages, Registration.ages, TEXT)
    router.message.register(typed_languages, Registration.languages, TEXT)
    router.callback_query.register(
        picked_language, Registration.languages, Pick.filter(F.what == "lang")
    )
    router.callback_query.register(
        picked_interpreter, Registration.interpreter, Pick.filter(F.what == "interpreter")
    )
    router.callback_query.register(
        picked_unaccompanied, Registration.unaccompanied, Pick.filter(F.what == "alone")
    )
    router.message.register(got_details, Registration.details, TEXT, Linked())
    router.callback_query.register(
        skipped_details, Registration.details, Pick.filter(F.what == "skip"), Linked()
    )
    router.callback_query.register(
        confirmed, Registration.confirm, Pick.filter(F.what == "confirm"), Linked()
    )
    return router
