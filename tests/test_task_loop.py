"""A township task's case in the rest of the loop: the task's photo with each unit's card,
progress notes for the giver, decline and assign, reminders and the overdue flag, and the
dispatchers reviewing the result when the giver has no account. There is no villager: what a
villager would hear goes to whoever gave the task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from backoffice import official

from bot import cases, tasks
from bot.emulator import buttons, said
from bot.models import (
    Case,
    CaseEvent,
    CaseStatus,
    Delivery,
    Official,
    Unit,
    Villager,
)
from bot.sandbox import Sandbox
from scheduler.policy import Policy
from scheduler.supervision import sweep

ZHENGDA_GROUP, BANLI_GROUP = -1001000000101, -1001000000102
SU, ZHENG, LIN, YANG = 9002, 9201, 9101, 9401  # dispatcher; Zhengda's leader and member; Banli's
AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # Friday 17:00 in the township
DAYTIME = Policy(quiet_hours=None)


async def _unit_ids(*codes: str) -> list[int]:
    return [(await Unit.get(code=code)).id for code in codes]


async def _photo(sandbox: Sandbox) -> str:
    """A file id Telegram knows: a photo someone sent the bot."""
    camera = sandbox.emulator.user(3999, "相机")
    return str((await camera.send_photo())["photo"][-1]["file_id"])


async def _texts(case: Case) -> list[tuple[int, str]]:
    """Every text the outbox holds for the case: (chat, text)."""
    rows = await Delivery.filter(case_id=case.id, kind="text").order_by("id")
    return [(row.chat_id, str(row.payload.get("text", ""))) for row in rows]


async def test_the_tasks_photo_comes_with_each_card_and_a_progress_note_reaches_its_giver(
    sandbox: Sandbox,
) -> None:
    sandbox.emulator.group(ZHENGDA_GROUP, "正达村两委")
    sandbox.emulator.group(BANLI_GROUP, "坂里村两委")
    su = await official(sandbox, "su-jinqiao", SU)
    await official(sandbox, "zheng-guohua", ZHENG)  # bound, yet not told of his own note
    photo = await _photo(sandbox)
    task = await tasks.create(
        await Official.get(code="su-jinqiao"), title="清理河道垃圾", description="两岸都要清",
        photos=[photo], targets=await _unit_ids("zhengda-committee", "banli-committee"),
        deadline=cases.now() + timedelta(days=3),
    )
    made = {
        c.unit.code: c for c in await Case.filter(task_id=task.id).prefetch_related("unit")
    }
    for chat, case in ((ZHENGDA_GROUP, made["zhengda-committee"]),
                       (BANLI_GROUP, made["banli-committee"])):
        card = await sandbox.emulator.wait_for(chat, case.number)
        assert "照片：1 张" in said(card)
        assert card["photo"][-1]["file_id"] == photo, "the card is the task's photo's caption"

    zhengda = made["zhengda-committee"]
    leader = await Official.get(code="zheng-guohua")
    await cases.accept(zhengda.id, leader)
    await cases.add_note(zhengda.id, leader, "东岸已清理一半", public=True)
    note = await su.expect("东岸已清理一半")
    assert note["text"] == (
        f"💬 任务“清理河道垃圾”，正达村两委（事项 {zhengda.number}）：东岸已清理一半"
    )
    await cases.add_note(zhengda.id, leader, "西岸要借挖掘机", public=False)
    texts = await _texts(zhengda)
    assert [chat for chat, said in texts if "东岸已清理一半" in said] == [SU], (
        "the giver, and nobody else: the leader wrote it, and there is no villager"
    )
    assert not [chat for chat, said in texts if "西岸要借挖掘机" in said], "internal stays in"
    assert not await Villager.exists()
    await cases.add_note(zhengda.id, leader, "西岸也开始清了", public=True)
    await su.expect("西岸也开始清了")
    to_su = sandbox.emulator.bot_messages(SU)
    assert not any("西岸要借挖掘机" in (m.get("text") or "") for m in to_su)


async def test_a_task_declined_by_a_grid_goes_up_and_is_assigned_there(sandbox: Sandbox) -> None:
    committee = sandbox.emulator.group(ZHENGDA_GROUP, "正达村两委")
    su = await official(sandbox, "su-jinqiao", SU)
    lin = await official(sandbox, "lin-xiuying", LIN)  # Zhengda grid 1, and its committee
    deadline = cases.now() + timedelta(days=3)
    task = await tasks.create(
        await Official.get(code="su-jinqiao"), title="入户走访独居老人",
        targets=await _unit_ids("zhengda-g1"), deadline=deadline,
    )
    case = await Case.get(task_id=task.id)
    await lin.expect(case.number)  # the grid has no group: its member's own chat

    await cases.decline(case.id, await Official.get(code="lin-xiuying"), "要村里统一安排车辆")
    card = await sandbox.emulator.wait_for(committee.chat_id, case.number)
    assert "📌 中心工作任务" in card["text"]
    assert "↩️ 正达村第一网格退回：要村里统一安排车辆" in card["text"]
    passed = await su.expect(f"事项 {case.number} 已转交正达村两委")
    assert passed["text"].startswith("↪️ 任务“入户走访独居老人”")
    moved = await Case.get(id=case.id).prefetch_related("unit")
    assert (moved.status, moved.unit.code) == (CaseStatus.NEW, "zhengda-committee")

    # Not back to the one who declined it; the dispatcher names the committee's leader, by
    # the task's deadline.
    dispatcher = await Official.get(code="su-jinqiao")
    with pytest.raises(cases.CaseRefused):
        await cases.assign(case.id, dispatcher, await Official.get(code="lin-xiuying"), deadline)
    zheng = await official(sandbox, "zheng-guohua", ZHENG)
    leader = await Official.get(code="zheng-guohua")
    await cases.assign(case.id, dispatcher, leader, deadline)
    assigned = await zheng.expect("苏进侨将这个事项指派给您")
    assert "📌 中心工作任务" in assigned["text"] and "入户走访独居老人" in assigned["text"]
    taken = await Case.get(id=case.id)
    assert (taken.status, taken.assignee_id, taken.resolve_by) == (  # type: ignore[attr-defined]
        CaseStatus.ACCEPTED, leader.id, deadline
    )
    actions = await CaseEvent.filter(case_id=case.id).order_by("id").values_list(
        "action", flat=True
    )
    assert actions[-2:] == ["decline", "assign"]
    assert not await Villager.exists()
    assert (await tasks.progress(task)).accepted == 1


async def test_the_dispatchers_review_the_result_when_the_giver_has_no_account(
    sandbox: Sandbox,
) -> None:
    sandbox.emulator.group(BANLI_GROUP, "坂里村两委")
    su = await official(sandbox, "su-jinqiao", SU)
    await official(sandbox, "yang-minghui", YANG)  # Banli committee's leader
    giver = await Official.get(code="ye-zhiqiang")  # Banli's township team, never bound
    assert giver.account_id is None  # type: ignore[attr-defined]
    task = await tasks.create(
        giver, title="排查危房", targets=await _unit_ids("banli-committee"),
        deadline=cases.now() + timedelta(days=2),
    )
    case = await Case.get(task_id=task.id)
    await sandbox.emulator.wait_for(BANLI_GROUP, case.number)
    yang = await Official.get(code="yang-minghui")
    await cases.accept(case.id, yang)
    evidence = await _photo(sandbox)
    await cases.resolve(case.id, yang, "三处危房已上报", [evidence])

    review = await su.expect(f"已办结事项 {case.number}")
    assert "排查危房" in said(review) and "三处危房已上报" in said(review)
    assert buttons(review) == ["👍 验收通过", "🔁 要求重办"]
    assert review["photo"][-1]["file_id"] == evidence, "the evidence, the review its caption"
    answer = await sandbox.emulator.wait_answer(await su.tap("👍 验收通过"))
    assert answer["text"] == f"事项 {case.number} 已验收通过。"
    assert (await Case.get(id=case.id)).status == CaseStatus.CLOSED
    reviewers = {chat for chat, said in await _texts(case) if "已办结事项" in said}
    assert reviewers == {SU}, "the township's dispatcher with an account, in the giver's place"


async def test_a_tasks_case_is_reminded_and_flagged_overdue(township: None) -> None:
    """The sweep treats a task's case as any case being handled: reminders to its assignee
    before the task's deadline, the overdue flag once it passed, one level up."""
    deadline = AT + timedelta(days=3)
    task = await tasks.create(
        await Official.get(code="su-jinqiao"), title="清理河道垃圾",
        targets=await _unit_ids("zhengda-committee"), deadline=deadline, at=AT,
    )
    case = await Case.get(task_id=task.id)
    leader = await Official.get(code="zheng-guohua")
    accepted_at = AT + timedelta(hours=1)
    await cases.accept(case.id, leader, at=accepted_at)
    assert (await Case.get(id=case.id)).resolve_by == deadline, "the task's deadline"
    await sweep(accepted_at, DAYTIME)

    late = deadline - timedelta(hours=2)
    await sweep(late - timedelta(minutes=1), DAYTIME)
    report = await sweep(late, DAYTIME)
    assert report.reminders == 1
    reminders = await Delivery.filter(key__startswith=f"remind:{case.id}:r:").order_by("id")
    assert {r.chat_id for r in reminders} == {leader.account_id}  # type: ignore[attr-defined]
    assert "⏰ 提醒：您承办的事项" in reminders[-1].payload["text"]
    assert "任务：清理河道垃圾" in reminders[-1].payload["text"]
    assert await CaseEvent.filter(case_id=case.id, action="overdue").count() == 0

    before = (await Delivery.all().order_by("-id").first()).id  # type: ignore[union-attr]
    assert (await sweep(deadline, DAYTIME)).overdue == 1
    flagged = await Case.get(id=case.id)
    assert (flagged.status, flagged.overdue_level) == (CaseStatus.ACCEPTED, 1)
    told = await Delivery.filter(id__gt=before, kind="text").values_list("chat_id", flat=True)
    assert leader.account_id in told and len(set(told)) > 1, "the leader and the level above"  # type: ignore[attr-defined]
    assert (await tasks.progress(task, at=deadline + timedelta(minutes=1))).overdue == 1
    # A resolved task's case is never closed by the sweep: its giver reviews it.
    await cases.resolve(case.id, leader, "已清理", ["F1"], at=deadline + timedelta(hours=1))
    await sweep(deadline + timedelta(days=30), DAYTIME)
    assert (await Case.get(id=case.id)).status == CaseStatus.RESOLVED
