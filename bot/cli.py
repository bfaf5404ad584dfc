"""The `villagebot` command: run, demo, migrate, directory, invite, digest, ranking."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tortoise.exceptions import BaseORMException

from bot.config import Settings, SettingsError, load_settings
from bot.db import DatabaseUnavailable

if TYPE_CHECKING:
    from bot.models import Township


def _fail(line: str, code: int = 2) -> int:
    print(f"villagebot: {line}", file=sys.stderr)
    return code


async def _run(settings: Settings, _args: argparse.Namespace) -> int:
    from bot.app import Villagebot

    if not settings.bot_token:
        return _fail("setting BOT_TOKEN: required to run the bot (try `villagebot demo`)")
    app = await Villagebot.start(settings)
    try:
        await app.poll()
    finally:
        await app.stop()
    return 0


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    from bot.demo import play

    return await play(settings, database_url=args.database)


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
    from bot.directory import DirectoryError, import_file

    await db.start(settings.database_url)
    try:
        report = await import_file(Path(args.file), default_language=settings.default_language)
    except DirectoryError as error:
        print(f"villagebot: {args.file} is not valid; nothing was changed:", file=sys.stderr)
        print(str(error), file=sys.stderr)
        return 1
    finally:
        await db.stop()
    print(report)
    return 0


async def _directory_export(settings: Settings, args: argparse.Namespace) -> int:
    from bot import db
    from bot.directory import dump_yaml, export_directory
    from bot.models import Township

    await db.start(settings.database_url)
    try:
        code = args.township or await _only_township_code()
        if code is None:
            return _fail("name the township with --township (there is more than one, or none)")
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


async def _only_township_code() -> str | None:
    from bot.models import Township

    codes = await Township.filter(active=True).values_list("code", flat=True)
    return codes[0] if len(codes) == 1 else None


async def _invite(settings: Settings, args: argparse.Namespace) -> int:
    from bot import db
    from bot.invitations import invite
    from bot.models import Official

    username = args.bot_username
    if username is None:
        if not settings.bot_token:
            return _fail("setting BOT_TOKEN: required to look up the bot's username "
                         "(or pass --bot-username)")
        from bot.app import build_bot

        bot = build_bot(settings)
        try:
            username = (await bot.me()).username
        finally:
            await bot.session.close()
    await db.start(settings.database_url)
    try:
        query = Official.filter(code=args.official, active=True)
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
    print(invitation.link(username or ""))
    expires = f"{invitation.expires_at:%Y-%m-%d %H:%M} UTC"
    print(f"for {officials[0].name}; single use; expires {expires}", file=sys.stderr)
    return 0


async def _township(code: str | None) -> Township | str:
    """The township named, or the only one; else the line to fail with."""
    from bot.models import Township

    code = code or await _only_township_code()
    if code is None:
        return "several townships: add --township"
    township = await Township.get_or_none(code=code, active=True)
    if township is None:
        return f"no active township with the code {code}"
    if township.digest_chat_id is None:
        return f"township {code} has no digest_chat_id in its directory"
    return township


async def _report(settings: Settings, args: argparse.Namespace) -> int:
    """`digest` and `ranking`: print the report (--dry-run) or queue it for the channel."""
    from bot import db
    from scheduler import digest, ranking
    from scheduler.policy import Policy
    from scheduler.service import wall_clock

    policy, now = Policy.from_settings(settings), wall_clock()
    await db.start(settings.database_url)
    try:
        township = await _township(args.township)
        if isinstance(township, str):
            return _fail(township)
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
                chart = Path(args.chart or f"digest-{township.code}-{period.label}.png")
                chart.write_bytes(digest.chart(figures, language))
                print(f"\n(chart: {chart})")
            else:
                print(ranking.render(await ranking.rank(township, period, language), language))
            return 0
        if args.command == "digest":
            row = await digest.queue(township, period, now, policy)  # type: ignore[arg-type]
        else:
            row = await ranking.queue(township, period)  # type: ignore[arg-type]
    finally:
        await db.stop()
    if row is None:
        print(f"{args.command} {label}: already queued before; not sent again")
    else:
        print(f"{args.command} {label}: queued for chat {township.digest_chat_id}; "
              "the running bot delivers it")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="villagebot", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the bot against Telegram (needs BOT_TOKEN)")
    demo = commands.add_parser("demo", help="play the case loop on a built-in Telegram emulator")
    demo.add_argument("--database", help="database URL (default: a fresh SQLite file)")
    commands.add_parser("migrate", help="create or upgrade the database schema")
    directory = commands.add_parser("directory", help="import or export a township directory")
    directory_commands = directory.add_subparsers(dest="action", required=True)
    importing = directory_commands.add_parser("import", help="load a directory YAML file")
    importing.add_argument("file")
    exporting = directory_commands.add_parser("export", help="write a township's directory")
    exporting.add_argument("--township", help="township code (needed when there are several)")
    exporting.add_argument("-o", "--output", help="file to write (default: standard output)")
    inviting = commands.add_parser("invite", help="print a one-time link for an official")
    inviting.add_argument("official", help="the official's code in the directory")
    inviting.add_argument("--township", help="township code, when codes repeat")
    inviting.add_argument("--bot-username", help="skip asking Telegram for the bot's username")
    digesting = commands.add_parser("digest", help="queue a weekly digest now, or print it")
    digesting.add_argument("--township", help="township code (needed when there are several)")
    digesting.add_argument("--week", help="ISO week like 2026-W47 (default: last week)")
    digesting.add_argument("--dry-run", action="store_true", help="print it; send nothing")
    digesting.add_argument("--chart", help="with --dry-run: where to write the chart PNG")
    ranking = commands.add_parser("ranking", help="queue a red/grey list now, or print it")
    ranking.add_argument("--township", help="township code (needed when there are several)")
    ranking.add_argument("--month", help="month like 2026-10 (default: last month)")
    ranking.add_argument("--dry-run", action="store_true", help="print it; send nothing")
    return top


_ACTIONS: dict[str, Callable[[Settings, argparse.Namespace], Awaitable[int]]] = {
    "run": _run,
    "demo": _demo,
    "migrate": _migrate,
    "directory import": _directory_import,
    "directory export": _directory_export,
    "invite": _invite,
    "digest": _report,
    "ranking": _report,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        return _fail(str(error))
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.log_level != "DEBUG":
        logging.getLogger("tortoise").setLevel(logging.WARNING)
    key = f"{args.command} {args.action}" if args.command == "directory" else args.command
    try:
        return asyncio.run(_ACTIONS[key](settings, args))
    except KeyboardInterrupt:
        return 130
    except TimeoutError as error:  # an OSError too, but not the database's
        return _fail(f"timed out: {error}")
    except (OSError, BaseORMException, DatabaseUnavailable) as error:
        # An unreachable or refused database is an operator's problem: one line, no traceback.
        return _fail(f"setting DATABASE_URL: cannot use the database: {error}")


if __name__ == "__main__":
    sys.exit(main())
