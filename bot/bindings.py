"""Which chat serves what, bound from the chat itself: a unit's group, the digest chat.

The directory file may name these chat ids, but nobody knows them: the bot is added to a
group and someone allowed picks the unit there (bot.handlers.groups), or an administrator
sends /digesthere in the digest group or forwards a post of the channel. A binding made so
is marked (`group_bound_in_chat`, `digest_bound_in_chat`): a directory import whose file
names no chat id leaves it alone, one that names another id wins (bot.directory).

Who may bind a unit's group, checked each time from the directory's roles: the township's
administrators and dispatchers, and the leaders of that unit. The digest chat: the township's
administrators. A group upgraded to a supergroup keeps what it served; a group the bot was
removed from serves nothing any more, its unit's cards go to the members privately again and
the township's administrators are told.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from tortoise.transactions import in_transaction

from bot import cache, delivery
from bot.i18n import N_, catalogs
from bot.models import Account, Official, Role, Township, Unit
from bot.notices import cards_to_members

log = logging.getLogger(__name__)


class MissingRight(StrEnum):
    """Why the bot may not post in a chat, as Telegram's getChatMember shows it."""

    NOT_MEMBER = "not_member"  # the bot is not in the chat (left, removed)
    NOT_ADMIN = "not_admin"  # a channel: only its administrators post
    POST_MESSAGES = "post_messages"  # a channel administrator without "Post messages"
    SEND_MESSAGES = "send_messages"  # a group member restricted from sending messages


def missing_right(chat_type: str, status: str, rights: dict[str, object]) -> MissingRight | None:
    """What keeps the bot from posting, given its membership (`status`, Telegram's word) and
    its rights there; None when it may post."""
    if status in ("left", "kicked"):
        return MissingRight.NOT_MEMBER
    if chat_type == "channel":
        if status not in ("administrator", "creator"):
            return MissingRight.NOT_ADMIN
        if not rights.get("can_post_messages"):
            return MissingRight.POST_MESSAGES
        return None
    if status == "restricted" and not rights.get("can_send_messages"):
        return MissingRight.SEND_MESSAGES
    return None


async def _officials(account_id: int, township_id: int) -> list[Official]:
    return await Official.filter(
        account_id=account_id, township_id=township_id, active=True
    ).order_by("id")


async def may_bind_unit(account_id: int, unit: Unit) -> bool:
    """An administrator or dispatcher of the unit's township, or a leader of the unit."""
    for official in await _officials(account_id, unit.township_id):  # type: ignore[attr-defined]
        if official.role in (Role.ADMIN, Role.DISPATCHER):
            return True
        if official.role == Role.LEADER and await official.units.filter(id=unit.id).exists():
            return True
    return False


async def may_bind_digest(account_id: int, township_id: int) -> bool:
    return any(
        o.role == Role.ADMIN for o in await _officials(account_id, township_id)
    )


async def townships_of(account_id: int) -> list[Township]:
    """The active townships where this account is an official, first joined first."""
    ids = await Official.filter(account_id=account_id, active=True).order_by("id").values_list(
        "township_id", flat=True
    )
    seen = list(dict.fromkeys(ids))
    found = {t.id: t for t in await Township.filter(id__in=seen, active=True)}
    return [found[i] for i in seen if i in found]


async def township_for(account_id: int) -> Township | None:
    """The township a chat is set up for by this person: theirs as an official, else the
    database's only active one."""
    mine = await townships_of(account_id)
    if mine:
        return mine[0]
    townships = await Township.filter(active=True).limit(2)
    return townships[0] if len(townships) == 1 else None


async def administered(account_id: int) -> list[Township]:
    """The townships this account administers."""
    ids = await Official.filter(
        account_id=account_id, role=Role.ADMIN, active=True
    ).order_by("id").values_list("township_id", flat=True)
    return list(await Township.filter(id__in=list(dict.fromkeys(ids)), active=True).order_by("id"))


async def units_of_group(chat_id: int) -> list[Unit]:
    """The active units this group serves."""
    return list(await Unit.filter(group_chat_id=chat_id, active=True).order_by("id"))


@dataclass
class Bound:
    """A bind: the unit now served, and the units the group served before (now none)."""

    unit: Unit
    replaced: list[Unit] = field(default_factory=list)
    #: The chat the unit's cards went to before, if another.
    previous_chat: int | None = None


class NotAllowed(Exception):
    """The person may not make this binding (checked from the directory's roles)."""


async def bind_unit_group(unit_id: int, chat_id: int, account_id: int) -> Bound:
    """This group serves this unit from now on: its new cases' cards arrive here. A group
    serves one unit: one it served before is unbound (its cards go to its members)."""
    async with in_transaction():
        unit = await Unit.get_or_none(id=unit_id, active=True).select_for_update()
        if unit is None or not await may_bind_unit(account_id, unit):
            raise NotAllowed
        replaced = [u for u in await units_of_group(chat_id) if u.id != unit.id]
        for other in replaced:
            await Unit.filter(id=other.id).update(group_chat_id=None, group_bound_in_chat=False)
        previous = unit.group_chat_id if unit.group_chat_id != chat_id else None
        await Unit.filter(id=unit.id).update(group_chat_id=chat_id, group_bound_in_chat=True)
        await cache.changed()
        unit.group_chat_id, unit.group_bound_in_chat = chat_id, True
    log.info("group %s now serves unit %s (account %s)", chat_id, unit.code, account_id)
    return Bound(unit, replaced, previous)


async def unbind_unit_group(chat_id: int, account_id: int) -> list[Unit]:
    """This group serves no unit any more; raises `NotAllowed` unless the person may bind
    every unit it serves. The units' cards go to their members privately from now on."""
    async with in_transaction():
        units = await units_of_group(chat_id)
        for unit in units:
            if not await may_bind_unit(account_id, unit):
                raise NotAllowed
        await Unit.filter(id__in=[u.id for u in units]).update(
            group_chat_id=None, group_bound_in_chat=False
        )
        await cache.changed()
    log.info("group %s unbound from %s", chat_id, [u.code for u in units])
    return units


async def bind_digest_chat(township_id: int, chat_id: int, account_id: int) -> Township:
    """The township's weekly digest and monthly list go to this chat from now on."""
    async with in_transaction():
        township = await Township.get_or_none(id=township_id, active=True)
        if township is None or not await may_bind_digest(account_id, township_id):
            raise NotAllowed
        await Township.filter(id=township_id).update(
            digest_chat_id=chat_id, digest_bound_in_chat=True
        )
        await cache.changed()
        township.digest_chat_id, township.digest_bound_in_chat = chat_id, True
    log.info("township %s: digest chat %s (account %s)", township.code, chat_id, account_id)
    return township


async def group_migrated(old_chat_id: int, new_chat_id: int) -> None:
    """A group became a supergroup with a new id: what it served, it serves under that id,
    and what was queued for it goes there."""
    async with in_transaction():
        units = await Unit.filter(group_chat_id=old_chat_id).update(group_chat_id=new_chat_id)
        townships = await Township.filter(digest_chat_id=old_chat_id).update(
            digest_chat_id=new_chat_id
        )
        await delivery.moved(old_chat_id, new_chat_id)
        if units or townships:
            await cache.changed()
    if units or townships:
        log.info("chat %s moved to %s: %s units, %s digest chats follow", old_chat_id,
                 new_chat_id, units, townships)


def _text(message: str, language: str, **values: object) -> str:
    return catalogs().text(message, language, **values)


async def _admins(township_id: int) -> list[Account]:
    officials = await Official.filter(
        township_id=township_id, role=Role.ADMIN, active=True, account_id__isnull=False
    ).order_by("id")
    return list(await Account.filter(id__in=[o.account_id for o in officials]).order_by("id"))  # type: ignore[attr-defined]


async def bot_removed(chat_id: int, title: str) -> list[Unit]:
    """The bot was removed from a group or channel (or left it): the units it served lose
    it, their waiting cases' cards go to their members privately, the digest chat is
    forgotten, and the township's administrators are told. Returns the units unbound."""
    async with in_transaction():
        units = list(await Unit.filter(group_chat_id=chat_id).order_by("id"))
        townships = list(await Township.filter(digest_chat_id=chat_id).order_by("id"))
        await Unit.filter(id__in=[u.id for u in units]).update(
            group_chat_id=None, group_bound_in_chat=False
        )
        await Township.filter(id__in=[t.id for t in townships]).update(
            digest_chat_id=None, digest_bound_in_chat=False
        )
        if units or townships:
            await cache.changed()
        for unit in units:
            unit.group_chat_id = None
            if unit.active:
                await cards_to_members(unit)
        told: dict[int, list[str]] = {}
        for unit in units:
            for admin in await _admins(unit.township_id):  # type: ignore[attr-defined]
                told.setdefault(admin.id, []).append(_text(
                    N_("⚠️ The bot was removed from the group chat “{title}” of {unit}. Its "
                       "case cards now go to the unit's officials privately. To give the unit "
                       "a group again, add the bot to one and choose the unit there."),
                    admin.language, title=title, unit=unit.display_name(admin.language),
                ))
        for township in townships:
            for admin in await _admins(township.id):
                told.setdefault(admin.id, []).append(_text(
                    N_("⚠️ The bot was removed from “{title}”, {township}'s digest chat. The "
                       "weekly digest has nowhere to go: add the bot to a group or channel and "
                       "send /digesthere there, or forward a post of the channel to the bot."),
                    admin.language, title=title, township=township.display_name(admin.language),
                ))
        stamp = int(delivery._now().timestamp())
        for account_id, lines in told.items():
            await delivery.post(
                account_id, "\n\n".join(lines), key=f"removed:{chat_id}:{stamp}:{account_id}"
            )
    if units or townships:
        log.warning("bot removed from chat %s: unbound units %s, digest of %s", chat_id,
                    [u.code for u in units], [t.code for t in townships])
    return units

