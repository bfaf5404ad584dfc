"""Cases as pins for the back office's maps (the Map page and a case's own pin).

A pin carries what a passer-by of the screen may read: the case number, its status and its
category, never the reporter nor the description (which may name people). The page embeds
the pins as JSON and `static/map.js` draws them with Leaflet, on the tiles of WEB_TILES when
it names a server, else on a plain background: the pins show either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.config import Settings
from bot.i18n import catalogs
from bot.models import Case, CaseStatus
from web import words

#: One colour per status, on the map and in its legend.
STATUS_COLOURS: dict[CaseStatus, str] = {
    CaseStatus.NEW: "#e67e22",  # orange: someone has to accept it
    CaseStatus.ACCEPTED: "#2471a3",  # blue: being handled
    CaseStatus.RESOLVED: "#27ae60",  # green: waiting for the villager
    CaseStatus.CLOSED: "#808b96",  # grey: done
}


def pin(case: Case, language: str) -> dict[str, Any]:
    """One case as a pin; `case.category` is loaded."""
    return {
        "number": case.number,
        "lat": case.latitude,
        "lng": case.longitude,
        "colour": STATUS_COLOURS[case.status],
        "status": catalogs().text(words.STATUS_NAMES[case.status], language),
        "category": case.category.display_name(language),
        "url": f"/cases/{case.number}",
    }


def map_data(
    settings: Settings, cases: Sequence[Case], language: str, *, cluster: bool
) -> dict[str, Any]:
    """What `static/map.js` reads: the tile server (none when empty), the pins, whether to
    cluster them."""
    return {
        "tiles": settings.web_tiles,
        "attribution": settings.web_tiles_attribution,
        "cluster": cluster,
        "pins": [pin(case, language) for case in cases
                 if case.latitude is not None and case.longitude is not None],
    }
