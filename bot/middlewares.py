"""Before any handler: each update once, who is talking, and in which language."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import StateType
from aiogram.types import TelegramObject, Update, User

from bot.i18n import catalogs
from bot.people import identify
from bot.storage import HandledUpdates

log = logging.getLogger(__name__)


class PersonMiddleware(BaseMiddleware):
    """Puts `person` (account, villager, officials) into handler data and sets the language."""

    def __init__(self, default_language: str) -> None:
        self.default_language = default_language

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None or user.is_bot:
            return await handler(event, data)
        person = await identify(user, self.default_language)
        data["person"] = person
        with catalogs().speaking(person.language):
            return await handler(event, data)


class OnceOnly(BaseMiddleware):
    """Handles each update once, however often Telegram delivers it.

    Runs inside the person's lock (after aiogram's FSM middleware), so a second delivery of an
    update waits for the first and then finds it remembered. An update whose handling failed
    or was cut short (the process killed) is not remembered: delivered again, it is tried
    again, from the conversation as it found it the first time (see `HandledUpdates`).
    """

    def __init__(self, handled: HandledUpdates) -> None:
        self.handled = handled

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        if await self.handled.seen(event.update_id):
            log.info("update %s arrived again; handled already", event.update_id)
            return UNHANDLED
        state = data.get("state")
        if isinstance(state, FSMContext):
            kept = await self.handled.before(state.key)
            if kept is not None and kept[0] == event.update_id:
                log.info("update %s arrived again, half handled: from its step again",
                         event.update_id)
                await state.storage.set_state(state.key, kept[1])
                await state.storage.set_data(state.key, kept[2])
                data["raw_state"] = kept[1]
            data["state"] = KeptBefore(state, self.handled, event.update_id)
        result = await handler(event, data)
        await self.handled.remember(event.update_id)
        return result


class KeptBefore(FSMContext):
    """A person's conversation that, before an update first changes it, keeps what it was."""

    def __init__(self, context: FSMContext, handled: HandledUpdates, update_id: int) -> None:
        super().__init__(context.storage, context.key)
        self._handled = handled
        self._update_id = update_id
        self._kept = False

    async def _keep(self) -> None:
        if not self._kept:
            await self._handled.keep_before(
                self.key, self._update_id, await self.get_state(), await self.get_data()
            )
            self._kept = True

    async def set_state(self, state: StateType = None) -> None:
        await self._keep()
        await super().set_state(state)

    async def set_data(self, data: Mapping[str, Any]) -> None:
        await self._keep()
        await super().set_data(data)

    async def update_data(
        self, data: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        await self._keep()
        return await super().update_data(data, **kwargs)
