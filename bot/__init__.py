"""Ankomst service core: settings, directory, cases, fan-out, senders, scheduler, CLI."""

from bot.channels.telegram_types import defer_aiogram_model_builds_on_import

# Before any module of the service imports aiogram (~125 MB of RSS, see telegram_types), and
# without importing it here: `ankomst --help` and most commands never need aiogram.
defer_aiogram_model_builds_on_import()
