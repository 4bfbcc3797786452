"""Ack and deep links are signed without trying zlib on every payload (bot/usecases/access.py
`_LinkSerializer`, issue 17). The tokens must be the ones itsdangerous's own serializer writes
whenever it does not compress, and every token it writes, compressed or not, must still read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from bot.domain.clock import ManualClock
from bot.usecases.access import LinkExpired, Signer

SECRET = b"s" * 32
NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


class _AtNow(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(NOW.timestamp())


def stock(salt: str) -> URLSafeTimedSerializer:
    """itsdangerous's serializer as the Signer used it before, signing at NOW."""
    return URLSafeTimedSerializer(SECRET, salt=salt, signer=_AtNow)


@pytest.fixture
def signer() -> Signer:
    return Signer(SECRET, 3600, ManualClock(NOW))


@pytest.mark.parametrize(
    ("case_id", "version", "org_id"),
    [
        ("c-4f3a9b2e1d", 1, "ostersund-halsocentral-1"),
        ("OSD-2026-0001", 12, "skola-å"),
        ("c", 1, "o"),
    ],
)
def test_an_ack_token_is_the_one_itsdangerous_writes_and_reads(
    signer: Signer, case_id: str, version: int, org_id: str
) -> None:
    token = signer.ack_token(case_id, version, org_id)
    assert token == stock("ankomst.ack-link").dumps([case_id, version, org_id])
    assert not token.startswith(".")  # not compressed
    claim = signer.read_ack_token(token)
    assert claim is not None
    assert (claim.case_id, claim.version, claim.org_id) == (case_id, version, org_id)


def test_a_deep_link_token_is_the_one_itsdangerous_writes(signer: Signer) -> None:
    token = signer.deep_link_token("c-1", "vc-1", "booking")
    assert token == stock("ankomst.deep-link").dumps(["c-1", "vc-1", "booking"])
    link = signer.read_deep_link(token)
    assert link is not None
    assert (link.case_id, link.org_id, link.target) == ("c-1", "vc-1", "booking")


def test_a_compressed_token_written_before_still_reads(signer: Signer) -> None:
    # Ids long and repetitive enough that the stock serializer compressed them.
    case_id, org_id = "a" * 200, "b" * 200
    old = stock("ankomst.ack-link").dumps([case_id, 3, org_id])
    assert old.startswith(".")
    claim = signer.read_ack_token(old)
    assert claim is not None
    assert (claim.case_id, claim.version, claim.org_id) == (case_id, 3, org_id)
    # And what is written now for the same ids is not compressed, and reads too.
    new = signer.ack_token(case_id, 3, org_id)
    assert not new.startswith(".")
    assert signer.read_ack_token(new) == claim


def test_a_token_still_expires_and_a_forged_one_does_not_read(signer: Signer) -> None:
    token = signer.ack_token("c-1", 1, "o-1")
    assert signer.read_ack_token(token[:-2] + "xx") is None
    late = Signer(SECRET, 3600, ManualClock(datetime(2026, 12, 4, 11, 0, tzinfo=UTC)))
    with pytest.raises(LinkExpired):
        late.read_ack_token(token)
