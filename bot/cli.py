"""The `villagebot` command: run, demo, migrate, directory, invite, poster, digest, ranking,
webhook, apikey."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from tortoise.exceptions import BaseORMException

from bot.config import Settings, SettingsError, load_settings
from bot.db import DatabaseUnavailable

if TYPE_CHECKING:
    from bot.models import Township


def _fail(line: str, code: int = 2) -> int:
    print(f"villagebot: {line}", file=sys.stderr)
    return code


class Refused(Exception):
    """A command that cannot do what was asked: the one line to fail with."""


def _stopped_by_signals() -> asyncio.Event:
    """Set by Ctrl-C or SIGTERM. A worker of `--workers` comes with both blocked by its
    parent: one sent during its start-up is delivered now, to this loop. Once set, both are
    blocked again: a second one (the parent passing on a Ctrl-C the worker had already from
    the terminal) must not end the process half-way through its stop, once the loop is gone."""
    stopping = asyncio.Event()
    stops = {signal.SIGINT, signal.SIGTERM}

    def stop() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        stopping.set()

    for signal_number in stops:
        asyncio.get_running_loop().add_signal_handler(signal_number, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)
    return stopping


async def _run(
    settings: Settings, _args: argparse.Namespace, *, listening: socket.socket | None = None
) -> int:
    """Start, receive updates (by polling, or by webhook with WEBHOOK_URL) until Ctrl-C or
    SIGTERM, stop. A start that cannot succeed says why. `listening`: a worker's WEB_LISTEN,
    bound by the parent of `--workers`."""
    if not settings.bot_token:
        return _fail("setting BOT_TOKEN: required to run the bot (try `villagebot demo`)")
    stopping = _stopped_by_signals()
    from bot.app import Villagebot
    from bot.startup import CannotStart

    starting = asyncio.ensure_future(Villagebot.start(settings, listening=listening))
    if not await _unless_stopped(starting, stopping):
        return _fail("stopped before the bot started", 1)
    try:
        app = starting.result()
    except CannotStart as error:
        return _fail(str(error), 1)
    receiving = asyncio.ensure_future(app.receive())
    await _unless_stopped(receiving, stopping, cancel=False)
    await app.stop()  # ends the polling as aiogram means it to end
    await receiving
    return 0


async def _web(
    settings: Settings, _args: argparse.Namespace, *, listening: socket.socket | None = None
) -> int:
    """The back office alone, for a deployment that serves it apart from the bot: changes
    reach Telegram through the outbox, which the bot's process delivers."""
    if not settings.web_listen:
        return _fail("setting WEB_LISTEN: empty, so there is no back office to serve")
    stopping = _stopped_by_signals()
    from bot import db
    from bot.app import build_bot, start_web
    from bot.i18n import catalogs
    from bot.startup import CannotStart

    catalogs()
    # The cases' photos and voice messages are fetched with the bot's token; the token stays
    # in this process (the browser gets the files from the back office).
    bot = build_bot(settings) if settings.bot_token else None
    if bot is None:
        logging.getLogger(__name__).warning(
            "BOT_TOKEN is not set: the back office shows only the case files kept already"
        )
    await db.start(settings.database_url)
    try:
        server = await start_web(settings, bot, listening=listening)
    except CannotStart as error:
        await db.stop()
        if bot is not None:
            await bot.session.close()
        return _fail(str(error), 1)
    # One write: the workers of `--workers` share standard output, and print() writes the
    # line's end apart when it is unbuffered (PYTHONUNBUFFERED).
    sys.stdout.write(f"back office on {settings.web_listen}, signing in at {settings.web_url}\n")
    sys.stdout.flush()
    try:
        await stopping.wait()
    finally:
        await server.stop()
        await db.stop()
        if bot is not None:
            await bot.session.close()
    return 0


async def _webhook(settings: Settings, args: argparse.Namespace) -> int:
    """`webhook set|delete|info`: done once for the whole deployment, not by each process."""
    if not settings.bot_token:
        return _fail("setting BOT_TOKEN: required to ask Telegram about the webhook")
    from aiogram.exceptions import TelegramAPIError

    from bot.app import build_bot, build_dispatcher
    from bot.startup import CannotStart, set_webhook

    bot = build_bot(settings)
    try:
        if args.action == "set":
            if not settings.webhook_url:
                return _fail("setting WEBHOOK_URL: empty, so there is no webhook to set")
            dispatcher = build_dispatcher(settings)
            allowed = dispatcher.resolve_used_update_types()
            await dispatcher.storage.close()
            await dispatcher.fsm.events_isolation.close()
            try:
                await set_webhook(bot, settings, allowed, always=True)
            except CannotStart as error:
                return _fail(str(error), 1)
            print(f"webhook set: {settings.webhook_url} ({', '.join(allowed)})")
        elif args.action == "delete":
            await bot.delete_webhook(drop_pending_updates=args.drop_pending_updates)
            print("webhook deleted" + (
                "; pending updates dropped" if args.drop_pending_updates else ""
            ))
        else:
            print(_webhook_info(await bot.get_webhook_info(), settings.timezone))
    except TelegramAPIError as error:
        return _fail(f"Telegram at {settings.telegram_api_url} answered {error.message!r}", 1)
    finally:
        await bot.session.close()
    return 0


def _webhook_info(info: Any, timezone: str) -> str:
    """getWebhookInfo as lines of `name: value`, the last error's time as read in TIMEZONE."""
    lines = [
        f"url: {info.url or '(none: the bot polls)'}",
        f"pending updates: {info.pending_update_count}",
    ]
    if info.url:
        lines.append(f"max connections: {info.max_connections}")
        allowed = info.allowed_updates
        lines.append(f"allowed updates: {', '.join(allowed) if allowed else '(default)'}")
    if info.last_error_date is not None:
        when = _township_time(info.last_error_date, timezone)
        lines.append(f"last error: {when}: {info.last_error_message}")
    else:
        lines.append("last error: none")
    return "\n".join(lines)


async def _unless_stopped(
    work: asyncio.Future[Any], stopping: asyncio.Event, *, cancel: bool = True
) -> bool:
    """Wait for `work` or for `stopping`; True if the work is done, else it was cancelled."""
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if work.done():
        return True
    if cancel:
        work.cancel()  # a half-done start undoes itself
        with contextlib.suppress(asyncio.CancelledError):
            await work
    return False


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from bot.demo import play

    return await play(settings, database_url=args.database, story_only=args.story)


async def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from bot import db

    await db.start(settings.database_url, migrate=False)
    try:
        applied = await db.run_migrations()
    finally:
        await db.stop()
    print("\n".join(f"applied {name}" for name in applied) or "the schema is up to date")
    return 0


async def _directory_import(settings: Settings, args: argparse.Namespace) -> int:
    from bot import db
    from bot.directory import NOT_VALID, DirectoryError, import_file
    from bot.i18n import catalogs

    await db.start(settings.database_url)
    try:
        report = await import_file(
            Path(args.file),
            default_language=settings.default_language,
            default_timezone=settings.timezone,
        )
    except DirectoryError as error:
        # The problems in DEFAULT_LANGUAGE: the words the back office's upload shows.
        language = settings.default_language
        print("villagebot: " + catalogs().text(NOT_VALID, language, file=args.file),
              file=sys.stderr)
        print("\n".join(error.lines(language)), file=sys.stderr)
        return 1
    finally:
        await db.stop()
    print(report.text(settings.default_language))
    return 0


async def _directory_export(settings: Settings, args: argparse.Namespace) -> int:
    from bot import db
    from bot.directory import dump_yaml, export_directory
    from bot.models import Township

    await db.start(settings.database_url)
    try:
        code = await _township_code(args.township)
        if not await Township.exists(code=code):
            return _fail(f"no township with the code {code}")
        text = dump_yaml(await export_directory(code))
    finally:
        await db.stop()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


async def _township_code(code: str | None) -> str:
    """The township named with --township, or else the only one there is."""
    from bot.models import Township

    if code is not None:
        return code
    codes = await Township.filter(active=True).order_by("code").values_list("code", flat=True)
    if not codes:
        raise Refused(
            "no township yet: import a directory first (villagebot directory import FILE)"
        )
    if len(codes) > 1:
        raise Refused(f"several townships ({', '.join(codes)}): add --township with one of them")
    return codes[0]


async def _bot_username(settings: Settings, given: str | None) -> str:
    """--bot-username, or else the bot's username as Telegram gives it for BOT_TOKEN."""
    if given is not None:
        return given
    if not settings.bot_token:
        raise Refused("setting BOT_TOKEN: required to look up the bot's username "
                      "(or pass --bot-username)")
    from aiogram.exceptions import AiogramError

    from bot.app import build_bot

    bot = build_bot(settings)
    try:
        return (await bot.me()).username or ""
    except AiogramError as error:
        raise Refused(f"cannot ask {settings.telegram_api_url} for the bot's username: "
                      f"{error} (or pass --bot-username)") from None
    finally:
        await bot.session.close()


async def _invite(settings: Settings, args: argparse.Namespace) -> int:
    from bot import db
    from bot.invitations import invite
    from bot.models import Official

    if (args.official is None) == (not args.all):
        return _fail("invite: give an official's code, or --all (not both)")
    if args.out is not None and not args.all:
        return _fail("invite: --out works with --all only (one link is printed)")
    username = await _bot_username(settings, args.bot_username)
    await db.start(settings.database_url)
    try:
        if args.all:
            return await _invite_all(settings, args, username)
        query = Official.filter(code=args.official, active=True).select_related("township")
        if args.township:
            query = query.filter(township__code=args.township)
        officials = await query
        if not officials:
            return _fail(f"no active official with the code {args.official}")
        if len(officials) > 1:
            return _fail(f"several townships have an official {args.official}: add --township")
        invitation = await invite(officials[0], ttl_days=settings.invite_ttl_days)
    finally:
        await db.stop()
    print(invitation.link(username))
    expires = _township_time(invitation.expires_at, officials[0].township.timezone)
    print(f"for {officials[0].name}; single use; expires {expires}", file=sys.stderr)
    return 0


async def _invite_all(settings: Settings, args: argparse.Namespace, username: str) -> int:
    """`invite --all`: a link for every official not yet joined, as a CSV and a sheet to print
    (PDF, and a PNG per page) in --out; the files' names on standard output."""
    from bot.invitations import now
    from bot.posters import file_stem, invitation_documents, invite_everyone

    township = await _township(args.township)
    invited = await invite_everyone(township, ttl_days=settings.invite_ttl_days)
    if not invited:
        print(f"township {township.code}: every active official has joined already; "
              "no links made", file=sys.stderr)
        return 0
    documents = await invitation_documents(township, invited, username)
    folder = _folder(args.out)
    stem = file_stem("invitations", township.code, now(), township)
    pages = documents.sheet.pngs
    files = [(f"{stem}.csv", documents.csv), (f"{stem}.pdf", documents.sheet.pdf)] + [
        (f"{stem}-{number}.png" if len(pages) > 1 else f"{stem}.png", png)
        for number, png in enumerate(pages, start=1)
    ]
    for name, data in files:
        (folder / name).write_bytes(data)
        print(folder / name)
    expires = _township_time(invited[0].invitation.expires_at, township.timezone)
    print(f"{len(invited)} officials of {township.code}; each link single use; expires "
          f"{expires}", file=sys.stderr)
    return 0


def _folder(given: str | None) -> Path:
    """--out, made when missing; the working directory by default."""
    folder = Path(given or ".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise Refused(f"--out {folder}: {error.strerror or error}") from None
    return folder


async def _poster(settings: Settings, args: argparse.Namespace) -> int:
    """`poster --village CODE` or `--all`: each village's A4 poster, PDF and PNG, in --out."""
    from bot import db
    from bot.models import Village
    from bot.posters import village_poster

    username = await _bot_username(settings, args.bot_username)
    await db.start(settings.database_url)
    try:
        township = await _township(args.township)
        villages = Village.filter(township_id=township.id, active=True)
        if not args.all:
            villages = villages.filter(code=args.village)
        chosen = await villages.order_by("position", "id")
        if not chosen:
            return _fail(f"township {township.code} has no active village with the code "
                         f"{args.village}")
        folder = _folder(args.out)
        for village in chosen:
            printed = await village_poster(village, username)
            for extension, data in (("pdf", printed.pdf), ("png", printed.pngs[0])):
                path = folder / f"poster-{township.code}-{village.code}.{extension}"
                path.write_bytes(data)
                print(path)
    finally:
        await db.stop()
    return 0


def _township_time(moment: datetime, zone: str) -> str:
    """`2026-12-08 13:30 Asia/Shanghai (UTC+08:00)`: as the township's clocks read it."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {zone} (UTC{local.isoformat()[-6:]})"


async def _township(code: str | None) -> Township:
    """The active township named, or the only one there is."""
    from bot.models import Township

    code = await _township_code(code)
    township = await Township.get_or_none(code=code, active=True)
    if township is None:
        raise Refused(f"no active township with the code {code}")
    return township


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    """`digest` and `ranking`: print the report (--dry-run) or queue it for the channel."""
    from bot import db, robots
    from scheduler import digest, ranking
    from scheduler.policy import Policy
    from scheduler.service import wall_clock

    policy, now = Policy.from_settings(settings), wall_clock()
    await db.start(settings.database_url)
    try:
        township = await _township(args.township)
        tz = township.timezone
        try:
            if args.command == "digest":
                period = digest.Week.parse(args.week, tz) if args.week else digest.Week.before(
                    now, tz
                )
            else:
                period = (
                    ranking.Month.parse(args.month, tz) if args.month
                    else ranking.Month.before(now, tz)
                )
        except ValueError as error:
            return _fail(str(error))
        label = f"{township.code} {period.label}"
        if args.dry_run:
            language = settings.default_language
            if args.command == "digest":
                figures = await digest.figures(township, period, now, policy, language)
                print(digest.render(figures, language))
                if args.chart:
                    Path(args.chart).write_bytes(digest.chart(figures, language))
                    print(f"\n(chart: {args.chart})")
            else:
                print(ranking.render(await ranking.rank(township, period, language), language))
            return 0
        if township.digest_chat_id is None and not await robots.of_township(township.id):
            return _fail(
                f"township {township.code} has no digest_chat_id nor robots in its directory"
            )
        if args.command == "digest":
            row = await digest.queue(township, period, now, policy)  # type: ignore[arg-type]
        else:
            row = await ranking.queue(township, period)  # type: ignore[arg-type]
    finally:
        await db.stop()
    if row is None:
        print(f"{args.command} {label}: already queued before; not sent again")
    else:
        where = (
            f"chat {township.digest_chat_id}" if township.digest_chat_id is not None
            else "the township's group robots"
        )
        print(f"{args.command} {label}: queued for {where}; the running bot delivers it")
    return 0


async def _apikey(settings: Settings, args: argparse.Namespace) -> int:
    """`apikey create|list|revoke`: the township's Open311 keys; a new key is printed once."""
    from bot import apikeys, db

    await db.start(settings.database_url)
    try:
        township = await _township(args.township)
        if args.action == "create":
            try:
                row, plain = await apikeys.create_key(
                    township, args.name, anonymous_text=args.anonymous_text
                )
            except apikeys.KeyRefused as refused:
                if refused.reason == apikeys.KeyRefusal.TAKEN:
                    return _fail(f"township {township.code} has a key named {args.name!r} "
                                 "already: revoke it first, or choose another name")
                return _fail(f"a key's name is 1 to {apikeys.NAME_MAX} characters")
            print(plain)
            right = "; may read anonymous reports' descriptions" if row.anonymous_text else ""
            print(f"key {row.id} {row.name!r} for {township.code}{right}; shown only now, "
                  "keep it", file=sys.stderr)
        elif args.action == "list":
            for row in await apikeys.keys(township):
                state = (
                    f"revoked {_township_time(row.revoked_at, township.timezone)}"
                    if row.revoked_at else "active"
                )
                right = " anonymous-text" if row.anonymous_text else ""
                print(f"{row.id}\t{row.name}\t{state}\tcreated "
                      f"{_township_time(row.created_at, township.timezone)}{right}")
        else:
            try:
                row = await apikeys.revoke_key(township, args.key)
            except apikeys.KeyRefused:
                return _fail(f"township {township.code} has no active key {args.key!r}")
            print(f"key {row.id} {row.name!r} revoked")
    finally:
        await db.stop()
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="villagebot", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    running = commands.add_parser("run", help="run the bot against Telegram (needs BOT_TOKEN)")
    _workers_option(running, "(webhook mode only: Telegram allows one long-polling process)")
    demo = commands.add_parser(
        "demo", help="play the case loop on a built-in Telegram emulator, then serve the back "
        "office on its data until Ctrl-C",
    )
    demo.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    demo.add_argument(
        "--story", action="store_true",
        help="play the story and exit, without serving the back office afterwards",
    )
    serving = commands.add_parser("web", help="serve the back office alone, on WEB_LISTEN")
    _workers_option(serving, "")
    webhook = commands.add_parser(
        "webhook", help="set, delete or show the webhook (once for the whole deployment)"
    )
    webhook_commands = webhook.add_subparsers(dest="action", required=True)
    webhook_commands.add_parser(
        "set", help="point Telegram at WEBHOOK_URL with WEBHOOK_SECRET and the update types used"
    )
    deleting = webhook_commands.add_parser("delete", help="remove the webhook (to poll again)")
    deleting.add_argument(
        "--drop-pending-updates", action="store_true",
        help="also drop the updates Telegram has not delivered yet",
    )
    webhook_commands.add_parser(
        "info", help="show the webhook: URL, pending updates, the last error"
    )
    commands.add_parser("migrate", help="create or upgrade the database schema")
    directory = commands.add_parser("directory", help="import or export a township directory")
    directory_commands = directory.add_subparsers(dest="action", required=True)
    importing = directory_commands.add_parser("import", help="load a directory YAML file")
    importing.add_argument("file")
    exporting = directory_commands.add_parser("export", help="write a township's directory")
    exporting.add_argument("--township", help="township code (needed when there are several)")
    exporting.add_argument("-o", "--output", help="file to write (default: standard output)")
    inviting = commands.add_parser(
        "invite", help="print a one-time link for an official, or (--all) write links for "
        "everyone not yet joined as a CSV and a sheet to print"
    )
    inviting.add_argument("official", nargs="?", help="the official's code in the directory")
    inviting.add_argument(
        "--all", action="store_true",
        help="every active official not yet joined: a CSV, a PDF and PNGs (A4) in --out",
    )
    inviting.add_argument("--township", help="township code, when codes repeat")
    inviting.add_argument("--out", metavar="DIR", help="with --all: the folder (default: here)")
    inviting.add_argument("--bot-username", help="skip asking Telegram for the bot's username")
    postering = commands.add_parser(
        "poster", help="write a village's A4 poster (PDF and PNG) with the QR code that opens "
        "registration in that village"
    )
    which = postering.add_mutually_exclusive_group(required=True)
    which.add_argument("--village", metavar="CODE", help="the village's code in the directory")
    which.add_argument("--all", action="store_true", help="every active village")
    postering.add_argument("--township", help="township code (needed when there are several)")
    postering.add_argument("--out", metavar="DIR", help="the folder (default: here)")
    postering.add_argument("--bot-username", help="skip asking Telegram for the bot's username")
    digesting = commands.add_parser("digest", help="queue a weekly digest now, or print it")
    digesting.add_argument("--township", help="township code (needed when there are several)")
    digesting.add_argument("--week", help="ISO week like 2026-W47 (default: last week)")
    digesting.add_argument("--dry-run", action="store_true", help="print it; send nothing")
    digesting.add_argument(
        "--chart", metavar="FILE", help="with --dry-run: also write the chart to FILE (PNG)"
    )
    ranking = commands.add_parser("ranking", help="queue a red/grey list now, or print it")
    ranking.add_argument("--township", help="township code (needed when there are several)")
    ranking.add_argument("--month", help="month like 2026-10 (default: last month)")
    ranking.add_argument("--dry-run", action="store_true", help="print it; send nothing")
    keys = commands.add_parser("apikey", help="issue, list or revoke Open311 API keys")
    key_commands = keys.add_subparsers(dest="action", required=True)
    creating = key_commands.add_parser("create", help="issue a key (printed once)")
    creating.add_argument("--township", help="township code (needed when there are several)")
    creating.add_argument("--name", required=True, help="who holds it, e.g. county")
    creating.add_argument(
        "--anonymous-text", action="store_true",
        help="the key may read the descriptions of anonymous reports",
    )
    listing = key_commands.add_parser("list", help="the township's keys, revoked ones too")
    listing.add_argument("--township", help="township code (needed when there are several)")
    revoking = key_commands.add_parser("revoke", help="revoke a key by its name or id")
    revoking.add_argument("key", help="the key's name or id")
    revoking.add_argument("--township", help="township code (needed when there are several)")
    return top


def _workers_option(command: argparse.ArgumentParser, note: str) -> None:
    from bot import workers

    def number(text: str) -> int:
        try:
            return workers.count(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    command.add_argument(
        "--workers", metavar="N", type=number, default=1,
        help=" ".join(filter(None, [
            f"N processes serving WEB_LISTEN together, 1 to {workers.MOST} (default 1)", note
        ])),
    )


_ACTIONS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "run": _run,
    "web": _web,
    "webhook set": _webhook,
    "webhook delete": _webhook,
    "webhook info": _webhook,
    "demo": _demo,
    "migrate": _migrate,
    "directory import": _directory_import,
    "directory export": _directory_export,
    "invite": _invite,
    "poster": _poster,
    "digest": _report,
    "ranking": _report,
    "apikey create": _apikey,
    "apikey list": _apikey,
    "apikey revoke": _apikey,
}


def main(argv: list[str] | None = None) -> int:
    commands = parser()
    args = commands.parse_args(argv)
    if getattr(args, "chart", None) and not args.dry_run:
        commands.error("--chart works with --dry-run only (without it the digest is queued)")
    try:
        settings = load_settings()
    except SettingsError as error:
        return _fail(str(error))
    from bot import logs

    logs.configure(settings.log_level, settings.log_format)
    if settings.log_level != "DEBUG":
        logging.getLogger("tortoise").setLevel(logging.WARNING)
    key = (
        f"{args.command} {args.action}" if args.command in ("directory", "webhook", "apikey")
        else args.command
    )
    action = _ACTIONS[key]
    if getattr(args, "workers", 1) > 1:
        return _several(action, settings, args)
    return _perform(action(settings, args))


def _several(
    action: Callable[..., Coroutine[Any, Any, int]], settings: Settings, args: argparse.Namespace
) -> int:
    """`--workers N`: the command in N processes forked from this one (bot/workers.py)."""
    from bot import workers

    refused = workers.refusal(args.command, settings, args.workers)
    if refused is not None:
        return _fail(refused)
    try:
        listening = workers.listen(settings.web_listen)
    except OSError as error:
        return _fail(f"setting WEB_LISTEN: cannot serve the back office on "
                     f"{settings.web_listen}: {error.strerror or error}", 1)
    return workers.serve(
        args.workers, settings, listening,
        lambda mine, inherited: _perform(action(mine, args, listening=inherited)),
        first=lambda: _perform(_before_workers(settings, args.command)),
    )


async def _before_workers(settings: Settings, command: str) -> int:
    """What each worker would otherwise do at its start at the same moment as the others:
    create or upgrade the schema and, for `run`, import DIRECTORY_FILE."""
    from bot import db
    from bot.startup import CannotStart, import_directory_file

    if command == "run" and not settings.redis_url:
        logging.getLogger(__name__).warning(
            "several workers without REDIS_URL: each keeps Telegram's sending limits and a "
            "person's lock by itself; set REDIS_URL to share them"
        )
    await db.start(settings.database_url)
    try:
        if command == "run" and settings.directory_file is not None:
            report = await import_directory_file(settings)
            logging.getLogger(__name__).info("directory %s: %s", settings.directory_file, report)
    except CannotStart as error:
        return _fail(str(error), 1)
    finally:
        await db.stop()
    return 0


def _perform(work: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine on a new event loop: its exit code, or one line why not."""
    try:
        return asyncio.run(work)
    except Refused as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        return 130
    except TimeoutError as error:  # an OSError too, but not the database's
        return _fail(f"timed out: {error}")
    except (OSError, BaseORMException, DatabaseUnavailable) as error:
        # An unreachable or refused database is an operator's problem: one line, no traceback.
        return _fail(f"setting DATABASE_URL: cannot use the database: {error}")


if __name__ == "__main__":
    sys.exit(main())
