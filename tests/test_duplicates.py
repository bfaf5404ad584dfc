"""Every update delivered twice, to two processes: the short form of `bench.duplicates`.

Two `villagebot run` processes on one database (with Redis when the suite has one), each
update POSTed to both at once; afterwards not one case, event, photo, answer, card or notice
may be doubled.
"""

from __future__ import annotations

from pathlib import Path

from conftest import TEST_REDIS_URL

from bench.common import table
from bench.duplicates import run

#: Three villagers: 3 x (13 + 3) + 1 updates, each delivered twice.
UPDATES = 49
VILLAGERS = 3


async def test_every_update_twice_to_two_processes_doubles_nothing(
    database_url: str, tmp_path: Path
) -> None:
    outcome = await run(database_url, TEST_REDIS_URL or None, UPDATES, folder=tmp_path)
    store = "Redis" if TEST_REDIS_URL else "no Redis"
    print("\n" + table(
        f"Every update delivered twice, to two processes ({store})", ["", "figure"],
        outcome.rows(),
    ))
    assert outcome.updates == UPDATES and outcome.posts >= 2 * outcome.updates
    assert outcome.cases_found == outcome.cases_expected == VILLAGERS
    assert not any(outcome.duplicates.values()), outcome.examples
