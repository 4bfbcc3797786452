"""`ankomst demo`: the service plus three sample arrivals, so a newcomer sees a fan-out happen."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import aiohttp

from bot.domain.calendar import local_today
from bot.runtime.services import Services
from bot.runtime.settings import Settings
from handlers.main import Ankomst, serve

SAMPLES: list[dict[str, Any]] = [
    {
        "external_ref": "DEMO-MIG-0001",
        "children": [{"age": 9}, {"age": 4, "initials": "A.K."}],
        "languages": ["ar", "prs"],
        "interpreter_needed": True,
        "unaccompanied": False,
        "details": "Familj om fyra, bor på Storgatan 1 från ankomstdagen.",
    },
    {
        "external_ref": "DEMO-MIG-0002",
        "children": [{"age": 16}],
        "languages": ["ti"],
        "interpreter_needed": True,
        "unaccompanied": True,
        "details": "Ensamkommande, placerad i stödboende.",
    },
    {
        "external_ref": "DEMO-MIG-0003",
        "children": [{"age": 2}, {"age": 5}],
        "languages": ["uk"],
        "interpreter_needed": False,
        "unaccompanied": False,
        "details": "",
    },
]


async def post_samples(service: Ankomst, services: Services) -> None:
    """Register the samples through the real HTTP API and report what happened."""
    directory = services.directory
    municipality = (
        "ostersund"
        if "ostersund" in directory.municipalities
        else next(iter(directory.municipalities))
    )
    try:
        reception = directory.reception_unit(municipality)
    except KeyError:
        print(f"demo: {municipality} has no reception unit in the directory")
        return
    token = await services.tokens.create(reception.id)
    today = local_today(services.clock, services.settings.zone)
    base = f"http://127.0.0.1:{service.port}"
    headers = {"Authorization": f"Bearer {token}"}
    ids: list[str] = []
    async with aiohttp.ClientSession(base, headers=headers) as http:
        for n, sample in enumerate(SAMPLES):
            body = {
                **sample,
                "municipality": municipality,
                "external_ref": f"{sample['external_ref']}-{today:%Y%m%d}",
                "arrival_date": (today + timedelta(days=2 + n)).isoformat(),
            }
            async with http.post("/api/v1/arrivals", json=body) as response:
                answer = await response.json()
                if response.status not in (200, 201):
                    print(f"demo: {sample['external_ref']} refused: {answer}")
                    continue
                ids.append(answer["id"])
        for _ in range(100):
            states = []
            for case_id in ids:
                async with http.get(f"/api/v1/arrivals/{case_id}") as response:
                    states.append(await response.json())
            if all(s["status"] != "notifying" for s in states):
                break
            await asyncio.sleep(0.2)
    print()
    print("Demo arrivals:")
    for state in states:
        sent = sum(
            1
            for p in [*state["recipients"], state["reception_unit"]]
            for d in p["deliveries"]
            if d["status"] == "sent"
        )
        names = ", ".join(p["name"] for p in state["recipients"])
        print(
            f"  {state['reference']}  {state['arrival']['arrival_date']}  status={state['status']}"
            f"  sent={sent}  to: {names}"
        )
    if services.settings.smtp_host is None:
        print(f"Captured mail: {services.settings.mail_dir}/new/")
    print(f"API token for {reception.id} (demo): {token}")
    print(
        f"Try: curl -H 'Authorization: Bearer {token}' "
        f"{base}/api/v1/arrivals/{ids[0] if ids else ''}"
    )


async def run_demo(settings: Settings) -> None:
    """Serve, and post the samples once everything is up."""
    await serve(settings, after_start=post_samples)
