"""Links the bot writes into its messages, built in one place: Telegram deep links into the
bot, and a case's place on a map.

A payload travels after `?start=` (a private chat with the bot) or `?startgroup=` (Telegram
asks which group to add the bot to, then sends `/start <payload>` there). Telegram allows up
to 64 characters of [A-Za-z0-9_-]; anything else is refused here rather than cut by Telegram.
Payloads in use: `inv-…` (an invitation), `v-<village id>` (a villager's registration with the
village chosen), `bind-<unit id>` and `digest` (in a group: bind it to a unit, or as the
digest chat).
"""

from __future__ import annotations

import re

PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: `/start bind-<unit id>` in a group: bind that group to the unit (bot.handlers.groups).
BIND_PREFIX = "bind-"
#: `/start digest` in a group: the township's digest chat (bot.handlers.groups).
DIGEST_PAYLOAD = "digest"


def _checked(payload: str) -> str:
    if not PAYLOAD.fullmatch(payload):
        raise ValueError(f"a deep-link payload is 1-64 characters of A-Za-z0-9_-: {payload!r}")
    return payload


def start_link(bot_username: str, payload: str) -> str:
    """Opens the private chat with the bot and sends `/start <payload>` there."""
    return f"https://t.me/{bot_username}?start={_checked(payload)}"


def group_link(bot_username: str, payload: str) -> str:
    """Lets the person pick a group, adds the bot to it and sends `/start <payload>` there."""
    return f"https://t.me/{bot_username}?startgroup={_checked(payload)}"


def bind_payload(unit_id: int) -> str:
    """The payload that binds a group to the unit with this id."""
    return f"{BIND_PREFIX}{unit_id}"


#: A pin on Amap (高德地图), the map townships' phones have; it opens the app where installed.
#: `coordinate=wgs84`: Telegram's locations are GPS coordinates, not the GCJ-02 of Chinese maps.
MAP_LINK = (
    "https://uri.amap.com/marker?position={longitude:.6f},{latitude:.6f}"
    "&coordinate=wgs84&callnative=1"
)


def map_link(latitude: float, longitude: float) -> str:
    """A link that shows the place on a map, for a card that has no room for a pin."""
    return MAP_LINK.format(latitude=latitude, longitude=longitude)
