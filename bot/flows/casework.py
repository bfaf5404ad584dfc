"""Conversations on a case: what an official or the villager types after tapping a button.

A tap on a card (bot.handlers.casework) asks its question in the tapper's private chat, even
when the card is in a unit's group: the group stays a list of cards, and what an official
types next is read only from their private chat, never from the group. The step waits in the
conversation state (it survives a restart) with the case it is about; every answer is checked
again by `bot.cases`, which may refuse it when the case moved on meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiogram import Bot, F
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import BaseStorage, StorageKey
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from bot import cases, faq, keyboards, logs, scope
from bot.callbacks import CaseAction
from bot.cases import CaseRefused, Refusal
from bot.i18n import _
from bot.keyboards import button, inline
from bot.middlewares import conversation
from bot.models import Case, CaseStatus, Official, Unit
from bot.notices import local_time
from bot.people import Person
from bot.routers import Routes

log = logging.getLogger(__name__)
routes = Routes("casework-conversations", private_only=True)


class Casework(StatesGroup):
    decline = State()  # the reason, required
    escalate = State()  # a note, optional
    note = State()  # a progress note the villager reads
    internal = State()  # a note only officials read
    evidence = State()  # photos of the finished work and a note
    comment = State()  # the villager's optional comment after the stars
    unsolved = State()  # the villager's reason for "not solved"
    send_back = State()  # a township task's reviewer: what is still to be done


# ---- who acts ---------------------------------------------------------------------------------

#: What a tap needs: handle (accept/decline), escalate, assign, work (notes), resolve,
#: supervise (督办, from the back office), verdict (the reporter's Solved / Not solved), and
#: review (a township task's result: accept it or send it back).
Check = str


async def allowed(official: Official, case: Case, check: Check) -> bool:
    if check == "handle":
        return await scope.may_handle(official, case)
    if check == "escalate":
        return await scope.may_escalate(official, case)
    if check == "assign":
        return await scope.may_assign(official, case)
    if check == "work":
        return await scope.may_note(official, case)
    if check == "supervise":
        return await scope.may_supervise(official, case)
    if check == "review":
        return await scope.may_review(official, case)
    return scope.may_resolve(official, case)


async def acting(person: Person, case: Case, check: Check) -> Official | None:
    """The person's official identity that may do this on this case, if any."""
    for official in person.officials:
        if await allowed(official, case, check):
            return official
    return None


async def refusal_text(refused: CaseRefused, person: Person, check: Check = "handle") -> str:
    """Each refusal as a sentence in the tapper's language."""
    case = refused.case
    reason = refused.reason
    if reason == Refusal.TAKEN and case is not None and case.assignee_id is not None:  # type: ignore[attr-defined]
        taker = await Official.get(id=case.assignee_id)  # type: ignore[attr-defined]
        return _("Already accepted by {name}.").format(name=taker.display_name(person.language))
    if reason == Refusal.NOT_ALLOWED and case is not None:
        if check == "verdict":
            return _("Only the villager who reported this case can do this.")
        if not person.officials:
            return _("This button is for officials.")
        if check == "assign":
            return _("Only a dispatcher or a leader of the case's unit can assign it.")
        if check == "resolve":
            return _("Only the official handling this case can do this.")
        if check == "review":
            return _("Only the task's creator or a dispatcher can review its result.")
        unit = await Unit.get(id=case.unit_id)  # type: ignore[attr-defined]
        return _("This case is with {unit} now; you cannot act on it.").format(
            unit=unit.display_name(person.language)
        )
    texts = {
        Refusal.NOT_FOUND: _("This button is no longer active."),
        Refusal.NOT_ALLOWED: _("This button is not for you."),
        Refusal.WRONG_STATE: _("This button no longer applies: the case has moved on."),
        Refusal.TAKEN: _("This button no longer applies: the case has moved on."),
        Refusal.CHANGED: _("Someone changed this case a moment ago. Please try again."),
        Refusal.NO_SUPERVISOR: _("There is no higher unit to send this case to."),
        Refusal.NEEDS_EVIDENCE: _(
            "A case is resolved only with evidence: at least one photo and a note."
        ),
        Refusal.NEEDS_REASON: _("Please write a few words."),
        Refusal.TOO_LONG: _("Please keep it within {limit} characters.").format(
            limit=cases.NOTE_MAX
        ),
        Refusal.TOO_MANY_PHOTOS: _("At most {limit} photos, please.").format(
            limit=cases.PHOTOS_MAX
        ),
        Refusal.BAD_RATING: _("Please choose from 1 to 5 stars."),
    }
    return texts[reason]


def log_refusal(person: Person, what: str, case_id: int, refused: CaseRefused) -> None:
    if refused.case is not None:
        logs.acting_on(refused.case.number)
    log.warning(
        "case %s: %s by account %s refused: %s", case_id, what, person.account.id,
        refused.reason.value,
    )


# ---- asking -------------------------------------------------------------------------------------


def private_state(bot: Bot, storage: BaseStorage, user_id: int) -> FSMContext:
    """The conversation of the tapper's private chat, wherever the tap came from."""
    return conversation(FSMContext(
        storage=storage, key=StorageKey(bot_id=bot.id, chat_id=user_id, user_id=user_id)
    ))


def controls(case_id: int, *, skip: bool = False, done: bool = False) -> InlineKeyboardMarkup:
    return inline([
        *([button(_("✅ Done"), CaseAction(case_id=case_id, action="done"))] if done else []),
        *([button(_("Skip"), CaseAction(case_id=case_id, action="skip"))] if skip else []),
        button(_("✖️ Cancel"), CaseAction(case_id=case_id, action="cancel")),
    ], 1)


def question(step: State, case: Case) -> tuple[str, InlineKeyboardMarkup]:
    number = case.number
    if step == Casework.decline:
        text = _("Why decline case {number}? Write the reason; it goes up with the case.")
    elif step == Casework.escalate:
        text = _("Escalate case {number} one level up. Add a note, or tap Skip.")
        return text.format(number=number), controls(case.id, skip=True)
    elif step == Casework.note and case.task_id is not None:  # type: ignore[attr-defined]
        text = _("Write the progress note for case {number}. The task's creator will read it.")
    elif step == Casework.note:
        text = _("Write the progress note for case {number}. The villager will read it.")
    elif step == Casework.internal:
        text = _("Write the internal note for case {number}. Only officials will read it.")
    elif step == Casework.evidence:
        text = _(
            "To resolve case {number}, send at least one photo of the finished work, then a "
            "note on what was done."
        )
    elif step == Casework.unsolved:
        text = _("What is still wrong with case {number}? Tell us in a few words.")
    elif step == Casework.send_back:
        text = _("Why send case {number} back? Write what is still to be done; the official "
                 "handling it reads it.")
    else:
        text = _("Add a comment on case {number}, or tap Skip.")
        return text.format(number=number), controls(case.id, skip=True)
    return text.format(number=number), controls(case.id)


async def ask(
    bot: Bot, storage: BaseStorage, user_id: int, step: State, case: Case, **extra: Any
) -> bool:
    """Ask the question of `step` in the private chat; False when that chat is closed to us."""
    state = private_state(bot, storage, user_id)
    await state.set_state(step)
    await state.update_data(casework={"case_id": case.id, "photos": [], "note": None, **extra})
    text, keyboard = question(step, case)
    try:
        await bot.send_message(user_id, text, reply_markup=keyboard)
    except (TelegramForbiddenError, TelegramBadRequest):
        await finish(state)
        return False
    return True


async def finish(state: FSMContext) -> None:
    data = await state.get_data()
    data.pop("casework", None)
    await state.set_data(data)
    await state.set_state(None)


async def _step_data(state: FSMContext) -> dict[str, Any]:
    return dict((await state.get_data()).get("casework") or {})


# ---- answers ------------------------------------------------------------------------------------

#: Refusals after which the question still stands (the person can answer again).
ASK_AGAIN = frozenset({Refusal.TOO_LONG, Refusal.NEEDS_REASON, Refusal.NEEDS_EVIDENCE,
                       Refusal.TOO_MANY_PHOTOS})

STEP_CHECKS: dict[str, Check] = {
    Casework.decline.state: "handle",
    Casework.escalate.state: "escalate",
    Casework.note.state: "work",
    Casework.internal.state: "work",
    Casework.evidence.state: "resolve",
    Casework.send_back.state: "review",
}


async def _resolved_by(case_id: int, official: Official) -> bool:
    case = await Case.get_or_none(id=case_id)
    return (
        case is not None and case.status == CaseStatus.RESOLVED
        and case.assignee_id == official.id  # type: ignore[attr-defined]
    )


async def _refused(
    message: Message, state: FSMContext, person: Person, refused: CaseRefused, check: Check,
    case_id: int, what: str,
) -> None:
    log_refusal(person, what, case_id, refused)
    if refused.reason not in ASK_AGAIN:
        await finish(state)
    await message.answer(await refusal_text(refused, person, check))


async def _official_step(
    message: Message, state: FSMContext, person: Person, raw_state: str | None
) -> tuple[Case, Official] | None:
    """The case and the official for an answer typed by an official; tells them when not."""
    data = await _step_data(state)
    case = await Case.get_or_none(id=data.get("case_id"))
    check = STEP_CHECKS.get(raw_state or "", "handle")
    official = None if case is None else await acting(person, case, check)
    if case is None or official is None:
        await finish(state)
        refused = CaseRefused(Refusal.NOT_ALLOWED if case else Refusal.NOT_FOUND, case)
        log_refusal(person, f"answer in {raw_state}", data.get("case_id") or 0, refused)
        await message.answer(await refusal_text(refused, person, check))
        return None
    return case, official


@routes.message(StateFilter(Casework), F.text == "/cancel")
async def cancel_command(message: Message, state: FSMContext) -> None:
    await finish(state)
    await message.answer(_("Cancelled. Nothing changed."))


@routes.message(StateFilter(Casework), F.text.startswith("/"))
async def command_while_asked(message: Message) -> None:
    await message.answer(_("Please answer the question above, or tap Cancel."))


@routes.message(Casework.decline, F.text)
async def decline_reason(
    message: Message, state: FSMContext, person: Person, raw_state: str | None
) -> None:
    found = await _official_step(message, state, person, raw_state)
    if found is None:
        return
    case, official = found
    try:
        change = await cases.decline(case.id, official, message.text or "")
    except CaseRefused as refused:
        await _refused(message, state, person, refused, "handle", case.id, "decline")
        return
    await finish(state)
    await _went_up(message, person, change, _("Declined. Case {number} went to {unit}."))


async def _went_up(message: Message, person: Person, change: cases.Change, text: str) -> None:
    """Tell the official where the case went: the unit above, now responsible."""
    unit = await Unit.get(id=change.case.unit_id)  # type: ignore[attr-defined]
    await message.answer(
        text.format(number=change.case.number, unit=unit.display_name(person.language))
    )


async def escalate(
    message: Message, state: FSMContext, person: Person, case: Case, official: Official,
    note: str | None,
) -> None:
    try:
        change = await cases.escalate(case.id, official, note)
    except CaseRefused as refused:
        await _refused(message, state, person, refused, "escalate", case.id, "escalate")
        return
    await finish(state)
    await _went_up(message, person, change, _("Escalated. Case {number} went to {unit}."))


@routes.message(Casework.escalate, F.text)
async def escalate_note(
    message: Message, state: FSMContext, person: Person, raw_state: str | None
) -> None:
    found = await _official_step(message, state, person, raw_state)
    if found is not None:
        await escalate(message, state, person, *found, message.text)


@routes.message(StateFilter(Casework.note, Casework.internal), F.text)
async def note_written(
    message: Message, state: FSMContext, person: Person, raw_state: str | None
) -> None:
    found = await _official_step(message, state, person, raw_state)
    if found is None:
        return
    case, official = found
    public = raw_state == Casework.note.state
    try:
        await cases.add_note(case.id, official, message.text or "", public=public)
    except CaseRefused as refused:
        await _refused(message, state, person, refused, "work", case.id, "note")
        return
    await finish(state)
    if public:
        text = _("Note added to case {number}; the villager is told.")
    else:
        text = _("Internal note added to case {number}.")
    await message.answer(text.format(number=case.number))


@routes.message(Casework.evidence, F.photo)
async def evidence_photo(
    message: Message, state: FSMContext, person: Person, raw_state: str | None
) -> None:
    found = await _official_step(message, state, person, raw_state)
    if found is None:
        return
    case, _official = found
    data = await _step_data(state)
    photos: list[str] = data.get("photos") or []
    if len(photos) >= cases.PHOTOS_MAX:
        await message.answer(
            _("At most {limit} photos, please.").format(limit=cases.PHOTOS_MAX),
            reply_markup=controls(case.id, done=bool(data.get("note"))),
        )
        return
    photos.append(message.photo[-1].file_id)  # type: ignore[index]
    if message.caption:
        data["note"] = message.caption
    data["photos"] = photos
    await state.update_data(casework=data)
    if data.get("note"):
        await message.answer(
            _("Photos: {count}. Note: {note}\nTap Done to resolve the case, or send more.").format(
                count=len(photos), note=data["note"]
            ),
            reply_markup=controls(case.id, done=True),
        )
    else:
        await message.answer(
            _("Photos: {count}. Now write a note on what was done.").format(count=len(photos)),
            reply_markup=controls(case.id),
        )


async def resolve(
    message: Message, state: FSMContext, person: Person, case: Case, official: Official
) -> None:
    data = await _step_data(state)
    try:
        await cases.resolve(case.id, official, data.get("note") or "", data.get("photos") or [])
    except CaseRefused as refused:
        if not await _resolved_by(case.id, official):
            await _refused(message, state, person, refused, "resolve", case.id, "resolve")
            return
        # The answer that resolved it, delivered again (its process was killed before it
        # replied): it is done, and the official is told so, not that the case moved on.
    await finish(state)
    if case.task_id is not None:  # type: ignore[attr-defined]
        text = _("Case {number} is resolved. The task's creator gets your evidence and will "
                 "review it.").format(number=case.number)
    else:
        text = _("Case {number} is resolved. The villager gets your evidence and will "
                 "confirm.").format(number=case.number)
    if await faq.is_policy_case(case):
        # 政策咨询: one tap offers the question and this answer to the township FAQ.
        text += "\n" + _("Tap below to propose this question and your answer for the FAQ.")
        await message.answer(text, reply_markup=keyboards.propose_faq(case.id))
        return
    await message.answer(text)


@routes.message(Casework.evidence, F.text)
async def evidence_note(
    message: Message, state: FSMContext, person: Person, raw_state: str | None
) -> None:
    found = await _official_step(message, state, person, raw_state)
    if found is None:
        return
    data = await _step_data(state)
    data["note"] = message.text
    await state.update_data(casework=data)
    await resolve(message, state, person, *found)


@routes.message(Casework.comment, F.text)
async def comment_written(message: Message, state: FSMContext, person: Person) -> None:
    data = await _step_data(state)
    await rate(message, state, person, data, message.text)


async def rate(
    message: Message, state: FSMContext, person: Person, data: dict[str, Any],
    comment: str | None,
) -> None:
    case_id = int(data.get("case_id") or 0)
    villager = person.villager
    try:
        if villager is None:
            raise CaseRefused(Refusal.NOT_ALLOWED, await Case.get_or_none(id=case_id))
        change = await cases.rate(case_id, villager, int(data.get("stars") or 0), comment)
    except CaseRefused as refused:
        await _refused(message, state, person, refused, "verdict", case_id, "rate")
        return
    await finish(state)
    await message.answer(
        _("Thank you! Case {number} is closed with {stars} of 5.").format(
            number=change.case.number, stars=change.case.rating
        )
    )


@routes.message(Casework.unsolved, F.text)
async def unsolved_reason(message: Message, state: FSMContext, person: Person) -> None:
    data = await _step_data(state)
    case_id = int(data.get("case_id") or 0)
    villager = person.villager
    try:
        if villager is None:
            raise CaseRefused(Refusal.NOT_ALLOWED, await Case.get_or_none(id=case_id))
        change = await cases.reopen(case_id, villager, message.text or "")
    except CaseRefused as refused:
        await _refused(message, state, person, refused, "verdict", case_id, "reopen")
        return
    await finish(state)
    await message.answer(
        _("Case {number} is reopened; the same official handles it again.").format(
            number=change.case.number
        )
    )


@routes.message(Casework.send_back, F.text)
async def send_back_reason(
    message: Message, state: FSMContext, person: Person, raw_state: str | None
) -> None:
    found = await _official_step(message, state, person, raw_state)
    if found is None:
        return
    case, official = found
    try:
        change = await cases.send_back(case.id, official, message.text or "")
    except CaseRefused as refused:
        await _refused(message, state, person, refused, "review", case.id, "send back")
        return
    await finish(state)
    unit = await Unit.get(id=change.case.unit_id)  # type: ignore[attr-defined]
    await message.answer(
        _("Case {number} is sent back to {unit}, to be resolved again by {deadline}.").format(
            number=change.case.number, unit=unit.display_name(person.language),
            deadline=local_time(change.case.resolve_by, (await change.case.township).timezone),
        )
    )


@routes.message(StateFilter(Casework))
async def expected_words(message: Message, raw_state: str | None) -> None:
    if raw_state == Casework.evidence.state:
        await message.answer(_("Please send photos of the finished work, or a note."))
        return
    await message.answer(_("Please answer in words, or tap Cancel."))


# ---- the buttons under the questions -------------------------------------------------------------


async def _quietly(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
    with contextlib.suppress(TelegramBadRequest):
        await query.answer(text, show_alert=alert)


@routes.callback_query(CaseAction.filter(F.action.in_({"skip", "cancel", "done"})))
async def question_control(
    query: CallbackQuery,
    callback_data: CaseAction,
    state: FSMContext,
    person: Person,
    raw_state: str | None,
) -> None:
    data = await _step_data(state)
    message = query.message
    if (
        raw_state is None
        or raw_state not in Casework
        or data.get("case_id") != callback_data.case_id
        or not isinstance(message, Message)
    ):
        log.warning(
            "case %s: stale %s from account %s", callback_data.case_id, callback_data.action,
            person.account.id,
        )
        await _quietly(query, _("This button is no longer active."), alert=True)
        return
    await _quietly(query)
    with contextlib.suppress(TelegramBadRequest):
        await message.edit_reply_markup(reply_markup=None)
    action = callback_data.action
    if action == "cancel":
        await finish(state)
        await message.answer(_("Cancelled. Nothing changed."))
        return
    if action == "skip" and raw_state == Casework.comment.state:
        await rate(message, state, person, data, None)
        return
    if action == "skip" and raw_state == Casework.escalate.state:
        found = await _official_step(message, state, person, raw_state)
        if found is not None:
            await escalate(message, state, person, *found, None)
        return
    if action == "done" and raw_state == Casework.evidence.state:
        found = await _official_step(message, state, person, raw_state)
        if found is not None:
            await resolve(message, state, person, *found)
        return
    await message.answer(_("This button is no longer active."))
