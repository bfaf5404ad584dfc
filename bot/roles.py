"""How an official's role and units read to a person."""

from __future__ import annotations

from bot.i18n import _
from bot.models import Official, Role


def role_name(role: Role) -> str:
    names = {
        Role.MEMBER: _("member"),
        Role.LEADER: _("unit leader"),
        Role.DISPATCHER: _("dispatcher"),
        Role.ADMIN: _("administrator"),
    }
    return names[role]


async def describe_official(official: Official, language: str) -> str:
    """"dispatcher of 坂里乡调度中心, 综治中心": the role and the units, in `language`."""
    units = await official.units.filter(active=True).order_by("id")
    unit_names = ", ".join(unit.display_name(language) for unit in units)
    if not unit_names:
        return role_name(official.role)
    return _("{role} of {units}").format(role=role_name(official.role), units=unit_names)
