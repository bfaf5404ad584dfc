"""Tortoise start and stop, and the migrations that create or upgrade the schema.

Tortoise 1.x keeps its state in a context variable of the task that initialised it. The bot's
handlers, the HTTP server and the scheduler's jobs run in tasks of their own, so the context is
also installed as the global fallback: every task of the process sees the same connections.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.connection import get_connection
from tortoise.migrations.executor import MigrationExecutor

APP = "models"


#: How long a SQLite write waits for another connection's (SQLite's own default is 5 s): several
#: processes on one file, a busy machine, would otherwise fail a step with "database is locked".
SQLITE_BUSY_MS = 30_000


def tortoise_config(database_url: str) -> dict[str, Any]:
    if database_url.startswith("sqlite://") and "busy_timeout=" not in database_url:
        joiner = "&" if "?" in database_url else "?"
        database_url = f"{database_url}{joiner}busy_timeout={SQLITE_BUSY_MS}"
    connection: str | dict[str, Any] = database_url
    if database_url.startswith("sqlite://"):
        connection = expand_db_url(database_url)
        connection["engine"] = "bot.sqlite"  # transactions that begin IMMEDIATE
    return {
        "connections": {"default": connection},
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


def parameters(connection: Any, count: int) -> list[str]:
    """`count` parameters of a statement written out by hand, in the style of `connection`'s
    database (SQLite's `?`; asyncpg numbers them, `$1`...)."""
    if connection.capabilities.dialect == "sqlite":
        return ["?"] * count
    return [f"${i + 1}" for i in range(count)]


def in_callers_transaction() -> bool:
    """Whether this task runs inside a transaction already (`in_transaction`)."""
    return isinstance(connections.get("default"), TransactionalDBClient)


def atomic() -> contextlib.AbstractAsyncContextManager[Any]:
    """A transaction, or the caller's when there is one: no savepoint inside it. A savepoint
    costs two round trips and undoes only its part, which a caller that is undone whole when
    anything fails (the sweep's chunk of cases) does not need; what refuses a change refuses
    it before writing anything."""
    if in_callers_transaction():
        return contextlib.nullcontext()
    from tortoise.transactions import in_transaction

    return in_transaction()


def _ensure_sqlite_folder(database_url: str) -> None:
    if database_url.startswith("sqlite://") and ":memory:" not in database_url:
        from pathlib import Path

        path = Path(database_url.removeprefix("sqlite://").split("?", 1)[0])
        path.parent.mkdir(parents=True, exist_ok=True)


async def start(database_url: str, *, migrate: bool = True) -> None:
    """Connect, and bring the schema up to date unless told not to. Every process that
    opens the database raises the directory's version when it changes the directory
    (`bot.cache` registers that with tortoise when imported)."""
    from bot import cache  # noqa: F401

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


async def stop() -> None:
    await Tortoise.close_connections()
    from tortoise import context

    context._global_context = None


#: For `tortoise makemigrations` (pyproject.toml [tool.tortoise]); the URL is never connected.
TORTOISE_ORM = tortoise_config("sqlite://:memory:")
