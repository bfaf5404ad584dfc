"""Shared fixtures: a migrated database per test.

SQLite by default (a fresh file per test, a copy of one migrated once per test process: the
migrations take about a second, a copy a hundredth); PostgreSQL when
VILLAGEBOT_TEST_DATABASE_URL points at one, in which case the schema is migrated once and every
table is emptied before each test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest
from tortoise import connections

from bot import db

if TYPE_CHECKING:
    from browsing import BackOffice

    from bot.models import Villager
    from bot.sandbox import Sandbox

#: Under pytest-xdist each worker is a process of its own: its own PostgreSQL database (the
#: given one's name with the worker's suffix, created here and dropped at the end) and its own
#: Redis database number (counting down from the given one), so workers never empty each
#: other's tables.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")


def _worker_database_url(url: str) -> str:
    if not url or not WORKER:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}_{WORKER}"))


def _worker_redis_url(url: str) -> str:
    if not url or not WORKER:
        return url
    parts = urlsplit(url)
    number = int(parts.path.strip("/") or 0) - int(WORKER.removeprefix("gw"))
    return urlunsplit(parts._replace(path=f"/{number % 16}"))


TEST_DATABASE_URL = _worker_database_url(os.environ.get("VILLAGEBOT_TEST_DATABASE_URL", ""))
TEST_REDIS_URL = _worker_redis_url(os.environ.get("VILLAGEBOT_TEST_REDIS_URL", ""))


async def _postgres_admin(statement: str) -> None:
    import asyncpg

    parts = urlsplit(TEST_DATABASE_URL)
    connection = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _worker_database_name() -> str:
    return urlsplit(TEST_DATABASE_URL).path.strip("/")


def pytest_configure(config: pytest.Config) -> None:
    if TEST_DATABASE_URL and WORKER:
        name = _worker_database_name()
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))


def pytest_unconfigure(config: pytest.Config) -> None:
    if TEST_DATABASE_URL and WORKER:
        name = _worker_database_name()
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _empty_postgres_tables() -> None:
    connection = connections.get("default")
    _, rows = await connection.execute_query(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename NOT LIKE 'tortoise%'"
    )
    names = ", ".join(f'"{row["tablename"]}"' for row in rows)
    if names:
        await connection.execute_script(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database with every migration applied, made once per test process."""
    path = tmp_path_factory.mktemp("template") / "villagebot.sqlite3"

    async def migrate() -> None:
        await db.start(f"sqlite://{path}")
        await db.stop()

    asyncio.run(migrate())
    return path


@pytest.fixture
async def database_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    """The URL of a migrated, empty database, not connected."""
    if not TEST_DATABASE_URL:
        shutil.copyfile(migrated_sqlite, tmp_path / "villagebot.sqlite3")
        return f"sqlite://{tmp_path}/villagebot.sqlite3"
    await db.start(TEST_DATABASE_URL)
    try:
        await _empty_postgres_tables()
    finally:
        await db.stop()
    return TEST_DATABASE_URL


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[str]:
    """A migrated, empty database, connected; yields its URL."""
    await db.start(database_url)
    try:
        yield database_url
    finally:
        await db.stop()


@pytest.fixture
async def office(database_url: str) -> AsyncIterator[Sandbox]:
    """The sandbox with its back office served on a free port (see tests/backoffice.py)."""
    import backoffice

    running = await backoffice.start(database_url)
    yield running
    await running.stop()


@pytest.fixture
async def sandbox(database_url: str) -> AsyncIterator[Sandbox]:
    """The real bot over the Bot API emulator, with the demo township imported."""
    from bot.sandbox import Sandbox

    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    async with Sandbox(database_url, redis_url=TEST_REDIS_URL or None) as running:
        yield running


@pytest.fixture
async def back_office(
    database_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[BackOffice]:
    """The sandbox with its back office, and a tab of a headless Chromium on it.

    Skipped, saying how to get one, where the machine has no Chromium. Whatever the outcome,
    the page as it was at the end is saved, full length, as
    `test-artifacts/browser/<test name>.png`.
    """
    import browsing

    executable = browsing.chromium_path()
    if executable is None:
        pytest.skip(browsing.NO_CHROMIUM)
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip(browsing.NO_PLAYWRIGHT)
    from bot.sandbox import Sandbox

    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    async with (
        Sandbox(database_url, redis_url=TEST_REDIS_URL or None, web=True) as sandbox,
        async_playwright() as playwright,
    ):
        chromium = await playwright.chromium.launch(executable_path=executable)
        try:
            context = await chromium.new_context(viewport=browsing.VIEWPORT)  # type: ignore[arg-type]
            office = browsing.BackOffice(await context.new_page(), sandbox)
            try:
                yield office
            finally:
                await office.screenshot(browsing.artifact(request.node.name))
        finally:
            await chromium.close()


#: Modules whose tests start villagebot as real processes, or a browser: a minute or more each
#: on 2 cores. They are scheduled first, so pytest-xdist spreads them over its workers at the
#: start instead of leaving a few of them to run on after everything else has finished.
SLOW_MODULES = frozenset({
    "test_production", "test_workers", "test_duplicates", "test_race", "test_kills",
    "test_faults", "test_demo", "test_browser", "test_packaging", "test_cli", "test_digest",
    "test_webhook",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.module.__name__ not in SLOW_MODULES)  # a stable sort


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say plainly when the browser tests did not run, and how to make them run."""
    from browsing import NO_CHROMIUM, NO_PLAYWRIGHT

    for reason in (NO_CHROMIUM, NO_PLAYWRIGHT):
        skipped = [
            report for report in terminalreporter.stats.get("skipped", [])
            if reason in str(getattr(report, "longrepr", ""))
        ]
        if skipped:
            terminalreporter.write_line(
                f"browser tests: {len(skipped)} skipped, {reason}", yellow=True, bold=True
            )


@pytest.fixture
async def township(database: str) -> None:
    """The demo township, every official bound to a Telegram account (5000 + official id)."""
    from bot.directory import import_file
    from bot.models import Account, Official
    from bot.sandbox import EXAMPLE_DIRECTORY

    await import_file(EXAMPLE_DIRECTORY)
    for official in await Official.all():
        account = await Account.create(
            id=5000 + official.id, first_name=official.name, language="zh-hans"
        )
        official.account = account
        await official.save()


async def make_villager(
    telegram_id: int = 1001, grid: bool = True, phone: str | None = None, village: str = "zhengda"
) -> Villager:
    """李明 of 正达村 (or `village`), grid 1 unless `grid` is false, as the report flow would
    register him."""
    from bot.models import Account, Grid, Villager

    account = await Account.create(id=telegram_id, first_name="李明", language="zh-hans")
    g = await Grid.get(village__code=village, code="g1")
    return await Villager.create(
        account=account, township_id=1, village_id=g.village_id,  # type: ignore[attr-defined]
        grid=g if grid else None, name="李明", phone=phone,
    )
