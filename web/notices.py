"""The public notices page (通知公告 / 村务公开): what the township posted, to whom, and how far
each went; the poster and administrators may withdraw one from here as from the bot.

Posting stays in the bot (`/notice`), where the poster sees the notice as villagers will.
The page shows numbers only, never which villagers a notice reached (`bot.public_notices`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiohttp import web

from bot import public_notices
from bot.i18n import N_
from bot.models import Audience, Grid, Notice, Official, Township, Village
from bot.notices import local_time
from bot.public_notices import KIND_LABELS, Outcome
from web.views import VIEWER, Viewer, message_page, reader_language, render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
#: How many notices the page lists, newest first.
PAGE_MAX = 100
WITHDRAWN = N_(
    "Withdrawn: villagers who open it see it was withdrawn; what was not sent yet is not sent."
)
NOT_YOURS = N_("Only its poster or an administrator may withdraw this notice.")


@dataclass
class Row:
    notice: Notice
    kind: str
    audience: str
    poster: str
    posted: str
    outcome: Outcome
    withdrawn: str | None
    may_withdraw: bool


def _viewer(request: web.Request) -> Viewer:
    viewer = request[VIEWER]
    assert isinstance(viewer, Viewer)
    return viewer


async def _audience(notice: Notice, language: str, township: Township) -> str:
    if notice.audience == Audience.VILLAGES:
        villages = await Village.filter(id__in=list(notice.village_ids)).order_by("position", "id")
        return "、".join(village.display_name(language) for village in villages)
    if notice.audience == Audience.GRID and notice.grid_id is not None:  # type: ignore[attr-defined]
        grid = await Grid.get(id=notice.grid_id).prefetch_related("village")  # type: ignore[attr-defined]
        return f"{grid.village.display_name(language)} · {grid.display_name(language)}"
    return township.display_name(language)


async def _rows(viewer: Viewer, township: Township, language: str) -> list[Row]:
    notices = await Notice.filter(township_id=township.id).order_by(
        "-created_at", "-id"
    ).limit(PAGE_MAX)
    posters = {
        official.account_id: official  # type: ignore[attr-defined]
        for official in await Official.filter(
            township_id=township.id, account_id__in=[n.poster_id for n in notices]  # type: ignore[attr-defined]
        ).order_by("-id")
    }
    rows = []
    for notice in notices:
        poster = posters.get(notice.poster_id)  # type: ignore[attr-defined]
        rows.append(Row(
            notice=notice,
            kind=KIND_LABELS[notice.kind],
            audience=await _audience(notice, language, township),
            poster=poster.display_name(language) if poster is not None else "-",
            posted=local_time(notice.created_at, township.timezone),
            outcome=await public_notices.outcome(notice.id),
            withdrawn=local_time(notice.withdrawn_at, township.timezone)
            if notice.withdrawn_at else None,
            may_withdraw=notice.withdrawn_at is None
            and public_notices.may_withdraw(notice, viewer.person),
        ))
    return rows


async def _page(
    request: web.Request, *, done: str | None = None, refusal: str | None = None,
    status: int = 200,
) -> web.Response:
    viewer = _viewer(request)
    language = await reader_language(request)
    township = await Township.get(id=viewer.officials[0].township_id)  # type: ignore[attr-defined]
    return await render(request, "notices.html", {
        "township": township.display_name(language),
        "rows": await _rows(viewer, township, language),
        "done": done, "refusal": refusal,
    }, status=status)


@routes.get("/notices")
async def notices_page(request: web.Request) -> web.StreamResponse:
    return await _page(request)


@routes.post("/notices/{notice_id:[0-9]{1,9}}/withdraw")
async def withdraw(request: web.Request) -> web.StreamResponse:
    viewer = _viewer(request)
    notice = await Notice.get_or_none(
        id=int(request.match_info["notice_id"]),
        township_id=viewer.officials[0].township_id,  # type: ignore[attr-defined]
    )
    if notice is None:
        return await message_page(request, N_("No such page."), 404)
    if not await public_notices.withdraw(notice, viewer.person):
        if public_notices.may_withdraw(notice, viewer.person):  # withdrawn a moment ago
            return await _page(request, done=WITHDRAWN)
        return await _page(request, refusal=NOT_YOURS, status=403)
    log.info("back office: account %s withdrew notice %s", viewer.person.account.id, notice.id)
    return await _page(request, done=WITHDRAWN)
