"""Filters in the product's terms."""

from __future__ import annotations

from aiogram.filters import Filter
from aiogram.types import Message

from bot.i18n import every_language


class Pressed(Filter):
    """A reply-keyboard button, in whichever language the person's keyboard was drawn."""

    def __init__(self, label: str) -> None:
        self.label = label

    async def __call__(self, message: Message) -> bool:
        return message.text is not None and message.text in every_language(self.label)
