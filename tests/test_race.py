"""Item 3 of the reliability suite: the officials of a unit tap Accept on the same card at once,
through two separate processes on one database: exactly one assignee per case.

The shortened form of `python -m bench.race` (see its docstring for the scenario): 30
officials, 3 cases, on SQLite, or on PostgreSQL with Redis when the suite runs there.
"""

from __future__ import annotations

from pathlib import Path

from conftest import TEST_DATABASE_URL, TEST_REDIS_URL

from bench.race import race

OFFICIALS = 20
CASES = 2


async def test_officials_racing_accept_through_two_processes_leave_one_assignee_a_case(
    database_url: str, tmp_path: Path
) -> None:
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    outcome = await race(
        database_url, officials=OFFICIALS, cases=CASES, folder=tmp_path,
        redis_url=TEST_REDIS_URL or None,
    )
    store = "PostgreSQL + Redis" if TEST_DATABASE_URL else "SQLite"
    print("\n" + outcome.table(f"race: {OFFICIALS} officials, two processes, {store}"))
    print(outcome.summary())

    assert len(outcome.found) == CASES
    # Every tap reached the processes, half through each, and each POST was answered 200.
    assert dict(outcome.taps_per_instance) == {1: OFFICIALS * CASES // 2,
                                              2: OFFICIALS * CASES // 2}
    for found in outcome.found:
        assert found.taps == OFFICIALS
        assert found.rejected_posts == 0, found
        # One assignee, one accept event in the history.
        assert (found.assignees, found.accept_events) == (1, 1), found
        # Every tap answered: the winner's confirmation, each of the others an alert naming
        # the winner.
        assert found.unanswered == 0, found
        assert (found.confirmed, found.told_who) == (1, OFFICIALS - 1), found
        # The group's card names one acceptor and has no buttons left; only the winner got
        # a private copy to work on.
        assert (found.acceptors_on_card, found.buttons_left) == (1, 0), found
        assert found.private_copies == 1, found
    assert outcome.right
