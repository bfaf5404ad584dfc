"""/web: an official asks for a link into the back office."""

from __future__ import annotations

from aiogram.filters import Command
from aiogram.types import Message

from bot.config import Settings
from bot.i18n import _
from bot.people import Person
from bot.routers import Routes
from web.signin import TTL, issue, link

routes = Routes("web", private_only=True)


@routes.message(Command("web"))
async def web_link(message: Message, person: Person, settings: Settings) -> None:
    if not person.officials:
        await message.answer(_("The back office on the web is for officials."))
        return
    token = await issue(person.account)
    await message.answer(
        _(
            "Your link into the back office. It signs you in once, within {minutes} minutes; "
            "do not pass it on:\n{link}"
        ).format(minutes=int(TTL.total_seconds() // 60), link=link(settings.web_url, token))
    )
