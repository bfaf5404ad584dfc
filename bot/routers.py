"""Handlers declared once at import, attached to a fresh aiogram Router per dispatcher.

aiogram lets a Router belong to one dispatcher only, but a process builds several: a restart
in the tests, the demo, the benchmarks. `Routes` keeps the decorator style of aiogram's own
examples and hands out a new Router each time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram import F, Router

Handler = Callable[..., Any]


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
            router.message.filter(F.chat.type == "private")
            router.callback_query.filter(F.message.chat.type == "private")
        for kind, filters, handler in self._entries:
            getattr(router, kind).register(handler, *filters)
        return router
