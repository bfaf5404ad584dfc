"""The case state machine: transitions, and the history they leave.

Every change is one conditional UPDATE (it names the status and version it expects) plus one
history event, in one transaction. Two officials tapping Accept at once both send the UPDATE;
the database lets exactly one match, on SQLite (which has no row locks) as on PostgreSQL.
Handlers and the scheduler call these functions and never write a case themselves; who may
make a transition is `bot.scope`'s to say, and every transition asks it again.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Subquery
from tortoise.transactions import in_transaction

from bot import db, delivery, logs, snapshot
from bot.models import (
    ApiKey,
    Case,
    CaseCounter,
    CaseEvent,
    CaseStatus,
    Category,
    Grid,
    Official,
    Supporter,
    Task,
    Township,
    Unit,
    Village,
    Villager,
)
from bot.notices import announce, supported
from bot.routing import responsible_unit
from bot.scope import (
    escalation_target,
    may_assign,
    may_be_assigned,
    may_escalate,
    may_handle,
    may_note,
    may_resolve,
    may_review,
    may_supervise,
)
from bot.worktime import calendar_of

DESCRIPTION_MAX = 2000
NOTE_MAX = 1000
PHOTOS_MAX = 5
#: For a category without its own hours (the directory normally gives them).
DEFAULT_ACCEPT_HOURS = 24
DEFAULT_RESOLVE_HOURS = 72


class Action(StrEnum):
    REPORT = "report"
    ACCEPT = "accept"
    DECLINE = "decline"
    ESCALATE = "escalate"
    ASSIGN = "assign"
    NOTE = "note"
    RESOLVE = "resolve"
    RATE = "rate"
    REOPEN = "reopen"
    CLOSE = "close"
    OVERDUE = "overdue"
    OVERDUE_UNACCEPTED = "unaccepted"
    SUPERVISE = "supervise"
    #: A township task's result accepted by its creator or a dispatcher (中心工作).
    CONFIRM = "confirm"


N, A, R, C = CaseStatus.NEW, CaseStatus.ACCEPTED, CaseStatus.RESOLVED, CaseStatus.CLOSED

#: action → (the states it may start from, the state it leads to)
TRANSITIONS: dict[Action, tuple[frozenset[CaseStatus], CaseStatus]] = {
    Action.ACCEPT: (frozenset({N}), A),
    Action.DECLINE: (frozenset({N}), N),
    Action.ESCALATE: (frozenset({N, A}), N),
    Action.ASSIGN: (frozenset({N, A}), A),
    Action.NOTE: (frozenset({A}), A),
    Action.RESOLVE: (frozenset({A}), R),
    Action.RATE: (frozenset({R}), C),
    Action.REOPEN: (frozenset({R}), A),
    Action.CLOSE: (frozenset({R}), C),
    # 督办: a deadline passed and one more supervising level is told; the case stays put.
    Action.OVERDUE: (frozenset({A}), A),
    Action.OVERDUE_UNACCEPTED: (frozenset({N}), N),
    # 督办 by hand: a dispatcher or a leader urges the assignee on; the case stays put.
    Action.SUPERVISE: (frozenset({A}), A),
    Action.CONFIRM: (frozenset({R}), C),
}


class Refusal(StrEnum):
    """Why a transition changed nothing; handlers turn each into a sentence."""

    NOT_FOUND = "not_found"
    WRONG_STATE = "wrong_state"
    TAKEN = "taken"
    CHANGED = "changed"
    NOT_ALLOWED = "not_allowed"
    NO_SUPERVISOR = "no_supervisor"
    NEEDS_EVIDENCE = "needs_evidence"
    NEEDS_REASON = "needs_reason"
    TOO_LONG = "too_long"
    TOO_MANY_PHOTOS = "too_many_photos"
    BAD_RATING = "bad_rating"


class CaseRefused(Exception):
    def __init__(self, reason: Refusal, case: Case | None = None) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.case = case


@dataclass(frozen=True)
class Change:
    """What a transition did: the case after it, and the event it left in the history."""

    case: Case
    event: CaseEvent
    #: The unit the case was at before a transition (a decline's, an escalation's old unit).
    unit_before: int | None = None


def now() -> datetime:
    return datetime.now(UTC)


async def _deadline(category: Category, at: datetime, hours: int) -> datetime:
    """`hours` after `at`, in calendar hours or the township's working hours."""
    township = await snapshot.township(category.township_id)  # type: ignore[attr-defined]
    return calendar_of(township).add(at, hours, working=category.working_hours)


async def accept_deadline(category: Category, at: datetime) -> datetime:
    return await _deadline(category, at, category.accept_hours or DEFAULT_ACCEPT_HOURS)


async def resolve_deadline(category: Category, at: datetime) -> datetime:
    return await _deadline(category, at, category.resolve_hours or DEFAULT_RESOLVE_HOURS)


async def _resolve_by(case: Case, category: Category, at: datetime) -> datetime:
    """A new resolve deadline from `at` (escalated, reopened): a task's own deadline while it
    is ahead, else the category's time from now."""
    fresh = await resolve_deadline(category, at)
    if case.task_id is not None:  # type: ignore[attr-defined]
        task = await Task.get(id=case.task_id)  # type: ignore[attr-defined]
        if task.deadline > at:
            return task.deadline
    return fresh


def format_number(prefix: str, year: int, sequence: int) -> str:
    return f"{prefix}-{year}-{sequence:06d}"


async def _next_number(township_id: int, prefix: str, year: int) -> str:
    """Take the next number inside the caller's transaction: one UPDATE holds the year's row
    and says the number it set. The year's first case makes the row, in a savepoint: when
    another made it at the same moment, this one waits for it and counts on."""
    take = (
        "UPDATE case_counter SET last_number = last_number + 1"
        f" WHERE township_id = {int(township_id)} AND year = {int(year)} RETURNING last_number"
    )
    # (Not execute_query: asyncpg's client runs an UPDATE there without fetching its rows.)
    rows = await connections.get("default").execute_query_dict(take)
    if not rows:
        with contextlib.suppress(IntegrityError):
            async with in_transaction():
                await CaseCounter.create(township_id=township_id, year=year)
        rows = await connections.get("default").execute_query_dict(take)
    return format_number(prefix, year, int(rows[0]["last_number"]))


async def report(
    reporter: Villager | None,
    category: Category,
    *,
    description: str,
    voice_file_id: str | None = None,
    photos: Sequence[str] = (),
    latitude: float | None = None,
    longitude: float | None = None,
    address: str | None = None,
    anonymous: bool = False,
    report_key: str | None = None,
    village: Village | None = None,
    api_key: ApiKey | None = None,
    media_url: str | None = None,
    grid: Grid | None = None,
    at: datetime | None = None,
) -> Change:
    """A report becomes a numbered case at the responsible unit: a villager's Submit, or a
    request through the Open311 API (`reporter` None, `api_key` the key it came with).

    `village` is where the problem is when not in the reporter's own village (one of their
    township's), and `grid` the grid of it the villager named: the case goes to that village's
    units, never the reporter's; without a grid ("I don't know") a grid-level category starts
    at that village's committee. Without a reporter `village` is required and the case has no
    grid (the API knows no grids), as a problem in another village whose grid is not known.
    `report_key` names the draft: reporting it again returns the case it already made.
    """
    if report_key is not None and (earlier := await _reported(report_key)) is not None:
        return earlier
    at = at or now()
    if len(description) > DESCRIPTION_MAX:
        raise CaseRefused(Refusal.TOO_LONG)
    if len(photos) > PHOTOS_MAX:
        raise CaseRefused(Refusal.TOO_MANY_PHOTOS)
    home: Village | None = None
    if reporter is not None:
        township, home, own_grid = await _reporters_place(reporter)
        place = home
        if village is not None and village.id != home.id:
            if grid is not None and grid.village_id != village.id:  # type: ignore[attr-defined]
                raise CaseRefused(Refusal.NOT_ALLOWED)
            place = village
        else:
            grid = own_grid  # the reporter's own village: their own grid
    elif village is not None:
        township = await Township.get(id=village.township_id)  # type: ignore[attr-defined]
        place, grid = village, None
    else:
        raise CaseRefused(Refusal.NOT_ALLOWED)
    if place.township_id != township.id or category.township_id != township.id:  # type: ignore[attr-defined]
        raise CaseRefused(Refusal.NOT_ALLOWED)
    unit = await responsible_unit(category, place, grid, home=home)
    try:
        async with in_transaction():
            change = await _create(
                township, reporter, home, category, unit, place, grid, description=description,
                voice_file_id=voice_file_id, photos=photos, latitude=latitude,
                longitude=longitude, address=address, anonymous=anonymous,
                report_key=report_key, api_key=api_key, media_url=media_url, at=at,
            )
        delivery.wake()
        return change
    except IntegrityError:
        # The same draft, submitted twice at once: the other submission made the case.
        if report_key is None or (earlier := await _reported(report_key)) is None:
            raise
        return earlier


async def _reporters_place(reporter: Villager) -> tuple[Township, Village, Grid | None]:
    """The reporter's township, village and grid: from the current snapshot when it holds
    their township, else the database."""
    snap = snapshot.current()
    if snap is not None and reporter.township_id in snap.townships:  # type: ignore[attr-defined]
        return (
            snap.townships[reporter.township_id],  # type: ignore[attr-defined]
            snap.villages[reporter.village_id],  # type: ignore[attr-defined]
            snap.grids.get(reporter.grid_id),  # type: ignore[attr-defined,arg-type]
        )
    await reporter.fetch_related("township", "village", "grid")
    return reporter.township, reporter.village, reporter.grid


async def _reported(report_key: str) -> Change | None:
    case = await Case.get_or_none(report_key=report_key)
    if case is None:
        return None
    return Change(case, await CaseEvent.filter(case_id=case.id).order_by("id").first())  # type: ignore[arg-type]


async def _create(
    township: Township,
    reporter: Villager | None,
    home: Village | None,
    category: Category,
    unit: Unit,
    village: Village,
    grid: Grid | None,
    *,
    description: str,
    voice_file_id: str | None,
    photos: Sequence[str],
    latitude: float | None,
    longitude: float | None,
    address: str | None,
    anonymous: bool,
    report_key: str | None,
    api_key: ApiKey | None,
    media_url: str | None,
    at: datetime,
) -> Change:
    number = await _next_number(township.id, township.code, at.year)
    logs.acting_on(number)
    case = await Case.create(
        number=number,
        township_id=township.id,
        reporter=reporter,
        category=category,
        village=village,
        grid=grid,
        reporter_village=home,
        unit=unit,
        description=description,
        voice_file_id=voice_file_id,
        photos=list(photos),
        latitude=latitude,
        longitude=longitude,
        address=address,
        anonymous=anonymous,
        accept_by=await accept_deadline(category, at),
        resolve_by=await resolve_deadline(category, at),
        check_at=at,
        created_at=at,
        updated_at=at,
        report_key=report_key,
        api_key=api_key,
        media_url=media_url,
    )
    actor_id = reporter.account_id if reporter is not None else None  # type: ignore[attr-defined]
    event = await CaseEvent.create(
        case=case, at=at, action=Action.REPORT, actor_id=actor_id,
        from_status=None, to_status=case.status, unit=unit, note=description,
        attachments=list(photos),
    )
    change = Change(case, event)
    await announce(change)  # the notices join this transaction: told if and only if it happened
    return change


async def _load(case_id: int, read: Case | None = None) -> Case:
    """The case to change: `read`, as the scheduler read it to plan (not read again: the
    change's UPDATE checks its version, so a case changed since is left alone), or read now."""
    if read is not None:
        logs.acting_on(read.number)
        return read
    case = await Case.get_or_none(id=case_id)
    if case is None:
        raise CaseRefused(Refusal.NOT_FOUND)
    logs.acting_on(case.number)  # the log's lines from here on, a refusal's too, name it
    return case


async def _move(
    case: Case,
    action: Action,
    actor_id: int | None,
    *,
    at: datetime,
    note: str | None = None,
    attachments: Sequence[str] = (),
    public: bool = True,
    **changes: object,
) -> Change:
    """The one place a case changes: conditional UPDATE, then its history event."""
    logs.acting_on(case.number)
    allowed, target = TRANSITIONS[action]
    if case.status not in allowed:
        raise CaseRefused(Refusal.WRONG_STATE, case)
    # The scheduler looks at a case again right after each change; a closed one is done.
    check_at = None if target == CaseStatus.CLOSED else at
    written = {"status": target, "version": case.version + 1, "updated_at": at,
               "check_at": check_at, **changes}
    async with db.atomic():
        updated = await Case.filter(
            id=case.id, status=case.status, version=case.version
        ).update(**written)
        if updated != 1:
            raise CaseRefused(Refusal.CHANGED, await Case.get_or_none(id=case.id))
        event = await CaseEvent.create(
            case_id=case.id, at=at, action=action, actor_id=actor_id, from_status=case.status,
            to_status=target, unit_id=changes.get("unit_id", case.unit_id),  # type: ignore[attr-defined]
            note=note, attachments=list(attachments), public=public,
        )
        # The row is what was read with what was written (the version proves nothing else
        # changed it): not read again.
        unit_before = case.unit_id  # type: ignore[attr-defined]
        for name, value in written.items():
            setattr(case, name, value)
        change = Change(case, event, unit_before)
        await announce(change)
    delivery.wake()  # committed (or joined the caller's transaction): the courier may look now
    return change


async def accept(case_id: int, official: Official, *, at: datetime | None = None) -> Change:
    """The first Accept wins; a late one learns who took the case."""
    case = await _load(case_id)
    if not await may_handle(official, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    if case.status != CaseStatus.NEW:
        raise CaseRefused(Refusal.TAKEN if case.assignee_id else Refusal.WRONG_STATE, case)  # type: ignore[attr-defined]
    at = at or now()
    try:
        return await _move(
            case, Action.ACCEPT, official.account_id, at=at,  # type: ignore[attr-defined]
            assignee_id=official.id, accepted_at=at,
        )
    except CaseRefused as refused:
        raise CaseRefused(Refusal.TAKEN, refused.case) from None


async def _escalate(
    case: Case, action: Action, actor_id: int | None, note: str | None, at: datetime
) -> Change:
    """One level up, where the deadlines start again: the new unit gets its full time."""
    upper = await escalation_target(case)
    if upper is None:
        raise CaseRefused(Refusal.NO_SUPERVISOR, case)
    category = await snapshot.category(case.category_id)  # type: ignore[attr-defined]
    return await _move(
        case, action, actor_id, at=at, note=note, unit_id=upper.id, assignee_id=None,
        accepted_at=None, escalation_level=case.escalation_level + 1, overdue_level=0,
        accept_by=await accept_deadline(category, at),
        resolve_by=await _resolve_by(case, category, at),
    )


def _words(text: str, case: Case, missing: Refusal = Refusal.NEEDS_REASON) -> str:
    """A reason or note, trimmed: required, and within NOTE_MAX."""
    text = text.strip()
    if not text:
        raise CaseRefused(missing, case)
    if len(text) > NOTE_MAX:
        raise CaseRefused(Refusal.TOO_LONG, case)
    return text


async def decline(
    case_id: int, official: Official, reason: str, *, at: datetime | None = None
) -> Change:
    """Not ours: the case goes to the supervising unit, with the reason."""
    case = await _load(case_id)
    if not await may_handle(official, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    reason = _words(reason, case)
    return await _escalate(case, Action.DECLINE, official.account_id, reason, at or now())  # type: ignore[attr-defined]


async def escalate(
    case_id: int,
    official: Official | None,
    note: str | None = None,
    *,
    at: datetime | None = None,
    read: Case | None = None,
) -> Change:
    """One level up; `official` None means the scheduler, when a deadline passed, with the
    case as it `read` it to plan (`_load`)."""
    case = await _load(case_id, read)
    if official is not None and not await may_escalate(official, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    if note is not None and len(note.strip()) > NOTE_MAX:
        raise CaseRefused(Refusal.TOO_LONG, case)
    actor_id = official.account_id if official is not None else None  # type: ignore[attr-defined]
    return await _escalate(case, Action.ESCALATE, actor_id, (note or "").strip() or None,
                           at or now())


async def assign(
    case_id: int,
    by: Official,
    to: Official,
    resolve_by: datetime,
    *,
    at: datetime | None = None,
) -> Change:
    """指定专人限期: a named person, with a deadline."""
    case = await _load(case_id)
    if not await may_assign(by, case) or not await may_be_assigned(to, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    at = at or now()
    return await _move(
        case, Action.ASSIGN, by.account_id, at=at, note=to.name,  # type: ignore[attr-defined]
        assignee_id=to.id, resolve_by=resolve_by, accepted_at=case.accepted_at or at,
        overdue_level=0,
    )


async def add_note(
    case_id: int, official: Official, note: str, *, public: bool, at: datetime | None = None
) -> Change:
    """Progress: a public note reaches the villager, an internal one only officials."""
    case = await _load(case_id)
    if not await may_note(official, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    note = _words(note, case)
    return await _move(
        case, Action.NOTE, official.account_id, at=at or now(), note=note, public=public  # type: ignore[attr-defined]
    )


async def supervise(
    case_id: int, official: Official, note: str | None = None, *, at: datetime | None = None
) -> Change:
    """督办 by hand: the assignee of a case being handled is urged on, with an optional word
    of what is expected; an internal event (the villager is not told), the case stays put."""
    case = await _load(case_id)
    if not await may_supervise(official, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    if case.status != CaseStatus.ACCEPTED or case.assignee_id is None:  # type: ignore[attr-defined]
        raise CaseRefused(Refusal.WRONG_STATE, case)
    note = (note or "").strip() or None
    if note is not None and len(note) > NOTE_MAX:
        raise CaseRefused(Refusal.TOO_LONG, case)
    return await _move(
        case, Action.SUPERVISE, official.account_id, at=at or now(), note=note, public=False,  # type: ignore[attr-defined]
    )


async def resolve(
    case_id: int,
    official: Official,
    note: str,
    photos: Sequence[str],
    *,
    at: datetime | None = None,
) -> Change:
    """回单: only with evidence, at least one photo and a note."""
    case = await _load(case_id)
    if not may_resolve(official, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    if not photos:
        raise CaseRefused(Refusal.NEEDS_EVIDENCE, case)
    note = _words(note, case, missing=Refusal.NEEDS_EVIDENCE)
    if len(photos) > PHOTOS_MAX:
        raise CaseRefused(Refusal.TOO_MANY_PHOTOS, case)
    at = at or now()
    return await _move(
        case, Action.RESOLVE, official.account_id, at=at, note=note, attachments=photos,  # type: ignore[attr-defined]
        resolved_at=at,
    )


def _is_reporter(villager: Villager, case: Case) -> bool:
    return case.reporter_id == villager.id  # type: ignore[attr-defined]


async def rate(
    case_id: int,
    villager: Villager,
    stars: int,
    comment: str | None = None,
    *,
    at: datetime | None = None,
) -> Change:
    """Solved: the villager rates 1–5, and the case closes."""
    case = await _load(case_id)
    if not _is_reporter(villager, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    if not 1 <= stars <= 5:
        raise CaseRefused(Refusal.BAD_RATING, case)
    if comment is not None and len(comment) > NOTE_MAX:
        raise CaseRefused(Refusal.TOO_LONG, case)
    at = at or now()
    return await _move(
        case, Action.RATE, villager.account_id, at=at, note=comment,  # type: ignore[attr-defined]
        rating=stars, rating_comment=comment, closed_at=at,
    )


async def reopen(
    case_id: int, villager: Villager, reason: str, *, at: datetime | None = None
) -> Change:
    """Not solved: back to the same assignee, with a new resolve deadline; counted."""
    case = await _load(case_id)
    if not _is_reporter(villager, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    reason = _words(reason, case)
    at = at or now()
    category = await Category.get(id=case.category_id)  # type: ignore[attr-defined]
    return await _move(
        case, Action.REOPEN, villager.account_id, at=at, note=reason,  # type: ignore[attr-defined]
        reopen_count=case.reopen_count + 1, resolved_at=None, overdue_level=0,
        resolve_by=await _resolve_by(case, category, at),
    )


# ---- township tasks (中心工作): no villager; the creator reviews -------------------------------


async def open_task_case(
    task: Task, township: Township, creator: Official, unit: Unit, category: Category,
    *, accept_by: datetime, at: datetime,
) -> Change:
    """One target of a township task: a case at `unit`, in the task's category, with the
    task's words and deadline, to be accepted by `accept_by` (the same for every target); in
    the caller's transaction (`bot.tasks.create`)."""
    number = await _next_number(township.id, township.code, at.year)
    logs.acting_on(number)
    case = await Case.create(
        number=number,
        township_id=township.id,
        task=task,
        category=category,
        village_id=unit.village_id,  # type: ignore[attr-defined]
        grid_id=unit.grid_id,  # type: ignore[attr-defined]
        unit=unit,
        description=task.description or task.title,
        photos=list(task.photos),
        accept_by=accept_by,
        resolve_by=task.deadline,
        check_at=at,
        created_at=at,
        updated_at=at,
    )
    event = await CaseEvent.create(
        case=case, at=at, action=Action.REPORT, actor_id=creator.account_id,  # type: ignore[attr-defined]
        from_status=None, to_status=case.status, unit=unit, note=task.title,
        attachments=list(task.photos),
    )
    change = Change(case, event)
    await announce(change)
    return change


async def confirm(case_id: int, official: Official, *, at: datetime | None = None) -> Change:
    """A task's result is accepted: the case closes (its creator's word, as a villager's
    stars close a report)."""
    case = await _load(case_id)
    if not await may_review(official, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    at = at or now()
    return await _move(case, Action.CONFIRM, official.account_id, at=at, closed_at=at)  # type: ignore[attr-defined]


async def send_back(
    case_id: int, official: Official, reason: str, *, at: datetime | None = None
) -> Change:
    """A task's result is not accepted: back to the same assignee with the reviewer's reason
    (a reopen, counted as a villager's is), to be done by the task's deadline or, when that
    has passed, in the category's time."""
    case = await _load(case_id)
    if not await may_review(official, case):
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    reason = _words(reason, case)
    at = at or now()
    category = await Category.get(id=case.category_id)  # type: ignore[attr-defined]
    return await _move(
        case, Action.REOPEN, official.account_id, at=at, note=reason,  # type: ignore[attr-defined]
        reopen_count=case.reopen_count + 1, resolved_at=None, overdue_level=0,
        resolve_by=await _resolve_by(case, category, at),
    )


async def close(
    case_id: int, *, at: datetime | None = None, read: Case | None = None
) -> Change:
    """A resolved case the villager never rated closes by itself (the scheduler's call, with
    the case as it `read` it to plan: `_load`)."""
    case = await _load(case_id, read)
    at = at or now()
    return await _move(case, Action.CLOSE, None, at=at, closed_at=at)


async def flag_overdue(
    case_id: int, level: int, *, at: datetime | None = None, read: Case | None = None
) -> Change:
    """A deadline passed and supervising level `level` is told (the scheduler's call).

    An accepted case stays with its assignee and `level` counts up the levels of its
    supervision, once each; so does a new case nobody accepted at the top of its chain, where
    it cannot escalate. Who each level tells is `bot.scope.supervision`'s to say.
    """
    case = await _load(case_id, read)
    if level != case.overdue_level + 1:
        raise CaseRefused(Refusal.CHANGED, case)
    action = Action.OVERDUE if case.status == CaseStatus.ACCEPTED else Action.OVERDUE_UNACCEPTED
    return await _move(case, action, None, at=at or now(), overdue_level=level)


async def history(case_id: int, *, public_only: bool = False) -> list[CaseEvent]:
    query = CaseEvent.filter(case_id=case_id)
    if public_only:
        query = query.filter(public=True)
    return await query.order_by("id")


# ---- me too (附议) ------------------------------------------------------------------------

#: What "the same problem" means: an open case of the same category in the same village,
#: reported within this many days, and within `SAME_PLACE_METRES` when both have a pin.
SAME_PROBLEM_DAYS = 30
SAME_PLACE_METRES = 300.0
#: At most this many cases are offered; the newest first.
SAME_PROBLEM_OFFERED = 3


def metres_between(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine) between two pins in degrees."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(
        (lon2 - lon1) / 2
    ) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def _offerable() -> dict[str, object]:
    """Never offered to another villager: a confidential category's case, an anonymous report
    (its reporter asked not to be known; another villager's "me too" would point at it), and
    a closed case."""
    return {"category__confidential": False, "anonymous": False}


async def same_problem(
    villager: Villager,
    category: Category,
    village: Village,
    *,
    latitude: float | None = None,
    longitude: float | None = None,
    at: datetime | None = None,
) -> list[Case]:
    """The open cases a villager about to report may mean (附议): same category, same
    village, the last `SAME_PROBLEM_DAYS` days, within `SAME_PLACE_METRES` when both have a
    pin; never their own, never one they joined, never a confidential or anonymous one."""
    if category.confidential:
        return []
    at = at or now()
    joined = Subquery(Supporter.filter(villager_id=villager.id).values_list("case_id", flat=True))
    rows = await Case.filter(
        township_id=village.township_id,  # type: ignore[attr-defined]
        category_id=category.id,
        village_id=village.id,
        created_at__gte=at - timedelta(days=SAME_PROBLEM_DAYS),
        **_offerable(),
    ).exclude(status=CaseStatus.CLOSED).exclude(reporter_id=villager.id).exclude(
        id__in=joined
    ).order_by("-created_at", "-id").limit(50)
    found: list[Case] = []
    for case in rows:
        if None not in (latitude, longitude, case.latitude, case.longitude) and metres_between(
            (latitude, longitude), (case.latitude, case.longitude)  # type: ignore[arg-type]
        ) > SAME_PLACE_METRES:
            continue
        found.append(case)
    return found[:SAME_PROBLEM_OFFERED]


async def support(case_id: int, villager: Villager, *, at: datetime | None = None) -> Case:
    """"Me too": the villager follows the case and counts on it; no new case. Once per
    villager: a second tap changes nothing and says so (Refusal.CHANGED)."""
    at = at or now()
    case = await Case.get_or_none(id=case_id).prefetch_related("category")
    if case is None or case.township_id != villager.township_id:  # type: ignore[attr-defined]
        raise CaseRefused(Refusal.NOT_FOUND)
    if case.reporter_id == villager.id:  # type: ignore[attr-defined]
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    if case.category.confidential or case.anonymous:
        raise CaseRefused(Refusal.NOT_ALLOWED, case)
    if case.status == CaseStatus.CLOSED:
        raise CaseRefused(Refusal.WRONG_STATE, case)
    try:
        async with in_transaction():
            await Supporter.create(case_id=case.id, villager_id=villager.id, created_at=at)
            await Case.filter(id=case.id).update(supporters=F("supporters") + 1)
            case = await Case.get(id=case.id)
            await supported(case)
    except IntegrityError:
        raise CaseRefused(Refusal.CHANGED, case) from None
    delivery.wake()
    return case


async def rate_as_supporter(
    case_id: int, villager: Villager, stars: int
) -> Supporter:
    """A supporter's stars for the result: kept on their row, once; the case's own rating and
    its closing stay the reporter's (see README, satisfaction rate)."""
    if not 1 <= stars <= 5:
        raise CaseRefused(Refusal.BAD_RATING)
    row = await Supporter.get_or_none(case_id=case_id, villager_id=villager.id)
    if row is None:
        raise CaseRefused(Refusal.NOT_ALLOWED)
    updated = await Supporter.filter(id=row.id, rating__isnull=True).update(rating=stars)
    if not updated:
        raise CaseRefused(Refusal.CHANGED)
    row.rating = stars
    return row
