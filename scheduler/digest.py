"""The weekly digest to the township's channel: the week's figures, in words and a chart.

The week is an ISO week (Monday 00:00 to Sunday 24:00) in the township's time zone. The
figures come from the case history of that week (one indexed range of `case_event.at`) and
the cases it touches; each figure's definition is in the README, and `Figures` names them the
same way. No villager's name or phone number is read, let alone printed: cases appear by
number, villages and units by name.

Exactly once: the digest is queued under the key `digest:<township>:<week>`; a second
scheduler, a restart or a second run of `villagebot digest` finds the key and queues nothing.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise.expressions import Q

from bot import delivery
from bot.i18n import N_
from bot.models import Case, CaseEvent, CaseStatus, Category, Delivery, Township, Village
from bot.notices import group_language, text
from scheduler.chart import ChartText, week_chart
from scheduler.policy import Policy

log = logging.getLogger(__name__)

TOP_CATEGORIES = 5
OVERDUE_LISTED = 20
ACCEPTANCE = ("accept", "assign")
CLOSING = ("rate", "close")


class WeekError(ValueError):
    """A week label that is not like 2026-W47."""


@dataclass(frozen=True)
class Week:
    label: str  # 2026-W47
    start: datetime  # Monday 00:00, township time
    end: datetime  # the next Monday 00:00

    @classmethod
    def parse(cls, label: str, timezone: str) -> Week:
        try:
            year_text, week_text = label.strip().upper().split("-W")
            monday = date.fromisocalendar(int(year_text), int(week_text), 1)
        except ValueError:
            raise WeekError(f"{label!r} is not a week like 2026-W47") from None
        return cls.of(monday, timezone)

    @classmethod
    def of(cls, day: date, timezone: str) -> Week:
        monday = day - timedelta(days=day.weekday())
        year, week, _ = monday.isocalendar()
        start = datetime.combine(monday, datetime.min.time(), ZoneInfo(timezone))
        return cls(f"{year}-W{week:02d}", start, start + timedelta(days=7))

    @classmethod
    def before(cls, moment: datetime, timezone: str) -> Week:
        """The last whole week before `moment`."""
        local = moment.astimezone(ZoneInfo(timezone)).date()
        return cls.of(local - timedelta(days=7), timezone)

    def days(self) -> list[date]:
        return [self.start.date() + timedelta(days=i) for i in range(7)]


@dataclass
class VillageLine:
    name: str
    received: int = 0
    resolved: int = 0
    overdue: int = 0


@dataclass
class Figures:
    """One township's week. Rates are fractions (None when there was nothing to count)."""

    township: str
    week: str
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
    villages: list[VillageLine] = field(default_factory=list)
    categories: list[tuple[str, int]] = field(default_factory=list)
    overdue: list[tuple[str, str]] = field(default_factory=list)  # (case number, unit)
    repeats: list[tuple[str, str, int]] = field(default_factory=list)  # village, category, n
    daily: list[tuple[date, int, int]] = field(default_factory=list)  # day, received, resolved


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _median(durations: list[timedelta]) -> timedelta | None:
    if not durations:
        return None
    return timedelta(seconds=statistics.median(d.total_seconds() for d in durations))


def _first_per_case(events: list[CaseEvent]) -> list[CaseEvent]:
    seen: set[int] = set()
    first = []
    for event in events:
        if event.case_id not in seen:  # type: ignore[attr-defined]
            seen.add(event.case_id)  # type: ignore[attr-defined]
            first.append(event)
    return first


async def figures(
    township: Township, week: Week, now: datetime, policy: Policy, language: str
) -> Figures:
    """Count the week; `now` is the moment overdue cases are listed as of."""
    events = (
        await CaseEvent.filter(
            at__gte=week.start.astimezone(UTC),
            at__lt=week.end.astimezone(UTC),
            case__township_id=township.id,
        ).order_by("at", "id")
    )
    case_ids = {event.case_id for event in events}  # type: ignore[attr-defined]
    by_id = {case.id: case for case in await Case.filter(id__in=case_ids)}
    of = {name: [e for e in events if e.action == name] for name in
          ("report", "resolve", "rate", "reopen")}
    acceptances = _first_per_case(
        [e for e in events if e.action in ACCEPTANCE and e.from_status == CaseStatus.NEW]
    )
    resolutions = of["resolve"]
    closings = _first_per_case([e for e in events if e.action in CLOSING])
    ratings = [by_id[e.case_id].rating for e in of["rate"]]  # type: ignore[attr-defined]
    reported_ids = {e.case_id for e in of["report"]}  # type: ignore[attr-defined]
    resolved_ids = {e.case_id for e in resolutions}  # type: ignore[attr-defined]

    result = Figures(township=township.display_name(language), week=week.label)
    result.received = len(of["report"])
    result.accepted = len(acceptances)
    result.resolved = len(resolutions)
    result.closed = len(closings)
    result.completion_rate = _rate(len(reported_ids & resolved_ids), len(reported_ids))
    result.satisfaction_rate = _rate(sum(1 for r in ratings if r and r >= 4), len(ratings))
    result.on_time_acceptance = _rate(
        sum(1 for e in acceptances if _by(e.at, by_id[e.case_id].accept_by)),  # type: ignore[attr-defined]
        len(acceptances),
    )
    result.on_time_resolution = _rate(
        sum(1 for e in resolutions if _by(e.at, by_id[e.case_id].resolve_by)),  # type: ignore[attr-defined]
        len(resolutions),
    )
    result.median_to_accept = _median(
        [e.at - by_id[e.case_id].created_at for e in acceptances]  # type: ignore[attr-defined]
    )
    result.median_to_resolve = _median(
        [e.at - by_id[e.case_id].created_at for e in resolutions]  # type: ignore[attr-defined]
    )
    result.reopen_rate = _rate(len(of["reopen"]), len(resolutions))

    overdue = await _overdue(township, now)
    result.overdue = [
        (case.number, case.unit.display_name(language)) for case in overdue[:OVERDUE_LISTED]
    ]
    if len(overdue) > OVERDUE_LISTED:
        result.overdue.append(("…", str(len(overdue) - OVERDUE_LISTED)))
    await _by_place(result, township, of, by_id, overdue, policy, language)
    zone = ZoneInfo(township.timezone)
    received_days = Counter(e.at.astimezone(zone).date() for e in of["report"])
    resolved_days = Counter(e.at.astimezone(zone).date() for e in resolutions)
    result.daily = [(day, received_days[day], resolved_days[day]) for day in week.days()]
    return result


def _by(moment: datetime, deadline: datetime | None) -> bool:
    return deadline is None or moment <= deadline


async def _overdue(township: Township, now: datetime) -> list[Case]:
    """Open cases past their deadline: not accepted by accept_by, or not resolved by resolve_by."""
    return (
        await Case.filter(township_id=township.id)
        .filter(
            Q(status=CaseStatus.NEW, accept_by__lt=now)
            | Q(status=CaseStatus.ACCEPTED, resolve_by__lt=now)
        )
        .order_by("number")
        .prefetch_related("unit")
    )


async def _by_place(
    result: Figures,
    township: Township,
    of: dict[str, list[CaseEvent]],
    by_id: dict[int, Case],
    overdue: list[Case],
    policy: Policy,
    language: str,
) -> None:
    """The table by village, the top categories and the repeat problems."""
    villages = {
        v.id: v for v in await Village.filter(township_id=township.id).order_by("position", "id")
    }
    categories = {c.id: c for c in await Category.filter(township_id=township.id)}
    lines = {vid: VillageLine(v.display_name(language)) for vid, v in villages.items()}
    for event in of["report"]:
        lines[by_id[event.case_id].village_id].received += 1  # type: ignore[attr-defined]
    for event in of["resolve"]:
        lines[by_id[event.case_id].village_id].resolved += 1  # type: ignore[attr-defined]
    for case in overdue:
        lines[case.village_id].overdue += 1  # type: ignore[attr-defined]
    result.villages = [
        line for vid, line in lines.items()
        if villages[vid].active or line.received or line.resolved or line.overdue
    ]
    reported = [by_id[e.case_id] for e in of["report"]]  # type: ignore[attr-defined]
    per_category = Counter(case.category_id for case in reported)  # type: ignore[attr-defined]
    result.categories = [
        (categories[cid].display_name(language), count)
        for cid, count in sorted(per_category.items(), key=lambda item: (-item[1], item[0]))
    ][:TOP_CATEGORIES]
    places = Counter((c.village_id, c.category_id) for c in reported)  # type: ignore[attr-defined]
    result.repeats = [
        (
            villages[vid].display_name(language),
            categories[cid].display_name(language),
            count,
        )
        for (vid, cid), count in sorted(places.items(), key=lambda item: (-item[1], item[0]))
        if count >= policy.repeat_threshold
    ]


# ---- words ---------------------------------------------------------------------------------


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _duration(value: timedelta | None, language: str) -> str:
    if value is None:
        return "–"
    hours = value.total_seconds() / 3600
    if hours < 48:
        return text(N_("{hours} h"), language, hours=f"{hours:.1f}")
    return text(N_("{days} d"), language, days=f"{hours / 24:.1f}")


def render(f: Figures, language: str) -> str:
    """The digest's text: plain lines, a few sections, within one Telegram message."""
    t = lambda message, **values: text(message, language, **values)  # noqa: E731
    lines = [
        t(N_("📊 {township} weekly digest, {week}"), township=f.township, week=f.week),
        "",
        t(N_("Received {received} · accepted {accepted} · resolved {resolved} · "
             "closed {closed}"),
          received=f.received, accepted=f.accepted, resolved=f.resolved, closed=f.closed),
        t(N_("Completion rate: {value}"), value=_percent(f.completion_rate)),
        t(N_("Satisfaction rate: {value}"), value=_percent(f.satisfaction_rate)),
        t(N_("Accepted on time: {value} · resolved on time: {other}"),
          value=_percent(f.on_time_acceptance), other=_percent(f.on_time_resolution)),
        t(N_("Median time to accept: {value} · to resolve: {other}"),
          value=_duration(f.median_to_accept, language),
          other=_duration(f.median_to_resolve, language)),
        t(N_("Reopen rate: {value}"), value=_percent(f.reopen_rate)),
        "",
        t(N_("By village (received / resolved / overdue now):")),
    ]
    lines += [f"· {v.name}: {v.received} / {v.resolved} / {v.overdue}" for v in f.villages]
    if f.categories:
        lines += ["", t(N_("Top categories:"))]
        lines += [f"· {name}: {count}" for name, count in f.categories]
    lines.append("")
    if f.overdue:
        lines.append(t(N_("⏰ Open and overdue:")))
        for number, unit in f.overdue:
            if number == "…":
                lines.append(t(N_("… and {count} more"), count=unit))
            else:
                lines.append(f"· {number} · {unit}")
    else:
        lines.append(t(N_("⏰ No open case is overdue.")))
    if f.repeats:
        lines += ["", t(N_("⚠️ Repeat problems:"))]
        lines += [
            t(N_("· {village}: {count} cases of {category}"),
              village=village, category=category, count=count)
            for village, category, count in f.repeats
        ]
    return "\n".join(lines)


def chart(f: Figures, language: str) -> bytes:
    words = ChartText(
        title=text(N_("{township} {week}: cases per day"), language,
                   township=f.township, week=f.week),
        received=text(N_("received"), language),
        resolved=text(N_("resolved"), language),
    )
    return week_chart(f.daily, words)


# ---- sending ---------------------------------------------------------------------------------


def key(township: Township, week: Week) -> str:
    return f"digest:{township.code}:{week.label}"


async def queue(
    township: Township, week: Week, now: datetime, policy: Policy
) -> Delivery | None:
    """Queue the digest for the channel once; None when it was queued before."""
    if township.digest_chat_id is None:
        raise ValueError(f"township {township.code} has no digest_chat_id")
    if await Delivery.filter(key=key(township, week)).exists():
        return None
    language = group_language(township)
    result = await figures(township, week, now, policy, language)
    image = await asyncio.to_thread(chart, result, language)
    row = await delivery.post(
        township.digest_chat_id, render(result, language), image=image, key=key(township, week)
    )
    log.info("digest %s queued", key(township, week))
    return row


def scheduled(now: datetime, timezone: str, weekday: int, hour: int) -> datetime:
    """The latest weekly moment (weekday, hour, township time) at or before `now`."""
    local = now.astimezone(ZoneInfo(timezone))
    moment = datetime.combine(
        local.date() - timedelta(days=(local.weekday() - weekday) % 7),
        datetime.min.time().replace(hour=hour),
        ZoneInfo(timezone),
    )
    if moment > local:
        moment -= timedelta(days=7)
    return moment.astimezone(UTC)


async def due(now: datetime, policy: Policy) -> int:
    """Queue every township's digest whose moment has come (within the catch-up grace)."""
    queued = 0
    for township in await Township.filter(active=True, digest_chat_id__isnull=False):
        moment = scheduled(now, township.timezone, policy.digest_weekday, policy.digest_hour)
        if now - moment > policy.catch_up:
            continue
        week = Week.before(moment, township.timezone)
        if await queue(township, week, now, policy) is not None:
            queued += 1
    return queued
