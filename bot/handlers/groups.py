"""The bot in groups and channels: which unit a group serves, the digest chat.

Thin: read what Telegram says (the bot added or removed, a group upgraded, a tap, a command),
ask `bot.bindings`, answer. A group's messages are read by many and are in the township's
language; an alert to one person in theirs. Who may bind is checked on every tap, from the
directory's roles, never from the message the buttons came with.

`forwards` is the one private-chat door: an administrator forwards a post of the channel that
is to receive the digest.
"""

from __future__ import annotations

import contextlib
import logging

from aiogram import Bot, F
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import (
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardMarkup,
    Message,
    MessageOriginChannel,
)

from bot import bindings
from bot.bindings import MissingRight, NotAllowed
from bot.callbacks import BindGroup
from bot.handlers.fallback import command_in_group
from bot.i18n import N_, _, catalogs
from bot.keyboards import button, inline
from bot.links import BIND_PREFIX, DIGEST_PAYLOAD
from bot.models import Township, Unit, UnitKind
from bot.notices import group_language
from bot.people import Person
from bot.routers import Routes

log = logging.getLogger(__name__)

GROUPS = {"group", "supergroup"}
routes = Routes("groups")
forwards = Routes("forwards", private_only=True)

#: Telegram shows at most 100 buttons under a message; one row is kept for "unbind".
CHOICES_MAX = 98
_KIND_ORDER = {
    UnitKind.TOWNSHIP_OFFICE: 0, UnitKind.TOWNSHIP_TEAM: 1, UnitKind.DEPARTMENT: 2,
    UnitKind.VILLAGE: 3, UnitKind.GRID: 4,
}
#: The right Telegram's apps name, as the person finds it in the chat's settings.
RIGHTS = {
    MissingRight.NOT_MEMBER: N_(
        "I cannot post in “{title}”: I am not a member of it. Add me to it first."
    ),
    MissingRight.NOT_ADMIN: N_(
        "I cannot post in the channel “{title}”: I am not one of its administrators. Make me "
        "an administrator with the right “Post messages”, then try again."
    ),
    MissingRight.POST_MESSAGES: N_(
        "I cannot post in the channel “{title}”: I am an administrator but without the right "
        "“Post messages”. Turn it on in the channel's administrators, then try again."
    ),
    MissingRight.SEND_MESSAGES: N_(
        "I cannot post in “{title}”: the group has restricted me and I lack the right “Send "
        "messages”. Allow it in the group's permissions, then try again."
    ),
}


def _in(language: str, message: str, **values: object) -> str:
    return catalogs().text(message, language, **values)


async def _choice(township: Township, bound: list[Unit]) -> tuple[str, InlineKeyboardMarkup]:
    """The question which unit this group serves, in the township's language, with a button
    per active unit (township-level first, then villages and grids) and "unbind" if bound."""
    language = group_language(township)
    units = await Unit.filter(township_id=township.id, active=True).prefetch_related(
        "village", "grid"
    )
    units.sort(key=lambda u: (
        u.village.position if u.village else -1, _KIND_ORDER.get(u.kind, 9),
        u.grid.position if u.grid else -1, u.id,
    ))
    buttons = [
        button(u.display_name(language), BindGroup(unit_id=u.id)) for u in units[:CHOICES_MAX]
    ]
    if bound:
        text = _in(
            language,
            N_("This group serves {unit}: its case cards arrive here. To change it, choose "
               "another unit; to stop, tap “Unbind”. Administrators, dispatchers and the "
               "unit's leaders can choose."),
            unit=", ".join(u.display_name(language) for u in bound),
        )
        buttons.append(button(_in(language, N_("✖️ Unbind")), BindGroup(unit_id=0)))
    else:
        text = _in(
            language,
            N_("Hello! I am {township}'s case bot. Which unit does this group serve? Its case "
               "cards will then arrive here. The township's administrators and dispatchers "
               "and the unit's leaders can choose."),
            township=township.display_name(language),
        )
    return text, inline(buttons, 2)


async def _township_of_group(chat_id: int, account_id: int) -> Township | None:
    """The township a group is set up for: of the units it serves, else the person's."""
    bound = await bindings.units_of_group(chat_id)
    if bound:
        return await Township.get_or_none(id=bound[0].township_id)  # type: ignore[attr-defined]
    return await bindings.township_for(account_id)


async def _offer(message: Message, person: Person) -> None:
    township = await _township_of_group(message.chat.id, person.account.id)
    if township is None:
        await message.answer(_(
            "I do not know which township this group belongs to. An official of the township "
            "should send /bindgroup here."
        ))
        return
    text, keyboard = await _choice(township, await bindings.units_of_group(message.chat.id))
    await message.answer(text, reply_markup=keyboard)


# ---- the bot added, removed, moved -------------------------------------------------------------


def _joined(event: ChatMemberUpdated) -> bool:
    inside = {"member", "administrator", "restricted", "creator"}
    return (
        event.old_chat_member.status not in inside and event.new_chat_member.status in inside
    )


def _left(event: ChatMemberUpdated) -> bool:
    return event.new_chat_member.status in ("left", "kicked")


@routes.my_chat_member(F.chat.type.in_(GROUPS))
async def bot_membership(event: ChatMemberUpdated, bot: Bot, person: Person) -> None:
    """Added to a group: greet and offer the unit choice. Removed: unbind, tell the admins."""
    if _left(event):
        await bindings.bot_removed(event.chat.id, event.chat.title or "")
        return
    if not _joined(event):
        return
    township = await _township_of_group(event.chat.id, person.account.id)
    if township is None:
        log.info("added to group %s by %s, who is no official", event.chat.id, event.from_user.id)
        return
    text, keyboard = await _choice(township, await bindings.units_of_group(event.chat.id))
    try:
        await bot.send_message(event.chat.id, text, reply_markup=keyboard)
    except (TelegramBadRequest, TelegramForbiddenError) as error:  # restricted already
        log.warning("cannot greet group %s: %s", event.chat.id, error)


@routes.my_chat_member(F.chat.type == "channel")
async def channel_membership(event: ChatMemberUpdated, bot: Bot, person: Person) -> None:
    """Removed from a channel: the digest there is forgotten. Made its administrator by a
    township administrator: tell them privately how to make it the digest channel."""
    if _left(event):
        await bindings.bot_removed(event.chat.id, event.chat.title or "")
        return
    if not _joined(event) or not await bindings.administered(person.account.id):
        return
    with contextlib.suppress(TelegramBadRequest, TelegramForbiddenError):
        await bot.send_message(person.account.id, _(
            "To send the township's weekly digest to the channel “{title}”, forward me one of "
            "its posts here."
        ).format(title=event.chat.title or ""))


@routes.message(F.chat.type.in_(GROUPS), F.migrate_to_chat_id)
async def upgraded(message: Message) -> None:
    """The group became a supergroup: what it served follows the new chat id."""
    await bindings.group_migrated(message.chat.id, message.migrate_to_chat_id)  # type: ignore[arg-type]


@routes.message(F.chat.type.in_(GROUPS), F.migrate_from_chat_id)
async def upgraded_into(message: Message) -> None:
    await bindings.group_migrated(message.migrate_from_chat_id, message.chat.id)  # type: ignore[arg-type]


@routes.message(F.chat.type.in_(GROUPS), F.new_chat_members | F.left_chat_member)
async def members_changed(message: Message) -> None:
    """Service messages: the greeting answers `my_chat_member`; nothing to say here."""


# ---- binding a unit's group ----------------------------------------------------------------------


@routes.message(F.chat.type.in_(GROUPS), Command("bindgroup"))
async def bind_command(message: Message, person: Person) -> None:
    await _offer(message, person)


@routes.message(F.chat.type.in_(GROUPS), CommandStart())
async def start_in_group(
    message: Message, command: CommandObject, person: Person, bot: Bot
) -> None:
    """`/start bind-<unit id>` and `/start digest` from a `?startgroup=` link; plain /start
    offers an official the choice, and points anyone else to the private chat."""
    payload = (command.args or "").strip()
    if payload == DIGEST_PAYLOAD:
        await digest_here(message, person, bot)
        return
    if payload.startswith(BIND_PREFIX) and payload[len(BIND_PREFIX):].isdigit():
        unit_id = int(payload[len(BIND_PREFIX):])
        if unit_id < 2**31:
            await _bind(message, person, unit_id)
            return
    if not payload and not await bindings.townships_of(person.account.id):
        await command_in_group(message, bot)
        return
    await _offer(message, person)


async def _bind(message: Message, person: Person, unit_id: int) -> None:
    try:
        bound = await bindings.bind_unit_group(unit_id, message.chat.id, person.account.id)
    except NotAllowed:
        await message.answer(_(
            "Only the township's administrators and dispatchers and the unit's leaders can "
            "choose which unit this group serves."
        ))
        return
    await message.answer(await _bound_text(bound))


async def _bound_text(bound: bindings.Bound) -> str:
    township = await Township.get(id=bound.unit.township_id)  # type: ignore[attr-defined]
    language = group_language(township)
    lines = [_in(
        language, N_("✅ This group now serves {unit}: its case cards arrive here."),
        unit=bound.unit.display_name(language),
    )]
    for other in bound.replaced:
        lines.append(_in(
            language, N_("{unit} no longer has this group: its cards go to its officials "
                         "privately until it has another."),
            unit=other.display_name(language),
        ))
    return "\n".join(lines)


@routes.callback_query(F.message.chat.type.in_(GROUPS), BindGroup.filter())
async def bind_tapped(query: CallbackQuery, callback_data: BindGroup, person: Person) -> None:
    message = query.message
    if not isinstance(message, Message):
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    try:
        if callback_data.unit_id == 0:
            units = await bindings.unbind_unit_group(message.chat.id, person.account.id)
            text = await _unbound_text(units)
        else:
            bound = await bindings.bind_unit_group(
                callback_data.unit_id, message.chat.id, person.account.id
            )
            text = await _bound_text(bound)
    except NotAllowed:
        log.info("group %s: account %s may not bind %s", message.chat.id, person.account.id,
                 callback_data.unit_id)
        await query.answer(_(
            "Only the township's administrators and dispatchers and the unit's leaders can "
            "choose which unit this group serves."
        ), show_alert=True)
        return
    await query.answer()
    with contextlib.suppress(TelegramBadRequest):  # the choice is answered once, however asked
        await message.edit_text(text, reply_markup=None)


async def _unbound_text(units: list[Unit]) -> str:
    township = (
        await Township.get_or_none(id=units[0].township_id) if units else None  # type: ignore[attr-defined]
    )
    language = group_language(township)
    if not units:
        return _in(language, N_("This group serves no unit."))
    return _in(
        language, N_("This group no longer serves {unit}: its case cards go to its officials "
                     "privately."),
        unit=", ".join(u.display_name(language) for u in units),
    )


# ---- the digest chat -----------------------------------------------------------------------------


async def _missing(bot: Bot, chat_id: int, chat_type: str) -> MissingRight | None:
    """Asks Telegram whether the bot may post in the chat, and what it lacks if not."""
    try:
        member = await bot.get_chat_member(chat_id, bot.id)
    except (TelegramBadRequest, TelegramForbiddenError):
        return MissingRight.NOT_MEMBER
    return bindings.missing_right(chat_type, member.status, member.model_dump())


async def _make_digest_chat(
    bot: Bot, person: Person, chat_id: int, chat_type: str, title: str
) -> tuple[Township | None, str]:
    """Binds the chat as the digest chat of the township the person administers; the text
    to tell them: done, or the right the bot lacks there."""
    townships = await bindings.administered(person.account.id)
    if not townships:
        return None, _("Only a township administrator can choose the digest chat.")
    missing = await _missing(bot, chat_id, chat_type)
    if missing is not None:
        return None, _(RIGHTS[missing]).format(title=title)
    township = await bindings.bind_digest_chat(townships[0].id, chat_id, person.account.id)
    done = _("✅ “{title}” now receives {township}'s weekly digest and monthly list.")
    return township, done.format(title=title, township=township.display_name(person.language))


@routes.message(F.chat.type.in_(GROUPS), Command("digesthere"))
async def digest_here(message: Message, person: Person, bot: Bot) -> None:
    """An administrator makes this group the digest chat. A refusal goes to them privately:
    a group where the bot may not write cannot be answered in."""
    township, text = await _make_digest_chat(
        bot, person, message.chat.id, message.chat.type, message.chat.title or ""
    )
    if township is not None:
        await message.answer(_in(
            group_language(township),
            N_("✅ This chat now receives {township}'s weekly digest and monthly list."),
            township=township.display_name(group_language(township)),
        ))
        return
    try:
        await bot.send_message(person.account.id, text)
    except (TelegramBadRequest, TelegramForbiddenError):
        with contextlib.suppress(TelegramBadRequest, TelegramForbiddenError):
            await message.answer(text)


def _from_channel(message: Message) -> bool:
    return isinstance(message.forward_origin, MessageOriginChannel)


async def _is_admin(message: Message, person: Person) -> bool:
    return person.is_admin


@forwards.message(_from_channel, _is_admin)
async def forwarded_post(message: Message, person: Person, bot: Bot) -> None:
    """An administrator forwards a post of a channel: that channel receives the digest."""
    origin = message.forward_origin
    assert isinstance(origin, MessageOriginChannel)
    _township, text = await _make_digest_chat(
        bot, person, origin.chat.id, origin.chat.type, origin.chat.title or ""
    )
    await message.answer(text)
