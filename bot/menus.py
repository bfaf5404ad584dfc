"""The command menu (setMyCommands): per role and per language.

Telegram picks a menu by scope and by the two-letter language of the client, which cannot tell
Simplified from Traditional Chinese. So the defaults cover people we do not know yet, and each
known person gets a menu of their own chat, in their own language and role.
"""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeChat,
    BotCommandScopeDefault,
)

from bot import scope
from bot.i18n import N_, catalogs
from bot.languages import EN, ZH_HANS
from bot.people import Person

VILLAGER_COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", N_("Start or return to the main menu")),
    ("report", N_("Report a problem")),
    ("mycases", N_("Your cases and how they stand")),
    ("ask", N_("Ask a policy question")),
    ("notices", N_("Public notices for your village")),
    ("profile", N_("Your name, village and phone")),
    ("language", N_("Change the language")),
    ("help", N_("What this bot can do")),
)

OFFICIAL_COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", N_("Start or return to the main menu")),
    ("tasks", N_("Your open cases and the township tasks you gave")),
    ("pool", N_("Cases waiting to be accepted")),
    ("notice", N_("Post a public notice")),
    ("notices", N_("Public notices posted in your township")),
    ("web", N_("A link into the back office on the web")),
    ("language", N_("Change the language")),
    ("help", N_("What this bot can do")),
)

#: For those who may give township tasks (`bot.scope.may_create_task`), after /tasks.
TASK_COMMANDS: tuple[tuple[str, str], ...] = (
    ("newtask", N_("Give a township task (dispatchers and leaders)")),
)

ADMIN_COMMANDS: tuple[tuple[str, str], ...] = (
    ("invite", N_("Invite an official to join")),
    ("setup", N_("What the township still lacks")),
)

#: In every group: what an official types there to bind it (bot.handlers.groups).
GROUP_COMMANDS: tuple[tuple[str, str], ...] = (
    ("bindgroup", N_("Choose which unit this group serves")),
    ("digesthere", N_("Send the township's weekly digest to this chat")),
)


def _commands(entries: tuple[tuple[str, str], ...], language: str) -> list[BotCommand]:
    return [
        BotCommand(command=name, description=catalogs().text(description, language))
        for name, description in entries
    ]


def commands_for(person: Person | None, language: str) -> list[BotCommand]:
    if person is not None and person.officials:
        entries = OFFICIAL_COMMANDS + (ADMIN_COMMANDS if person.is_admin else ())
        if any(scope.may_create_task(official) for official in person.officials):
            entries = entries[:2] + TASK_COMMANDS + entries[2:]
    else:
        entries = VILLAGER_COMMANDS
    return _commands(entries, language)


async def set_default_menus(bot: Bot, default_language: str) -> None:
    """Menus for people the bot has not met, and for groups: by Telegram's language code, else
    the default."""
    await bot.set_my_commands(
        commands_for(None, default_language), scope=BotCommandScopeDefault()
    )
    await bot.set_my_commands(
        commands_for(None, ZH_HANS), scope=BotCommandScopeDefault(), language_code="zh"
    )
    await bot.set_my_commands(
        commands_for(None, EN), scope=BotCommandScopeDefault(), language_code="en"
    )
    groups = BotCommandScopeAllGroupChats()
    await bot.set_my_commands(_commands(GROUP_COMMANDS, default_language), scope=groups)
    for language, code in ((ZH_HANS, "zh"), (EN, "en")):
        await bot.set_my_commands(_commands(GROUP_COMMANDS, language), scope=groups,
                                  language_code=code)


async def set_menu_for(bot: Bot, person: Person) -> None:
    """This person's own menu, after registration, joining or a language change."""
    try:
        await bot.set_my_commands(
            commands_for(person, person.language),
            scope=BotCommandScopeChat(chat_id=person.account.id),
        )
    except TelegramAPIError:
        # The menu is a convenience: a failure here must not undo what the person just did.
        return
