"""A relay with STARTTLS and AUTH, set up wrong, then right (issue 12 item 5).

Before, a wrong ANKOMST_SMTP_PASSWORD failed every delivery after one attempt (535 is a 5xx),
nothing was logged, and fixing the password later sent none of them; an untrusted certificate
was retried silently. Now a login, TLS or connection failure is the relay's fault: the
deliveries wait (never failed, not counted toward the attempt limit), the operator is told once
(one error line naming the setting, `ankomst_smtp_relay_up 0`, `/readyz` `smtp: false`), and
once the relay can be used everything goes out exactly once.

The relay is an aiosmtpd server requiring STARTTLS and then AUTH, with a certificate from a
private CA made by `trustme`; the service's sender is replaced as an operator's restart with
corrected settings would replace it.
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import SecretStr

from bot.channels.email import EmailSender, relay_tls_context
from bot.runtime.services import email_sender
from bot.runtime.settings import SettingsError, load_settings
from tests.support.smtp_sink import SmtpSink
from tests.support.world import World, arrival, running_world

USER = "ankomst"
PASSWORD = "rätt-lösenord"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "relay-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def relay(ca: trustme.CA) -> AsyncIterator[SmtpSink]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    # As municipalities' relays are: STARTTLS, AUTH and PIPELINING (the envelope goes in one
    # write over TLS).
    async with SmtpSink(tls_context=context, logins={USER: PASSWORD}, pipelining=True) as server:
        yield server


@pytest.fixture
async def world(redis_url: str, redis: object, tmp_path: Path) -> AsyncIterator[World]:
    # Attempt limit 2: were relay failures counted, the deliveries would soon be failed.
    async with running_world(
        redis_url,
        tmp_path,
        claim_seconds=1,
        send_attempts=2,
        retry_base_seconds=0.01,
        retry_cap_seconds=0.02,
        delivery_max_attempts=2,
    ) as w:
        yield w


class Senders:
    """Puts a sender built from the service's settings (with changes) in the service's place,
    as a restart with corrected settings would; closes them all at the end."""

    def __init__(self, world: World, relay: SmtpSink) -> None:
        self.world = world
        self.relay = relay
        self.made: list[EmailSender] = []

    async def use(self, **changes: Any) -> EmailSender:
        assert self.world.config is not None
        settings = self.world.config.model_copy(
            update={
                "smtp_host": self.relay.host,
                "smtp_port": self.relay.port,
                "smtp_starttls": True,
                "smtp_username": USER,
                **changes,
            }
        )
        sender = email_sender(settings)
        self.made.append(sender)
        self.world.services.deliverer.email = sender
        return sender


@pytest.fixture
async def senders(world: World, relay: SmtpSink) -> AsyncIterator[Senders]:
    made = Senders(world, relay)
    try:
        yield made
    finally:
        for sender in made.made:
            await sender.close()


async def rounds(world: World, count: int) -> None:
    """Every consumer group takes what is pending or unread and handles it, `count` times."""
    for _ in range(count):
        for consumer in world.services.consumers:
            await consumer.drain_once()


def email_rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    parties = [view["reception_unit"], *view["recipients"]]
    return [d for p in parties for d in p["deliveries"] if d["channel_kind"] == "email"]


async def relay_state(world: World) -> tuple[Any, float | None]:
    """(/readyz's smtp entry, the ankomst_smtp_relay_up gauge)."""
    status, ready = await world.call("GET", "/readyz")
    assert status in (200, 503), ready
    gauge = world.services.metrics.registry.get_sample_value("ankomst_smtp_relay_up")
    return ready.get("smtp"), gauge


async def waits_then_goes_out_once(
    world: World,
    relay: SmtpSink,
    caplog: pytest.LogCaptureFixture,
    setting: str,
) -> list[str]:
    """Two arrivals meet the broken relay: nothing failed, one error line naming `setting`,
    the relay shown down. Returns the cases' ids."""
    first = await world.register(arrival())
    second = await world.register(arrival(external_ref="MIG-2026-222222"))
    await rounds(world, 5)  # every mail tried several times, past the attempt limit
    for case in (first, second):
        rows = email_rows(await world.case(case["id"]))
        assert rows and all(d["status"] == "retrying" for d in rows), rows
        assert all(d["error"] for d in rows)
    everything = []
    for case in (first, second):
        view = await world.case(case["id"])
        everything += [
            d for p in [view["reception_unit"], *view["recipients"]] for d in p["deliveries"]
        ]
    assert not [d for d in everything if d["status"] == "failed"], "nothing is marked failed"
    told = [r for r in caplog.records if setting in r.getMessage()]
    assert len(told) == 1, [r.getMessage() for r in told]
    assert told[0].levelname == "ERROR"
    assert relay.messages == []
    assert await relay_state(world) == (False, 0.0)
    return [str(first["id"]), str(second["id"])]


async def all_out_once(world: World, relay: SmtpSink, case_ids: list[str]) -> None:
    rows = []
    for case_id in case_ids:
        view = await world.settled(case_id, timeout=20)
        rows += email_rows(view)
        everything = [
            d for p in [view["reception_unit"], *view["recipients"]] for d in p["deliveries"]
        ]
        assert all(d["status"] == "sent" for d in everything), everything
    counts = Counter(str(m["Message-ID"]) for m in relay.messages)
    assert len(counts) == len(rows) and max(counts.values()) == 1, counts
    assert await relay_state(world) == (True, 1.0)


async def test_a_wrong_password_keeps_mail_waiting_and_once_fixed_everything_goes_once(
    world: World,
    relay: SmtpSink,
    senders: Senders,
    ca_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await senders.use(smtp_password=SecretStr("fel-lösenord"), smtp_ca_file=ca_file)
    cases = await waits_then_goes_out_once(world, relay, caplog, "ANKOMST_SMTP_PASSWORD")
    assert relay.logins_refused >= 1

    await senders.use(smtp_password=SecretStr(PASSWORD), smtp_ca_file=ca_file)
    await all_out_once(world, relay, cases)


async def test_an_untrusted_certificate_keeps_mail_waiting_until_the_ca_file_is_set(
    world: World,
    relay: SmtpSink,
    senders: Senders,
    ca_file: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await senders.use(smtp_password=SecretStr(PASSWORD), smtp_ca_file=None)
    cases = await waits_then_goes_out_once(world, relay, caplog, "ANKOMST_SMTP_CA_FILE")
    assert relay.logins_refused == 0  # nothing was sent before the certificate was checked

    await senders.use(smtp_password=SecretStr(PASSWORD), smtp_ca_file=ca_file)
    await all_out_once(world, relay, cases)


def test_verification_is_never_off_and_the_ca_file_is_checked_at_start(
    ca_file: Path, tmp_path: Path
) -> None:
    context = relay_tls_context(str(ca_file))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert relay_tls_context().verify_mode == ssl.CERT_REQUIRED
    assert load_settings(_env_file=None, smtp_ca_file=str(ca_file)).smtp_ca_file == ca_file
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("nonsense")
    for value in (bad, tmp_path / "missing.pem"):
        with pytest.raises(SettingsError, match="ANKOMST_SMTP_CA_FILE"):
            load_settings(_env_file=None, smtp_ca_file=str(value))
