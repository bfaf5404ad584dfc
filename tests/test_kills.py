"""kill -9 of a worker at random moments while villagers report: the short form of
`python -m bench.kills` (the scenario and its checks are there)."""

from __future__ import annotations

import os
import random

import pytest
from conftest import TEST_REDIS_URL
from test_casework import _resolving
from test_report import LI, _conversation, _li

from bench import kills
from bot.models import Case, CaseEvent, CaseStatus, Conversation
from bot.sandbox import Sandbox
from bot.storage import HANDLED_PREFIX

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


async def _cut_short(sandbox: Sandbox, update_id: int) -> None:
    """Leave `update_id` as a process killed after handling it, before remembering it, would:
    then have Telegram send it again."""
    assert sandbox.app is not None
    key = f"{HANDLED_PREFIX}{sandbox.app.bot.id}:{update_id}"
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            assert await redis.delete(key) == 1
    else:
        assert await Conversation.filter(key=key).delete() == 1
    sandbox.emulator.redeliver(update_id)


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
    await li.tap("卫生清理")
    await li.expect("请描述问题")
    await _cut_short(sandbox, sandbox.emulator.last_update_id)  # the tap
    await li.expect("请描述问题")  # asked again, not "no longer active"
    await li.send("路灯不亮")
    await li.expect("照片能帮助工作人员了解情况")
    await _cut_short(sandbox, sandbox.emulator.last_update_id)  # the description
    await li.expect("照片能帮助工作人员了解情况")  # not "only photos can be added here"
    await li.user.send_photo()
    await li.expect("已收到照片 1 张")
    await _cut_short(sandbox, sandbox.emulator.last_update_id)  # the photo
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
    await lin.send("垃圾已清运")
    first = await lin.expect("已办结。村民会收到您的现场照片")
    await _cut_short(sandbox, sandbox.emulator.last_update_id)  # the note
    again = await lin.expect("已办结。村民会收到您的现场照片")
    assert again["message_id"] > first["message_id"]
    texts = [m.get("text") or "" for m in sandbox.emulator.bot_messages(9101)]
    assert not [t for t in texts if "事项已有新变化" in t], texts
    assert (await Case.get(id=case.id)).status == CaseStatus.RESOLVED
    assert await CaseEvent.filter(case_id=case.id, action="resolve").count() == 1
