"""Directory rows kept in the process while the directory's version says they still stand.

Nearly every update asks who is talking (account, villager with township, village and grid,
official roles), and a Submit looks up its township's units, members, accounts, categories and
robots to route the case and tell them: a few dozen statements an update when read afresh.
They change seldom, so each process keeps what it read (`get`, `put`) and asks one number per
update instead (`fresh`): the `Version` row "directory", raised with every change to those rows
in any process. A change forgets what this process keeps at once; another process notices at
its next update.

What raises the number: every save and delete of a directory model (tortoise's signals, so no
caller can forget), and the few changes made in bulk, which call `changed` themselves (a
directory import, group bindings, an account found blocked). A process that reads the number,
then the rows, keeps rows at least as new as the number: a change in between only costs a
second read. Cases, conversations and the outbox are never kept here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable, Iterator
from contextlib import contextmanager
from contextvars import Context, ContextVar
from typing import Any

from tortoise import BaseDBAsyncClient, connections
from tortoise.expressions import F
from tortoise.signals import post_delete, post_save

from bot import snapshot
from bot.models import (
    Account,
    Category,
    Grid,
    Official,
    Robot,
    Township,
    Unit,
    Version,
    Village,
    Villager,
)

DIRECTORY = "directory"
#: The rows kept, all standing for the directory as of `_seen`.
_kept: dict[Hashable, Any] = {}
#: The reads under way, by key (`_once`).
_loading: dict[Hashable, asyncio.Task[Any]] = {}
_seen: int | None = None


def forget() -> None:
    """Nothing kept stands any longer (this process changed the directory)."""
    global _seen
    _kept.clear()
    _seen = None


async def changed(using_db: BaseDBAsyncClient | None = None) -> None:
    """The directory changed: every process's kept rows are stale. `using_db`: the change's
    transaction, so the number rises with it or not at all."""
    forget()
    raised = await Version.filter(name=DIRECTORY).using_db(using_db).update(
        number=F("number") + 1
    )
    if not raised:
        await Version.get_or_create(name=DIRECTORY, defaults={"number": 1}, using_db=using_db)


#: The directory's version: this alone, or inside another statement (an update's claim).
VERSION = f"SELECT number FROM version WHERE name = '{DIRECTORY}'"
#: The version as the update being handled read it with its claim (`known`).
_known: ContextVar[int | None] = ContextVar("directory_known", default=None)


@contextmanager
def known(number: int | None) -> Iterator[None]:
    """Inside, `fresh` takes `number` (read with the update's claim) instead of asking."""
    token = _known.set(number)
    try:
        yield
    finally:
        _known.reset(token)


async def fresh() -> int:
    """The directory's version now; what is kept is forgotten when another process changed the
    directory since it was read. Rows read after this call may be kept at this number."""
    global _seen
    number = _known.get()
    if number is None:
        _, rows = await connections.get("default").execute_query(VERSION)
        number = int(rows[0][0]) if rows else 0
    if number != _seen:
        _kept.clear()
        _seen = number
    return number


def get(key: Hashable) -> Any | None:
    return _kept.get(key)


def put(key: Hashable, value: Any, read_at: int) -> Any:
    """Keep `value`, read after `fresh` gave `read_at`, until the directory next changes; a
    value read before a change that came meanwhile is not kept. Returns `value`."""
    if read_at == _seen:
        _kept[key] = value
    return value


async def township(township_id: int) -> snapshot.Snapshot:
    """The township's directory as a snapshot (`bot.snapshot`), read once per version: the
    version this update found (`fresh`, called for each update by `bot.people.identify`)."""
    read_at = _seen if _seen is not None else await fresh()
    key = ("township", township_id)
    kept = get(key)
    if kept is None:
        # Keyed by the version too: a read begun before a change serves none begun after it.
        read = _once((key, read_at), lambda: snapshot.load([township_id]))
        kept = put(key, await read, read_at)
    return kept  # type: ignore[no-any-return]


def _once(key: Hashable, read: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Future[Any]:
    """One read of `key` at a time: a hundred people's first step after a change wait for one
    read of the directory rather than making a hundred. It runs outside the caller's context
    (no transaction of theirs), so one caller's failure or end cannot cut it short."""
    loading = _loading.get(key)
    if loading is None:
        loading = asyncio.get_running_loop().create_task(read(), context=Context())
        _loading[key] = loading
        loading.add_done_callback(lambda _: _loading.pop(key, None))
    return asyncio.shield(loading)


async def _saved(
    sender: type, instance: Any, created: bool, using_db: BaseDBAsyncClient | None,
    update_fields: Any,
) -> None:
    await changed(using_db)


async def _deleted(sender: type, instance: Any, using_db: BaseDBAsyncClient | None) -> None:
    await changed(using_db)


for _model in (Township, Village, Grid, Unit, Category, Official, Account, Villager, Robot):
    post_save(_model)(_saved)
    post_delete(_model)(_deleted)
