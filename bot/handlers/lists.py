"""Lists of cases and a case's timeline: /mycases, /pool, and an official's open cases (under
/tasks, which `bot.flows.task` answers: township tasks first for those who give them).

Each list shows at most `LIST_MAX` cases, the most urgent first, with a button per case that
opens its timeline. Villagers see only the public part of the history of their own cases;
officials see the whole history of cases they may act on (notices that did not arrive too),
with the buttons they may use on it now, as on the case's card. A voice report is sent with
its timeline, so it can be played.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from aiogram import F
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from tortoise.expressions import Q

from bot import keyboards, scope
from bot.callbacks import CaseAction
from bot.cases import history
from bot.filters import Pressed
from bot.i18n import N_, _
from bot.models import Case, CaseEvent, CaseStatus, Official, Role
from bot.notices import UNDELIVERED, card_keyboard, local_time, review_keyboard, work_keyboard
from bot.people import Person
from bot.routers import Routes

log = logging.getLogger(__name__)
routes = Routes("lists", private_only=True)

LIST_MAX = 20

STATUS_NAMES: dict[CaseStatus, str] = {
    CaseStatus.NEW: N_("waiting to be accepted"),
    CaseStatus.ACCEPTED: N_("being handled"),
    CaseStatus.RESOLVED: N_("resolved, waiting for your confirmation"),
    CaseStatus.CLOSED: N_("closed"),
}

ACTION_NAMES: dict[str, str] = {
    "report": N_("reported"),
    "accept": N_("accepted"),
    "decline": N_("declined and sent up"),
    "escalate": N_("escalated"),
    "assign": N_("assigned"),
    "note": N_("progress note"),
    "resolve": N_("resolved with evidence"),
    "rate": N_("rated"),
    "reopen": N_("reopened"),
    "close": N_("closed"),
    # Who was told depends on the case (bot.scope.supervision): the card's notices name them.
    "overdue": N_("overdue: its supervisors were told"),
    "unaccepted": N_("not accepted in time: its supervisors were told"),
    "supervise": N_("supervised: the assignee was urged on"),
    "confirm": N_("result accepted"),
    UNDELIVERED: N_("a message could not be delivered"),
}


def _line(case: Case, language: str, timezone: str, *, deadline: datetime | None) -> str:
    category = case.category.display_name(language)
    when = local_time(deadline, timezone) if deadline else local_time(case.created_at, timezone)
    line = _("{number} · {category} · {status} · {when}").format(
        number=case.number, category=category, status=_(STATUS_NAMES[case.status]), when=when
    )
    if case.supporters:  # villagers who joined it (附议)
        line += " · " + _("Me too: {count}").format(count=case.supporters)
    return line


async def _show(
    message: Message,
    cases: list[Case],
    person: Person,
    *,
    title: str,
    empty: str,
    deadline: str | None = None,
) -> None:
    if not cases:
        await message.answer(empty)
        return
    timezone = cases[0].township.timezone
    lines = [title, ""]
    for case in cases:
        lines.append(
            _line(case, person.language, timezone, deadline=getattr(case, deadline or "", None))
        )
    await message.answer("\n".join(lines), reply_markup=keyboards.open_cases(cases))


@routes.message(Command("mycases"))
@routes.message(Pressed(keyboards.MY_CASES))
async def my_cases(message: Message, person: Person) -> None:
    if person.villager is None:
        await message.answer(_("You are not registered yet. Send /start to register."))
        return
    cases = (
        await Case.filter(reporter_id=person.villager.id)
        .order_by("-id")
        .limit(LIST_MAX)
        .prefetch_related("category", "township")
    )
    await _show(
        message, cases, person,
        title=_("Your cases, newest first:"),
        empty=_("You have not reported any problem yet."),
    )


async def _official_only(message: Message, person: Person) -> Official | None:
    """The active official behind the message, or None after telling a villager why not."""
    official = person.official
    if official is None or not official.active:
        await message.answer(_("This command is for officials."))
        return None
    return official


async def open_cases(message: Message, person: Person) -> None:
    """The official's open cases, nearest deadline first (the second half of /tasks)."""
    official = await _official_only(message, person)
    if official is None:
        return
    cases = (
        await Case.filter(assignee_id=official.id, status=CaseStatus.ACCEPTED)
        .order_by("resolve_by", "id")
        .limit(LIST_MAX)
        .prefetch_related("category", "township")
    )
    await _show(
        message, cases, person,
        title=_("Your open cases, nearest deadline first:"),
        empty=_("You have no open cases."),
        deadline="resolve_by",
    )


@routes.message(Command("pool"))
async def pool(message: Message, person: Person) -> None:
    official = await _official_only(message, person)
    if official is None:
        return
    query = Case.filter(status=CaseStatus.NEW, township_id=official.township_id)  # type: ignore[attr-defined]
    own_units = await official.units.filter(active=True).values_list("id", flat=True)
    units = Q(unit_id__in=list(own_units))
    if official.role == Role.DISPATCHER:
        # A dispatcher sees the township's pool, but confidential cases only in their own units.
        units |= scope.township_wide_cases()
    query = query.filter(units)
    cases = (
        await query.order_by("accept_by", "id")
        .limit(LIST_MAX)
        .prefetch_related("category", "township")
    )
    await _show(
        message, cases, person,
        title=_("Cases waiting to be accepted, nearest deadline first:"),
        empty=_("No case is waiting to be accepted."),
        deadline="accept_by",
    )


async def _may_read(person: Person, case: Case) -> bool | None:
    """True: the whole history; False: the public part; None: not this person's case."""
    for official in person.officials:
        if await scope.may_see(official, case):
            return True
    if person.villager is not None and case.reporter_id == person.villager.id:  # type: ignore[attr-defined]
        return False
    return None


def _event_line(case: Case, event: CaseEvent, timezone: str) -> str:
    what = _(ACTION_NAMES.get(event.action, event.action))
    if event.action == "rate" and case.rating is not None:
        # A rating closes the case: the case keeps the stars of its one rating.
        what = _("rated {stars} of 5").format(stars=case.rating)
    line = _("{when} · {what}").format(when=local_time(event.at, timezone), what=what)
    if event.note:
        line += "\n    " + event.note
    if not event.public:
        line += "\n    " + _("(internal)")
    return line


async def timeline_text(case: Case, language: str, *, everything: bool) -> str:
    await case.fetch_related("category", "township", "task")
    timezone = case.township.timezone
    lines = [
        _("Case {number}").format(number=case.number),
        _("Category: {name}").format(name=case.category.display_name(language)),
        *([_("Task: {title}").format(title=case.task.title)] if case.task is not None else []),
        _("Status: {status}").format(status=_(STATUS_NAMES[case.status])),
        case.description or _("(voice message)"),
        "",
        _("History:"),
    ]
    events = await history(case.id, public_only=not everything)
    lines.extend(_event_line(case, event, timezone) for event in events)
    return "\n".join(lines)


async def _buttons(person: Person, case: Case) -> InlineKeyboardMarkup | None:
    """What the reader may do on the case now: a new case's card buttons for its unit, the
    work buttons for its assignee; the taps are checked again when made."""
    upward = await scope.escalation_target(case) is not None
    for official in person.officials:
        if case.status == CaseStatus.NEW and await scope.may_handle(official, case):
            assign = await scope.may_assign(official, case)
            return card_keyboard(case, person.language, assign=assign, upward=upward)
        if case.status == CaseStatus.ACCEPTED and scope.is_assignee(official, case):
            return work_keyboard(case, person.language, upward=upward)
        if case.status == CaseStatus.RESOLVED and await scope.may_review(official, case):
            return review_keyboard(case, person.language)
    return None


@routes.callback_query(CaseAction.filter(F.action == "open"))
async def open_case(query: CallbackQuery, callback_data: CaseAction, person: Person) -> None:
    case = await Case.get_or_none(id=callback_data.case_id)
    everything = None if case is None else await _may_read(person, case)
    if case is None or everything is None or not isinstance(query.message, Message):
        log.warning(
            "account %s tried to open case %s", person.account.id, callback_data.case_id
        )
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    await query.answer()
    if case.voice_file_id:
        with contextlib.suppress(TelegramBadRequest):  # a voice Telegram lost: the text still
            await query.message.answer_voice(case.voice_file_id)
    await query.message.answer(
        await timeline_text(case, person.language, everything=everything),
        reply_markup=await _buttons(person, case) if everything else None,
    )
