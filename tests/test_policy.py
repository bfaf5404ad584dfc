"""Supervision settings (scheduler.policy, bot.config): reminder points, quiet hours, digest day.

These strings come from `.env`, so a typo must stop the start with the setting's name, and the
parsed values decide when officials are reminded or left alone at night.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bot.config import Settings, SettingsError, load_settings
from scheduler.policy import (
    Point,
    Policy,
    parse_points,
    parse_quiet_hours,
    parse_weekday,
)

SHANGHAI = "Asia/Shanghai"


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(SHANGHAI))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    names = {name.upper() for name in Settings.model_fields}
    for key in os.environ:
        if key.upper() in names:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


# --- reminder points


def test_points_parse_in_order() -> None:
    assert parse_points("50%,2h") == (Point(share=0.5), Point(before_hours=2.0))
    assert parse_points(" 25% , 1.5H ") == (Point(share=0.25), Point(before_hours=1.5))


@pytest.mark.parametrize("text", ["", " ", ",", " , "])
def test_no_points(text: str) -> None:
    assert parse_points(text) == ()


def test_point_offsets_in_a_two_day_window() -> None:
    half, before = parse_points("50%,2h")
    assert half.offset(timedelta(hours=48)) == timedelta(hours=24)
    assert before.offset(timedelta(hours=48)) == timedelta(hours=46)


def test_a_point_outside_the_window_is_none() -> None:
    before = Point(before_hours=2)
    assert before.offset(timedelta(hours=1)) is None
    assert before.offset(timedelta(hours=2)) is None
    assert before.offset(timedelta(hours=2, minutes=1)) == timedelta(minutes=1)


def test_a_share_of_an_empty_window_is_none() -> None:
    assert Point(share=0.5).offset(timedelta()) is None
    assert Point(share=0.1).offset(timedelta(hours=10)) == timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("150%", "150%"),
        ("100%", "100%"),
        ("0%", "0%"),
        ("-10%", "-10%"),
        ("0h", "0h"),
        ("-2h", "-2h"),
        ("abc", "abc"),
        ("2d", "2d"),
        ("%", "%"),
        ("h", "h"),
        ("50%,abc", "abc"),
        ("50% 2h", "50% 2h"),
    ],
)
def test_bad_points_name_the_bad_part(text: str, bad: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_points(text)
    assert f"{bad!r} is not a reminder point" in str(error.value)


@pytest.mark.parametrize("text", ["nanh", "infh"])
def test_non_finite_hours_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a reminder point"):
        parse_points(text)


# --- quiet hours


def test_quiet_hours_parse() -> None:
    assert parse_quiet_hours("22:00-07:00") == (time(22), time(7))
    assert parse_quiet_hours(" 12:00 - 14:00 ") == (time(12), time(14))


@pytest.mark.parametrize("text", ["", "off", "OFF", " none "])
def test_quiet_hours_can_be_off(text: str) -> None:
    assert parse_quiet_hours(text) is None


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("22:00", "not a span"),
        ("late-early", "not a span"),
        ("25:00-07:00", "not a span"),
        ("07:00-07:00", "is empty"),
    ],
)
def test_bad_quiet_hours_are_refused(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_quiet_hours(text)


@pytest.mark.parametrize("text", ["22:00-07:00-08:00", "22:00+08:00-07:00"])
def test_quiet_hours_with_a_utc_offset_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a span"):
        parse_quiet_hours(text)


def test_late_evening_is_quiet_until_the_next_morning() -> None:
    until = Policy().quiet_until(local(2026, 3, 10, 23, 30), SHANGHAI)
    assert until == local(2026, 3, 11, 7)


def test_quiet_hours_start_on_the_minute() -> None:
    assert Policy().quiet_until(local(2026, 3, 10, 22), SHANGHAI) == local(2026, 3, 11, 7)
    assert Policy().quiet_until(local(2026, 3, 10, 21, 59), SHANGHAI) is None


def test_early_morning_is_quiet_until_the_same_morning() -> None:
    assert Policy().quiet_until(local(2026, 3, 11, 0, 5), SHANGHAI) == local(2026, 3, 11, 7)
    assert Policy().quiet_until(local(2026, 3, 11, 6, 59), SHANGHAI) == local(2026, 3, 11, 7)
    assert Policy().quiet_until(local(2026, 3, 11, 7), SHANGHAI) is None
    assert Policy().quiet_until(local(2026, 3, 11, 12), SHANGHAI) is None


def test_the_end_of_quiet_hours_is_in_utc() -> None:
    until = Policy().quiet_until(datetime(2026, 3, 10, 15, 30, tzinfo=UTC), SHANGHAI)
    assert until is not None
    assert until.tzinfo is UTC
    assert until.isoformat() == "2026-03-10T23:00:00+00:00"


def test_quiet_hours_follow_the_township_time_zone() -> None:
    moment = datetime(2026, 3, 10, 16, 30, tzinfo=UTC)  # 00:30 Shanghai, 22:30 Urumqi
    assert Policy().quiet_until(moment, SHANGHAI) == datetime(2026, 3, 10, 23, tzinfo=UTC)
    assert Policy().quiet_until(moment, "Asia/Urumqi") == datetime(2026, 3, 11, 1, tzinfo=UTC)
    assert Policy().quiet_until(moment, "Europe/Berlin") is None  # 17:30 in Berlin


def test_no_quiet_hours_never_wait() -> None:
    policy = Policy(quiet_hours=parse_quiet_hours("off"))
    assert policy.quiet_until(local(2026, 3, 10, 3), SHANGHAI) is None


def test_quiet_hours_within_one_day() -> None:
    policy = Policy(quiet_hours=parse_quiet_hours("12:00-14:00"))
    assert policy.quiet_until(local(2026, 3, 10, 12), SHANGHAI) == local(2026, 3, 10, 14)
    assert policy.quiet_until(local(2026, 3, 10, 13, 59), SHANGHAI) == local(2026, 3, 10, 14)
    assert policy.quiet_until(local(2026, 3, 10, 11, 59), SHANGHAI) is None
    assert policy.quiet_until(local(2026, 3, 10, 14), SHANGHAI) is None
    assert policy.quiet_until(local(2026, 3, 10, 23), SHANGHAI) is None


# --- weekday


@pytest.mark.parametrize(
    ("text", "day"),
    [("mon", 0), ("Monday", 0), (" FRI ", 4), ("sat", 5), ("sunday", 6)],
)
def test_weekdays_parse(text: str, day: int) -> None:
    assert parse_weekday(text) == day


@pytest.mark.parametrize("text", ["", "mo", "xyz", "1", "周一"])
def test_bad_weekdays_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a weekday"):
        parse_weekday(text)


# --- Settings and Policy.from_settings


def _field_of(error: ValidationError) -> str:
    return str(error.errors()[0]["loc"][0])


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("quiet_hours", "22:00", "not a span"),
        ("quiet_hours", "07:00-07:00", "is empty"),
        ("remind_accept", "150%", "not a reminder point"),
        ("remind_resolve", "50%,0h", "not a reminder point"),
        ("digest_weekday", "someday", "not a weekday"),
    ],
)
def test_a_bad_supervision_text_names_its_field(field: str, value: str, words: str) -> None:
    with pytest.raises(ValidationError) as error:
        Settings(**{field: value})  # type: ignore[arg-type]
    assert error.value.error_count() == 1
    assert _field_of(error.value) == field
    assert field in str(error.value)
    assert words in str(error.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("overdue_every_hours", 0),
        ("overdue_every_hours", 721),
        ("auto_close_days", 0),
        ("auto_close_days", 91),
        ("digest_hour", -1),
        ("digest_hour", 24),
        ("catch_up_hours", -1),
        ("catch_up_hours", 169),
        ("repeat_threshold", 1),
        ("repeat_threshold", 101),
        ("sweep_seconds", 4),
        ("sweep_seconds", 3601),
    ],
)
def test_a_supervision_number_out_of_range_names_its_field(field: str, value: int) -> None:
    with pytest.raises(ValidationError) as error:
        Settings(**{field: value})  # type: ignore[arg-type]
    assert _field_of(error.value) == field


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("overdue_every_hours", 1),
        ("overdue_every_hours", 720),
        ("auto_close_days", 90),
        ("digest_hour", 0),
        ("digest_hour", 23),
        ("catch_up_hours", 0),
        ("catch_up_hours", 168),
        ("repeat_threshold", 2),
        ("sweep_seconds", 5),
        ("sweep_seconds", 3600),
    ],
)
def test_supervision_numbers_at_their_limits_are_accepted(field: str, value: int) -> None:
    assert getattr(Settings(**{field: value}), field) == value  # type: ignore[arg-type]


def test_supervision_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUIET_HOURS", "off")
    monkeypatch.setenv("REMIND_RESOLVE", "3h")
    monkeypatch.setenv("SWEEP_SECONDS", "30")
    settings = Settings()
    assert settings.quiet_hours == "off"
    assert settings.remind_resolve == "3h"
    assert settings.sweep_seconds == 30


def test_load_settings_reports_a_bad_quiet_hours_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUIET_HOURS", "late")
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value) == "setting QUIET_HOURS: 'late' is not a span like 22:00-07:00"


def test_the_default_settings_give_the_default_policy() -> None:
    settings = Settings()
    assert settings.quiet_hours == "22:00-07:00"
    assert Policy.from_settings(settings) == Policy()


def test_from_settings_carries_every_value_over() -> None:
    settings = Settings(
        quiet_hours="23:00-06:30",
        remind_accept="25%",
        remind_resolve="75%,4h",
        overdue_every_hours=12,
        auto_close_days=3,
        digest_weekday="Friday",
        digest_hour=9,
        catch_up_hours=6,
        repeat_threshold=5,
    )
    policy = Policy.from_settings(settings)
    assert policy.quiet_hours == (time(23), time(6, 30))
    assert policy.accept_points == (Point(share=0.25),)
    assert policy.resolve_points == (Point(share=0.75), Point(before_hours=4.0))
    assert policy.overdue_every_hours == 12
    assert policy.auto_close == timedelta(days=3)
    assert policy.digest_weekday == 4
    assert policy.digest_hour == 9
    assert policy.catch_up == timedelta(hours=6)
    assert policy.repeat_threshold == 5
    assert policy.repeat_window == timedelta(days=7)


def test_from_settings_with_quiet_hours_off_and_no_reminders() -> None:
    policy = Policy.from_settings(Settings(quiet_hours="off", remind_accept="", remind_resolve=""))
    assert policy.quiet_hours is None
    assert policy.accept_points == ()
    assert policy.resolve_points == ()
