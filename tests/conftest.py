"""Shared fixtures: a migrated database per test.

SQLite by default (a fresh file per test); PostgreSQL when VILLAGEBOT_TEST_DATABASE_URL points
at one, in which case the schema is migrated once and every table is emptied before each test.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tortoise import connections

from bot import db

if TYPE_CHECKING:
    from bot.models import Villager
    from bot.sandbox import Sandbox

TEST_DATABASE_URL = os.environ.get("VILLAGEBOT_TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("VILLAGEBOT_TEST_REDIS_URL", "")


async def _empty_postgres_tables() -> None:
    connection = connections.get("default")
    _, rows = await connection.execute_query(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
        "AND tablename NOT LIKE 'tortoise%'"
    )
    names = ", ".join(f'"{row["tablename"]}"' for row in rows)
    if names:
        await connection.execute_script(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    """The URL of a migrated, empty database, not connected."""
    if not TEST_DATABASE_URL:
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
