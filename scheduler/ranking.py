"""红灰榜: once a month, the township's units ranked by a score, the best and the worst few.

A unit answers for what happened while a case was with it, read from the month's history:
each event records the unit the case was at. The score (0–100) and its parts:

- on-time acceptance (30): acceptances by their deadline, over acceptances plus the cases the
  scheduler escalated away from the unit because nobody accepted them in time;
- on-time resolution (30): resolutions by their deadline, over resolutions;
- satisfaction (30): ratings of 4 or 5 stars, over ratings;
- no reopens (10): one minus the reopens over resolutions (not below zero).

A part with nothing to count is left out and the others are scaled up to 100. A unit needs
`MIN_CASES` acceptances or missed acceptances in the month to be ranked. The best `SHOWN`
make the red list, the worst `SHOWN` the grey list; with fewer than twice that many units
ranked, each list takes half of them. The score reads villagers' cases only.

The township's own tasks (中心工作) are judged apart, in a line under the grey list: every unit
that let a task's deadline pass in the month (`scheduler.figures.TaskLine.late`: accepted or
resolved late, escalated away or flagged overdue by the scheduler, or still open past the
deadline at the month's end) is named with how many of its task cases were late, most first.
No minimum and no score: a task is the township's own instruction, so one ignored is one too
many, and a unit that does well for villagers is still named when it ignored a task; a unit
that met every deadline is never named, however many tasks it had.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from bot import cases as casework
from bot import delivery, robots
from bot.i18n import N_
from bot.models import Case, CaseEvent, CaseStatus, Delivery, Township, Unit
from bot.notices import group_language, text
from scheduler import figures
from scheduler.figures import CASES_AT_ONCE, VILLAGERS, raw_rows
from scheduler.policy import Policy

log = logging.getLogger(__name__)

MIN_CASES = 3
SHOWN = 3
WEIGHTS = {"acceptance": 30, "resolution": 30, "satisfaction": 30, "no_reopen": 10}


@dataclass(frozen=True)
class Month:
    label: str  # 2026-10
    start: datetime
    end: datetime

    @classmethod
    def of(cls, year: int, month: int, timezone: str) -> Month:
        zone = ZoneInfo(timezone)
        start = datetime(year, month, 1, tzinfo=zone)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
        return cls(f"{year}-{month:02d}", start, end)

    @classmethod
    def parse(cls, label: str, timezone: str) -> Month:
        try:
            day = date.fromisoformat(label.strip() + "-01")
        except ValueError:
            raise ValueError(f"{label!r} is not a month like 2026-10") from None
        return cls.of(day.year, day.month, timezone)

    @classmethod
    def before(cls, moment: datetime, timezone: str) -> Month:
        local = moment.astimezone(ZoneInfo(timezone))
        year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
        return cls.of(year, month, timezone)


@dataclass
class Tally:
    accepted: int = 0
    accepted_on_time: int = 0
    missed: int = 0
    resolved: int = 0
    resolved_on_time: int = 0
    rated: int = 0
    satisfied: int = 0
    reopened: int = 0

    def parts(self) -> dict[str, float]:
        parts: dict[str, float] = {}
        if self.accepted + self.missed:
            parts["acceptance"] = self.accepted_on_time / (self.accepted + self.missed)
        if self.resolved:
            parts["resolution"] = self.resolved_on_time / self.resolved
            parts["no_reopen"] = max(0.0, 1 - self.reopened / self.resolved)
        if self.rated:
            parts["satisfaction"] = self.satisfied / self.rated
        return parts

    def score(self) -> float | None:
        parts = self.parts()
        weight = sum(WEIGHTS[name] for name in parts)
        if not weight:
            return None
        return 100 * sum(WEIGHTS[name] * value for name, value in parts.items()) / weight


@dataclass
class Ranking:
    township: str
    month: str
    ranked: list[tuple[str, float]] = field(default_factory=list)  # unit name, score; best first
    #: Units that let a township task's deadline pass: (unit name, late task cases), most first.
    tasks_late: list[tuple[str, int]] = field(default_factory=list)

    def lists(self) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        shown = min(SHOWN, len(self.ranked) // 2)
        if not shown:
            return [], []
        return self.ranked[:shown], list(reversed(self.ranked[-shown:]))


#: The events a unit's tally reads.
TALLIED = ("accept", "assign", "resolve", "rate", "reopen", "escalate")


async def tallies(township: Township, month: Month) -> dict[int, Tally]:
    """Each unit's tally for the month. The month's events are read by their time and their
    cases by id, as `scheduler.figures` reads a period (the dashboard shows this month's list
    on every visit, so the month's ten thousand events must not each become a model)."""
    events = await raw_rows(
        CaseEvent.filter(
            at__gte=month.start.astimezone(UTC), at__lt=month.end.astimezone(UTC),
            action__in=TALLIED,
        ).order_by("case_id", "id").values_list(
            "id", "case_id", "at", "action", "from_status", "unit_id", "actor_id"
        ),
        (2,),
    )
    ids = sorted({row[1] for row in events})
    cases: dict[int, list[Any]] = {}
    for first in range(0, len(ids), CASES_AT_ONCE):
        rows = await raw_rows(
            Case.filter(
                VILLAGERS, id__in=ids[first:first + CASES_AT_ONCE], township_id=township.id
            )
            .values_list("id", "accept_by", "resolve_by", "rating"),
            (1, 2),
        )
        cases.update((row[0], row[1:]) for row in rows)
    result: dict[int, Tally] = {}
    for event_id, case_id, at, action, from_status, unit_id, actor_id in events:
        if case_id not in cases or unit_id is None:
            continue
        accept_by, resolve_by, rating = cases[case_id]
        tally = result.setdefault(unit_id, Tally())
        if action in ("accept", "assign") and from_status == CaseStatus.NEW:
            tally.accepted += 1
            tally.accepted_on_time += accept_by is None or at <= accept_by
        elif action == "resolve":
            tally.resolved += 1
            tally.resolved_on_time += resolve_by is None or at <= resolve_by
        elif action == "rate":
            tally.rated += 1
            tally.satisfied += (rating or 0) >= 4
        elif action == "reopen":
            tally.reopened += 1
        elif action == "escalate" and actor_id is None:
            below = await _unit_before(case_id, event_id)
            if below is not None:
                result.setdefault(below, Tally()).missed += 1
    return result


async def _unit_before(case_id: int, event_id: int) -> int | None:
    earlier = await CaseEvent.filter(case_id=case_id, id__lt=event_id).order_by("-id").first()
    return earlier.unit_id if earlier is not None else None  # type: ignore[attr-defined]


async def rank(
    township: Township, month: Month, language: str, *, now: datetime | None = None
) -> Ranking:
    """The month's ranking; `now` (the present by default) bounds "still open past the
    deadline" for a month still running."""
    units = {u.id: u for u in await Unit.filter(township_id=township.id).order_by("id")}
    scored = []
    for unit_id, tally in (await tallies(township, month)).items():
        score = tally.score()
        if score is None or tally.accepted + tally.missed < MIN_CASES or unit_id not in units:
            continue
        scored.append((units[unit_id].display_name(language), score))
    scored.sort(key=lambda item: (-item[1], item[0]))
    counted = await figures.tasks(
        township, month.start, month.end, now=now or casework.now(), language=language,
        units=units,
    )
    late = sorted(
        ((line.name, line.late) for line in counted.units if line.late),
        key=lambda item: (-item[1], item[0]),
    )
    return Ranking(township.display_name(language), month.label, scored, late)


def render(ranking: Ranking, language: str) -> str:
    red, grey = ranking.lists()
    lines = [
        text(N_("🏅 {township} red and grey list, {month}"), language,
             township=ranking.township, month=ranking.month),
        "",
    ]
    if not red:
        lines.append(
            text(N_("Too few cases this month to rank the units (each needs {count})."),
                 language, count=MIN_CASES)
        )
    else:
        lines.append(text(N_("🔴 Red list (best):"), language))
        lines += [f"{i}. {name} · {score:.0f}" for i, (name, score) in enumerate(red, 1)]
        lines += ["", text(N_("⚪ Grey list (needs attention):"), language)]
        lines += [f"{i}. {name} · {score:.0f}" for i, (name, score) in enumerate(grey, 1)]
        lines += ["", text(N_("Score: on-time acceptance {acceptance}, on-time resolution "
                              "{resolution}, satisfaction {satisfaction}, no reopens "
                              "{no_reopen}."), language, **WEIGHTS)]
    if ranking.tasks_late:
        lines += ["", text(N_("📌 Township tasks overdue (late task cases):"), language)]
        lines += [
            text(N_("· {unit}: {count} late"), language, unit=name, count=late)
            for name, late in ranking.tasks_late[:figures.OVERDUE_LISTED]
        ]
        if len(ranking.tasks_late) > figures.OVERDUE_LISTED:  # within one Telegram message
            lines.append(text(N_("… and {count} more units"), language,
                              count=len(ranking.tasks_late) - figures.OVERDUE_LISTED))
    return "\n".join(lines)


def key(township: Township, month: Month) -> str:
    return f"redgrey:{township.code}:{month.label}"


async def queue(
    township: Township, month: Month, now: datetime | None = None
) -> Delivery | None:
    """Queue the list for the channel and the township's group robots once (as the digest)."""
    township_robots = await robots.of_township(township.id)
    if township.digest_chat_id is None and not township_robots:
        raise ValueError(f"township {township.code} has no digest_chat_id nor robots")
    label = key(township, month)
    if await Delivery.filter(key=label).exists() or await robots.queued(label):
        return None
    language = group_language(township)
    body = render(await rank(township, month, language, now=now), language)
    row = None
    async with in_transaction():
        if township.digest_chat_id is not None:
            row = await delivery.post(township.digest_chat_id, body, key=label)
        robot_rows = await robots.post(township_robots, body, key=label)
    delivery.wake()
    return row or (robot_rows[0] if robot_rows else None)


def scheduled(now: datetime, timezone: str, hour: int) -> datetime:
    """The latest first-of-the-month at `hour`, township time, at or before `now`."""
    local = now.astimezone(ZoneInfo(timezone))
    moment = datetime(local.year, local.month, 1, hour, tzinfo=ZoneInfo(timezone))
    if moment > local:
        moment = Month.before(local, timezone).start.replace(hour=hour)
    return moment.astimezone(UTC)


async def due(now: datetime, policy: Policy) -> int:
    queued = 0
    for township in await robots.townships_told():
        moment = scheduled(now, township.timezone, policy.digest_hour)
        if now - moment > policy.catch_up:
            continue
        month = Month.before(moment, township.timezone)
        if await queue(township, month, now) is not None:
            queued += 1
    return queued
