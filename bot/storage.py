"""Where conversation state lives: the database by default, Redis when configured.

aiogram's default storage is memory, which loses a villager's half-written report on every
restart. Keeping state in our own database gives the default setup the same durability as
Redis, with no extra service to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import (
    BaseEventIsolation,
    BaseStorage,
    DefaultKeyBuilder,
    KeyBuilder,
    StateType,
    StorageKey,
)
from aiogram.fsm.storage.memory import SimpleEventIsolation
from tortoise import BaseDBAsyncClient, connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot import cache, db
from bot.models import Conversation

log = logging.getLogger(__name__)

EMPTY = "{}"


#: Conversations kept in memory, the most recently used first out of mind last.
CACHED = 10_000
#: What the update being handled read of conversations, where none are kept between updates
#: (webhook mode, `one_update`): aiogram's FSM middleware and `bot.middlewares.ThisUpdate`
#: ask for the same row, under the person's lock; one read serves both.
_this_update: ContextVar[dict[str, tuple[str | None, str]] | None] = ContextVar(
    "this_update", default=None
)


@contextlib.contextmanager
def one_update() -> Iterator[None]:
    """Around the handling of one update: a conversation it reads is read once."""
    token = _this_update.set({})
    try:
        yield
    finally:
        _this_update.reset(token)


class DatabaseStorage(BaseStorage):
    """aiogram FSM storage over the `conversation` table, remembering what it read and wrote.

    A polling bot is the only process writing its conversations (Telegram allows one
    getUpdates consumer), so a conversation read once is served from memory afterwards and an
    update costs a query only when it changes the conversation. In webhook mode any number of
    processes may receive one person's updates in turn (`--workers`, instances behind a proxy):
    `cached=0` then reads every conversation from the table, as memory would hold another
    process's old step. Data is kept as JSON text: a handler that changes what it got back
    cannot change what is stored.
    """

    def __init__(self, key_builder: KeyBuilder | None = None, cached: int = CACHED) -> None:
        self.key_builder = key_builder or DefaultKeyBuilder(with_bot_id=True)
        self._cached = cached
        self._rows: OrderedDict[str, tuple[str | None, str]] = OrderedDict()

    async def _load(self, row_key: str) -> tuple[str | None, str]:
        remembered = self._rows.get(row_key)
        if remembered is not None:
            self._rows.move_to_end(row_key)
            return remembered
        this_update = _this_update.get()
        if this_update is not None and row_key in this_update:
            return this_update[row_key]
        row = await Conversation.get_or_none(key=row_key)
        value = (row.state, json.dumps(row.data)) if row is not None else (None, EMPTY)
        self._remember(row_key, value)
        return value

    def _remember(self, row_key: str, value: tuple[str | None, str]) -> None:
        this_update = _this_update.get()
        if this_update is not None:
            this_update[row_key] = value
        self._rows[row_key] = value
        self._rows.move_to_end(row_key)
        while len(self._rows) > self._cached:
            self._rows.popitem(last=False)

    async def load(self, key: StorageKey) -> tuple[str | None, str]:
        """The conversation's state and its data as JSON text, in one read."""
        return await self._load(self.key_builder.build(key))

    async def store(
        self, key: StorageKey, state: str | None, data: str, *, handled: str | None = None
    ) -> None:
        """State and data (JSON text) in one statement, not read first: in a transaction on
        SQLite a read before the write would make it fail at once, not wait, when another
        process writes. `handled`: the claim on the update, marked done in the same one."""
        await self._write(self.key_builder.build(key), state, data, handled=handled)

    def forget(self, key: StorageKey) -> None:
        """What memory holds of the conversation no longer stands (its write was rolled back)."""
        self._drop(self.key_builder.build(key))

    def _drop(self, row_key: str) -> None:
        self._rows.pop(row_key, None)
        this_update = _this_update.get()
        if this_update is not None:
            this_update.pop(row_key, None)

    async def _store(self, row_key: str, state: str | None, data: str) -> None:
        if (state, data) == await self._load(row_key):
            return
        await self._write(row_key, state, data)

    async def _write(
        self, row_key: str, state: str | None, data: str, *, handled: str | None = None
    ) -> None:
        self._drop(row_key)  # a failed write must not leave memory ahead of the table
        now = datetime.now(UTC)
        if state is None and data == EMPTY:
            await Conversation.filter(key=row_key).delete()
            if handled is not None:
                await _mark_done(handled, now)
        else:
            rows = [(row_key, state, data, now)]
            if handled is not None:
                rows.append((handled, DONE, EMPTY, now))
            await _upsert(rows)
        self._remember(row_key, (state, data))

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        row_key = self.key_builder.build(key)
        _, data = await self._load(row_key)
        await self._store(row_key, value, data)

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._load(self.key_builder.build(key)))[0]

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        row_key = self.key_builder.build(key)
        state, _ = await self._load(row_key)
        await self._store(row_key, state, json.dumps(dict(data)))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return json.loads((await self._load(self.key_builder.build(key)))[1])  # type: ignore[no-any-return]

    async def close(self) -> None:
        """The connection belongs to the database module, which closes it."""


#: How long a handled update is remembered. Telegram redelivers an update it has no answer
#: for within minutes; a day is ample and keeps the store small.
HANDLED_FOR = timedelta(days=1)
#: How long a claim on an update, or a person's lock in Redis, holds unless renewed. Its process
#: renews it every third of this while it works, so only a process that died (kill -9, a lost
#: machine) leaves one behind, and for no longer than this: then a redelivery takes over.
LEASE = timedelta(seconds=15)
#: How often a delivery waiting for another process's claim looks again.
CLAIM_POLL_SECONDS = 0.05
#: Forgetting handled updates older than `HANDLED_FOR` (from the database; Redis lets them
#: expire) runs at a process's first handled update and then once in this many.
FORGET_EVERY = 1000
HANDLED_PREFIX = "handled:"
#: The two states of a remembered update. (A row or value from before claims, with no state or
#: Redis's b"1", is an update handled.)
HANDLING = "handling"
DONE = "done"


#: The conversation rows given, each made or overwritten, in one statement. Written out here
#: rather than through `bulk_create(on_conflict=...)`: building that statement anew for every
#: update (pypika copies its query at each step) cost more than running it.
_UPSERT = (
    'INSERT INTO "conversation" ("key", "state", "data", "updated_at") VALUES {rows}'
    ' ON CONFLICT ("key") DO UPDATE SET "state" = EXCLUDED."state",'
    ' "data" = EXCLUDED."data", "updated_at" = EXCLUDED."updated_at"'
)


#: A claim on an update, saying the directory's version (`bot.cache.VERSION`) as it is made.
_CLAIM = (
    'INSERT INTO "conversation" ("key", "state", "data", "updated_at") VALUES {rows}'
    ' RETURNING ({version}) AS "number"'
)


def _rows(connection: BaseDBAsyncClient, count: int) -> str:
    """`count` rows of a conversation's four values, as parameters of this database."""
    marks = db.parameters(connection, 4 * count)
    return ", ".join(f"({', '.join(marks[i : i + 4])})" for i in range(0, 4 * count, 4))


#: An update's claim marked done (written out once, as `_UPSERT`).
_DONE = 'UPDATE "conversation" SET "state" = {p[0]}, "updated_at" = {p[1]} WHERE "key" = {p[2]}'


async def _mark_done(key: str, now: datetime) -> None:
    connection = connections.get("default")
    await connection.execute_query(_DONE.format(p=db.parameters(connection, 3)), [DONE, now, key])


async def _upsert(rows: list[tuple[str, str | None, str, datetime]]) -> None:
    """Rows of key, state, data (JSON text) and time; in the caller's transaction if any."""
    connection = connections.get("default")
    await connection.execute_query(
        _UPSERT.format(rows=_rows(connection, len(rows))), [value for row in rows for value in row]
    )


@dataclass(frozen=True)
class Write:
    """What an update leaves of a person's conversation: its state and data (JSON text)."""

    key: StorageKey
    state: str | None
    data: str


@dataclass
class Claim:
    """This process's claim on an update; `write` is stored with the mark that it is done."""

    update_id: int
    write: Write | None = None
    #: The directory's version, read in the claim's own statement (the database's claims):
    #: `bot.cache` need not ask for it again while the update is handled.
    directory: int | None = None


class HandledUpdates:
    """The update ids this bot is handling or has handled lately, in the conversation store.

    Telegram sends an update again when it saw no answer (a timeout, a process that died before
    confirming it); handling it twice would, say, count a photo twice. So an update is claimed
    before it is handled, in one atomic write (Redis's SET NX, or an INSERT on the primary key):
    of two deliveries arriving at two processes at once exactly one handles it. The other waits
    until the first is done and then does nothing, or takes the update over when the first
    gave it up (its handling failed) or died with it (the claim ran out after `LEASE`).

    What the update changed in the person's conversation is written together with the mark
    that it is done, in one transaction (`done`): an update whose handling stopped half-way
    (the process killed, an error) left the conversation as it found it, so its next try
    starts in the step it was sent to.
    """

    def __init__(
        self, redis: Any | None = None, bot_id: int = 0, storage: BaseStorage | None = None
    ) -> None:
        self._redis = redis
        self._prefix = f"{HANDLED_PREFIX}{bot_id}:"
        self._handled = 0
        self._storage = storage
        #: The claims this process holds, all renewed together by one task (`_keep`).
        self._held: set[str] = set()
        self._keeper: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def once(self, update_id: int) -> AsyncIterator[Claim | None]:
        """A claim inside when this delivery is to handle the update (renewed meanwhile, done
        at the end with its `write`, given up if the handling raises); None when it was handled
        already."""
        taken, directory = await self._claim(update_id)
        if not taken:
            yield None
            return
        key = self._prefix + str(update_id)
        claim = Claim(update_id, directory=directory)
        try:
            with self._holding(key):
                yield claim
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.release(update_id))
            raise
        await self.done(update_id, claim.write)

    async def claim(self, update_id: int) -> bool:
        """True when this process is to handle the update now (and then calls `done` or
        `release`); False when it was handled already."""
        return (await self._claim(update_id))[0]

    async def _claim(self, update_id: int) -> tuple[bool, int | None]:
        """`claim`, and the directory's version when the claim's statement read it."""
        key = self._prefix + str(update_id)
        while True:
            taken, directory = await self._take(key)
            if taken:
                return True, directory
            state, since = await self._state(key)
            if state == DONE:
                return False, None
            if state == HANDLING and since is not None and since < _now() - LEASE:
                if await self._take_over(key):
                    return True, None
            elif state == HANDLING:
                await asyncio.sleep(CLAIM_POLL_SECONDS)
            # No state: given up meanwhile, so claim it afresh.

    async def done(self, update_id: int, write: Write | None = None) -> None:
        """The update is handled; `write`, the conversation it leaves, is stored with it."""
        key = self._prefix + str(update_id)
        if self._redis is not None:
            async with self._redis.pipeline(transaction=True) as pipe:
                if write is not None:
                    self._queue_write(pipe, write)
                pipe.set(key, DONE, ex=int(HANDLED_FOR.total_seconds()))
                await pipe.execute()
            return
        now = _now()
        if write is None:
            await _mark_done(key, now)
        else:
            storage = self._storage
            assert isinstance(storage, DatabaseStorage), "a write needs the database's storage"
            try:
                async with in_transaction():
                    await storage.store(write.key, write.state, write.data, handled=key)
            except BaseException:
                storage.forget(write.key)
                raise
        self._handled += 1
        if self._handled % FORGET_EVERY == 1:
            await Conversation.filter(
                key__startswith=HANDLED_PREFIX, updated_at__lt=now - HANDLED_FOR
            ).delete()

    def _queue_write(self, pipe: Any, write: Write) -> None:
        """The conversation's state and data as aiogram's RedisStorage keeps them."""
        storage = self._storage
        assert storage is not None and hasattr(storage, "key_builder")
        state_key = storage.key_builder.build(write.key, "state")
        data_key = storage.key_builder.build(write.key, "data")
        if write.state is None:
            pipe.delete(state_key)
        else:
            pipe.set(state_key, write.state, ex=storage.state_ttl)
        if write.data == EMPTY:
            pipe.delete(data_key)
        else:
            pipe.set(data_key, write.data, ex=storage.data_ttl)

    async def release(self, update_id: int) -> None:
        """Handling failed: the next delivery tries again."""
        key = self._prefix + str(update_id)
        if self._redis is not None:
            await self._redis.delete(key)
            return
        await Conversation.filter(key=key, state=HANDLING).delete()

    async def _take(self, key: str) -> tuple[bool, int | None]:
        """Whether the claim was taken; in the database, with the directory's version read by
        the same statement (one round trip an update fewer)."""
        if self._redis is not None:
            lease = int(LEASE.total_seconds() * 1000)
            return bool(await self._redis.set(key, HANDLING, nx=True, px=lease)), None
        connection = connections.get("default")
        try:
            # (Not execute_query: asyncpg's client runs an INSERT there without its rows.)
            rows = await connection.execute_query_dict(
                _CLAIM.format(rows=_rows(connection, 1), version=cache.VERSION),
                [key, HANDLING, EMPTY, _now()],
            )
        except IntegrityError:
            return False, None
        number = rows[0]["number"] if rows else None
        return True, int(number or 0)

    async def _state(self, key: str) -> tuple[str | None, datetime | None]:
        """HANDLING or DONE, and since when (the database's claims only: Redis's run out by
        themselves); (None, None) when there is no claim."""
        if self._redis is not None:
            value = await self._redis.get(key)
            if value is None:
                return None, None
            return (HANDLING if value == HANDLING.encode() else DONE), None
        row = await Conversation.get_or_none(key=key)
        if row is None:
            return None, None
        return (HANDLING if row.state == HANDLING else DONE), row.updated_at

    async def _take_over(self, key: str) -> bool:
        """Claim an update whose claim ran out; of several processes trying, one succeeds."""
        now = _now()
        taken = await Conversation.filter(
            key=key, state=HANDLING, updated_at__lt=now - LEASE
        ).update(updated_at=now)
        return bool(taken)

    @contextlib.contextmanager
    def _holding(self, key: str) -> Iterator[None]:
        """The claim `key` renewed while the block runs, with every other claim held here."""
        self._held.add(key)
        keeper = self._keeper
        if keeper is None or keeper.done() or keeper.get_loop() is not asyncio.get_running_loop():
            self._keeper = asyncio.create_task(self._keep())
        try:
            yield
        finally:
            self._held.discard(key)

    async def close(self) -> None:
        """No more updates: the renewing task ends now rather than at its next wake."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None and not keeper.done():
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _keep(self) -> None:
        """Every third of `LEASE`, the claims held then renewed in one statement (one
        pipeline): a task and a statement a process, not one of each an update. Ends when
        no claim is held; the next claim starts it again."""
        try:
            while True:
                await asyncio.sleep(LEASE.total_seconds() / 3)
                if not self._held:
                    return
                try:
                    await self._renew(list(self._held))
                except Exception as error:  # the next renewal may succeed; the leases hold
                    log.warning("renewing %d claims failed: %s", len(self._held), error)
        finally:
            if self._keeper is asyncio.current_task():
                self._keeper = None

    async def _renew(self, keys: list[str]) -> None:
        if self._redis is not None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.pexpire(key, int(LEASE.total_seconds() * 1000))
                await pipe.execute()
            return
        await Conversation.filter(key__in=keys, state=HANDLING).update(updated_at=_now())


def _now() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def _renewed(renew: Callable[[], Awaitable[Any]]) -> AsyncIterator[None]:
    """Runs `renew` every third of `LEASE` while the block runs."""

    async def keep() -> None:
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 3)
            try:
                await renew()
            except Exception as error:  # the next renewal may succeed; the lease still holds
                log.warning("renewing a lease failed: %s", error)

    keeper = asyncio.create_task(keep())
    try:
        yield
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper


#: Redis connections of one process. More updates than this at once wait for a free one.
REDIS_CONNECTIONS = 50
#: How long an update waits for a Redis connection before it fails.
REDIS_WAIT_SECONDS = 30
#: Times a command is sent again after a dropped connection.
REDIS_RETRIES = 3


class InOrder(BaseEventIsolation):
    """A person's updates one at a time and in the order they came, across processes.

    Redis's lock (redis-py's) keeps two processes from handling one person at once, but it is
    not first come, first served: a tap and the text typed right after it could be handled text
    first, in the wrong step. The process's own lock (asyncio's, which is) is taken first.
    Redis's lock is held for `LEASE` and renewed while the update is handled, so a person whose
    update a killed process held waits at most that long, not aiogram's default minute.
    """

    def __init__(self, redis: Any, key_builder: KeyBuilder) -> None:
        self.local = SimpleEventIsolation()
        self.redis = redis
        self.key_builder = key_builder

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncIterator[None]:
        from redis.exceptions import LockError

        async with self.local.lock(key):
            shared = self.redis.lock(
                self.key_builder.build(key, "lock"), timeout=LEASE.total_seconds()
            )
            await shared.acquire()
            try:
                async with _renewed(shared.reacquire):
                    yield
            finally:
                with contextlib.suppress(LockError):  # ran out meanwhile: nothing to release
                    await shared.release()

    async def close(self) -> None:
        await self.local.close()


def make_storage(
    redis_url: str | None, bot_id: int = 0, *, alone: bool = True
) -> tuple[BaseStorage, BaseEventIsolation, HandledUpdates]:
    """Storage, per-user lock and handled updates: Redis when given, else database and process.
    `alone`: no other process receives this bot's updates, so the database's conversations may
    be remembered in memory.

    """
    if redis_url:
        from aiogram.fsm.storage.redis import RedisStorage
        from redis.asyncio import Redis

        storage = RedisStorage(
            redis=Redis(connection_pool=redis_pool(redis_url)),
            key_builder=DefaultKeyBuilder(with_bot_id=True),
        )
        isolation = InOrder(storage.redis, storage.key_builder)
        return storage, isolation, HandledUpdates(storage.redis, bot_id, storage)
    storage = DatabaseStorage(cached=CACHED if alone else 0)
    return storage, SimpleEventIsolation(), HandledUpdates(None, bot_id, storage)


def redis_pool(redis_url: str) -> Any:
    """A blocking connection pool: redis-py's default pool refuses a command when its 100
    connections are in use, and the update that asked fails (a burst of 100 people writing at
    once, each update holding a connection for its lock, reaches that). A command that meets a
    dropped connection (Redis restarted, a connection closed while idle in the pool) is sent
    again on a new one, a few times with backoff, instead of failing the update."""
    from redis.asyncio import BlockingConnectionPool
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return BlockingConnectionPool.from_url(
        redis_url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_WAIT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), REDIS_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
    )
