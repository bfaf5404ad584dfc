"""/start: a villager's registration (from a village's poster: in that village), a returning
user's menu, an official's invitation."""

from __future__ import annotations

from aiogram import Bot
from aiogram.filters import CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from bot import delivery, keyboards
from bot.flows import registration
from bot.i18n import _
from bot.invitations import InvitationRefused, Refusal, looks_like_invitation, redeem
from bot.menus import set_menu_for
from bot.notices import resend_cards
from bot.people import Person
from bot.posters import village_in
from bot.roles import describe_official
from bot.routers import Routes

routes = Routes("start", private_only=True)


def refusal_text(reason: Refusal) -> str:
    texts = {
        Refusal.UNKNOWN: _(
            "This invitation link is not valid. Please ask your administrator for a new one."
        ),
        Refusal.USED: _(
            "This invitation link has already been used. "
            "Please ask your administrator for a new one."
        ),
        Refusal.EXPIRED: _(
            "This invitation link has expired. Please ask your administrator for a new one."
        ),
        Refusal.INACTIVE: _(
            "This invitation is for an official who is no longer in the directory."
        ),
        Refusal.TAKEN: _(
            "This official is already linked to another Telegram account. "
            "Please ask your administrator."
        ),
    }
    return texts[reason]


@routes.message(CommandStart(deep_link=True))
async def start_with_link(
    message: Message, command: CommandObject, state: FSMContext, person: Person, bot: Bot
) -> None:
    if not looks_like_invitation(command.args):
        await start(message, state, person, village_id=village_in(command.args))
        return
    try:
        official = await redeem(command.args or "", person.account)
    except InvitationRefused as refused:
        await message.answer(refusal_text(refused.reason))
        return
    await state.clear()
    if all(o.id != official.id for o in person.officials):
        person.officials.insert(0, official)
    await message.answer(
        _("Welcome, {name}! Your Telegram account is now linked: {role}.").format(
            name=official.display_name(person.language),
            role=await describe_official(official, person.language),
        )
        + "\n\n"
        + _("Send /help to see what you can do."),
        reply_markup=keyboards.no_keyboard(),
    )
    await set_menu_for(bot, person)


@routes.message(CommandStart())
async def start(
    message: Message, state: FSMContext, person: Person, village_id: int | None = None
) -> None:
    """`village_id`: from a poster's link; someone registered already is welcomed back."""
    if person.official is not None:
        await state.clear()
        await message.answer(
            _("Welcome back, {name}. Send /help to see what you can do.").format(
                name=person.official.display_name(person.language)
            ),
            reply_markup=keyboards.no_keyboard(),
        )
        # Cards that could not reach this chat before (never started, or blocked): now.
        if await resend_cards(person.account):
            delivery.wake()
        return
    if person.villager is not None:
        await state.clear()
        await message.answer(
            _("Welcome back, {name}! Choose what you need from the menu below.").format(
                name=person.villager.name
            ),
            reply_markup=keyboards.villager_menu(),
        )
        return
    await registration.begin(message, state, person, village_id=village_id)
