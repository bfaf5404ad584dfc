"""Before any handler: each update once, who is talking, and in which language."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import StateType
from aiogram.types import Chat, TelegramObject, Update, User

from bot import cache
from bot.i18n import catalogs
from bot.people import identify
from bot.storage import EMPTY, DatabaseStorage, HandledUpdates, Write

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
        chat: Chat | None = data.get("event_chat")
        private = chat is not None and chat.type == "private"
        # In a private chat the bot "kicked" is the person blocking it.
        change = event.my_chat_member if isinstance(event, Update) else None
        blocking = private and change is not None and change.new_chat_member.status in (
            "kicked", "left"
        )
        person = await identify(
            user, self.default_language, private=private, blocking=blocking
        )
        data["person"] = person
        with catalogs().speaking(person.language):
            return await handler(event, data)


class OnceOnly(BaseMiddleware):
    """Handles each update once, however often and wherever Telegram delivers it.

    The update is claimed first (`HandledUpdates.once`): a second delivery, here or in another
    process, waits for the first and then does nothing. The handler sees the person's
    conversation as `ThisUpdate`, whose changes are stored only when the update is done, in one
    write with that mark: an update whose handling failed or was cut short (the process killed)
    changed nothing of the conversation, so its next delivery starts from the same step, and
    the apology's "this step was not done" is true of the draft too.
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
        async with self.handled.once(event.update_id) as claim:
            if claim is None:
                log.info("update %s arrived again; handled already", event.update_id)
                return UNHANDLED
            with cache.known(claim.directory):
                context = data.get("state")
                if not isinstance(context, FSMContext):
                    return await handler(event, data)
                conversation = data["state"] = ThisUpdate(context)
                token = _this_update.set(conversation)
                try:
                    result = await handler(event, data)
                finally:
                    _this_update.reset(token)
            claim.write = conversation.write()
            return result


_this_update: ContextVar[ThisUpdate | None] = ContextVar("this_update", default=None)


def conversation(context: FSMContext) -> FSMContext:
    """The update's own view when `context` is its person's conversation, else `context`: a
    step that asks in the private chat a tap came from changes the conversation once."""
    current = _this_update.get()
    return current if current is not None and current.key == context.key else context


class ThisUpdate(FSMContext):
    """A person's conversation as one update sees it: read from the store at most once, changed
    in memory, and left to `OnceOnly` to store in one write when the update is done.

    Data is kept as JSON text, as the stores keep it: a handler that changes the dict it got
    back does not change the conversation, and what it reads is what a store would return.
    """

    def __init__(self, context: FSMContext) -> None:
        super().__init__(context.storage, context.key)
        self._found: tuple[str | None, str] | None = None
        self._state: str | None = None
        self._data = EMPTY

    async def _load(self) -> None:
        if self._found is not None:
            return
        if isinstance(self.storage, DatabaseStorage):
            found = await self.storage.load(self.key)
        else:
            found = (
                await self.storage.get_state(self.key),
                json.dumps(await self.storage.get_data(self.key)),
            )
        self._found = found
        self._state, self._data = found

    def write(self) -> Write | None:
        """What to store when the update is done; None when it changed nothing."""
        if self._found is None or (self._state, self._data) == self._found:
            return None
        return Write(self.key, self._state, self._data)

    async def get_state(self) -> str | None:
        await self._load()
        return self._state

    async def set_state(self, state: StateType = None) -> None:
        await self._load()
        self._state = state.state if isinstance(state, State) else state

    async def get_data(self) -> dict[str, Any]:
        await self._load()
        return json.loads(self._data)  # type: ignore[no-any-return]

    async def set_data(self, data: Mapping[str, Any]) -> None:
        await self._load()
        self._data = json.dumps(dict(data))

    async def get_value(self, key: str, default: Any | None = None) -> Any | None:
        return (await self.get_data()).get(key, default)

    async def update_data(
        self, data: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        if data:
            kwargs.update(data)
        current = await self.get_data()
        current.update(kwargs)
        await self.set_data(current)
        return current
