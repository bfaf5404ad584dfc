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
