"""The back office's words that code picks (statuses, refusals): msgids for the catalogs."""

from __future__ import annotations

from bot.cases import Refusal as CaseRefusal
from bot.i18n import N_
from bot.models import CaseStatus
from web.signin import Refusal as SignInRefusal

STATUS_NAMES: dict[CaseStatus, str] = {
    CaseStatus.NEW: N_("waiting to be accepted"),
    CaseStatus.ACCEPTED: N_("being handled"),
    CaseStatus.RESOLVED: N_("resolved, waiting for the villager's confirmation"),
    CaseStatus.CLOSED: N_("closed"),
}

SIGN_IN_REFUSALS: dict[SignInRefusal, str] = {
    SignInRefusal.UNKNOWN: N_("This sign-in link is not valid."),
    SignInRefusal.USED: N_("This sign-in link has been used already."),
    SignInRefusal.EXPIRED: N_("This sign-in link has expired."),
    SignInRefusal.NOT_OFFICIAL: N_("The back office on the web is for officials."),
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
NOT_ASSIGNABLE = N_("This person cannot be given this case.")
NOT_ALLOWED_TO_NOTE = N_(
    "Only the official handling this case, a dispatcher or a leader of its unit can write "
    "a note on it."
)

#: The deadlines offered with Assign, as on the button: hours and their labels.
DEADLINES: dict[int, str] = {
    4: N_("4 hours"), 24: N_("1 day"), 72: N_("3 days"), 168: N_("7 days"),
}
