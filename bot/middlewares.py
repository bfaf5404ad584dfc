"""Before any handler: each update once, who is talking, and in which language."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
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

    The update is claimed first (`HandledUpdates.claim`): a second delivery, here or in another
    process, waits for the first and then does nothing. An update whose handling failed is
    given up: delivered again, it is tried again.
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
            return await handler(event, data)
