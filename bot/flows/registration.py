"""Villager registration: township (when there are several), village, grid, name, phone.

Opened from a village's poster (`/start v-<village id>`, bot.posters), the township and village
questions are skipped: the village is chosen, and the grid of that village comes next.

The same steps serve /profile edits: with `editing` set in the conversation data, a step
saves its one field and returns to the profile instead of going on to the next step.
"""

from __future__ import annotations

from aiogram import Bot, F
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot import keyboards
from bot.callbacks import ChooseGrid, ChooseTownship, ChooseVillage
from bot.filters import Pressed
from bot.i18n import _
from bot.menus import set_menu_for
from bot.models import Grid, Village, Villager
from bot.people import (
    NAME_MAX,
    Person,
    active_townships,
    clean_name,
    clean_phone,
    grids_of,
    save_villager,
    villages_of,
)
from bot.routers import Routes

routes = Routes("registration", private_only=True)


class Registration(StatesGroup):
    township = State()
    village = State()
    grid = State()
    name = State()
    phone = State()


async def begin(
    message: Message, state: FSMContext, person: Person, *, village_id: int | None = None
) -> None:
    """Start registration, or re-registration when the villager moves village; with
    `village_id` (a poster's link), in that village when it is an active one."""
    await state.clear()
    townships = await active_townships()
    if not townships:
        await message.answer(_("This bot is not set up for any township yet. Please try later."))
        return
    village = None
    if village_id is not None:
        village = await Village.get_or_none(
            id=village_id, active=True, township_id__in=[t.id for t in townships]
        )
    if village is not None:
        await message.answer(
            _("Welcome! You are registering in {village}: three short steps.").format(
                village=village.display_name(person.language)
            ),
            reply_markup=keyboards.no_keyboard(),
        )
        await state.update_data(township_id=village.township_id)  # type: ignore[attr-defined]
        await ask_grid(message, state, person, village)
        return
    await message.answer(
        _("Welcome! Let us get to know you: it takes four short steps."),
        reply_markup=keyboards.no_keyboard(),
    )
    if village_id is not None:
        await message.answer(
            _("The village of the link you opened is not in the list: please choose yours.")
        )
    if len(townships) == 1:
        await ask_village(message, state, person, townships[0].id)
        return
    await state.set_state(Registration.township)
    await message.answer(
        _("Which township do you live in?"),
        reply_markup=keyboards.townships(townships, person.language),
    )


async def ask_village(
    message: Message, state: FSMContext, person: Person, township_id: int
) -> None:
    await state.update_data(township_id=township_id)
    await state.set_state(Registration.village)
    await message.answer(
        _("Which village do you live in?"),
        reply_markup=keyboards.villages(await villages_of(township_id), person.language),
    )


async def ask_name(message: Message, state: FSMContext) -> None:
    await state.set_state(Registration.name)
    await message.answer(
        _("What is your name? Officials will see it when they handle your reports."),
        reply_markup=keyboards.no_keyboard(),
    )


async def ask_phone(message: Message, state: FSMContext) -> None:
    await state.set_state(Registration.phone)
    await message.answer(
        _(
            "You may share your phone number so that officials can call you back. "
            "Tap the button below, or Skip."
        ),
        reply_markup=keyboards.share_phone(),
    )


async def _stale(query: CallbackQuery) -> None:
    await query.answer(_("This button is no longer active."), show_alert=True)


@routes.callback_query(Registration.township, ChooseTownship.filter())
async def township_chosen(
    query: CallbackQuery, callback_data: ChooseTownship, state: FSMContext, person: Person
) -> None:
    township = next(
        (t for t in await active_townships() if t.id == callback_data.township_id), None
    )
    if township is None or not isinstance(query.message, Message):
        await _stale(query)
        return
    await query.answer()
    await query.message.edit_text(
        _("Township: {name}").format(name=township.display_name(person.language))
    )
    await ask_village(query.message, state, person, township.id)


@routes.callback_query(Registration.village, ChooseVillage.filter())
async def village_chosen(
    query: CallbackQuery, callback_data: ChooseVillage, state: FSMContext, person: Person
) -> None:
    data = await state.get_data()
    village = await Village.get_or_none(
        id=callback_data.village_id, township_id=data.get("township_id"), active=True
    )
    if village is None or not isinstance(query.message, Message):
        await _stale(query)
        return
    await query.answer()
    await query.message.edit_text(
        _("Village: {name}").format(name=village.display_name(person.language))
    )
    await ask_grid(query.message, state, person, village)


async def ask_grid(message: Message, state: FSMContext, person: Person, village: Village) -> None:
    await state.update_data(village_id=village.id)
    await state.set_state(Registration.grid)
    await message.answer(
        _("Which grid is your household in? If you are not sure, tap “I don't know”."),
        reply_markup=keyboards.grids(await grids_of(village.id), person.language),
    )


@routes.callback_query(Registration.grid, ChooseGrid.filter())
async def grid_chosen(
    query: CallbackQuery, callback_data: ChooseGrid, state: FSMContext, person: Person
) -> None:
    data = await state.get_data()
    grid: Grid | None = None
    if callback_data.grid_id:
        grid = await Grid.get_or_none(
            id=callback_data.grid_id, village_id=data.get("village_id"), active=True
        )
        if grid is None:
            await _stale(query)
            return
    if not isinstance(query.message, Message):
        await _stale(query)
        return
    await query.answer()
    label = grid.display_name(person.language) if grid else _("I don't know")
    await query.message.edit_text(_("Grid: {name}").format(name=label))
    await state.update_data(grid_id=grid.id if grid else None)
    if data.get("editing") and person.villager is not None:
        await _finish_village_edit(query.message, state, person, data["village_id"], grid)
        return
    await ask_name(query.message, state)


@routes.message(Registration.name, F.text)
async def name_given(message: Message, state: FSMContext, person: Person) -> None:
    name = clean_name(message.text)
    if name is None:
        await message.answer(
            _("Please send your name as plain text, at most {limit} characters.").format(
                limit=NAME_MAX
            )
        )
        return
    await state.update_data(name=name)
    data = await state.get_data()
    if data.get("editing") and person.villager is not None:
        person.villager.name = name
        await person.villager.save(update_fields=["name", "updated_at"])
        await _show_saved(message, state, person)
        return
    await ask_phone(message, state)


@routes.message(Registration.phone, F.contact)
async def phone_shared(message: Message, state: FSMContext, person: Person, bot: Bot) -> None:
    contact = message.contact
    if contact is None or contact.user_id != message.from_user.id:  # type: ignore[union-attr]
        await message.answer(
            _("Please share your own number with the button below, or tap Skip."),
            reply_markup=keyboards.share_phone(),
        )
        return
    phone = clean_phone(contact.phone_number)
    await _phone_done(message, state, person, bot, phone)


@routes.message(Registration.phone, Pressed(keyboards.SKIP))
async def phone_skipped(message: Message, state: FSMContext, person: Person, bot: Bot) -> None:
    await _phone_done(message, state, person, bot, None)


async def _phone_done(
    message: Message, state: FSMContext, person: Person, bot: Bot, phone: str | None
) -> None:
    data = await state.get_data()
    if data.get("editing") and person.villager is not None:
        person.villager.phone = phone
        await person.villager.save(update_fields=["phone", "updated_at"])
        await _show_saved(message, state, person)
        return
    village = await Village.get_or_none(id=data.get("village_id"), active=True)
    if village is None or "name" not in data:
        # The directory changed under a half-finished registration: start again, honestly.
        await message.answer(_("Your village is no longer in the list. Let us start again."))
        await begin(message, state, person)
        return
    grid = await Grid.get_or_none(id=data["grid_id"]) if data.get("grid_id") else None
    person.villager = await save_villager(
        person.account, village=village, grid=grid, name=data["name"], phone=phone
    )
    await state.clear()
    await message.answer(
        _("Thank you, {name}! You are registered in {village}.").format(
            name=data["name"], village=village.display_name(person.language)
        ),
        reply_markup=keyboards.villager_menu(),
    )
    await set_menu_for(bot, person)


async def _finish_village_edit(
    message: Message, state: FSMContext, person: Person, village_id: int, grid: Grid | None
) -> None:
    villager: Villager = person.villager  # type: ignore[assignment]
    village = await Village.get(id=village_id)
    villager.village = village
    villager.township_id = village.township_id  # type: ignore[attr-defined]
    villager.grid = grid
    await villager.save(update_fields=["village_id", "township_id", "grid_id", "updated_at"])
    await _show_saved(message, state, person)


async def _show_saved(message: Message, state: FSMContext, person: Person) -> None:
    await state.clear()
    await message.answer(_("Saved."), reply_markup=keyboards.villager_menu())


# Anything else while a step waits for its answer: say again what the step needs.
@routes.message(StateFilter(Registration.township, Registration.village, Registration.grid))
async def expected_a_button(message: Message) -> None:
    await message.answer(_("Please choose one of the buttons above."))


@routes.message(Registration.name)
async def expected_a_name(message: Message) -> None:
    await message.answer(
        _("Please send your name as plain text, at most {limit} characters.").format(
            limit=NAME_MAX
        )
    )


@routes.message(Registration.phone)
async def expected_a_contact(message: Message) -> None:
    await message.answer(
        _("Please use the button below to share your number, or tap Skip."),
        reply_markup=keyboards.share_phone(),
    )
