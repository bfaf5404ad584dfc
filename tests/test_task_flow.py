"""Township tasks (中心工作) in the chat: /newtask gives one, /tasks follows it; through the
real bot and the Bot API emulator, with a clock the test moves past the deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import TEST_REDIS_URL

from bot import cases, scope
from bot.emulator import buttons, said
from bot.models import Account, Case, CaseEvent, CaseStatus, Official, Task, Unit, UnitKind
from bot.sandbox import Phone, Sandbox
from scheduler.policy import Policy
from scheduler.supervision import sweep

GROUPS = {
    "zhengda": (-1001000000101, "正达村两委"),
    "banli": (-1001000000102, "坂里村两委"),
    "gaoceng": (-1001000000103, "高层村两委"),
}
SU, ZHENG, YE, LIN = 9002, 9201, 9301, 9101
SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    """The bot's now: the wall clock, moved on by the test."""

    def __init__(self) -> None:
        self.ahead = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.ahead


@pytest.fixture
async def clocked(database_url: str) -> AsyncIterator[tuple[Sandbox, Clock]]:
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    clock = Clock()
    async with Sandbox(database_url, redis_url=TEST_REDIS_URL or None, clock=clock) as running:
        yield running, clock


async def _official(
    sandbox: Sandbox, code: str, telegram_id: int, language: str = "zh-hans"
) -> Phone:
    found = await Official.get(code=code)
    found.account = await Account.create(
        id=telegram_id, first_name=found.name, language=language, language_chosen=True
    )
    await found.save()
    phone = sandbox.phone(telegram_id, found.name, language=language)
    await phone.send("/help")
    await phone.expect("/start")
    return phone


async def _alert(sandbox: Sandbox, query: str) -> str:
    answer = await sandbox.emulator.wait_answer(query)
    assert answer.get("show_alert")
    return str(answer["text"])


async def test_a_dispatcher_gives_a_task_and_follows_each_village(
    clocked: tuple[Sandbox, Clock],
) -> None:
    sandbox, clock = clocked
    for chat, title in GROUPS.values():
        sandbox.emulator.group(chat, title)
    su = await _official(sandbox, "su-jinqiao", SU)
    zheng = await _official(sandbox, "zheng-guohua", ZHENG)

    await su.send("/newtask")
    await su.expect("新的中心工作任务")
    await su.send("  清理河道垃圾 ")
    await su.expect("要做什么")
    await su.send("迎检前清理本村河道两岸垃圾")
    await su.expect("最多 5 张照片")
    await su.user.send_photo()
    await su.expect("已添加照片（1/5）")
    await su.tap("✅ 完成")
    offered = await su.expect("派给哪些单位")
    assert buttons(offered) == [
        "正达村两委", "坂里村两委", "高层村两委", "后坊村两委", "全部村", "➕ 更多单位",
        "✅ 完成", "✖️ 取消",
    ], "village committees only, until more are asked for"
    assert await _alert(sandbox, await su.user.tap(offered, "✅ 完成")) == "请至少点选一个单位。"

    await su.user.tap(offered, "➕ 更多单位")
    more = await sandbox.emulator.wait_for(SU, lambda m: "正达村第一网格" in buttons(m))
    assert buttons(more)[:4] == ["正达村两委", "坂里村两委", "高层村两委", "后坊村两委"]
    assert "正达村第三网格" in buttons(more) and "➖ 只看村两委" in buttons(more)
    await su.user.tap(more, "全部村")
    every = await sandbox.emulator.wait_for(SU, lambda m: "✅ 全部村" in buttons(m))
    assert [b for b in buttons(every) if b.startswith("✅ ") and "两委" in b] == [
        "✅ 正达村两委", "✅ 坂里村两委", "✅ 高层村两委", "✅ 后坊村两委"
    ]
    await su.user.tap(every, "✅ 全部村")
    await su.user.tap(every, "➖ 只看村两委")
    for name in ("正达村两委", "坂里村两委", "高层村两委"):
        await sandbox.emulator.wait_for(
            SU, lambda m, name=name: name in buttons(m) and "➕ 更多单位" in buttons(m)
        )
        await su.user.tap(offered, name)
    chosen = await sandbox.emulator.wait_for(SU, lambda m: "✅ 高层村两委" in buttons(m))
    assert buttons(chosen)[:5] == [
        "✅ 正达村两委", "✅ 坂里村两委", "✅ 高层村两委", "后坊村两委", "全部村"
    ]
    await su.user.tap(chosen, "✅ 完成")
    await su.expect("办结期限？")
    await su.tap("3天")
    summary = await su.expect("请核对任务")
    today = clock().astimezone(SHANGHAI).date()
    deadline = datetime.combine(today + timedelta(days=3), time(18), tzinfo=SHANGHAI)
    for line in (
        "标题：清理河道垃圾", "描述：迎检前清理本村河道两岸垃圾", "照片：1 张",
        "单位：正达村两委、坂里村两委、高层村两委",
        f"办结期限：{deadline:%Y-%m-%d} 18:00", "将生成 3 个事项，每个单位一个。",
    ):
        assert line in summary["text"]
    await su.tap("✅ 派发")
    given = await su.expect("任务已派发")
    assert "已生成 3 个事项" in given["text"] and "/tasks" in given["text"]
    again = await su.user.tap_data(summary, "x1:create:0")
    assert await _alert(sandbox, again) == "这个按钮已失效。"
    task = await Task.get()
    assert await Task.all().count() == 1 and task.deadline == deadline
    assert len(task.photos) == 1 and task.title == "清理河道垃圾"

    made = {
        case.unit.code.removesuffix("-committee"): case
        for case in await Case.filter(task_id=task.id).prefetch_related("unit")
    }
    assert sorted(made) == ["banli", "gaoceng", "zhengda"]
    cards = {}
    for village, (chat, _title) in GROUPS.items():
        cards[village] = await sandbox.emulator.wait_for(chat, made[village].number)
        assert "任务：清理河道垃圾" in said(cards[village])

    # Zhengda accepts and resolves; su sends it back with a reason, and its leader hears it.
    zhengda = made["zhengda"]
    await zheng.user.tap(cards["zhengda"], "✅ 受理", chat=GROUPS["zhengda"][0])
    await zheng.expect(zhengda.number)
    photo = (await zheng.user.send_photo())["photo"][-1]["file_id"]
    await cases.resolve(zhengda.id, await Official.get(code="zheng-guohua"), "已清理", [photo])
    await su.expect(f"已办结事项 {zhengda.number}")
    await su.tap("🔁 要求重办")
    await su.expect(f"为什么要求事项 {zhengda.number} 重办")
    await su.send("东岸还有一段没清")
    await su.expect(f"事项 {zhengda.number} 已要求正达村两委重办")
    await zheng.expect("东岸还有一段没清")

    # Banli accepts and resolves; su accepts the result.
    banli = made["banli"]
    yang = await Official.get(code="yang-minghui")
    await cases.accept(banli.id, yang)
    await cases.resolve(banli.id, yang, "坂里段已清理", [photo])
    await su.expect(f"已办结事项 {banli.number}")
    accepted = await sandbox.emulator.wait_answer(await su.tap("👍 验收通过"))
    assert accepted["text"] == f"事项 {banli.number} 已验收通过。"
    assert (await Case.get(id=banli.id)).status == CaseStatus.CLOSED

    await su.send("/tasks")
    listed = await su.expect("中心工作任务，最新的在前")
    assert "1. 清理河道垃圾 · 期限 " + f"{deadline:%Y-%m-%d} 18:00" in listed["text"]
    assert (
        "共 3 个单位 · 已受理 2 · 待验收 0 · 已验收通过 1 · 逾期 0 · 要求重办 1"
        in listed["text"]
    )
    assert "待您验收的结果：0 个" in listed["text"]
    await su.expect("您没有待办的事项。")  # and then, as for every official, their open cases

    # Gaoceng never accepts: past its time, supervision escalates it up its chain (each step
    # with a fresh time to accept), until at the top its supervisors are told; then it is late.
    gaoceng = made["gaoceng"]
    moment = deadline.astimezone(UTC) + timedelta(hours=1)
    for _step in range(5):
        clock.ahead = moment - datetime.now(UTC)
        await sweep(clock(), Policy(quiet_hours=None))
        gaoceng = await Case.get(id=gaoceng.id)
        if gaoceng.accept_by is not None and gaoceng.accept_by < clock():
            break
        assert gaoceng.accept_by is not None
        moment = gaoceng.accept_by + timedelta(hours=1)
    supervised = await CaseEvent.filter(
        case_id=gaoceng.id, action__in=["escalate", "unaccepted", "overdue", "accept"]
    ).order_by("id").values_list("action", flat=True)
    assert supervised == ["escalate", "escalate", "unaccepted"]
    await su.send("/tasks")
    late = await su.expect("中心工作任务，最新的在前")
    assert "共 3 个单位 · 已受理 2 · 待验收 0 · 已验收通过 1 · 逾期 2 · 要求重办 1" in (
        late["text"]
    )
    await su.tap("1")
    progress = await su.expect("中心工作任务：清理河道垃圾")
    lines = progress["text"].splitlines()
    assert f"正达村两委 · {zhengda.number} · 办理中 · 逾期 · 要求重办 1 次" in lines
    assert f"坂里村两委 · {banli.number} · 已结案" in lines
    assert f"高层村 · 坂里乡调度中心 · {gaoceng.number} · 待受理 · 逾期" in lines, (
        "escalated to the top, still named by its village"
    )
    assert buttons(progress) == [zhengda.number, banli.number, gaoceng.number]
    await su.tap(zhengda.number)
    timeline = await su.expect("东岸还有一段没清")  # the reason it was sent back, in its history
    assert timeline["text"].startswith(f"事项 {zhengda.number}")

    # Only its creator and the township's dispatchers follow a task.
    zheng_opens = await zheng.user.tap_data(zheng.last(), f"x2:{task.id}")
    assert await _alert(sandbox, zheng_opens) == "这个按钮已失效。"


async def test_who_may_give_a_task_and_what_they_are_offered(sandbox: Sandbox) -> None:
    lin = await _official(sandbox, "lin-xiuying", LIN)
    await lin.send("/newtask")
    await lin.expect("只有调度员或单位负责人可以派发中心工作任务。")
    await lin.send("/tasks")
    await lin.expect("您没有待办的事项。")
    assert "中心工作任务" not in lin.last()["text"]

    ye = await _official(sandbox, "ye-zhiqiang", YE, language="en")
    await ye.send("/help")
    assert "/newtask" in (await ye.expect("/tasks"))["text"]
    await ye.send("/newtask")
    await ye.expect("New township task.")
    await ye.send("Sweep the square")
    await ye.tap("Skip")
    await ye.expect("Send up to 5 photos")
    await ye.tap("Skip")
    offered = await ye.expect("Which units get the task?")
    assert buttons(offered) == [
        "Banli Village Committee", "All villages", "➕ More units", "✅ Done", "✖️ Cancel"
    ]
    await ye.user.tap(offered, "➕ More units")
    more = await sandbox.emulator.wait_for(YE, lambda m: "➖ Fewer units" in buttons(m))
    assert buttons(more)[:3] == ["Banli Village Committee", "Banli Grid 1", "Banli Grid 2"]
    await ye.user.tap(more, "Banli Grid 2")
    await sandbox.emulator.wait_for(YE, lambda m: "✅ Banli Grid 2" in buttons(m))
    await ye.user.tap(more, "✅ Done")
    await ye.expect("By when?")

    await ye.send("next Friday")
    await ye.expect("I could not read that date.")
    await ye.send("2020-01-01")
    await ye.expect("The deadline must be in the future. Please send another date.")
    await ye.send("/cancel")
    await ye.expect("Cancelled. No task was given.")
    await ye.send("2099-01-01")
    await ye.expect("I did not understand that")
    assert await Task.all().count() == 0

    # A forged progress button opens nothing.
    forged = await ye.user.tap_data(offered, "x2:1")
    assert await _alert(sandbox, forged) == "This button is no longer active."


async def test_many_units_come_in_pages(sandbox: Sandbox) -> None:
    committee = await Unit.get(code="houfang-committee")
    for number in range(1, 11):
        await Unit.create(
            township_id=committee.township_id, code=f"houfang-x{number}",  # type: ignore[attr-defined]
            name=f"后坊村小组{number}", kind=UnitKind.GRID,
            village_id=committee.village_id, supervisor=committee,  # type: ignore[attr-defined]
        )
    offered = len(await scope.task_targets(await Official.get(code="su-jinqiao")))
    assert offered == 27
    su = await _official(sandbox, "su-jinqiao", SU)
    await su.send("/newtask")
    await su.send("入户走访")
    await su.tap("跳过")
    await su.expect("最多 5 张照片")
    await su.tap("跳过")
    targets = await su.expect("派给哪些单位")
    await su.user.tap(targets, "➕ 更多单位")
    first = await sandbox.emulator.wait_for(SU, lambda m: "下一页 ➡️" in buttons(m))
    units = [b for b in buttons(first) if b not in CONTROLS]
    assert len(units) == 20 and "⬅️ 上一页" not in buttons(first)
    await su.user.tap(first, "下一页 ➡️")
    second = await sandbox.emulator.wait_for(SU, lambda m: "⬅️ 上一页" in buttons(m))
    rest = [b for b in buttons(second) if b not in CONTROLS]
    assert len(rest) == 7 and not set(rest) & set(units) and "后坊村小组10" in rest
    await su.user.tap(second, "后坊村小组10")
    await sandbox.emulator.wait_for(SU, lambda m: "✅ 后坊村小组10" in buttons(m))
    await su.user.tap(second, "✅ 完成")
    await su.tap("7天")
    summary = await su.expect("请核对任务")
    assert "单位：后坊村小组10" in summary["text"] and "将生成 1 个事项" in summary["text"]
    await su.tap("✖️ 取消")
    await su.expect("已取消，没有派发任务。")
    assert await Task.all().count() == 0


CONTROLS = {
    "全部村", "✅ 全部村", "➕ 更多单位", "➖ 只看村两委", "下一页 ➡️", "⬅️ 上一页", "✅ 完成",
    "✖️ 取消",
}
