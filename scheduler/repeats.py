"""高频预警: N or more cases of one category in one village within 7 days alert the dispatchers.

Which case sets off a warning is decided by the cases alone, not by when the scheduler looks:
the first case that makes N within the 7 days before it, counted after the previous warning's
quiet week. A case counts once for its report and once for each villager who joined it (附议,
`Case.supporters`), at the time it was reported: a problem that ten people met is a repeat
problem though only one of them reported it. Two schedulers, or one that looks twice, name
the same case, and the outbox key (village, category, that case, chat) lets the warning out
once. The township's group robots (bot.robots) get every warning of a category that is not
confidential, whoever else is told: a repeat problem is for the township's leaders, whose work
group the robots are. Only villagers' cases count: a township task given to many units of a
village is one decision of the township, not a problem villagers keep meeting.

The dashboard lists the open problems (`open_bursts`): the same notion, read from the cases
rather than from the warnings sent, so it also covers what a scope or a place narrows it to.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Count, Sum

from bot import delivery, robots, scope, snapshot
from bot.i18n import N_
from bot.models import (
    Account,
    Case,
    CaseStatus,
    Delivery,
    Official,
    Township,
)
from bot.notices import group_language, text
from scheduler.figures import VILLAGERS, raw_rows
from scheduler.policy import Policy

log = logging.getLogger(__name__)

KEY = "repeat:{village}:{category}:"
NUMBERS_MAX = 10
REPEAT = N_("⚠️ Repeat problem: {count} cases of {category} in {village} within 7 days: "
            "{numbers}. Worth a look at the cause.")


def _key_prefix(village_id: int, category_id: int) -> str:
    return KEY.format(village=village_id, category=category_id)


async def _quiet_since(village_id: int, category_id: int, window: timedelta) -> datetime | None:
    """After a warning, the same place and category stay quiet for one window."""
    last = (
        await Delivery.filter(key__startswith=_key_prefix(village_id, category_id))
        .order_by("-id")
        .first()
    )
    if last is None or last.key is None:
        return None
    case_id = int(last.key.split(":")[3])
    case = await Case.get_or_none(id=case_id)
    return case.created_at + window if case is not None else None


def _weight(case: Case) -> int:
    """What a case counts for: its report and each villager who joined it."""
    return 1 + case.supporters


def _trigger(cases: list[Case], threshold: int, window: timedelta, after: datetime) -> int:
    """Index of the first case after `after` with `threshold` reports (cases and their
    supporters) in the window ending at it; -1 if none."""
    first = 0
    counted = 0
    for index, case in enumerate(cases):
        counted += _weight(case)
        while cases[first].created_at <= case.created_at - window:
            counted -= _weight(cases[first])
            first += 1
        if case.created_at > after and counted >= threshold:
            return index
    return -1


async def _recipients(
    township: Township, officials: list[Official], channel: bool
) -> list[tuple[int, str]]:
    """Who watches the category (`scope.repeat_watchers`): the officials' chats, else the
    digest channel where it may stand in."""
    ids = sorted({o.account_id for o in officials})  # type: ignore[attr-defined]
    snap = snapshot.current()
    if snap is not None and all(i in snap.accounts for i in ids):
        accounts = [snap.accounts[i] for i in ids]
    else:
        accounts = list(await Account.filter(id__in=ids).order_by("id"))
    chats = [(account.id, account.language) for account in accounts]
    if not chats and channel and township.digest_chat_id is not None:
        chats.append((township.digest_chat_id, group_language(township)))
    return chats


async def warn(now: datetime, policy: Policy) -> int:
    """Queue the warnings that are due; returns how many places and categories were warned."""
    window = policy.repeat_window
    groups = [
        group
        for group in await Case.filter(
            VILLAGERS, created_at__gt=now - window, created_at__lte=now
        )
        .annotate(count=Count("id"), joined=Sum("supporters"))
        .group_by("township_id", "village_id", "category_id")
        .values("township_id", "village_id", "category_id", "count", "joined")
        if group["count"] + (group["joined"] or 0) >= policy.repeat_threshold
    ]
    if not groups:
        return 0
    # The directory rows the warnings need, read once for all of them.
    with snapshot.reading(await snapshot.load({group["township_id"] for group in groups})):
        return await _warn_groups(groups, now, policy)


async def _warn_groups(groups: list[dict[str, Any]], now: datetime, policy: Policy) -> int:
    window = policy.repeat_window
    warned = 0
    for group in groups:
        village_id, category_id = group["village_id"], group["category_id"]
        since = await _quiet_since(village_id, category_id, window)
        recent = [
            case
            for case in await Case.filter(
                VILLAGERS,
                village_id=village_id,
                category_id=category_id,
                created_at__gt=now - 2 * window,
                created_at__lte=now,
            ).order_by("created_at", "id")
            if since is None or case.created_at >= since
        ]
        index = _trigger(recent, policy.repeat_threshold, window, now - window)
        if index < 0:
            continue
        trigger = recent[index]
        burst = [c for c in recent if trigger.created_at - window < c.created_at]
        await _send(trigger, burst, village_id, category_id)
        warned += 1
    return warned


async def _send(trigger: Case, burst: list[Case], village_id: int, category_id: int) -> None:
    township = await snapshot.township(trigger.township_id)  # type: ignore[attr-defined]
    category = await snapshot.category(category_id)
    village = await snapshot.village(village_id)
    numbers = [case.number for case in burst[:NUMBERS_MAX]]
    if len(burst) > NUMBERS_MAX:
        numbers.append("…")
    prefix = _key_prefix(village_id, category_id)
    officials, township_wide = await scope.repeat_watchers(township, category)
    for chat_id, language in await _recipients(township, officials, township_wide):
        body = text(
            REPEAT,
            language,
            count=sum(_weight(case) for case in burst),
            category=category.display_name(language),
            village=village.display_name(language),
            numbers=", ".join(numbers),
        )
        await delivery.post(chat_id, body, key=f"{prefix}{trigger.id}:{chat_id}")
    if township_wide:  # never a confidential category's: its own unit alone hears of it
        language = group_language(township)
        await robots.post(
            await robots.of_township(township.id),
            text(REPEAT, language, count=sum(_weight(case) for case in burst),
                 category=category.display_name(language),
                 village=village.display_name(language), numbers=", ".join(numbers)),
            key=f"{prefix}{trigger.id}:township",
        )
    log.info("repeat warning: %s cases of %s in %s", len(burst), category.code, village.code)


# ---- open problems, for the dashboard -------------------------------------------------------


@dataclass
class Burst:
    """Cases of one category in one village that made a repeat problem: `REPEAT_THRESHOLD` or
    more within the window (a case counting with its supporters), chained (each within the
    window of the next ones)."""

    village_id: int
    category_id: int
    numbers: list[str]
    still_open: int
    first: datetime
    last: datetime


def bursts(
    cases: list[tuple[str, datetime, bool]], threshold: int, window: timedelta,
    weights: list[int] | None = None,
) -> list[tuple[int, int]]:
    """The runs (first, last index, inclusive) of `cases` (number, created, open; by time) in
    which every case lies in a window holding `threshold` reports (each case counting its
    `weights`, 1 when not given); overlapping runs are one."""
    runs: list[tuple[int, int]] = []
    first = 0
    counted = 0
    for index, (_, created, _) in enumerate(cases):
        counted += weights[index] if weights else 1
        while cases[first][1] <= created - window:
            counted -= weights[first] if weights else 1
            first += 1
        if counted < threshold:
            continue
        if runs and first <= runs[-1][1]:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((first, index))
    return runs


async def open_bursts(
    township_id: int, policy: Policy, since: datetime, until: datetime, *,
    seen: Q | None = None, village: int | None = None, unit: int | None = None,
) -> list[Burst]:
    """The repeat problems of a period that are still open: bursts (as `warn` finds them) with
    a case reported in [since, until) and at least one case not closed, of the cases `seen`
    selects, newest first. One indexed range of `case(township_id, created_at)`: the period
    and one window before it, so that a burst running into the period is seen whole."""
    place: dict[str, int] = {"township_id": township_id}
    if village is not None:
        place["village_id"] = village
    if unit is not None:
        place["unit_id"] = unit
    window = policy.repeat_window
    rows = await raw_rows(Case.filter(
        seen if seen is not None else Q(), VILLAGERS, created_at__gt=since - window,
        created_at__lt=until,
        **place,
    ).order_by("created_at", "id").values_list(
        "village_id", "category_id", "number", "created_at", "status", "supporters"
    ), (3,))
    by_group: dict[tuple[int, int], list[tuple[str, datetime, bool]]] = {}
    weights: dict[tuple[int, int], list[int]] = {}
    for village_id, category_id, number, created, status, joined in rows:
        by_group.setdefault((village_id, category_id), []).append(
            (number, created, status != CaseStatus.CLOSED)
        )
        weights.setdefault((village_id, category_id), []).append(1 + (joined or 0))
    found = []
    for (village_id, category_id), cases in by_group.items():
        group_weights = weights[(village_id, category_id)]
        for first, last in bursts(cases, policy.repeat_threshold, window, group_weights):
            run = cases[first:last + 1]
            still_open = sum(1 for _, _, is_open in run if is_open)
            if still_open and run[-1][1] >= since:
                found.append(Burst(village_id, category_id, [n for n, _, _ in run], still_open,
                                   run[0][1], run[-1][1]))
    found.sort(key=lambda b: (b.last, b.village_id, b.category_id), reverse=True)
    return found
