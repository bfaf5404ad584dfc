"""Where conversation state lives: the database by default, Redis when configured.

aiogram's default storage is memory, which loses a villager's half-written report on every
restart. Keeping state in our own database gives the default setup the same durability as
Redis, with no extra service to run.
"""

from __future__ import annotations

from collections.abc import Mapping
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

from bot.models import Conversation


class DatabaseStorage(BaseStorage):
    """aiogram FSM storage over the `conversation` table."""

    def __init__(self, key_builder: KeyBuilder | None = None) -> None:
        self.key_builder = key_builder or DefaultKeyBuilder(with_bot_id=True)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        row_key = self.key_builder.build(key)
        if value is None:
            row = await Conversation.get_or_none(key=row_key)
            if row is not None and not row.data:
                await row.delete()
            elif row is not None:
                row.state = None
                await row.save(update_fields=["state", "updated_at"])
            return
        await Conversation.update_or_create(key=row_key, defaults={"state": value})

    async def get_state(self, key: StorageKey) -> str | None:
        row = await Conversation.get_or_none(key=self.key_builder.build(key))
        return row.state if row else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        row_key = self.key_builder.build(key)
        if not data:
            row = await Conversation.get_or_none(key=row_key)
            if row is not None and row.state is None:
                await row.delete()
            elif row is not None:
                row.data = {}
                await row.save(update_fields=["data", "updated_at"])
            return
        await Conversation.update_or_create(key=row_key, defaults={"data": dict(data)})

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        row = await Conversation.get_or_none(key=self.key_builder.build(key))
        return dict(row.data) if row else {}

    async def close(self) -> None:
        """The connection belongs to the database module, which closes it."""


def make_storage(redis_url: str | None) -> tuple[BaseStorage, BaseEventIsolation]:
    """Storage and per-user lock: Redis for both when given, else database and in-process."""
    if redis_url:
        from aiogram.fsm.storage.redis import RedisStorage

        storage = RedisStorage.from_url(
            redis_url, key_builder=DefaultKeyBuilder(with_bot_id=True)
        )
        return storage, storage.create_isolation()
    return DatabaseStorage(), SimpleEventIsolation()
