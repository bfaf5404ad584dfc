"""The Map page: the cases with a pin that the official may see, filtered as the list is,
coloured by status and clustered where dense (Leaflet and Leaflet.markercluster, vendored).

Pins carry no personal data (`web.pins`); the tile server is WEB_TILES, and without it (the
default: a township picks its own, OpenStreetMap's is neither meant for this nor reachable
everywhere) the pins show on a plain background.
"""

from __future__ import annotations

from aiohttp import web

from web import pins, words
from web.views import SETTINGS, Listing, render

routes = web.RouteTableDef()
#: The newest this many pins at most: past it the page says how many it leaves out.
PINS_MAX = 2000


@routes.get("/map")
async def case_map(request: web.Request) -> web.StreamResponse:
    listing = await Listing.of(request)
    query = listing.query.filter(latitude__isnull=False, longitude__isnull=False)
    count = await query.count()
    found = await query.order_by("-id").limit(PINS_MAX).prefetch_related("category")
    directory = listing.directory
    return await render(request, "map.html", {
        "filters": listing.filters, "count": count, "shown": len(found),
        "map": pins.map_data(request.app[SETTINGS], found, listing.language, cluster=True),
        "statuses": words.STATUS_NAMES, "colours": pins.STATUS_COLOURS,
        "villages": directory.villages, "units": directory.units,
        "categories": directory.categories, "kinds": words.KIND_NAMES,
    })
