"""Webhook mode: `serve` registers its own URL with Telegram (setWebhook, with the secret) and
says where Telegram posts; `ankomst telegram webhook [--delete]` does the same by hand.

Against the local Bot API server (tests/support/telegram_api.py), which records setWebhook.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis.asyncio import Redis

from handlers.main import Ankomst
from handlers.telegram import ALLOWED_UPDATES
from tests.support.cli import run_cli
from tests.support.telegram_api import DEFAULT_TOKEN, FakeTelegramAPI
from tests.support.world import EXAMPLE_DIRECTORY, running_world

SECRET = "s3cret_webhook-token"
PUBLIC = "https://ankomst.example.se"


async def test_serve_in_webhook_mode_registers_its_url_and_says_where(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    async with running_world(
        redis_url,
        tmp_path,
        link_chats=False,
        telegram_mode="webhook",
        telegram_webhook_secret=SECRET,
    ) as world:
        api = world.telegram
        assert api.webhook_url == "http://ankomst.example.se/telegram/webhook"
        assert api.webhook_secret == SECRET
        assert api.webhook_allowed_updates == list(ALLOWED_UPDATES)
        # the routers handle no other kind of update than those Telegram is asked to send
        dispatcher = world.service.dispatcher
        assert dispatcher is not None
        assert set(dispatcher.resolve_used_update_types()) == set(ALLOWED_UPDATES)


async def test_the_start_banner_names_the_webhook_url_never_the_secret(
    redis_url: str, redis: Redis, tmp_path: Path
) -> None:
    from bot.runtime.settings import Settings

    lines: list[str] = []
    async with FakeTelegramAPI() as api:
        settings = Settings(
            _env_file=None,
            redis_url=redis_url,
            data_dir=tmp_path,
            directory=EXAMPLE_DIRECTORY,
            http_port=0,
            public_url=PUBLIC,
            secret_key="test-secret-key-for-signing",
            telegram_token=DEFAULT_TOKEN,
            telegram_api_url=api.base_url,
            telegram_mode="webhook",
            telegram_webhook_secret=SECRET,
        )
        service = Ankomst(settings, say=lines.append, run_workers=False)
        await service.start()
        try:
            assert (
                f"Telegram: webhook mode; Telegram posts updates to {PUBLIC}/telegram/webhook"
                in (lines)
            )
            assert not any(SECRET in line for line in lines)
            assert api.webhook_url == f"{PUBLIC}/telegram/webhook"
        finally:
            await service.stop()


async def test_telegram_webhook_command_sets_and_deletes(redis: Redis, tmp_path: Path) -> None:
    async with FakeTelegramAPI() as api:
        env = {
            "ANKOMST_DATA_DIR": str(tmp_path),
            "ANKOMST_PUBLIC_URL": PUBLIC + "/",
            "ANKOMST_TELEGRAM_TOKEN": DEFAULT_TOKEN,
            "ANKOMST_TELEGRAM_API_URL": api.base_url,
            "ANKOMST_TELEGRAM_WEBHOOK_SECRET": SECRET,
        }
        result = await asyncio.to_thread(run_cli, "telegram", "webhook", env=env)
        assert result.returncode == 0, result.stderr
        assert api.webhook_url == f"{PUBLIC}/telegram/webhook"
        assert api.webhook_secret == SECRET
        assert f"{PUBLIC}/telegram/webhook" in result.stdout and SECRET not in result.stdout

        result = await asyncio.to_thread(run_cli, "telegram", "webhook", "--delete", env=env)
        assert result.returncode == 0, result.stderr
        assert api.webhook_url == ""
        assert [c.method.lower() for c in api.calls][-2:] == ["setwebhook", "deletewebhook"]

        no_secret = {k: v for k, v in env.items() if k != "ANKOMST_TELEGRAM_WEBHOOK_SECRET"}
        result = await asyncio.to_thread(run_cli, "telegram", "webhook", env=no_secret)
        assert result.returncode == 2
        assert "ANKOMST_TELEGRAM_WEBHOOK_SECRET" in result.stderr

        bad = {**env, "ANKOMST_TELEGRAM_WEBHOOK_SECRET": "bad secret!"}
        result = await asyncio.to_thread(run_cli, "telegram", "webhook", env=bad)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "ANKOMST_TELEGRAM_WEBHOOK_SECRET" in result.stderr
