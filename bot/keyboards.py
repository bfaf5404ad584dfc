"""Every keyboard, built from callbacks and catalog strings.

`inline` and `reply` lay buttons out in rows. aiogram's keyboard builders do the same, but
copy every button already added on each addition (a deep copy per button, quadratic in the
keyboard's size): on the busiest screens that was a twentieth of the bot's time per update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from bot.callbacks import (
    CaseAction,
    ChooseCategory,
    ChooseGrid,
    ChooseLanguage,
    ChoosePlace,
    ChoosePlaceGrid,
    ChooseTownship,
    ChooseVillage,
    EditProfile,
    FaqVerdict,
    InviteEveryone,
    InviteOfficial,
    MeToo,
    ProposeFaq,
    ReportStep,
)
from bot.i18n import N_, _, catalogs
from bot.languages import LANGUAGES
from bot.models import Case, Category, Grid, Official, Township, Village

# Reply-keyboard labels: a press arrives as the label's text, so handlers match them in
# every language (see `bot.i18n.every_language`).
PROFILE = N_("👤 My profile")
LANGUAGE = N_("🌐 Language")
HELP = N_("❓ Help")
SHARE_PHONE = N_("📱 Share my phone number")
SKIP = N_("Skip")
MY_CASES = N_("📋 My cases")
REPORT = N_("📝 Report a problem")
ASK = N_("💬 Ask a question")
SEND_LOCATION = N_("📍 Send my location")
NOTICES = N_("📢 Notices")

#: What a language calls itself; rendered in that language, so each reads its own name.
LANGUAGE_NAME = N_("English")


Button = TypeVar("Button", InlineKeyboardButton, KeyboardButton)


def rows(buttons: Sequence[Button], widths: Sequence[int]) -> list[list[Button]]:
    """Buttons in rows of the given widths, the last width repeating (aiogram's `adjust`)."""
    laid: list[list[Button]] = []
    start = 0
    while start < len(buttons):
        width = widths[min(len(laid), len(widths) - 1)] if widths else 1
        laid.append(list(buttons[start:start + width]))
        start += width
    return laid


def button(text: str, payload: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=payload.pack())


def inline(buttons: Sequence[InlineKeyboardButton], *widths: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=rows(buttons, widths))


def reply(buttons: Sequence[KeyboardButton], *widths: int, **options: Any) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(keyboard=rows(buttons, widths), **options)


def villager_menu() -> ReplyKeyboardMarkup:
    return reply(
        [
            KeyboardButton(text=_(REPORT)),  # the first and widest: what villagers come for
            KeyboardButton(text=_(MY_CASES)),
            KeyboardButton(text=_(ASK)),
            KeyboardButton(text=_(NOTICES)),
            KeyboardButton(text=_(PROFILE)),
            KeyboardButton(text=_(LANGUAGE)),
            KeyboardButton(text=_(HELP)),
        ],
        1, 2, 3, resize_keyboard=True, is_persistent=True,
    )


def no_keyboard() -> ReplyKeyboardRemove:
    return ReplyKeyboardRemove()


def _choices(
    choices: list[tuple[str, CallbackData]], *, columns: int | None = None
) -> InlineKeyboardMarkup:
    return inline(
        [button(text, payload) for text, payload in choices],
        columns or (1 if len(choices) <= 4 else 2),
    )


def townships(choices: list[Township], language: str) -> InlineKeyboardMarkup:
    return _choices(
        [(t.display_name(language), ChooseTownship(township_id=t.id)) for t in choices]
    )


def villages(choices: list[Village], language: str) -> InlineKeyboardMarkup:
    return _choices(
        [(v.display_name(language), ChooseVillage(village_id=v.id)) for v in choices]
    )


def grids(choices: list[Grid], language: str) -> InlineKeyboardMarkup:
    rows = [(g.display_name(language), ChooseGrid(grid_id=g.id)) for g in choices]
    return _choices([*rows, (_("I don't know"), ChooseGrid(grid_id=0))])


def share_phone() -> ReplyKeyboardMarkup:
    return reply(
        [KeyboardButton(text=_(SHARE_PHONE), request_contact=True), KeyboardButton(text=_(SKIP))],
        1, resize_keyboard=True, one_time_keyboard=True,
    )


def languages() -> InlineKeyboardMarkup:
    return inline([
        button(catalogs().text(LANGUAGE_NAME, language), ChooseLanguage(language=language))
        for language in LANGUAGES
    ], 1)


def profile() -> InlineKeyboardMarkup:
    return inline([
        button(_("Change name"), EditProfile(field="name")),
        button(_("Change village or grid"), EditProfile(field="village")),
        button(_("Change phone"), EditProfile(field="phone")),
        button(_("Change language"), EditProfile(field="language")),
    ], 2, 2)


INVITE_EVERYONE = N_("🖨 Everyone, as a sheet to print")


def officials_to_invite(
    choices: list[Official], language: str, townships: list[Township]
) -> InlineKeyboardMarkup:
    """One button per official, and one per township for all its officials at once (a CSV
    and a sheet to print), named when there are several."""
    markup = _choices(
        [(o.display_name(language), InviteOfficial(official_id=o.id)) for o in choices],
        columns=2,
    )
    for township in townships:
        label = _(INVITE_EVERYONE)
        if len(townships) > 1:
            label = f"{label} · {township.display_name(language)}"
        markup.inline_keyboard.append(
            [button(label, InviteEveryone(township_id=township.id))]
        )
    return markup


def open_cases(cases: list[Case]) -> InlineKeyboardMarkup:
    """One button per listed case, opening its timeline."""
    return _choices(
        [(case.number, CaseAction(case_id=case.id, action="open")) for case in cases], columns=2
    )


# ---- policy questions -------------------------------------------------------------------


def faq_cancel() -> InlineKeyboardMarkup:
    return inline([button(_("✖️ Cancel"), FaqVerdict(action="cancel"))], 1)


def faq_verdict() -> InlineKeyboardMarkup:
    """Under the FAQ's answers: did they answer the question?"""
    return inline([
        button(_("👍 Yes, thank you"), FaqVerdict(action="yes")),
        button(_("👎 No, ask the officials"), FaqVerdict(action="ask")),
    ], 1)


def faq_nothing_found() -> InlineKeyboardMarkup:
    return inline([
        button(_("📨 Send it to the officials"), FaqVerdict(action="ask")),
        button(_("✖️ Cancel"), FaqVerdict(action="cancel")),
    ], 1)


def propose_faq(case_id: int) -> InlineKeyboardMarkup:
    return inline([button(_("📚 Add to the FAQ"), ProposeFaq(case_id=case_id))], 1)


# ---- the report flow --------------------------------------------------------------------


def _report_controls(step: str, *, back: bool = True) -> list[InlineKeyboardButton]:
    cancel = button(_("✖️ Cancel"), ReportStep(action="cancel", step=step))
    if not back:
        return [cancel]
    return [button(_("⬅️ Back"), ReportStep(action="back", step=step)), cancel]


def report_categories(
    choices: list[Category], language: str, *, back: bool
) -> InlineKeyboardMarkup:
    """Headings or the categories under one: two per row, then Back and Cancel."""
    controls = _report_controls("category", back=back)
    return inline(
        [
            *(button(c.display_name(language), ChooseCategory(category_id=c.id)) for c in choices),
            *controls,
        ],
        *([2] * (len(choices) // 2)), *([1] * (len(choices) % 2)), len(controls),
    )


#: The location step's way to a problem outside the reporter's own village.
ANOTHER_VILLAGE = N_("🏘 Another village")


def report_step(
    step: str, *, done: bool = False, skip: bool = False, place: bool = False
) -> InlineKeyboardMarkup:
    """The controls under a step's question: Done or Skip when the step allows, Another
    village on the location step, Back, Cancel."""
    first = [
        *([button(_("✅ Done"), ReportStep(action="done", step=step))] if done else []),
        *([button(_(SKIP), ReportStep(action="skip", step=step))] if skip else []),
        *([button(_(ANOTHER_VILLAGE), ReportStep(action="place", step=step))] if place else []),
    ]
    return inline([*first, *_report_controls(step)], *([1] * len(first)), 2)


#: "Me too" (附议) on a case offered before submitting.
ME_TOO = N_("🙋 Me too")


def same_problem(cases: list[Case]) -> InlineKeyboardMarkup:
    """One "me too" per offered case, then "mine is different", which submits the report."""
    return inline([
        *(button(f"{_(ME_TOO)} · {case.number}", MeToo(case_id=case.id)) for case in cases),
        button(_("➡️ No, mine is different"), ReportStep(action="different", step="summary")),
    ], 1)


def report_places(choices: list[Village], home: Village, language: str) -> InlineKeyboardMarkup:
    """Where the problem is: the reporter's own village first, then the township's others."""
    own = button(
        _("📍 In my village ({village})").format(village=home.display_name(language)),
        ChoosePlace(village_id=home.id),
    )
    others = [
        button(v.display_name(language), ChoosePlace(village_id=v.id))
        for v in choices
        if v.id != home.id
    ]
    return inline([own, *others], 1, 2)


def report_place_grids(
    village: Village, choices: list[Grid], language: str
) -> InlineKeyboardMarkup:
    """Which grid of another village: its grids, "I don't know" (its committee), and Back to
    the villages."""
    return inline([
        *(
            button(g.display_name(language), ChoosePlaceGrid(village_id=village.id, grid_id=g.id))
            for g in choices
        ),
        button(_("I don't know"), ChoosePlaceGrid(village_id=village.id, grid_id=0)),
        button(_("⬅️ Back"), ReportStep(action="place", step="location")),
    ], *([2] * (len(choices) // 2)), *([1] * (len(choices) % 2)), 1, 1)


def send_location() -> ReplyKeyboardMarkup:
    return reply(
        [KeyboardButton(text=_(SEND_LOCATION), request_location=True)],
        resize_keyboard=True, one_time_keyboard=True,
    )


def report_summary(*, anonymous: bool) -> InlineKeyboardMarkup:
    return inline([
        button(_("✅ Submit"), ReportStep(action="submit", step="summary")),
        button(_("✏️ Edit"), ReportStep(action="edit", step="")),
        button(
            _("☑️ Report anonymously") if anonymous else _("☐ Report anonymously"),
            ReportStep(action="anonymous", step="summary"),
        ),
        *_report_controls("summary"),
    ], 2, 1, 2)


def report_edit() -> InlineKeyboardMarkup:
    """Which step to change; each returns to the summary when done."""
    return inline([
        *(
            button(label, ReportStep(action="edit", step=step))
            for step, label in (
                ("category", _("Category")),
                ("description", _("Description")),
                ("photos", _("Photos")),
                ("location", _("Location")),
            )
        ),
        button(_("⬅️ Back to the summary"), ReportStep(action="edit", step="summary")),
    ], 2, 2, 1)


def report_resume() -> InlineKeyboardMarkup:
    """A draft is waiting: continue it, start over, or drop it."""
    return inline([
        button(_("▶️ Continue the report"), ReportStep(action="resume", step="")),
        button(_("🔄 Start over"), ReportStep(action="restart", step="")),
        button(_("✖️ Cancel"), ReportStep(action="cancel", step="")),
    ], 1)
