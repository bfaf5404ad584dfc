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
    """Handles each update once, however often and wherever Telegram delivers it.

    The update is claimed first (`HandledUpdates.once`): a second delivery, here or in another
    process, waits for the first and then does nothing. An update whose handling failed or was
    cut short (the process killed) is tried again when delivered again, from the conversation
    as it found it the first time; a handling that raises puts the conversation back at once,
    so the apology's "this step was not done" is true of the draft too.
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
        async with self.handled.once(event.update_id) as mine:
            if not mine:
                log.info("update %s arrived again; handled already", event.update_id)
                return UNHANDLED
            context = data.get("state")
            if not isinstance(context, FSMContext):
                return await handler(event, data)
            kept = await self.handled.before(context.key)
            if kept is not None and kept[0] == event.update_id:
                log.info("update %s arrived again, half handled: from its step again",
                         event.update_id)
                await context.storage.set_state(context.key, kept[1])
                await context.storage.set_data(context.key, kept[2])
                data["raw_state"] = kept[1]
            kept_before = data["state"] = KeptBefore(context, self.handled, event.update_id)
            try:
                return await handler(event, data)
            except Exception:
                await kept_before.undo()
                raise


class KeptBefore(FSMContext):
    """A person's conversation that, before an update first changes it, keeps what it was."""

    def __init__(self, context: FSMContext, handled: HandledUpdates, update_id: int) -> None:
        super().__init__(context.storage, context.key)
        self._handled = handled
        self._update_id = update_id
        self._before: tuple[str | None, dict[str, Any]] | None = None

    async def _keep(self) -> None:
        if self._before is None:
            before = (await self.get_state(), await self.get_data())
            await self._handled.keep_before(self.key, self._update_id, *before)
            self._before = before

    async def undo(self) -> None:
        """Back to what the conversation was before this update changed it, if it did."""
        if self._before is None:
            return
        state, data = self._before
        try:
            await self.storage.set_state(self.key, state)
            await self.storage.set_data(self.key, data)
        except Exception:  # the store itself failing: a redelivery still starts from `before`
            log.exception("update %s: the conversation could not be put back", self._update_id)

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
