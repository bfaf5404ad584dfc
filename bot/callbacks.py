"""Every button's payload, typed and versioned.

Each prefix ends in a version digit: when a payload's meaning changes, bump it, and buttons
left in old messages fail closed (they no longer parse) instead of doing the wrong thing.
Telegram caps callback data at 64 bytes; `tests/test_callbacks.py` checks the worst case.
"""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData

from bot.languages import LANGUAGES

MAX_CALLBACK_BYTES = 64


class ChooseTownship(CallbackData, prefix="t1"):
    township_id: int


class ChooseVillage(CallbackData, prefix="v1"):
    village_id: int


class ChooseGrid(CallbackData, prefix="g1"):
    """`grid_id` 0 means "I don't know my grid"."""

    grid_id: int


class ChooseLanguage(CallbackData, prefix="l1"):
    language: str


class EditProfile(CallbackData, prefix="p1"):
    field: str


class InviteOfficial(CallbackData, prefix="i1"):
    official_id: int


PROFILE_FIELDS = ("name", "village", "phone", "language")

#: Used by the size check: the largest payload each class can produce.
WORST_CASES: tuple[CallbackData, ...] = (
    ChooseTownship(township_id=2**31 - 1),
    ChooseVillage(village_id=2**31 - 1),
    ChooseGrid(grid_id=2**31 - 1),
    ChooseLanguage(language=max(LANGUAGES, key=len)),
    EditProfile(field=max(PROFILE_FIELDS, key=len)),
    InviteOfficial(official_id=2**31 - 1),
)
