"""A villager asks a policy question (政策咨询): the FAQ answers first, the officials next.

The question waits in the conversation data (`ask`) with a random key, which `bot.faq` hands
to `cases.report` as its `report_key`: "No" tapped twice makes one case. The case follows the
normal loop, and its confirmation and the official's answer reach the villager through the
outbox as for any report. The official who resolved a policy case gets "Add to the FAQ".
"""

from __future__ import annotations

import contextlib
import secrets

from aiogram import F
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message

from bot import cases, faq, keyboards
from bot.callbacks import FaqVerdict, ProposeFaq
from bot.directory import QUESTION_MAX
from bot.filters import Pressed
from bot.i18n import _
from bot.people import Person
from bot.routers import Routes
from bot.routing import NoResponsibleUnit

routes = Routes("ask", private_only=True)


class Ask(StatesGroup):
    question = State()
    verdict = State()


async def _answer(query: CallbackQuery, text: str | None = None, *, alert: bool = False) -> None:
    with contextlib.suppress(TelegramBadRequest):
        await query.answer(text, show_alert=alert)


async def _done(state: FSMContext) -> None:
    """The question is over; a report draft waiting beside it stays."""
    data = await state.get_data()
    data.pop("ask", None)
    await state.set_data(data)
    await state.set_state(None)


async def _strip_buttons(message: Message) -> None:
    with contextlib.suppress(TelegramBadRequest):
        await message.edit_reply_markup(reply_markup=None)


@routes.message(Command("ask"))
@routes.message(Pressed(keyboards.ASK))
async def ask_command(message: Message, state: FSMContext, person: Person) -> None:
    if person.villager is None:
        if person.officials:
            await message.answer(_("Asking a policy question is for registered villagers."))
        else:
            await message.answer(_("Please send /start to register first."))
        return
    await state.set_state(Ask.question)
    await state.update_data(ask={"key": secrets.token_urlsafe(16)})
    await message.answer(
        _(
            "What would you like to know? Type your question in a sentence. I will look in "
            "the township's answers first."
        ),
        reply_markup=keyboards.faq_cancel(),
    )


def _entry_text(match: faq.Match, language: str) -> str:
    return "\n".join([
        _("❓ {question}").format(question=match.entry.question_in(language)),
        _("💡 {answer}").format(answer=match.entry.answer_in(language)),
    ])


#: The report button goes on to the report flow, which comes after this one.
NOT_A_MENU_BUTTON = ~Pressed(keyboards.REPORT)


@routes.message(Ask.question, F.text, ~F.text.startswith("/"), NOT_A_MENU_BUTTON)
async def question_written(message: Message, state: FSMContext, person: Person) -> None:
    data = (await state.get_data()).get("ask")
    if data is None or person.villager is None:
        await _done(state)
        return
    question = " ".join((message.text or "").split())
    if len(question) > QUESTION_MAX:
        await message.answer(
            _(
                "That question is too long: {length} characters. Please keep it within "
                "{limit} and send it again."
            ).format(length=len(question), limit=QUESTION_MAX),
            reply_markup=keyboards.faq_cancel(),
        )
        return
    matches = await faq.find(person.villager.township_id, question)  # type: ignore[attr-defined]
    data.update(question=question, shown=[match.entry.id for match in matches])
    await state.update_data(ask=data)
    await state.set_state(Ask.verdict)
    if not matches:
        await message.answer(
            _(
                "The township's answers do not cover this yet. Send your question to the "
                "officials? They will answer you here."
            ),
            reply_markup=keyboards.faq_nothing_found(),
        )
        return
    texts = [_entry_text(match, person.language) for match in matches]
    await message.answer(
        "\n\n".join([*texts, _("Did this answer your question?")]),
        reply_markup=keyboards.faq_verdict(),
    )


@routes.message(Ask.question, ~F.text.startswith("/"), NOT_A_MENU_BUTTON)
async def expected_a_question(message: Message) -> None:
    await message.answer(
        _("Please type your question as text."), reply_markup=keyboards.faq_cancel()
    )


@routes.message(Ask.verdict, ~F.text.startswith("/"), NOT_A_MENU_BUTTON)
async def expected_a_verdict(message: Message) -> None:
    await message.answer(_("Please use the buttons above."))


@routes.callback_query(StateFilter(Ask), FaqVerdict.filter())
async def verdict(
    query: CallbackQuery, callback_data: FaqVerdict, state: FSMContext, person: Person
) -> None:
    data = (await state.get_data()).get("ask")
    message = query.message
    step = await state.get_state()
    villager = person.villager
    if data is None or villager is None or not isinstance(message, Message):
        await _answer(query, _("This button is no longer active."), alert=True)
        return
    action = callback_data.action
    if action == "cancel":
        await _answer(query)
        await _strip_buttons(message)
        await _done(state)
        await message.answer(_("Nothing was sent."), reply_markup=keyboards.villager_menu())
        return
    if step != Ask.verdict.state or "question" not in data:
        await _answer(query, _("This button is no longer active."), alert=True)
        return
    if action == "yes" and data.get("shown"):
        await faq.helped(villager.township_id, data["shown"])  # type: ignore[attr-defined]
        await _answer(query)
        await _strip_buttons(message)
        await _done(state)
        await message.answer(
            _("Glad it helped. Ask again any time."), reply_markup=keyboards.villager_menu()
        )
        return
    if action != "ask":
        await _answer(query, _("This button is no longer active."), alert=True)
        return
    try:
        change = await faq.ask_officials(villager, data["question"], key=data["key"])
    except (faq.NoPolicyCategory, NoResponsibleUnit, cases.CaseRefused):
        await _answer(
            query,
            _(
                "The township does not take questions here yet. Please ask your village "
                "committee."
            ),
            alert=True,
        )
        return
    # The confirmation (number, unit, deadline, the menu) is queued with the case.
    await _done(state)
    await _answer(query, _("Submitted: {number}").format(number=change.case.number))
    await _strip_buttons(message)


@routes.callback_query(FaqVerdict.filter())
async def verdict_too_late(query: CallbackQuery) -> None:
    await _answer(query, _("This button is no longer active."), alert=True)


@routes.callback_query(ProposeFaq.filter())
async def propose(query: CallbackQuery, callback_data: ProposeFaq, person: Person) -> None:
    """One tap: the question and the official's answer wait for an administrator."""
    refusal = _("Only the official who answered this policy question can add it.")
    for official in person.officials:
        with contextlib.suppress(faq.ProposalRefused):
            await faq.propose(callback_data.case_id, official)
            break
    else:
        await _answer(query, refusal, alert=True)
        return
    await _answer(query, _("Proposed for the FAQ. An administrator reviews it in the back office."),
                  alert=True)
    if isinstance(query.message, Message):
        await _strip_buttons(query.message)
