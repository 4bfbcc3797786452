"""The `ankomst` command line.

Imports only what `--help` needs at the top: each subcommand imports its own modules, so that
`ankomst --help`, `token create`, `invite`, `report` and `audit export` never load aiogram or
aiohttp (seconds of start-up); only `serve` and `demo` do.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from bot.runtime.settings import Settings, load_or_exit


def _fail(message: str, code: int = 1) -> int:
    print(f"ankomst: {message}", file=sys.stderr)
    return code


def _directory_check(path: Path) -> int:
    from bot.runtime.directory_file import check_directory

    errors = check_directory(path)
    if errors:
        print(f"{path}: {len(errors)} error(s)", file=sys.stderr)
        for error in errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    print(f"{path}: OK")
    return 0


async def _with_store(settings: Settings, org_id: str, action: str, role: str) -> int:
    from bot.domain.clock import SystemClock
    from bot.runtime.directory_file import DirectoryError, load_directory
    from bot.store.connection import open_store
    from bot.usecases.access import ApiTokens, ChatLinks

    try:
        directory = load_directory(settings.directory)
    except DirectoryError as exc:
        return _fail(
            f"the directory {settings.directory} has errors; run `ankomst directory check`:\n{exc}"
        )
    if org_id not in directory.organisations:
        return _fail(f"no organisation {org_id!r} in {settings.directory}")
    store = await open_store(settings)
    try:
        clock = SystemClock()
        if action == "token":
            token = await ApiTokens(store.redis, clock).create(org_id, role)  # type: ignore[arg-type]
            print(token)
            print(
                f"# API token for {org_id} ({role}); shown once, stored only as a hash.",
                file=sys.stderr,
            )
        else:
            # Making an invite reads no chat of the directory file, so none are handed over
            # (and the service graph, which would import aiogram, is not needed).
            chats = ChatLinks(store.redis, clock, {})
            code = await chats.create_invite(org_id, role, settings.invite_hours * 3600)  # type: ignore[arg-type]
            print(code)
            print(
                f"# Send `/start {code}` to the bot from the chat to link it to {org_id} ({role}). "
                f"Valid once, for {settings.invite_hours} hours.",
                file=sys.stderr,
            )
    finally:
        await store.close()
    return 0


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    from bot.domain.calendar import WorkingDayCalendar
    from bot.domain.clock import SystemClock
    from bot.runtime.directory_file import load_directory
    from bot.store.connection import open_store
    from bot.usecases.report import build_report
    from messages.report import render_report_csv, render_report_html, render_report_json

    if args.to < args.from_:
        return _fail("--to is before --from")
    directory = load_directory(settings.directory)
    calendar = WorkingDayCalendar(
        settings.zone, settings.office_start, settings.office_end, directory.closed_days
    )
    store = await open_store(settings)
    try:
        report = await build_report(
            store.redis,
            directory,
            calendar,
            args.from_,
            args.to,
            booking_days=settings.booking_days,
            # A booking not yet reported is late only once its last day has passed by now,
            # not by the end of the period asked for.
            now=SystemClock().now(),
        )
    finally:
        await store.close()
    render = {"csv": render_report_csv, "html": render_report_html, "json": render_report_json}
    _write(render[args.format](report), args.output)
    return 0


async def _audit_export(settings: Settings, output: Path | None) -> int:
    from bot.store.connection import open_store
    from bot.usecases.audit import export

    store = await open_store(settings)
    try:
        lines = [line async for line in export(store.redis)]
    finally:
        await store.close()
    _write("".join(f"{line}\n" for line in lines), output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = argparse.ArgumentParser(
        prog="ankomst", description="Ankomst: same-day arrival notices."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service (HTTP, workers, Telegram)")
    sub.add_parser("demo", help="serve plus three sample arrivals")
    directory = sub.add_parser("directory", help="the directory of organisations")
    directory_sub = directory.add_subparsers(dest="directory_command", required=True)
    check = directory_sub.add_parser("check", help="validate a directory file")
    check.add_argument("file", nargs="?", type=Path)
    token = sub.add_parser("token", help="API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="print a new API token for an organisation")
    create.add_argument("org_id")
    create.add_argument("--role", choices=("member", "supervisor"), default="member")
    invite = sub.add_parser("invite", help="a one-time code that links a Telegram chat")
    invite.add_argument("org_id")
    invite.add_argument("--role", choices=("member", "supervisor"), default="member")
    report = sub.add_parser("report", help="follow-up statistics (yearly follow-up, §10)")
    report.add_argument("--from", dest="from_", type=_date, required=True, metavar="DATE")
    report.add_argument("--to", type=_date, required=True, metavar="DATE")
    report.add_argument("--format", choices=("csv", "html", "json"), default="csv")
    report.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_export = audit_sub.add_parser("export", help="reads and state changes, JSON lines")
    audit_export.add_argument("--output", type=Path, metavar="FILE", help="write here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ankomst` command; returns its exit status (tests call it in-process)."""
    try:
        args = build_parser().parse_args(argv)
        settings = load_or_exit()
    except SystemExit as exc:  # --help, a usage error or a bad setting, already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    from bot.runtime.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    if args.command == "directory":
        return _directory_check(args.file or settings.directory)
    try:
        if args.command == "serve":
            from handlers.main import serve

            asyncio.run(serve(settings))
        elif args.command == "demo":
            from handlers.demo import run_demo

            asyncio.run(run_demo(settings))
        elif args.command == "token":
            return asyncio.run(_with_store(settings, args.org_id, "token", args.role))
        elif args.command == "invite":
            return asyncio.run(_with_store(settings, args.org_id, "invite", args.role))
        elif args.command == "report":
            return asyncio.run(_report(settings, args))
        elif args.command == "audit":
            return asyncio.run(_audit_export(settings, args.output))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, never a traceback, for whatever stops the start
        from bot.runtime.directory_file import DirectoryError

        if isinstance(exc, DirectoryError):
            return _fail(f"the directory {settings.directory} has errors:\n{exc}", 2)
        logging.getLogger("ankomst").debug("stopped", exc_info=True)
        return _fail(f"{type(exc).__name__}: {exc}", 1)
    return 0
