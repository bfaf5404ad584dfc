"""Talking to a bot as many people at once: what each chat received, and the report flow.

Shared by `bench.throughput` and `bench.memory`. Each person waits for the bot's answer before
the next step, as a person would.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

from bot.emulator import BotAPIEmulator, UserHandle, buttons, said

#: Each report's place, numbered: see `to_summary`.
_PLACES = itertools.count()

#: Longest a person waits for an answer before the benchmark gives up.
TIMEOUT = 120.0


def says(text: str) -> Callable[[dict], bool]:
    return lambda message: text in said(message)


def offers(label: str) -> Callable[[dict], bool]:
    return lambda message: label in buttons(message)


class Inbox:
    """What the bot sent each chat, in order and when, with per-chat waiting.

    The emulator calls the hook on every send and edit; a waiter wakes only for its own chat,
    so a thousand people waiting cost nothing while someone else gets an answer.
    """

    def __init__(self, emulator: BotAPIEmulator) -> None:
        self.arrived: dict[int, list[tuple[float, dict]]] = defaultdict(list)
        self._waiting: dict[int, asyncio.Event] = {}
        emulator.on_bot_message(self._hook)

    def _hook(self, chat_id: int, message: dict, edited: bool) -> None:
        self.arrived[chat_id].append((time.perf_counter(), message))
        event = self._waiting.pop(chat_id, None)
        if event is not None:
            event.set()

    def mark(self, chat_id: int) -> int:
        return len(self.arrived[chat_id])

    async def wait(
        self, chat_id: int, since: int, matches: Callable[[dict], bool]
    ) -> tuple[float, dict]:
        """The first message (or edit) after `since` that matches, and when it arrived."""
        deadline = time.perf_counter() + TIMEOUT
        while True:
            for moment, message in self.arrived[chat_id][since:]:
                if matches(message):
                    return moment, message
            since = len(self.arrived[chat_id])
            event = self._waiting.setdefault(chat_id, asyncio.Event())
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"chat {chat_id}: no answer in {TIMEOUT:g}s")
            await asyncio.wait_for(event.wait(), left)

    async def step(
        self, user: UserHandle, act: Awaitable[object], expected: Callable[[dict], bool]
    ) -> dict:
        """Do `act`, then wait for the first message (or edit) after it that matches."""
        since = self.mark(user.id)
        await act
        return (await self.wait(user.id, since, expected))[1]


async def open_draft(inbox: Inbox, user: UserHandle) -> None:
    """The report flow up to the photos step: /report, a heading, a category, a description
    typed (4 updates). The draft then waits at the photos step."""
    menu = await inbox.step(user, user.send_text("/report"), offers("环境卫生"))
    heading = await inbox.step(user, user.tap(menu, "环境卫生"), offers("卫生清理"))
    await inbox.step(user, user.tap(heading, "卫生清理"), says("请描述问题"))
    await inbox.step(
        user, user.send_text(f"村口垃圾桶满了，垃圾散了一地，三天没人清理（{user.id}）"),
        says("最多"),
    )


async def to_summary(inbox: Inbox, user: UserHandle) -> dict:
    """The whole report flow up to its summary (7 updates); returns the summary message.

    Each report's pin lies 400 m from the one before, farther apart than "the same place"
    (`cases.SAME_PLACE_METRES`), so Submit files a case instead of offering "me too"."""
    await open_draft(inbox, user)
    photos = await inbox.step(user, user.send_photo(), says("已收到照片 1 张"))
    await inbox.step(user, user.tap(photos, "✅ 完成"), says("问题在什么位置"))
    latitude = 27.7431 + next(_PLACES) % 2000 * 0.0036
    return await inbox.step(user, user.send_location(latitude, 118.9961), says("请核对"))
