"""Who may see a case and who may do what on it, in one place; confidential cases (清风).

Every door (handlers, flows, lists, the scheduler) and the domain modules that decide who is
told (bot.cases, bot.notices) ask here. The rules:

- The confidentiality rule: a case of a confidential category is seen only inside its own
  chain, the case's unit and the units above it, never through a unit of the reporter's
  village or grid nor of the village or grid where the problem is (a villager may report a
  problem in another village), and never township-wide: the general dispatchers see it only
  when they are members of one of those units. Every other case is also seen by the
  township's dispatchers.
- Accept, decline, escalate: members of the case's unit, and dispatchers where the case is
  township-wide; the assignee may also escalate. Assign and write notes: a dispatcher (same
  proviso) or a leader of the case's unit; notes also the assignee; resolve: the assignee.
- Supervise (督办) by hand, a nudge to the assignee: a dispatcher (same proviso) or a leader
  of the case's unit or of a unit above it, never the assignee themself.
- Assign offers only officials who may see the case, never the one who just declined it.
- The reporter's name and phone go only to those handling the case: the case's unit (its
  group chat, its members) and the assignee; an anonymous report's to nobody.
- Supervision (督办) climbs the case's own chain; see `supervision`.
- Township tasks (中心工作): a dispatcher gives one to any unit of a village (its committee,
  its grids, the team that covers it), a leader to the units below their own. The creator
  sees every case of their task; the creator and the township's dispatchers review the
  evidence (accept the result or send it back).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tortoise.expressions import Q

from bot import snapshot
from bot.confidential import kept_from
from bot.models import Case, CaseEvent, Category, Official, Role, Task, Township, Unit, UnitKind
from bot.routing import supervisors

#: The events that bring a case to a unit: the latest of them says how it came there.
ARRIVALS = ("report", "decline", "escalate")


# ---- the confidentiality rule -------------------------------------------------------------


def township_wide(category: Category) -> bool:
    """Whether the township's dispatchers see cases of `category`: not when confidential."""
    return not category.confidential


def township_wide_cases() -> Q:
    """`township_wide` as a filter on cases, for lists."""
    return Q(category__confidential=False)


def unit_may_see(unit: Unit, case: Case, category: Category) -> bool:
    """A confidential case never reaches a unit of the problem's village or grid, nor of the
    reporter's home village or grid (a grid's unit belongs to its village)."""
    return not kept_from(category, unit, (case.village_id, case.reporter_village_id))  # type: ignore[attr-defined]


def _confidential_away_from(village_id: int) -> Q:
    """`unit_may_see` as a filter on cases, for the units of `village_id`."""
    return Q(category__confidential=False) | (
        ~Q(village_id=village_id)
        & (Q(reporter_village_id__isnull=True) | ~Q(reporter_village_id=village_id))
    )


async def _category(case: Case) -> Category:
    loaded = case.category  # a fetched relation is reused, else a query
    if isinstance(loaded, Category):
        return loaded
    return await snapshot.category(case.category_id)  # type: ignore[attr-defined]


async def chain(case: Case) -> list[Unit]:
    """The units above the case's unit that may see it, nearest first: where it escalates
    and who supervises it."""
    unit = await snapshot.unit(case.unit_id)  # type: ignore[attr-defined]
    category = await _category(case)
    return [upper for upper in await supervisors(unit) if unit_may_see(upper, case, category)]


async def escalation_target(case: Case) -> Unit | None:
    """The unit a declined or escalated case goes to, if any: the first of its chain."""
    units = await chain(case)
    return units[0] if units else None


# ---- who may do what ----------------------------------------------------------------------


def _in_township(official: Official, case: Case) -> bool:
    return official.active and official.township_id == case.township_id  # type: ignore[attr-defined]


async def _member_of(official: Official, unit_ids: list[int], *, leader: bool = False) -> bool:
    if leader and official.role != Role.LEADER:
        return False
    return await official.units.filter(id__in=unit_ids, active=True).exists()


async def _dispatches(official: Official, case: Case) -> bool:
    """A dispatcher acts township-wide, except on confidential cases."""
    return official.role == Role.DISPATCHER and township_wide(await _category(case))


def is_assignee(official: Official, case: Case) -> bool:
    return official.active and case.assignee_id == official.id  # type: ignore[attr-defined]


async def may_see(official: Official, case: Case) -> bool:
    """The case's card and whole history: its unit, the units above it, the assignee, and
    (unless confidential) the dispatchers."""
    if not _in_township(official, case):
        return False
    if is_assignee(official, case) or await _dispatches(official, case):
        return True
    if case.task_id is not None and await _created(official, case):  # type: ignore[attr-defined]
        return True
    return await _member_of(official, [case.unit_id, *[u.id for u in await chain(case)]])  # type: ignore[attr-defined]


async def _township_units(township_id: int) -> dict[int, dict]:
    """Every unit of the township as plain rows, for walking the supervision tree in memory."""
    return {
        row["id"]: row
        for row in await Unit.filter(township_id=township_id).values(
            "id", "supervisor_id", "village_id", "active"
        )
    }


def _units_above(unit_id: int, units: dict[int, dict]) -> set[int]:
    """`supervisors` over units already loaded: the active units above, a loop stops it."""
    above: set[int] = set()
    upper = units[unit_id]["supervisor_id"]
    while upper is not None and upper in units and units[upper]["active"] and upper not in above:
        above.add(upper)
        upper = units[upper]["supervisor_id"]
    above.discard(unit_id)
    return above


async def cases_seen_by(official: Official) -> Q:
    """`may_see` as a filter on cases, so that a list loads only the cases its reader may open:
    the official's units and the units below them (a confidential case not through a unit of
    its problem's or its reporter's village), the cases assigned to them, and for a dispatcher
    every case that is not confidential."""
    if not official.active:
        return Q(id__in=[])
    own = set(await official.units.filter(active=True).values_list("id", flat=True))
    units = await _township_units(official.township_id)  # type: ignore[attr-defined]
    seen = Q(assignee_id=official.id) | Q(task__creator_id=official.id)
    if own:
        seen |= Q(unit_id__in=sorted(own))
    if official.role == Role.DISPATCHER:
        seen |= township_wide_cases()
    for upper in sorted(own & set(units)):
        below = sorted(u for u in units if upper in _units_above(u, units))
        if not below:
            continue
        reach = Q(unit_id__in=below)
        village = units[upper]["village_id"]
        if village is not None:  # the confidentiality rule, as `unit_may_see`
            reach &= _confidential_away_from(village)
        seen |= reach
    return Q(township_id=official.township_id) & seen  # type: ignore[attr-defined]


async def may_handle(official: Official, case: Case) -> bool:
    """Accept, decline, escalate: members of the case's unit, and dispatchers."""
    if not _in_township(official, case):
        return False
    return await _dispatches(official, case) or await _member_of(official, [case.unit_id])  # type: ignore[attr-defined]


async def may_escalate(official: Official, case: Case) -> bool:
    return is_assignee(official, case) or await may_handle(official, case)


async def may_assign(official: Official, case: Case) -> bool:
    """Assign a named person: a dispatcher, or a leader of the case's unit."""
    if not _in_township(official, case):
        return False
    if await _dispatches(official, case):
        return True
    return await _member_of(official, [case.unit_id], leader=True)  # type: ignore[attr-defined]


async def may_supervise(official: Official, case: Case) -> bool:
    """督办 a case by hand: a dispatcher, or a leader of its unit or of a unit above it (whom
    the case's chain lets see it); the assignee does not urge themself."""
    if not _in_township(official, case) or is_assignee(official, case):
        return False
    if await _dispatches(official, case):
        return True
    units = [case.unit_id, *[u.id for u in await chain(case)]]  # type: ignore[attr-defined]
    return await _member_of(official, units, leader=True)


async def may_note(official: Official, case: Case) -> bool:
    return is_assignee(official, case) or await may_assign(official, case)


def may_resolve(official: Official, case: Case) -> bool:
    return is_assignee(official, case)


async def decliner(case: Case) -> int | None:
    """The account that declined the case to where it is now, if that is how it came."""
    arrival = (
        await CaseEvent.filter(case_id=case.id, action__in=ARRIVALS).order_by("-id").first()
    )
    if arrival is None or arrival.action != "decline":
        return None
    return arrival.actor_id  # type: ignore[attr-defined,no-any-return]


async def may_be_assigned(official: Official, case: Case) -> bool:
    """Who may be given the case: someone who may see it, and not the one who declined it."""
    if not _in_township(official, case):
        return False
    if official.account_id is not None and official.account_id == await decliner(case):  # type: ignore[attr-defined]
        return False
    return township_wide(await _category(case)) or await may_see(official, case)


async def assign_candidates(case: Case, limit: int) -> list[Official]:
    """The Assign list: officials with a bound account who may be assigned (as
    `may_be_assigned`, in one query), the case's unit first."""
    query = Official.filter(
        township_id=case.township_id, active=True, account_id__isnull=False  # type: ignore[attr-defined]
    )
    if not township_wide(await _category(case)):
        seeing = [case.unit_id, *[u.id for u in await chain(case)]]  # type: ignore[attr-defined]
        query = query.filter(Q(units__id__in=seeing, units__active=True) | Q(
            id=case.assignee_id or 0  # type: ignore[attr-defined]
        ))
    declined_by = await decliner(case)
    if declined_by is not None:
        query = query.exclude(account_id=declined_by)
    people = await query.distinct().order_by("id")
    in_unit = set(
        await Official.filter(units__id=case.unit_id).values_list("id", flat=True)  # type: ignore[attr-defined]
    )
    return sorted(people, key=lambda o: (o.id not in in_unit, o.id))[:limit]


# ---- personal data ------------------------------------------------------------------------


async def personal_data_chats(case: Case) -> frozenset[int]:
    """The chats that may read the reporter's name and phone: the case's unit (its group chat
    and its members) and the assignee; nobody for an anonymous report."""
    if case.anonymous or case.reporter_id is None:  # type: ignore[attr-defined]
        return frozenset()
    unit = await snapshot.unit(case.unit_id)  # type: ignore[attr-defined]
    chats: set[int] = set()
    if unit.group_chat_id is not None:
        chats.add(unit.group_chat_id)
    snap = snapshot.current()
    if snap is not None:
        members = snap.bound_members(unit.id)
    else:
        members = await unit.members.filter(active=True, account_id__isnull=False)
    chats.update(o.account_id for o in members)  # type: ignore[attr-defined]
    if case.assignee_id is not None:  # type: ignore[attr-defined]
        if snap is not None:
            assignee = snap.officials.get(case.assignee_id)  # type: ignore[attr-defined]
            assignee = assignee if assignee is not None and assignee.active else None
        else:
            assignee = await Official.get_or_none(id=case.assignee_id, active=True)  # type: ignore[attr-defined]
        if assignee is not None and assignee.account_id is not None:  # type: ignore[attr-defined]
            chats.add(assignee.account_id)  # type: ignore[attr-defined]
    return frozenset(chats)


# ---- who is told ----------------------------------------------------------------------------


async def dispatchers(township_id: int, category: Category) -> list[Official]:
    """The township's dispatchers with a bound account, where the rule lets them see."""
    if not township_wide(category):
        return []
    if (snap := snapshot.current()) is not None:
        return snap.bound_officials(township_id, Role.DISPATCHER)
    return await Official.filter(
        township_id=township_id, role=Role.DISPATCHER, active=True, account_id__isnull=False
    ).order_by("id")


async def repeat_watchers(township: Township, category: Category) -> tuple[list[Official], bool]:
    """Who hears of repeat problems of `category`: the dispatchers, or for a confidential
    category its own unit's members; and whether the digest channel may stand in."""
    if township_wide(category):
        return await dispatchers(township.id, category), True
    unit = await Unit.get_or_none(id=category.unit_id, active=True)  # type: ignore[attr-defined]
    if unit is None:
        return [], False
    members = await unit.members.filter(active=True, account_id__isnull=False).order_by("id")
    return list(members), False


class Told(StrEnum):
    """Whom a supervision step reaches, for the sentence the assignee reads."""

    UNIT = "unit"  # a unit above (with the dispatchers, at the first level of a common case)
    DISPATCHERS = "dispatchers"
    LEADERS = "leaders"  # the leaders of the case's own unit
    OWN_UNIT = "own_unit"  # the case's own unit: nobody above it could be told
    ADMINS = "admins"  # nobody may see the case but its assignee: the directory needs fixing
    NOBODY = "nobody"  # not even an administrator has a bound account


@dataclass(frozen=True)
class Audience:
    """One supervision step: a unit as a whole (its group chat, else each member) and
    officials told privately; `cardless` ones get the case number without its card."""

    told: Told
    unit: Unit | None = None
    officials: list[Official] = field(default_factory=list)
    cardless: bool = False


async def _reaches(unit: Unit, *, besides: int | None) -> bool:
    if unit.group_chat_id is not None:
        return True
    if (snap := snapshot.current()) is not None:
        return any(o.id != (besides or 0) for o in snap.bound_members(unit.id))
    return await unit.members.filter(active=True, account_id__isnull=False).exclude(
        id=besides or 0
    ).exists()


async def _leaders(unit: Unit, *, besides: int | None) -> list[Official]:
    if (snap := snapshot.current()) is not None:
        return [o for o in snap.bound_members(unit.id, role=Role.LEADER) if o.id != besides]
    return await unit.members.filter(
        role=Role.LEADER, active=True, account_id__isnull=False
    ).exclude(id=besides or 0).order_by("id")


async def supervision(case: Case) -> list[Audience]:
    """Who is told, level by level, when the case passed a deadline (督办).

    A common case: level n is the n-th unit above its unit, the dispatchers at level 1 too,
    and the dispatchers alone when its unit has nobody above. A confidential case: its unit's
    leaders, then each unit of its chain. When that reaches nobody, the case's own unit is
    told (its members can accept, its leaders assign); when even that reaches nobody but the
    assignee, the township's administrators are told the case number and the unit, without
    the case, so that they name a leader or a supervising unit in the directory.
    """
    category = await _category(case)
    unit = await snapshot.unit(case.unit_id)  # type: ignore[attr-defined]
    assignee = case.assignee_id  # type: ignore[attr-defined]
    upper = [u for u in await chain(case) if await _reaches(u, besides=assignee)]
    levels: list[Audience] = []
    if township_wide(category):
        found = await dispatchers(case.township_id, category)  # type: ignore[attr-defined]
        found = [o for o in found if o.id != assignee]
        levels = [Audience(Told.UNIT, u, found if i == 0 else []) for i, u in enumerate(upper)]
        if not levels and found:
            levels = [Audience(Told.DISPATCHERS, officials=found)]
    else:
        leaders = await _leaders(unit, besides=assignee)
        if leaders:
            levels.append(Audience(Told.LEADERS, unit, leaders))
        levels += [Audience(Told.UNIT, u) for u in upper]
    if levels:
        return levels
    if await _reaches(unit, besides=assignee):
        return [Audience(Told.OWN_UNIT, unit)]
    if (snap := snapshot.current()) is not None:
        admins = snap.bound_officials(case.township_id, Role.ADMIN)  # type: ignore[attr-defined]
    else:
        admins = await Official.filter(
            township_id=case.township_id, role=Role.ADMIN, active=True,  # type: ignore[attr-defined]
            account_id__isnull=False,
        ).order_by("id")
    if not admins:
        return [Audience(Told.NOBODY, unit)]
    return [Audience(Told.ADMINS, unit, list(admins), cardless=True)]


# ---- township tasks (中心工作) ------------------------------------------------------------------

#: The kinds of unit a task may go to: each belongs to a village, where a task's case is.
TASK_UNIT_KINDS = (UnitKind.VILLAGE, UnitKind.GRID, UnitKind.TOWNSHIP_TEAM)


def may_create_task(official: Official) -> bool:
    return official.active and official.role in (Role.DISPATCHER, Role.LEADER)


def task_giver(officials: list[Official]) -> Official | None:
    """The person's first official identity that may give a township task, if any."""
    return next((o for o in officials if may_create_task(o)), None)


async def task_targets(official: Official) -> list[Unit]:
    """The units `official` may give a task to: for a dispatcher every unit of a village in
    the township, for a leader those below their own units; village committees first, in
    the directory's order of villages."""
    if not may_create_task(official):
        return []
    query = Unit.filter(
        township_id=official.township_id, active=True, kind__in=TASK_UNIT_KINDS,  # type: ignore[attr-defined]
        village_id__isnull=False, village__active=True,
    )
    if official.role != Role.DISPATCHER:
        own = set(await official.units.filter(active=True).values_list("id", flat=True))
        units = await _township_units(official.township_id)  # type: ignore[attr-defined]
        below = [u for u in units if own & _units_above(u, units)]
        query = query.filter(id__in=below or [0])
    order = {kind: index for index, kind in enumerate(TASK_UNIT_KINDS)}
    rows = await query.prefetch_related("village")
    return sorted(rows, key=lambda u: (u.village.position, u.village.id, order[u.kind], u.id))


async def _created(official: Official, case: Case) -> bool:
    return await Task.filter(id=case.task_id, creator_id=official.id).exists()  # type: ignore[attr-defined]


async def may_review(official: Official, case: Case) -> bool:
    """Accept a task's result or send it back: its creator, or a township dispatcher."""
    if case.task_id is None or not _in_township(official, case):  # type: ignore[attr-defined]
        return False
    return official.role == Role.DISPATCHER or await _created(official, case)


def may_follow_task_everywhere(official: Official) -> bool:
    """Every task of the township: its dispatchers; anyone else their own."""
    return official.active and official.role == Role.DISPATCHER


def may_follow_task(official: Official, task: Task) -> bool:
    """A task's progress: its creator and the township's dispatchers."""
    if not official.active or official.township_id != task.township_id:  # type: ignore[attr-defined]
        return False
    return official.id == task.creator_id or may_follow_task_everywhere(official)  # type: ignore[attr-defined]


def may_manage_directory(official: Official) -> bool:
    """The directory (villages, units, officials) is the administrators' to read and change."""
    return official.role == Role.ADMIN and official.active
