"""The setup page, for administrators: what the township still lacks, as /setup lists it in the
bot (`bot.setup`), with the links that fix it.

Adding the bot to a unit's group or to the digest chat is a plain link. An invitation is made
only when asked (a form per official): each one is a single-use login, so opening the page makes
none. Without a bot (the back office alone, no BOT_TOKEN) there are no links, and Telegram is
not asked about the digest chat. Anyone but an administrator is told there is no such page,
as on /directory.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot import setup
from bot.handlers.setup import telegram_checker
from bot.i18n import N_
from bot.models import Official, Township
from web.files import FILES
from web.views import (
    SETTINGS,
    VIEWER,
    Viewer,
    administered_township,
    message_page,
    reader_language,
    render,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
GONE = N_("This official has joined already, or is not one of your township's.")


async def _township(request: web.Request) -> Township | None:
    return await administered_township(request, "/setup")


async def _page(
    request: web.Request, township: Township, *, invited: dict[int, str] | None = None,
    refusal: str | None = None, status: int = 200,
) -> web.Response:
    language = await reader_language(request)
    bot = request.app[FILES].bot
    gaps = await setup.missing(township, telegram_checker(bot) if bot is not None else None)
    username = ((await bot.me()).username or "") if bot is not None else None
    rows = []
    for line in await setup.lines(gaps, language):
        url = None
        if username is not None and line.gap.fix in (setup.Fix.BIND_GROUP, setup.Fix.BIND_DIGEST):
            url = await setup.link(line.gap, username, ttl_days=0)
        official = line.gap.official
        rows.append({
            "line": line, "url": url,
            "official_id": official.id if official is not None else None,
            "invitation": (invited or {}).get(official.id) if official is not None else None,
        })
    return await render(request, "setup.html", {
        "township_name": township.display_name(language), "rows": rows,
        "links": username is not None, "refusal": refusal,
    }, status=status)


@routes.get("/setup")
async def setup_page(request: web.Request) -> web.StreamResponse:
    township = await _township(request)
    if township is None:
        return await message_page(request, N_("No such page."), 404)
    return await _page(request, township)


@routes.post("/setup/invite/{official_id:[0-9]{1,9}}")
async def invite(request: web.Request) -> web.StreamResponse:
    township = await _township(request)
    if township is None:
        return await message_page(request, N_("No such page."), 404)
    bot = request.app[FILES].bot
    official = await Official.get_or_none(
        id=int(request.match_info["official_id"]), township_id=township.id, active=True,
        account_id__isnull=True,
    )
    if official is None or bot is None:
        return await _page(request, township, refusal=GONE, status=409)
    viewer = request[VIEWER]
    assert isinstance(viewer, Viewer)
    gap = setup.Gap(setup.GapKind.NOT_JOINED, setup.Fix.INVITE, official=official)
    url = await setup.link(
        gap, (await bot.me()).username or "",
        ttl_days=request.app[SETTINGS].invite_ttl_days, by=viewer.person.account,
    )
    assert url is not None
    log.info("back office: account %s invited official %s", viewer.person.account.id,
             official.code)
    return await _page(request, township, invited={official.id: url})
