"""Who is talking: the Telegram account, and the villager or official behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiogram.types import User

from bot import cache
from bot.languages import normalize_language
from bot.models import Account, Grid, Official, Role, Township, Village, Villager

NAME_MAX = 64
PHONE_MAX = 32


@dataclass
class Person:
    account: Account
    villager: Villager | None = None
    officials: list[Official] = field(default_factory=list)

    @property
    def language(self) -> str:
        return self.account.language

    @property
    def official(self) -> Official | None:
        return self.officials[0] if self.officials else None

    @property
    def is_admin(self) -> bool:
        return any(o.role == Role.ADMIN for o in self.officials)


async def identify(
    user: User, default_language: str, *, private: bool = False, blocking: bool = False
) -> Person:
    """Find or create the account for a Telegram user, keeping name and language fresh;
    `private`: they wrote in their chat with the bot, so the bot may write to them now;
    `blocking`: Telegram tells that they blocked the bot (so it may not, from now).
    Read once per directory version (`bot.cache`): an update that changes nothing of the
    person costs no statement here."""
    read_at = await cache.fresh()
    key = ("person", user.id)
    kept: Person | None = cache.get(key)
    if kept is not None and not _account_changes(
        kept.account, user, default_language, private, blocking
    ):
        return kept
    person = await _read(user, default_language, private=private, blocking=blocking)
    return cache.put(key, person, read_at)  # type: ignore[no-any-return]


def _account_changes(
    account: Account, user: User, default_language: str, private: bool, blocking: bool
) -> dict[str, object]:
    """What of the account Telegram's view of the user makes out of date."""
    telegram_language = normalize_language(user.language_code, fallback=default_language)
    changes: dict[str, object] = {}
    if account.first_name != user.first_name[:128]:
        changes["first_name"] = user.first_name[:128]
    if account.username != user.username:
        changes["username"] = user.username
    if not account.language_chosen and account.language != telegram_language:
        changes["language"] = telegram_language
    if blocking:
        if account.blocked_at is None:
            changes["blocked_at"] = datetime.now(UTC)
        return changes
    if private and account.blocked_at is not None:
        changes["blocked_at"] = None
    if private and account.started_at is None:
        changes["started_at"] = datetime.now(UTC)
    return changes


async def _read(user: User, default_language: str, *, private: bool, blocking: bool) -> Person:
    account = await Account.get_or_none(id=user.id)
    telegram_language = normalize_language(user.language_code, fallback=default_language)
    if account is None:
        account, _ = await Account.get_or_create(
            id=user.id,
            defaults={
                "first_name": user.first_name[:128],
                "username": user.username,
                "language": telegram_language,
                "started_at": datetime.now(UTC) if private and not blocking else None,
                "blocked_at": datetime.now(UTC) if blocking else None,
            },
        )
    else:
        changes = _account_changes(account, user, default_language, private, blocking)
        if changes:
            account.update_from_dict(changes)
            await account.save(update_fields=list(changes))
    villager = await Villager.get_or_none(account_id=account.id).select_related(
        "township", "village", "grid"
    )
    officials = await Official.filter(account_id=account.id, active=True).order_by("id")
    return Person(account=account, villager=villager, officials=officials)


async def choose_language(account: Account, language: str) -> None:
    account.language = language
    account.language_chosen = True
    await account.save(update_fields=["language", "language_chosen"])


def clean_name(text: str | None) -> str | None:
    """A name as a person would type it: trimmed, one line, not a command, not too long."""
    if not text:
        return None
    name = " ".join(text.split())
    if not name or name.startswith("/") or len(name) > NAME_MAX:
        return None
    return name


def clean_phone(text: str) -> str | None:
    phone = "".join(ch for ch in text if ch.isdigit() or ch == "+")
    if len(phone) < 5 or len(phone) > PHONE_MAX:
        return None
    return phone if phone.startswith("+") else "+" + phone


async def active_townships() -> list[Township]:
    return await Township.filter(active=True).order_by("id")


async def villages_of(township_id: int) -> list[Village]:
    return await Village.filter(township_id=township_id, active=True).order_by("position", "id")


async def grids_of(village_id: int) -> list[Grid]:
    return await Grid.filter(village_id=village_id, active=True).order_by("position", "id")


async def save_villager(
    account: Account,
    *,
    village: Village,
    grid: Grid | None,
    name: str,
    phone: str | None,
) -> Villager:
    """Create the villager profile, or replace its fields on a re-registration."""
    villager, created = await Villager.get_or_create(
        account_id=account.id,
        defaults={
            "township_id": village.township_id,  # type: ignore[attr-defined]
            "village": village,
            "grid": grid,
            "name": name,
            "phone": phone,
        },
    )
    if not created:
        villager.update_from_dict(
            {
                "township_id": village.township_id,  # type: ignore[attr-defined]
                "village": village,
                "grid": grid,
                "name": name,
                "phone": phone,
            }
        )
        await villager.save()
    return villager
