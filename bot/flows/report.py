"""A villager reports a problem: category, description, photos, location, summary, submit.

The draft lives in the conversation data (`report`), so it survives a restart of the bot. It
carries a random key, handed to `cases.report` as `report_key`: a Submit delivered twice, or
tapped twice, finds the case the first one made. After a submit the draft is gone and the
case number stays behind (`last_report`), so a late second tap is told the number again.
The confirmation itself is queued with the case (`bot.notices`), so it survives a restart.

An emergency category shows the township's emergency numbers, asks only for the description
and goes straight to the summary. Edit on the summary reopens one step and comes back.

Where the problem is: the location step says it is in the villager's own village, which costs
the common case nothing; "Another village" opens the township's villages, own village first,
then asks which grid of the chosen village, as registration does: a named grid routes the case
to that grid's unit, "I don't know" to that village's committee (村两委), which passes it on.
An emergency is reported where the villager lives; the description says where it is.

Me too (附议): Submit first offers the open cases of the same problem (`cases.same_problem`);
"me too" joins one and ends the draft, "mine is different" submits. Emergencies skip the offer.
"""

from __future__ import annotations

import bisect
import contextlib
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Bot, F
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot import cache, cases, keyboards, snapshot
from bot.callbacks import (
    REPORT_STEPS,
    ChooseCategory,
    ChoosePlace,
    ChoosePlaceGrid,
    MeToo,
    ReportStep,
)
from bot.filters import Pressed
from bot.i18n import N_, _
from bot.models import Case, Category, Grid, Village
from bot.people import Person, grids_of
from bot.posters import village_in
from bot.routers import Routes
from bot.routing import NoResponsibleUnit

#: The flow itself; included after the menus and lists, before registration and fallback.
routes = Routes("report", private_only=True)
#: /start while a draft waits; included before the start router, which would clear it.
drafts = Routes("report-drafts", private_only=True)

ADDRESS_MAX = 255  # Case.address

EMERGENCY_LABELS: dict[str, str] = {
    "fire": N_("🔥 Fire: {number}"),
    "ambulance": N_("🚑 Ambulance: {number}"),
    "police": N_("🚓 Police: {number}"),
}


class Report(StatesGroup):
    category = State()
    description = State()
    photos = State()
    location = State()
    summary = State()


Draft = dict[str, Any]


# ---- the draft ----------------------------------------------------------------------------


def _new_draft() -> Draft:
    return {
        "key": secrets.token_urlsafe(16),
        "heading_id": None,
        "category_id": None,
        "emergency": False,
        "description": None,
        "voice_file_id": None,
        "photos": [],
        "photo_messages": [],
        "album": None,
        "album_message": None,
        "album_refused": 0,
        "latitude": None,
        "longitude": None,
        "address": None,
        "anonymous": False,
        "village_id": None,  # where the problem is, when not the villager's own village
        "grid_id": None,  # and its grid there, when the villager named one
        "offered": [],  # the cases offered for "me too" (附议) before submitting
        "editing": False,
    }


async def _draft(state: FSMContext) -> Draft | None:
    return (await state.get_data()).get("report")


async def _save(state: FSMContext, draft: Draft) -> None:
    await state.update_data(report=draft)


async def _step(state: FSMContext) -> str | None:
    """The step the draft waits at, by its state's name (`Report:photos` → `photos`)."""
    raw = await state.get_state()
    if raw is None or raw not in Report:
        return None
    return raw.partition(":")[2]


async def _go(state: FSMContext, step: str) -> None:
    await state.set_state(getattr(Report, step))


async def _drop_draft(state: FSMContext, **keep: Any) -> None:
    """End the draft; other conversation data stays, plus `keep`."""
    data = await state.get_data()
    data.pop("report", None)
    data.update(keep)
    await state.set_data(data)
    await state.set_state(None)


# ---- small helpers ----------------------------------------------------------------------


async def _answer(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
    """Answer a button tap; a redelivered tap was answered already, which changes nothing."""
    with contextlib.suppress(TelegramBadRequest):
        await query.answer(text, show_alert=alert)


async def _stale(query: CallbackQuery) -> None:
    await _answer(query, _("This button is no longer active."), alert=True)


async def _strip_buttons(message: Message) -> None:
    """Old controls go away once used, so the chat shows one live set of buttons."""
    with contextlib.suppress(TelegramBadRequest):
        await message.edit_reply_markup(reply_markup=None)


def _is_leaf(category: Category) -> bool:
    return category.level is not None or category.unit_id is not None  # type: ignore[attr-defined]


async def _catalogue(township_id: int) -> tuple[list[Category], dict[int, list[Category]]]:
    """The headings a villager can open, and the leaves under each."""
    # The policy-question category is reached by asking (bot.flows.ask): the FAQ first.
    rows = sorted(
        (c for c in (await cache.township(township_id)).categories.values()
         if c.active and not c.policy and not c.task),
        key=lambda c: (c.position, c.id),
    )
    leaves: dict[int, list[Category]] = {}
    for row in rows:
        if row.parent_id is not None and _is_leaf(row):  # type: ignore[attr-defined]
            leaves.setdefault(row.parent_id, []).append(row)  # type: ignore[attr-defined]
    headings = [
        row
        for row in rows
        if row.parent_id is None and (row.id in leaves or _is_leaf(row))  # type: ignore[attr-defined]
    ]
    return headings, leaves


def _not_a_villager_text(person: Person) -> str:
    if person.officials:
        return _("Reporting a problem is for registered villagers.")
    return _("Please send /start to register first.")


# ---- the questions ------------------------------------------------------------------------


async def _ask_category(message: Message, draft: Draft, person: Person) -> None:
    township_id = person.villager.township_id  # type: ignore[union-attr]
    headings, leaves = await _catalogue(township_id)
    heading_id = draft.get("heading_id")
    if heading_id in leaves:
        heading = next((h for h in headings if h.id == heading_id), None)
        name = heading.display_name(person.language) if heading else ""
        text = _("{heading}: which one?").format(heading=name)
        markup = keyboards.report_categories(leaves[heading_id], person.language, back=True)
    else:
        text = _("What is the problem about? Choose a category.")
        markup = keyboards.report_categories(
            headings, person.language, back=bool(draft.get("editing"))
        )
    await message.answer(text, reply_markup=markup)


async def _ask_description(message: Message, draft: Draft) -> None:
    if draft.get("emergency"):
        text = _("Describe what is happening and where, in a text or a voice message.")
    else:
        text = _(
            "Describe the problem: what it is, where, and since when. Send a text, or a "
            "voice message if you would rather speak."
        )
    await message.answer(text, reply_markup=keyboards.report_step("description"))


def _photos_text(draft: Draft) -> str:
    text = _("Photos: {count} of {limit}. Send more, or tap Done.").format(
        count=len(draft["photos"]), limit=cases.PHOTOS_MAX
    )
    if draft.get("album_refused"):
        text += "\n" + _(
            "A report takes at most {limit} photos; {refused} of these were not kept."
        ).format(limit=cases.PHOTOS_MAX, refused=draft["album_refused"])
    return text


async def _ask_photos(message: Message, draft: Draft) -> None:
    if draft["photos"]:
        text = _photos_text(draft)
    else:
        text = _(
            "Photos help the officials see the problem. Send up to {limit} photos, then tap "
            "Done. No photos? Just tap Done."
        ).format(limit=cases.PHOTOS_MAX)
    await message.answer(text, reply_markup=keyboards.report_step("photos", done=True))


async def _place(draft: Draft, person: Person) -> Village:
    """The village the problem is in: the one chosen, else the villager's own. A chosen
    village the directory has since retired falls back to the villager's own here, and
    `_submit` refuses it, so that a case is never sent where the villager did not say."""
    villager = person.villager
    assert villager is not None
    chosen = draft.get("village_id")
    if chosen is not None:
        village = await _chosen_village(chosen, person)
        if village is not None:
            return village
    return (await _directory(person)).villages[villager.village_id]  # type: ignore[attr-defined]


async def _place_grid(draft: Draft, village: Village) -> Grid | None:
    """The grid named in another village; None for the villager's own village (their own grid
    is used), for "I don't know", and for a grid since retired (that village's committee
    then takes it, as for "I don't know": the village is still the one the villager said)."""
    if draft.get("village_id") is None or draft.get("grid_id") is None:
        return None
    grid = (await cache.township(village.township_id)).grids.get(draft["grid_id"])  # type: ignore[attr-defined]
    return grid if grid is not None and grid.village_id == village.id and grid.active else None  # type: ignore[attr-defined]


def _place_name(village: Village, grid: Grid | None, language: str) -> str:
    if grid is None:
        return village.display_name(language)
    return f"{village.display_name(language)} · {grid.display_name(language)}"


async def _chosen_village(village_id: int, person: Person) -> Village | None:
    village = (await _directory(person)).villages.get(village_id)
    return village if village is not None and village.active else None


async def _directory(person: Person) -> snapshot.Snapshot:
    """The villager's township's directory, as this process keeps it (`bot.cache`)."""
    return await cache.township(person.villager.township_id)  # type: ignore[union-attr]


async def _ask_location(message: Message, draft: Draft, person: Person) -> None:
    await message.answer(_("Where is the problem?"), reply_markup=keyboards.send_location())
    place = await _place(draft, person)
    village = _place_name(place, await _place_grid(draft, place), person.language)
    if draft.get("village_id") is None:
        place = _("In your village, {village}. Somewhere else? Tap “{button}”.").format(
            village=village, button=_(keyboards.ANOTHER_VILLAGE)
        )
    else:
        place = _("In {village}, not your own village. To change it, tap “{button}”.").format(
            village=village, button=_(keyboards.ANOTHER_VILLAGE)
        )
    text = _(
        "Tap “{button}” below to send a pin, or type the address or a landmark. "
        "No location needed? Tap Skip."
    ).format(button=_(keyboards.SEND_LOCATION))
    await message.answer(
        f"{place}\n{text}",
        reply_markup=keyboards.report_step("location", skip=True, place=True),
    )


async def _summary_text(draft: Draft, person: Person) -> str:
    categories = (await _directory(person)).categories
    category = categories.get(draft["category_id"])
    parent = categories.get(category.parent_id) if category is not None else None  # type: ignore[attr-defined]
    if category is None:
        name = "-"
    elif parent is not None:
        name = f"{parent.display_name(person.language)} › "
        name += category.display_name(person.language)
    else:
        name = category.display_name(person.language)
    lines = [
        _("Please check your report, then tap Submit."),
        "",
        _("Category: {name}").format(name=name),
    ]
    if draft.get("description"):
        lines.append(_("Description: {text}").format(text=draft["description"]))
    if draft.get("voice_file_id"):
        lines.append(_("Voice message: attached"))
    lines.append(_("Photos: {count}").format(count=len(draft["photos"])))
    village = await _place(draft, person)
    lines.append(_("Village: {name}").format(name=village.display_name(person.language)))
    if draft.get("village_id") is not None:  # another village: the grid named, or not known
        grid = await _place_grid(draft, village)
        label = grid.display_name(person.language) if grid else _("I don't know")
        lines.append(_("Grid: {name}").format(name=label))
    if draft.get("latitude") is not None:
        lines.append(
            _("Location: a pin at {latitude}, {longitude}").format(
                latitude=f"{draft['latitude']:.5f}", longitude=f"{draft['longitude']:.5f}"
            )
        )
    elif draft.get("address"):
        lines.append(_("Location: {address}").format(address=draft["address"]))
    else:
        lines.append(_("Location: not given"))
    lines.append("")
    if draft.get("anonymous"):
        lines.append(_("Anonymous: yes. Officials will not see your name or phone."))
    else:
        lines.append(_("Anonymous: no. Officials will see your name and phone."))
    return "\n".join(lines)


async def _show_summary(
    message: Message, draft: Draft, person: Person, *, edit: bool = False
) -> None:
    text = await _summary_text(draft, person)
    markup = keyboards.report_summary(anonymous=bool(draft.get("anonymous")))
    if edit:
        with contextlib.suppress(TelegramBadRequest):
            await message.edit_text(text, reply_markup=markup)
            return
    await message.answer(text, reply_markup=markup)


async def _ask(
    step: str, message: Message, state: FSMContext, draft: Draft, person: Person
) -> None:
    """Move the draft to `step` and ask its question."""
    await _go(state, step)
    await _save(state, draft)
    if step == "category":
        await _ask_category(message, draft, person)
    elif step == "description":
        await _ask_description(message, draft)
    elif step == "photos":
        await _ask_photos(message, draft)
    elif step == "location":
        await _ask_location(message, draft, person)
    else:
        await _show_summary(message, draft, person)


def _next_step(step: str, draft: Draft) -> str:
    """Where a finished step leads: on, or back to the summary when editing."""
    if draft.get("editing") or draft.get("emergency"):
        return "summary"
    order = ("category", "description", "photos", "location", "summary")
    return order[order.index(step) + 1]


def _previous_step(step: str, draft: Draft) -> str:
    if draft.get("editing"):
        return "summary"
    if draft.get("emergency"):
        return {"summary": "description"}.get(step, "category")
    order = ("category", "description", "photos", "location", "summary")
    return order[max(order.index(step) - 1, 0)]


async def _step_done(
    step: str, message: Message, state: FSMContext, draft: Draft, person: Person
) -> None:
    following = _next_step(step, draft)
    if following == "summary":
        draft["editing"] = False
    await _ask(following, message, state, draft, person)


# ---- starting, resuming -----------------------------------------------------------------


async def begin(message: Message, state: FSMContext, person: Person) -> None:
    """A new draft at the first step."""
    data = await state.get_data()
    keep = {"last_report": data["last_report"]} if "last_report" in data else {}
    draft = _new_draft()
    await state.set_data({**keep, "report": draft})
    await state.set_state(Report.category)
    await _ask_category(message, draft, person)


async def _offer_resume(message: Message) -> None:
    await message.answer(
        _("You have a report you have not submitted yet. Continue it, or start over?"),
        reply_markup=keyboards.report_resume(),
    )


def _plain_start(message: Message) -> bool:
    """/start without a link, or with a village poster's (the villager is registered): an
    invitation link goes on to the start router as ever."""
    words = (message.text or "").split()
    return len(words) == 1 or (len(words) == 2 and village_in(words[1]) is not None)


@drafts.message(CommandStart(), StateFilter(Report), _plain_start)
async def start_with_draft(message: Message, state: FSMContext, person: Person) -> None:
    """/start keeps a waiting draft: the menu comes back, and the draft is offered."""
    if person.villager is None or await _draft(state) is None:
        await _drop_draft(state)
        await message.answer(_not_a_villager_text(person))
        return
    await message.answer(
        _("Welcome back, {name}! Choose what you need from the menu below.").format(
            name=person.villager.name
        ),
        reply_markup=keyboards.villager_menu(),
    )
    await _offer_resume(message)


@routes.message(Command("report"))
@routes.message(Pressed(keyboards.REPORT))
async def report_command(message: Message, state: FSMContext, person: Person) -> None:
    if person.villager is None:
        await message.answer(_not_a_villager_text(person))
        return
    if await _step(state) is not None and await _draft(state) is not None:
        await _offer_resume(message)
        return
    await begin(message, state, person)


# ---- category -----------------------------------------------------------------------------


@routes.callback_query(Report.category, ChooseCategory.filter())
async def category_chosen(
    query: CallbackQuery, callback_data: ChooseCategory, state: FSMContext, person: Person
) -> None:
    draft = await _draft(state)
    if draft is None or person.villager is None or not isinstance(query.message, Message):
        await _stale(query)
        return
    headings, leaves = await _catalogue(person.villager.township_id)  # type: ignore[attr-defined]
    chosen_id = callback_data.category_id
    if chosen_id in leaves and draft.get("heading_id") is None:
        await _answer(query)
        heading = next(h for h in headings if h.id == chosen_id)
        with contextlib.suppress(TelegramBadRequest):
            await query.message.edit_text(
                _("Category: {name}").format(name=heading.display_name(person.language))
            )
        draft["heading_id"] = chosen_id
        await _save(state, draft)
        await _ask_category(query.message, draft, person)
        return
    offered = leaves.get(draft.get("heading_id"), []) or [h for h in headings if _is_leaf(h)]
    category = next((c for c in offered if c.id == chosen_id), None)
    if category is None:
        await _stale(query)
        return
    await _answer(query)
    with contextlib.suppress(TelegramBadRequest):
        await query.message.edit_text(
            _("Category: {name}").format(name=category.display_name(person.language))
        )
    draft["category_id"] = category.id
    draft["emergency"] = category.emergency
    if category.emergency:
        await _show_emergency_numbers(query.message, person)
        if not draft.get("description") and not draft.get("voice_file_id"):
            draft["editing"] = False
            await _ask("description", query.message, state, draft, person)
            return
    await _step_done("category", query.message, state, draft, person)


async def _show_emergency_numbers(message: Message, person: Person) -> None:
    township = (await _directory(person)).townships[person.villager.township_id]  # type: ignore[union-attr]
    numbers = township.emergency_numbers or {}
    lines = [_("🚨 If anyone is in danger, call now:")]
    for key, number in numbers.items():
        label = EMERGENCY_LABELS.get(key)
        lines.append(_(label).format(number=number) if label else f"{key}: {number}")
    lines.append("")
    lines.append(_("Then tell me here what is happening: it goes to the township at once."))
    await message.answer("\n".join(lines))


@routes.message(Report.category, ~F.text.startswith("/"))
async def expected_a_category(message: Message) -> None:
    await message.answer(_("Please choose one of the buttons above."))


# ---- description --------------------------------------------------------------------------


@routes.message(Report.description, F.text, ~F.text.startswith("/"))
async def description_written(message: Message, state: FSMContext, person: Person) -> None:
    draft = await _draft(state)
    if draft is None:
        return
    text = (message.text or "").strip()
    if len(text) > cases.DESCRIPTION_MAX:
        await message.answer(
            _(
                "That description is too long: {length} characters. Please keep it within "
                "{limit} and send it again."
            ).format(length=len(text), limit=cases.DESCRIPTION_MAX),
            reply_markup=keyboards.report_step("description"),
        )
        return
    draft["description"] = text
    draft["voice_file_id"] = None
    await _step_done("description", message, state, draft, person)


@routes.message(Report.description, F.voice)
async def description_spoken(message: Message, state: FSMContext, person: Person) -> None:
    draft = await _draft(state)
    if draft is None or message.voice is None:
        return
    caption = (message.caption or "").strip()
    draft["voice_file_id"] = message.voice.file_id
    draft["description"] = caption[: cases.DESCRIPTION_MAX] or None
    await message.answer(_("Voice message received."))
    await _step_done("description", message, state, draft, person)


@routes.message(Report.description, ~F.text.startswith("/"))
async def expected_a_description(message: Message) -> None:
    await message.answer(
        _("Please describe the problem in a text or a voice message."),
        reply_markup=keyboards.report_step("description"),
    )


# ---- photos -------------------------------------------------------------------------------


@routes.message(Report.photos, F.photo)
async def photo_added(message: Message, state: FSMContext, bot: Bot) -> None:
    """A photo, or one photo of an album: an album gets one answer, edited as it fills."""
    draft = await _draft(state)
    if draft is None or not message.photo:
        return
    group = message.media_group_id
    if group is None or group != draft.get("album"):
        draft.update(album=group, album_message=None, album_refused=0)
    kept = len(draft["photos"]) < cases.PHOTOS_MAX
    if kept:
        # In the order they were sent: the photos of an album may be handled out of order.
        order = draft.setdefault("photo_messages", [0] * len(draft["photos"]))
        at = bisect.bisect(order, message.message_id)
        order.insert(at, message.message_id)
        draft["photos"].insert(at, message.photo[-1].file_id)
    if group is None:
        await _save(state, draft)
        if kept:
            text = _photos_text(draft)
        else:
            text = _(
                "You already have {limit} photos, the most a report takes. Tap Done to go on."
            ).format(limit=cases.PHOTOS_MAX)
        await message.answer(text, reply_markup=keyboards.report_step("photos", done=True))
        return
    if not kept:
        draft["album_refused"] += 1
    markup = keyboards.report_step("photos", done=True)
    if draft.get("album_message"):
        with contextlib.suppress(TelegramBadRequest):
            await bot.edit_message_text(
                _photos_text(draft),
                chat_id=message.chat.id,
                message_id=draft["album_message"],
                reply_markup=markup,
            )
    else:
        sent = await message.answer(_photos_text(draft), reply_markup=markup)
        draft["album_message"] = sent.message_id
    await _save(state, draft)


@routes.message(Report.photos, F.document)
async def photo_sent_as_file(message: Message) -> None:
    await message.answer(
        _(
            "That came as a file, not a photo. Please send it as a photo (choose Photo, "
            "not File), or tap Done."
        ),
        reply_markup=keyboards.report_step("photos", done=True),
    )


@routes.message(Report.photos, ~F.text.startswith("/"))
async def expected_a_photo(message: Message) -> None:
    await message.answer(
        _("Only photos can be added here. Send a photo, or tap Done."),
        reply_markup=keyboards.report_step("photos", done=True),
    )


# ---- location -----------------------------------------------------------------------------


@routes.message(StateFilter(Report.location, Report.summary), F.location)
async def location_shared(message: Message, state: FSMContext, person: Person) -> None:
    """A pin: the location step's answer, and welcome on the summary too (emergencies)."""
    draft = await _draft(state)
    if draft is None or message.location is None:
        return
    draft.update(
        latitude=message.location.latitude, longitude=message.location.longitude, address=None
    )
    await _step_done("location", message, state, draft, person)


@routes.message(Report.location, Pressed(keyboards.SKIP))
async def location_skipped(message: Message, state: FSMContext, person: Person) -> None:
    draft = await _draft(state)
    if draft is None:
        return
    draft.update(latitude=None, longitude=None, address=None)
    await _step_done("location", message, state, draft, person)


@routes.message(Report.location, F.text, ~F.text.startswith("/"))
async def address_typed(message: Message, state: FSMContext, person: Person) -> None:
    draft = await _draft(state)
    if draft is None:
        return
    address = " ".join((message.text or "").split())
    if len(address) > ADDRESS_MAX:
        await message.answer(
            _("Please keep the address within {limit} characters.").format(limit=ADDRESS_MAX),
            reply_markup=keyboards.report_step("location", skip=True),
        )
        return
    draft.update(latitude=None, longitude=None, address=address)
    await _step_done("location", message, state, draft, person)


async def _ask_place(message: Message, person: Person) -> None:
    villager = person.villager
    assert villager is not None
    home = await Village.get(id=villager.village_id)  # type: ignore[attr-defined]
    villages = await Village.filter(
        township_id=villager.township_id, active=True  # type: ignore[attr-defined]
    ).order_by("position", "id")
    await message.answer(
        _("Which village is the problem in?"),
        reply_markup=keyboards.report_places(villages, home, person.language),
    )


@routes.callback_query(Report.location, ChoosePlace.filter())
async def place_chosen(
    query: CallbackQuery, callback_data: ChoosePlace, state: FSMContext, person: Person
) -> None:
    """A village of the villager's township; their own means no other village."""
    draft = await _draft(state)
    villager = person.villager
    if draft is None or villager is None or not isinstance(query.message, Message):
        await _stale(query)
        return
    village = await _chosen_village(callback_data.village_id, person)
    if village is None:
        await _stale(query)
        return
    await _answer(query)
    with contextlib.suppress(TelegramBadRequest):
        await query.message.edit_text(
            _("Village: {name}").format(name=village.display_name(person.language))
        )
    own = village.id == villager.village_id  # type: ignore[attr-defined]
    draft["village_id"] = None if own else village.id
    draft["grid_id"] = None
    grids = [] if own else await grids_of(village.id)
    if not grids:  # the own village (the villager's own grid), or a village without grids
        await _ask("location", query.message, state, draft, person)
        return
    await _save(state, draft)
    await query.message.answer(
        _(
            "Which grid of {village} is the problem in? If you are not sure, tap “I don't "
            "know”: the village committee will pass it on."
        ).format(village=village.display_name(person.language)),
        reply_markup=keyboards.report_place_grids(village, grids, person.language),
    )


@routes.callback_query(Report.location, ChoosePlaceGrid.filter())
async def place_grid_chosen(
    query: CallbackQuery, callback_data: ChoosePlaceGrid, state: FSMContext, person: Person
) -> None:
    """A grid of the village just chosen, or "I don't know" (0): its committee takes it."""
    draft = await _draft(state)
    if (
        draft is None
        or person.villager is None
        or not isinstance(query.message, Message)
        or draft.get("village_id") != callback_data.village_id
    ):
        await _stale(query)
        return
    grid: Grid | None = None
    if callback_data.grid_id:
        grid = await Grid.get_or_none(
            id=callback_data.grid_id, village_id=callback_data.village_id, active=True
        )
        if grid is None:
            await _stale(query)
            return
    await _answer(query)
    label = grid.display_name(person.language) if grid else _("I don't know")
    with contextlib.suppress(TelegramBadRequest):
        await query.message.edit_text(_("Grid: {name}").format(name=label))
    draft["grid_id"] = grid.id if grid else None
    await _ask("location", query.message, state, draft, person)


@routes.message(Report.location, ~F.text.startswith("/"))
async def expected_a_location(message: Message) -> None:
    await message.answer(
        _("Please send a pin with the button below, type the address, or tap Skip."),
        reply_markup=keyboards.report_step("location", skip=True),
    )


@routes.message(Report.summary, ~F.text.startswith("/"))
async def expected_a_decision(message: Message) -> None:
    await message.answer(_("Please use the buttons under the summary: Submit, Edit or Cancel."))


# ---- the controls -------------------------------------------------------------------------


@routes.callback_query(StateFilter(Report), ReportStep.filter())
async def control(
    query: CallbackQuery, callback_data: ReportStep, state: FSMContext, person: Person, bot: Bot
) -> None:
    draft = await _draft(state)
    step = await _step(state)
    message = query.message
    if draft is None or step is None or not isinstance(message, Message):
        await _stale(query)
        return
    if person.villager is None:
        await _answer(query, _not_a_villager_text(person), alert=True)
        return
    action, target = callback_data.action, callback_data.step
    if action == "cancel":
        await _answer(query)
        await _strip_buttons(message)
        await _drop_draft(state)
        await message.answer(
            _("Report cancelled. Nothing was sent."), reply_markup=keyboards.villager_menu()
        )
        return
    if action == "resume":
        await _answer(query)
        await _strip_buttons(message)
        await _ask(step, message, state, draft, person)
        return
    if action == "restart":
        await _answer(query)
        await _strip_buttons(message)
        await begin(message, state, person)
        return
    if action == "edit" and step == "summary":
        await _edit(query, message, target, state, draft, person)
        return
    if target != step:
        await _stale(query)
        return
    if action == "back":
        await _answer(query)
        await _back(message, step, state, draft, person)
    elif action == "done" and step == "photos":
        await _answer(query)
        await _strip_buttons(message)
        draft.update(album=None, album_message=None, album_refused=0)
        await _step_done("photos", message, state, draft, person)
    elif action == "place" and step == "location":
        await _answer(query)
        await _strip_buttons(message)
        await _ask_place(message, person)
    elif action == "skip" and step == "location":
        await _answer(query)
        await _strip_buttons(message)
        draft.update(latitude=None, longitude=None, address=None)
        await _step_done("location", message, state, draft, person)
    elif action == "anonymous" and step == "summary":
        draft["anonymous"] = not draft.get("anonymous")
        await _save(state, draft)
        await _answer(
            query,
            _("Officials will not see your name or phone.")
            if draft["anonymous"]
            else _("Officials will see your name and phone."),
        )
        await _show_summary(message, draft, person, edit=True)
    elif action == "submit" and step == "summary":
        await _submit(query, message, state, draft, person)
    elif action == "different" and step == "summary" and draft.get("offered"):
        await _submit(query, message, state, draft, person, offer=False)
    else:
        await _stale(query)


async def _back(
    message: Message, step: str, state: FSMContext, draft: Draft, person: Person
) -> None:
    await _strip_buttons(message)
    if step == "category" and draft.get("heading_id") is not None:
        draft["heading_id"] = None  # from the categories of a heading back to the headings
        await _save(state, draft)
        await _ask_category(message, draft, person)
        return
    previous = _previous_step(step, draft)
    if previous == step:  # the first question has nothing before it: ask it again
        await _ask_category(message, draft, person)
        return
    if previous == "summary":
        draft["editing"] = False
    await _ask(previous, message, state, draft, person)


async def _edit(
    query: CallbackQuery,
    message: Message,
    target: str,
    state: FSMContext,
    draft: Draft,
    person: Person,
) -> None:
    """From the summary: show the steps, open one, or come back."""
    await _answer(query)
    if target == "":
        with contextlib.suppress(TelegramBadRequest):
            await message.edit_reply_markup(reply_markup=keyboards.report_edit())
        return
    if target == "summary" or target not in REPORT_STEPS:
        await _show_summary(message, draft, person, edit=True)
        return
    await _strip_buttons(message)
    draft["editing"] = True
    if target == "category":
        draft["heading_id"] = None
    if target == "photos":
        draft.update(
            photos=[], photo_messages=[], album=None, album_message=None, album_refused=0
        )
    await _ask(target, message, state, draft, person)


# ---- submit -------------------------------------------------------------------------------


async def _submit(
    query: CallbackQuery,
    message: Message,
    state: FSMContext,
    draft: Draft,
    person: Person,
    *,
    offer: bool = True,
) -> None:
    villager = person.villager
    assert villager is not None
    directory = await _directory(person)
    # The reporter is at hand: the case's notices need not read them again.
    with snapshot.reading(directory.with_reporter(villager, person.account)):
        await _submit_in(query, message, state, draft, person, directory, offer=offer)


async def _submit_in(
    query: CallbackQuery,
    message: Message,
    state: FSMContext,
    draft: Draft,
    person: Person,
    directory: snapshot.Snapshot,
    *,
    offer: bool,
) -> None:
    """`_submit` with the township's directory read once (routing, cards, the offer)."""
    villager = person.villager
    assert villager is not None
    category = directory.categories.get(draft.get("category_id"))  # type: ignore[arg-type]
    if category is not None and not category.active:
        category = None
    if category is None or not (draft.get("description") or draft.get("voice_file_id")):
        await _answer(query, _("This report is not complete yet."), alert=True)
        return
    if draft.get("village_id") is not None and not await _chosen_village(
        draft["village_id"], person
    ):
        await _answer(query, _("This report is not complete yet."), alert=True)
        return
    village = await _place(draft, person)
    grid = await _place_grid(draft, village)
    if offer and not category.emergency:  # an emergency goes out at once, never held up
        same = await cases.same_problem(
            villager, category, village,
            latitude=draft.get("latitude"), longitude=draft.get("longitude"),
        )
        if same:
            draft["offered"] = [case.id for case in same]
            await _save(state, draft)
            await _answer(query)
            await _strip_buttons(message)
            await _offer_same(message, same, person)
            return
    try:
        change = await cases.report(
            villager,
            category,
            description=draft.get("description") or "",
            voice_file_id=draft.get("voice_file_id"),
            photos=draft["photos"],
            latitude=draft.get("latitude"),
            longitude=draft.get("longitude"),
            address=draft.get("address"),
            anonymous=bool(draft.get("anonymous")),
            report_key=draft["key"],
            village=village,
            grid=grid,
        )
    except (NoResponsibleUnit, cases.CaseRefused):
        await _answer(
            query,
            _(
                "No unit handles this kind of problem in that village yet. Tap Edit to choose "
                "another category, or contact your village committee."
            ),
            alert=True,
        )
        return
    # The confirmation (number, unit, deadline, the menu) was queued with the case and the
    # courier is already on it: no direct reply, which a process stopped now would lose.
    case = change.case
    await _drop_draft(state, last_report={"key": draft["key"], "number": case.number})
    await _answer(query, _("Submitted: {number}").format(number=case.number))
    await _strip_buttons(message)


@routes.callback_query(ReportStep.filter(F.action == "submit"))
async def submitted_already(query: CallbackQuery, state: FSMContext) -> None:
    """Submit on a draft that is gone: a second tap, or the same tap delivered again."""
    last = (await state.get_data()).get("last_report")
    if last is None:
        await _stale(query)
        return
    await _answer(
        query,
        _("This report was already submitted: {number}").format(number=last["number"]),
        alert=True,
    )


# ---- me too (附议) ------------------------------------------------------------------------

SAME_DESCRIPTION_SHOWN = 60  # characters of another villager's description


async def _offer_same(message: Message, same: list[Case], person: Person) -> None:
    """Before a new case: the open cases that may be the same problem. Each shows its number,
    category, village, day and the start of its description, never who reported it (only
    cases neither confidential nor anonymous are offered: see `cases.same_problem`)."""
    township = (await _directory(person)).townships[person.villager.township_id]  # type: ignore[union-attr]
    lines = [_("Others have reported a problem like this. Is it one of these?"), ""]
    for case in same:
        await case.fetch_related("category", "village")
        day = case.created_at.astimezone(ZoneInfo(township.timezone)).date().isoformat()
        lines.append(
            _("{number} · {category} · {village} · {day}").format(
                number=case.number, category=case.category.display_name(person.language),
                village=case.village.display_name(person.language), day=day,
            )
        )
        described = case.description or _("(voice message)")
        if len(described) > SAME_DESCRIPTION_SHOWN:
            described = described[:SAME_DESCRIPTION_SHOWN] + "…"
        lines += [described, ""]
    lines.append(
        _("“{me_too}” joins that case: you get its updates, and no new case is made.").format(
            me_too=_(keyboards.ME_TOO)
        )
    )
    await message.answer("\n".join(lines), reply_markup=keyboards.same_problem(same))


@routes.callback_query(MeToo.filter())
async def me_too(
    query: CallbackQuery, callback_data: MeToo, state: FSMContext, person: Person
) -> None:
    """Join the case instead of reporting it again; the draft ends. A second tap (the draft
    is gone by then) joins nothing more and says so."""
    villager = person.villager
    if villager is None or not isinstance(query.message, Message):
        await _stale(query)
        return
    draft = await _draft(state)
    try:
        case = await cases.support(callback_data.case_id, villager)
    except cases.CaseRefused as refused:
        if refused.reason == cases.Refusal.CHANGED:
            await _answer(query, _("You have already joined this case."), alert=True)
            return
        await _answer(query, _("This case can no longer be joined."), alert=True)
        return
    await _answer(query)
    await _strip_buttons(query.message)
    if draft is not None and callback_data.case_id in draft.get("offered", []):
        await _drop_draft(state)
    await query.message.answer(
        _(
            "You joined case {number} (me too): no new case was made. You will get its updates "
            "and, once it is resolved, a request to rate it."
        ).format(number=case.number),
        reply_markup=keyboards.villager_menu(),
    )
