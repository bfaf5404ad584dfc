"""The buttons on a case: cards, work buttons, Assign, and the villager's verdict.

Thin: parse the tap, check that the tapper may do this on this case in its current state,
call `bot.cases`, answer. Cards live in units' group chats too, so these taps are not limited
to private chats; what needs words (a reason, a note, evidence) is asked in the tapper's
private chat by `bot.flows.casework`. A tap that may not act (a villager on an official's
button, an official of another unit, a stale card, forged data) changes nothing, gets an
alert in the tapper's language, and is logged.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from aiogram import Bot, F
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import cases, scope
from bot.callbacks import AssignTo, CaseAction, RateCase, SupporterRate
from bot.cases import TRANSITIONS, Action, CaseRefused, Refusal
from bot.flows.casework import Casework, acting, ask, log_refusal, refusal_text
from bot.i18n import _
from bot.keyboards import button, inline
from bot.models import Case, CaseStatus, Official
from bot.notices import local_time
from bot.people import Person
from bot.routers import Routes

log = logging.getLogger(__name__)
routes = Routes("casework")

#: The deadlines a dispatcher picks from, in hours.
DEADLINE_HOURS: tuple[int, ...] = (4, 24, 72, 168)
ASSIGN_CHOICES_MAX = 24

#: Tap → (what the tapper must be, the transition it leads to, the question it asks).
OFFICIAL_TAPS: dict[str, tuple[str, Action, State | None]] = {
    "accept": ("handle", Action.ACCEPT, None),
    "decline": ("handle", Action.DECLINE, Casework.decline),
    "escalate": ("escalate", Action.ESCALATE, Casework.escalate),
    "assign": ("assign", Action.ASSIGN, None),
    "note": ("work", Action.NOTE, Casework.note),
    "internal": ("work", Action.NOTE, Casework.internal),
    "resolve": ("resolve", Action.RESOLVE, Casework.evidence),
    "confirm": ("review", Action.CONFIRM, None),
    "sendback": ("review", Action.REOPEN, Casework.send_back),
}


async def _answer(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
    """A redelivered tap was answered already; answering again changes nothing."""
    with contextlib.suppress(TelegramBadRequest):
        await query.answer(text, show_alert=alert)


async def _refuse(
    query: CallbackQuery, person: Person, what: str, case_id: int, refused: CaseRefused,
    check: str = "handle",
) -> None:
    log_refusal(person, what, case_id, refused)
    await _answer(query, await refusal_text(refused, person, check), alert=True)


async def _official_for(
    query: CallbackQuery, person: Person, case_id: int, tap: str
) -> tuple[Case, Official] | None:
    """The case and the tapper's official identity, when this tap may act on it now."""
    check, action, _step = OFFICIAL_TAPS[tap]
    case = await Case.get_or_none(id=case_id)
    if case is None:
        await _refuse(query, person, tap, case_id, CaseRefused(Refusal.NOT_FOUND))
        return None
    official = await acting(person, case, check)
    if official is None:
        await _refuse(query, person, tap, case_id, CaseRefused(Refusal.NOT_ALLOWED, case), check)
        return None
    if case.status not in TRANSITIONS[action][0]:
        reason = Refusal.TAKEN if tap == "accept" and case.assignee_id else Refusal.WRONG_STATE  # type: ignore[attr-defined]
        await _refuse(query, person, tap, case_id, CaseRefused(reason, case), check)
        return None
    return case, official


@routes.callback_query(CaseAction.filter(F.action == "accept"))
async def accept(query: CallbackQuery, callback_data: CaseAction, person: Person) -> None:
    found = await _official_for(query, person, callback_data.case_id, "accept")
    if found is None:
        return
    case, official = found
    try:
        await cases.accept(case.id, official)
    except CaseRefused as refused:
        await _refuse(query, person, "accept", case.id, refused)
        return
    await _answer(query, _("You accepted case {number}.").format(number=case.number))


@routes.callback_query(
    CaseAction.filter(
        F.action.in_({"decline", "escalate", "note", "internal", "resolve", "sendback"})
    )
)
async def ask_for_words(
    query: CallbackQuery,
    callback_data: CaseAction,
    person: Person,
    bot: Bot,
    fsm_storage: BaseStorage,
) -> None:
    """Decline, Escalate, notes and Resolve need words: asked in the private chat."""
    found = await _official_for(query, person, callback_data.case_id, callback_data.action)
    if found is None:
        return
    case, _official = found
    step = OFFICIAL_TAPS[callback_data.action][2]
    assert step is not None
    if not await ask(bot, storage=fsm_storage, user_id=query.from_user.id, step=step, case=case):
        await _answer(query, _("Please open a private chat with me first, then tap again."),
                      alert=True)
        return
    if isinstance(query.message, Message) and query.message.chat.type != "private":
        await _answer(query, _("I asked you in our private chat."))
    else:
        await _answer(query)


# ---- Assign: a person, then a deadline -----------------------------------------------------------


def _people_keyboard(case: Case, people: list[Official], language: str) -> InlineKeyboardMarkup:
    return inline([
        button(official.display_name(language), AssignTo(case_id=case.id, official_id=official.id))
        for official in people
    ], 2)


def _deadline_label(hours: int) -> str:
    labels = {4: _("4 hours"), 24: _("1 day"), 72: _("3 days"), 168: _("7 days")}
    return labels[hours]


def _deadlines_keyboard(case: Case, official: Official) -> InlineKeyboardMarkup:
    return inline([
        button(
            _deadline_label(hours),
            AssignTo(case_id=case.id, official_id=official.id, hours=hours),
        )
        for hours in DEADLINE_HOURS
    ], 2)


@routes.callback_query(CaseAction.filter(F.action == "assign"))
async def assign(
    query: CallbackQuery, callback_data: CaseAction, person: Person, bot: Bot
) -> None:
    found = await _official_for(query, person, callback_data.case_id, "assign")
    if found is None:
        return
    case, _official = found
    people = await scope.assign_candidates(case, ASSIGN_CHOICES_MAX)
    try:
        await bot.send_message(
            query.from_user.id,
            _("Assign case {number} to whom?").format(number=case.number),
            reply_markup=_people_keyboard(case, people, person.language),
        )
    except (TelegramBadRequest, TelegramForbiddenError):
        await _answer(query, _("Please open a private chat with me first, then tap again."),
                      alert=True)
        return
    await _answer(query)


@routes.callback_query(AssignTo.filter())
async def assign_to(query: CallbackQuery, callback_data: AssignTo, person: Person) -> None:
    found = await _official_for(query, person, callback_data.case_id, "assign")
    if found is None:
        return
    case, by = found
    to = await Official.get_or_none(
        id=callback_data.official_id, township_id=case.township_id, active=True  # type: ignore[attr-defined]
    )
    if to is None or (callback_data.hours and callback_data.hours not in DEADLINE_HOURS):
        await _refuse(query, person, "assign", case.id, CaseRefused(Refusal.NOT_FOUND, case))
        return
    message = query.message if isinstance(query.message, Message) else None
    name = to.display_name(person.language)
    if not callback_data.hours:
        await _answer(query)
        if message is not None:
            await message.edit_text(
                _("Assign case {number} to {name}: by when?").format(
                    number=case.number, name=name
                ),
                reply_markup=_deadlines_keyboard(case, to),
            )
        return
    resolve_by = cases.now() + timedelta(hours=callback_data.hours)
    try:
        change = await cases.assign(case.id, by, to, resolve_by)
    except CaseRefused as refused:
        await _refuse(query, person, "assign", case.id, refused, "assign")
        return
    await _answer(query, _("Assigned."))
    if message is not None:
        await case.fetch_related("township")
        await message.edit_text(
            _("Case {number} is assigned to {name}, to be resolved by {deadline}.").format(
                number=case.number,
                name=name,
                deadline=local_time(change.case.resolve_by, case.township.timezone),
            )
        )


# ---- a township task's review (中心工作) --------------------------------------------------


@routes.callback_query(CaseAction.filter(F.action == "confirm"))
async def confirm(query: CallbackQuery, callback_data: CaseAction, person: Person) -> None:
    """The creator (or a dispatcher) accepts a task's result: the case closes."""
    found = await _official_for(query, person, callback_data.case_id, "confirm")
    if found is None:
        return
    case, official = found
    try:
        await cases.confirm(case.id, official)
    except CaseRefused as refused:
        await _refuse(query, person, "confirm", case.id, refused, "review")
        return
    await _answer(query, _("You accepted the result of case {number}.").format(
        number=case.number))
    await _strip_buttons(query)


# ---- the villager's verdict ------------------------------------------------------------------


async def _reporters_case(
    query: CallbackQuery, person: Person, case_id: int, what: str
) -> Case | None:
    """The case when the tapper reported it and it waits for their word."""
    case = await Case.get_or_none(id=case_id)
    if case is None:
        await _refuse(query, person, what, case_id, CaseRefused(Refusal.NOT_FOUND))
        return None
    villager = person.villager
    if villager is None or case.reporter_id != villager.id:  # type: ignore[attr-defined]
        await _refuse(query, person, what, case_id, CaseRefused(Refusal.NOT_ALLOWED, case),
                      "verdict")
        return None
    if case.status != CaseStatus.RESOLVED:
        await _refuse(query, person, what, case_id, CaseRefused(Refusal.WRONG_STATE, case))
        return None
    return case


def _stars_keyboard(case: Case) -> InlineKeyboardMarkup:
    return inline(
        [button("⭐" * stars, RateCase(case_id=case.id, stars=stars)) for stars in range(1, 6)], 1
    )


async def _strip_buttons(query: CallbackQuery) -> None:
    if isinstance(query.message, Message):
        with contextlib.suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)


@routes.callback_query(CaseAction.filter(F.action == "solved"))
async def solved(query: CallbackQuery, callback_data: CaseAction, person: Person, bot: Bot) -> None:
    case = await _reporters_case(query, person, callback_data.case_id, "solved")
    if case is None:
        return
    await _answer(query)
    await _strip_buttons(query)
    await bot.send_message(
        query.from_user.id,
        _("Glad to hear it! How do you rate the work on case {number}?").format(
            number=case.number
        ),
        reply_markup=_stars_keyboard(case),
    )


@routes.callback_query(RateCase.filter())
async def stars_chosen(
    query: CallbackQuery,
    callback_data: RateCase,
    person: Person,
    bot: Bot,
    fsm_storage: BaseStorage,
) -> None:
    unsolved = callback_data.stars == 0
    case = await _reporters_case(query, person, callback_data.case_id, "rate")
    if case is None:
        return
    if not unsolved and not 1 <= callback_data.stars <= 5:
        await _refuse(query, person, "rate", case.id, CaseRefused(Refusal.BAD_RATING, case))
        return
    await _answer(query)
    await _strip_buttons(query)
    step = Casework.unsolved if unsolved else Casework.comment
    await ask(bot, fsm_storage, query.from_user.id, step, case, stars=callback_data.stars)


@routes.callback_query(CaseAction.filter(F.action == "unsolved"))
async def not_solved(
    query: CallbackQuery,
    callback_data: CaseAction,
    person: Person,
    bot: Bot,
    fsm_storage: BaseStorage,
) -> None:
    case = await _reporters_case(query, person, callback_data.case_id, "unsolved")
    if case is None:
        return
    await _answer(query)
    await _strip_buttons(query)
    await ask(bot, fsm_storage, query.from_user.id, Casework.unsolved, case)


@routes.callback_query(SupporterRate.filter())
async def supporter_stars(
    query: CallbackQuery, callback_data: SupporterRate, person: Person
) -> None:
    """A supporter's (附议) stars: kept once on their row; the case stays the reporter's."""
    villager = person.villager
    if villager is None:
        await _answer(query, _("This button is no longer active."), alert=True)
        return
    try:
        await cases.rate_as_supporter(callback_data.case_id, villager, callback_data.stars)
    except CaseRefused as refused:
        if refused.reason == Refusal.CHANGED:
            await _answer(query, _("You have already rated this case."), alert=True)
        else:
            await _answer(query, _("This button is no longer active."), alert=True)
        return
    await _answer(query)
    await _strip_buttons(query)
    if isinstance(query.message, Message):
        await query.message.answer(
            _("Thank you! Your rating: {stars} of 5.").format(stars=callback_data.stars)
        )
