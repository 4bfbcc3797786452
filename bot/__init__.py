"""Ankomst service core: settings, directory, cases, fan-out, senders, scheduler, CLI."""

from bot.channels.telegram_types import defer_aiogram_model_builds

# First, before any module of the service imports aiogram: ~125 MB of RSS (see telegram_types).
defer_aiogram_model_builds()
