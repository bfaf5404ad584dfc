"""Tortoise start and stop, and the migrations that create or upgrade the schema.

Tortoise 1.x keeps its state in a context variable of the task that initialised it. The bot's
handlers, the HTTP server and the scheduler's jobs run in tasks of their own, so the context is
also installed as the global fallback: every task of the process sees the same connections.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.connection import get_connection
from tortoise.exceptions import TransactionManagementError
from tortoise.migrations.executor import MigrationExecutor
from tortoise.transactions import in_transaction

APP = "models"


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": database_url},
        "apps": {
            APP: {
                "models": ["bot.models"],
                "migrations": "bot.migrations",
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _ensure_sqlite_folder(database_url: str) -> None:
    if database_url.startswith("sqlite://") and ":memory:" not in database_url:
        from pathlib import Path

        path = Path(database_url.removeprefix("sqlite://").split("?", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)


async def start(database_url: str, *, migrate: bool = True) -> None:
    """Connect, and bring the schema up to date unless told not to."""
    _ensure_sqlite_folder(database_url)
    config = tortoise_config(database_url)
    await Tortoise.init(config=config, _enable_global_fallback=True)
    try:
        await _connect()
        if migrate:
            await run_migrations()
    except BaseException:
        # An open SQLite connection keeps a worker thread alive: close it, or the
        # program that reports the failure never exits.
        await stop()
        raise


class DatabaseUnavailable(Exception):
    """The database refused the connection or is not a database at all."""


async def _connect() -> None:
    """Open the connection now rather than at the first query.

    Tortoise opens it lazily while holding the connection's lock and keeps the lock when the
    opening fails, so every later query would wait forever instead of failing.
    """
    try:
        await get_connection("default").create_connection(with_db=True)
    except Exception as error:
        raise DatabaseUnavailable(str(error) or type(error).__name__) from error


async def run_migrations() -> list[str]:
    """Apply every migration not applied yet; returns the names applied."""
    config = tortoise_config("sqlite://:memory:")["apps"]
    executor = MigrationExecutor(get_connection("default"), config)
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(f"{app_label}.{name}")

    await executor.migrate(None, progress=progress)
    return applied


class _WritingFromTheStart(SqliteTransactionWrapper):
    """SQLite's transaction that holds the write lock from its first statement on."""

    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise TransactionManagementError(error) from error


def _begin() -> TransactionContext:
    """A step's transaction. On SQLite it takes the write lock at its start (BEGIN IMMEDIATE):
    a deferred transaction that read first and writes later is refused at once ("database is
    locked", no waiting) when another process of the same file wrote meanwhile; one that
    starts writing waits its turn instead."""
    connection = get_connection("default")
    if isinstance(connection, SqliteClient) and not isinstance(
        connection, SqliteTransactionWrapper
    ):
        return SqliteTransactionContext(_WritingFromTheStart(connection), connection._lock)
    return connection._in_transaction()


@dataclass
class _Step:
    """One handler's step: its transaction once it has begun."""

    begun: TransactionContext | None = None


_step: ContextVar[_Step | None] = ContextVar("step", default=None)


@asynccontextmanager
async def step() -> AsyncIterator[None]:
    """A handler's step (`bot.middlewares.OneTransaction`): every change the domain makes in it
    is one transaction, committed when the step ends and rolled back when it raises.

    The transaction begins at the step's first change (`transaction`), not at its start: what
    only reads, and what comes before the first change (a person's conversation moving on,
    the replies it sends), holds no lock, which on SQLite is the whole database's.
    """
    current = _Step()
    token = _step.set(current)
    try:
        yield
    except BaseException as error:
        if current.begun is not None:
            await current.begun.__aexit__(type(error), error, error.__traceback__)
        raise
    else:
        if current.begun is not None:
            await current.begun.__aexit__(None, None, None)
    finally:
        _step.reset(token)


@asynccontextmanager
async def transaction() -> AsyncIterator[BaseDBAsyncClient]:
    """Tortoise's `in_transaction`, but inside a handler's `step` part of the step's own
    transaction (begun here if this is its first change): a savepoint in it, so the change
    is undone with the step when a later part of the step fails."""
    current = _step.get()
    if current is not None and current.begun is None:
        begun = _begin()
        await begun.__aenter__()
        current.begun = begun
    async with in_transaction() as connection:
        yield connection


async def stop() -> None:
    await Tortoise.close_connections()
    from tortoise import context

    context._global_context = None


#: For `tortoise makemigrations` (pyproject.toml [tool.tortoise]); the URL is never connected.
TORTOISE_ORM = tortoise_config("sqlite://:memory:")
