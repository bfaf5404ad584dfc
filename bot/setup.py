"""What a township still lacks before its cases reach people (/setup, the back office, the start).

One check, three readers: the administrator's `/setup` in the bot, the back office's /setup
page, and the log at start. Each gap names what it is about (a unit, an official, a category
in a village, the township) and what fixes it; the bot and the page turn a fix into a button
or a link where one can (`links`), and otherwise say what to do.

The checks reuse the rules the cases follow: a unit is reached through its group chat or its
members' private chats (as `bot.notices` posts a card), the bot may write privately only to
someone who started it (`Account.started_at`) and has not blocked it (`Account.blocked_at`,
set by the courier on a 403), and a category is routed by `bot.routing.responsible_unit`.
Whether the bot may post in the digest chat only Telegram knows: the caller passes a
`ChatChecker` that asks it, so this module needs no Telegram client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from bot.i18n import N_, catalogs
from bot.invitations import invite
from bot.links import DIGEST_PAYLOAD, bind_payload, group_link
from bot.models import Account, Category, Official, Role, Township, Unit, Village
from bot.routing import NoResponsibleUnit, responsible_unit

log = logging.getLogger(__name__)


class GapKind(StrEnum):
    NO_DISPATCHER = "no_dispatcher"
    NO_DIGEST_CHAT = "no_digest_chat"
    DIGEST_REFUSED = "digest_refused"  # the bot may not post in the digest chat
    NOT_JOINED = "not_joined"  # an official with no Telegram account bound
    NOT_STARTED = "not_started"  # bound, but the bot may not write to them
    UNIT_UNREACHABLE = "unit_unreachable"  # no group chat, no member the bot may write to
    NO_UNIT = "no_unit"  # a category's cases in a village would find no unit


class Fix(StrEnum):
    """What fixes a gap; the first three are a link, the others words."""

    INVITE = "invite"  # an invitation link for the official
    BIND_GROUP = "bind_group"  # add the bot to the unit's group: ?startgroup=bind-<unit id>
    BIND_DIGEST = "bind_digest"  # add the bot to the digest chat: ?startgroup=digest
    START_BOT = "start_bot"  # the official opens the bot and presses Start
    GRANT_RIGHT = "grant_right"  # the digest chat's owner lets the bot post
    DIRECTORY = "directory"  # the directory file
    ASK_AGAIN = "ask_again"  # Telegram did not answer: look again later


LINKED = frozenset({Fix.INVITE, Fix.BIND_GROUP, Fix.BIND_DIGEST})


class PostRight(StrEnum):
    """Whether the bot may post in a chat, as Telegram answers getChatMember for the bot."""

    OK = "ok"
    NOT_MEMBER = "not_member"  # never added, removed, or the chat is gone
    NOT_ADMIN = "not_admin"  # a channel: only its administrators post
    NO_POST_RIGHT = "no_post_right"  # a channel administrator without "Post messages"
    MUTED = "muted"  # restricted in a group: may not send messages
    UNKNOWN = "unknown"  # Telegram could not be asked


#: Asks Telegram whether the bot may post in a chat (bot.handlers.setup.telegram_checker).
ChatChecker = Callable[[int], Awaitable[PostRight]]


@dataclass(frozen=True)
class Gap:
    kind: GapKind
    fix: Fix
    unit: Unit | None = None
    official: Official | None = None
    category: Category | None = None
    village: Village | None = None
    right: PostRight | None = None

    @property
    def subject(self) -> str:
        """What it is about, by code only (no names): for the log and the tests."""
        if self.official is not None:
            return self.official.code
        if self.unit is not None:
            return self.unit.code
        if self.category is not None and self.village is not None:
            return f"{self.category.code}@{self.village.code}"
        return self.right or ""


async def missing(township: Township, checker: ChatChecker | None = None) -> list[Gap]:
    """Everything `township` lacks, most basic first; `checker` asks Telegram about the digest
    chat (None: not asked, e.g. a back office with no bot token)."""
    gaps: list[Gap] = []
    officials = await Official.filter(township_id=township.id, active=True).order_by("id")
    if not any(o.role == Role.DISPATCHER for o in officials):
        gaps.append(Gap(GapKind.NO_DISPATCHER, Fix.DIRECTORY))
    gaps += await _digest(township, checker)
    accounts = {
        a.id: a for a in await Account.filter(
            id__in=[o.account_id for o in officials if o.account_id is not None]  # type: ignore[attr-defined]
        )
    }

    def reachable(official: Official) -> bool:
        account = accounts.get(official.account_id)  # type: ignore[attr-defined]
        return account is not None and account.started_at is not None \
            and account.blocked_at is None

    for official in officials:
        if official.account_id is None:  # type: ignore[attr-defined]
            gaps.append(Gap(GapKind.NOT_JOINED, Fix.INVITE, official=official))
        elif not reachable(official):
            gaps.append(Gap(GapKind.NOT_STARTED, Fix.START_BOT, official=official))
    for unit in await Unit.filter(township_id=township.id, active=True).order_by("id"):
        if unit.group_chat_id is not None:
            continue
        members = await unit.members.filter(active=True)
        if not any(reachable(member) for member in members):
            gaps.append(Gap(GapKind.UNIT_UNREACHABLE, Fix.BIND_GROUP, unit=unit))
    gaps += await _unrouted(township)
    return gaps


async def _digest(township: Township, checker: ChatChecker | None) -> list[Gap]:
    if township.digest_chat_id is None:
        return [Gap(GapKind.NO_DIGEST_CHAT, Fix.BIND_DIGEST)]
    if checker is None:
        return []
    right = await checker(township.digest_chat_id)
    if right == PostRight.OK:
        return []
    fix = {
        PostRight.NOT_MEMBER: Fix.BIND_DIGEST, PostRight.UNKNOWN: Fix.ASK_AGAIN,
    }.get(right, Fix.GRANT_RIGHT)
    return [Gap(GapKind.DIGEST_REFUSED, fix, right=right)]


async def _unrouted(township: Township) -> list[Gap]:
    """Every village × every category a villager may pick, through the routing cases take."""
    villages = await Village.filter(township_id=township.id, active=True).order_by(
        "position", "id"
    )
    categories = await Category.filter(township_id=township.id, active=True, task=False)
    parents = {c.parent_id for c in categories}  # type: ignore[attr-defined]
    leaves = sorted(
        (c for c in categories if c.id not in parents and c.level is not None),
        key=lambda c: (c.position, c.id),
    )
    gaps: list[Gap] = []
    for category in leaves:
        for village in villages:
            try:
                await responsible_unit(category, village, None)
            except NoResponsibleUnit:
                gaps.append(Gap(GapKind.NO_UNIT, Fix.DIRECTORY, category=category,
                                village=village))
    return gaps


# ---- in words ---------------------------------------------------------------------------------

_PROBLEMS = {
    GapKind.NO_DISPATCHER: N_("No dispatcher: nobody watches the township's cases, and cases "
                              "that reach nobody have no one to go to."),
    GapKind.NO_DIGEST_CHAT: N_("No digest chat: the weekly digest and the red/grey list go "
                               "nowhere."),
    GapKind.NOT_JOINED: N_("{official} ({units}) has not joined yet."),
    GapKind.NOT_STARTED: N_("{official} ({units}) has not started the bot, or has blocked it: "
                            "the bot cannot write to them."),
    GapKind.UNIT_UNREACHABLE: N_("{unit} has no group chat and no member who started the "
                                 "bot: its cases would reach nobody."),
    GapKind.NO_UNIT: N_("{category} in {village}: no unit is responsible, so villagers "
                        "cannot report it there."),
}
_REFUSALS = {
    PostRight.NOT_MEMBER: N_("The bot is not in the digest chat: the digest cannot be posted."),
    PostRight.NOT_ADMIN: N_("The bot is not an administrator of the digest channel: only "
                            "administrators may post in a channel."),
    PostRight.NO_POST_RIGHT: N_("The bot is an administrator of the digest channel without "
                                "the right to post messages."),
    PostRight.MUTED: N_("The bot may not send messages in the digest group."),
    PostRight.UNKNOWN: N_("Telegram did not say whether the bot may post in the digest chat."),
}
_ADVICE = {
    Fix.START_BOT: N_("Ask them to open the bot and press Start."),
    Fix.GRANT_RIGHT: N_("In the chat's settings, make the bot an administrator who may post "
                        "messages."),
    Fix.DIRECTORY: N_("Add it to the directory file and import it again."),
    Fix.ASK_AGAIN: N_("Look again in a while."),
}
_BUTTONS = {
    Fix.INVITE: N_("Invite {official}"),
    Fix.BIND_GROUP: N_("Add the bot to the group of {unit}"),
    Fix.BIND_DIGEST: N_("Add the bot to the digest chat"),
}


def _t(message: str, language: str, **values: object) -> str:
    return catalogs().text(message, language, **values)


async def _values(gap: Gap, language: str) -> dict[str, str]:
    values: dict[str, str] = {}
    if gap.official is not None:
        units = await gap.official.units.filter(active=True).order_by("id")
        values["official"] = gap.official.display_name(language)
        values["units"] = ", ".join(u.display_name(language) for u in units) or "-"
    if gap.unit is not None:
        values["unit"] = gap.unit.display_name(language)
    if gap.category is not None:
        values["category"] = gap.category.display_name(language)
    if gap.village is not None:
        values["village"] = gap.village.display_name(language)
    return values


@dataclass(frozen=True)
class Line:
    """A gap in a reader's language: the problem, what to do when no link does it, and the
    link's label."""

    gap: Gap
    problem: str
    advice: str | None
    button: str | None


async def lines(gaps: list[Gap], language: str) -> list[Line]:
    out: list[Line] = []
    for gap in gaps:
        values = await _values(gap, language)
        if gap.kind == GapKind.DIGEST_REFUSED:
            problem = _t(_REFUSALS[gap.right or PostRight.UNKNOWN], language)
        else:
            problem = _t(_PROBLEMS[gap.kind], language, **values)
        advice = _ADVICE.get(gap.fix)
        button = _BUTTONS.get(gap.fix)
        out.append(Line(
            gap, problem, _t(advice, language) if advice else None,
            _t(button, language, **values) if button else None,
        ))
    return out


async def link(
    gap: Gap, bot_username: str, *, ttl_days: int, by: Account | None = None
) -> str | None:
    """The link that fixes `gap`, if one does: an invitation is made afresh (single use)."""
    if gap.fix == Fix.INVITE and gap.official is not None:
        made = await invite(gap.official, ttl_days=ttl_days, created_by=by)
        return made.link(bot_username)
    if gap.fix == Fix.BIND_GROUP and gap.unit is not None:
        return group_link(bot_username, bind_payload(gap.unit.id))
    if gap.fix == Fix.BIND_DIGEST:
        return group_link(bot_username, DIGEST_PAYLOAD)
    return None


async def log_missing(checker: ChatChecker | None = None) -> int:
    """At start: each gap of each active township at WARNING, by codes only. Returns how
    many."""
    count = 0
    for township in await Township.filter(active=True).order_by("id"):
        for gap in await missing(township, checker):
            about = f" {gap.subject}" if gap.subject else ""
            log.warning("setup: township %s: %s%s (fix: %s)",
                        township.code, gap.kind, about, gap.fix)
            count += 1
    return count
