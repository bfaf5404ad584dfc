"""Public notices (通知公告 / 村务公开): who may post, who receives, and the poster's report.

A notice goes out through the outbox (`bot.delivery.broadcast`) at the broadcast priority,
one text per villager of its audience under the key `notice:<notice id>:<villager id>`: a
villager is queued once however often the posting is confirmed, and a restart sends only the
rows not yet sent. The text carries a button that opens the notice with its photos and
document, so a broadcast costs one message per villager. When the last row is sent or failed
the poster is told how many it reached, with blocked accounts counted apart. No notice names a
villager; the poster only ever sees numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from bot import delivery
from bot.callbacks import OpenNotice, WithdrawNotice
from bot.i18n import N_, catalogs
from bot.models import (
    NOTICE_ROLES,
    Account,
    Audience,
    Delivery,
    Notice,
    NoticeKind,
    Official,
    Role,
    Township,
    Villager,
)
from bot.people import Person

TITLE_MAX = 100
#: The notice's text; with its heading it stays inside Telegram's 4,096 characters.
BODY_MAX = 3000
PHOTOS_MAX = 10
#: Telegram lets a bot fetch files up to 20 MB; a bigger one could not be kept or shown.
DOCUMENT_MAX_BYTES = 20 * 1024 * 1024
#: How many past notices `/notices` lists.
LIST_MAX = 10
KEY_PREFIX = "notice:"
#: A Telegram refusal that means the person cannot be reached (blocked, never started).
FORBIDDEN = "Forbidden"
WITHDRAWN_ERROR = "notice withdrawn"

KIND_LABELS: dict[NoticeKind, str] = {
    NoticeKind.VILLAGE: N_("Village affairs"),
    NoticeKind.FINANCE: N_("Finances"),
    NoticeKind.PARTY: N_("Party affairs"),
    NoticeKind.GENERAL: N_("General"),
}


#: Characters that show nothing: a title of only these is empty.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"


def clean(value: str | None) -> str:
    """The text as readers see it: without blank or invisible characters around it."""
    text = (value or "").strip()
    while text and (text[0] in INVISIBLE or text[0].isspace()):
        text = text[1:]
    while text and (text[-1] in INVISIBLE or text[-1].isspace()):
        text = text[:-1]
    return text


def _now() -> datetime:
    return datetime.now(UTC)


def text(message: str, language: str) -> str:
    return catalogs().text(message, language)


def roles_of(township: Township) -> list[str]:
    return list(township.notice_roles) if township.notice_roles is not None else list(NOTICE_ROLES)


async def poster_of(person: Person) -> Official | None:
    """The person's official post that may publish notices, if any (per the directory)."""
    for official in person.officials:
        township = await Township.get(id=official.township_id)  # type: ignore[attr-defined]
        if official.role in roles_of(township):
            return official
    return None


def may_withdraw(notice: Notice, person: Person) -> bool:
    """The poster, or an administrator of the notice's township."""
    if notice.poster_id == person.account.id:  # type: ignore[attr-defined]
        return True
    return any(
        official.role == Role.ADMIN
        and official.township_id == notice.township_id  # type: ignore[attr-defined]
        for official in person.officials
    )


@dataclass
class Target:
    """Who a draft goes to: the whole township, some villages, or one grid."""

    township_id: int
    audience: Audience
    village_ids: Sequence[int] = ()
    grid_id: int | None = None


def _villagers(target: Target) -> object:
    query = Villager.filter(township_id=target.township_id)
    if target.audience == Audience.VILLAGES:
        return query.filter(village_id__in=list(target.village_ids))
    if target.audience == Audience.GRID:
        return query.filter(grid_id=target.grid_id)
    return query


async def reach(target: Target) -> int:
    """How many villagers a notice to `target` goes to: shown before the poster confirms."""
    return await _villagers(target).count()  # type: ignore[attr-defined]


def _key(notice_id: int, villager_id: int) -> str:
    return f"{KEY_PREFIX}{notice_id}:{villager_id}"


def heading(notice: Notice, language: str) -> str:
    """The first line every reader sees: 通知公告, the kind, and the title."""
    kind = text(KIND_LABELS[NoticeKind(notice.kind)], language)
    return text(N_("📢 Public notice · {kind}"), language).format(kind=kind) + f"\n{notice.title}"


def message_text(notice: Notice, language: str) -> str:
    if notice.withdrawn_at is not None:
        banner = text(N_("⛔ This notice was withdrawn."), language)
        return f"{banner}\n{heading(notice, language)}"
    return "\n".join([heading(notice, language), "", notice.body])


def open_keyboard(notice: Notice, language: str) -> InlineKeyboardMarkup | None:
    if not notice.photos and not notice.document:
        return None
    label = text(N_("📎 Photos and document"), language)
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=OpenNotice(notice_id=notice.id).pack())]
        ]
    )


async def publish(
    target: Target,
    poster: Account,
    *,
    kind: NoticeKind,
    title: str,
    body: str,
    photos: Sequence[str] = (),
    document: str | None = None,
    document_name: str | None = None,
) -> Notice:
    """Store the notice and queue it to every villager of `target`, in one transaction."""
    async with in_transaction():
        notice = await Notice.create(
            township_id=target.township_id, kind=kind, title=title, body=body,
            photos=list(photos), document=document, document_name=document_name,
            audience=target.audience, village_ids=list(target.village_ids),
            grid_id=target.grid_id, poster=poster, created_at=_now(),
        )
        readers = await _villagers(target).values_list(  # type: ignore[attr-defined]
            "id", "account_id", "account__language"
        )
        messages = [
            (account_id, _key(notice.id, villager_id), message_text(notice, language),
             open_keyboard(notice, language))
            for villager_id, account_id, language in readers
        ]
        notice.reach = await delivery.broadcast(messages)
        await notice.save(update_fields=["reach"])
    if not notice.reach:
        await settle(notice.id)
    delivery.wake()
    return notice


async def finished(keys: Sequence[str]) -> None:
    """The courier finished these keyed rows: report each notice whose last row this was."""
    notice_ids = {
        int(key.split(":")[1]) for key in keys if key.startswith(KEY_PREFIX) and key.count(":") == 2
    }
    for notice_id in sorted(notice_ids):
        await settle(notice_id)


def _rows(notice_id: int) -> object:
    return Delivery.filter(key__startswith=f"{KEY_PREFIX}{notice_id}:")


async def settle(notice_id: int) -> bool:
    """Tell the poster once every row of the notice is sent or failed; True if told now."""
    pending = await _rows(notice_id).filter(  # type: ignore[attr-defined]
        sent_at__isnull=True, failed_at__isnull=True
    ).exists()
    if pending:
        return False
    async with in_transaction():
        claimed = await Notice.filter(id=notice_id, reported_at__isnull=True).update(
            reported_at=_now()
        )
        if not claimed:
            return False
        await _report(await Notice.get(id=notice_id))
    return True


@dataclass
class Outcome:
    sent: int
    blocked: int
    failed: int


async def outcome(notice_id: int) -> Outcome:
    rows = _rows(notice_id)
    sent = await rows.filter(sent_at__isnull=False).count()  # type: ignore[attr-defined]
    blocked = await rows.filter(  # type: ignore[attr-defined]
        failed_at__isnull=False, error__startswith=FORBIDDEN
    ).count()
    failed = await rows.filter(failed_at__isnull=False).count() - blocked  # type: ignore[attr-defined]
    return Outcome(sent=sent, blocked=blocked, failed=failed)


async def _report(notice: Notice) -> None:
    """The poster's message: numbers only, in the poster's language."""
    poster = await Account.get(id=notice.poster_id)  # type: ignore[attr-defined]
    done = await outcome(notice.id)
    language = poster.language
    lines = [
        text(N_("📢 Your notice “{title}” has gone out."), language).format(title=notice.title),
        text(N_("Delivered to {count} villagers."), language).format(count=done.sent),
    ]
    if done.blocked:
        lines.append(
            text(N_("{count} could not be reached: they blocked the bot."), language).format(
                count=done.blocked
            )
        )
    if done.failed:
        lines.append(
            text(N_("{count} not delivered for other reasons."), language).format(
                count=done.failed
            )
        )
    await delivery.post(
        poster.id, "\n".join(lines), key=f"notice-report:{notice.id}",
        keyboard=withdraw_keyboard(notice, language),
    )


def withdraw_keyboard(notice: Notice, language: str) -> InlineKeyboardMarkup | None:
    if notice.withdrawn_at is not None:
        return None
    label = text(N_("⛔ Withdraw"), language)
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(
                text=label, callback_data=WithdrawNotice(notice_id=notice.id).pack()
            )]
        ]
    )


async def withdraw(notice: Notice, person: Person) -> bool:
    """Mark the notice withdrawn; its rows not yet sent are not sent. False if not allowed."""
    if not may_withdraw(notice, person):
        return False
    async with in_transaction():
        changed = await Notice.filter(id=notice.id, withdrawn_at__isnull=True).update(
            withdrawn_at=_now()
        )
        if changed:
            await _rows(notice.id).filter(  # type: ignore[attr-defined]
                Q(lease_until__isnull=True) | Q(lease_until__lte=_now()),
                sent_at__isnull=True, failed_at__isnull=True,
            ).update(failed_at=_now(), error=WITHDRAWN_ERROR)
    await settle(notice.id)
    return bool(changed)


def reaches(notice: Notice, villager: Villager) -> bool:
    if notice.audience == Audience.VILLAGES:
        return villager.village_id in notice.village_ids  # type: ignore[attr-defined]
    if notice.audience == Audience.GRID:
        return notice.grid_id is not None and notice.grid_id == villager.grid_id  # type: ignore[attr-defined]
    return True


async def for_villager(villager: Villager) -> list[Notice]:
    """The villager's audience's latest notices, newest first (withdrawn ones included)."""
    recent = await Notice.filter(
        township_id=villager.township_id  # type: ignore[attr-defined]
    ).order_by("-created_at", "-id").limit(LIST_MAX * 20)
    return [notice for notice in recent if reaches(notice, villager)][:LIST_MAX]


async def posted_in(township_ids: Sequence[int]) -> list[Notice]:
    """An official's `/notices`: the latest of their townships, newest first."""
    return await Notice.filter(township_id__in=list(township_ids)).order_by(
        "-created_at", "-id"
    ).limit(LIST_MAX)
