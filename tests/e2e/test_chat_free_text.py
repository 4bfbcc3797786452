"""With ANKOMST_CHAT_DETAILS=minimal (the default) no free text a person typed reaches any chat:
hostile, recognisable text goes through every event that carries free text — registration (by
the API and by /ny), a date change, a change of the details, a disagreement raised (by chat),
escalated and decided, a booking, cancellations with a reason (by the API and by /stall_in) —
and no call the service made to the Bot API server carries it, while the e-mails do.

The one exception is the /ny confirmation summary, shown to the person typing it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bot.pipeline.buttons import escalate_row
from bot.store import keys
from messages.values import FREE_TEXT_POINTER
from tests.support.chat import button, chat_says, press, say
from tests.support.world import CHATS, World, arrival, running_world

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
RECEPTION = "ostersund-mottagning"
MANAGEMENT_CHATS = {"ostersund-ledning": 3001, "region-primarvard": 3002}
SCHOOL_BOSS_CHAT = 2003

# One recognisable text per event, each "typed" by a hostile or careless hand.
TYPED = {
    "api_details": "Familjen (pappa Ahmed, mobil 070-1234567) bor på Kvarnvägen 9 <b>",
    "initials": "Qz.W.",
    "chat_details": "Bor hos moster på Storgatan 1, pappa Ahmed arbetslös",
    "changed_details": "Ny adress: Tallstigen 4 hos farbror Omar & <i>kusiner</i>",
    "disagreement": "Mamma Leyla vill inte att skolan ringer henne på 070-7654321",
    "decision": "Beslut: skolan mejlar Leyla på leyla.privat@example.com i stället",
    "api_reason": "Familjen (pappa Ahmed, mobil 070-1234567) har flyttat till Krokom.",
    "chat_reason": "Familjen har gått under jorden hos släkt i Malmö",
}

# What would give each text away, even shortened or escaped: the names, numbers and places.
GIVEAWAYS = (
    "Ahmed",
    "1234567",
    "Kvarnvägen",
    "Qz.W.",
    "moster",
    "Storgatan",
    "Tallstigen",
    "Omar",
    "Leyla",
    "7654321",
    "leyla.privat",
    "Krokom",
    "Malmö",
    "under jorden",
)


def text_of(mail: Any) -> str:
    return str(mail.get_body(preferencelist=("plain",)).get_content())


async def register_by_chat(world: World, details: str) -> str:
    """/ny in the reception unit's chat, typed to the end; returns the new case's reference."""
    chat = CHATS[RECEPTION]
    say(world, chat, "/ny")
    await press(world, chat, button(await chat_says(world, chat, "Migrationsverkets"), "Hoppa"))
    await chat_says(world, chat, "Vilket datum")
    say(world, chat, "27/11")
    await chat_says(world, chat, "Hur gamla")
    say(world, chat, "9, 4")
    languages = await chat_says(world, chat, "Vilka språk")
    await press(world, chat, button(languages, "arabiska"))
    await press(world, chat, button(languages, "Klar"))
    await press(world, chat, button(await chat_says(world, chat, "Behövs tolk"), "Ja"))
    await press(world, chat, button(await chat_says(world, chat, "ensamkommande"), "Nej"))
    await chat_says(world, chat, "Övriga uppgifter")
    say(world, chat, details)
    summary = await chat_says(world, chat, "Stämmer det här")
    await press(world, chat, button(summary, "Registrera"))
    done = await chat_says(world, chat, "Registrerat")
    found = re.search(r"OSD-\d{4}-\d{4}", done.text or "")
    assert found is not None
    return found.group(0)


async def test_no_typed_text_reaches_any_chat_in_minimal_mode(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(redis_url, tmp_path) as world:
        assert world.services.settings.chat_details == "minimal"  # the default
        for org_id, chat_id in MANAGEMENT_CHATS.items():
            await world.link_chat(org_id, chat_id)
        await world.link_chat(SCHOOL, SCHOOL_BOSS_CHAT, "supervisor")
        reception_chat = CHATS[RECEPTION]

        # Registration through the API: details and a child's initials.
        answer = await world.register(
            arrival(
                external_ref="MIG-2026-990001",
                children=[{"age": 9}, {"age": 4, "initials": TYPED["initials"]}],
                details=TYPED["api_details"],
            )
        )
        case_id, reference = answer["id"], answer["reference"]
        await world.settled(case_id)

        # Registration through /ny, details typed in the chat.
        chat_reference = await register_by_chat(world, TYPED["chat_details"])
        await world.drain()

        # A date change through /andra, then new details through the API.
        say(world, reception_chat, f"/andra {reference}")
        picker = await chat_says(world, reception_chat, "nya datumet")
        await press(world, reception_chat, button(picker, "tis 1/12"))
        await press(
            world, reception_chat, button(await chat_says(world, reception_chat, "Ändra "), "Ändra")
        )
        await chat_says(world, reception_chat, "Ändrat:")
        status, _ = await world.call(
            "PATCH", f"/api/v1/arrivals/{case_id}", RECEPTION, {"details": TYPED["changed_details"]}
        )
        assert status == 200
        await world.settled(case_id)

        # A disagreement raised in chat, escalated by a supervisor, decided by management.
        say(world, CHATS[SCHOOL], f"/oenighet {reference}")
        await chat_says(world, CHATS[SCHOOL], "beskriv kort")
        say(world, CHATS[SCHOOL], TYPED["disagreement"])
        await chat_says(world, CHATS[SCHOOL], "anmäld")
        await world.drain()
        [raised] = (await world.call("GET", f"/api/v1/arrivals/{case_id}/disagreements", SCHOOL))[
            1
        ]["disagreements"]
        data = escalate_row(world.services.signer, raised["id"])[0].callback_data
        assert data is not None
        await press(world, SCHOOL_BOSS_CHAT, data)
        await chat_says(world, SCHOOL_BOSS_CHAT, "lyft till")
        await world.drain()
        status, _ = await world.call(
            "POST",
            f"/api/v1/disagreements/{raised['id']}/resolve",
            "ostersund-ledning",
            {"decision": TYPED["decision"]},
        )
        assert status == 200
        await world.drain()

        # A booked health conversation, through the chat (a time and yes/no: nothing typed).
        hc_chat = CHATS[HC]
        await press(world, hc_chat, button(await chat_says(world, hc_chat, "ÄNDRAT"), "Boka"))
        await chat_says(world, hc_chat, "skriv dag och tid")
        say(world, hc_chat, "2/12 10.00")
        await press(world, hc_chat, button(await chat_says(world, hc_chat, "tolk bokad"), "Ja"))
        await chat_says(world, hc_chat, "Bokning registrerad")
        await world.drain()

        # Cancellations with a reason: through the API, and through /stall_in.
        status, _ = await world.call(
            "POST", f"/api/v1/arrivals/{case_id}/cancel", RECEPTION, {"reason": TYPED["api_reason"]}
        )
        assert status == 200
        say(world, reception_chat, f"/stall_in {chat_reference}")
        await chat_says(world, reception_chat, "Skriv kort varför")
        say(world, reception_chat, TYPED["chat_reason"])
        confirm = await chat_says(world, reception_chat, "Alla mottagare får besked (INSTÄLLD)")
        await press(world, reception_chat, button(confirm, "Ställ in"))
        await chat_says(world, reception_chat, "Inställt:")
        await world.drain()

        # Every event reached the chats (so the check below is not vacuous) ...
        for org_id in (HC, SCHOOL):
            told = " ".join(c.text or "" for c in world.telegram.sent_to(CHATS[org_id]))
            assert "INSTÄLLD" in told and "ÄNDRAT" in told and "avgjord" in told, org_id
            assert FREE_TEXT_POINTER in told, org_id
        escalated = world.telegram.sent_to(MANAGEMENT_CHATS["ostersund-ledning"])
        assert any("lyfts till närmaste chefsnivå" in (c.text or "") for c in escalated)

        # ... and no call the service made to the Bot API carries anything typed, except the
        # /ny summary shown to the person who typed it.
        leaks: dict[str, list[str]] = {}
        for call in world.telegram.calls:
            if "Stämmer det här" in (call.text or ""):
                continue
            sent = json.dumps(call.params, ensure_ascii=False)
            for word in GIVEAWAYS:
                if word in sent:
                    leaks.setdefault(word, []).append(f"{call.method}: {sent[:300]}")
        assert leaks == {}, leaks
        assert world.telegram.calls_to("sendMessage")  # the scan saw the messages

        # Every dialogue ended, so none left anything in Redis.
        assert [k async for k in redis.scan_iter(f"{keys.FSM_PREFIX}:*")] == []

        # The e-mails carry every text.
        mail = "\n".join(text_of(m) for m in world.smtp.messages)
        for name, typed in TYPED.items():
            assert typed in mail, name
