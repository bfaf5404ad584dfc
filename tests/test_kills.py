"""kill -9 of a worker at random moments while villagers report: the short form of
`python -m bench.kills` (the scenario and its checks are there)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator

import pytest
from conftest import TEST_REDIS_URL
from test_casework import _resolving
from test_report import LI, _conversation, _li

from bench import kills
from bot.models import Case, CaseEvent, CaseStatus
from bot.sandbox import Sandbox
from bot.storage import HandledUpdates, Write

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="--workers forks: no fork here")

REPORTS = 10
KILLS = 3


async def test_no_report_or_notice_is_lost_when_workers_are_killed(database_url: str) -> None:
    """The seed is printed first; VILLAGEBOT_TEST_SEED=N runs that one again."""
    seed = int(os.environ.get("VILLAGEBOT_TEST_SEED") or random.SystemRandom().randrange(10**6))
    outcome = await kills.run(database_url, reports=REPORTS, kills=KILLS, seed=seed,
                              redis_url=TEST_REDIS_URL or None)
    assert outcome.kills == KILLS, outcome.summary()
    assert outcome.redeliveries > 0, outcome.summary()  # the kills did cut updates short
    assert len(outcome.confirmed) == REPORTS, outcome.summary()
    assert outcome.cases_found == REPORTS, outcome.summary()
    assert outcome.problems == [], outcome.problems


@contextlib.asynccontextmanager
async def _cut_short(sandbox: Sandbox) -> AsyncIterator[None]:
    """The next update, handled inside, is left as a process killed after answering it would
    leave it: neither its conversation nor its mark stored (they are stored together at its
    end), its claim run out. Then Telegram sends it again."""
    assert sandbox.app is not None
    handled: HandledUpdates = sandbox.app.dispatcher["handled"]
    victim = sandbox.emulator.last_update_id + 1
    done, cut = handled.done, asyncio.Event()

    async def killed_before_done(update_id: int, write: Write | None = None) -> None:
        if update_id != victim:
            return await done(update_id, write)
        await handled.release(update_id)
        cut.set()

    handled.done = killed_before_done  # type: ignore[method-assign]
    try:
        yield
        await asyncio.wait_for(cut.wait(), 10)  # the update may still be at work
    finally:
        handled.done = done  # type: ignore[method-assign]
    sandbox.emulator.redeliver(victim)


async def test_an_update_cut_short_is_handled_again_from_its_own_step(
    sandbox: Sandbox,
) -> None:
    """Killed after moving the draft on, before the update was remembered: its next delivery
    lands in the step it was sent to, not in the next one, and counts once."""
    li = await _li(sandbox)
    await li.press("📝 我要反映问题")
    await li.expect("请点一个类别")
    await li.tap("环境卫生")
    await li.expect("环境卫生：具体是哪一类？")
    async with _cut_short(sandbox):  # the tap
        await li.tap("卫生清理")
        await li.expect("请描述问题")
    await li.expect("请描述问题")  # asked again, not "no longer active"
    async with _cut_short(sandbox):  # the description
        await li.send("路灯不亮")
        await li.expect("照片能帮助工作人员了解情况")
    await li.expect("照片能帮助工作人员了解情况")  # not "only photos can be added here"
    async with _cut_short(sandbox):  # the photo
        await li.user.send_photo()
        await li.expect("已收到照片 1 张")
    await li.expect("已收到照片 1 张")  # the same photo once, not twice
    state, data = await _conversation(sandbox, LI)
    assert state == "Report:photos"
    assert (data["report"]["description"], len(data["report"]["photos"])) == ("路灯不亮", 1)
    texts = [m.get("text") or "" for m in sandbox.emulator.bot_messages(LI)]
    assert not [t for t in texts if "已收到照片 2 张" in t or "这里只能添加照片" in t], texts


async def test_the_answer_that_resolved_a_case_cut_short_is_answered_as_done(
    sandbox: Sandbox,
) -> None:
    """Killed after the case was resolved, before the reply: the note, sent again, is told
    "resolved" again, and the case is resolved once."""
    case, lin = await _resolving(sandbox)
    await lin.user.send_photo()
    await lin.expect("照片：1 张")
    async with _cut_short(sandbox):  # the note
        await lin.send("垃圾已清运")
        first = await lin.expect("已办结。村民会收到您的现场照片")
    again = await lin.expect("已办结。村民会收到您的现场照片")
    assert again["message_id"] > first["message_id"]
    texts = [m.get("text") or "" for m in sandbox.emulator.bot_messages(9101)]
    assert not [t for t in texts if "事项已有新变化" in t], texts
    assert (await Case.get(id=case.id)).status == CaseStatus.RESOLVED
    assert await CaseEvent.filter(case_id=case.id, action="resolve").count() == 1
