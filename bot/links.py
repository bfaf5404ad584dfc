"""The bot's deep links, built in one place.

Telegram carries a payload of up to 64 characters of [A-Za-z0-9_-] in `?start=` (the private
chat opens with `/start <payload>`) and in `?startgroup=` (the person picks a group, the bot
is added to it and the group gets `/start <payload>`). Payloads in use: `inv-…` (an
invitation), `v-<village id>` (a villager's registration with the village chosen),
`bind-<unit id>` and `digest` (in a group: bind it to a unit, or as the digest chat).
"""

from __future__ import annotations

import re

_PAYLOAD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _checked(payload: str) -> str:
    if not _PAYLOAD.match(payload):
        raise ValueError(f"not a deep-link payload: {payload!r}")
    return payload


def start_link(bot_username: str, payload: str) -> str:
    """Opens the private chat with the bot, which receives `/start <payload>`."""
    return f"https://t.me/{bot_username}?start={_checked(payload)}"


def group_link(bot_username: str, payload: str) -> str:
    """Adds the bot to a group the person picks, which receives `/start <payload>`."""
    return f"https://t.me/{bot_username}?startgroup={_checked(payload)}"
