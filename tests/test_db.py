"""The schema comes from migrations and works on the configured database."""

from __future__ import annotations

from bot import db
from bot.models import Township


async def test_migrations_create_the_schema_and_run_once(database: str) -> None:
    township = await Township.create(code="BL", name="坂里乡")
    assert (await Township.get(code="BL")).id == township.id
    assert await db.run_migrations() == []
