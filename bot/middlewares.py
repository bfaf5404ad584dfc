"""Who is talking, and in which language: resolved once per update, before any handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, User

from bot.i18n import catalogs
from bot.people import identify


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
