"""Working-hours deadlines (bot.worktime): office hours, Chinese holidays and make-up days.

A category counting working hours must not fall due over a weekend or National Day week, and a
deadline must come back in UTC because stored moments are compared as text.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from bot.models import Township
from bot.worktime import DEFAULT_OFFICE_HOURS, Calendar, calendar_of, parse_office_hours

SHANGHAI = ZoneInfo("Asia/Shanghai")
NATIONAL_DAY_2026 = [date(2026, 10, day) for day in range(1, 8)]
#: The 2026 make-up working days (调休) that fall on a weekend, per chinese_calendar 1.11.
MAKE_UP_2026 = [date(2026, 9, 20), date(2026, 10, 10)]


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


# --- parse_office_hours


def test_the_default_office_hours_parse() -> None:
    assert parse_office_hours(DEFAULT_OFFICE_HOURS) == (
        (time(8, 30), time(12)),
        (time(14), time(17, 30)),
    )


def test_office_hours_allow_spaces_and_adjacent_spans() -> None:
    assert parse_office_hours(" 08:00 - 12:00 , 12:00-13:00 ") == (
        (time(8), time(12)),
        (time(12), time(13)),
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("8-17", "not a span"),
        ("", "not a span"),
        ("08:30", "not a span"),
        ("08:30-12:00,", "not a span"),
        ("morning", "not a span"),
        ("17:00-08:30", "ends before it starts"),
        ("12:00-12:00", "ends before it starts"),
        ("08:00-12:00,11:00-13:00", "overlaps"),
        ("14:00-17:30,08:30-12:00", "precedes"),
    ],
)
def test_bad_office_hours_are_refused(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_office_hours(text)


@pytest.mark.parametrize(
    "text", ["08:30+08:00-12:00", "08:30-12:00-08:00", "08:30+08:00-12:00+08:00"]
)
def test_office_hours_with_a_utc_offset_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_office_hours(text)


# --- workdays


def test_the_library_knows_2026_as_assumed() -> None:
    weekend_workdays = [
        day
        for day in chinese_calendar.get_workdays(date(2026, 1, 1), date(2026, 12, 31))
        if day.weekday() >= 5
    ]
    assert set(MAKE_UP_2026) <= set(weekend_workdays)
    assert not chinese_calendar.is_workday(date(2026, 9, 27))


def test_a_weekday_is_a_workday_and_a_weekend_is_not() -> None:
    calendar = Calendar()
    assert calendar.is_workday(date(2026, 6, 10))  # Wednesday
    assert not calendar.is_workday(date(2026, 6, 13))  # Saturday
    assert not calendar.is_workday(date(2026, 6, 14))  # Sunday


@pytest.mark.parametrize("day", NATIONAL_DAY_2026)
def test_national_day_week_is_off(day: date) -> None:
    assert not Calendar().is_workday(day)


@pytest.mark.parametrize("day", MAKE_UP_2026)
def test_a_weekend_make_up_day_is_a_workday(day: date) -> None:
    assert day.weekday() >= 5
    assert Calendar().is_workday(day)


def test_an_ordinary_sunday_next_to_a_holiday_stays_off() -> None:
    assert not Calendar().is_workday(date(2026, 9, 27))
    assert not Calendar().is_workday(date(2026, 10, 11))


def test_the_directory_adds_days_off() -> None:
    calendar = Calendar(days_off=frozenset({date(2026, 10, 8)}))
    assert not calendar.is_workday(date(2026, 10, 8))
    assert calendar.is_workday(date(2026, 10, 9))
    assert Calendar().is_workday(date(2026, 10, 8))


def test_the_directory_adds_working_days() -> None:
    sunday = date(2026, 6, 14)
    assert Calendar(working_days=frozenset({sunday})).is_workday(sunday)
    assert Calendar(working_days=frozenset({date(2026, 10, 2)})).is_workday(date(2026, 10, 2))


def test_a_working_day_wins_over_a_day_off() -> None:
    sunday = date(2026, 6, 14)
    both = frozenset({sunday})
    assert Calendar(days_off=both, working_days=both).is_workday(sunday)


def test_an_unknown_year_falls_back_to_monday_to_friday() -> None:
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(2031, 10, 1))
    calendar = Calendar()
    assert calendar.is_workday(date(2031, 10, 1))  # Wednesday, National Day when known
    assert calendar.is_workday(date(2031, 10, 3))  # Friday
    assert not calendar.is_workday(date(2031, 10, 4))  # Saturday
    assert not calendar.is_workday(date(2031, 10, 5))  # Sunday
    assert not Calendar(days_off=frozenset({date(2031, 10, 1)})).is_workday(date(2031, 10, 1))


# --- add


def test_calendar_hours_ignore_the_office() -> None:
    start = datetime(2026, 9, 30, 8, 30, tzinfo=UTC)  # 16:30 in Shanghai, before the holiday
    assert Calendar().add(start, 48, working=False) == start + timedelta(hours=48)
    assert Calendar().add(start, 1.5, working=False) == start + timedelta(hours=1, minutes=30)


def test_working_hours_skip_the_weekend() -> None:
    assert date(2026, 6, 12).weekday() == 4
    assert Calendar().is_workday(date(2026, 6, 15))
    due = Calendar().add(local(2026, 6, 12, 16, 30), 2, working=True)
    assert due == local(2026, 6, 15, 9, 30)


def test_a_working_deadline_is_in_utc() -> None:
    due = Calendar().add(local(2026, 6, 12, 16, 30), 2, working=True)
    assert due.tzinfo is UTC
    assert due == datetime(2026, 6, 15, 1, 30, tzinfo=UTC)
    assert due.isoformat() == "2026-06-15T01:30:00+00:00"


def test_a_utc_start_and_its_local_twin_give_the_same_deadline() -> None:
    calendar = Calendar()
    from_utc = calendar.add(datetime(2026, 6, 12, 8, 30, tzinfo=UTC), 2, working=True)
    assert from_utc == calendar.add(local(2026, 6, 12, 16, 30), 2, working=True)
    assert from_utc.tzinfo is UTC


def test_a_start_during_lunch_counts_from_two() -> None:
    due = Calendar().add(local(2026, 6, 10, 12, 30), 1, working=True)
    assert due == local(2026, 6, 10, 15)


def test_a_start_before_opening_counts_from_opening() -> None:
    due = Calendar().add(local(2026, 6, 10, 6), 1, working=True)
    assert due == local(2026, 6, 10, 9, 30)


def test_a_start_after_closing_counts_from_the_next_morning() -> None:
    due = Calendar().add(local(2026, 6, 10, 20), 1, working=True)
    assert due == local(2026, 6, 11, 9, 30)


def test_morning_hours_carry_over_lunch() -> None:
    due = Calendar().add(local(2026, 6, 10, 11), 2, working=True)
    assert due == local(2026, 6, 10, 15)


def test_a_deadline_ending_at_closing_stays_at_closing() -> None:
    calendar = Calendar()
    assert calendar.add(local(2026, 6, 10, 8, 30), 3.5, working=True) == local(2026, 6, 10, 12)
    assert calendar.add(local(2026, 6, 10, 8, 30), 7, working=True) == local(2026, 6, 10, 17, 30)


def test_a_full_working_day_is_seven_hours() -> None:
    due = Calendar().add(local(2026, 6, 10, 8, 30), 7.5, working=True)
    assert due == local(2026, 6, 11, 9)


def test_working_hours_skip_national_day_week() -> None:
    due = Calendar().add(local(2026, 9, 30, 16, 30), 2, working=True)
    assert due == local(2026, 10, 8, 9, 30)


def test_working_hours_use_the_make_up_saturday() -> None:
    due = Calendar().add(local(2026, 10, 9, 16, 30), 2, working=True)
    assert due == local(2026, 10, 10, 9, 30)


def test_a_start_inside_a_holiday_waits_for_its_end() -> None:
    due = Calendar().add(local(2026, 10, 3, 10), 1, working=True)
    assert due == local(2026, 10, 8, 9, 30)


def test_a_directory_day_off_is_skipped() -> None:
    calendar = Calendar(days_off=frozenset({date(2026, 10, 8)}))
    due = calendar.add(local(2026, 9, 30, 16, 30), 2, working=True)
    assert due == local(2026, 10, 9, 9, 30)


def test_working_hours_in_another_time_zone() -> None:
    urumqi = ZoneInfo("Asia/Urumqi")
    due = Calendar(timezone="Asia/Urumqi").add(
        datetime(2026, 6, 12, 16, 30, tzinfo=urumqi), 2, working=True
    )
    assert due == datetime(2026, 6, 15, 9, 30, tzinfo=urumqi)
    assert due == datetime(2026, 6, 15, 3, 30, tzinfo=UTC)
    assert due.tzinfo is UTC


def test_custom_office_hours_are_used() -> None:
    calendar = Calendar(office_hours=parse_office_hours("09:00-13:00"))
    assert calendar.add(local(2026, 6, 10, 12), 2, working=True) == local(2026, 6, 11, 10)


def test_a_calendar_without_office_hours_has_no_deadline() -> None:
    with pytest.raises(ValueError, match="no working time"):
        Calendar(office_hours=()).add(local(2026, 6, 10, 9), 1, working=True)


# --- working_between


def test_working_between_over_a_weekend() -> None:
    between = Calendar().working_between(local(2026, 6, 12, 16), local(2026, 6, 15, 9))
    assert between == timedelta(hours=2)


def test_working_between_leaves_out_lunch_and_holidays() -> None:
    calendar = Calendar()
    assert calendar.working_between(local(2026, 6, 10, 11), local(2026, 6, 10, 15)) == timedelta(
        hours=2
    )
    assert calendar.working_between(local(2026, 10, 1), local(2026, 10, 7, 23)) == timedelta()
    assert calendar.working_between(local(2026, 10, 10), local(2026, 10, 11)) == timedelta(hours=7)


def test_working_between_takes_utc_moments() -> None:
    between = Calendar().working_between(
        datetime(2026, 6, 10, 0, 30, tzinfo=UTC), datetime(2026, 6, 10, 9, 30, tzinfo=UTC)
    )
    assert between == timedelta(hours=7)


@pytest.mark.parametrize(
    "start",
    [
        local(2026, 6, 10, 9, 15),
        local(2026, 6, 10, 12, 30),
        local(2026, 6, 10, 6),
        local(2026, 6, 12, 16, 30),
        local(2026, 6, 13, 10),
        local(2026, 9, 30, 16, 30),
        local(2026, 10, 3, 10),
        local(2026, 12, 31, 17),
        datetime(2026, 6, 10, 3, 7, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize("hours", [0.25, 1, 2, 7, 24, 72])
def test_working_between_undoes_add(start: datetime, hours: float) -> None:
    calendar = Calendar()
    due = calendar.add(start, hours, working=True)
    assert due > start
    assert calendar.working_between(start, due) == timedelta(hours=hours)


# --- calendar_of


def test_calendar_of_reads_the_township() -> None:
    township = Township(
        code="T1",
        name="Test",
        timezone="Asia/Urumqi",
        office_hours="09:00-13:00",
        days_off=["2026-10-08"],
        working_days=["2026-06-14"],
    )
    assert calendar_of(township) == Calendar(
        timezone="Asia/Urumqi",
        office_hours=((time(9), time(13)),),
        days_off=frozenset({date(2026, 10, 8)}),
        working_days=frozenset({date(2026, 6, 14)}),
    )


def test_calendar_of_a_plain_township_is_the_default() -> None:
    assert calendar_of(Township(code="T1", name="Test")) == Calendar()
    assert calendar_of(Township(code="T1", name="Test", office_hours="")) == Calendar()


def test_calendar_of_bad_office_hours_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    township = Township(code="T1", name="Test", office_hours="8-17")
    with caplog.at_level(logging.WARNING, logger="bot.worktime"):
        calendar = calendar_of(township)
    assert calendar.office_hours == parse_office_hours(DEFAULT_OFFICE_HOURS)
    assert "T1" in caplog.text
    assert "'8-17'" in caplog.text
