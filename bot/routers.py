"""Handlers declared once at import, attached to a fresh aiogram Router per dispatcher.

aiogram lets a Router belong to one dispatcher only, but a process builds several: a restart
in the tests, the demo, the benchmarks. `Routes` keeps the decorator style of aiogram's own
examples and hands out a new Router each time.

Every filter a router is given is checked in the event loop (`InLoop`): aiogram 3.31 runs a
filter that is not a coroutine (a magic filter `F...`, a `State`, a plain function) through
`asyncio.to_thread`, a hop to a worker thread and back for each check, and an update of the
report flow passes some hundred checks. That hop was the largest single cost of dispatch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import F, Router
from aiogram.dispatcher.event.handler import FilterObject
from aiogram.filters import Filter

Handler = Callable[..., Any]


class InLoop(Filter):
    """A filter that is not a coroutine, called in the loop as aiogram calls it otherwise
    (a magic filter resolved on the event, a function given the arguments it names)."""

    def __init__(self, check: FilterObject) -> None:
        self._check = check

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        check = self._check
        if not check.varkw:
            kwargs = {name: kwargs[name] for name in check.params if name in kwargs}
        return check.callback(*args, **kwargs)

    def __str__(self) -> str:
        return f"InLoop({self._check.magic or self._check.callback!r})"


def in_loop(given: Any) -> Any:
    """`given`, or, if aiogram would check it in a thread, the same check in the loop."""
    check = FilterObject(given)
    return given if check.awaitable else InLoop(check)


class Routes:
    def __init__(self, name: str, *, private_only: bool = False) -> None:
        self.name = name
        self.private_only = private_only
        self._entries: list[tuple[str, tuple[Any, ...], Handler]] = []

    def _register(self, kind: str, filters: tuple[Any, ...]) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self._entries.append((kind, filters, handler))
            return handler

        return decorate

    def message(self, *filters: Any) -> Callable[[Handler], Handler]:
        return self._register("message", filters)

    def callback_query(self, *filters: Any) -> Callable[[Handler], Handler]:
        return self._register("callback_query", filters)

    def my_chat_member(self, *filters: Any) -> Callable[[Handler], Handler]:
        """The bot's own membership of a chat changed (added, removed, its rights)."""
        return self._register("my_chat_member", filters)

    def errors(self, *filters: Any) -> Callable[[Handler], Handler]:
        return self._register("errors", filters)

    def router(self) -> Router:
        router = Router(name=self.name)
        if self.private_only:
            # Scoped to private chats: an officials' group never reaches these handlers.
            router.message.filter(in_loop(F.chat.type == "private"))
            router.callback_query.filter(in_loop(F.message.chat.type == "private"))
        for kind, filters, handler in self._entries:
            getattr(router, kind).register(handler, *map(in_loop, filters))
        return router
