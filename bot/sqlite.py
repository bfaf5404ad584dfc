"""SQLite as several processes share one file: every transaction begins IMMEDIATE.

Tortoise begins a transaction with a plain BEGIN, which takes the write lock only at the first
write. In WAL mode a transaction that has read and then writes, while another process
committed in between, cannot go on (its snapshot is stale) and fails at once with "database
is locked", whatever the busy timeout. BEGIN IMMEDIATE takes the write lock first, waiting
for it up to the busy timeout, so a transaction that starts is one that can finish.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from tortoise.backends.base.client import TransactionContext
from tortoise.backends.sqlite.client import (
    SqliteClient,
    SqliteTransactionContext,
    SqliteTransactionWrapper,
)
from tortoise.exceptions import TransactionManagementError


class _ImmediateTransaction(SqliteTransactionWrapper):
    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> TransactionContext:
        return SqliteTransactionContext(_ImmediateTransaction(self), self._lock)


client_class = ImmediateSqliteClient


def get_client_class(db_info: dict[str, Any]) -> type[SqliteClient]:
    return ImmediateSqliteClient
