"""The confidentiality rule (清风) itself, with nothing to import: routing and scope both use it.

`bot.scope` says who may see a case and `bot.routing` where a new case goes first; the rule
they share is this one function, here because scope imports routing (for the chain of units
above) and so routing cannot import scope.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.models import Category, Unit


def kept_from(category: Category, unit: Unit, villages: Iterable[int | None]) -> bool:
    """Whether a case of `category` must never reach `unit`: the category is confidential and
    the unit belongs to one of `villages` (the problem's and the reporter's home village; a
    grid's unit belongs to its village)."""
    village_id = unit.village_id  # type: ignore[attr-defined]
    return category.confidential and village_id is not None and village_id in set(villages)
