"""The weekly digest to the township's channel: the week's figures, in words and a chart.

The week is an ISO week (Monday 00:00 to Sunday 24:00) in the township's time zone. The
figures are `scheduler.figures` for that week, the module the back office's dashboard counts
with too; each figure's definition is in the README, and `Figures` names them the same way.
No villager's name or phone number is read, let alone printed: cases appear by number,
villages and units by name. The township's own tasks (中心工作) have a section of their own,
after the villagers' figures, which never count them.

Exactly once: the digest is queued under the key `digest:<township>:<week>` (and that key plus
`:robot:<id>` for each of the township's group robots, `bot.robots`, in the same transaction);
a second scheduler, a restart or a second run of `villagebot digest` finds the key and queues
nothing. A township with robots and no Telegram channel gets its digest on the robots.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from tortoise.transactions import in_transaction

from bot import delivery, robots
from bot.i18n import N_
from bot.models import Delivery, Township
from bot.notices import group_language, text
from scheduler.chart import ChartText, week_chart
from scheduler.figures import (
    OVERDUE_LISTED,
    Figures,
    Line,
    TaskFigures,
    VillageLine,
    count,
    duration,
    percent,
)
from scheduler.policy import Policy

log = logging.getLogger(__name__)

__all__ = ["Figures", "Line", "VillageLine", "Week", "WeekError", "figures", "queue", "render"]


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


async def figures(
    township: Township, week: Week, now: datetime, policy: Policy, language: str
) -> Figures:
    """Count the week (`scheduler.figures`, as the dashboard does); `now` is the moment
    overdue cases are listed as of."""
    return await count(
        township, week.start, week.end, label=week.label, now=now, policy=policy,
        language=language,
    )


# ---- words ---------------------------------------------------------------------------------


def render(f: Figures, language: str) -> str:
    """The digest's text: plain lines, a few sections, within one Telegram message."""
    t = lambda message, **values: text(message, language, **values)  # noqa: E731
    lines = [
        t(N_("📊 {township} weekly digest, {week}"), township=f.township, week=f.period),
        "",
        t(N_("Received {received} · accepted {accepted} · resolved {resolved} · "
             "closed {closed}"),
          received=f.received, accepted=f.accepted, resolved=f.resolved, closed=f.closed),
        t(N_("Completion rate: {value}"), value=percent(f.completion_rate)),
        t(N_("Satisfaction rate: {value}"), value=percent(f.satisfaction_rate)),
        t(N_("Accepted on time: {value} · resolved on time: {other}"),
          value=percent(f.on_time_acceptance), other=percent(f.on_time_resolution)),
        t(N_("Median time to accept: {value} · to resolve: {other}"),
          value=duration(f.median_to_accept, language),
          other=duration(f.median_to_resolve, language)),
        t(N_("Reopen rate: {value}"), value=percent(f.reopen_rate)),
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
    lines += _tasks(f.tasks, language)
    return "\n".join(lines)


def _tasks(f: TaskFigures, language: str) -> list[str]:
    """The township's own tasks, after the villagers' part and apart from it: the totals and
    each unit with a task case overdue or not yet accepted, by name (a unit, never a person).
    Nothing when the township had no task to count."""
    if not f.total.counts():
        return []
    t = lambda message, **values: text(message, language, **values)  # noqa: E731
    total = f.total
    lines = [
        "",
        t(N_("📌 Township tasks:")),
        t(N_("Given {given} · accepted {accepted} (on time {on_time}) · resolved {resolved} · "
             "result accepted {confirmed} · sent back {sent_back}"),
          given=total.given, accepted=total.accepted, on_time=total.accepted_on_time,
          resolved=total.resolved, confirmed=total.confirmed, sent_back=total.sent_back),
        t(N_("Overdue now: {overdue} · waiting to be accepted: {waiting}"),
          overdue=total.overdue, waiting=total.waiting),
    ]
    lagging = f.lagging()
    if lagging:
        lines.append(t(N_("Units with task cases overdue or not yet accepted:")))
        lines += [
            t(N_("· {unit}: {overdue} overdue, {waiting} waiting to be accepted"),
              unit=line.name, overdue=line.overdue, waiting=line.waiting)
            for line in lagging[:OVERDUE_LISTED]
        ]
        if len(lagging) > OVERDUE_LISTED:  # within one Telegram message
            lines.append(t(N_("… and {count} more units"), count=len(lagging) - OVERDUE_LISTED))
    else:
        lines.append(t(N_("Every task case has been accepted and none is overdue.")))
    return lines


def chart(f: Figures, language: str) -> bytes:
    words = ChartText(
        title=text(N_("{township} {week}: cases per day"), language,
                   township=f.township, week=f.period),
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
    """Queue the digest for the channel and the township's group robots once; the channel's
    row (else a robot's), None when it was queued before."""
    township_robots = await robots.of_township(township.id)
    if township.digest_chat_id is None and not township_robots:
        raise ValueError(f"township {township.code} has no digest_chat_id nor robots")
    label = key(township, week)
    if await Delivery.filter(key=label).exists() or await robots.queued(label):
        return None
    language = group_language(township)
    result = await figures(township, week, now, policy, language)
    image = await asyncio.to_thread(chart, result, language)
    body = render(result, language)
    row = None
    async with in_transaction():
        if township.digest_chat_id is not None:
            row = await delivery.post(township.digest_chat_id, body, image=image, key=label)
        robot_rows = await robots.post(township_robots, body, key=label, image=image)
    delivery.wake()
    log.info("digest %s queued", label)
    return row or (robot_rows[0] if robot_rows else None)


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
    for township in await robots.townships_told():
        moment = scheduled(now, township.timezone, policy.digest_weekday, policy.digest_hour)
        if now - moment > policy.catch_up:
            continue
        week = Week.before(moment, township.timezone)
        if await queue(township, week, now, policy) is not None:
            queued += 1
    return queued
