"""Signing in to the back office: a single-use link the bot sends on /web.

The token travels in `<WEB_URL>/signin/<token>`; only its SHA-256 is stored, and using it is
one conditional UPDATE, so a link opened twice at once signs in once (as bot.invitations).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.models import Account, Official, WebSignIn

TTL = timedelta(minutes=10)
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,60}$")


class Refusal(StrEnum):
    """Why a link signs nobody in."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    NOT_OFFICIAL = "not_official"


class SignInRefused(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def now() -> datetime:
    return datetime.now(UTC)


def link(web_url: str, token: str) -> str:
    return f"{web_url}/signin/{token}"


async def is_official(account_id: int) -> bool:
    return await Official.filter(account_id=account_id, active=True).exists()


async def issue(account: Account, *, at: datetime | None = None) -> str:
    """A fresh token for `account`; the plain token exists only in the return value."""
    token = secrets.token_urlsafe(24)
    created = at or now()
    await WebSignIn.create(
        token_hash=_hash(token), account=account, created_at=created, expires_at=created + TTL
    )
    return token


async def redeem(token: str, *, at: datetime | None = None) -> int:
    """The account the link signs in, or `SignInRefused` and the link stays as it was."""
    at = at or now()
    if not _TOKEN_SHAPE.match(token):
        raise SignInRefused(Refusal.UNKNOWN)
    found = await WebSignIn.get_or_none(token_hash=_hash(token))
    if found is None:
        raise SignInRefused(Refusal.UNKNOWN)
    if found.used_at is not None:
        raise SignInRefused(Refusal.USED)
    if found.expires_at <= at:
        raise SignInRefused(Refusal.EXPIRED)
    account_id: int = found.account_id  # type: ignore[attr-defined]
    if not await is_official(account_id):
        raise SignInRefused(Refusal.NOT_OFFICIAL)
    claimed = await WebSignIn.filter(id=found.id, used_at__isnull=True).update(used_at=at)
    if claimed != 1:
        raise SignInRefused(Refusal.USED)
    return account_id
