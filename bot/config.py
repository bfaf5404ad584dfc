"""Settings, read once from the environment or a `.env` file.

A bad setting must stop the program with one line that names it, because the people who
run a township's bot are rarely Python programmers: `SettingsError` carries that line.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.languages import LANGUAGES, normalize_language

_DB_SCHEMES = {"sqlite", "postgres", "postgresql", "asyncpg"}


class SettingsError(Exception):
    """One readable line naming the setting that is wrong."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    bot_token: str | None = Field(default=None)
    telegram_api_url: str = "https://api.telegram.org"
    database_url: str = "sqlite://data/villagebot.sqlite3"
    redis_url: str | None = None
    timezone: str = "Asia/Shanghai"
    default_language: str = "zh-hans"
    directory_file: Path | None = None
    invite_ttl_days: int = Field(default=7, ge=1, le=365)
    log_level: str = "INFO"

    @field_validator("bot_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        bot_id, sep, secret = value.partition(":")
        if not sep or not bot_id.isdigit() or len(secret) < 5:
            raise ValueError("must look like 123456789:ABC... (the token BotFather gives)")
        return value

    @field_validator("telegram_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in _DB_SCHEMES:
            raise ValueError("must start with sqlite:// or postgres://")
        if scheme == "postgresql":
            value = "postgres://" + value.split("://", 1)[1]
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if urlsplit(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not a known time zone, e.g. Asia/Shanghai") from None
        return value

    @field_validator("default_language")
    @classmethod
    def _language(cls, value: str) -> str:
        language = normalize_language(value, fallback=None)
        if language is None:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return language

    @field_validator("directory_file")
    @classmethod
    def _directory_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"file {value} does not exist")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one line per the first bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "settings"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"setting {name}: {message}") from None
