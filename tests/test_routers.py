"""Every filter of the dispatcher is checked in the event loop, with aiogram's meaning.

aiogram runs a filter that is not a coroutine through `asyncio.to_thread`; `bot.routers`
wraps each such filter (`InLoop`) when it builds a router. These tests fail if a handler or
a router gets a filter past that wrapping, or if the wrapping changes what a filter says.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiogram import Dispatcher, F, Router
from aiogram.dispatcher.event.handler import FilterObject
from aiogram.types import Chat, Message, User

from bot.app import build_dispatcher
from bot.config import load_settings
from bot.flows.report import Report
from bot.routers import InLoop, in_loop


def _filters(router: Router) -> list[tuple[str, FilterObject]]:
    found = []
    for kind, observer in router.observers.items():
        found += [(f"{router.name}.{kind} (router)", f) for f in observer._handler.filters or []]
        for handler in observer.handlers:
            name = f"{router.name}.{kind} {handler.callback.__name__}"
            found += [(name, f) for f in handler.filters or []]
    for child in router.sub_routers:
        found += _filters(child)
    return found


def test_no_filter_of_the_dispatcher_is_sent_to_a_thread() -> None:
    settings = load_settings(
        database_url="sqlite://:memory:", bot_token="123456789:" + "A" * 35, web_listen=""
    )
    dispatcher: Dispatcher = build_dispatcher(settings)
    filters = _filters(dispatcher)
    assert len(filters) > 100  # the report flow alone has dozens: the walk found them
    in_threads = [name for name, check in filters if not check.awaitable]
    assert in_threads == []
    assert any(isinstance(check.callback, InLoop) for _, check in filters)


def _message(text: str, chat_type: str = "private") -> Message:
    return Message(
        message_id=1, date=datetime.now(UTC), text=text,
        chat=Chat(id=5, type=chat_type), from_user=User(id=5, is_bot=False, first_name="李"),
    )


async def test_a_magic_filter_in_the_loop_says_what_it_said_and_names_its_value() -> None:
    assert await in_loop(~F.text.startswith("/"))(_message("路灯坏了")) is True
    assert await in_loop(~F.text.startswith("/"))(_message("/start")) is False
    assert await in_loop(F.chat.type == "private")(_message("x", "group")) is False
    assert await in_loop(F.text.as_("words"))(_message("路灯")) == {"words": "路灯"}


async def test_a_state_or_function_in_the_loop_is_given_the_arguments_it_names() -> None:
    message = _message("x")
    assert await in_loop(Report.category)(message, raw_state=Report.category.state) is True
    assert await in_loop(Report.category)(message, raw_state=Report.photos.state) is False

    def long_text(message: Message, minimum: int) -> bool:
        return len(message.text or "") >= minimum

    assert await in_loop(long_text)(message, minimum=1, bot=None, state=None) is True
    assert await in_loop(long_text)(message, minimum=2, event_update=None) is False


def test_a_coroutine_filter_is_left_as_aiogram_calls_it() -> None:
    async def ours(message: Message) -> bool:
        return True

    assert in_loop(ours) is ours
