"""Who is responsible for a case, and who supervises whom (逐级派单).

The sieve: a case starts at the lowest level that can handle its category, in the grid or
village where the problem is (the reporter's own, or another village they named), and climbs
by escalation. A problem in another village is in the grid the villager named there, or in
none when they did not know it ("I don't know"): a grid-level category then starts at that
village's committee. A confidential
category (清风) goes only to its configured unit, which the directory guarantees is not a unit
of a village or grid; were it one, neither the problem's village nor the reporter's would do.
"""

from __future__ import annotations

from bot import snapshot
from bot.confidential import kept_from
from bot.models import Category, Grid, Level, Unit, UnitKind, Village


class NoResponsibleUnit(Exception):
    """The directory has no unit for this category in this place."""


async def _covering(kind: UnitKind, *, village: Village, grid: Grid | None = None) -> Unit | None:
    snap = snapshot.current()
    if snap is not None and village.township_id in snap.townships:  # type: ignore[attr-defined]
        return next((
            u for u in sorted(snap.units.values(), key=lambda u: u.id)
            if u.kind == kind and u.village_id == village.id and u.active  # type: ignore[attr-defined]
            and (grid is None or u.grid_id == grid.id)  # type: ignore[attr-defined]
        ), None)
    query = Unit.filter(kind=kind, village_id=village.id, active=True)
    if grid is not None:
        query = query.filter(grid_id=grid.id)
    return await query.order_by("id").first()


async def responsible_unit(
    category: Category, village: Village, grid: Grid | None, *, home: Village | None = None
) -> Unit:
    """The unit a new case of `category` in `village`/`grid` goes to first; `home` is the
    reporter's own village when the problem is elsewhere."""
    if category.unit_id is not None:  # type: ignore[attr-defined]
        snap = snapshot.current()
        if snap is not None and category.township_id in snap.townships:  # type: ignore[attr-defined]
            unit = snap.active_unit(category.unit_id)  # type: ignore[attr-defined]
        else:
            unit = await Unit.get_or_none(id=category.unit_id, active=True)  # type: ignore[attr-defined]
        if unit is None:
            raise NoResponsibleUnit(category.code)
        # The confidentiality rule, as `bot.scope.unit_may_see` applies it to a case.
        if kept_from(category, unit, (village.id, home.id if home is not None else None)):
            raise NoResponsibleUnit(category.code)
        return unit
    unit: Unit | None = None
    if category.level == Level.GRID and grid is not None:
        unit = await _covering(UnitKind.GRID, village=village, grid=grid)
    if unit is None and category.level in (Level.GRID, Level.VILLAGE):
        unit = await _covering(UnitKind.VILLAGE, village=village)
    if unit is None and category.level in (Level.GRID, Level.VILLAGE, Level.TOWNSHIP):
        unit = await _covering(UnitKind.TOWNSHIP_TEAM, village=village)
    if unit is None:
        raise NoResponsibleUnit(category.code)
    return unit


async def supervisor_of(unit: Unit) -> Unit | None:
    """The next level up, where escalations and declined cases go."""
    if unit.supervisor_id is None:  # type: ignore[attr-defined]
        return None
    if (snap := snapshot.current()) is not None:
        return snap.active_unit(unit.supervisor_id)  # type: ignore[attr-defined]
    return await Unit.get_or_none(id=unit.supervisor_id, active=True)  # type: ignore[attr-defined]


async def supervisors(unit: Unit) -> list[Unit]:
    """The chain of units above `unit`, nearest first (a loop in the directory stops it)."""
    chain: list[Unit] = []
    seen = {unit.id}
    upper = await supervisor_of(unit)
    while upper is not None and upper.id not in seen:
        chain.append(upper)
        seen.add(upper.id)
        upper = await supervisor_of(upper)
    return chain
