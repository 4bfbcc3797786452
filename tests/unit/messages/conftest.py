"""View data for the rendering tests: one family arriving in Östersund."""

from __future__ import annotations

from datetime import date

import pytest

from messages.models import ArrivalFacts, ArrivalNotice, Child, Contact

ACK_URL = "https://ankomst.example.se/a/tok123"


@pytest.fixture
def facts() -> ArrivalFacts:
    return ArrivalFacts(
        reference="OSD-2026-0001",
        municipality="Östersund",
        arrival_date=date(2026, 11, 27),
        children=(Child(9), Child(4, "A.K.")),
        languages=("ar", "prs"),
        interpreter_needed=True,
        unaccompanied=False,
        details="Familj på fyra, bor på Storgatan 1 från ankomstdagen.",
    )


@pytest.fixture
def reception_unit() -> Contact:
    return Contact("Mottagningsenheten Östersund", "mottagning@ostersund.se", "063-14 30 00")


@pytest.fixture
def notice(facts: ArrivalFacts, reception_unit: Contact) -> ArrivalNotice:
    """The new-arrival message to the health centre."""
    return ArrivalNotice(
        kind="new",
        facts=facts,
        version=1,
        recipient=Contact("Lugnviks hälsocentral", "lugnvik@regionjh.se"),
        recipient_kind="health_centre",
        reception_unit=reception_unit,
        needs_ack=True,
        ack_url=ACK_URL,
        booking_deadline=date(2026, 12, 4),
    )
