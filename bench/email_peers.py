"""E-mail: Ankomst's pooled EmailSender vs plain aiosmtplib and Apprise, same sink, same mail."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiosmtplib

from bench.common import SinkProcess, median, table
from bot.channels.email import POOL_SIZE, EmailSender, OutgoingMail, render_message

FROM = "Ankomst <ankomst@ostersund.example.se>"
TEXT = (
    "Ny ankomst: OSD-2026-0001\n\nEn familj med två barn (9 och 4 år) kommer 2026-11-27.\n"
    "Språk: arabiska, dari. Tolk behövs.\n\nKvittera: http://ankomst.example.se/a/xyz\n" * 3
)
HTML = "<p>" + TEXT.replace("\n", "<br>") + "</p>"


def mail(i: int) -> OutgoingMail:
    return OutgoingMail(
        to=f"mottagare{i % 50}@ostersund.example.se",
        subject=f"Ny ankomst OSD-2026-{i:04d}: 2 barn, 27 november",
        text=TEXT,
        html=HTML,
        message_id=f"<bench-{i}-{time.monotonic_ns()}@ostersund.example.se>",
    )


@dataclass
class Run:
    name: str
    seconds: float
    connections: int
    sent: int


async def ankomst(sink: SinkProcess, n: int) -> tuple[float, int]:
    # The service's default pool, which the row's label names.
    sender = EmailSender(host="127.0.0.1", port=sink.port, from_addr=FROM, pool_size=POOL_SIZE)
    try:
        start = time.perf_counter()
        results = await asyncio.gather(*(sender.send(mail(i)) for i in range(n)))
        elapsed = time.perf_counter() - start
    finally:
        await sender.close()
    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    return elapsed, sender.connections_opened


async def plain_send(port: int, m: OutgoingMail) -> None:
    """One mail through `aiosmtplib.send()`: a connection of its own. The peers get the same
    bytes Ankomst sends (`render_message`), so only the way of sending differs."""
    await aiosmtplib.send(
        render_message(m, FROM), sender=FROM, recipients=[m.to], hostname="127.0.0.1", port=port
    )


async def aiosmtplib_sequential(sink: SinkProcess, n: int) -> tuple[float, int]:
    start = time.perf_counter()
    for i in range(n):
        await plain_send(sink.port, mail(i))
    return time.perf_counter() - start, n


async def aiosmtplib_gathered(sink: SinkProcess, n: int) -> tuple[float, int]:
    start = time.perf_counter()
    await asyncio.gather(*(plain_send(sink.port, mail(i)) for i in range(n)))
    return time.perf_counter() - start, n


def _apprise_all(port: int, n: int) -> None:
    import apprise

    for i in range(n):
        m = mail(i)
        notifier = apprise.Apprise()
        # mailto:// is plain SMTP (no TLS); no user/password, so no AUTH against the sink.
        url = (
            f"mailto://127.0.0.1:{port}?smtp=127.0.0.1&mode=insecure"
            f"&from=ankomst@ostersund.example.se&to={m.to}&format=html"
        )
        if not notifier.add(url):
            raise RuntimeError(f"apprise refused {url}")
        if not notifier.notify(body=m.html, title=m.subject):
            raise RuntimeError("apprise failed to send")


async def apprise_thread(sink: SinkProcess, n: int) -> tuple[float, int]:
    start = time.perf_counter()
    await asyncio.to_thread(_apprise_all, sink.port, n)
    return time.perf_counter() - start, n


PEERS = {
    f"Ankomst EmailSender (pool of {POOL_SIZE}, gathered)": ankomst,
    "aiosmtplib.send(), awaited in turn": aiosmtplib_sequential,
    "aiosmtplib.send(), gathered": aiosmtplib_gathered,
    "Apprise mailto:// (smtplib, in a thread)": apprise_thread,
}


async def run(n: int, rounds: int, say: object = print) -> str:
    """Each round runs every peer once against the same sink process; report medians."""
    sink = await SinkProcess.start()
    runs: dict[str, list[Run]] = {name: [] for name in PEERS}
    try:
        for r in range(rounds):
            for name, fn in PEERS.items():
                await sink.reset()
                seconds, _ = await fn(sink, n)
                await sink.wait_for(n, within=30)
                stats = await sink.stats()
                runs[name].append(Run(name, seconds, stats["connections"], stats["messages"]))
                say(
                    f"  round {r + 1} {name}: {n / seconds:,.0f} msg/s, "  # type: ignore[operator]
                    f"{stats['connections']} connections"
                )
    finally:
        await sink.stop()
    base = median([n / x.seconds for x in runs[next(iter(PEERS))]])
    apprise_rate = median([n / x.seconds for x in runs["Apprise mailto:// (smtplib, in a thread)"]])
    rows = []
    for name, rs in runs.items():
        rate = median([n / x.seconds for x in rs])
        rows.append(
            (
                name,
                rate,
                f"{min(n / x.seconds for x in rs):,.0f}–{max(n / x.seconds for x in rs):,.0f}",
                int(median([x.connections for x in rs])),
                f"{rate / base:.2f}×",
            )
        )
    head = (
        f"{n} messages per run, {rounds} rounds interleaved; one aiosmtpd sink in a separate "
        "process; median messages/s (min–max over rounds); connections counted by the sink.\n\n"
    )
    verdict = f"\n\nAnkomst / Apprise = **{base / apprise_rate:.1f}×** (target ≥ 3×)."
    return (
        head
        + table(["sender", "messages/s (median)", "range", "connections", "ratio to Ankomst"], rows)
        + verdict
    )
