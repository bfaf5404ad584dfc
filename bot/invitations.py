"""Officials join by invitation: a single-use, expiring deep-link token.

The token travels in `https://t.me/<bot>?start=<token>`; Telegram allows 64 characters of
[A-Za-z0-9_-] there. Only its SHA-256 is stored, and redeeming is one conditional UPDATE,
so two people racing with the same link cannot both win.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from tortoise.transactions import in_transaction

from bot.links import start_link
from bot.models import Account, Invitation, Official

TOKEN_PREFIX = "inv-"
_TOKEN_SHAPE = re.compile(r"^inv-[A-Za-z0-9_-]{20,60}$")


class Refusal(StrEnum):
    """Why a token binds nothing."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    INACTIVE = "inactive"
    TAKEN = "taken"


class InvitationRefused(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class NewInvitation:
    official: Official
    token: str
    expires_at: datetime

    def link(self, bot_username: str) -> str:
        return start_link(bot_username, self.token)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def looks_like_invitation(payload: str | None) -> bool:
    return bool(payload) and payload.startswith(TOKEN_PREFIX)  # type: ignore[union-attr]


def now() -> datetime:
    return datetime.now(UTC)


async def invite(
    official: Official, *, ttl_days: int, created_by: Account | None = None
) -> NewInvitation:
    """Make a fresh token for `official`; the plain token exists only in the return value."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    created = now()
    expires = created + timedelta(days=ttl_days)
    await Invitation.create(
        token_hash=_hash(token),
        official=official,
        created_by=created_by,
        created_at=created,
        expires_at=expires,
    )
    return NewInvitation(official=official, token=token, expires_at=expires)


async def redeem(token: str, account: Account, *, at: datetime | None = None) -> Official:
    """Bind `account` to the invited official, or raise `InvitationRefused` and bind nothing."""
    at = at or now()
    if not _TOKEN_SHAPE.match(token):
        raise InvitationRefused(Refusal.UNKNOWN)
    async with in_transaction():
        invitation = await Invitation.get_or_none(token_hash=_hash(token)).prefetch_related(
            "official"
        )
        if invitation is None:
            raise InvitationRefused(Refusal.UNKNOWN)
        official = invitation.official
        if invitation.used_at is not None:
            if invitation.used_by_id == account.id and official.account_id == account.id:  # type: ignore[attr-defined]
                return official
            raise InvitationRefused(Refusal.USED)
        if invitation.expires_at <= at:
            raise InvitationRefused(Refusal.EXPIRED)
        if not official.active:
            raise InvitationRefused(Refusal.INACTIVE)
        if official.account_id not in (None, account.id):  # type: ignore[attr-defined]
            raise InvitationRefused(Refusal.TAKEN)
        claimed = await Invitation.filter(id=invitation.id, used_at__isnull=True).update(
            used_at=at, used_by_id=account.id
        )
        if claimed != 1:
            raise InvitationRefused(Refusal.USED)
        official.account = account
        await official.save(update_fields=["account_id"])
    return official
