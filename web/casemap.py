"""The Map page: the cases with a pin that the official may see, filtered as the list is,
coloured by status and clustered where dense (Leaflet and Leaflet.markercluster, vendored).

Pins carry no personal data (`web.pins`); the tile server is WEB_TILES, and without it (the
default: a township picks its own, OpenStreetMap's is neither meant for this nor reachable
everywhere) the pins show on a plain background.
"""

from __future__ import annotations

from aiohttp import web

from bot import cases
from bot.models import Case, Category, Unit, Village
from web import pins, words
from web.views import SETTINGS, VIEWER, Filters, Viewer, language_of, render, seen_by

routes = web.RouteTableDef()
#: The newest this many pins at most: past it the page says how many it leaves out.
PINS_MAX = 2000


@routes.get("/map")
async def case_map(request: web.Request) -> web.StreamResponse:
    viewer = request[VIEWER]
    assert isinstance(viewer, Viewer)  # `views.guard` lets no one else past
    filters = Filters.parse(request.query)
    query = (
        Case.filter(await seen_by(viewer)).filter(filters.where(cases.now()))
        .filter(latitude__isnull=False, longitude__isnull=False)
    )
    count = await query.count()
    found = await query.order_by("-id").limit(PINS_MAX).prefetch_related("category")
    townships = sorted({o.township_id for o in viewer.officials})  # type: ignore[attr-defined]
    return await render(request, "map.html", {
        "filters": filters, "count": count, "shown": len(found),
        "map": pins.map_data(request.app[SETTINGS], found, await language_of(request),
                             cluster=True),
        "statuses": words.STATUS_NAMES, "colours": pins.STATUS_COLOURS,
        "villages": await Village.filter(township_id__in=townships, active=True).order_by(
            "position", "id"
        ),
        "units": await Unit.filter(township_id__in=townships, active=True).order_by("id"),
        "categories": await Category.filter(
            township_id__in=townships, active=True, parent_id__isnull=False
        ).order_by("position", "id"),
    })
