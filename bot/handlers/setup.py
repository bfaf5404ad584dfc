"""/setup: an administrator's checklist of what the township still lacks, each line with the
button that fixes it where one can (`bot.setup`); and how the bot asks Telegram whether it may
post in a chat, for the checklist here, in the back office and at start."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot import scope, setup
from bot.i18n import _
from bot.models import Township
from bot.people import Person
from bot.routers import Routes
from bot.setup import ChatChecker, PostRight

log = logging.getLogger(__name__)
routes = Routes("setup", private_only=True)

#: A message's text stays well under Telegram's 4096 characters, its keyboard under 100 buttons.
MESSAGE_CHARS = 3500
MESSAGE_BUTTONS = 50


def post_right(chat_type: str, member: dict[str, object]) -> PostRight:
    """What getChatMember's answer for the bot means for posting in a chat of `chat_type`."""
    status = member.get("status")
    channel = chat_type == "channel"
    if status == "creator":
        return PostRight.OK
    if status == "administrator":
        if channel and not member.get("can_post_messages"):
            return PostRight.NO_POST_RIGHT
        return PostRight.OK
    if status == "member":
        return PostRight.NOT_ADMIN if channel else PostRight.OK
    if status == "restricted":
        if not member.get("is_member"):
            return PostRight.NOT_MEMBER
        return PostRight.OK if member.get("can_send_messages") else PostRight.MUTED
    return PostRight.NOT_MEMBER  # left, kicked


def telegram_checker(bot: Bot) -> ChatChecker:
    """Asks Telegram (getChat, getChatMember of the bot) whether the bot may post in a chat."""

    async def check(chat_id: int) -> PostRight:
        try:
            chat = await bot.get_chat(chat_id)
            member = await bot.get_chat_member(chat_id, bot.id)
        except (TelegramBadRequest, TelegramForbiddenError):  # chat not found, bot removed
            return PostRight.NOT_MEMBER
        except TelegramAPIError as error:
            log.warning("setup: cannot ask Telegram about chat %s: %s", chat_id, error.message)
            return PostRight.UNKNOWN
        return post_right(chat.type, member.model_dump())

    return check


@routes.message(Command("setup"))
async def setup_command(
    message: Message, person: Person, bot: Bot, invite_ttl_days: int
) -> None:
    admin = next((o for o in person.officials if scope.may_manage_directory(o)), None)
    if admin is None:
        await message.answer(_("Only an administrator can see what the township still lacks."))
        return
    township = await Township.get(id=admin.township_id)  # type: ignore[attr-defined]
    name = township.display_name(person.language)
    gaps = await setup.missing(township, telegram_checker(bot))
    if not gaps:
        await message.answer(_("All set: {township} lacks nothing.").format(township=name))
        return
    username = (await bot.me()).username or ""
    text = _("What {township} still lacks ({count}):").format(township=name, count=len(gaps))
    buttons: list[list[InlineKeyboardButton]] = []
    for number, line in enumerate(await setup.lines(gaps, person.language), start=1):
        entry = f"{number}. {line.problem}"
        if line.advice:
            entry += f"\n    → {line.advice}"
        if len(text) + len(entry) + 2 > MESSAGE_CHARS or len(buttons) >= MESSAGE_BUTTONS:
            await _send(message, text, buttons)
            text, buttons = "", []
        text += ("\n\n" if text else "") + entry
        url = await setup.link(line.gap, username, ttl_days=invite_ttl_days, by=person.account)
        if url is not None and line.button is not None:
            buttons.append([InlineKeyboardButton(text=f"{number}. {line.button}", url=url)])
    await _send(message, text, buttons)


async def _send(message: Message, text: str, buttons: list[list[InlineKeyboardButton]]) -> None:
    markup = InlineKeyboardMarkup(inline_keyboard=buttons) if buttons else None
    await message.answer(text, reply_markup=markup)
