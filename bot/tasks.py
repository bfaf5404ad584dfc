"""Township tasks (中心工作, 派单): the township's own work pushed down to its units.

A dispatcher or a leader gives a task (a title, what is to be done, photos, a deadline) to
some units (`bot.scope.task_targets`); each target unit gets its own case, in the same loop
as a villager's report: a card, accept, decline or escalate, assign, progress notes, resolve
only with evidence, reminders and supervision (督办). There is no villager: the creator, or a
township dispatcher, receives the evidence and accepts the result (`cases.confirm`) or sends
it back with a reason (`cases.send_back`, a reopen). The task and all its cases are made in one
transaction, so a task never goes to only some of its targets.

A task's cases are of the township's task category (`Category.task`), which the bot makes
and the directory never names; the digest, the dashboard and the red/grey list count them
apart from villagers' cases (`scheduler.figures`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot import cases, delivery, scope
from bot.i18n import N_, catalogs
from bot.languages import LANGUAGES
from bot.models import Case, CaseStatus, Category, Official, Task, Township, Unit
from bot.public_notices import clean

TITLE_MAX = 100
DESCRIPTION_MAX = cases.DESCRIPTION_MAX
PHOTOS_MAX = cases.PHOTOS_MAX
#: A task to more units than this is a mistake more often than a plan.
TARGETS_MAX = 200
#: How many tasks a list shows, newest first.
LIST_MAX = 20

#: The task category's code: a character the directory's codes never have, so a file
#: cannot name, change or deactivate it.
CATEGORY_CODE = "~task"
CATEGORY_NAME = N_("Township task")


class TaskRefusal(StrEnum):
    """Why a task was not created; the doors turn each into a sentence."""

    NOT_ALLOWED = "not_allowed"
    NEEDS_TITLE = "needs_title"
    TOO_LONG = "too_long"
    TOO_MANY_PHOTOS = "too_many_photos"
    NO_TARGETS = "no_targets"
    BAD_TARGET = "bad_target"
    PAST_DEADLINE = "past_deadline"


class TaskRefused(Exception):
    def __init__(self, reason: TaskRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


REFUSALS: dict[TaskRefusal, str] = {
    TaskRefusal.NOT_ALLOWED: N_("Only a dispatcher or a leader can give township tasks."),
    TaskRefusal.NEEDS_TITLE: N_("Please give the task a title."),
    TaskRefusal.TOO_LONG: N_("The title is at most 100 characters and the description at "
                             "most 2000."),
    TaskRefusal.TOO_MANY_PHOTOS: N_("At most 5 photos, please."),
    TaskRefusal.NO_TARGETS: N_("Please choose at least one unit."),
    TaskRefusal.BAD_TARGET: N_("You cannot give a task to one of the units chosen."),
    TaskRefusal.PAST_DEADLINE: N_("The deadline must be in the future."),
}


def refusal_text(refused: TaskRefused, language: str) -> str:
    return catalogs().text(REFUSALS[refused.reason], language)


def _now() -> datetime:
    return datetime.now(UTC)


async def task_category(township: Township) -> Category:
    """The township's category for its tasks' cases, made on the first task."""
    found = await Category.get_or_none(township_id=township.id, code=CATEGORY_CODE)
    if found is not None:
        return found
    names = {language: catalogs().text(CATEGORY_NAME, language) for language in LANGUAGES}
    with contextlib.suppress(IntegrityError):  # another process made it first
        return await Category.create(
            township_id=township.id, code=CATEGORY_CODE, name=names[township.language],
            names=names, position=10_000, task=True,
        )
    return await Category.get(township_id=township.id, code=CATEGORY_CODE)


async def create(
    creator: Official,
    *,
    title: str,
    description: str = "",
    photos: Sequence[str] = (),
    targets: Sequence[int],
    deadline: datetime,
    key: str | None = None,
    at: datetime | None = None,
) -> Task:
    """A task and one case per target unit (ids), all or nothing. `key` names the draft it
    came from: creating it again returns the task it already made."""
    if key is not None and (earlier := await Task.get_or_none(key=key)) is not None:
        return earlier
    at = at or _now()
    title, description = clean(title), clean(description)
    if not scope.may_create_task(creator):
        raise TaskRefused(TaskRefusal.NOT_ALLOWED)
    if not title:
        raise TaskRefused(TaskRefusal.NEEDS_TITLE)
    if len(title) > TITLE_MAX or len(description) > DESCRIPTION_MAX:
        raise TaskRefused(TaskRefusal.TOO_LONG)
    if len(photos) > PHOTOS_MAX:
        raise TaskRefused(TaskRefusal.TOO_MANY_PHOTOS)
    if deadline <= at:
        raise TaskRefused(TaskRefusal.PAST_DEADLINE)
    wanted = list(dict.fromkeys(targets))
    if not wanted:
        raise TaskRefused(TaskRefusal.NO_TARGETS)
    allowed = {unit.id: unit for unit in await scope.task_targets(creator)}
    if len(wanted) > TARGETS_MAX or any(unit_id not in allowed for unit_id in wanted):
        raise TaskRefused(TaskRefusal.BAD_TARGET)
    township = await Township.get(id=creator.township_id)  # type: ignore[attr-defined]
    category = await task_category(township)
    # The task category's time to accept, cut to the task's deadline: the same for every unit.
    accept_by = min(await cases.accept_deadline(category, at), deadline)
    try:
        async with in_transaction():
            task = await Task.create(
                township=township, title=title, description=description, photos=list(photos),
                creator=creator, deadline=deadline, key=key, created_at=at,
            )
            for unit_id in wanted:
                await cases.open_task_case(
                    task, township, creator, allowed[unit_id], category,
                    accept_by=accept_by, at=at,
                )
    except IntegrityError:
        # The same draft, created twice at once: the other one made the task.
        if key is None or (earlier := await Task.get_or_none(key=key)) is None:
            raise
        return earlier
    delivery.wake()
    return task


# ---- progress -------------------------------------------------------------------------------


@dataclass
class Target:
    """One target unit's case, as the creator follows it."""

    case: Case
    unit: Unit
    overdue: bool

    @property
    def waiting_review(self) -> bool:
        return self.case.status == CaseStatus.RESOLVED


@dataclass
class Progress:
    """How far a task has come: its targets, and the counts the creator reads first."""

    task: Task
    targets: list[Target] = field(default_factory=list)

    def _count(self, *statuses: CaseStatus) -> int:
        return sum(target.case.status in statuses for target in self.targets)

    @property
    def total(self) -> int:
        return len(self.targets)

    @property
    def waiting(self) -> int:
        """Not yet accepted by anyone."""
        return self._count(CaseStatus.NEW)

    @property
    def accepted(self) -> int:
        """Taken (being handled, resolved or closed)."""
        return self._count(CaseStatus.ACCEPTED, CaseStatus.RESOLVED, CaseStatus.CLOSED)

    @property
    def resolved(self) -> int:
        """Resolved with evidence, whether or not reviewed yet."""
        return self._count(CaseStatus.RESOLVED, CaseStatus.CLOSED)

    @property
    def to_review(self) -> int:
        return self._count(CaseStatus.RESOLVED)

    @property
    def done(self) -> int:
        """The result accepted."""
        return self._count(CaseStatus.CLOSED)

    @property
    def overdue(self) -> int:
        return sum(target.overdue for target in self.targets)

    @property
    def sent_back(self) -> int:
        return sum(target.case.reopen_count > 0 for target in self.targets)


def past_deadline(
    status: str,
    accept_by: datetime | None,
    resolve_by: datetime | None,
    deadline: datetime | None,
    at: datetime,
) -> bool:
    """Open and late at `at`: not accepted by `accept_by`, not resolved by `resolve_by`, or
    (a task's case, `deadline` given) not resolved by the task's deadline, which stands
    however often an escalation gives the unit above fresh time. On a case's columns, so
    that the figures read it without loading cases (`scheduler.figures.tasks`)."""
    if status not in (CaseStatus.NEW, CaseStatus.ACCEPTED):
        return False
    if deadline is not None and deadline < at:
        return True
    if status == CaseStatus.NEW:
        return accept_by is not None and accept_by < at
    return resolve_by is not None and resolve_by < at


def is_overdue(case: Case, at: datetime, deadline: datetime | None = None) -> bool:
    return past_deadline(case.status, case.accept_by, case.resolve_by, deadline, at)


async def progress(task: Task, *, at: datetime | None = None) -> Progress:
    at = at or _now()
    rows = await Case.filter(task_id=task.id).order_by("id").prefetch_related("unit")
    return Progress(
        task, [Target(case, case.unit, is_overdue(case, at, task.deadline)) for case in rows]
    )


async def followed_by(official: Official, *, limit: int = LIST_MAX) -> list[Task]:
    """The tasks `official` may follow (`scope.may_follow_task`), newest first."""
    query = Task.filter(township_id=official.township_id)  # type: ignore[attr-defined]
    if not scope.may_follow_task_everywhere(official):
        query = query.filter(creator_id=official.id)
    return await query.order_by("-created_at", "-id").limit(limit)
