"""The fan-out written the plain way on a job queue (arq, taskiq): what the two peers share.

Each peer is two processes, as a team would deploy it: an aiohttp handler that takes
`POST /api/v1/arrivals`, routes the arrival with the same directory and enqueues one job per
delivery (e-mail and chat of the reception unit and of every organisation told), and a worker
that sends each job: the mail with `aiosmtplib.send()` (the same bytes as benchmark 1:
`render_message`), the chat message with aiogram's `Bot.send_message`. Nothing else: no
idempotency, no deadlines, no history, no claim — what Ankomst does besides sending.

The runner (`run_peer`) starts the sink and the Bot API server (each in a process of its own:
bench/common.py's SinkProcess and BotApiProcess), the worker and the handler, posts the
arrivals as benchmark 2 does, waits until the sink and the Bot API server have every delivery,
and reads the CPU of the handler and worker processes (their children included) with psutil
from the moment both were ready.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import aiosmtplib
from aiohttp import web

from bench import common
from bench.common import fresh_redis, start_servers
from bench.email_peers import FROM, HTML, TEXT
from bot.channels.email import OutgoingMail, render_message
from bot.runtime.directory_file import load_directory
from tests.support.world import EXAMPLE_DIRECTORY, TOKEN, arrival

DIRECTORY = load_directory(EXAMPLE_DIRECTORY)
BEARER = "bench-peer-token"
# The worker runs as many jobs at a time as Ankomst's Telegram consumer (64).
CONCURRENCY = 64

Enqueue = Callable[[str, dict[str, Any]], Awaitable[None]]


def chat_of(org_id: str) -> int:
    """The chat linked to an organisation: the same numbering as bench/pipeline.py."""
    return 200_000 + list(DIRECTORY.organisations).index(org_id)


def jobs_for(body: dict[str, Any], ref: str) -> list[tuple[str, dict[str, Any]]]:
    """One job per delivery: the reception unit's copy and each organisation told, on e-mail
    and on its chat (every organisation of the bench has one chat)."""
    municipality = body["municipality"]
    orgs = [DIRECTORY.reception_unit(municipality)]
    orgs += DIRECTORY.route(
        municipality,
        [int(c["age"]) for c in body["children"]],
        bool(body.get("unaccompanied")),
        body.get("recipients"),
    )
    jobs: list[tuple[str, dict[str, Any]]] = []
    for org in orgs:
        if org.email:
            jobs.append(("send_email", {"to": org.email, "ref": ref}))
        jobs.append(("send_chat", {"chat_id": chat_of(org.id), "ref": ref}))
    return jobs


def handler_app(enqueue: Enqueue) -> web.Application:
    """The plain handler: check the token, route, enqueue each delivery in turn, answer 201."""

    async def post_arrival(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {BEARER}":
            return web.json_response({"title": "unauthorised"}, status=401)
        body = await request.json()
        ref = f"REF-{uuid.uuid4().hex[:12]}"
        for name, kwargs in jobs_for(body, ref):
            await enqueue(name, kwargs)
        return web.json_response({"id": ref}, status=201)

    app = web.Application()
    app.router.add_post("/api/v1/arrivals", post_arrival)
    return app


async def serve_handler(enqueue: Enqueue) -> web.AppRunner:
    """Serve the handler on a free port and print "PORT <n>" for the runner."""
    runner = web.AppRunner(handler_app(enqueue), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    return runner


async def send_email(smtp_port: int, to: str, ref: str) -> None:
    """The plain way: a message built per job, one `aiosmtplib.send()` (a connection) each."""
    mail = OutgoingMail(
        to=to,
        subject=f"Ny ankomst {ref}: 2 barn",
        text=TEXT,
        html=HTML,
        message_id=f"<{ref}-{uuid.uuid4().hex}@ostersund.example.se>",
    )
    await aiosmtplib.send(
        render_message(mail, FROM),
        sender=FROM,
        recipients=[to],
        hostname="127.0.0.1",
        port=smtp_port,
    )


async def wait_forever() -> None:
    """Until SIGTERM (the default action ends the process; CPU is read from outside)."""
    await asyncio.Event().wait()


async def _start(module: str, role: str, *args: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, role, *args, stdout=asyncio.subprocess.PIPE
    )
    return proc


async def _first_line(proc: asyncio.subprocess.Process, what: str) -> str:
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    if not line:
        raise RuntimeError(f"{what} did not start")
    return line


async def _post(
    http: aiohttp.ClientSession,
    sem: asyncio.Semaphore,
    port: int,
    auth: dict[str, str],
    module: str,
    body: dict[str, Any],
) -> None:
    async with (
        sem,
        http.post(f"http://127.0.0.1:{port}/api/v1/arrivals", json=body, headers=auth) as r,
    ):
        if r.status != 201:
            raise RuntimeError(f"{module}: {r.status} {await r.text()}")


async def _until(made: Any, expected: int, deadline: float, module: str) -> None:
    """Wait until `made()` reaches `expected` deliveries, by `deadline` (time.time())."""
    while True:
        done = await made()
        if done >= expected:
            return
        if time.time() > deadline:
            raise TimeoutError(f"{module}: {done} of {expected} deliveries")
        await asyncio.sleep(0.02)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run_peer(module: str, n: int, say: Any = print) -> dict[str, Any]:
    """Post `n` arrivals to the peer in `module` and wait for every delivery; its figures."""
    redis, url = await fresh_redis()
    sink, api = await start_servers()
    worker = await _start(module, "worker", url, str(sink.port), api.base_url)
    handler: asyncio.subprocess.Process | None = None
    try:
        await _first_line(worker, f"{module} worker")
        handler = await _start(module, "handler", url)
        port = int((await _first_line(handler, f"{module} handler")).split()[1])
        procs = [worker.pid, handler.pid]
        date = (datetime.now().date() + timedelta(days=2)).isoformat()
        municipalities = list(DIRECTORY.municipalities)
        expected = 0
        auth = {"Authorization": f"Bearer {BEARER}"}

        def bodies_of(prefix: str, count: int) -> list[dict[str, Any]]:
            return [
                arrival(
                    external_ref=f"{prefix}-{i:06d}",
                    arrival_date=date,
                    municipality=municipalities[i % len(municipalities)],
                )
                for i in range(count)
            ]

        async def made() -> int:
            return int((await sink.stats())["messages"]) + await api.sent()

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
            sem = asyncio.Semaphore(32)
            # The same warm-up as Ankomst's (bench/pipeline.py WARMUP): what the first messages
            # cost once (aiogram's lazy models, the first connections) is not a delivery's.
            warm = bodies_of("PEER-WARMUP", common.WARMUP)
            warm_expected = sum(len(jobs_for(b, "x")) for b in warm)
            await asyncio.gather(*(_post(http, sem, port, auth, module, b) for b in warm))
            await _until(made, warm_expected, time.time() + 60.0, module)
            await sink.reset()
            warm_chats = await api.sent()
            cpu_before = [common.cpu_seconds(p) for p in procs]
            bodies = bodies_of("PEER", n)
            expected = sum(len(jobs_for(b, "x")) for b in bodies)

            t_start = time.time()
            await asyncio.gather(*(_post(http, sem, port, auth, module, b) for b in bodies))
            t_posted = time.time()
        await _until(made, expected + warm_chats, time.time() + max(120.0, n * 0.5), module)
        t_done = time.time()
        cpu = sum(common.cpu_seconds(p) - b for p, b in zip(procs, cpu_before, strict=True))
        emails = (await sink.stats())["messages"]
        chats = await api.sent() - warm_chats
    finally:
        if handler is not None:
            await _stop(handler)
        await _stop(worker)
        await api.stop()
        await sink.stop()
        await redis.flushdb()
        await redis.aclose()
    figures = {
        "arrivals": n,
        "deliveries": emails + chats,
        "emails": emails,
        "chats": chats,
        "accept_rate": n / (t_posted - t_start),
        "delivery_rate": (emails + chats) / (t_done - t_start),
        "cpu_s": cpu,
        "cpu_ms_per_delivery": cpu / (emails + chats) * 1000,
        "deliveries_per_cpu_s": (emails + chats) / cpu if cpu else float("nan"),
    }
    say(f"  {module}: {figures}")
    return figures


def redis_url() -> str:
    """The Redis the bench chose (db ANKOMST_BENCH_REDIS_URL), for the peers' brokers."""
    return common.REDIS_URL


def make_bot(api_base: str) -> Any:
    """An aiogram Bot pointed at the bench's Bot API server (as the service's is)."""
    from aiogram import Bot
    from aiogram.client.default import DefaultBotProperties
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    session = AiohttpSession(api=TelegramAPIServer.from_base(api_base))
    return Bot(TOKEN, session=session, default=DefaultBotProperties(parse_mode="HTML"))


CHAT_TEXT = HTML[:900]
