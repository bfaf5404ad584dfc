"""The figures of a township for any period and place: the weekly digest's and the dashboard's.

One module computes both so that a number means the same in the township's channel and on the
back office's screen (the definitions are in the README, under "Weekly digest"). It lives in
`scheduler/` beside the digest and the red/grey list that were its first readers; the back
office imports it from here as it imports `ranking` and `repeats`.

Everything is counted from the period's case history: one query over the indexed range of
`case_event.at`, joined to the few columns of each case it needs (no model objects, so a month
of a busy township stays fast), and one query for the cases overdue now. A place (a village, a
unit: the unit that has the case now, as in the case list) and a scope (the cases the reader
may see, `bot.scope.cases_seen_by`) narrow both. No villager's name, phone or description is
read: cases appear by number, places by name.

The township's own tasks (中心工作, `bot.tasks`) are cases too, but no villager reported them:
every figure about villagers' cases leaves them out (`VILLAGERS`), and `tasks` counts them
apart, per unit, for the digest's section, the dashboard's card and the red/grey list's line
of units that let a task's deadline pass.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tortoise import connections
from tortoise.expressions import Q
from tortoise.queryset import ValuesListQuery

from bot.i18n import N_
from bot.models import Case, CaseEvent, CaseStatus, Category, Township, Unit, Village
from bot.notices import text
from bot.tasks import past_deadline
from scheduler.policy import Policy

TOP_CATEGORIES = 5
OVERDUE_LISTED = 20
ACCEPTANCE = ("accept", "assign")
CLOSING = ("rate", "close")
#: The actions the figures read; other events (notes, escalations) are not fetched.
COUNTED = ("report", "accept", "assign", "resolve", "rate", "close", "reopen")
#: Cases looked up by id in one statement (below every driver's limit on parameters).
CASES_AT_ONCE = 5000
#: A trend over more days than this is drawn per week rather than per day.
DAILY_UP_TO = 31
#: Villagers' cases: not a township task's (whose figures are `tasks`).
VILLAGERS = Q(task_id__isnull=True)


@dataclass
class Line:
    """One row of a table by village, unit or category."""

    name: str
    received: int = 0
    resolved: int = 0
    overdue: int = 0
    completed: int = 0  # received during the period and resolved during it
    rated: int = 0
    satisfied: int = 0  # rated 4 or 5 stars

    @property
    def completion_rate(self) -> float | None:
        return rate(self.completed, self.received)

    @property
    def satisfaction_rate(self) -> float | None:
        return rate(self.satisfied, self.rated)

    def counts(self) -> bool:
        return bool(self.received or self.resolved or self.overdue or self.rated)


#: The digest's name for a line of the table by village.
VillageLine = Line


@dataclass
class Figures:
    """One township's period. Rates are fractions (None when there was nothing to count)."""

    township: str
    period: str
    received: int = 0
    accepted: int = 0
    resolved: int = 0
    closed: int = 0
    completion_rate: float | None = None
    satisfaction_rate: float | None = None
    on_time_acceptance: float | None = None
    on_time_resolution: float | None = None
    median_to_accept: timedelta | None = None
    median_to_resolve: timedelta | None = None
    reopen_rate: float | None = None
    overdue_count: int = 0
    villages: list[Line] = field(default_factory=list)
    units: list[Line] = field(default_factory=list)
    by_category: list[Line] = field(default_factory=list)  # every category with a count
    categories: list[tuple[str, int]] = field(default_factory=list)  # the top ones received
    overdue: list[tuple[str, str]] = field(default_factory=list)  # (case number, unit)
    repeats: list[tuple[str, str, int]] = field(default_factory=list)  # village, category, n
    daily: list[tuple[date, int, int]] = field(default_factory=list)  # day, received, resolved
    tasks: TaskFigures = field(default_factory=lambda: TaskFigures(TaskLine("")))


def rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _median(durations: list[timedelta]) -> timedelta | None:
    if not durations:
        return None
    return timedelta(seconds=statistics.median(d.total_seconds() for d in durations))


def _by(moment: datetime, deadline: datetime | None) -> bool:
    return deadline is None or moment <= deadline


def days(start: datetime, end: datetime) -> list[date]:
    """The calendar days of [start, end) in the start's zone."""
    first, last = start.date(), (end - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class _Event:
    """One event of the period with the columns of its case the figures need."""

    case_id: int
    at: datetime
    action: str
    from_status: str | None
    created_at: datetime
    accept_by: datetime | None
    resolve_by: datetime | None
    rating: int | None
    village_id: int
    unit_id: int
    category_id: int


_CASE_COLUMNS = (
    "id", "created_at", "accept_by", "resolve_by", "rating", "village_id", "unit_id",
    "category_id",
)


def moment(value: datetime | str | None) -> datetime | None:
    """A time as the driver gives it: asyncpg an aware datetime, SQLite the text tortoise
    wrote (ISO 8601, with its offset)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


async def raw_rows(query: ValuesListQuery, times: tuple[int, ...]) -> list[list[Any]]:
    """The rows of a `values_list` query without tortoise's conversion of every value, which
    costs more than the query itself for the ten thousand events of a busy month; the
    columns at `times` are made datetimes (`moment`), the others are ints and text as sent."""
    query.sql()  # builds the statement, with the parameters tortoise would send
    sql, values = query.query.get_parameterized_sql()
    _, rows = await connections.get("default").execute_query(sql, values)
    width = len(query.fields)
    found = []
    for row in rows:
        cells = [row[str(i)] for i in range(width)]
        for i in times:
            cells[i] = moment(cells[i])
        found.append(cells)
    return found


def _place(prefix: str, village: int | None, unit: int | None) -> dict[str, int]:
    found = {}
    if village is not None:
        found[f"{prefix}village_id"] = village
    if unit is not None:
        found[f"{prefix}unit_id"] = unit
    return found


async def _events(
    township: Township, start: datetime, end: datetime, seen: Q | None,
    village: int | None, unit: int | None,
) -> list[_Event]:
    """The period's events of the cases counted, each with its case's columns.

    Not one join: the events of the period (the index on `at`), then their cases by primary
    key, `CASES_AT_ONCE` ids a statement, where the township, place and scope choose among
    them. Joined or as a subquery, PostgreSQL reads the whole case table to hash it instead."""
    since, until = start.astimezone(UTC), end.astimezone(UTC)
    events = await raw_rows(
        CaseEvent.filter(at__gte=since, at__lt=until, action__in=COUNTED)
        .order_by("at", "id").values_list("case_id", "at", "action", "from_status"),
        (1,),
    )
    ids = sorted({row[0] for row in events})
    of: dict[int, list[Any]] = {}
    for first in range(0, len(ids), CASES_AT_ONCE):
        cases = Case.filter(
            VILLAGERS, id__in=ids[first:first + CASES_AT_ONCE], township_id=township.id,
            **_place("", village, unit),
        )
        if seen is not None:
            cases = cases.filter(seen)
        rows = await raw_rows(cases.values_list(*_CASE_COLUMNS), (1, 2, 3))
        of.update((row[0], row[1:]) for row in rows)
    return [_Event(case_id, at, action, was, *of[case_id])
            for case_id, at, action, was in events if case_id in of]


def overdue_now(now: datetime) -> Q:
    """Open cases past their deadline: not accepted by accept_by, or not resolved by
    resolve_by (the case list's "overdue" filter is the same)."""
    return Q(status=CaseStatus.NEW, accept_by__lt=now) | Q(
        status=CaseStatus.ACCEPTED, resolve_by__lt=now
    )


async def _overdue(
    township: Township, now: datetime, seen: Q | None, village: int | None, unit: int | None
) -> list[tuple[str, int, int, int]]:
    """(number, unit, village, category) of every villager's case overdue now, by number."""
    query = Case.filter(
        overdue_now(now), VILLAGERS, township_id=township.id, **_place("", village, unit)
    )
    if seen is not None:
        query = query.filter(seen)
    # Sorted here: ordered by number, SQLite walks the whole table along the number's index.
    rows = await query.values_list("number", "unit_id", "village_id", "category_id")
    return sorted(tuple(row) for row in rows)  # type: ignore[misc]


def _first_per_case(events: Iterable[_Event]) -> list[_Event]:
    seen: set[int] = set()
    first = []
    for event in events:
        if event.case_id not in seen:
            seen.add(event.case_id)
            first.append(event)
    return first


async def count(
    township: Township,
    start: datetime,
    end: datetime,
    *,
    label: str,
    now: datetime,
    policy: Policy,
    language: str,
    seen: Q | None = None,
    village: int | None = None,
    unit: int | None = None,
) -> Figures:
    """Count [start, end) (township time); `now` is the moment "overdue" is as of.

    `seen` limits every figure to the cases it selects (the reader's scope); `village` and
    `unit` to the cases of that village, or now with that unit. The daily series stops at
    `now`'s day, so that a period still running shows no empty days ahead.
    """
    events = await _events(township, start, end, seen, village, unit)
    of: dict[str, list[_Event]] = defaultdict(list)
    for event in events:
        of[event.action].append(event)
    acceptances = _first_per_case(
        e for e in events if e.action in ACCEPTANCE and e.from_status == CaseStatus.NEW
    )
    resolutions = of["resolve"]
    closings = _first_per_case(e for e in events if e.action in CLOSING)
    ratings = [e.rating for e in of["rate"]]
    reported_ids = {e.case_id for e in of["report"]}
    resolved_ids = {e.case_id for e in resolutions}

    result = Figures(township=township.display_name(language), period=label)
    result.received = len(of["report"])
    result.accepted = len(acceptances)
    result.resolved = len(resolutions)
    result.closed = len(closings)
    result.completion_rate = rate(len(reported_ids & resolved_ids), len(reported_ids))
    result.satisfaction_rate = rate(sum(1 for r in ratings if r and r >= 4), len(ratings))
    result.on_time_acceptance = rate(
        sum(1 for e in acceptances if _by(e.at, e.accept_by)), len(acceptances)
    )
    result.on_time_resolution = rate(
        sum(1 for e in resolutions if _by(e.at, e.resolve_by)), len(resolutions)
    )
    result.median_to_accept = _median([e.at - e.created_at for e in acceptances])
    result.median_to_resolve = _median([e.at - e.created_at for e in resolutions])
    result.reopen_rate = rate(len(of["reopen"]), len(resolutions))

    overdue = await _overdue(township, now, seen, village, unit)
    result.overdue_count = len(overdue)
    units = {u.id: u for u in await Unit.filter(township_id=township.id).order_by("id")}
    result.overdue = [
        (number, units[unit_id].display_name(language))
        for number, unit_id, _, _ in overdue[:OVERDUE_LISTED]
    ]
    if len(overdue) > OVERDUE_LISTED:
        result.overdue.append(("…", str(len(overdue) - OVERDUE_LISTED)))
    await _tables(result, township, of, reported_ids & resolved_ids, overdue, units, policy,
                  language)
    zone = ZoneInfo(township.timezone)
    received_days = Counter(e.at.astimezone(zone).date() for e in of["report"])
    resolved_days = Counter(e.at.astimezone(zone).date() for e in resolutions)
    today = now.astimezone(zone).date()
    result.daily = [
        (day, received_days[day], resolved_days[day])
        for day in days(start.astimezone(zone), end.astimezone(zone)) if day <= today
    ]
    result.tasks = await tasks(
        township, start, end, now=now, language=language, seen=seen, village=village, unit=unit,
        units=units,
    )
    return result


async def _tables(
    result: Figures,
    township: Township,
    of: dict[str, list[_Event]],
    completed: set[int],
    overdue: list[tuple[str, int, int, int]],
    units: dict[int, Unit],
    policy: Policy,
    language: str,
) -> None:
    """The tables by village, unit and category, the top categories and the repeat problems."""
    villages = {
        v.id: v for v in await Village.filter(township_id=township.id).order_by("position", "id")
    }
    categories = {
        c.id: c for c in await Category.filter(township_id=township.id).order_by("position", "id")
    }
    tables: dict[str, dict[int, Line]] = {
        "village": {vid: Line(v.display_name(language)) for vid, v in villages.items()},
        "unit": {uid: Line(u.display_name(language)) for uid, u in units.items()},
        "category": {cid: Line(c.display_name(language)) for cid, c in categories.items()},
    }

    def lines(event: _Event) -> list[Line]:
        return [tables["village"][event.village_id], tables["unit"][event.unit_id],
                tables["category"][event.category_id]]

    counted_completed: set[int] = set()
    for event in of["report"]:
        for line in lines(event):
            line.received += 1
        if event.case_id in completed and event.case_id not in counted_completed:
            counted_completed.add(event.case_id)
            for line in lines(event):
                line.completed += 1
    for event in of["resolve"]:
        for line in lines(event):
            line.resolved += 1
    for event in of["rate"]:
        for line in lines(event):
            line.rated += 1
            line.satisfied += (event.rating or 0) >= 4
    for _, unit_id, village_id, category_id in overdue:
        tables["village"][village_id].overdue += 1
        tables["unit"][unit_id].overdue += 1
        tables["category"][category_id].overdue += 1
    result.villages = [
        line for vid, line in tables["village"].items() if villages[vid].active or line.counts()
    ]
    result.units = [line for line in tables["unit"].values() if line.counts()]
    result.by_category = [line for line in tables["category"].values() if line.counts()]
    per_category = Counter(e.category_id for e in of["report"])
    result.categories = [
        (categories[cid].display_name(language), n)
        for cid, n in sorted(per_category.items(), key=lambda item: (-item[1], item[0]))
    ][:TOP_CATEGORIES]
    places = Counter((e.village_id, e.category_id) for e in of["report"])
    result.repeats = [
        (villages[vid].display_name(language), categories[cid].display_name(language), n)
        for (vid, cid), n in sorted(places.items(), key=lambda item: (-item[1], item[0]))
        if n >= policy.repeat_threshold
    ]


def weekly(daily: list[tuple[date, int, int]]) -> list[tuple[date, int, int]]:
    """The daily series summed per ISO week, each week named by its first day in the series."""
    weeks: dict[tuple[int, int], list[object]] = {}
    for day, received, resolved in daily:
        year, week, _ = day.isocalendar()
        entry = weeks.setdefault((year, week), [day, 0, 0])
        entry[1] += received  # type: ignore[operator]
        entry[2] += resolved  # type: ignore[operator]
    return [(d, r, s) for d, r, s in weeks.values()]  # type: ignore[misc]


def trend(f: Figures) -> tuple[str, list[tuple[date, int, int]]]:
    """("day" or "week", the series): daily up to `DAILY_UP_TO` days, weekly beyond."""
    if len(f.daily) <= DAILY_UP_TO:
        return "day", f.daily
    return "week", weekly(f.daily)


# ---- township tasks (中心工作) ---------------------------------------------------------------

#: The events of a task's case the task figures read (a decline only moves it on).
TASK_ACTIONS = (
    "report", "accept", "assign", "resolve", "confirm", "reopen", "escalate", "decline",
    "overdue", "unaccepted",
)
#: The scheduler's marks of a deadline that passed (`bot.cases.flag_overdue`).
FLAGGED = ("overdue", "unaccepted")
OPEN = (CaseStatus.NEW, CaseStatus.ACCEPTED)


@dataclass
class TaskLine:
    """One unit's township tasks in a period (or the township's, summed).

    A unit answers for what happened while a task's case was with it: each event counts for
    the unit the case was at (an escalation by the scheduler for the unit it left), and the
    cases open now for the unit that has them.
    """

    name: str
    given: int = 0  # task cases that reached the unit: a task given to it in the period
    accepted: int = 0  # acceptances (or assignments) of a case waiting to be accepted
    accepted_on_time: int = 0  # of them, by the case's accept deadline
    resolved: int = 0  # resolutions, each with its evidence
    confirmed: int = 0  # results accepted by the creator or a dispatcher: the case closed
    sent_back: int = 0  # reopen events: a reviewer sent the result back (要求重办)
    late: int = 0  # distinct cases that missed a deadline at the unit (`tasks`)
    overdue: int = 0  # open and past a deadline now (`bot.tasks.past_deadline`)
    waiting: int = 0  # not yet accepted now, overdue or not

    @property
    def on_time_acceptance(self) -> float | None:
        return rate(self.accepted_on_time, self.accepted)

    def counts(self) -> bool:
        return bool(self.given or self.accepted or self.resolved or self.confirmed
                    or self.sent_back or self.late or self.overdue or self.waiting)

    def lagging(self) -> bool:
        """What the digest names the unit for: a case overdue or not yet accepted."""
        return bool(self.overdue or self.waiting)


@dataclass
class TaskFigures:
    """The township's tasks in a period: the total, and each unit with something to count."""

    total: TaskLine
    units: list[TaskLine] = field(default_factory=list)

    def lagging(self) -> list[TaskLine]:
        return [line for line in self.units if line.lagging()]


async def tasks(
    township: Township,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    language: str,
    seen: Q | None = None,
    village: int | None = None,
    unit: int | None = None,
    units: dict[int, Unit] | None = None,
) -> TaskFigures:
    """The township tasks' figures of [start, end), per unit; `now` is what "overdue" and
    "waiting" are as of. The one definition the digest, the dashboard and the red/grey list
    read.

    Sent back counts the reviewers' reopen events in the period, not cases ever sent back,
    so that a period's figure is what happened in it. A case is late for a unit when, in the
    period, it was accepted or resolved after its deadline there, the scheduler escalated it
    away at the accept deadline, or flagged it overdue (督办); or when it is still open with
    that unit past a deadline that fell before the period's end (or `now`, if sooner). Each
    case counts once per unit.

    The cases read are the task cases of the township made before `end` and changed since
    `start` (every event sets `updated_at`), and those open now; then their history up to
    `end`, which gives the unit a case was at before an escalation. `seen` and `village`
    choose cases; `unit` keeps what counts for that unit.
    """
    since, until = start.astimezone(UTC), end.astimezone(UTC)
    if units is None:
        units = {u.id: u for u in await Unit.filter(township_id=township.id).order_by("id")}
    query = Case.filter(
        Q(created_at__lt=until, updated_at__gte=since) | Q(status__in=OPEN),
        township_id=township.id, task_id__isnull=False, **_place("", village, None),
    )
    if seen is not None:
        query = query.filter(seen)
    rows = await raw_rows(
        query.values_list(
            "id", "created_at", "accept_by", "resolve_by", "status", "unit_id", "task__deadline"
        ),
        (1, 2, 3, 6),
    )
    lines: dict[int, TaskLine] = {}
    late: dict[int, set[int]] = defaultdict(set)

    def line(unit_id: int) -> TaskLine:
        if unit_id not in lines:
            lines[unit_id] = TaskLine(units[unit_id].display_name(language))
        return lines[unit_id]

    cases = {row[0]: row for row in rows}
    as_of = min(now, until)
    for case_id, created, accept_by, resolve_by, status, unit_id, deadline in rows:
        if past_deadline(status, accept_by, resolve_by, deadline, now):
            line(unit_id).overdue += 1
        if status == CaseStatus.NEW:
            line(unit_id).waiting += 1
        if created < until and past_deadline(status, accept_by, resolve_by, deadline, as_of):
            late[unit_id].add(case_id)
    ids = sorted(cases)
    for first in range(0, len(ids), CASES_AT_ONCE):
        events = await raw_rows(
            CaseEvent.filter(
                case_id__in=ids[first:first + CASES_AT_ONCE], at__lt=until,
                action__in=TASK_ACTIONS,
            ).order_by("case_id", "id").values_list(
                "case_id", "at", "action", "from_status", "unit_id", "actor_id"
            ),
            (1,),
        )
        was: dict[int, int] = {}
        for case_id, at, action, from_status, unit_id, actor_id in events:
            before, was[case_id] = was.get(case_id), unit_id
            if at < since or unit_id is None:
                continue
            _, _, accept_by, resolve_by, _, _, _ = cases[case_id]
            counted = line(unit_id)
            if action == "report":
                counted.given += 1
            elif action in ACCEPTANCE and from_status == CaseStatus.NEW:
                counted.accepted += 1
                if _by(at, accept_by):
                    counted.accepted_on_time += 1
                else:
                    late[unit_id].add(case_id)
            elif action == "resolve":
                counted.resolved += 1
                if not _by(at, resolve_by):
                    late[unit_id].add(case_id)
            elif action == "confirm":
                counted.confirmed += 1
            elif action == "reopen":
                counted.sent_back += 1
            elif action in FLAGGED:
                late[unit_id].add(case_id)
            elif action == "escalate" and actor_id is None and before is not None:
                late[before].add(case_id)
    for unit_id, missed in late.items():
        line(unit_id).late = len(missed)
    kept = {
        unit_id: counted for unit_id, counted in lines.items()
        if (unit is None or unit_id == unit) and counted.counts()
    }
    total = TaskLine(township.display_name(language))
    for counted in kept.values():
        for name in ("given", "accepted", "accepted_on_time", "resolved", "confirmed",
                     "sent_back", "overdue", "waiting"):
            setattr(total, name, getattr(total, name) + getattr(counted, name))
    total.late = len(set().union(*(late[unit_id] for unit_id in kept)))
    return TaskFigures(total, [kept[unit_id] for unit_id in sorted(kept)])


# ---- words ---------------------------------------------------------------------------------


def percent(value: float | None) -> str:
    """A rate as the digest and the dashboard print it; "–" when there was nothing to count."""
    return "–" if value is None else f"{value * 100:.0f}%"


def duration(value: timedelta | None, language: str) -> str:
    if value is None:
        return "–"
    hours = value.total_seconds() / 3600
    if hours < 48:
        return text(N_("{hours} h"), language, hours=f"{hours:.1f}")
    return text(N_("{days} d"), language, days=f"{hours / 24:.1f}")
