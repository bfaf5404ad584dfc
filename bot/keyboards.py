"""Every keyboard, built from callbacks and catalog strings."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder, ReplyKeyboardBuilder

from bot.callbacks import (
    CaseAction,
    ChooseCategory,
    ChooseGrid,
    ChooseLanguage,
    ChooseTownship,
    ChooseVillage,
    EditProfile,
    InviteOfficial,
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
SEND_LOCATION = N_("📍 Send my location")

#: What a language calls itself; rendered in that language, so each reads its own name.
LANGUAGE_NAME = N_("English")


def villager_menu() -> ReplyKeyboardMarkup:
    builder = ReplyKeyboardBuilder()
    builder.button(text=_(REPORT))  # the first and widest button: what villagers come for
    builder.button(text=_(MY_CASES))
    builder.button(text=_(PROFILE))
    builder.button(text=_(LANGUAGE))
    builder.button(text=_(HELP))
    builder.adjust(1, 2, 2)
    return builder.as_markup(resize_keyboard=True, is_persistent=True)


def no_keyboard() -> ReplyKeyboardRemove:
    return ReplyKeyboardRemove()


def _choices(
    rows: list[tuple[str, CallbackData]], *, columns: int | None = None
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for text, payload in rows:
        builder.button(text=text, callback_data=payload)
    builder.adjust(columns or (1 if len(rows) <= 4 else 2))
    return builder.as_markup()


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
    builder = ReplyKeyboardBuilder()
    builder.add(KeyboardButton(text=_(SHARE_PHONE), request_contact=True))
    builder.button(text=_(SKIP))
    builder.adjust(1)
    return builder.as_markup(resize_keyboard=True, one_time_keyboard=True)


def languages() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for language in LANGUAGES:
        builder.button(
            text=catalogs().text(LANGUAGE_NAME, language),
            callback_data=ChooseLanguage(language=language),
        )
    builder.adjust(1)
    return builder.as_markup()


def profile() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=_("Change name"), callback_data=EditProfile(field="name"))
    builder.button(text=_("Change village or grid"), callback_data=EditProfile(field="village"))
    builder.button(text=_("Change phone"), callback_data=EditProfile(field="phone"))
    builder.button(text=_("Change language"), callback_data=EditProfile(field="language"))
    builder.adjust(2, 2)
    return builder.as_markup()


def officials_to_invite(choices: list[Official], language: str) -> InlineKeyboardMarkup:
    return _choices(
        [(o.display_name(language), InviteOfficial(official_id=o.id)) for o in choices],
        columns=2,
    )


def open_cases(cases: list[Case]) -> InlineKeyboardMarkup:
    """One button per listed case, opening its timeline."""
    return _choices(
        [(case.number, CaseAction(case_id=case.id, action="open")) for case in cases], columns=2
    )


# ---- the report flow --------------------------------------------------------------------


def _report_controls(builder: InlineKeyboardBuilder, step: str, *, back: bool = True) -> None:
    if back:
        builder.button(text=_("⬅️ Back"), callback_data=ReportStep(action="back", step=step))
    builder.button(text=_("✖️ Cancel"), callback_data=ReportStep(action="cancel", step=step))


def report_categories(
    choices: list[Category], language: str, *, back: bool
) -> InlineKeyboardMarkup:
    """Headings or the categories under one: two per row, then Back and Cancel."""
    builder = InlineKeyboardBuilder()
    for category in choices:
        builder.button(
            text=category.display_name(language),
            callback_data=ChooseCategory(category_id=category.id),
        )
    _report_controls(builder, "category", back=back)
    controls = 2 if back else 1
    builder.adjust(*([2] * (len(choices) // 2)), *([1] * (len(choices) % 2)), controls)
    return builder.as_markup()


def report_step(step: str, *, done: bool = False, skip: bool = False) -> InlineKeyboardMarkup:
    """The controls under a step's question: Done or Skip when the step allows, Back, Cancel."""
    builder = InlineKeyboardBuilder()
    if done:
        builder.button(text=_("✅ Done"), callback_data=ReportStep(action="done", step=step))
    if skip:
        builder.button(text=_(SKIP), callback_data=ReportStep(action="skip", step=step))
    _report_controls(builder, step)
    builder.adjust(*([1] if done or skip else []), 2)
    return builder.as_markup()


def send_location() -> ReplyKeyboardMarkup:
    builder = ReplyKeyboardBuilder()
    builder.add(KeyboardButton(text=_(SEND_LOCATION), request_location=True))
    return builder.as_markup(resize_keyboard=True, one_time_keyboard=True)


def report_summary(*, anonymous: bool) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=_("✅ Submit"), callback_data=ReportStep(action="submit", step="summary"))
    builder.button(text=_("✏️ Edit"), callback_data=ReportStep(action="edit", step=""))
    builder.button(
        text=_("☑️ Report anonymously") if anonymous else _("☐ Report anonymously"),
        callback_data=ReportStep(action="anonymous", step="summary"),
    )
    _report_controls(builder, "summary")
    builder.adjust(2, 1, 2)
    return builder.as_markup()


def report_edit() -> InlineKeyboardMarkup:
    """Which step to change; each returns to the summary when done."""
    builder = InlineKeyboardBuilder()
    for step, label in (
        ("category", _("Category")),
        ("description", _("Description")),
        ("photos", _("Photos")),
        ("location", _("Location")),
    ):
        builder.button(text=label, callback_data=ReportStep(action="edit", step=step))
    builder.button(
        text=_("⬅️ Back to the summary"), callback_data=ReportStep(action="edit", step="summary")
    )
    builder.adjust(2, 2, 1)
    return builder.as_markup()


def report_resume() -> InlineKeyboardMarkup:
    """A draft is waiting: continue it, start over, or drop it."""
    builder = InlineKeyboardBuilder()
    builder.button(
        text=_("▶️ Continue the report"), callback_data=ReportStep(action="resume", step="")
    )
    builder.button(text=_("🔄 Start over"), callback_data=ReportStep(action="restart", step=""))
    builder.button(text=_("✖️ Cancel"), callback_data=ReportStep(action="cancel", step=""))
    builder.adjust(1)
    return builder.as_markup()
