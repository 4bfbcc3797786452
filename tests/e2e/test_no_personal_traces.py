"""Nothing personal in logs, metrics or streams (issue 13, "Nothing personal in logs or
metrics").

A whole case life runs with recognisable initials and free texts — registration, a date
change, every acknowledgement, a booking, clearance, a disagreement raised and resolved with
text, a cancellation with a reason — while every logger writes at DEBUG through the service's
own JSON log configuration (bot/runtime/logs.py). Afterwards none of those strings may appear
in any log line, in the /metrics text (names, labels, values), or in any entry of any stream
(events, outboxes, audit, dead letters …). Only the case record itself holds them: the case
hash, its versions, history, acknowledgements, disagreements and the deliveries' params.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from bot.runtime.logs import configure_logging
from bot.store import Redis, keys
from tests.support.world import World, arrival, running_world

HC = "hc-lugnvik"
SCHOOL = "ostersund-skola"
PRESCHOOL = "ostersund-forskola"
RECEPTION = "ostersund-mottagning"
MANAGEMENT = "ostersund-ledning"

INITIALS = "Q.Z."
DETAILS = "Bor hos moster på Storgatan 99, pappa sjuk, mobil 070-9988776."
NEW_DETAILS = "Flyttar till Kvarngränd 41 efter en vecka."
DISAGREEMENT = "Vem hämtar Q.Z. från Kvarngränd 41? Frågar Zelmira."
DECISION = "Beslut: Xandor Wessling-Holm ordnar skjuts."
REASON = "Familjen Ozturk-Lindqvist har flyttat till Krokom."
# The strings that must not leave the case record, each short enough to catch a cut copy.
SECRETS = (
    INITIALS,
    "Storgatan 99",
    "pappa sjuk",
    "070-9988776",
    "Kvarngränd 41",
    "Zelmira",
    "Xandor",
    "Wessling-Holm",
    "Ozturk-Lindqvist",
)


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line the service writes, as its JSON configuration renders it, at DEBUG."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_levels = {
        name: logger.level
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    configure_logging("json", logging.DEBUG)
    buffer = io.StringIO()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(buffer)
    # configure_logging quietens a few chatty loggers; here everything speaks.
    for name in [*saved_levels, "aiogram.event", "aiosmtpd", "mail.log"]:
        logging.getLogger(name).setLevel(logging.NOTSET)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)
        structlog.reset_defaults()


# aiosmtpd's own logger: the test's SMTP sink, standing in for the relay, logs every line of
# DATA at DEBUG. That is the relay's log, not Ankomst's.
RELAY_LOGGERS = frozenset({"mail.log"})


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def ankomst_log_lines(captured: str) -> list[dict[str, Any]]:
    """The captured JSON lines, less the stand-in relay's."""
    lines = [json.loads(line) for line in captured.splitlines() if line.strip()]
    return [line for line in lines if line.get("logger") not in RELAY_LOGGERS]


async def a_whole_case_life(world: World) -> str:
    answer = await world.register(
        arrival(
            external_ref="MIG-2026-424242",
            children=[{"age": 9, "initials": INITIALS}, {"age": 4}],
            details=DETAILS,
        )
    )
    case_id = str(answer["id"])
    await world.settled(case_id)
    status, _ = await world.call(
        "PATCH",
        f"/api/v1/arrivals/{case_id}",
        RECEPTION,
        {"arrival_date": "2026-11-30", "details": NEW_DETAILS},
    )
    assert status == 200
    await world.settled(case_id)
    for org in (HC, SCHOOL, PRESCHOOL):
        status, _ = await world.call("POST", f"/api/v1/arrivals/{case_id}/ack", org)
        assert status == 200
    status, _ = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/health-booking",
        HC,
        {"at": "2026-12-01T09:30", "interpreter_booked": True},
    )
    assert status == 200
    status, _ = await world.call(
        "POST",
        f"/api/v1/arrivals/{case_id}/clearance",
        HC,
        {"all_results_received": True, "start_obstacle": False},
    )
    assert status == 200
    status, raised = await world.call(
        "POST", f"/api/v1/arrivals/{case_id}/disagreements", SCHOOL, {"text": DISAGREEMENT}
    )
    assert status == 201
    await world.settled(case_id)
    status, _ = await world.call(
        "POST", f"/api/v1/disagreements/{raised['id']}/resolve", MANAGEMENT, {"decision": DECISION}
    )
    assert status == 200
    await world.settled(case_id)
    status, _ = await world.call(
        "POST", f"/api/v1/arrivals/{case_id}/cancel", RECEPTION, {"reason": REASON}
    )
    assert status == 200
    await world.settled(case_id)
    return case_id


async def stream_entries(redis: Redis) -> dict[str, list[tuple[str, dict[str, str]]]]:
    """Every entry of every stream in the database, by stream key."""
    found: dict[str, list[tuple[str, dict[str, str]]]] = {}
    async for key in redis.scan_iter(_type="stream"):
        found[key] = [(i, dict(f)) for i, f in await redis.xrange(key)]
    return found


async def test_a_whole_case_life_leaves_nothing_personal_outside_the_case(
    redis_url: str, redis: Redis, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    async with running_world(redis_url, tmp_path, chat_details="full") as world:
        case_id = await a_whole_case_life(world)

        # The case record holds what was said, and the people it was meant for got it.
        view = await world.case(case_id)
        assert view["status"] == "cancelled"
        told = world.mails_to("mottagning@ostersund.example.se")
        texts = [str(m.get_body(preferencelist=("plain",)).get_content()) for m in told]
        assert any("Kvarngränd 41" in t for t in texts)
        assert any(REASON in t for t in texts)
        # The disagreement's text and decision still reach the parties (read from its record).
        assert any(DISAGREEMENT in t for t in texts)
        assert any(DECISION in t for t in texts)

        async with world.http.get(world.base + "/metrics") as response:
            assert response.status == 200
            metrics = await response.text()
        streams = await stream_entries(world.services.redis)

    logs = ankomst_log_lines(captured_logs.getvalue())
    assert len(logs) > 20, "the service logged (the capture works)"
    # Ankomst's own lines are there (the start banner and the API's access log at least).
    assert {"ankomst", "aiohttp.access"} <= {line.get("logger") for line in logs}
    assert [line for line in logs if leaks(json.dumps(line, ensure_ascii=False))] == []
    assert leaks(metrics) == []
    assert {keys.EVENTS, keys.OUTBOX_EMAIL, keys.OUTBOX_TELEGRAM} <= set(streams)
    leaked = {
        key: [(entry, fields) for entry, fields in entries if leaks(repr(fields))]
        for key, entries in streams.items()
    }
    assert {key: found for key, found in leaked.items() if found} == {}


def test_the_recognisable_strings_pass_the_input_rules() -> None:
    """The life above is only a proof if its texts are accepted as they are."""
    from bot.domain.arrival import CancelIn, check_free_text, parse

    for text in (DETAILS, NEW_DETAILS, DISAGREEMENT, DECISION):
        assert check_free_text(text) == text
    assert parse(CancelIn, {"reason": REASON}).reason == REASON
    said = (INITIALS, DETAILS, NEW_DETAILS, DISAGREEMENT, DECISION, REASON)
    assert all(any(secret in text for text in said) for secret in SECRETS)
