"""Ankomst service core: settings, directory, cases, fan-out, senders, scheduler, CLI."""
