"""What an administrator does in the chat: invite officials, one by one or all at once."""

from __future__ import annotations

from aiogram.filters import Command, CommandObject
from aiogram.types import BufferedInputFile, CallbackQuery, Message

from bot import keyboards
from bot.callbacks import InviteEveryone, InviteOfficial
from bot.i18n import _
from bot.invitations import invite, now
from bot.models import Official, Role, Township
from bot.notices import local_time
from bot.people import Person
from bot.posters import file_stem, invitation_documents, invite_everyone
from bot.routers import Routes

routes = Routes("admin", private_only=True)


def _administered_townships(person: Person) -> set[int]:
    return {o.township_id for o in person.officials if o.role == Role.ADMIN}  # type: ignore[attr-defined]


async def _send_link(message: Message, official: Official, person: Person, ttl_days: int) -> None:
    invitation = await invite(official, ttl_days=ttl_days, created_by=person.account)
    me = await message.bot.me()  # type: ignore[union-attr]
    await message.answer(
        _(
            "Invitation for {name}. Send them this link; it works once and expires on "
            "{date}:\n{link}"
        ).format(
            name=official.display_name(person.language),
            date=invitation.expires_at.strftime("%Y-%m-%d"),
            link=invitation.link(me.username or ""),
        )
    )


@routes.message(Command("invite"))
async def invite_command(
    message: Message, command: CommandObject, person: Person, invite_ttl_days: int
) -> None:
    townships = _administered_townships(person)
    if not townships:
        await message.answer(_("Only an administrator can invite officials."))
        return
    if command.args:
        official = await Official.get_or_none(
            code=command.args.strip(), township_id__in=townships, active=True
        )
        if official is None:
            await message.answer(
                _("No official with the code {code}.").format(code=command.args.strip()[:32])
            )
            return
        await _send_link(message, official, person, invite_ttl_days)
        return
    waiting = await Official.filter(
        township_id__in=townships, active=True, account_id__isnull=True
    ).order_by("id")
    if not waiting:
        await message.answer(_("Every official in the directory has joined already."))
        return
    with_waiting = await Township.filter(
        id__in={o.township_id for o in waiting}  # type: ignore[attr-defined]
    ).order_by("id")
    await message.answer(
        _("Who do you want to invite?"),
        reply_markup=keyboards.officials_to_invite(waiting[:60], person.language, with_waiting),
    )


@routes.callback_query(InviteOfficial.filter())
async def invite_tapped(
    query: CallbackQuery, callback_data: InviteOfficial, person: Person, invite_ttl_days: int
) -> None:
    official = await Official.get_or_none(
        id=callback_data.official_id,
        township_id__in=_administered_townships(person),
        active=True,
    )
    if official is None or not isinstance(query.message, Message):
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    await query.answer()
    await _send_link(query.message, official, person, invite_ttl_days)


@routes.callback_query(InviteEveryone.filter())
async def invite_everyone_tapped(
    query: CallbackQuery, callback_data: InviteEveryone, person: Person, invite_ttl_days: int
) -> None:
    """A fresh link for every official of the township not yet joined: the table (CSV) and
    the sheet to print (PDF, and a PNG per page), sent to the administrator alone."""
    township = None
    if callback_data.township_id in _administered_townships(person):
        township = await Township.get_or_none(id=callback_data.township_id, active=True)
    if township is None or not isinstance(query.message, Message):
        await query.answer(_("This button is no longer active."), show_alert=True)
        return
    await query.answer()
    message = query.message
    invited = await invite_everyone(
        township, ttl_days=invite_ttl_days, created_by=person.account
    )
    if not invited:
        await message.answer(_("Every official in the directory has joined already."))
        return
    me = await message.bot.me()  # type: ignore[union-attr]
    documents = await invitation_documents(township, invited, me.username or "")
    expires = invited[0].invitation.expires_at
    stem = file_stem("invitations", township.code, now(), township)
    await message.answer(
        _(
            "Invitations for {count} officials who have not joined yet. Each link works once, "
            "until {date} ({zone}). Print the sheet for the meeting: each official scans their "
            "own code. The table has the same links. Links sent before stay valid."
        ).format(
            count=len(invited), date=local_time(expires, township.timezone),
            zone=township.timezone,
        )
    )
    files = [(f"{stem}.csv", documents.csv), (f"{stem}.pdf", documents.sheet.pdf)]
    pages = documents.sheet.pngs
    files += [
        (f"{stem}-{number}.png" if len(pages) > 1 else f"{stem}.png", png)
        for number, png in enumerate(pages, start=1)
    ]
    for name, data in files:
        await message.answer_document(BufferedInputFile(data, filename=name))
