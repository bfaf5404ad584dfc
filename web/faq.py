"""The FAQ page, for administrators: the township's live answers to policy questions, and the
answers officials proposed from policy cases, each to approve or reject.

Approving makes the entry live at once (the bot's next villager finds it) and puts it into the
directory export; rejecting keeps the row, unseen by villagers. The decision is
`bot.faq.review`; anyone but an administrator is told there is no such page, as on
/directory.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot import faq
from bot.i18n import N_
from bot.models import FaqEntry, FaqStatus, Township
from web.views import VIEWER, administered_township, message_page, reader_language, render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
APPROVED = N_("Approved: villagers are answered with it from now on.")
REJECTED = N_("Rejected: villagers will not see it.")
GONE = N_("This proposal was already reviewed, or is not one of your township's.")


async def _township(request: web.Request) -> Township | None:
    return await administered_township(request, "the FAQ")


async def _page(
    request: web.Request, township: Township, *, done: str | None = None,
    refusal: str | None = None, status: int = 200,
) -> web.Response:
    language = await reader_language(request)
    live = await FaqEntry.filter(
        township_id=township.id, active=True, status=FaqStatus.LIVE
    ).order_by("position", "id")
    return await render(request, "faq.html", {
        "township": township.display_name(language),
        "proposals": await faq.proposals(township.id),
        "live": live,
        "done": done, "refusal": refusal,
    }, status=status)


@routes.get("/faq")
async def faq_page(request: web.Request) -> web.StreamResponse:
    township = await _township(request)
    if township is None:
        return await message_page(request, N_("No such page."), 404)
    return await _page(request, township)


@routes.post("/faq/{entry_id:[0-9]{1,9}}")
async def decide(request: web.Request) -> web.StreamResponse:
    township = await _township(request)
    if township is None:
        return await message_page(request, N_("No such page."), 404)
    decision = (await request.post()).get("decision")
    if decision not in ("approve", "reject"):
        return await _page(request, township, refusal=GONE, status=400)
    viewer = request[VIEWER]
    try:
        await faq.review(
            int(request.match_info["entry_id"]), township.id, viewer.person.account,
            approve=decision == "approve",
        )
    except faq.ReviewRefused:
        return await _page(request, township, refusal=GONE, status=409)
    log.info("back office: account %s %sd FAQ proposal %s", viewer.person.account.id,
             decision, request.match_info["entry_id"])
    return await _page(request, township, done=APPROVED if decision == "approve" else REJECTED)
