"""A bad setting stops the program with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import SettingsError, load_settings

CLEAN_ENV = {
    key: value
    for key, value in os.environ.items()
    if key.upper()
    not in {
        "BOT_TOKEN", "TELEGRAM_API_URL", "DATABASE_URL", "REDIS_URL", "TIMEZONE",
        "DEFAULT_LANGUAGE", "DIRECTORY_FILE", "INVITE_TTL_DAYS", "LOG_LEVEL",
    }
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in set(os.environ) - set(CLEAN_ENV):
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults() -> None:
    settings = load_settings()
    assert settings.bot_token is None
    assert settings.telegram_api_url == "https://api.telegram.org"
    assert settings.database_url == "sqlite://data/villagebot.sqlite3"
    assert settings.timezone == "Asia/Shanghai"
    assert settings.default_language == "zh-hans"
    assert settings.redis_url is None


def test_environment_and_dotenv_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TIMEZONE=Asia/Urumqi\nDEFAULT_LANGUAGE=en-US\n")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@db:5432/vb")
    settings = load_settings()
    assert settings.timezone == "Asia/Urumqi"
    assert settings.default_language == "en"
    assert settings.database_url == "postgres://u@db:5432/vb"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("BOT_TOKEN", "not-a-token", "BotFather"),
        ("TELEGRAM_API_URL", "ftp://x", "http"),
        ("DATABASE_URL", "mysql://x/y", "sqlite://"),
        ("REDIS_URL", "http://x", "redis://"),
        ("TIMEZONE", "Mars/Olympus", "time zone"),
        ("DEFAULT_LANGUAGE", "fr", "zh-hans"),
        ("DIRECTORY_FILE", "/nonexistent/directory.yaml", "does not exist"),
        ("INVITE_TTL_DAYS", "0", "greater"),
    ],
)
def test_a_bad_setting_names_itself(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert str(error.value).startswith(f"setting {name}: ")
    assert words in str(error.value)


def test_the_command_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = dict(CLEAN_ENV, TIMEZONE="Nowhere/Town")
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "migrate"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "villagebot: setting TIMEZONE: is not a known time zone, e.g. Asia/Shanghai"
    ]
    assert "Traceback" not in result.stderr


def test_run_without_a_token_points_to_the_demo(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "run"],
        env=CLEAN_ENV, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "setting BOT_TOKEN" in result.stderr
    assert "villagebot demo" in result.stderr
