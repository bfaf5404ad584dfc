"""Each update handled once: the claim every delivery makes before it is handled.

Against the real conversation store: the database (two claims racing on the primary key), and
Redis too when the test environment gives one. Two processes are two claimants here; the
end-to-end form, two webhook processes receiving every update twice, is in test_duplicates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from conftest import TEST_REDIS_URL

from bench.common import QueryLog
from bot import storage
from bot.models import Conversation
from bot.storage import DONE, HANDLED_FOR, HANDLED_PREFIX, HANDLING, LEASE, HandledUpdates

STORES = ["database", "redis"] if TEST_REDIS_URL else ["database"]


@pytest.fixture(params=STORES)
async def handled(request: pytest.FixtureRequest, database: str) -> AsyncIterator[HandledUpdates]:
    if request.param == "database":
        handled = HandledUpdates(None, bot_id=42)
        yield handled
        await handled.close()
        return
    from redis.asyncio import Redis

    redis = Redis.from_url(TEST_REDIS_URL)
    await redis.flushdb()
    handled = HandledUpdates(redis, bot_id=42)
    yield handled
    await handled.close()
    await redis.aclose()


async def test_a_second_delivery_waits_until_the_first_is_done_then_does_nothing(
    handled: HandledUpdates,
) -> None:
    assert await handled.claim(7) is True
    second = asyncio.create_task(handled.claim(7))
    await asyncio.sleep(0.3)
    assert not second.done()  # the first is still being handled: the second waits
    await handled.done(7)
    assert await asyncio.wait_for(second, 5) is False
    assert await handled.claim(7) is False  # and any later delivery too


async def test_racing_claims_give_the_update_to_exactly_one(handled: HandledUpdates) -> None:
    async def deliver() -> bool:
        mine = await handled.claim(8)
        if mine:
            await asyncio.sleep(0.1)  # handling
            await handled.done(8)
        return mine

    results = await asyncio.wait_for(asyncio.gather(*(deliver() for _ in range(10))), 10)
    assert results.count(True) == 1


async def test_an_update_whose_handling_failed_is_handled_again(handled: HandledUpdates) -> None:
    assert await handled.claim(9) is True
    waiting = asyncio.create_task(handled.claim(9))
    await asyncio.sleep(0.2)
    await handled.release(9)
    # The delivery that was waiting takes it up rather than dropping it.
    assert await asyncio.wait_for(waiting, 5) is True


async def test_a_claim_left_by_a_process_that_died_is_taken_over(
    handled: HandledUpdates, request: pytest.FixtureRequest
) -> None:
    key = "handled:42:10"
    if "redis" in request.node.callspec.id:
        redis = handled._redis
        await redis.set(key, HANDLING, ex=1)  # its claim runs out as LEASE's would
        assert await asyncio.wait_for(handled.claim(10), 5) is True
        return
    died_at = datetime.now(UTC) - LEASE - timedelta(seconds=1)
    await Conversation.create(key=key, state=HANDLING, data={}, updated_at=died_at)
    await Conversation.filter(key=key).update(updated_at=died_at)
    assert await asyncio.wait_for(handled.claim(10), 5) is True
    # Taken over once: a second delivery now waits for this one.
    assert not await _claims_at_once(handled, 10)


async def _claims_at_once(handled: HandledUpdates, update_id: int) -> bool:
    try:
        return await asyncio.wait_for(handled.claim(update_id), 0.3)
    except TimeoutError:
        return False


async def test_updates_remembered_before_claims_count_as_handled(database: str) -> None:
    """A row written by the version before claims (no state) is an update handled."""
    await Conversation.create(key="handled:42:11", state=None, data={})
    assert await HandledUpdates(None, bot_id=42).claim(11) is False


async def test_a_long_handling_keeps_its_claim(
    handled: HandledUpdates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renewed while it works: a handling that outlasts the lease is not taken over."""
    # Six seconds: leases of one, two and four were seen to run out on this two-core machine
    # busy with the rest of the suite, their renewal (every third of the lease) held up
    # behind the other tests for longer than the lease had left.
    monkeypatch.setattr(storage, "LEASE", timedelta(seconds=6))

    async def first() -> None:
        async with handled.once(12) as mine:
            assert mine
            await asyncio.sleep(10)  # over one and a half leases long

    handling = asyncio.create_task(first())
    await asyncio.sleep(0.2)
    second = await asyncio.wait_for(handled.claim(12), 20)
    assert handling.done(), "the second delivery waited for the first to finish"
    assert second is False


async def test_the_claims_held_at_once_are_renewed_together(
    handled: HandledUpdates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One renewal for every claim the process holds, not one an update: three updates
    handled at once are renewed by one statement (one pipeline with Redis), each still held."""
    monkeypatch.setattr(storage, "LEASE", timedelta(seconds=1.5))
    held = asyncio.Event()

    async def handle(update_id: int) -> None:
        async with handled.once(update_id) as mine:
            assert mine
            await held.wait()

    with QueryLog() as queries:
        handling = [asyncio.create_task(handle(n)) for n in (21, 22, 23)]
        await asyncio.sleep(2)  # four renewals' time (every half second)
        renewals = [
            f"{sql} {values}" for sql, values in queries.statements
            if sql.startswith("UPDATE") and "handled:42:2" in f"{sql} {values}"
        ]
        held.set()
        await asyncio.gather(*handling)
    if handled._redis is None:
        assert renewals, "no renewal in four of its intervals"
        # (The first may come before the last claim is made, on a busy machine.)
        assert any(all(f"handled:42:{n}" in r for n in (21, 22, 23)) for r in renewals), renewals
        # Handled long after their claims were made, none was taken over meanwhile.
        rows = await Conversation.filter(key__startswith="handled:42:2").values_list(
            "key", "state"
        )
        assert sorted(rows) == [(f"handled:42:{n}", DONE) for n in (21, 22, 23)]
    for n in (21, 22, 23):  # each done once: a later delivery does nothing
        assert await handled.claim(n) is False


async def test_handled_updates_are_forgotten_after_handled_for(handled: HandledUpdates) -> None:
    """The store stays small: an update handled more than `HANDLED_FOR` ago is forgotten (at a
    process's first handled update, then once in `FORGET_EVERY`; Redis lets each expire), a
    younger one is still known, and a person's conversation is never touched."""
    now = datetime.now(UTC)
    prefix = f"{HANDLED_PREFIX}42:"
    if handled._redis is None:
        for key, age in ((f"{prefix}1", HANDLED_FOR + timedelta(hours=1)),
                         (f"{prefix}before:1001:1001:", HANDLED_FOR + timedelta(hours=1)),
                         (f"{prefix}2", HANDLED_FOR - timedelta(hours=1)),
                         ("42:1001:1001", HANDLED_FOR * 3)):
            await Conversation.create(key=key, state=DONE, data={})
            # (`updated_at` is set on save; an UPDATE writes what it is given.)
            await Conversation.filter(key=key).update(updated_at=now - age)
    assert await handled.claim(3) is True
    await handled.done(3)
    if handled._redis is None:
        kept = set(await Conversation.all().values_list("key", flat=True))
        assert kept == {f"{prefix}2", f"{prefix}3", "42:1001:1001"}
        assert await handled.claim(2) is False, "a day not yet passed: still handled"
    else:
        expires_in = await handled._redis.ttl(f"{prefix}3")
        assert HANDLED_FOR.total_seconds() - 60 < expires_in <= HANDLED_FOR.total_seconds()
    assert await handled.claim(3) is False
