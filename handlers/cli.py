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
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bot.runtime.settings import Settings, load_or_exit

if TYPE_CHECKING:
    from bot.store import Redis
    from bot.store.durability import Durability


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


async def _with_store(
    settings: Settings,
    org_id: str,
    action: str,
    role: str,
    label: str | None = None,
    days: int | None = None,
) -> int:
    from bot.domain.clock import SystemClock
    from bot.runtime.directory_file import DirectoryError, load_directory
    from bot.store.connection import open_store
    from bot.usecases.access import ChatLinks

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
            return await _token_create(settings, store.redis, org_id, role, label, days)
        # Making an invite reads no chat of the directory file, so none are handed over
        # (and the service graph, which would import aiogram, is not needed).
        chats = ChatLinks(store.redis, clock, {}, _durability(settings, store.redis))
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


def _durability(settings: Settings, redis: Redis) -> Durability:
    """As the service confirms its writes: a token or code is printed (a revocation reported)
    only once on ANKOMST_REDIS_MIN_REPLICAS replicas."""
    from bot.store.durability import Durability

    return Durability(redis, settings.redis_min_replicas, settings.redis_wait_ms)


async def _token_create(
    settings: Settings, redis: Redis, org_id: str, role: str, label: str | None, days: int | None
) -> int:
    from bot.domain.clock import SystemClock
    from bot.usecases.access import ApiTokens

    tokens = ApiTokens(redis, SystemClock(), _durability(settings, redis))
    token, info = await tokens.issue(org_id, role, label, days)  # type: ignore[arg-type]
    print(token)
    expiry = f"expires {_local(info.expires_at, settings)}" if info.expires_at else "no expiry"
    print(
        f"# API token {info.id} for {org_id} ({role}, {info.label!r}, {expiry}); shown once, "
        f"stored only as a hash. End it with `ankomst token revoke {info.id}`.",
        file=sys.stderr,
    )
    if label is None:
        print(
            "# Tip: name what uses it with --label, e.g. --label 'Elevregistret'.", file=sys.stderr
        )
    return 0


def _token_options(args: argparse.Namespace) -> tuple[str | None, int | None] | str:
    """--label and --expires of `token create`, checked before the store is opened; or the
    one-line problem."""
    from bot.usecases.access import EXPIRES_MAX_DAYS, label_problem

    if args.label is not None and (problem := label_problem(args.label)):
        return f"--label: {problem}"
    days = None
    if args.expires is not None:
        text = str(args.expires).strip()
        days = int(text) if text.isdigit() else 0
        if not 1 <= days <= EXPIRES_MAX_DAYS:
            return f"--expires: a whole number of days from 1 to {EXPIRES_MAX_DAYS}, not {text!r}"
    return args.label, days


def _local(at: datetime | None, settings: Settings) -> str:
    """An instant as local time (ANKOMST_TIMEZONE) for a listing; "-" for none."""
    return at.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M") if at else "-"


async def _token_list(settings: Settings, org_id: str | None) -> int:
    from bot.domain.clock import SystemClock
    from bot.store.connection import open_store
    from bot.usecases.access import token_records

    store = await open_store(settings)
    try:
        infos = await token_records(store.redis, org_id)
    finally:
        await store.close()
    if not infos:
        print(f"# no API tokens{f' for {org_id}' if org_id else ''}", file=sys.stderr)
        return 0
    now = SystemClock().now()
    rows = [("ID", "ORGANISATION", "ROLE", "LABEL", "CREATED", "LAST USED", "EXPIRES", "STATE")]
    rows += [
        (
            i.id,
            i.org_id,
            i.role,
            i.label,
            _local(i.created_at, settings),
            _local(i.last_used_at, settings),
            _local(i.expires_at, settings),
            i.state(now),
        )
        for i in infos
    ]
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def _token_revoke(settings: Settings, public_id: str) -> int:
    from bot.domain.clock import SystemClock
    from bot.store.connection import open_store
    from bot.usecases.access import ApiTokens

    store = await open_store(settings)
    try:
        tokens = ApiTokens(store.redis, SystemClock(), _durability(settings, store.redis))
        outcome = await tokens.revoke(public_id)
    finally:
        await store.close()
    if outcome is None:
        return _fail(f"no API token {public_id!r}; `ankomst token list` shows their ids")
    info, newly = outcome
    what = f"{info.id} ({info.org_id}, {info.role}, {info.label!r})"
    if newly:
        print(f"revoked {what}: every process refuses it from now on (401)")
    else:
        print(f"{what} was already revoked at {_local(info.revoked_at, settings)}")
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
    from messages.report import (
        render_report_csv,
        render_report_csv_sv,
        render_report_html,
        render_report_json,
    )

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
            per_month=args.per_month or args.by == "month",
        )
    finally:
        await store.close()
    render = {
        "csv": render_report_csv,
        "csv-sv": render_report_csv_sv,
        "html": render_report_html,
        "json": render_report_json,
    }
    _write(render[args.format](report), args.output)
    return 0


def _audit_dates(args: argparse.Namespace) -> tuple[date | None, date | None] | str:
    """--from and --to as dates, or the one-line problem."""
    found: list[date | None] = []
    for option, text in (("--from", args.from_), ("--to", args.to)):
        try:
            found.append(date.fromisoformat(text.strip()) if text is not None else None)
        except ValueError:
            return f"{option}: not a date (YYYY-MM-DD): {text!r}"
    start, end = found
    if start and end and end < start:
        return "--to is before --from"
    return start, end


async def _audit_export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.store.connection import open_store
    from bot.usecases.audit import AuditFilter, case_id_for, export

    dates = _audit_dates(args)
    if isinstance(dates, str):
        return _fail(dates, 2)
    for option, text in (("--case", args.case), ("--org", args.org)):
        if text is not None and not text.strip():
            return _fail(f"{option}: empty", 2)
    store = await open_store(settings)
    try:
        case_id = args.case and (await case_id_for(store.redis, args.case.strip()) or args.case)
        only = AuditFilter(
            case_id=case_id, org_id=args.org, start=dates[0], end=dates[1], zone=settings.zone
        )
        lines = [line async for line in export(store.redis, only)]
    finally:
        await store.close()
    _write("".join(f"{line}\n" for line in lines), args.output)
    return 0


def _notice_parse(settings: Settings, path: Path) -> int:
    """Print the draft a notice gives: only what a draft keeps (never a name, identity number
    or address), with the external_ref the running service would compute (same secret)."""
    import json

    from bot.domain.calendar import local_today
    from bot.domain.clock import SystemClock
    from bot.domain.notice import parse_notice

    try:
        raw = path.read_bytes()
    except OSError as exc:
        return _fail(f"{path}: {exc.strerror or exc}", 2)
    today = local_today(SystemClock(), settings.zone)
    draft = parse_notice(raw, settings.secret(), today)
    print(json.dumps(draft.fields(), ensure_ascii=False, indent=2))
    return 0


async def _telegram_webhook(settings: Settings, delete: bool) -> int:
    from handlers.main import make_bot
    from handlers.telegram import delete_webhook, register_webhook

    bot = make_bot(settings)
    if bot is None:
        return _fail("ANKOMST_TELEGRAM_TOKEN is not set: there is no bot to register", 2)
    if not delete and settings.telegram_webhook_secret is None:
        return _fail("ANKOMST_TELEGRAM_WEBHOOK_SECRET is not set (a webhook needs it)", 2)
    try:
        if delete:
            await delete_webhook(bot)
            print("Telegram: webhook deleted; updates wait for polling (ANKOMST_TELEGRAM_MODE)")
        else:
            url = await register_webhook(bot, settings)
            print(f"Telegram: webhook set; Telegram posts updates to {url}")
    finally:
        await bot.session.close()
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
    create.add_argument("--label", metavar="TEXT", help="what uses it (shown in lists, audit)")
    create.add_argument("--expires", metavar="DAYS", help="refused after this many days")
    listing = token_sub.add_parser("list", help="tokens: id, label, use, expiry (no secret)")
    listing.add_argument("org_id", nargs="?")
    revoke = token_sub.add_parser("revoke", help="end a token at once, in every process")
    revoke.add_argument("id", help="the token's id, as `token list` shows it")
    invite = sub.add_parser("invite", help="a one-time code that links a Telegram chat")
    invite.add_argument("org_id")
    invite.add_argument("--role", choices=("member", "supervisor"), default="member")
    report = sub.add_parser("report", help="follow-up statistics (yearly follow-up, §10)")
    report.add_argument("--from", dest="from_", type=_date, required=True, metavar="DATE")
    report.add_argument("--to", type=_date, required=True, metavar="DATE")
    report.add_argument("--format", choices=("csv", "csv-sv", "html", "json"), default="csv")
    report.add_argument(
        "--per-month", action="store_true", help="one row per month, municipality and kind"
    )
    report.add_argument("--by", choices=("month",), help="--by month is --per-month")
    report.add_argument("--output", type=Path, metavar="FILE", help="write here, not stdout")
    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_export = audit_sub.add_parser("export", help="reads and state changes, JSON lines")
    audit_export.add_argument("--case", metavar="ID", help="one case (its id or reference)")
    audit_export.add_argument("--org", metavar="ORG_ID", help="what one organisation did")
    audit_export.add_argument("--from", dest="from_", metavar="DATE", help="from this day")
    audit_export.add_argument("--to", metavar="DATE", help="to this day, inclusive")
    audit_export.add_argument("--output", type=Path, metavar="FILE", help="write here")
    notice = sub.add_parser("notice", help="Migrationsverket's notices")
    notice_sub = notice.add_subparsers(dest="notice_command", required=True)
    notice_parse = notice_sub.add_parser(
        "parse", help="show the draft a notice (.eml) would give, with nothing personal"
    )
    notice_parse.add_argument("file", type=Path, metavar="FILE.eml")
    telegram = sub.add_parser("telegram", help="the Telegram bot")
    telegram_sub = telegram.add_subparsers(dest="telegram_command", required=True)
    webhook = telegram_sub.add_parser(
        "webhook",
        help="register ANKOMST_PUBLIC_URL/telegram/webhook with Telegram (setWebhook), "
        "with the secret token; `serve` in webhook mode does this at start",
    )
    webhook.add_argument("--delete", action="store_true", help="remove the webhook instead")
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
        elif args.command == "token" and args.token_command == "create":  # noqa: S105
            options = _token_options(args)
            if isinstance(options, str):
                return _fail(options, 2)
            label, days = options
            return asyncio.run(_with_store(settings, args.org_id, "token", args.role, label, days))
        elif args.command == "token" and args.token_command == "list":  # noqa: S105
            return asyncio.run(_token_list(settings, args.org_id))
        elif args.command == "token":
            return asyncio.run(_token_revoke(settings, args.id))
        elif args.command == "invite":
            return asyncio.run(_with_store(settings, args.org_id, "invite", args.role))
        elif args.command == "report":
            return asyncio.run(_report(settings, args))
        elif args.command == "audit":
            return asyncio.run(_audit_export(settings, args))
        elif args.command == "notice":
            return _notice_parse(settings, args.file)
        elif args.command == "telegram":
            return asyncio.run(_telegram_webhook(settings, args.delete))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line, never a traceback, for whatever stops the start
        from bot.runtime.directory_file import DirectoryError
        from bot.runtime.settings import SettingsError
        from bot.store.connection import UnsupportedStore
        from bot.store.durability import NotDurable

        if isinstance(exc, DirectoryError):
            return _fail(f"the directory {settings.directory} has errors:\n{exc}", 2)
        # Found only once connected: a Redis Cluster, refused by open_store for every command.
        if isinstance(exc, SettingsError | UnsupportedStore):
            return _fail(f"invalid setting: {exc}", 2)
        if isinstance(exc, NotDurable):  # the CLI's 503: nothing was shown to be used
            return _fail(
                f"the store did not confirm the write on ANKOMST_REDIS_MIN_REPLICAS replica(s) "
                f"({exc}); nothing to use was printed: run the command again in a while"
            )
        logging.getLogger("ankomst").debug("stopped", exc_info=True)
        return _fail(f"{type(exc).__name__}: {exc}", 1)
    return 0
