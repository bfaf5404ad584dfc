"""Deadlines in calendar hours or in a township's working hours.

A category with `working_hours` counts its accept and resolve hours only while the township's
office is open: its office hours (`Township.office_hours`, e.g. 08:30-12:00,14:00-17:30) on its
working days. A working day is a Monday to Friday that is not a Chinese public holiday, plus
the make-up working days (调休) the State Council announces, both from the `chinese_calendar`
library; the township's directory adds its own days off and working days, which win. For a
year the library does not know yet, weekends alone decide, until the library is updated.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import chinese_calendar

if TYPE_CHECKING:
    from bot.models import Township

log = logging.getLogger(__name__)

DEFAULT_OFFICE_HOURS = "08:30-12:00,14:00-17:30"
#: A deadline further than this many days of searching means the calendar has no working time.
SEARCH_DAYS = 3660

Span = tuple[time, time]


CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def parse_span(text: str, example: str) -> Span:
    """'08:30-12:00' → (08:30, 12:00): plain HH:MM local times, no offsets or seconds."""
    start_text, _, end_text = text.partition("-")
    found = [CLOCK.fullmatch(t.strip()) for t in (start_text, end_text)]
    if not all(found):
        raise ValueError(f"{text!r} is not a span like {example}")
    start, end = (time(int(m.group(1)), int(m.group(2))) for m in found if m)
    return start, end


def parse_office_hours(text: str) -> tuple[Span, ...]:
    """'08:30-12:00,14:00-17:30' → ((08:30, 12:00), (14:00, 17:30)); ValueError when wrong."""
    spans: list[Span] = []
    for part in text.split(","):
        part = part.strip()
        start, end = parse_span(part, "08:30-12:00")
        if end <= start:
            raise ValueError(f"{part!r} ends before it starts")
        if spans and start < spans[-1][1]:
            raise ValueError(f"{part!r} overlaps or precedes the span before it")
        spans.append((start, end))
    return tuple(spans)


@lru_cache(maxsize=4096)
def _national_workday(day: date) -> bool:
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:  # a year the library has no data for yet
        return day.weekday() < 5


@dataclass(frozen=True)
class Calendar:
    timezone: str = "Asia/Shanghai"
    office_hours: tuple[Span, ...] = parse_office_hours(DEFAULT_OFFICE_HOURS)
    days_off: frozenset[date] = frozenset()
    working_days: frozenset[date] = frozenset()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_workday(self, day: date) -> bool:
        if day in self.working_days:
            return True
        if day in self.days_off:
            return False
        return _national_workday(day)

    def _open_spans(self, day: date) -> list[tuple[datetime, datetime]]:
        if not self.is_workday(day):
            return []
        zone = self.zone
        return [
            (datetime.combine(day, start, zone), datetime.combine(day, end, zone))
            for start, end in self.office_hours
        ]

    def add(self, start: datetime, hours: float, *, working: bool) -> datetime:
        """The moment `hours` after `start`, counting only office hours when `working`."""
        if not working:
            return start + timedelta(hours=hours)
        left = timedelta(hours=hours)
        local = start.astimezone(self.zone)
        day = local.date()
        for _ in range(SEARCH_DAYS):
            for opens, closes in self._open_spans(day):
                begin = max(opens, local)
                if begin >= closes:
                    continue
                if begin + left <= closes:
                    return (begin + left).astimezone(UTC)
                left -= closes - begin
            day += timedelta(days=1)
        raise ValueError("the calendar has no working time in the next ten years")

    def working_between(self, start: datetime, end: datetime) -> timedelta:
        """Office time between two moments (used for reminders at a share of the time)."""
        total = timedelta()
        local_start, local_end = start.astimezone(self.zone), end.astimezone(self.zone)
        day = local_start.date()
        while day <= local_end.date():
            for opens, closes in self._open_spans(day):
                begin, finish = max(opens, local_start), min(closes, local_end)
                if finish > begin:
                    total += finish - begin
            day += timedelta(days=1)
        return total


def calendar_of(township: Township) -> Calendar:
    try:
        office_hours = parse_office_hours(township.office_hours or DEFAULT_OFFICE_HOURS)
    except ValueError as error:  # the directory checks it; an old row may predate that
        log.warning("township %s: office hours %s; using the default", township.code, error)
        office_hours = parse_office_hours(DEFAULT_OFFICE_HOURS)
    return Calendar(
        timezone=township.timezone,
        office_hours=office_hours,
        days_off=frozenset(date.fromisoformat(day) for day in township.days_off),
        working_days=frozenset(date.fromisoformat(day) for day in township.working_days),
    )
