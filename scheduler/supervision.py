"""督办: reminders before a deadline, escalation after it, auto-close of unrated cases
(never of a township task's case, whose result is accepted by a person).

The database decides what is due. Every transition sets `Case.check_at` to its own moment;
the sweep takes the cases whose `check_at` has come (an index, so the cost follows the work
due, not the number of cases), does what is due for each, and writes the next moment the case
needs looking at. Nothing is held in memory between sweeps, so a restart loses nothing and a
sweep that runs late catches up.

Exactly once, with any number of schedulers on one database: a reminder is queued under a
unique key (case, deadline's window, point, chat) in the outbox, and escalations, overdue
flags and auto-close are transitions, which the case's version lets happen once.

Read once a batch: the sweep takes up to `BATCH` cases at a time and reads what they need of
the directory (townships, units, categories, officials and their accounts, robots) and the
events that start their windows in a few statements (`bot.snapshot`), so a case due costs its
own writes, not a walk of the directory. Written once a chunk: `CHUNK` cases are supervised in
one transaction, the cases as the batch read them (each write checks the version, so a case
changed since is left for the next pass), their notices written together at the end
(`bot.delivery.together`). A chunk that fails is undone and done again a case at a time, so
one broken case cannot stop the others.

Quiet hours (default 22:00–07:00, township time): what falls due for a case that is not an
emergency waits until they end; an emergency's reminders and escalations go out at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from datetime import datetime

from tortoise.transactions import in_transaction

from bot import cases, delivery, notices, scope, snapshot
from bot.cases import CaseRefused
from bot.models import Case, CaseEvent, CaseStatus
from bot.worktime import Calendar, calendar_of
from scheduler.policy import Point, Policy

log = logging.getLogger(__name__)

BATCH = 500
#: Cases supervised in one transaction: long enough to write their notices in a few
#: statements, short enough that a person's tap on one of them waits a moment at most.
CHUNK = 50

#: The events that start a unit's time to accept, and an assignee's time to resolve.
ACCEPT_WINDOW = ("report", "escalate", "decline")
RESOLVE_WINDOW = ("accept", "assign", "reopen")


@dataclass
class SweepReport:
    """What one sweep did, for the log and the tests."""

    reminders: int = 0
    escalations: int = 0
    overdue: int = 0
    closed: int = 0
    deferred: int = 0
    looked_at: int = 0
    errors: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.reminders or self.escalations or self.overdue or self.closed)

    def add(self, other: SweepReport) -> None:
        for counted in fields(self):
            setattr(self, counted.name, getattr(self, counted.name) + getattr(other, counted.name))


@dataclass(frozen=True)
class Step:
    """One thing due for a case at `moment`: a reminder (with its key) or a deadline."""

    moment: datetime
    kind: str  # "remind", "escalate", "overdue", "close"
    key: str | None = None
    level: int = 0
    #: A reminder is moot once its deadline has passed.
    until: datetime | None = None

    def due(self, now: datetime) -> bool:
        return self.moment <= now and (self.until is None or now < self.until)


#: A window's start, by case and window ("a" accept, "r" resolve), read for a whole batch.
Starts = dict[tuple[int, str], datetime]


async def window_starts(case_ids: list[int]) -> Starts:
    """When each case's accept and resolve windows started: its latest event of each."""
    starts: Starts = {}
    rows = await CaseEvent.filter(
        case_id__in=case_ids, action__in=ACCEPT_WINDOW + RESOLVE_WINDOW
    ).order_by("id").values_list("case_id", "action", "at")
    for case_id, action, at in rows:
        starts[(case_id, "a" if action in ACCEPT_WINDOW else "r")] = at
    return starts


async def _window_start(case: Case, window: str, starts: Starts | None) -> datetime:
    if starts is None:
        starts = await window_starts([case.id])
    return starts.get((case.id, window), case.created_at)


def _reminders(
    case: Case,
    calendar: Calendar,
    points: tuple[Point, ...],
    start: datetime,
    deadline: datetime,
    label: str,
) -> list[Step]:
    """The reminder moments of one window, counted in the category's kind of hours."""
    working = case.category.working_hours
    total = calendar.working_between(start, deadline) if working else deadline - start
    steps = []
    for index, point in enumerate(points):
        offset = point.offset(total)
        if offset is None:
            continue
        moment = calendar.add(start, offset.total_seconds() / 3600, working=working)
        key = f"remind:{case.id}:{label}:{int(start.timestamp())}:{index}"
        steps.append(Step(moment, "remind", key, until=deadline))
    return sorted(steps, key=lambda step: step.moment)


async def plan(case: Case, policy: Policy, starts: Starts | None = None) -> list[Step]:
    """Everything still ahead for the case, earliest first (reminders, then the deadline);
    `starts`, the batch's window starts, when read already."""
    calendar = calendar_of(case.township)
    if case.status == CaseStatus.NEW and case.accept_by is not None:
        start = await _window_start(case, "a", starts)
        steps = _reminders(case, calendar, policy.accept_points, start, case.accept_by, "a")
        if await scope.escalation_target(case) is not None:
            steps.append(Step(case.accept_by, "escalate"))
        else:
            # The top of its chain: nowhere to escalate, so its supervisors are told, one
            # level a day like an overdue case (bot.scope.supervision).
            levels = len(await scope.supervision(case))
            if case.overdue_level < levels:
                moment = calendar.add(
                    case.accept_by,
                    case.overdue_level * policy.overdue_every_hours,
                    working=case.category.working_hours,
                )
                steps.append(Step(moment, "overdue", level=case.overdue_level + 1))
        return steps
    if case.status == CaseStatus.ACCEPTED and case.resolve_by is not None:
        start = await _window_start(case, "r", starts)
        steps = _reminders(case, calendar, policy.resolve_points, start, case.resolve_by, "r")
        # Each level of the case's own chain once (bot.scope: a confidential case climbs
        # its own units, never the dispatchers').
        levels = len(await scope.supervision(case))
        if case.overdue_level < levels:
            moment = calendar.add(
                case.resolve_by,
                case.overdue_level * policy.overdue_every_hours,
                working=case.category.working_hours,
            )
            steps.append(Step(moment, "overdue", level=case.overdue_level + 1))
        return steps
    if case.status == CaseStatus.RESOLVED and case.resolved_at is not None:
        if case.task_id is not None:  # type: ignore[attr-defined]
            return []  # a township task's result waits for its reviewer's word (bot.tasks)
        return [Step(case.resolved_at + policy.auto_close, "close")]
    return []


async def _move(case: Case, step: Step, now: datetime, report: SweepReport) -> None:
    """A deadline's transition, from the case as the sweep read it."""
    if step.kind == "escalate":
        await cases.escalate(case.id, None, at=now, read=case)
        report.escalations += 1
    elif step.kind == "overdue":
        await cases.flag_overdue(case.id, step.level, at=now, read=case)
        report.overdue += 1
    elif step.kind == "close":
        await cases.close(case.id, at=now, read=case)
        report.closed += 1


async def supervise(
    case: Case, now: datetime, policy: Policy, report: SweepReport, starts: Starts | None = None
) -> None:
    """Do what is due for one case now, then write when to look at it next; in a transaction
    (the sweep's), so a reminder is queued if and only if that moment is written."""
    steps = await plan(case, policy, starts)
    due = [step for step in steps if step.due(now)]
    upcoming = [step.moment for step in steps if step.moment > now]
    next_check = min(upcoming, default=None)
    reminder = None
    if due:
        quiet = None if case.category.emergency else policy.quiet_until(now, case.township.timezone)
        if quiet is not None:
            report.deferred += 1
            next_check = quiet
        else:
            deadline = [step for step in due if step.kind != "remind"]
            # A deadline that passed makes its reminders moot; of several reminders missed
            # (the bot was down), only the latest is worth sending.
            step = deadline[0] if deadline else due[-1]
            if step.kind == "remind":
                reminder = step.key
            else:
                try:
                    await _move(case, step, now, report)
                except CaseRefused as refused:
                    # Another scheduler, or a person, changed the case first: look again.
                    log.info("case %s: %s refused (%s)", case.number, step.kind, refused.reason)
                return  # the transition set check_at to now: the next pass plans afresh
    # Written first: the version proves the case is as read, and the row stays held until the
    # commit, so the reminder tells of the case as it is.
    written = await Case.filter(id=case.id, version=case.version).update(check_at=next_check)
    if written and reminder is not None:
        report.reminders += bool(await notices.remind(case, reminder))


async def _supervise_together(
    batch: list[Case], now: datetime, policy: Policy, report: SweepReport, starts: Starts
) -> None:
    """`batch` in one transaction, its notices written at its end; `report` only if it
    commits."""
    done = SweepReport()
    async with in_transaction(), delivery.together(), notices.cards_of([c.id for c in batch]):
        for case in batch:
            with delivery.for_case(case):  # its category read: its rows' priority is known
                await supervise(case, now, policy, done, starts)
    report.add(done)


def _in_place(case: Case, snap: snapshot.Snapshot) -> Case:
    case.category = snap.categories[case.category_id]  # type: ignore[attr-defined]
    case.township = snap.townships[case.township_id]  # type: ignore[attr-defined]
    return case


async def _supervise_chunk(
    chunk: list[Case], now: datetime, policy: Policy, report: SweepReport, starts: Starts,
    snap: snapshot.Snapshot,
) -> None:
    try:
        await _supervise_together(chunk, now, policy, report, starts)
        return
    except Exception:
        if len(chunk) == 1:
            raise
        log.warning("sweep: a chunk of %d cases failed; each on its own", len(chunk),
                    exc_info=True)
    # Undone: read again (the failed try changed the objects), then each in its own.
    again = await Case.filter(id__in=[case.id for case in chunk]).order_by("check_at", "id")
    for case in again:
        try:
            await _supervise_together([_in_place(case, snap)], now, policy, report, starts)
        except Exception as error:  # one broken case must not stop the others
            log.exception("supervising case %s failed", case.number)
            report.errors.append(f"{case.number}: {error}")


async def sweep(now: datetime, policy: Policy) -> SweepReport:
    """Every case whose moment has come, once each, in the order they fell due."""
    report = SweepReport()
    seen: set[int] = set()
    while True:
        batch = (
            await Case.filter(check_at__lte=now)
            .exclude(id__in=seen or [0])
            .order_by("check_at", "id")
            .limit(BATCH)
        )
        if not batch:
            break
        snap = await snapshot.load(
            {case.township_id for case in batch},  # type: ignore[attr-defined]
            {case.reporter_id for case in batch if case.reporter_id is not None},  # type: ignore[attr-defined]
        )
        starts = await window_starts([case.id for case in batch])
        seen.update(case.id for case in batch)
        report.looked_at += len(batch)
        with snapshot.reading(snap):
            for start in range(0, len(batch), CHUNK):
                chunk = [_in_place(case, snap) for case in batch[start : start + CHUNK]]
                try:
                    await _supervise_chunk(chunk, now, policy, report, starts, snap)
                except Exception as error:  # a chunk of one: that case is broken
                    log.exception("supervising case %s failed", chunk[0].number)
                    report.errors.append(f"{chunk[0].number}: {error}")
                delivery.wake()  # committed: the courier may look now
    if report or report.errors:
        log.info("sweep at %s: %s", now.isoformat(timespec="seconds"), report)
    return report

