"""Reliability suite, item 4: 5% of all Bot API calls fail at random during a run of reports.

The shortened form of `python -m bench.faults`: the real `villagebot run` process against the
emulator, villagers reporting through the whole flow and officials accepting and resolving,
people asking again when an answer is late. Nothing lost, nobody unanswered, one case per
report, every duplicate the documented one (a send whose answer a dropped connection lost).
"""

from __future__ import annotations

import time

from conftest import TEST_REDIS_URL

from bench.faults import measure, report

CASES = 20
RATE = 0.05
SEED = 14


async def test_five_percent_of_calls_failing_lose_nothing(database_url: str) -> None:
    began = time.monotonic()
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    outcome = await measure(
        database_url, CASES, RATE, SEED, at_once=CASES, redis_url=TEST_REDIS_URL
    )
    print("\n" + report(outcome, RATE, SEED))
    assert sum(outcome.injected.values()) > 0, "faults were injected"
    assert not outcome.unanswered, outcome.unanswered
    assert outcome.reports == outcome.cases_in_database == CASES
    assert not outcome.reporters_with_other_than_one
    assert outcome.accepted > 0 and outcome.resolved > 0
    assert not outcome.failed and outcome.pending == 0
    assert not outcome.notices_missing and outcome.notices > 2 * CASES
    assert not outcome.unexplained, outcome.unexplained
    print(f"{time.monotonic() - began:.0f} s")
