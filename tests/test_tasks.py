"""Township tasks (中心工作): one case per target unit in the same loop, no villager; the
creator reviews the evidence, accepts the result or sends it back."""

from __future__ import annotations

from datetime import timedelta

import pytest
from backoffice import official

from bot import cases, tasks
from bot.cases import CaseRefused
from bot.emulator import buttons, said
from bot.models import Case, CaseEvent, CaseStatus, Category, Official, Task, Unit
from bot.sandbox import Sandbox
from bot.tasks import TaskRefusal, TaskRefused
from scheduler.policy import Policy
from scheduler.supervision import sweep

ZHENGDA_GROUP = -1001000000101  # 正达村两委
SU, ZHENG, YE = 9002, 9201, 9301  # the dispatcher, Zhengda's committee leader, Banli's team leader


async def _committees(*villages: str) -> list[int]:
    return [(await Unit.get(code=f"{village}-committee")).id for village in villages]


async def test_a_task_goes_to_each_unit_and_its_creator_reviews_the_result(
    sandbox: Sandbox,
) -> None:
    for chat, title in ((ZHENGDA_GROUP, "正达村两委"), (ZHENGDA_GROUP - 1, "坂里村两委"),
                        (ZHENGDA_GROUP - 2, "高层村两委")):
        sandbox.emulator.group(chat, title)
    su = await official(sandbox, "su-jinqiao", SU)
    zheng = await official(sandbox, "zheng-guohua", ZHENG)
    creator = await Official.get(code="su-jinqiao")
    deadline = cases.now() + timedelta(days=3)
    task = await tasks.create(
        creator, title="清理河道垃圾", description="迎检前清理本村河道两岸垃圾",
        targets=await _committees("zhengda", "banli", "gaoceng"), deadline=deadline,
        key="draft-1",
    )
    again = await tasks.create(
        creator, title="清理河道垃圾", targets=await _committees("zhengda"), deadline=deadline,
        key="draft-1",
    )
    assert again.id == task.id, "the same draft makes one task"
    made = await Case.filter(task_id=task.id).order_by("id").prefetch_related("unit", "category")
    assert [case.unit.code for case in made] == [
        "zhengda-committee", "banli-committee", "gaoceng-committee"
    ]
    assert all(case.reporter_id is None and case.category.task for case in made)  # type: ignore[attr-defined]
    assert all(case.resolve_by == deadline for case in made)
    # The task's category is the bot's own: never offered to villagers, never in the file.
    assert await Category.filter(task=True).count() == 1

    card = await sandbox.emulator.wait_for(ZHENGDA_GROUP, made[0].number)
    assert "📌 中心工作任务" in card["text"] and "任务：清理河道垃圾" in card["text"]
    assert "派单人：苏进侨" in card["text"] and "反映人" not in card["text"]
    assert buttons(card)[0] == "✅ 受理"

    await zheng.user.tap(card, "✅ 受理", chat=ZHENGDA_GROUP)
    await zheng.expect(made[0].number)
    assert (await Case.get(id=made[0].id)).status == CaseStatus.ACCEPTED

    # Resolved with evidence: the creator gets it with the review buttons.
    leader = await Official.get(code="zheng-guohua")
    photo = (await zheng.user.send_photo())["photo"][-1]["file_id"]
    await cases.resolve(made[0].id, leader, "两岸垃圾已清理", [photo])
    review = await su.expect(f"已办结事项 {made[0].number}")
    assert "清理河道垃圾" in said(review) and "两岸垃圾已清理" in said(review)
    assert buttons(review) == ["👍 验收通过", "🔁 要求重办"]

    # Sent back with a reason: the same official has it again.
    await su.tap("🔁 要求重办")
    await su.expect(f"为什么要求事项 {made[0].number} 重办")
    await su.send("东岸还有一段没清")
    await su.expect(f"事项 {made[0].number} 已要求正达村两委重办")
    back = await Case.get(id=made[0].id)
    assert (back.status, back.reopen_count, back.assignee_id) == (  # type: ignore[attr-defined]
        CaseStatus.ACCEPTED, 1, leader.id
    )
    assert back.resolve_by == deadline, "the task's deadline still stands"
    await zheng.expect("东岸还有一段没清")

    await cases.resolve(made[0].id, leader, "东岸也清理完了", [photo])
    review = await su.expect("东岸也清理完了")
    accepted = await su.tap("👍 验收通过")
    answer = await sandbox.emulator.wait_answer(accepted)
    assert answer["text"] == f"事项 {made[0].number} 已验收通过。"
    closed = await Case.get(id=made[0].id)
    assert closed.status == CaseStatus.CLOSED and closed.rating is None
    await zheng.expect(f"已验收通过事项 {made[0].number}")

    # Another tap on the old review buttons changes nothing.
    late = await su.user.tap_data(review, f"c1:{made[0].id}:confirm")
    assert (await sandbox.emulator.wait_answer(late))["text"]
    assert (await Case.get(id=made[0].id)).version == closed.version

    # Progress: one done (sent back once), two waiting; one overdue once its time passed.
    progress = await tasks.progress(task)
    assert (progress.total, progress.done, progress.waiting, progress.sent_back) == (3, 1, 2, 1)
    later = await tasks.progress(task, at=deadline + timedelta(hours=1))
    assert later.overdue == 2


async def test_only_the_creator_or_a_dispatcher_reviews_and_tasks_never_close_alone(
    township: None,
) -> None:
    creator = await Official.get(code="su-jinqiao")
    leader = await Official.get(code="zheng-guohua")
    start = cases.now()
    task = await tasks.create(
        creator, title="入户走访", targets=await _committees("zhengda"),
        deadline=start + timedelta(days=1), at=start,
    )
    case = await Case.get(task_id=task.id)
    await cases.accept(case.id, leader, at=start)
    await cases.resolve(case.id, leader, "已走访", ["photo-1"], at=start)
    with pytest.raises(CaseRefused):
        await cases.confirm(case.id, leader)
    with pytest.raises(CaseRefused):
        await cases.send_back(case.id, leader, "再看看")
    # A villager's resolved case closes by itself after a while; a task's waits for review.
    await sweep(start + timedelta(days=30), Policy(quiet_hours=None))
    assert (await Case.get(id=case.id)).status == CaseStatus.RESOLVED
    assert not await CaseEvent.filter(case_id=case.id, action="close").exists()


async def test_who_may_give_a_task_and_to_whom(township: None) -> None:
    dispatcher = await Official.get(code="su-jinqiao")
    banli_leader = await Official.get(code="ye-zhiqiang")  # leader of Banli's township team
    member = await Official.get(code="lin-xiuying")
    every = [unit.code for unit in await tasks.scope.task_targets(dispatcher)]
    assert "zhengda-committee" in every and "houfang-g2" in every
    assert "dispatch" not in every and "minzheng" not in every, "units of a village only"
    theirs = [unit.code for unit in await tasks.scope.task_targets(banli_leader)]
    assert theirs == ["banli-committee", "banli-g1", "banli-g2"]
    deadline = cases.now() + timedelta(days=1)

    async def refused(by: Official, **given: object) -> TaskRefusal:
        arguments = {"title": "任务", "targets": await _committees("banli"), "deadline": deadline}
        with pytest.raises(TaskRefused) as caught:
            await tasks.create(by, **{**arguments, **given})  # type: ignore[arg-type]
        return caught.value.reason

    assert await refused(member) == TaskRefusal.NOT_ALLOWED
    assert await refused(banli_leader, targets=await _committees("zhengda")) == (
        TaskRefusal.BAD_TARGET
    )
    assert await refused(dispatcher, targets=[]) == TaskRefusal.NO_TARGETS
    assert await refused(dispatcher, title=" \u200b ") == TaskRefusal.NEEDS_TITLE
    assert await refused(dispatcher, title="长" * 101) == TaskRefusal.TOO_LONG
    assert await refused(dispatcher, deadline=cases.now() - timedelta(hours=1)) == (
        TaskRefusal.PAST_DEADLINE
    )
    assert await Task.all().count() == 0 and await Case.all().count() == 0


def test_a_tasks_case_is_late_once_the_tasks_deadline_passed_whatever_time_it_got_since() -> None:
    at = cases.now()
    fresh = (at + timedelta(hours=4), at + timedelta(days=3))  # an escalation's new times
    assert tasks.past_deadline(CaseStatus.NEW, *fresh, at - timedelta(hours=1), at)
    assert tasks.past_deadline(CaseStatus.ACCEPTED, *fresh, at - timedelta(hours=1), at)
    assert not tasks.past_deadline(CaseStatus.NEW, *fresh, at + timedelta(hours=1), at)
    assert not tasks.past_deadline(CaseStatus.NEW, *fresh, None, at), "a villager's case"
    assert not tasks.past_deadline(CaseStatus.RESOLVED, *fresh, at - timedelta(days=9), at)
    assert tasks.past_deadline(CaseStatus.NEW, at - timedelta(seconds=1), fresh[1], None, at)
