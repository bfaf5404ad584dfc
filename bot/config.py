"""Settings, read once from the environment or a `.env` file.

A bad setting must stop the program with one line that names it, because the people who
run a township's bot are rarely Python programmers: `SettingsError` carries that line.
"""

from __future__ import annotations

import base64
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.languages import LANGUAGES, normalize_language
from scheduler.policy import parse_points, parse_quiet_hours, parse_weekday

#: Supervision settings that stay text in Settings, and the parser that checks each.
SUPERVISION_PARSERS: dict[str, Callable[[str], object]] = {
    "quiet_hours": parse_quiet_hours,
    "remind_accept": parse_points,
    "remind_resolve": parse_points,
    "digest_weekday": parse_weekday,
}

_DB_SCHEMES = {"sqlite", "postgres", "postgresql", "asyncpg"}
#: What Telegram accepts as a webhook's secret token.
WEBHOOK_SECRET_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: Hosts a plain-http webhook may name: a local Bot API server or the emulator on this machine.
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


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
    #: `text` (one readable line each) or `json` (JSON lines for a log collector).
    log_format: Literal["text", "json"] = "text"
    # Health and metrics (web/health.py): see the README's "Health, metrics and logs".
    #: `/readyz` fails when an outbox row due this long ago is still not sent.
    ready_outbox_seconds: int = Field(default=300, ge=10, le=86_400)
    #: `/metrics` is served only with `Authorization: Bearer <this>`; unset, it is not served.
    metrics_token: str | None = None
    #: What the Bot API server allows overall: Telegram's 30; a local test server may allow more.
    messages_per_second: int = Field(default=30, ge=1, le=100_000)
    #: This process's name for the outbox's leases: a restart under the same name takes back
    #: at once what the last run had claimed. One per process; the host name by default.
    instance: str = Field(default_factory=socket.gethostname, min_length=1, max_length=64)
    # Supervision (scheduler/): see the README's "Supervision" section.
    scheduler: bool = True
    quiet_hours: str = "22:00-07:00"
    remind_accept: str = "50%"
    remind_resolve: str = "50%,2h"
    overdue_every_hours: int = Field(default=24, ge=1, le=720)
    auto_close_days: int = Field(default=7, ge=1, le=90)
    digest_weekday: str = "mon"
    digest_hour: int = Field(default=8, ge=0, le=23)
    catch_up_hours: int = Field(default=24, ge=0, le=168)
    repeat_threshold: int = Field(default=3, ge=2, le=100)
    sweep_seconds: int = Field(default=60, ge=5, le=3600)
    # The back office (web/): see the README's "Back office" section.
    web_listen: str = "127.0.0.1:8080"
    web_url: str = "http://127.0.0.1:8080"
    web_secret: str | None = None
    #: True once the township has set the bot's domain (WEB_URL's) with @BotFather /setdomain:
    #: the sign-in page then offers Telegram's Login Widget besides the /web link.
    web_login_widget: bool = False
    #: Where the back office keeps the photos and voice messages it fetched from Telegram.
    web_files: Path = Path("data/files")
    #: The map's tile server, a URL template with {z}, {x} and {y} ({s} optional); empty for
    #: no tiles: the pins on a plain background.
    web_tiles: str = ""
    web_tiles_attribution: str = ""
    # Webhook mode: see the README's "Webhook" part. Empty: the bot polls (one process).
    #: The public https URL Telegram POSTs updates to; its path is the route on WEB_LISTEN.
    webhook_url: str = ""
    #: Telegram sends it in every POST's X-Telegram-Bot-Api-Secret-Token header.
    webhook_secret: str | None = None

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

    @field_validator(*SUPERVISION_PARSERS)
    @classmethod
    def _supervision(cls, value: str, info: ValidationInfo) -> str:
        """Kept as text; parsed here too, so a typo stops the start rather than the scheduler."""
        SUPERVISION_PARSERS[info.field_name](value)  # type: ignore[index]
        return value

    @field_validator("web_listen")
    @classmethod
    def _web_listen(cls, value: str) -> str:
        value = value.strip()
        if value:
            web_address(value)
        return value

    @field_validator("web_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("web_secret")
    @classmethod
    def _web_secret(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            key = base64.urlsafe_b64decode(value.encode())
        except ValueError:  # binascii.Error too
            key = b""
        if len(key) != 32:
            raise ValueError("must be 32 bytes in urlsafe base64 (44 characters)")
        return value

    @field_validator("web_tiles")
    @classmethod
    def _web_tiles(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value.replace("{", "").replace("}", ""))
        if parts.scheme not in ("http", "https") or not parts.netloc or not all(
            part in value for part in ("{z}", "{x}", "{y}")
        ):
            raise ValueError(
                "must be an http:// or https:// URL template with {z}, {x} and {y}, e.g. "
                "https://tile.openstreetmap.org/{z}/{x}/{y}.png (or be empty for no tiles)"
            )
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            if value not in ("text", "json"):
                raise ValueError("must be text or json")
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if len(value) < 16 or not value.isascii() or any(c.isspace() for c in value):
            raise ValueError("must be at least 16 characters, no spaces (or be empty)")
        return value

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        parts = urlsplit(value)
        loopback_http = parts.scheme == "http" and parts.hostname in _LOOPBACK
        if (parts.scheme != "https" and not loopback_http) or not parts.hostname:
            raise ValueError(
                "must be an https:// URL, as Telegram requires (http:// only on 127.0.0.1, "
                "for a local Bot API server), or be empty to poll"
            )
        if parts.query or parts.fragment:
            raise ValueError("must be a URL without ?query or #fragment: its path is the route")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not WEBHOOK_SECRET_PATTERN.fullmatch(value):
            raise ValueError(
                "must be 1-256 characters of A-Z, a-z, 0-9, _ and - (what Telegram accepts), "
                "e.g. one made by: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return value

    @model_validator(mode="after")
    def _webhook(self) -> Settings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError(
                "setting WEBHOOK_SECRET: required with WEBHOOK_URL, so that only Telegram's "
                "POSTs are handled"
            )
        if self.webhook_url and not self.web_listen:
            raise ValueError(
                "setting WEB_LISTEN: empty, but WEBHOOK_URL needs it: Telegram's POSTs are "
                "answered there"
            )
        return self

    @property
    def webhook_path(self) -> str:
        """The route Telegram's POSTs arrive on: WEBHOOK_URL's path (behind the proxy)."""
        return urlsplit(self.webhook_url).path or "/"

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.upper()
        if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value


def web_address(value: str) -> tuple[str, int]:
    """`host:port` of WEB_LISTEN as the two parts a server binds."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must look like 127.0.0.1:8080 (or be empty to serve no back office)")
    return host.strip("[]"), int(port)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning pydantic's report into one line per the first bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a check across settings names them itself
            raise SettingsError(message) from None
        name = str(first["loc"][0]).upper()
        raise SettingsError(f"setting {name}: {message}") from None
