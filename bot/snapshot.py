"""The directory as one batch of work reads it: read once, looked up many times.

The scheduler's sweep does what is due for hundreds of cases at once; asking the database for
each case's township, unit, category, the unit's members and their accounts, the chain above
it and its robots costs a few dozen statements a case. `load` reads all of that for the
townships of a batch in a few statements, and `reading` makes it the current snapshot for the
code below (bot.scope, bot.routing, bot.notices, bot.cases, bot.delivery), which looks rows up
in it when there is one and asks the database as before when there is none (a handler, a web
view). Cases themselves are never kept: each transition reads and writes its case afresh.

A snapshot lives for one batch (a fraction of a second): a directory import that lands in the
middle of a sweep is seen by the next one, as it would be had it landed a moment later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

from bot.models import (
    Account,
    Category,
    Grid,
    Official,
    Robot,
    Role,
    Township,
    Unit,
    Village,
    Villager,
)


@dataclass
class Snapshot:
    """Directory rows by id, and who belongs where, for the townships of one batch."""

    townships: dict[int, Township] = field(default_factory=dict)
    villages: dict[int, Village] = field(default_factory=dict)
    grids: dict[int, Grid] = field(default_factory=dict)
    units: dict[int, Unit] = field(default_factory=dict)
    categories: dict[int, Category] = field(default_factory=dict)
    officials: dict[int, Official] = field(default_factory=dict)
    #: The officials' and the batch's reporters' Telegram accounts.
    accounts: dict[int, Account] = field(default_factory=dict)
    villagers: dict[int, Villager] = field(default_factory=dict)
    #: unit id → its members' official ids, in id order (active or not: callers filter).
    members: dict[int, list[int]] = field(default_factory=dict)
    #: unit id → its active group robots, in the directory's order.
    robots: dict[int, list[Robot]] = field(default_factory=dict)
    #: township id → its own active robots (its leaders' groups), in the directory's order.
    township_robots: dict[int, list[Robot]] = field(default_factory=dict)

    def with_reporter(self, villager: Villager, account: Account) -> Snapshot:
        """This snapshot and a reporter with their account, for one change (a process's
        kept snapshot is shared by every update: it is left as it is)."""
        return replace(
            self,
            villagers={**self.villagers, villager.id: villager},
            accounts={**self.accounts, account.id: account},
        )

    def active_unit(self, unit_id: int | None) -> Unit | None:
        unit = self.units.get(unit_id) if unit_id is not None else None
        return unit if unit is not None and unit.active else None

    def bound_members(self, unit_id: int, *, role: Role | None = None) -> list[Official]:
        """The unit's active members with a Telegram account, in id order."""
        found = (self.officials[o] for o in self.members.get(unit_id, ()))
        return [
            o for o in found
            if o.active and o.account_id is not None  # type: ignore[attr-defined]
            and (role is None or o.role == role)
        ]

    def bound_officials(self, township_id: int, role: Role) -> list[Official]:
        """The township's active officials of `role` with a Telegram account, in id order."""
        return [
            o for o in self.officials.values()
            if o.township_id == township_id and o.role == role and o.active  # type: ignore[attr-defined]
            and o.account_id is not None  # type: ignore[attr-defined]
        ]

    def official_of_account(self, account_id: int, township_id: int) -> Official | None:
        """The first official identity of an account in a township (as ordered by id)."""
        return next((
            o for o in self.officials.values()
            if o.account_id == account_id and o.township_id == township_id  # type: ignore[attr-defined]
        ), None)


_current: ContextVar[Snapshot | None] = ContextVar("snapshot", default=None)


def current() -> Snapshot | None:
    """The snapshot of the batch being worked on, if any."""
    return _current.get()


async def township(township_id: int) -> Township:
    """A township by id: from the current snapshot when it holds it, else the database."""
    snap = current()
    if snap is not None and township_id in snap.townships:
        return snap.townships[township_id]
    return await Township.get(id=township_id)


async def unit(unit_id: int) -> Unit:
    """A unit by id: from the current snapshot when it holds it, else the database."""
    snap = current()
    if snap is not None and unit_id in snap.units:
        return snap.units[unit_id]
    return await Unit.get(id=unit_id)


async def village(village_id: int) -> Village:
    """A village by id: from the current snapshot when it holds it, else the database."""
    snap = current()
    if snap is not None and village_id in snap.villages:
        return snap.villages[village_id]
    return await Village.get(id=village_id)


async def category(category_id: int) -> Category:
    """A category by id: from the current snapshot when it holds it, else the database."""
    snap = current()
    if snap is not None and category_id in snap.categories:
        return snap.categories[category_id]
    return await Category.get(id=category_id)


@contextmanager
def reading(snapshot: Snapshot) -> Iterator[Snapshot]:
    """Make `snapshot` the current one for the code run inside."""
    token = _current.set(snapshot)
    try:
        yield snapshot
    finally:
        _current.reset(token)


async def load(
    township_ids: Iterable[int],
    reporter_ids: Iterable[int] = (),
) -> Snapshot:
    """Every directory row of these townships, and these reporters with their accounts."""
    ids = sorted(set(township_ids))
    snap = Snapshot()
    snap.townships = {t.id: t for t in await Township.filter(id__in=ids)}
    snap.villages = {v.id: v for v in await Village.filter(township_id__in=ids)}
    snap.grids = {g.id: g for g in await Grid.filter(village__township_id__in=ids)}
    snap.units = {u.id: u for u in await Unit.filter(township_id__in=ids)}
    snap.categories = {c.id: c for c in await Category.filter(township_id__in=ids)}
    officials = await Official.filter(township_id__in=ids).order_by("id")
    snap.officials = {o.id: o for o in officials}
    for official_id, unit_id in await Official.filter(
        township_id__in=ids, units__id__isnull=False
    ).order_by("id").values_list("id", "units__id"):
        snap.members.setdefault(unit_id, []).append(official_id)
    for robot in await Robot.filter(township_id__in=ids, active=True).order_by("position", "id"):
        if robot.unit_id is None:  # type: ignore[attr-defined]
            snap.township_robots.setdefault(robot.township_id, []).append(robot)  # type: ignore[attr-defined]
        else:
            snap.robots.setdefault(robot.unit_id, []).append(robot)  # type: ignore[attr-defined]
    wanted = sorted(set(reporter_ids))
    if wanted:
        snap.villagers = {v.id: v for v in await Villager.filter(id__in=wanted)}
    account_ids = {o.account_id for o in officials if o.account_id is not None}  # type: ignore[attr-defined]
    account_ids |= {v.account_id for v in snap.villagers.values()}  # type: ignore[attr-defined]
    if account_ids:
        snap.accounts = {a.id: a for a in await Account.filter(id__in=sorted(account_ids))}
    return snap
