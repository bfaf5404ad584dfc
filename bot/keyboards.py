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
    ChooseGrid,
    ChooseLanguage,
    ChooseTownship,
    ChooseVillage,
    EditProfile,
    InviteOfficial,
)
from bot.i18n import N_, _, catalogs
from bot.languages import LANGUAGES
from bot.models import Case, Grid, Official, Township, Village

# Reply-keyboard labels: a press arrives as the label's text, so handlers match them in
# every language (see `bot.i18n.every_language`).
PROFILE = N_("👤 My profile")
LANGUAGE = N_("🌐 Language")
HELP = N_("❓ Help")
SHARE_PHONE = N_("📱 Share my phone number")
SKIP = N_("Skip")
MY_CASES = N_("📋 My cases")

#: What a language calls itself; rendered in that language, so each reads its own name.
LANGUAGE_NAME = N_("English")


def villager_menu() -> ReplyKeyboardMarkup:
    builder = ReplyKeyboardBuilder()
    builder.button(text=_(PROFILE))
    builder.button(text=_(LANGUAGE))
    builder.button(text=_(HELP))
    builder.adjust(2, 1)
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
