"""Every button's payload, typed and versioned.

Each prefix ends in a version digit: when a payload's meaning changes, bump it, and buttons
left in old messages fail closed (they no longer parse) instead of doing the wrong thing.
Telegram caps callback data at 64 bytes; `tests/test_callbacks.py` checks the worst case.
"""

from __future__ import annotations

from typing import Annotated

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

from bot.languages import LANGUAGES

MAX_CALLBACK_BYTES = 64

#: A row id as the database stores it (a 32-bit integer on PostgreSQL). A forged payload with a
#: larger or negative number does not parse, so it never reaches a query: the tap falls through
#: to the stale-button answer.
RowId = Annotated[int, Field(ge=0, le=2**31 - 1)]


class ChooseTownship(CallbackData, prefix="t1"):
    township_id: RowId


class ChooseVillage(CallbackData, prefix="v1"):
    village_id: RowId


class ChooseGrid(CallbackData, prefix="g1"):
    """`grid_id` 0 means "I don't know my grid"."""

    grid_id: RowId


class ChooseLanguage(CallbackData, prefix="l1"):
    language: str


class EditProfile(CallbackData, prefix="p1"):
    field: str


class InviteOfficial(CallbackData, prefix="i1"):
    official_id: RowId


class InviteEveryone(CallbackData, prefix="i2"):
    """/invite's "everyone": a link for each official not yet joined, as a sheet to print."""

    township_id: RowId


class BindGroup(CallbackData, prefix="b1"):
    """In a group: this group serves the unit (bot.handlers.groups); 0 unbinds it."""

    unit_id: RowId


class ChooseCategory(CallbackData, prefix="k1"):
    """A category in the report flow: first level, then a leaf."""

    category_id: RowId


class ChoosePlace(CallbackData, prefix="h1"):
    """The village a reported problem is in (the location step's "another village")."""

    village_id: RowId


class ChoosePlaceGrid(CallbackData, prefix="h2"):
    """The grid of another village a reported problem is in; `grid_id` 0 means "I don't
    know", which leaves the case to that village's committee."""

    village_id: RowId
    grid_id: RowId


class ReportStep(CallbackData, prefix="r1"):
    """A control in the report flow: `action` is one of REPORT_ACTIONS, `step` what it acts on."""

    action: str
    step: str = ""


class CaseAction(CallbackData, prefix="c1"):
    """A button on a case card or in a case's timeline: `action` is one of CASE_ACTIONS."""

    case_id: RowId
    action: str


class AssignTo(CallbackData, prefix="a1"):
    """Assign `case_id` to `official_id`, due in `hours` (0: still choosing the deadline)."""

    case_id: RowId
    official_id: RowId
    hours: Annotated[int, Field(ge=0, le=24 * 366)] = 0


class FaqVerdict(CallbackData, prefix="q1"):
    """The villager on the FAQ's answers: `action` is one of FAQ_ACTIONS."""

    action: str


class ProposeFaq(CallbackData, prefix="f1"):
    """The official who answered a policy question offers it to the FAQ."""

    case_id: RowId


class SupporterRate(CallbackData, prefix="s2"):
    """A supporter's (附议) stars for a resolved case, 1 to 5; not the case's rating."""

    case_id: RowId
    stars: Annotated[int, Field(ge=1, le=5)]


class MeToo(CallbackData, prefix="m1"):
    """Before submitting: "me too" (附议) on an open case of the same problem."""

    case_id: RowId


class RateCase(CallbackData, prefix="s1"):
    """The villager's verdict: `stars` 1 to 5, or 0 for "not solved"."""

    case_id: RowId
    stars: Annotated[int, Field(ge=0, le=5)]


PROFILE_FIELDS = ("name", "village", "phone", "language")
REPORT_ACTIONS = (
    "back", "skip", "done", "submit", "edit", "cancel", "anonymous", "resume", "restart",
    "place", "different",
)
#: yes: it answered; ask: make it a case; cancel: neither.
FAQ_ACTIONS = ("yes", "ask", "cancel")
REPORT_STEPS = ("category", "description", "photos", "location", "summary")
CASE_ACTIONS = (
    "accept", "decline", "escalate", "assign", "note", "internal", "resolve", "solved",
    "unsolved", "open", "history", "done", "skip", "cancel", "confirm", "sendback",
)

#: Used by the size check: the largest payload each class can produce.
#: Steps of posting a notice (`NoticeStep.action`).
NOTICE_ACTIONS = (
    "kind", "done", "township", "villages", "village", "grid", "gridv", "gridg", "confirm",
    "cancel",
)


class NoticeStep(CallbackData, prefix="n1"):
    """A step of posting a public notice: `action` names it, `value` a kind, village or grid."""

    action: Annotated[str, Field(max_length=8)]
    value: RowId = 0


class OpenNotice(CallbackData, prefix="o1"):
    notice_id: RowId


class WithdrawNotice(CallbackData, prefix="w1"):
    notice_id: RowId


#: Steps of giving a township task (`TaskStep.action`).
TASK_ACTIONS = (
    "skip", "done", "cancel", "unit", "all", "more", "page", "days", "create", "back",
)


class TaskStep(CallbackData, prefix="x1"):
    """A step of giving a township task: `action` names it, `value` a unit, page or days."""

    action: Annotated[str, Field(max_length=8)]
    value: RowId = 0


class OpenTask(CallbackData, prefix="x2"):
    """A township task's progress, for its creator and the township's dispatchers."""

    task_id: RowId


WORST_CASES: tuple[CallbackData, ...] = (
    ChooseTownship(township_id=2**31 - 1),
    ChooseVillage(village_id=2**31 - 1),
    ChooseGrid(grid_id=2**31 - 1),
    ChooseLanguage(language=max(LANGUAGES, key=len)),
    EditProfile(field=max(PROFILE_FIELDS, key=len)),
    InviteOfficial(official_id=2**31 - 1),
    InviteEveryone(township_id=2**31 - 1),
    ChooseCategory(category_id=2**31 - 1),
    ChoosePlace(village_id=2**31 - 1),
    ChoosePlaceGrid(village_id=2**31 - 1, grid_id=2**31 - 1),
    ReportStep(action=max(REPORT_ACTIONS, key=len), step=max(REPORT_STEPS, key=len)),
    CaseAction(case_id=2**31 - 1, action=max(CASE_ACTIONS, key=len)),
    AssignTo(case_id=2**31 - 1, official_id=2**31 - 1, hours=24 * 366),
    RateCase(case_id=2**31 - 1, stars=5),
    NoticeStep(action=max(NOTICE_ACTIONS, key=len), value=2**31 - 1),
    OpenNotice(notice_id=2**31 - 1),
    WithdrawNotice(notice_id=2**31 - 1),
    FaqVerdict(action=max(FAQ_ACTIONS, key=len)),
    ProposeFaq(case_id=2**31 - 1),
    SupporterRate(case_id=2**31 - 1, stars=5),
    MeToo(case_id=2**31 - 1),
    TaskStep(action=max(TASK_ACTIONS, key=len), value=2**31 - 1),
    OpenTask(task_id=2**31 - 1),
)
