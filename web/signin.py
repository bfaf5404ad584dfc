"""Signing in to the back office: a single-use link the bot sends on /web, or Telegram's Login
Widget where the township has set the bot's domain with @BotFather.

The token travels in `<WEB_URL>/signin/<token>`; only its SHA-256 is stored, and using it is
one conditional UPDATE, so a link opened twice at once signs in once (as bot.invitations).

A Login Widget payload is Telegram's word that a Telegram account signed in: it is checked as
https://core.telegram.org/widgets/login#checking-authorization says (HMAC-SHA256 of the sorted
fields, keyed by SHA-256 of the bot token) and refused when older than WIDGET_MAX_AGE. It is not
single use: Telegram's design lets the same payload sign in again while it is fresh, as the
account it names could anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from bot.models import Account, Official, WebSignIn

TTL = timedelta(minutes=10)
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,60}$")
#: How long a Login Widget payload signs in after Telegram made it (its auth_date).
WIDGET_MAX_AGE = timedelta(days=1)
#: How far ahead of our clock an auth_date may be: clocks differ a little, not by hours.
WIDGET_SKEW = timedelta(minutes=5)
_DIGITS = re.compile(r"^[0-9]{1,19}$")
_HASH_SHAPE = re.compile(r"^[0-9a-f]{64}$")


class Refusal(StrEnum):
    """Why a link signs nobody in."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    NOT_OFFICIAL = "not_official"
    FORGED = "forged"  # a Login Widget payload whose hash does not check, or incomplete
    STALE = "stale"  # a Login Widget payload older than WIDGET_MAX_AGE, or from the future


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


def widget_hash(fields: Mapping[str, str], bot_token: str) -> str:
    """The hash Telegram gives a Login Widget payload: HMAC-SHA256 of the data-check-string
    (every field but `hash` as key=value, sorted, one a line), keyed by SHA-256(bot token)."""
    check = "\n".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "hash")
    key = hashlib.sha256(bot_token.encode()).digest()
    return hmac.new(key, check.encode(), hashlib.sha256).hexdigest()


async def check_widget(
    fields: Mapping[str, str], bot_token: str, *, at: datetime | None = None
) -> int:
    """The account a Login Widget payload signs in, or `SignInRefused` (as `redeem`)."""
    at = at or now()
    sent = fields.get("hash", "")
    account = fields.get("id", "")
    auth_date = fields.get("auth_date", "")
    if not (_HASH_SHAPE.match(sent) and _DIGITS.match(account) and _DIGITS.match(auth_date)):
        raise SignInRefused(Refusal.FORGED)
    if not hmac.compare_digest(widget_hash(fields, bot_token), sent):
        raise SignInRefused(Refusal.FORGED)
    made = datetime.fromtimestamp(min(int(auth_date), 2**40), UTC)
    if made < at - WIDGET_MAX_AGE or made > at + WIDGET_SKEW:
        raise SignInRefused(Refusal.STALE)
    account_id = int(account)
    if not await is_official(account_id):
        raise SignInRefused(Refusal.NOT_OFFICIAL)
    return account_id
