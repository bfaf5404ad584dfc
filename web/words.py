"""The back office's words that code picks (statuses, refusals): msgids for the catalogs."""

from __future__ import annotations

from bot.cases import Refusal as CaseRefusal
from bot.i18n import N_
from bot.models import CaseStatus, Level, Role, UnitKind
from web.signin import Refusal as SignInRefusal

STATUS_NAMES: dict[CaseStatus, str] = {
    CaseStatus.NEW: N_("waiting to be accepted"),
    CaseStatus.ACCEPTED: N_("being handled"),
    CaseStatus.RESOLVED: N_("resolved, waiting for the villager's confirmation"),
    CaseStatus.CLOSED: N_("closed"),
}

#: A township task's case waits for its creator's review, not a villager's confirmation.
TASK_STATUS_NAMES: dict[CaseStatus, str] = {
    **STATUS_NAMES,
    CaseStatus.RESOLVED: N_("resolved, waiting for review"),
}


def status_name(status: CaseStatus, *, task: bool) -> str:
    """A case's status in the words of its kind (msgid)."""
    return (TASK_STATUS_NAMES if task else STATUS_NAMES)[status]


#: The case list's filter by where a case came from (`views.KINDS`).
KIND_NAMES: dict[str, str] = {
    "reports": N_("Villagers' reports only"),
    "tasks": N_("Township tasks only"),
}
#: A township task's case's history in its own words: given, not reported; reviewed.
TASK_ACTIONS: dict[str, str] = {
    "report": N_("task given"),
    "confirm": N_("result accepted"),
    "reopen": N_("sent back"),
}

SIGN_IN_REFUSALS: dict[SignInRefusal, str] = {
    SignInRefusal.UNKNOWN: N_("This sign-in link is not valid."),
    SignInRefusal.USED: N_("This sign-in link has been used already."),
    SignInRefusal.EXPIRED: N_("This sign-in link has expired."),
    SignInRefusal.NOT_OFFICIAL: N_("The back office on the web is for officials."),
    SignInRefusal.FORGED: N_("Telegram's sign-in could not be checked. Please sign in again."),
    SignInRefusal.STALE: N_("This sign-in from Telegram is too old. Please sign in again."),
}

#: What an action on a case refused says; NOT_ALLOWED depends on the action (see views).
CASE_REFUSALS: dict[CaseRefusal, str] = {
    CaseRefusal.WRONG_STATE: N_("This case has moved on: this action no longer applies to it."),
    CaseRefusal.TAKEN: N_("This case has moved on: this action no longer applies to it."),
    CaseRefusal.CHANGED: N_("Someone changed this case a moment ago. Please try again."),
    CaseRefusal.NEEDS_REASON: N_("Please write a few words."),
    CaseRefusal.TOO_LONG: N_("Please keep it within {limit} characters."),
    CaseRefusal.NOT_FOUND: N_("Please choose a person and a deadline."),
}
NOT_ALLOWED_TO_ASSIGN = N_("Only a dispatcher or a leader of the case's unit can assign it.")
NOT_ALLOWED_TO_REVIEW = N_("Only the task's creator or a dispatcher can review its result.")
NOT_ASSIGNABLE = N_("This person cannot be given this case.")
NOT_ALLOWED_TO_NOTE = N_(
    "Only the official handling this case, a dispatcher or a leader of its unit can write "
    "a note on it."
)

#: The deadlines offered with Assign, as on the button: hours and their labels.
DEADLINES: dict[int, str] = {
    4: N_("4 hours"), 24: N_("1 day"), 72: N_("3 days"), 168: N_("7 days"),
}

#: The directory's vocabulary as the directory page shows it (the file keeps its own codes).
UNIT_KINDS: dict[str, str] = {
    UnitKind.GRID: N_("grid"),
    UnitKind.VILLAGE: N_("village committee"),
    UnitKind.TOWNSHIP_TEAM: N_("township team for a village"),
    UnitKind.TOWNSHIP_OFFICE: N_("township office"),
    UnitKind.DEPARTMENT: N_("department"),
}
ROLES: dict[str, str] = {
    Role.MEMBER: N_("member"),
    Role.LEADER: N_("unit leader"),
    Role.DISPATCHER: N_("dispatcher"),
    Role.ADMIN: N_("administrator"),
}
LEVELS: dict[str, str] = {
    Level.GRID: N_("grid level"),
    Level.VILLAGE: N_("village level"),
    Level.TOWNSHIP: N_("township level"),
    Level.DEPARTMENT: N_("department level"),
}
