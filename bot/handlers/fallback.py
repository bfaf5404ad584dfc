"""The last word: whatever no other handler took gets a short re-prompt, never silence.

Registered last, so it sees only what fell through every other router.
"""

from __future__ import annotations

import logging

from aiogram import Bot, F
from aiogram.types import CallbackQuery, Message

from bot import keyboards
from bot.i18n import _
from bot.people import Person
from bot.routers import Routes

log = logging.getLogger(__name__)

routes = Routes("fallback")


def _is_command(message: Message) -> bool:
    return bool(message.text) and message.text.startswith("/")  # type: ignore[union-attr]


@routes.message(F.chat.type == "private", _is_command)
async def unknown_command(message: Message, person: Person) -> None:
    command = (message.text or "").split()[0][:40]
    await message.answer(
        _("I do not know the command {command}. Send /help to see what you can do.").format(
            command=command
        )
    )


@routes.message(F.chat.type == "private")
async def not_understood(message: Message, person: Person) -> None:
    if person.villager is None and not person.officials:
        await message.answer(_("Please send /start to register first."))
        return
    markup = keyboards.villager_menu() if person.villager else None
    if message.text:
        text = _("I did not understand that. Please use the menu buttons, or send /help.")
    else:
        text = _("I cannot use that here. Please use the menu buttons, or send /help.")
    await message.answer(text, reply_markup=markup)


@routes.message(_is_command)
async def command_in_group(message: Message, bot: Bot) -> None:
    """A command typed in a group is answered with a pointer to the private chat."""
    me = await bot.me()
    target = (message.text or "").split()[0].partition("@")[2]
    if target and target.lower() != (me.username or "").lower():
        return
    await message.reply(
        _("Please write to me in a private chat: @{username}").format(username=me.username)
    )


@routes.callback_query()
async def stale_button(query: CallbackQuery) -> None:
    log.info("refused callback %r from user %s", query.data, query.from_user.id)
    await query.answer(_("This button is no longer active."), show_alert=True)
