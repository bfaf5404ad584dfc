"""What a township prints to go live: a poster per village, and invitations for every official.

A village's poster carries the QR code of `https://t.me/<bot>?start=v-<village id>`: scanned, it
opens the bot, which starts a newcomer's registration with that village already chosen
(bot.flows.registration). The invitation sheet carries, for each official not yet joined, a
fresh single-use link (bot.invitations.invite), with a CSV of the same rows.

Who may print a village's poster: the township's administrators, and the officials of a unit
of that village (its grids, its committee, its township team), who put it on its notice board.
The words are in the township's language, the language of its group chats: a poster is read by
the whole village. Drawing is bot.printing's, in a thread.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime

from tortoise.expressions import Q

from bot import scope
from bot.i18n import N_, catalogs
from bot.invitations import NewInvitation, invite
from bot.links import start_link
from bot.models import Account, Official, Township, Unit, Village
from bot.notices import local_time
from bot.printing import Card, PosterText, Printed, poster, sheet

#: `/start v-<village id>`: a villager's registration with that village chosen.
VILLAGE_PREFIX = "v-"
_VILLAGE_PAYLOAD = re.compile(r"^v-([0-9]{1,12})$")

POSTER_LINES = (
    N_("Something wrong in the village? Tell us from your phone."),
    N_("Report a problem, ask a policy question, follow what is done: all here."),
)
POSTER_SCAN = N_("Scan with your phone's camera or in Telegram to register in {village}")
SHEET_TITLE = N_("{township}: invitations for officials")
CARD_NOTE = N_("Works once · valid until {date}")
LINK = N_("Invitation link")
VALID_UNTIL = N_("Valid until")
CODE, NAME, UNIT = N_("Code"), N_("Name"), N_("Unit")


def village_payload(village_id: int) -> str:
    return f"{VILLAGE_PREFIX}{village_id}"


def village_in(payload: str | None) -> int | None:
    """The village id a `/start` payload names, None when it names none (`v-` and digits)."""
    found = _VILLAGE_PAYLOAD.match(payload or "")
    return int(found.group(1)) if found else None


def village_link(bot_username: str, village: Village) -> str:
    return start_link(bot_username, village_payload(village.id))


# ---- posters --------------------------------------------------------------------------------


async def printable_villages(officials: list[Official]) -> list[Village]:
    """The active villages whose poster these official identities may print: every village
    of a township they administer, and the villages of their own units."""
    administered = [o.township_id for o in officials if scope.may_manage_directory(o)]  # type: ignore[attr-defined]
    own = await Unit.filter(
        members__id__in=[o.id for o in officials if o.active], active=True,
        village_id__isnull=False,
    ).values_list("village_id", flat=True)
    return await Village.filter(
        Q(township_id__in=administered) | Q(id__in=list(own)), active=True, township__active=True
    ).order_by("township_id", "position", "id")


async def may_print_poster(officials: list[Official], village: Village) -> bool:
    return any(v.id == village.id for v in await printable_villages(officials))


async def village_poster(village: Village, bot_username: str) -> Printed:
    """The village's A4 poster, PDF and PNG, in its township's language."""
    township = await Township.get(id=village.township_id)  # type: ignore[attr-defined]
    language = township.language
    text = catalogs().text
    name = village.display_name(language)
    words = PosterText(
        heading=township.display_name(language),
        village=name,
        lines=(text(POSTER_LINES[0], language), text(POSTER_LINES[1], language)),
        scan=text(POSTER_SCAN, language, village=name),
    )
    return await asyncio.to_thread(poster, words, village_link(bot_username, village))


# ---- invitations for everyone ---------------------------------------------------------------


@dataclass(frozen=True)
class Invited:
    """One official's row: their fresh invitation, and their units' names."""

    invitation: NewInvitation
    units: list[str]


@dataclass(frozen=True)
class InvitationDocuments:
    """What `invite --all` and the chat's "everyone" hand over."""

    invited: list[Invited]
    csv: bytes
    sheet: Printed


async def invite_everyone(
    township: Township, *, ttl_days: int, created_by: Account | None = None
) -> list[Invited]:
    """A new single-use link for each active official of `township` with no Telegram account
    bound yet, in the order of their codes. Links made before stay valid until they expire:
    whichever one the official opens binds them, and the others then bind nobody else."""
    officials = await Official.filter(
        township_id=township.id, active=True, account_id__isnull=True
    ).order_by("code").prefetch_related("units")
    invited = []
    for official in officials:
        units = sorted((u for u in official.units if u.active), key=lambda u: u.id)
        invited.append(Invited(
            invitation=await invite(official, ttl_days=ttl_days, created_by=created_by),
            units=[u.display_name(township.language) for u in units],
        ))
    return invited


def _unit_names(row: Invited) -> str:
    return "、".join(row.units)


def invitation_csv(township: Township, invited: list[Invited], bot_username: str) -> bytes:
    """Code, name, unit, link, valid until (township time): UTF-8 with a byte-order mark,
    which spreadsheet programs need to read Chinese from a CSV."""
    language = township.language
    text = catalogs().text
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([text(h, language) for h in (CODE, NAME, UNIT, LINK, VALID_UNTIL)])
    for row in invited:
        official = row.invitation.official
        writer.writerow([
            official.code, official.display_name(language), _unit_names(row),
            row.invitation.link(bot_username), _until(row.invitation.expires_at, township),
        ])
    return buffer.getvalue().encode("utf-8-sig")


def _until(moment: datetime, township: Township) -> str:
    return f"{local_time(moment, township.timezone)} {township.timezone}"


async def invitation_documents(
    township: Township, invited: list[Invited], bot_username: str
) -> InvitationDocuments:
    """The CSV and the printable sheet (A4, 12 officials a page) of these invitations."""
    language = township.language
    text = catalogs().text
    cards = [
        Card(
            name=row.invitation.official.display_name(language),
            unit=_unit_names(row),
            link=row.invitation.link(bot_username),
            note=text(CARD_NOTE, language, date=_until(row.invitation.expires_at, township)),
        )
        for row in invited
    ]
    title = text(SHEET_TITLE, language, township=township.display_name(language))
    return InvitationDocuments(
        invited=invited,
        csv=invitation_csv(township, invited, bot_username),
        sheet=await asyncio.to_thread(sheet, title, cards),
    )


def file_stem(kind: str, code: str, moment: datetime, township: Township) -> str:
    """`invitations-BL-2026-12-04`: files named for what they are and the day, township time."""
    return f"{kind}-{code}-{local_time(moment, township.timezone)[:10]}"
