"""What everyone can do in a private chat: /help and /language."""

from __future__ import annotations

from aiogram import Bot
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards, scope
from bot.callbacks import ChooseLanguage
from bot.filters import Pressed
from bot.i18n import _, catalogs
from bot.languages import LANGUAGES
from bot.menus import set_menu_for
from bot.people import Person, choose_language
from bot.routers import Routes

routes = Routes("common", private_only=True)


def help_text(person: Person) -> str:
    if person.officials:
        lines = [
            _("You are registered as an official."),
            "",
            _("/start: return to the main menu"),
            _("/tasks: your open cases, nearest deadline first; the township tasks you gave "
              "and how each unit stands"),
            _("/pool: cases in your units waiting to be accepted"),
            _("/notice: post a public notice, if your role may; /notices: the latest ones"),
            _("/web: a link into the back office on the web"),
            _("/language: change the language"),
            _("/help: this message"),
        ]
        if any(scope.may_create_task(official) for official in person.officials):
            lines.insert(-3, _("/newtask: give a township task to villages' units"))
        if person.is_admin:
            lines.append(_("/invite: invite an official; they open the link to join"))
            lines.append(_("/setup: what the township still lacks, with the buttons that fix it"))
        return "\n".join(lines)
    if person.villager is None:
        return "\n".join(
            [
                _("This bot lets you report problems in your village and follow them."),
                "",
                _("Send /start to register: it takes four short steps."),
                _("/language: change the language"),
            ]
        )
    return "\n".join(
        [
            _("This bot lets you report problems in your village and follow them."),
            "",
            _("/report: report a problem (or tap “📝 Report a problem” below)"),
            _("/mycases: your cases, how they stand and their history"),
            _("/ask: ask a policy question; the township's answers first, then its officials"),
            _("/notices: public notices for your village, newest first"),
            _("/profile: your name, village, grid and phone"),
            _("/language: change the language"),
            _("/help: this message"),
        ]
    )


@routes.message(Command("help"))
@routes.message(Pressed(keyboards.HELP))
async def show_help(message: Message, person: Person) -> None:
    await message.answer(help_text(person))


@routes.message(Command("language"))
@routes.message(Pressed(keyboards.LANGUAGE))
async def ask_language(message: Message) -> None:
    await message.answer(_("Choose your language:"), reply_markup=keyboards.languages())


@routes.callback_query(ChooseLanguage.filter())
async def language_chosen(
    query: CallbackQuery,
    callback_data: ChooseLanguage,
    person: Person,
    bot: Bot,
    state: FSMContext,
) -> None:
    if callback_data.language not in LANGUAGES or not isinstance(query.message, Message):
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    await choose_language(person.account, callback_data.language)
    with catalogs().speaking(callback_data.language):
        await query.answer()
        await query.message.edit_text(
            _("Language: {name}").format(name=_(keyboards.LANGUAGE_NAME))
        )
        # A registration in progress keeps its step; otherwise the menu is redrawn.
        if await state.get_state() is None:
            markup = keyboards.villager_menu() if person.villager else keyboards.no_keyboard()
            await query.message.answer(_("From now on I will speak English."), reply_markup=markup)
        await set_menu_for(bot, person)
