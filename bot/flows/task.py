"""Township tasks (中心工作, 派单) in the chat: a dispatcher or a leader gives one (`/newtask`)
and follows how each unit stands (`/tasks`).

Giving a task is a conversation kept in the FSM data (`task`, plain JSON): title, description,
photos, target units, deadline, then a summary and Create. The draft gets a key when it starts,
so a Create delivered twice makes one task (`bot.tasks.create`). `bot.tasks` and `bot.scope`
decide who may give a task, to which units, and who may follow it; this module only asks and
shows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import F
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot import keyboards, scope, tasks
from bot.callbacks import OpenTask, TaskStep
from bot.handlers import lists
from bot.i18n import N_, _
from bot.models import Case, CaseStatus, Official, Task, Township, Unit, UnitKind, Village
from bot.notices import local_time
from bot.people import Person
from bot.public_notices import clean
from bot.routers import Routes
from scheduler.service import Clock

routes = Routes("task", private_only=True)

#: The deadline buttons, in days from today; a day's deadline is this hour, local time.
DEADLINE_DAYS = (1, 3, 7, 14)
DEADLINE_HOUR = time(18, 0)
#: Unit buttons on one page of the targets step.
UNITS_PER_PAGE = 20


class Giving(StatesGroup):
    title = State()
    description = State()
    photos = State()
    targets = State()
    deadline = State()
    summary = State()


def _step(action: str, value: int = 0) -> TaskStep:
    return TaskStep(action=action, value=value)


def _cancel_button() -> InlineKeyboardButton:
    return keyboards.button(_("✖️ Cancel"), _step("cancel"))


def _controls(*first: InlineKeyboardButton) -> InlineKeyboardMarkup:
    return keyboards.inline([*first, _cancel_button()], *([1] * len(first)), 1)


async def _draft(state: FSMContext) -> dict[str, Any]:
    return dict((await state.get_data()).get("task") or {})


async def _save(state: FSMContext, draft: dict[str, Any]) -> None:
    await state.update_data(task=draft)


async def _stale(query: CallbackQuery) -> None:
    await query.answer(_("This button is no longer active."), show_alert=True)


def _official(person: Person, draft: dict[str, Any]) -> Official | None:
    """The official the draft was started as, if the person still is them and still may."""
    return next(
        (o for o in person.officials
         if o.id == draft.get("official_id") and scope.may_create_task(o)),
        None,
    )


def _refused(reason: tasks.TaskRefusal) -> str:
    return _(tasks.REFUSALS[reason])


# ---- title, description, photos ------------------------------------------------------------


@routes.message(Command("newtask"))
async def begin(message: Message, state: FSMContext, person: Person) -> None:
    official = scope.task_giver(person.officials)
    if official is None:
        await message.answer(_refused(tasks.TaskRefusal.NOT_ALLOWED))
        return
    township = await Township.get(id=official.township_id)  # type: ignore[attr-defined]
    await state.clear()
    await state.set_state(Giving.title)
    await _save(state, {
        "key": uuid.uuid4().hex, "official_id": official.id, "timezone": township.timezone,
        "photos": [], "targets": [], "more": False, "page": 0,
    })
    await message.answer(
        _("New township task. Send its title (at most {count} characters).").format(
            count=tasks.TITLE_MAX
        ),
        reply_markup=_controls(),
    )


@routes.message(StateFilter(Giving), F.text == "/cancel")
async def cancel_command(message: Message, state: FSMContext) -> None:
    await state.clear()
    await message.answer(_("Cancelled. No task was given."))


@routes.message(Giving.title, F.text, ~F.text.startswith("/"))
async def title_written(message: Message, state: FSMContext) -> None:
    title = clean(message.text)
    if not title:
        await message.answer(_refused(tasks.TaskRefusal.NEEDS_TITLE))
        return
    if len(title) > tasks.TITLE_MAX:
        await message.answer(_refused(tasks.TaskRefusal.TOO_LONG))
        return
    draft = await _draft(state)
    draft["title"] = title
    await _save(state, draft)
    await state.set_state(Giving.description)
    await message.answer(
        _("What is to be done? Send the description, or tap Skip."),
        reply_markup=_controls(keyboards.button(_(keyboards.SKIP), _step("skip"))),
    )


@routes.message(Giving.description, F.text, ~F.text.startswith("/"))
async def description_written(message: Message, state: FSMContext) -> None:
    description = clean(message.text)
    if len(description) > tasks.DESCRIPTION_MAX:
        await message.answer(_refused(tasks.TaskRefusal.TOO_LONG))
        return
    draft = await _draft(state)
    draft["description"] = description
    await _save(state, draft)
    await _ask_photos(message, state)


@routes.message(StateFilter(Giving.title, Giving.description), ~F.text.startswith("/"))
async def expected_text(message: Message) -> None:
    await message.answer(_("Please send it as text."))


@routes.callback_query(Giving.description, TaskStep.filter(F.action == "skip"))
async def description_skipped(query: CallbackQuery, state: FSMContext) -> None:
    if not isinstance(query.message, Message):
        await _stale(query)
        return
    await query.answer()
    draft = await _draft(state)
    draft["description"] = ""
    await _save(state, draft)
    await _ask_photos(query.message, state)


def _photos_keyboard(count: int) -> InlineKeyboardMarkup:
    if count:
        return _controls(keyboards.button(_("✅ Done"), _step("done")))
    return _controls(keyboards.button(_(keyboards.SKIP), _step("done")))


async def _ask_photos(message: Message, state: FSMContext) -> None:
    await state.set_state(Giving.photos)
    await message.answer(
        _("Send up to {count} photos for the units, then tap Done; or tap Skip.").format(
            count=tasks.PHOTOS_MAX
        ),
        reply_markup=_photos_keyboard(0),
    )


@routes.message(Giving.photos, F.photo)
async def photo_added(message: Message, state: FSMContext) -> None:
    draft = await _draft(state)
    photos = list(draft.get("photos") or [])
    if len(photos) >= tasks.PHOTOS_MAX:
        await message.answer(
            _refused(tasks.TaskRefusal.TOO_MANY_PHOTOS), reply_markup=_photos_keyboard(1)
        )
        return
    photos.append(message.photo[-1].file_id)  # type: ignore[index]
    draft["photos"] = photos
    await _save(state, draft)
    await message.answer(
        _("Photo added ({count} of {most}). Send more, or tap Done.").format(
            count=len(photos), most=tasks.PHOTOS_MAX
        ),
        reply_markup=_photos_keyboard(len(photos)),
    )


@routes.message(Giving.photos, ~F.text.startswith("/"))
async def expected_photo(message: Message) -> None:
    await message.answer(_("Please send photos, or tap Done."), reply_markup=_photos_keyboard(1))


@routes.callback_query(Giving.photos, TaskStep.filter(F.action == "done"))
async def photos_done(
    query: CallbackQuery, state: FSMContext, person: Person
) -> None:
    if not isinstance(query.message, Message):
        await _stale(query)
        return
    await query.answer()
    await state.set_state(Giving.targets)
    await _show_targets(query.message, state, person, fresh=True)


# ---- targets --------------------------------------------------------------------------------


async def _offered(official: Official, draft: dict[str, Any]) -> tuple[list[Unit], list[Unit]]:
    """The units on the buttons (village committees first, the others when asked for) and
    the village committees among them."""
    every = await scope.task_targets(official)
    committees = [u for u in every if u.kind == UnitKind.VILLAGE]
    others = [u for u in every if u.kind != UnitKind.VILLAGE]
    return committees + (others if draft.get("more") else []), committees


def _targets_keyboard(
    shown: list[Unit], committees: list[Unit], draft: dict[str, Any], language: str
) -> InlineKeyboardMarkup:
    chosen = set(draft.get("targets") or [])
    pages = max(1, -(-len(shown) // UNITS_PER_PAGE))
    page = min(int(draft.get("page") or 0), pages - 1)
    on_page = shown[page * UNITS_PER_PAGE:(page + 1) * UNITS_PER_PAGE]
    units = [
        keyboards.button(
            ("✅ " if unit.id in chosen else "") + unit.display_name(language),
            _step("unit", unit.id),
        )
        for unit in on_page
    ]
    every_village = bool(committees) and all(u.id in chosen for u in committees)
    extra = [
        keyboards.button(
            ("✅ " if every_village else "") + _("All villages"), _step("all")
        ),
        keyboards.button(
            _("➖ Fewer units") if draft.get("more") else _("➕ More units"), _step("more")
        ),
    ]
    paging = []
    if page > 0:
        paging.append(keyboards.button(_("⬅️ Previous"), _step("page", page - 1)))
    if page < pages - 1:
        paging.append(keyboards.button(_("Next ➡️"), _step("page", page + 1)))
    last = [keyboards.button(_("✅ Done"), _step("done")), _cancel_button()]
    return keyboards.inline(
        [*units, *extra, *paging, *last],
        *([2] * (len(units) // 2)), *([1] * (len(units) % 2)), 2,
        *([len(paging)] if paging else []), 2,
    )


async def _show_targets(
    message: Message, state: FSMContext, person: Person, *, fresh: bool
) -> None:
    draft = await _draft(state)
    official = _official(person, draft)
    if official is None:
        await state.clear()
        await message.answer(_refused(tasks.TaskRefusal.NOT_ALLOWED))
        return
    shown, committees = await _offered(official, draft)
    markup = _targets_keyboard(shown, committees, draft, person.language)
    if fresh:
        await message.answer(
            _("Which units get the task? Tap them (✅ is chosen), then Done. Each gets a case "
              "of its own."),
            reply_markup=markup,
        )
    else:
        await message.edit_reply_markup(reply_markup=markup)


@routes.callback_query(
    Giving.targets, TaskStep.filter(F.action.in_({"unit", "all", "more", "page"}))
)
async def target_toggled(
    query: CallbackQuery, callback_data: TaskStep, state: FSMContext, person: Person
) -> None:
    draft = await _draft(state)
    official = _official(person, draft)
    if official is None or not isinstance(query.message, Message):
        await _stale(query)
        return
    every = await scope.task_targets(official)
    committees = [unit for unit in every if unit.kind == UnitKind.VILLAGE]
    chosen = list(draft.get("targets") or [])
    action, value = callback_data.action, callback_data.value
    if action == "unit":
        if value not in {unit.id for unit in every}:
            await _stale(query)
            return
        chosen = [u for u in chosen if u != value] if value in chosen else [*chosen, value]
    elif action == "all":
        ids = [unit.id for unit in committees]
        if ids and all(i in chosen for i in ids):
            chosen = [u for u in chosen if u not in ids]
        else:
            chosen = [*chosen, *(i for i in ids if i not in chosen)]
    elif action == "more":
        draft["more"] = not draft.get("more")
        draft["page"] = 0
    else:
        draft["page"] = value
    await query.answer()
    draft["targets"] = chosen
    await _save(state, draft)
    await _show_targets(query.message, state, person, fresh=False)


@routes.callback_query(Giving.targets, TaskStep.filter(F.action == "done"))
async def targets_done(query: CallbackQuery, state: FSMContext) -> None:
    draft = await _draft(state)
    if not isinstance(query.message, Message):
        await _stale(query)
        return
    if not draft.get("targets"):
        await query.answer(_refused(tasks.TaskRefusal.NO_TARGETS), show_alert=True)
        return
    await query.answer()
    await query.message.edit_reply_markup(reply_markup=None)
    await _ask_deadline(query.message, state)


# ---- deadline -------------------------------------------------------------------------------


def deadline_in_days(days: int, at: datetime, timezone: str) -> datetime:
    """`days` days after `at`'s local date, at the deadline hour, local time."""
    zone = ZoneInfo(timezone)
    day = at.astimezone(zone).date() + timedelta(days=days)
    return datetime.combine(day, DEADLINE_HOUR, tzinfo=zone).astimezone(UTC)


def parse_deadline(text: str, timezone: str) -> datetime | None:
    """`YYYY-MM-DD HH:MM` or `YYYY-MM-DD` (at the deadline hour) in the township's time."""
    written = " ".join(text.split())
    for pattern, date_only in (("%Y-%m-%d %H:%M", False), ("%Y-%m-%d", True)):
        try:
            parsed = datetime.strptime(written, pattern)
        except ValueError:
            continue
        if date_only:
            parsed = datetime.combine(parsed.date(), DEADLINE_HOUR)
        return parsed.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC)
    return None


async def _ask_deadline(message: Message, state: FSMContext) -> None:
    await state.set_state(Giving.deadline)
    days = [
        keyboards.button(_("{count} days").format(count=n) if n > 1 else _("1 day"),
                         _step("days", n))
        for n in DEADLINE_DAYS
    ]
    await message.answer(
        _("By when? Tap a deadline, or send a date as YYYY-MM-DD (that day at 18:00) or "
          "YYYY-MM-DD HH:MM."),
        reply_markup=keyboards.inline([*days, _cancel_button()], len(days), 1),
    )


@routes.callback_query(Giving.deadline, TaskStep.filter(F.action == "days"))
async def deadline_tapped(
    query: CallbackQuery, callback_data: TaskStep, state: FSMContext, person: Person,
    clock: Clock,
) -> None:
    if callback_data.value not in DEADLINE_DAYS or not isinstance(query.message, Message):
        await _stale(query)
        return
    await query.answer()
    draft = await _draft(state)
    deadline = deadline_in_days(callback_data.value, clock(), draft["timezone"])
    await query.message.edit_reply_markup(reply_markup=None)
    await _deadline_set(query.message, state, person, deadline)


@routes.message(Giving.deadline, F.text, ~F.text.startswith("/"))
async def deadline_written(
    message: Message, state: FSMContext, person: Person, clock: Clock
) -> None:
    draft = await _draft(state)
    deadline = parse_deadline(message.text or "", draft["timezone"])
    if deadline is None:
        await message.answer(
            _("I could not read that date. Please send it as YYYY-MM-DD or YYYY-MM-DD HH:MM, "
              "for example {example}.").format(
                example=local_time(clock() + timedelta(days=3), draft["timezone"])[:10]
            )
        )
        return
    if deadline <= clock():
        await message.answer(
            _refused(tasks.TaskRefusal.PAST_DEADLINE) + " " + _("Please send another date.")
        )
        return
    await _deadline_set(message, state, person, deadline)


@routes.message(Giving.deadline, ~F.text.startswith("/"))
async def deadline_expected(message: Message) -> None:
    await message.answer(_("Please tap a deadline or send a date as text."))


async def _deadline_set(
    message: Message, state: FSMContext, person: Person, deadline: datetime
) -> None:
    draft = await _draft(state)
    draft["deadline"] = deadline.isoformat()
    await _save(state, draft)
    await _summary(message, state, person)


# ---- summary and Create -------------------------------------------------------------------


async def _summary(message: Message, state: FSMContext, person: Person) -> None:
    draft = await _draft(state)
    await state.set_state(Giving.summary)
    units = {
        unit.id: unit for unit in await Unit.filter(id__in=list(draft.get("targets") or []))
    }
    names = [units[i].display_name(person.language) for i in draft["targets"] if i in units]
    deadline = datetime.fromisoformat(draft["deadline"])
    lines = [
        _("Please check the task:"),
        "",
        _("Title: {title}").format(title=draft["title"]),
        _("Description: {text}").format(text=draft.get("description") or _("(none)")),
        _("Photos: {count}").format(count=len(draft.get("photos") or [])),
        _("Units: {names}").format(names=_(", ").join(names)),
        _("Deadline: {when}").format(when=local_time(deadline, draft["timezone"])),
        "",
        _("{count} cases will be made, one per unit.").format(count=len(names)),
    ]
    await message.answer(
        "\n".join(lines),
        reply_markup=keyboards.inline([
            keyboards.button(_("✅ Create"), _step("create")),
            keyboards.button(_("⬅️ Back"), _step("back")),
            _cancel_button(),
        ], 1, 2),
    )


@routes.callback_query(Giving.summary, TaskStep.filter(F.action == "back"))
async def summary_back(query: CallbackQuery, state: FSMContext) -> None:
    if not isinstance(query.message, Message):
        await _stale(query)
        return
    await query.answer()
    await query.message.edit_reply_markup(reply_markup=None)
    await _ask_deadline(query.message, state)


@routes.callback_query(Giving.summary, TaskStep.filter(F.action == "create"))
async def create(
    query: CallbackQuery, state: FSMContext, person: Person, clock: Clock
) -> None:
    message = query.message
    if not isinstance(message, Message):
        await _stale(query)
        return
    await query.answer()
    draft = await _draft(state)
    official = _official(person, draft)
    if official is None:
        await state.clear()
        await message.answer(_refused(tasks.TaskRefusal.NOT_ALLOWED))
        return
    try:
        task = await tasks.create(
            official, title=draft["title"], description=draft.get("description") or "",
            photos=list(draft.get("photos") or []), targets=list(draft["targets"]),
            deadline=datetime.fromisoformat(draft["deadline"]), key=draft["key"], at=clock(),
        )
    except tasks.TaskRefused as refused:
        await message.answer(tasks.refusal_text(refused, person.language))
        if refused.reason == tasks.TaskRefusal.PAST_DEADLINE:
            await message.edit_reply_markup(reply_markup=None)
            await _ask_deadline(message, state)
        elif refused.reason == tasks.TaskRefusal.BAD_TARGET:
            await message.edit_reply_markup(reply_markup=None)
            draft["targets"] = []
            await _save(state, draft)
            await state.set_state(Giving.targets)
            await _show_targets(message, state, person, fresh=True)
        else:
            await state.clear()
        return
    await state.clear()
    await message.edit_reply_markup(reply_markup=None)
    count = await Case.filter(task_id=task.id).count()
    await message.answer(
        _("Task given: “{title}”. {count} cases were made, one per unit; each unit has its "
          "card. Follow them with /tasks.").format(title=task.title, count=count)
    )


@routes.callback_query(StateFilter(Giving), TaskStep.filter(F.action == "cancel"))
async def cancelled(query: CallbackQuery, state: FSMContext) -> None:
    await query.answer()
    await state.clear()
    if isinstance(query.message, Message):
        await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(_("Cancelled. No task was given."))


@routes.callback_query(TaskStep.filter())
async def stale_step(query: CallbackQuery) -> None:
    await _stale(query)


# ---- following: /tasks ----------------------------------------------------------------------


def _follower(person: Person) -> Official | None:
    """The person's official whose township tasks /tasks shows: who may give or follow them."""
    return next(
        (o for o in person.officials
         if scope.may_create_task(o) or scope.may_follow_task_everywhere(o)),
        None,
    )


async def waiting_review(official: Official) -> int:
    """Results (resolved task cases) waiting for `official`'s review (`scope.may_review`)."""
    query = Case.filter(
        task__township_id=official.township_id, status=CaseStatus.RESOLVED,  # type: ignore[attr-defined]
    )
    if not scope.may_follow_task_everywhere(official):
        query = query.filter(task__creator_id=official.id)
    return await query.count()


COUNTS = N_("{total} units · accepted {accepted} · to review {to_review} · done {done} · "
            "overdue {overdue} · sent back {sent_back}")


async def _task_list(message: Message, person: Person, official: Official, at: datetime) -> None:
    followed = await tasks.followed_by(official)
    if not followed:
        await message.answer(_("No township tasks yet. /newtask gives one."))
        return
    timezone = (await Township.get(id=official.township_id)).timezone  # type: ignore[attr-defined]
    lines = [_("Township tasks, newest first:")]
    for index, task in enumerate(followed, start=1):
        shown = await tasks.progress(task, at=at)
        lines.append(
            _("{index}. {title} · deadline {when}").format(
                index=index, title=task.title, when=local_time(task.deadline, timezone)
            )
        )
        lines.append("    " + _(COUNTS).format(
            total=shown.total, accepted=shown.accepted, to_review=shown.to_review,
            done=shown.done, overdue=shown.overdue, sent_back=shown.sent_back,
        ))
    waiting = await waiting_review(official)
    lines += ["", _("Results waiting for your review: {count}. The review buttons came with "
                    "each result.").format(count=waiting)]
    await message.answer(
        "\n".join(lines),
        reply_markup=keyboards.inline(
            [keyboards.button(str(i), OpenTask(task_id=t.id)) for i, t in enumerate(followed, 1)],
            5,
        ),
    )


@routes.message(Command("tasks"))
async def tasks_command(message: Message, person: Person, clock: Clock) -> None:
    """A giver's township tasks first, then (for every official) their own open cases."""
    official = _follower(person)
    if official is not None:
        await _task_list(message, person, official, clock())
    await lists.open_cases(message, person)


def progress_text(
    shown: tasks.Progress, language: str, timezone: str, villages: dict[int, Village]
) -> str:
    """One line per target; a case escalated out of its village names the village first, so
    the reader still sees which village has not done its part."""
    task = shown.task
    lines = [
        _("Township task: {title}").format(title=task.title),
        _("Deadline: {when}").format(when=local_time(task.deadline, timezone)),
        _(COUNTS).format(
            total=shown.total, accepted=shown.accepted, to_review=shown.to_review,
            done=shown.done, overdue=shown.overdue, sent_back=shown.sent_back,
        ),
        "",
    ]
    for target in shown.targets:
        village = villages.get(target.case.village_id)  # type: ignore[attr-defined]
        moved = village is not None and target.unit.village_id != village.id  # type: ignore[attr-defined]
        parts = [
            *([village.display_name(language)] if moved and village else []),
            target.unit.display_name(language), target.case.number,
            _(lists.STATUS_NAMES[CaseStatus(target.case.status)]),
        ]
        if target.overdue:
            parts.append(_("overdue"))
        if target.case.reopen_count:
            parts.append(_("sent back {count}×").format(count=target.case.reopen_count))
        lines.append(" · ".join(parts))
    return "\n".join(lines)


@routes.callback_query(OpenTask.filter())
async def open_task(
    query: CallbackQuery, callback_data: OpenTask, person: Person, clock: Clock
) -> None:
    task = await Task.get_or_none(id=callback_data.task_id)
    if (
        task is None
        or not isinstance(query.message, Message)
        or not any(scope.may_follow_task(o, task) for o in person.officials)
    ):
        await _stale(query)
        return
    await query.answer()
    township = await Township.get(id=task.township_id)  # type: ignore[attr-defined]
    shown = await tasks.progress(task, at=clock())
    ids = {target.case.village_id for target in shown.targets}  # type: ignore[attr-defined]
    villages = {v.id: v for v in await Village.filter(id__in=list(ids))}
    await query.message.answer(
        progress_text(shown, person.language, township.timezone, villages),
        reply_markup=keyboards.open_cases([target.case for target in shown.targets]),
    )
