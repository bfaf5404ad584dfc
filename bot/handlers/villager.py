"""A registered villager's own things: the profile."""

from __future__ import annotations

from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards
from bot.callbacks import PROFILE_FIELDS, EditProfile
from bot.filters import Pressed
from bot.flows import registration
from bot.i18n import _
from bot.models import Villager
from bot.people import Person
from bot.routers import Routes

routes = Routes("villager", private_only=True)


def profile_text(villager: Villager, language: str) -> str:
    grid = villager.grid.display_name(language) if villager.grid else _("not known")
    return "\n".join(
        [
            _("Your profile"),
            _("Name: {name}").format(name=villager.name),
            _("Village: {name}").format(name=villager.village.display_name(language)),
            _("Grid: {name}").format(name=grid),
            _("Phone: {phone}").format(phone=villager.phone or _("not shared")),
        ]
    )


@routes.message(Command("profile"))
@routes.message(Pressed(keyboards.PROFILE))
async def show_profile(message: Message, state: FSMContext, person: Person) -> None:
    if person.villager is None:
        await message.answer(_("You are not registered yet. Send /start to register."))
        return
    await state.clear()
    await message.answer(
        profile_text(person.villager, person.language), reply_markup=keyboards.profile()
    )


@routes.callback_query(EditProfile.filter())
async def edit_profile(
    query: CallbackQuery, callback_data: EditProfile, state: FSMContext, person: Person
) -> None:
    if (
        person.villager is None
        or callback_data.field not in PROFILE_FIELDS
        or not isinstance(query.message, Message)
    ):
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    await query.answer()
    message = query.message
    await state.clear()
    await state.update_data(editing=True)
    if callback_data.field == "name":
        await registration.ask_name(message, state)
    elif callback_data.field == "village":
        await registration.ask_village(message, state, person, person.villager.township_id)  # type: ignore[attr-defined]
    elif callback_data.field == "phone":
        await registration.ask_phone(message, state)
    else:
        await state.clear()
        await message.answer(_("Choose your language:"), reply_markup=keyboards.languages())
