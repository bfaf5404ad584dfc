"""Township tasks (中心工作) in the figures: the week of tests/test_digest.py with a task given to
three village committees beside it. The villagers' figures stay those counted by hand there;
the task's are counted apart, per unit: one committee did it on time, one was sent back once
and then did it, one never accepted it. The digest names that one in its own section, the
red/grey list in its own line, and repeat-problem warnings never count tasks.

Times are UTC, in 2026-W47 (Monday 16 November 00:00 local is 15 Nov 16:00 UTC).
"""

from __future__ import annotations

from datetime import timedelta

from conftest import make_villager
from test_digest import NOW, POLICY, _at, _report, _week_of_cases

from bot import cases, tasks
from bot.models import Case, CaseStatus, Delivery, Official, Task, Township, Unit
from scheduler import digest, figures, ranking, repeats
from scheduler.digest import Week
from scheduler.figures import TaskLine
from scheduler.policy import Policy
from scheduler.ranking import Month
from scheduler.supervision import sweep

ZHENGDA, BANLI, GAOCENG = "正达村两委", "坂里村两委", "高层村两委"
OFFICIALS = ("苏进侨", "郑国华", "杨明辉", "戴永福", "林秀英")


async def _unit(code: str) -> int:
    return (await Unit.get(code=code)).id


async def _task_of_the_week() -> Task:
    """Given Monday 09:00 local, due Thursday 09:00 local (accept by Tuesday 09:00, the task
    category's 24 hours). 正达村两委 accepts on time, resolves, is sent back, resolves again and
    the result is accepted; 高层村两委 accepts, resolves, accepted; 坂里村两委 never accepts."""
    su = await Official.get(code="su-jinqiao")
    zheng = await Official.get(code="zheng-guohua")  # 正达村两委's leader
    dai = await Official.get(code="dai-yongfu")  # a member of 高层村两委
    task = await tasks.create(
        su, title="清理河道垃圾", description="迎检前清理本村河道两岸垃圾",
        targets=[await _unit(f"{village}-committee") for village in ("zhengda", "banli",
                                                                        "gaoceng")],
        deadline=_at(19, 1), at=_at(16, 1),
    )
    zhengda, banli, gaoceng = await Case.filter(task_id=task.id).order_by("id")
    await cases.accept(zhengda.id, zheng, at=_at(16, 2))
    await cases.resolve(zhengda.id, zheng, "已清理", ["P"], at=_at(17, 1))
    await cases.send_back(zhengda.id, su, "东岸还有一段没清", at=_at(17, 3))
    await cases.resolve(zhengda.id, zheng, "东岸也清理完了", ["P"], at=_at(18, 1))
    await cases.confirm(zhengda.id, su, at=_at(18, 2))
    await cases.accept(gaoceng.id, dai, at=_at(16, 3))
    await cases.resolve(gaoceng.id, dai, "已清理", ["P"], at=_at(17, 5))
    await cases.confirm(gaoceng.id, su, at=_at(17, 6))
    assert (await Case.get(id=banli.id)).status == CaseStatus.NEW
    return task


async def test_villagers_figures_leave_tasks_out_and_tasks_are_counted_apart(
    township: None,
) -> None:
    made = await _week_of_cases()
    task = await _task_of_the_week()
    place = await Township.get(code="BL")
    f = await digest.figures(place, Week.parse("2026-W47", place.timezone), NOW, POLICY,
                             "zh-hans")

    # test_digest's hand count, untouched by the task's three cases and their events.
    assert (f.received, f.accepted, f.resolved, f.closed) == (5, 3, 4, 2)
    assert f.completion_rate == 2 / 5 and f.on_time_acceptance == 2 / 3
    assert f.on_time_resolution == 3 / 4 and f.reopen_rate == 1 / 4
    assert f.median_to_accept == timedelta(hours=1)
    assert f.overdue_count == 3
    assert [number for number, _ in f.overdue] == [made[k].number for k in "CDF"]
    assert {line.name for line in f.units} == {"正达村第一网格", "坂里村第一网格"}
    assert [line.name for line in f.by_category] == ["卫生清理"]
    assert f.categories == [("卫生清理", 5)]
    by_village = {line.name: line.received for line in f.villages}
    assert (by_village["正达村"], by_village["坂里村"], by_village["高层村"]) == (4, 1, 0)

    assert f.tasks.total == TaskLine(
        "坂里乡", given=3, accepted=2, accepted_on_time=2, resolved=3, confirmed=2,
        sent_back=1, late=1, overdue=1, waiting=1,
    )
    assert f.tasks.units == [
        TaskLine(ZHENGDA, given=1, accepted=1, accepted_on_time=1, resolved=2, confirmed=1,
                 sent_back=1),
        TaskLine(BANLI, given=1, late=1, overdue=1, waiting=1),
        TaskLine(GAOCENG, given=1, accepted=1, accepted_on_time=1, resolved=1, confirmed=1),
    ]
    assert [line.name for line in f.tasks.lagging()] == [BANLI]
    # `progress`, the creator's view of the same task, agrees.
    progress = await tasks.progress(task, at=NOW)
    assert (progress.done, progress.overdue, progress.sent_back) == (2, 1, 1)

    # The week before knew nothing of the task; a unit narrows to its own line.
    before = await figures.tasks(place, _at(9, 0), _at(15, 16), now=NOW, language="zh-hans")
    assert (before.total.given, before.total.overdue) == (0, 1)  # overdue is as of now
    banli = await figures.tasks(place, _at(15, 16), _at(22, 16), now=NOW, language="zh-hans",
                                unit=await _unit("banli-committee"))
    assert [line.name for line in banli.units] == [BANLI] and banli.total.given == 1


async def test_the_digest_has_a_section_of_its_own_naming_the_unit_that_ignored_the_task(
    township: None,
) -> None:
    await _week_of_cases()
    await _task_of_the_week()
    place = await Township.get(code="BL")
    week = Week.parse("2026-W47", place.timezone)
    body = digest.render(await digest.figures(place, week, NOW, POLICY, "zh-hans"), "zh-hans")
    villagers, _, section = body.partition("📌 中心工作任务")
    assert "新收 5 件" in villagers and ZHENGDA not in villagers and BANLI not in villagers
    assert section, body
    assert ("派单 3 件 · 受理 2 件（按时 2 件） · 办结 3 件 · 验收通过 2 件 · 要求重办 1 件"
            in section)
    assert "当前逾期 1 件 · 待受理 1 件" in section
    assert f"· {BANLI}：逾期 1 件，待受理 1 件" in section
    assert ZHENGDA not in section and GAOCENG not in section
    for person in OFFICIALS:
        assert person not in body
    english = digest.render(await digest.figures(place, week, NOW, POLICY, "en"), "en")
    assert "📌 Township tasks:" in english and "Banli Village Committee: 1 overdue" in english

    # Another week: nothing given, but the case ignored since is still named, overdue now.
    other = await digest.figures(place, Week.parse("2026-W45", place.timezone), NOW, POLICY,
                                 "zh-hans")
    assert other.tasks.units == [TaskLine(BANLI, overdue=1, waiting=1)]
    assert f"· {BANLI}：逾期 1 件，待受理 1 件" in digest.render(other, "zh-hans")


async def test_the_red_grey_list_names_the_unit_that_let_a_task_pass_apart_from_the_score(
    township: None,
) -> None:
    month = Month.parse("2026-11", "Asia/Shanghai")
    li = await make_villager(1001)
    banli_villager = await make_villager(1002, village="banli")
    lin, wu = await Official.get(code="lin-xiuying"), await Official.get(code="wu-lijuan")
    for i in range(3):
        mine = await _report(li, _at(2 + i, 1))
        await cases.accept(mine.id, lin, at=_at(2 + i, 2))  # on time
        theirs = await _report(banli_villager, _at(2 + i, 1))
        await cases.accept(theirs.id, wu, at=_at(2 + i, 8))  # late
    # Three tasks 正达村两委 accepts on time: were they counted, it would be ranked (100).
    su, zheng = await Official.get(code="su-jinqiao"), await Official.get(code="zheng-guohua")
    for i in range(3):
        task = await tasks.create(
            su, title=f"任务{i}", targets=[await _unit("zhengda-committee")],
            deadline=_at(20, 1), at=_at(2 + i, 1),
        )
        given = await Case.get(task_id=task.id)
        await cases.accept(given.id, zheng, at=_at(2 + i, 2))
        await cases.resolve(given.id, zheng, "已完成", ["P"], at=_at(3 + i, 1))
        await cases.confirm(given.id, su, at=_at(3 + i, 2))
    # 正达村第一网格, top of the villagers' list, accepts a task late; 坂里村两委 ignores one.
    late = await tasks.create(
        su, title="入户走访", targets=[await _unit("zhengda-g1"), await _unit("banli-committee")],
        deadline=_at(25, 1), at=_at(10, 1),
    )
    grid_case, _ = await Case.filter(task_id=late.id).order_by("id")
    await cases.accept(grid_case.id, lin, at=_at(12, 1))  # it was to be accepted by 11 Nov
    place = await Township.get(code="BL")

    result = await ranking.rank(place, month, "zh-hans", now=_at(30, 15))
    assert [name for name, _ in result.ranked] == ["正达村第一网格", "坂里村第一网格"]
    assert [round(score) for _, score in result.ranked] == [100, 0]
    assert result.tasks_late == [(BANLI, 1), ("正达村第一网格", 1)]
    body = ranking.render(result, "zh-hans")
    red, _, rest = body.partition("⚪")
    grey, _, task_line = rest.partition("📌 中心工作任务逾期")
    assert "正达村第一网格 · 100" in red and "坂里村第一网格 · 0" in grey
    assert f"· {BANLI}：逾期 1 件" in task_line and "· 正达村第一网格：逾期 1 件" in task_line
    assert ZHENGDA not in body
    for person in OFFICIALS:
        assert person not in body

    # The list the channel gets carries the same line.
    assert await ranking.due(_at(30, 16) + timedelta(hours=8), POLICY) == 1  # 1 Dec 08:00
    [row] = await Delivery.filter(key="redgrey:BL:2026-11")
    assert BANLI in row.payload["text"].partition("📌")[2]


async def test_a_task_escalated_away_unaccepted_counts_against_the_unit_it_left(
    township: None,
) -> None:
    su = await Official.get(code="su-jinqiao")
    await tasks.create(su, title="入户走访", targets=[await _unit("banli-committee")],
                       deadline=_at(20, 1), at=_at(16, 1))
    await sweep(_at(17, 2), POLICY)  # the accept deadline passed: up to 坂里村组团联村
    [case] = await Case.all()
    assert case.unit_id == await _unit("banli-team")  # type: ignore[attr-defined]
    place = await Township.get(code="BL")
    counted = await figures.tasks(place, _at(15, 16), _at(22, 16), now=_at(17, 3),
                                  language="zh-hans")
    assert counted.units == [
        TaskLine(BANLI, given=1, late=1),
        TaskLine("坂里村组团联村", waiting=1),
    ]
    result = await ranking.rank(place, Month.parse("2026-11", "Asia/Shanghai"), "zh-hans",
                                now=_at(17, 3))
    assert result.tasks_late == [(BANLI, 1)]
    assert "📌" in ranking.render(result, "zh-hans")  # shown though nobody is ranked


async def test_repeat_problems_never_count_a_task_given_to_many_units_of_a_village(
    township: None,
) -> None:
    su = await Official.get(code="su-jinqiao")
    units = [await _unit(code) for code in ("zhengda-committee", "zhengda-g1", "zhengda-g2",
                                             "zhengda-g3")]
    await tasks.create(su, title="秸秆禁烧巡查", targets=units, deadline=_at(20, 1),
                       at=_at(16, 1))
    policy = Policy(quiet_hours=None, repeat_threshold=3)
    assert await Case.filter(task_id__isnull=False).count() == 4
    assert await repeats.warn(_at(16, 2), policy) == 0
    place = await Township.get(code="BL")
    assert await repeats.open_bursts(place.id, policy, _at(15, 16), _at(22, 16)) == []
    assert not await Delivery.filter(key__startswith="repeat:").exists()


def test_a_long_list_of_units_stays_within_one_message() -> None:
    lagging = [TaskLine(f"单位{i:02d}", given=1, overdue=1, waiting=1) for i in range(25)]
    total = TaskLine("坂里乡", given=25, overdue=25, waiting=25)
    f = figures.Figures("坂里乡", "2026-W47", tasks=figures.TaskFigures(total, lagging))
    body = digest.render(f, "en")
    assert "单位19: 1 overdue" in body and "单位20" not in body and "… and 5 more units" in body
    listed = ranking.Ranking("坂里乡", "2026-11", tasks_late=[(line.name, 1) for line in lagging])
    words = ranking.render(listed, "en")
    assert "单位19: 1 late" in words and "单位20" not in words and "… and 5 more units" in words
