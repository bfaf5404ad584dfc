"""Village posters in the back office: the page listing the villages the reader may print, and
each poster's PDF and PNG to download.

Who may: the township's administrators (every village) and the officials of a unit of that
village (`bot.posters.printable_villages`); anyone else is told there is no such page, as for
an address guessed. The poster's QR code needs the bot's username, asked from Telegram with the
bot's token: a back office served without BOT_TOKEN says so instead.
"""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import AiogramError
from aiohttp import web

from bot.i18n import N_
from bot.models import Township
from bot.posters import printable_villages, village_poster
from web.views import VIEWER, Viewer, message_page, reader_language, render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
#: The bot whose username the posters' links name; None in a back office without BOT_TOKEN.
BOT = web.AppKey("poster_bot", Bot)
NO_BOT = N_("Posters need the bot's username: this back office runs without BOT_TOKEN.")
NO_TELEGRAM = N_("Telegram did not answer with the bot's username. Try again in a minute.")
TYPES = {"pdf": "application/pdf", "png": "image/png"}


def _viewer(request: web.Request) -> Viewer:
    viewer = request[VIEWER]
    assert isinstance(viewer, Viewer)  # `guard` lets no one else past
    return viewer


@routes.get("/posters")
async def posters_page(request: web.Request) -> web.StreamResponse:
    language = await reader_language(request)
    villages = await printable_villages(_viewer(request).officials)
    townships = {t.id: t for t in await Township.filter(id__in={v.township_id for v in villages})}  # type: ignore[attr-defined]
    return await render(request, "posters.html", {
        "villages": [
            (v, v.display_name(language),
             townships[v.township_id].display_name(language))  # type: ignore[attr-defined]
            for v in villages
        ],
        "several": len(townships) > 1,
    })


@routes.get(r"/posters/{village_id:\d{1,10}}.{kind:pdf|png}")
async def poster_file(request: web.Request) -> web.StreamResponse:
    viewer = _viewer(request)
    village_id = int(request.match_info["village_id"])
    village = next(
        (v for v in await printable_villages(viewer.officials) if v.id == village_id), None
    )
    if village is None:
        log.warning("back office: account %s may not print the poster of village %s",
                    viewer.person.account.id, village_id)
        return await message_page(request, N_("No such page."), 404)
    bot = request.app.get(BOT)
    if bot is None:
        return await message_page(request, NO_BOT, 503)
    try:
        username = (await bot.me()).username or ""
    except AiogramError as error:
        log.warning("back office: no username from Telegram for a poster: %s", error)
        return await message_page(request, NO_TELEGRAM, 503)
    printed = await village_poster(village, username)
    kind = request.match_info["kind"]
    township = await Township.get(id=village.township_id)  # type: ignore[attr-defined]
    return web.Response(
        body=printed.pdf if kind == "pdf" else printed.pngs[0], content_type=TYPES[kind],
        headers={"Content-Disposition":
                 f'attachment; filename="poster-{township.code}-{village.code}.{kind}"'},
    )
