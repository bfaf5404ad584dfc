"""What a case change means to each person, queued in the outbox with the change itself.

`bot.cases` calls `announce` inside the transaction of every transition, so a change that
rolls back tells nobody and a change that commits is told even if the process stops a moment
later (see `bot.delivery`). Each text is rendered in its reader's language (Account.language);
a unit's group chat is read by many people and gets the township's language (Township.language).
Who may be told what is `bot.scope`'s to say: the confidentiality rule, who supervises a case,
and who may read the reporter's name and phone (`card_body(personal=...)`).

Case cards: the message that offers a case to a unit (in its group chat, or to each member
privately). Every copy is a `Delivery` row with `card=True`; when the case moves, every copy
is edited to show where it stands, and only the assignee's own copy keeps buttons to work on.

The villager's confirmation of a report (the case number, the unit, the accept deadline) is
queued here with the case, not answered by the report flow: a process stopped right after
Submit still tells it once it runs again.

Nothing fails quietly: `undelivered` is called by the courier for rows it gave up on, and
puts the failure in the case's timeline, tells the township's administrators, and sends a
card that reached nobody of its unit to the unit above (or the dispatchers). `resend_cards`
sends an official who starts the bot the cards that could not reach them before.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardMarkup
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from bot import delivery, links, robots, scope, snapshot
from bot.callbacks import CaseAction, SupporterRate
from bot.i18n import N_, catalogs
from bot.keyboards import button, inline, villager_menu
from bot.languages import LANGUAGES
from bot.models import (
    Account,
    ApiKey,
    Case,
    CaseEvent,
    CaseStatus,
    Delivery,
    DeliveryKind,
    Official,
    Robot,
    RobotKind,
    Role,
    Task,
    Township,
    Unit,
    Villager,
)
from bot.scope import Audience, Told

if TYPE_CHECKING:
    from bot.cases import Change

log = logging.getLogger(__name__)

#: A group chat of a township without a language of its own (the directory always sets one).
GROUP_LANGUAGE = LANGUAGES[0]


def group_language(township: Township | None) -> str:
    """The language of a township's group chats and channel: read by many, set per township."""
    return township.language if township is not None and township.language else GROUP_LANGUAGE


def text(message: str, language: str, **values: object) -> str:
    return catalogs().text(message, language, **values)


def local_time(moment: datetime | None, timezone: str) -> str:
    """A moment as the township reads its clocks."""
    if moment is None:
        return "-"
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


# ---- keyboards ------------------------------------------------------------------------------


def _keyboard(buttons: list[tuple[str, str]], case_id: int, language: str) -> InlineKeyboardMarkup:
    return inline([
        button(text(label, language), CaseAction(case_id=case_id, action=action))
        for label, action in buttons
    ], 2)


ACCEPT = N_("✅ Accept")
DECLINE = N_("↩️ Decline")
ESCALATE = N_("⬆️ Escalate")
ASSIGN = N_("👤 Assign")
PROGRESS_NOTE = N_("💬 Progress note")
INTERNAL_NOTE = N_("🔒 Internal note")
RESOLVE = N_("✔️ Resolve")
SOLVED = N_("👍 Solved")
NOT_SOLVED = N_("👎 Not solved")
ACCEPT_RESULT = N_("👍 Accept the result")
SEND_BACK = N_("🔁 Send back")


def card_keyboard(
    case: Case, language: str, *, assign: bool, upward: bool
) -> InlineKeyboardMarkup:
    """A new case's card: Accept, and Decline/Escalate when there is a unit above."""
    buttons = [(ACCEPT, "accept")]
    if upward:
        buttons += [(DECLINE, "decline"), (ESCALATE, "escalate")]
    if assign:
        buttons.append((ASSIGN, "assign"))
    return _keyboard(buttons, case.id, language)


def work_keyboard(case: Case, language: str, *, upward: bool) -> InlineKeyboardMarkup:
    """The assignee's buttons while working on a case."""
    buttons = [(PROGRESS_NOTE, "note"), (INTERNAL_NOTE, "internal"), (RESOLVE, "resolve")]
    if upward:
        buttons.append((ESCALATE, "escalate"))
    return _keyboard(buttons, case.id, language)


def verdict_keyboard(case: Case, language: str) -> InlineKeyboardMarkup:
    return _keyboard([(SOLVED, "solved"), (NOT_SOLVED, "unsolved")], case.id, language)


def review_keyboard(case: Case, language: str) -> InlineKeyboardMarkup:
    """A township task's evidence, for its creator or a dispatcher (中心工作)."""
    return _keyboard([(ACCEPT_RESULT, "confirm"), (SEND_BACK, "sendback")], case.id, language)


# ---- what a change is about -----------------------------------------------------------------


@dataclass
class Scene:
    """The case after a change, with everything its texts need, loaded once."""

    case: Case
    event: CaseEvent
    unit: Unit
    upward: bool
    reporter: Villager | None
    reporter_account: Account | None
    assignee: Official | None
    assignee_account: Account | None
    actor: Official | None
    #: The chats that may read the reporter's name and phone (bot.scope).
    personal: frozenset[int]
    #: A township task's case: the task and who gave it (there is no reporter).
    task: Task | None = None
    creator: Official | None = None
    #: A case reported through the Open311 API: the key's name (there is no reporter).
    source: str | None = None
    #: The unit the case was at before the change (`Change.unit_before`).
    unit_before: int | None = None

    @property
    def timezone(self) -> str:
        return self.case.township.timezone

    @property
    def group_language(self) -> str:
        return group_language(self.case.township)


async def _case_in_place(
    case_id: int, snap: snapshot.Snapshot | None, fresh: Case | None = None
) -> Case:
    """The case as it stands, with its category, village, grid, unit and township: from the
    batch's snapshot when it has the case's township, else read with it. `fresh`: the case
    as the change's transaction just read it, which a batch need not read again."""
    if snap is not None:
        case = fresh if fresh is not None else await Case.get(id=case_id)
        if case.township_id in snap.townships:  # type: ignore[attr-defined]
            case.category = snap.categories[case.category_id]  # type: ignore[attr-defined]
            case.village = snap.villages[case.village_id]  # type: ignore[attr-defined]
            grid_id = case.grid_id  # type: ignore[attr-defined]
            case.grid = snap.grids[grid_id] if grid_id is not None else None  # type: ignore[assignment]
            case.unit = snap.units[case.unit_id]  # type: ignore[attr-defined]
            case.township = snap.townships[case.township_id]  # type: ignore[attr-defined]
            return case
    return await Case.get(id=case_id).prefetch_related(
        "category", "village", "grid", "unit", "township"
    )


async def _account(account_id: int, snap: snapshot.Snapshot | None) -> Account | None:
    """An official's or a batch reporter's account: the snapshot has every one it knows of."""
    if snap is not None and account_id in snap.accounts:
        return snap.accounts[account_id]
    return await Account.get_or_none(id=account_id)


async def _scene(change: Change, *, fresh: bool = False) -> Scene:
    snap = snapshot.current()
    case = await _case_in_place(change.case.id, snap, change.case if fresh else None)
    reporter = reporter_account = assignee = assignee_account = actor = None
    if case.reporter_id is not None:  # type: ignore[attr-defined]
        if snap is not None and case.reporter_id in snap.villagers:  # type: ignore[attr-defined]
            reporter = snap.villagers[case.reporter_id]  # type: ignore[attr-defined]
        else:
            reporter = await Villager.get(id=case.reporter_id)  # type: ignore[attr-defined]
        reporter_account = await _account(reporter.account_id, snap)  # type: ignore[attr-defined]
    if case.assignee_id is not None:  # type: ignore[attr-defined]
        if snap is not None and case.assignee_id in snap.officials:  # type: ignore[attr-defined]
            assignee = snap.officials[case.assignee_id]  # type: ignore[attr-defined]
        else:
            assignee = await Official.get(id=case.assignee_id)  # type: ignore[attr-defined]
        if assignee.account_id is not None:  # type: ignore[attr-defined]
            assignee_account = await _account(assignee.account_id, snap)  # type: ignore[attr-defined]
    if change.event.actor_id is not None:  # type: ignore[attr-defined]
        if snap is not None and case.township_id in snap.townships:  # type: ignore[attr-defined]
            actor = snap.official_of_account(change.event.actor_id, case.township_id)  # type: ignore[attr-defined]
        else:
            actor = await Official.filter(
                account_id=change.event.actor_id,  # type: ignore[attr-defined]
                township_id=case.township_id,  # type: ignore[attr-defined]
            ).order_by("id").first()
    upward = await scope.escalation_target(case) is not None
    task = creator = None
    if case.task_id is not None:  # type: ignore[attr-defined]
        task = await Task.get(id=case.task_id)  # type: ignore[attr-defined]
        creator = await Official.get(id=task.creator_id)  # type: ignore[attr-defined]
    source = None
    if case.api_key_id is not None:  # type: ignore[attr-defined]
        source = (await ApiKey.get(id=case.api_key_id)).name  # type: ignore[attr-defined]
    return Scene(
        case, change.event, case.unit, upward, reporter, reporter_account, assignee,
        assignee_account, actor, await scope.personal_data_chats(case), task, creator, source,
        change.unit_before,
    )


async def _scene_of(case: Case) -> Scene:
    """The case as it stands, outside a change (reminders, failures, a late /start)."""
    event = await CaseEvent.filter(case_id=case.id).order_by("-id").first()
    from bot.cases import Change

    return await _scene(Change(case, event))  # type: ignore[arg-type]


async def _scene_as_read(case: Case) -> Scene:
    """The case as its caller read it and holds it (the sweep, whose transaction holds its
    row), for a notice of no change: its stand-in event names no one."""
    from bot.cases import Change

    return await _scene(Change(case, CaseEvent(case_id=case.id, action="remind")), fresh=True)


def _name(official: Official | None, language: str) -> str:
    return official.display_name(language) if official is not None else "-"


def card_body(scene: Scene, language: str, *, personal: bool) -> str:
    """What an official needs to take a case: what, where, who, by when.

    `personal`: whether this reader may read the reporter's name and phone (bot.scope).
    """
    case = scene.case
    if scene.task is not None:
        lines = [
            text(N_("📌 Township task, case {number}"), language, number=case.number),
            text(N_("Task: {title}"), language, title=scene.task.title),
        ]
        if scene.task.description:
            lines.append(scene.task.description)
    else:
        lines = [
            text(N_("🚨 Case {number}"), language, number=case.number)
            if case.category.emergency
            else text(N_("📋 Case {number}"), language, number=case.number),
            text(N_("Category: {name}"), language, name=case.category.display_name(language)),
            case.description or text(N_("(voice message)"), language),
        ]
    if case.photos:
        lines.append(text(N_("Photos: {count}"), language, count=len(case.photos)))
    if case.latitude is not None and case.longitude is not None:
        lines.append(text(N_("Location: {link}"), language,
                          link=links.map_link(case.latitude, case.longitude)))
    if case.address:
        lines.append(text(N_("Address: {address}"), language, address=case.address))
    if case.media_url:
        lines.append(text(N_("Picture: {url}"), language, url=case.media_url))
    place = case.village.display_name(language)
    if case.grid is not None:
        place += " · " + case.grid.display_name(language)
    lines.append(text(N_("Village: {place}"), language, place=place))
    if case.supporters:
        lines.append(text(N_("Me too: {count}"), language, count=case.supporters))
    if scene.task is not None:
        lines.append(text(N_("Given by: {name}"), language, name=_name(scene.creator, language)))
    elif scene.source is not None:
        lines.append(text(N_("Reported through the Open311 API by {source}"), language,
                          source=scene.source))
    elif case.anonymous or scene.reporter is None:
        lines.append(text(N_("Reporter: anonymous"), language))
    elif not personal:
        lines.append(text(N_("Reporter: known to the unit handling the case"), language))
    elif scene.reporter.phone:
        lines.append(
            text(
                N_("Reporter: {name}, {phone}"), language,
                name=scene.reporter.name, phone=scene.reporter.phone,
            )
        )
    else:
        lines.append(text(N_("Reporter: {name}"), language, name=scene.reporter.name))
    tz = scene.timezone
    received = N_("Given: {when}") if scene.task is not None else N_("Reported: {when}")
    lines.append(text(received, language, when=local_time(case.created_at, tz)))
    if case.status == CaseStatus.NEW:  # once taken, only the resolve deadline counts
        lines.append(text(N_("Accept by: {when}"), language, when=local_time(case.accept_by, tz)))
    lines.append(text(N_("Resolve by: {when}"), language, when=local_time(case.resolve_by, tz)))
    return "\n".join(lines)


def status_line(scene: Scene, language: str) -> str:
    """Where the case stands now, under every copy of its card."""
    case, tz = scene.case, scene.timezone
    name = _name(scene.assignee, language)
    if case.status == CaseStatus.ACCEPTED:
        return text(
            N_("✅ Being handled by {name}, to be resolved by {deadline}"), language,
            name=name, deadline=local_time(case.resolve_by, tz),
        )
    if case.status == CaseStatus.RESOLVED and scene.task is not None:
        return text(N_("✔️ Resolved by {name}, waiting for {creator} to review it"),
                    language, name=name, creator=_name(scene.creator, language))
    if case.status == CaseStatus.RESOLVED and scene.source is not None:
        return text(N_("✔️ Resolved by {name}; reported through the API, it closes by itself"),
                    language, name=name)
    if case.status == CaseStatus.RESOLVED:
        return text(N_("✔️ Resolved by {name}, waiting for the villager's confirmation"),
                    language, name=name)
    if case.status == CaseStatus.CLOSED:
        if scene.task is not None:
            return text(N_("🔒 Closed, the result accepted"), language)
        if case.rating is not None:
            return text(N_("🔒 Closed, rated {stars} of 5"), language, stars=case.rating)
        return text(N_("🔒 Closed without a rating"), language)
    unit = scene.unit.display_name(language)
    if scene.event.action in ("decline", "escalate"):
        # Old copies of the card: the case went on to another unit, which has yet to accept it.
        return text(N_("➡️ Passed on to {unit}, waiting to be accepted"), language, unit=unit)
    return text(N_("➡️ Waiting to be accepted by {unit}"), language, unit=unit)


def arrival_line(scene: Scene, language: str, previous: Unit | None) -> str | None:
    """Why a card arrives at a unit other than the first: declined or escalated below."""
    action, note = scene.event.action, scene.event.note
    if previous is None or action not in ("decline", "escalate"):
        return None
    below = previous.display_name(language)
    if action == "decline":
        return text(N_("↩️ Declined by {unit}: {reason}"), language, unit=below, reason=note)
    if note:
        return text(N_("⬆️ Escalated by {unit}: {note}"), language, unit=below, note=note)
    if scene.event.actor_id is None:  # type: ignore[attr-defined]
        return text(N_("⏰ Escalated from {unit}: the deadline passed"), language, unit=below)
    return text(N_("⬆️ Escalated by {unit}"), language, unit=below)


# ---- who reads what ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    chat_id: int
    language: str
    may_assign: bool


async def _members(unit: Unit) -> list[tuple[Official, Account]]:
    """Active members of a unit whose Telegram account is bound."""
    snap = snapshot.current()
    if snap is not None and unit.id in snap.units:
        return [
            (o, snap.accounts[o.account_id])  # type: ignore[attr-defined]
            for o in snap.bound_members(unit.id) if o.account_id in snap.accounts  # type: ignore[attr-defined]
        ]
    officials = await unit.members.filter(active=True, account_id__isnull=False).order_by("id")
    accounts = {
        account.id: account
        for account in await Account.filter(id__in=[o.account_id for o in officials])  # type: ignore[attr-defined]
    }
    return [(o, accounts[o.account_id]) for o in officials if o.account_id in accounts]  # type: ignore[attr-defined]


async def _card_readers(unit: Unit, *, dispatchers_too: bool) -> list[Reader]:
    """The unit's group chat when it has one, else each member; optionally its dispatchers."""
    readers: list[Reader] = []
    members = await _members(unit)
    if unit.group_chat_id is not None:
        township = await snapshot.township(unit.township_id)  # type: ignore[attr-defined]
        readers.append(Reader(unit.group_chat_id, group_language(township), True))
        if dispatchers_too:
            readers += [
                Reader(account.id, account.language, True)
                for official, account in members
                if official.role == Role.DISPATCHER
            ]
    else:
        readers += [
            Reader(account.id, account.language, official.role in (Role.DISPATCHER, Role.LEADER))
            for official, account in members
        ]
    seen: set[int] = set()
    unique = [r for r in readers if not (r.chat_id in seen or seen.add(r.chat_id))]  # type: ignore[func-returns-value]
    if not unique:
        log.warning("case card for unit %s reaches nobody: no group chat, no bound member",
                    unit.code)
    return unique


async def _language_of(chat_id: int, group: str) -> str:
    if chat_id < 0:
        return group
    account = await _account(chat_id, snapshot.current())
    return account.language if account is not None else group


# ---- cards ------------------------------------------------------------------------------------


async def _post_card(
    scene: Scene,
    reader: Reader,
    *,
    previous: Unit | None = None,
    headline: str | None = None,
    buttons: bool = True,
    key: str | None = None,
) -> None:
    """One copy of a new case's card: the text and buttons under its photo or voice."""
    case = scene.case
    lines = [card_body(scene, reader.language, personal=reader.chat_id in scene.personal)]
    arrival = arrival_line(scene, reader.language, previous)
    if arrival:
        lines += ["", arrival]
    if headline:
        lines = [headline, "", *lines]
    keyboard = None
    if buttons:
        keyboard = card_keyboard(
            case, reader.language, assign=reader.may_assign, upward=scene.upward
        )
    await delivery.post(
        reader.chat_id,
        "\n".join(lines),
        voice=case.voice_file_id,
        photos=case.photos,
        keyboard=keyboard,
        case_id=case.id,
        card=True,
        key=key,
    )


async def _post_cards(scene: Scene, previous: Unit | None, *, dispatchers_too: bool) -> None:
    readers = await _card_readers(scene.unit, dispatchers_too=dispatchers_too)
    if not readers:
        await _cover_for(scene)  # nobody of the unit can receive it: no group, no one bound
    for reader in readers:
        await _post_card(scene, reader, previous=previous)


def _card_copies() -> QuerySet[Delivery]:
    """The copies of cards: what an edit of each needs, not their texts."""
    return Delivery.filter(card=True, kind=DeliveryKind.TEXT).order_by("id").only(
        "id", "chat_id", "case_id", "priority"
    )


#: Card copies read ahead by `cards_of` for the cases of a block, by case.
_read_ahead: ContextVar[dict[int, list[Delivery]] | None] = ContextVar(
    "cards_read_ahead", default=None
)


@contextlib.asynccontextmanager
async def cards_of(case_ids: Sequence[int]) -> AsyncIterator[None]:
    """Read the card copies of `case_ids` in one statement for the block: a sweep's chunk
    changes each of its cases at most once, inside the transaction that reads them here. A
    case's copies are used once; a second change of it reads them again."""
    found: dict[int, list[Delivery]] = {case_id: [] for case_id in case_ids}
    for row in await _card_copies().filter(case_id__in=list(case_ids)):
        found[row.case_id].append(row)  # type: ignore[attr-defined]
    token = _read_ahead.set(found)
    try:
        yield
    finally:
        _read_ahead.reset(token)


async def _card_rows(case: Case) -> list[Delivery]:
    read_ahead = _read_ahead.get()
    if read_ahead is not None and case.id in read_ahead:
        return read_ahead.pop(case.id)
    return list(await _card_copies().filter(case_id=case.id))


async def _edit_cards(scene: Scene) -> list[Delivery]:
    """Every copy of the card shows where the case stands; the assignee's keeps work buttons."""
    rows = await _card_rows(scene.case)
    working = scene.case.status == CaseStatus.ACCEPTED and scene.assignee_account is not None
    for row in rows:
        language = await _language_of(row.chat_id, scene.group_language)
        keyboard = None
        if working and row.chat_id == scene.assignee_account.id:  # type: ignore[union-attr]
            keyboard = work_keyboard(scene.case, language, upward=scene.upward)
        body = card_body(scene, language, personal=row.chat_id in scene.personal)
        await delivery.edit(row, f"{body}\n\n{status_line(scene, language)}", keyboard)
    return rows


async def _assignee_card(scene: Scene, headline: str | None) -> None:
    """The assignee's own copy of the card, with the work buttons."""
    account = scene.assignee_account
    if account is None:
        return
    language = account.language
    lines = [
        card_body(scene, language, personal=account.id in scene.personal), "",
        status_line(scene, language),
    ]
    if headline:
        lines = [headline, "", *lines]
    await delivery.post(
        account.id,
        "\n".join(lines),
        keyboard=work_keyboard(scene.case, language, upward=scene.upward),
        case_id=scene.case.id,
        card=True,
    )


# ---- telling the villager and the officials --------------------------------------------


async def _tell_villager(
    scene: Scene,
    message: str,
    *,
    photos: list[str] | None = None,
    keyboard: InlineKeyboardMarkup | None = None,
    **values: object,
) -> None:
    account = scene.reporter_account
    if account is not None:
        await delivery.post(
            account.id,
            text(message, account.language, number=scene.case.number, **values),
            photos=photos or (),
            keyboard=keyboard,
            case_id=scene.case.id,
        )
    await _tell_supporters(scene, message, photos=photos, **values)


async def _tell_supporters(
    scene: Scene, message: str, *, photos: list[str] | None = None, **values: object
) -> None:
    """Whoever joined the case (附议) hears what its reporter hears, in the same outbox
    transaction, once each; without the reporter's buttons. A resolution asks them for
    their stars instead (`supporter_stars`)."""
    if not scene.case.supporters:
        return
    accounts = await Account.filter(
        villager__supported__case_id=scene.case.id
    ).order_by("id")
    resolved = scene.event.action == "resolve"
    for account in accounts:
        body = text(message, account.language, number=scene.case.number, **values)
        keyboard = None
        if resolved:
            body = text(
                N_("✔️ Case {number}, which you joined with Me too, is resolved. {name} wrote: "
                   "{note}\n\nHow do you rate the result?"),
                account.language, number=scene.case.number, **values,
            )
            keyboard = supporter_stars(scene.case)
        await delivery.post(
            account.id, body, photos=photos or (), keyboard=keyboard, case_id=scene.case.id
        )


async def _reviewers(scene: Scene) -> list[Account]:
    """Who reviews a task's result: its creator, or when the creator cannot be reached (no
    bound account, no longer active) the township's dispatchers."""
    creator = scene.creator
    if creator is not None and creator.active and creator.account_id is not None:  # type: ignore[attr-defined]
        account = await Account.get_or_none(id=creator.account_id)  # type: ignore[attr-defined]
        if account is not None:
            return [account]
    dispatchers = await Official.filter(
        township_id=scene.case.township_id, role=Role.DISPATCHER, active=True,  # type: ignore[attr-defined]
        account_id__isnull=False,
    ).values_list("account_id", flat=True)
    return await Account.filter(id__in=list(dispatchers)).order_by("id")


async def _tell_creator(
    scene: Scene,
    message: str,
    *,
    photos: list[str] | None = None,
    review: bool = False,
    **values: object,
) -> None:
    """A township task's news for whoever reviews it, in place of the villager's; `review`
    adds the Accept the result / Send back buttons."""
    assert scene.task is not None
    for account in await _reviewers(scene):
        if account.id == scene.event.actor_id:  # type: ignore[attr-defined]
            continue
        language = account.language
        await delivery.post(
            account.id,
            text(message, language, number=scene.case.number, title=scene.task.title,
                 unit=scene.unit.display_name(language), **values),
            photos=photos or (),
            keyboard=review_keyboard(scene.case, language) if review else None,
            case_id=scene.case.id,
        )


def supporter_stars(case: Case) -> InlineKeyboardMarkup:
    return inline(
        [button("⭐" * n, SupporterRate(case_id=case.id, stars=n)) for n in range(1, 6)], 1
    )


async def supported(case: Case) -> None:
    """A villager joined the case: every copy of its card shows the new supporter count."""
    await _edit_cards(await _scene_of(case))


async def _tell_assignee(
    scene: Scene, message: str, *, keyboard: bool = False, **values: object
) -> None:
    account = scene.assignee_account
    if account is None:
        return
    language = account.language
    await delivery.post(
        account.id,
        text(message, language, number=scene.case.number, **values),
        keyboard=work_keyboard(scene.case, language, upward=scene.upward) if keyboard else None,
        case_id=scene.case.id,
    )


async def _officials_on_case(scene: Scene) -> list[Account]:
    """The assignee and the leaders of the case's unit, except whoever made the change."""
    accounts: dict[int, Account] = {}
    if scene.assignee_account is not None:
        accounts[scene.assignee_account.id] = scene.assignee_account
    for official, account in await _members(scene.unit):
        if official.role in (Role.LEADER, Role.DISPATCHER):
            accounts.setdefault(account.id, account)
    accounts.pop(scene.event.actor_id, None)  # type: ignore[attr-defined]
    return list(accounts.values())


# ---- each change --------------------------------------------------------------------------


async def _reported(scene: Scene) -> None:
    await _post_cards(scene, None, dispatchers_too=False)
    await _confirm_report(scene)


async def _confirm_report(scene: Scene) -> None:
    """The villager's case number, who handles it, and by when they are to accept it.

    Queued with the case: the Submit button is gone once the case exists, so a confirmation
    lost with the process would leave the villager to report the problem again.
    """
    account = scene.reporter_account
    if account is None:
        return
    case, language = scene.case, account.language
    lines = [
        text(N_("✅ Your report is submitted. Case number: {number}"), language,
             number=case.number),
        "",
        text(N_("{unit} will handle it and is to accept it by {deadline}."), language,
             unit=scene.unit.display_name(language),
             deadline=local_time(case.accept_by, scene.timezone)),
        text(N_("I will tell you when it is accepted and when it is resolved. /mycases shows it."),
             language),
    ]
    if case.anonymous:
        lines.append(text(N_("Officials will not see your name or phone."), language))
    with catalogs().speaking(language):
        menu = villager_menu()
    await delivery.post(account.id, "\n".join(lines), keyboard=menu, case_id=case.id)


async def _accepted(scene: Scene) -> None:
    rows = await _edit_cards(scene)
    account = scene.assignee_account
    if account is not None and not any(row.chat_id == account.id for row in rows):
        await _assignee_card(scene, None)  # taken from a group card: a private copy to work on
    await _tell_villager(
        scene,
        N_("✅ Your case {number} was accepted by {name} ({unit}). "
           "It is to be resolved by {deadline}."),
        name=_name(scene.assignee, _reader_language(scene)),
        unit=scene.unit.display_name(_reader_language(scene)),
        deadline=local_time(scene.case.resolve_by, scene.timezone),
    )


def _reader_language(scene: Scene) -> str:
    return scene.reporter_account.language if scene.reporter_account else scene.group_language


async def _moved(scene: Scene) -> None:
    """Declined or escalated: old cards say where it went, the new unit gets a card."""
    await _edit_cards(scene)
    previous_id = scene.unit_before
    previous = await snapshot.unit(previous_id) if previous_id is not None else None
    await _post_cards(scene, previous, dispatchers_too=scene.event.action == "decline")
    if scene.task is not None:
        await _tell_creator(
            scene, N_("↪️ Task “{title}”: case {number} was passed on to {unit}."),
        )
        return
    await _tell_villager(
        scene,
        N_("↪️ Your case {number} was passed on to {unit}."),
        unit=scene.unit.display_name(_reader_language(scene)),
    )


async def _assigned(scene: Scene) -> None:
    await _edit_cards(scene)
    by = scene.actor
    account = scene.assignee_account
    if account is not None:
        headline = text(
            N_("👤 {by} assigned this case to you. Please resolve it by {deadline}."),
            account.language,
            by=_name(by, account.language),
            deadline=local_time(scene.case.resolve_by, scene.timezone),
        )
        await _assignee_card(scene, headline)
    await _tell_villager(
        scene,
        N_("👤 Your case {number} is now handled by {name}. It is to be resolved by {deadline}."),
        name=_name(scene.assignee, _reader_language(scene)),
        deadline=local_time(scene.case.resolve_by, scene.timezone),
    )


async def _noted(scene: Scene) -> None:
    event = scene.event
    for account in await _officials_on_case(scene):
        message = (
            N_("💬 {name} on case {number}: {note}")
            if event.public
            else N_("🔒 {name} on case {number} (internal): {note}")
        )
        await delivery.post(
            account.id,
            text(message, account.language, name=_name(scene.actor, account.language),
                 number=scene.case.number, note=event.note),
            case_id=scene.case.id,
        )
    if event.public and scene.task is not None:
        await _tell_creator(
            scene, N_("💬 Task “{title}”, {unit} (case {number}): {note}"), note=event.note,
        )
    elif event.public:
        await _tell_villager(
            scene,
            N_("💬 News on your case {number} from {name}: {note}"),
            name=_name(scene.actor, _reader_language(scene)),
            note=event.note,
        )


async def _resolved(scene: Scene) -> None:
    await _edit_cards(scene)
    if scene.task is not None:
        await _tell_creator(
            scene,
            N_("✔️ Task “{title}”: {unit} resolved case {number}. {name} wrote: {note}\n\n"
               "Do you accept the result?"),
            photos=list(scene.event.attachments), review=True,
            name=_name(scene.assignee, scene.group_language), note=scene.event.note,
        )
        return
    language = _reader_language(scene)
    await _tell_villager(
        scene,
        N_("✔️ Your case {number} is resolved. {name} wrote: {note}\n\n"
           "Is the problem solved?"),
        photos=list(scene.event.attachments),
        keyboard=verdict_keyboard(scene.case, language),
        name=_name(scene.assignee, language),
        note=scene.event.note,
    )


async def _rated(scene: Scene) -> None:
    await _edit_cards(scene)
    if scene.case.rating_comment:
        await _tell_assignee(
            scene,
            N_("⭐ The villager rated case {number}: {stars} of 5. Comment: {comment}"),
            stars=scene.case.rating,
            comment=scene.case.rating_comment,
        )
    else:
        await _tell_assignee(
            scene,
            N_("⭐ The villager rated case {number}: {stars} of 5."),
            stars=scene.case.rating,
        )


async def _reopened(scene: Scene) -> None:
    await _edit_cards(scene)
    if scene.task is not None:
        await _tell_assignee(
            scene,
            N_("🔁 {name} sent case {number} back: {reason}\n"
               "It is yours again, to be resolved by {deadline}."),
            keyboard=True,
            name=_name(scene.actor, _assignee_language(scene)),
            reason=scene.event.note,
            deadline=local_time(scene.case.resolve_by, scene.timezone),
        )
        return
    await _tell_assignee(
        scene,
        N_("🔁 The villager says case {number} is not solved: {reason}\n"
           "It is yours again, to be resolved by {deadline}."),
        keyboard=True,
        reason=scene.event.note,
        deadline=local_time(scene.case.resolve_by, scene.timezone),
    )


async def _confirmed(scene: Scene) -> None:
    """A township task's result accepted: the cards say so, the assignee hears it."""
    await _edit_cards(scene)
    await _tell_assignee(
        scene, N_("👍 {name} accepted the result of case {number}. Thank you!"),
        name=_name(scene.actor, _assignee_language(scene)),
    )


async def _closed(scene: Scene) -> None:
    """Closed by the scheduler: nobody rated it in time."""
    await _edit_cards(scene)
    await _tell_assignee(scene, N_("🔒 Case {number} closed without a rating from the villager."))
    resolved_at = scene.case.resolved_at or scene.event.at
    await _tell_villager(
        scene,
        N_("🔒 Your case {number} was resolved {days} days ago and is now closed without a "
           "rating. Thank you for reporting it."),
        days=max(1, round((scene.event.at - resolved_at).total_seconds() / 86400)),
    )


# ---- supervision (督办): what the scheduler tells ---------------------------------------------


async def _privately(officials: list[Official]) -> list[Reader]:
    snap = snapshot.current()
    ids = sorted({o.account_id for o in officials})  # type: ignore[attr-defined]
    if snap is not None and all(i in snap.accounts for i in ids):
        return [Reader(i, snap.accounts[i].language, True) for i in ids]
    accounts = await Account.filter(id__in=[o.account_id for o in officials]).order_by("id")  # type: ignore[attr-defined]
    return [Reader(account.id, account.language, True) for account in accounts]


async def _readers_of(scene: Scene, audience: Audience) -> list[Reader]:
    """The chats one supervision step reaches, never the assignee's own."""
    readers: list[Reader] = []
    if audience.unit is not None and audience.told in (Told.UNIT, Told.OWN_UNIT):
        readers += await _card_readers(audience.unit, dispatchers_too=False)
    readers += await _privately(audience.officials)
    skip = {scene.assignee_account.id} if scene.assignee_account else set()
    return [r for r in readers if not (r.chat_id in skip or skip.add(r.chat_id))]  # type: ignore[func-returns-value]


async def _tell_readers(
    scene: Scene, readers: list[Reader], message: str, *, cardless: bool = False,
    **values: object,
) -> None:
    """A supervision notice: one line on top of the case's card, without buttons; the
    reporter's name and phone only for those handling the case."""
    for reader in readers:
        lines = [text(message, reader.language, number=scene.case.number, **values)]
        if not cardless:
            personal = reader.chat_id in scene.personal
            lines += ["", card_body(scene, reader.language, personal=personal)]
        await delivery.post(reader.chat_id, "\n".join(lines), case_id=scene.case.id)


async def _supervised(scene: Scene) -> Audience | None:
    """Who this overdue level tells (bot.scope.supervision), None past the last level."""
    levels = await scope.supervision(scene.case)
    level = scene.case.overdue_level
    return levels[level - 1] if 1 <= level <= len(levels) else None


NOBODY_ABOVE = N_("⏰ Supervision: case {number} at {unit} is overdue, and nobody at or above "
                  "{unit} can be told. Please name a leader of {unit} or a unit above it in "
                  "the directory.")


async def _nobody_above(scene: Scene, readers: list[Reader]) -> None:
    """The case's chain names nobody to tell: those who can name someone are asked to."""
    for reader in readers:
        await _tell_readers(scene, [reader], NOBODY_ABOVE, cardless=True,
                            unit=scene.unit.display_name(reader.language))


async def _tell_robots(
    scene: Scene, audience: Audience, message: str, deadline: datetime | None
) -> None:
    """What a unit's group chat is told of supervision goes to the unit's group robots too
    (bot.robots): the case number, category, village, unit and deadline, never a person's
    name nor the villager's words. A confidential case's stays in Telegram."""
    if audience.unit is None or audience.told not in (Told.UNIT, Told.OWN_UNIT):
        return
    case = scene.case
    if case.category.confidential:
        return
    unit_robots = await robots.of_unit(audience.unit.id)
    if not unit_robots:
        return
    language = scene.group_language
    lines = [
        text(message, language, number=case.number, unit=scene.unit.display_name(language),
             deadline=local_time(deadline, scene.timezone)),
        "",
        f"· {case.category.display_name(language)} · {case.village.display_name(language)}",
    ]
    await robots.post(
        unit_robots, "\n".join(lines), key=f"supervision:{scene.event.id}:{audience.unit.id}",
        case_id=case.id,
    )


async def _overdue(scene: Scene) -> None:
    """A case passed its deadline: one more supervising level is told (bot.scope), and the
    assignee is told who was."""
    case = scene.case
    audience = await _supervised(scene)
    if audience is None:
        return
    readers = await _readers_of(scene, audience)
    if audience.cardless:
        await _nobody_above(scene, readers)
    else:
        await _tell_robots(scene, audience, N_(
            "⏰ Supervision: case {number} at {unit} was to be resolved by {deadline} and is "
            "not."), case.resolve_by)
        for reader in readers:
            await _tell_readers(
                scene, [reader],
                N_("⏰ Supervision: case {number}, held by {name} ({unit}), was to be resolved "
                   "by {deadline} and is not."),
                name=_name(scene.assignee, reader.language),
                unit=scene.unit.display_name(reader.language),
                deadline=local_time(case.resolve_by, scene.timezone),
            )
    language = _assignee_language(scene)
    deadline = local_time(case.resolve_by, scene.timezone)
    unit = (audience.unit or scene.unit).display_name(language)
    messages = {
        Told.UNIT: N_("⏰ Case {number} is overdue: it was to be resolved by {deadline}. "
                      "{unit} has been told."),
        Told.OWN_UNIT: N_("⏰ Case {number} is overdue: it was to be resolved by {deadline}. "
                          "{unit} has been told."),
        Told.DISPATCHERS: N_("⏰ Case {number} is overdue: it was to be resolved by "
                             "{deadline}. The dispatchers have been told."),
        Told.LEADERS: N_("⏰ Case {number} is overdue: it was to be resolved by {deadline}. "
                         "The leaders of {unit} have been told."),
        Told.ADMINS: N_("⏰ Case {number} is overdue: it was to be resolved by {deadline}. "
                        "Nobody above you can be told; the township's administrators are "
                        "asked to name someone."),
        Told.NOBODY: N_("⏰ Case {number} is overdue: it was to be resolved by {deadline}. "
                        "Nobody else could be told: the directory names nobody above you."),
    }
    await _tell_assignee(scene, messages[audience.told], keyboard=True, deadline=deadline,
                         unit=unit)


SUPERVISED = N_("🔔 Supervision: {name} urges you on case {number}; it is to be resolved by "
                "{deadline}.")
SUPERVISED_SAYING = N_("🔔 Supervision: {name} urges you on case {number}; it is to be resolved "
                       "by {deadline}. {name} wrote: {note}")


async def _urged(scene: Scene) -> None:
    """督办 by hand: the assignee is urged on by name, with the case's work buttons; nobody
    else is told (the event is internal, the villager never reads it)."""
    language = _assignee_language(scene)
    note = scene.event.note
    await _tell_assignee(
        scene, SUPERVISED_SAYING if note else SUPERVISED, keyboard=True,
        name=_name(scene.actor, language), note=note or "",
        deadline=local_time(scene.case.resolve_by, scene.timezone),
    )


def _assignee_language(scene: Scene) -> str:
    return scene.assignee_account.language if scene.assignee_account else scene.group_language


UNACCEPTED = N_("⏰ Supervision: case {number} at {unit} was to be accepted by {deadline} and "
                "nobody has accepted it.")


async def _unaccepted(scene: Scene) -> None:
    """A new case at the top of its chain passed its accept deadline: the dispatchers, or for
    a confidential case its unit's leaders (bot.scope)."""
    audience = await _supervised(scene)
    if audience is None:
        return
    readers = await _readers_of(scene, audience)
    if audience.cardless:
        await _nobody_above(scene, readers)
        return
    await _tell_robots(scene, audience, UNACCEPTED, scene.case.accept_by)
    for reader in readers:
        await _tell_readers(
            scene, [reader],
            UNACCEPTED,
            unit=scene.unit.display_name(reader.language),
            deadline=local_time(scene.case.accept_by, scene.timezone),
        )


async def remind(case: Case, key: str) -> int:
    """A deadline is near: the unit (a new case) or the assignee is reminded, once per key.

    The reminder is a copy of the case's card (its buttons, edited when the case moves), with
    the reminder on top. `case` is as the sweep read it, its row held by the sweep's
    transaction since its version was checked. Returns how many chats it was queued for.
    """
    scene = await _scene_as_read(case)
    if scene.case.status == CaseStatus.NEW:
        readers = await _card_readers(scene.unit, dispatchers_too=False)
        message = N_("⏰ Reminder: case {number} is waiting to be accepted, by {deadline}.")
        deadline = scene.case.accept_by
    elif scene.case.status == CaseStatus.ACCEPTED and scene.assignee_account is not None:
        account = scene.assignee_account
        readers = [Reader(account.id, account.language, False)]
        message = N_("⏰ Reminder: case {number} is yours to resolve by {deadline}.")
        deadline = scene.case.resolve_by
    else:
        return 0
    for reader in readers:
        lines = [
            text(message, reader.language, number=scene.case.number,
                 deadline=local_time(deadline, scene.timezone)),
            "",
            card_body(scene, reader.language, personal=reader.chat_id in scene.personal),
        ]
        if scene.case.status == CaseStatus.NEW:
            keyboard = card_keyboard(
                scene.case, reader.language, assign=reader.may_assign, upward=scene.upward
            )
        else:
            keyboard = work_keyboard(scene.case, reader.language, upward=scene.upward)
        await delivery.post(
            reader.chat_id, "\n".join(lines), keyboard=keyboard, case_id=scene.case.id,
            card=True, key=f"{key}:{reader.chat_id}",
        )
    return len(readers)


#: The events whose change holds the case as created, not as read back from the database.
NEW_CASES = ("report",)

HANDLERS = {
    "report": _reported,
    "accept": _accepted,
    "decline": _moved,
    "escalate": _moved,
    "assign": _assigned,
    "note": _noted,
    "resolve": _resolved,
    "rate": _rated,
    "reopen": _reopened,
    "close": _closed,
    "confirm": _confirmed,
    "overdue": _overdue,
    "unaccepted": _unaccepted,
    "supervise": _urged,
}


async def announce(change: Change) -> None:
    """Queue what `change` means to each person; runs in the change's own transaction."""
    handler = HANDLERS.get(change.event.action)
    if handler is None:
        log.warning("no notices for case action %r", change.event.action)
        return
    # A transition's case is as its UPDATE left it, in this transaction (bot.cases).
    scene = await _scene(change, fresh=change.event.action not in NEW_CASES)
    with delivery.for_case(scene.case):
        async with delivery.together():  # its notices in a few statements
            await handler(scene)


# ---- what could not be delivered ------------------------------------------------------------

#: The case event that records a notice the courier gave up on (internal, never public).
UNDELIVERED = "undelivered"


async def _admins(township_id: int) -> list[Account]:
    """The township's administrators whose Telegram account is bound."""
    officials = await Official.filter(
        township_id=township_id, role=Role.ADMIN, active=True, account_id__isnull=False
    ).order_by("id")
    ids = [o.account_id for o in officials]  # type: ignore[attr-defined]
    return list(await Account.filter(id__in=ids).order_by("id"))


async def _who(chat_id: int, case: Case, language: str) -> str:
    """The chat a notice was for, as an administrator knows it: an official with their units,
    a unit's group; a villager only as the reporter, without their name or phone."""
    if chat_id < 0:
        unit = await Unit.filter(group_chat_id=chat_id).order_by("id").first()
        if unit is None:
            return text(N_("a group chat"), language)
        return text(N_("the group chat of {unit}"), language, unit=unit.display_name(language))
    official = await Official.filter(
        account_id=chat_id, township_id=case.township_id  # type: ignore[attr-defined]
    ).order_by("id").first()
    if official is None:
        return text(N_("the reporter"), language)
    units = await official.units.filter(active=True).order_by("id")
    return text(
        N_("{name} ({units})"), language, name=official.display_name(language),
        units=", ".join(unit.display_name(language) for unit in units) or "-",
    )


async def undelivered(row_ids: list[int], *, forbidden: bool) -> None:
    """Notices on cases that the courier gave up on: said, not only logged.

    Each goes into its case's timeline as an internal event. The township's administrators
    are told: of a chat that refuses the bot (`forbidden`, a 403) once while it does, naming
    the cases; of any other failure once per notice. A card that now reaches nobody of the
    case's unit goes to the unit above, or, without one, to the township's dispatchers.
    """
    await _robots_undelivered(row_ids)
    # A refused chat fails every part of a notice with its text: the text stands for it. An
    # edit that failed leaves the message it changes as it was, which was told already.
    kinds = [DeliveryKind.TEXT]
    if not forbidden:
        kinds = [
            kind for kind in DeliveryKind if kind not in (DeliveryKind.EDIT, DeliveryKind.ROBOT)
        ]
    rows = await Delivery.filter(
        id__in=row_ids, kind__in=kinds, case_id__isnull=False, failed_at__isnull=False
    ).order_by("id")
    if not rows:
        return
    case_ids = {row.case_id for row in rows}  # type: ignore[attr-defined]
    found = {case.id: case for case in await Case.filter(id__in=case_ids)}
    async with in_transaction():
        for row in rows:
            await _record_undelivered(row, found[row.case_id])  # type: ignore[attr-defined]
        if forbidden:
            await _tell_unreached(rows, found)
        else:
            for row in rows:
                await _tell_undelivered(row, found[row.case_id])  # type: ignore[attr-defined]
        for case_id in sorted({row.case_id for row in rows if row.card}):  # type: ignore[attr-defined]
            await _card_fallback(found[case_id])


def _robot_name(robot: Robot, unit: Unit | None, township: Township, language: str) -> str:
    """A robot as an administrator finds it in the directory: its app and whose it is."""
    app = text(ROBOT_APPS[robot.kind], language)
    owner = (unit or township).display_name(language)
    return text(N_("the {app} group robot of {owner}"), language, app=app, owner=owner)


async def _robots_undelivered(row_ids: list[int]) -> None:
    """A group robot's message given up: the township's administrators are told which robot
    and why (a wrong secret, a removed robot, an app out of reach), and a case's timeline
    keeps it too."""
    rows = await Delivery.filter(
        id__in=row_ids, kind=DeliveryKind.ROBOT, failed_at__isnull=False
    ).order_by("id")
    for row in rows:
        robot = await Robot.get(id=row.robot_id)  # type: ignore[attr-defined]
        township = await Township.get(id=robot.township_id)  # type: ignore[attr-defined]
        unit = await Unit.get_or_none(id=robot.unit_id)  # type: ignore[attr-defined]
        async with in_transaction():
            if row.case_id is not None:  # type: ignore[attr-defined]
                case = await Case.get(id=row.case_id)  # type: ignore[attr-defined]
                await CaseEvent.create(
                    case_id=case.id, at=delivery._now(), action=UNDELIVERED, actor_id=None,
                    from_status=case.status, to_status=case.status,
                    unit_id=case.unit_id,  # type: ignore[attr-defined]
                    note=f"{_robot_name(robot, unit, township, GROUP_LANGUAGE)}: "
                         f"{row.error or '-'}",
                    public=False,
                )
            for admin in await _admins(township.id):
                await delivery.post(
                    admin.id,
                    text(
                        N_("⚠️ A message could not be delivered to {robot}: {error}. Check "
                           "its url and secret in the directory."),
                        admin.language,
                        robot=_robot_name(robot, unit, township, admin.language),
                        error=row.error or "-",
                    ),
                    key=f"undelivered:{row.id}:{admin.id}",
                )


#: The apps' names as the catalogs give them.
ROBOT_APPS = {
    RobotKind.WECOM: N_("WeCom"),
    RobotKind.DINGTALK: N_("DingTalk"),
    RobotKind.FEISHU: N_("Feishu"),
}


async def _record_undelivered(row: Delivery, case: Case) -> None:
    """An internal event in the case's history (appended, like every event)."""
    who = await _who(row.chat_id, case, GROUP_LANGUAGE)
    await CaseEvent.create(
        case_id=case.id, at=delivery._now(), action=UNDELIVERED, actor_id=None,
        from_status=case.status, to_status=case.status,
        unit_id=case.unit_id,  # type: ignore[attr-defined]
        note=f"{who}: {row.error or '-'}", public=False,
    )


async def _tell_unreached(rows: list[Delivery], found: dict[int, Case]) -> None:
    """A chat refuses the bot: the administrators hear it once while it does."""
    chat_id = rows[0].chat_id
    case = found[rows[0].case_id]  # type: ignore[attr-defined]
    account = await Account.get_or_none(id=chat_id) if chat_id > 0 else None
    if account is not None and account.blocked_at is not None:
        since = int(account.blocked_at.timestamp())  # until the person starts the bot again
    else:
        since = int(delivery._now().timestamp()) // 86400  # a group: once a day
    numbers = ", ".join(sorted({c.number for c in found.values()}))
    message = (
        N_("⚠️ {who} refuses the bot's messages: the bot may have been removed from the "
           "group. Not delivered: {numbers}.")
        if chat_id < 0
        else N_("⚠️ {who} cannot get messages from the bot: they have not started it, or "
                "have blocked it. Not delivered: {numbers}. Officials get their cards "
                "when they send /start to the bot.")
    )
    for admin in await _admins(case.township_id):  # type: ignore[attr-defined]
        if admin.id == chat_id:
            continue
        await delivery.post(
            admin.id,
            text(message, admin.language, who=await _who(chat_id, case, admin.language),
                 numbers=numbers),
            key=f"unreached:{chat_id}:{since}:{admin.id}",
        )


async def _tell_undelivered(row: Delivery, case: Case) -> None:
    for admin in await _admins(case.township_id):  # type: ignore[attr-defined]
        if admin.id == row.chat_id:
            continue
        await delivery.post(
            admin.id,
            text(
                N_("⚠️ A message on case {number} could not be delivered to {who}: {error}"),
                admin.language, number=case.number,
                who=await _who(row.chat_id, case, admin.language), error=row.error or "-",
            ),
            key=f"undelivered:{row.id}:{admin.id}",
        )


async def _card_fallback(case: Case) -> None:
    """A new case's card reached nobody of its unit: the unit above sees it, or the
    township's dispatchers get it with the buttons. Once per unit the case reaches."""
    if case.status != CaseStatus.NEW:
        return
    scene = await _scene_of(case)
    readers = await _card_readers(scene.unit, dispatchers_too=False)
    if not readers:
        return
    reached = await Delivery.filter(
        case_id=case.id, card=True, kind=DeliveryKind.TEXT, failed_at__isnull=True,
        chat_id__in=[reader.chat_id for reader in readers],
    ).exists()
    if reached:
        return
    await _cover_for(scene)


async def _cover_for(scene: Scene) -> None:
    """A new case's card reaches nobody of its unit: the unit above sees it, or the
    township's dispatchers get it with the buttons, so that someone sees that it is accepted."""
    case = scene.case
    upper = await scope.escalation_target(case)
    others = await _card_readers(upper, dispatchers_too=False) if upper is not None else []
    buttons = False  # the unit above may not act on the case: it sees that someone does
    if not others:
        watching = await scope.dispatchers(case.township_id, case.category)  # type: ignore[attr-defined]
        others, buttons = await _privately(watching), True
    if not others:
        log.warning("case %s reaches nobody of %s, nor anyone else", case.number, scene.unit.code)
        return
    for reader in others:
        headline = text(
            N_("⚠️ Case {number} could not be delivered to anyone of {unit}. Please see that "
               "it is accepted."),
            reader.language, number=case.number, unit=scene.unit.display_name(reader.language),
        )
        await _post_card(
            scene, reader, headline=headline, buttons=buttons,
            key=f"card-fallback:{case.id}:{case.escalation_level}:{reader.chat_id}",
        )


async def resend_cards(account: Account) -> int:
    """An official starts the bot: the cards that could not reach them before, again.

    The cards of their units' cases still waiting to be accepted whose copy to this chat
    failed (they had not started the bot, or had blocked it). Returns how many.
    """
    queued = 0
    officials = await Official.filter(account_id=account.id, active=True).order_by("id")
    async with in_transaction():
        for official in officials:
            units = await official.units.filter(active=True).values_list("id", flat=True)
            failed = await Delivery.filter(
                chat_id=account.id, card=True, kind=DeliveryKind.TEXT,
                failed_at__isnull=False, case__status=CaseStatus.NEW,
                case__unit__id__in=list(units),
            ).values_list("case_id", flat=True)
            for case_id in sorted(set(failed)):
                if await Delivery.filter(
                    chat_id=account.id, case_id=case_id, card=True, kind=DeliveryKind.TEXT,
                    failed_at__isnull=True,
                ).exists():
                    continue  # a copy reached them, or is on its way
                scene = await _scene_of(await Case.get(id=case_id))
                may_assign = official.role in (Role.DISPATCHER, Role.LEADER)
                await _post_card(scene, Reader(account.id, account.language, may_assign))
                queued += 1
    return queued


async def cards_to_members(unit: Unit) -> int:
    """A unit's group is gone (the bot removed from it): the cards of its cases still waiting
    to be accepted go to each member privately, as for a unit without a group. Returns how
    many copies were queued; once per case, member and group lost."""
    readers = await _card_readers(unit, dispatchers_too=False)
    waiting = await Case.filter(unit_id=unit.id, status=CaseStatus.NEW).order_by("id")
    queued = 0
    for case in waiting:
        scene = await _scene_of(case)
        for reader in readers:
            if reader.chat_id < 0:
                continue
            await _post_card(scene, reader, key=f"card-private:{case.id}:{reader.chat_id}")
            queued += 1
    return queued
