"""The township's Open311 API keys: made, listed and revoked by an operator, checked on each
request. Only a key's SHA-256 is kept; the key itself is shown once.

Apart from `bot.open311` so that the `apikey` commands start without the case domain (and
aiogram, which it imports).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from enum import StrEnum

from bot.models import ApiKey, Township

NAME_MAX = 64


def _now() -> datetime:
    return datetime.now(UTC)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRefusal(StrEnum):
    NAME = "name"
    TAKEN = "taken"
    UNKNOWN = "unknown"


class KeyRefused(Exception):
    def __init__(self, reason: KeyRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


async def create_key(
    township: Township, name: str, *, anonymous_text: bool = False, at: datetime | None = None
) -> tuple[ApiKey, str]:
    """A new key for `township`; the key itself is returned once and only its hash kept. A
    name is unique among the township's keys not revoked."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise KeyRefused(KeyRefusal.NAME)
    if await ApiKey.exists(township_id=township.id, name=name, revoked_at__isnull=True):
        raise KeyRefused(KeyRefusal.TAKEN)
    plain = secrets.token_urlsafe(32)
    row = await ApiKey.create(
        township=township, name=name, key_hash=_hash(plain), anonymous_text=anonymous_text,
        created_at=at or _now(),
    )
    return row, plain


async def keys(township: Township) -> list[ApiKey]:
    return await ApiKey.filter(township_id=township.id).order_by("id")


async def revoke_key(township: Township, name_or_id: str, *, at: datetime | None = None) -> ApiKey:
    """The township's key not yet revoked with that name (or id), revoked from now on."""
    query = ApiKey.filter(township_id=township.id, revoked_at__isnull=True)
    found = await query.filter(name=name_or_id).first()
    if found is None and name_or_id.isdigit():
        found = await query.filter(id=int(name_or_id)).first()
    if found is None:
        raise KeyRefused(KeyRefusal.UNKNOWN)
    found.revoked_at = at or _now()
    await found.save(update_fields=["revoked_at"])
    return found


async def valid_key(township: Township, key: str | None) -> ApiKey | None:
    """The township's key not revoked whose hash is this key's; None for any other."""
    if not key:
        return None
    return await ApiKey.get_or_none(
        township_id=township.id, key_hash=_hash(key), revoked_at__isnull=True
    )
