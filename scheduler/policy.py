"""When the scheduler reminds, escalates, closes and reports: the supervision settings, parsed.

Settings stay strings in `bot.config` (one line each in `.env`); this turns them into values
and checks them, so a wrong one stops the program with its name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.worktime import parse_span

if TYPE_CHECKING:
    from bot.config import Settings

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Point:
    """A reminder moment: at a share of the time (`50%`) or some hours before (`2h`)."""

    share: float | None = None
    before_hours: float | None = None

    def offset(self, total: timedelta) -> timedelta | None:
        """How long after the window's start this point falls; None when outside it."""
        if self.share is not None:
            moment = total * self.share
        else:
            moment = total - timedelta(hours=self.before_hours or 0)
        return moment if timedelta() < moment < total else None


def parse_points(text: str) -> tuple[Point, ...]:
    """'50%,2h' → a reminder at half time and one two hours before; '' → none."""
    points: list[Point] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        try:
            if part.endswith("%"):
                share = float(part[:-1]) / 100
                if not 0 < share < 1:
                    raise ValueError
                points.append(Point(share=share))
            elif part.endswith("h"):
                hours = float(part[:-1])
                if not 0 < hours < math.inf:  # also refuses nan
                    raise ValueError
                points.append(Point(before_hours=hours))
            else:
                raise ValueError
        except ValueError:
            raise ValueError(f"{part!r} is not a reminder point like 50% or 2h") from None
    return tuple(points)


def parse_quiet_hours(text: str) -> tuple[time, time] | None:
    """'22:00-07:00' → (22:00, 07:00); '' or 'off' → no quiet hours."""
    text = text.strip().lower()
    if text in ("", "off", "none"):
        return None
    start, end = parse_span(text, "22:00-07:00")
    if start == end:
        raise ValueError(f"{text!r} is empty")
    return start, end


def parse_weekday(text: str) -> int:
    day = text.strip().lower()[:3]
    if day not in WEEKDAYS:
        raise ValueError(f"{text!r} is not a weekday like mon")
    return WEEKDAYS.index(day)


@dataclass(frozen=True)
class Policy:
    quiet_hours: tuple[time, time] | None = (time(22), time(7))
    accept_points: tuple[Point, ...] = field(default_factory=lambda: parse_points("50%"))
    resolve_points: tuple[Point, ...] = field(default_factory=lambda: parse_points("50%,2h"))
    #: After the resolve deadline, one more supervising level is told every this often.
    overdue_every_hours: int = 24
    auto_close: timedelta = timedelta(days=7)
    digest_weekday: int = 0
    digest_hour: int = 8
    #: A digest or list missed while the bot was down is still sent this long after its time.
    catch_up: timedelta = timedelta(hours=24)
    repeat_threshold: int = 3
    repeat_window: timedelta = timedelta(days=7)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            quiet_hours=parse_quiet_hours(settings.quiet_hours),
            accept_points=parse_points(settings.remind_accept),
            resolve_points=parse_points(settings.remind_resolve),
            overdue_every_hours=settings.overdue_every_hours,
            auto_close=timedelta(days=settings.auto_close_days),
            digest_weekday=parse_weekday(settings.digest_weekday),
            digest_hour=settings.digest_hour,
            catch_up=timedelta(hours=settings.catch_up_hours),
            repeat_threshold=settings.repeat_threshold,
        )

    def quiet_until(self, moment: datetime, timezone: str) -> datetime | None:
        """The end of the quiet hours `moment` falls in, in the township's time; else None."""
        if self.quiet_hours is None:
            return None
        start, end = self.quiet_hours
        local = moment.astimezone(ZoneInfo(timezone))
        now = local.timetz().replace(tzinfo=None)
        # The usual quiet hours run across midnight.
        inside = start <= now < end if start < end else now >= start or now < end
        if not inside:
            return None
        day = local.date() if now < end else local.date() + timedelta(days=1)
        # In UTC, like every stored moment: SQLite compares them as text.
        return datetime.combine(day, end, ZoneInfo(timezone)).astimezone(UTC)
