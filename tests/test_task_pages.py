"""Township tasks (中心工作) in the back office over real HTTP: the list with its progress, a
task's page (for its creator and the dispatchers only), the form that gives one (once per
form, refused with the values kept), the review on the case's page, and the list's filter by
kind. The real sandbox serves the pages; the bot tells Telegram (the emulator)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import backoffice

from bot import cases, tasks
from bot.models import Case, CaseEvent, CaseStatus, Official, Task, Unit, UnitKind
from bot.sandbox import Sandbox

SU, ZHENG, LIN, YE = 9002, 9201, 9003, 9301  # dispatcher, Zhengda committee leader, member, Banli
TIMEZONE = ZoneInfo("Asia/Shanghai")  # the demo township's
COUNTS = ("total", "accepted", "to-review", "done", "overdue-count", "sent-back")


async def _committees(*villages: str) -> list[int]:
    return [(await Unit.get(code=f"{village}-committee")).id for village in villages]


def _counts(page: str) -> list[tuple[int, ...]]:
    """Each listed task's counts: total, accepted, waiting for review, done, overdue, sent back."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)[1:]
    return [
        tuple(int(re.search(rf'class="{name}">(\d+)<', row).group(1)) for name in COUNTS)  # type: ignore[union-attr]
        for row in rows
    ]


def _titles(page: str) -> list[str]:
    return re.findall(r'<a href="/tasks/\d+">([^<]+)</a>', page)


def _field(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, name
    return found.group(1)


def _local(moment: datetime) -> str:
    """A moment as the datetime-local field sends it, on the township's clock."""
    return moment.astimezone(TIMEZONE).strftime("%Y-%m-%dT%H:%M")


async def _task_with_progress() -> tuple[Task, Task]:
    """A task to three committees, one result waiting for review, one accepted, one sent
    back; and an older one whose deadline has passed with both its cases untouched."""
    su = await Official.get(code="su-jinqiao")
    now = cases.now()
    old = await tasks.create(
        su, title="秸秆禁烧巡查", targets=await _committees("zhengda", "houfang"),
        deadline=now - timedelta(hours=1), at=now - timedelta(days=3),
    )
    task = await tasks.create(
        su, title="清理河道垃圾", description="迎检前清理本村河道两岸垃圾",
        targets=await _committees("zhengda", "banli", "gaoceng"),
        deadline=now + timedelta(days=3),
    )
    waiting, done, back = await Case.filter(task_id=task.id).order_by("id")
    for case in (waiting, done, back):
        await cases.accept(case.id, su)
        await cases.resolve(case.id, su, "已清理", ["photo-1"])
    await cases.confirm(done.id, su)
    await cases.send_back(back.id, su, "东岸还有一段没清")
    return task, old


async def test_the_list_counts_each_tasks_progress_and_only_its_followers_see_it(
    office: Sandbox,
) -> None:
    su = await backoffice.official(office, "su-jinqiao", SU)
    lin = await backoffice.official(office, "lin-xiuying", LIN)
    ye = await backoffice.official(office, "ye-zhiqiang", YE)
    task, old = await _task_with_progress()
    async with await backoffice.signed_in(su) as browser:
        cases_page = await backoffice.page(browser, f"{office.web_url}/cases")
        assert '<a href="/tasks">中心工作任务</a>' in cases_page
        page = await backoffice.page(browser, f"{office.web_url}/tasks")
        assert _titles(page) == ["清理河道垃圾", "秸秆禁烧巡查"], "newest first"
        assert _counts(page) == [(3, 3, 1, 1, 0, 1), (2, 0, 0, 0, 2, 0)]
        assert "苏进侨" in page and 'href="/tasks/new"' in page
        deadline = task.deadline.astimezone(TIMEZONE).strftime("%Y-%m-%d %H:%M")
        assert deadline in page, "the deadline on the township's clock"

        page = await backoffice.page(browser, f"{office.web_url}/tasks/{task.id}")
        assert "中心工作任务：清理河道垃圾" in page and "迎检前清理本村河道两岸垃圾" in page
        numbers = [c.number for c in await Case.filter(task_id=task.id).order_by("id")]
        assert backoffice.listed(page) == numbers
        statuses = re.findall(r'<td class="status">([^<]+)</td>', page)
        assert statuses == ["已办结，待验收", "已结案", "办理中"]
        assert [int(n) for n in re.findall(r"<td>(\d+)</td>\s*</tr>", page)] == [0, 0, 1]
        page = await backoffice.page(browser, f"{office.web_url}/tasks/{old.id}")
        assert page.count("· 逾期") == 2

    # A member follows no task: no link, an empty list, and a task's page is not found.
    async with await backoffice.signed_in(lin) as browser:
        assert 'href="/tasks"' not in await backoffice.page(browser, f"{office.web_url}/cases")
        assert _titles(await backoffice.page(browser, f"{office.web_url}/tasks")) == []
        await backoffice.page(browser, f"{office.web_url}/tasks/{task.id}", 404)
        await backoffice.page(browser, f"{office.web_url}/tasks/{task.id + 100}", 404)
        await backoffice.page(browser, f"{office.web_url}/tasks/new", 403)
    # A leader may give tasks but follows only their own: not the dispatcher's.
    async with await backoffice.signed_in(ye) as browser:
        page = await backoffice.page(browser, f"{office.web_url}/tasks")
        assert _titles(page) == [] and 'href="/tasks/new"' in page
        await backoffice.page(browser, f"{office.web_url}/tasks/{task.id}", 404)


async def test_the_form_gives_a_task_once_and_a_refusal_keeps_what_was_typed(
    office: Sandbox,
) -> None:
    su = await backoffice.official(office, "su-jinqiao", SU)
    zhengda, banli, gaoceng = await _committees("zhengda", "banli", "gaoceng")
    deadline = (cases.now() + timedelta(days=2)).replace(second=0, microsecond=0)
    async with await backoffice.signed_in(su) as browser:
        url = f"{office.web_url}/tasks/new"
        form = await backoffice.page(browser, url)
        assert 'type="datetime-local"' in form and "正达村两委" in form and "坂里村第一网格" in form
        assert form.index("正达村") < form.index("坂里村"), "grouped by village, in order"

        # Refused: the deadline has passed. Nothing made; the form again as it was typed.
        typed = {
            "csrf": backoffice.csrf(form), "key": _field(form, "key"), "title": "清理河道垃圾",
            "description": "迎检前清理<两岸>垃圾",
            "deadline": _local(cases.now() - timedelta(hours=2)),
        }
        data = aiohttp.FormData([*typed.items(), ("target", str(zhengda)), ("target", str(banli))])
        async with browser.post(url, data=data) as response:
            page = await response.text()
            assert response.status == 409, page
        assert "办结期限必须晚于现在" in page
        assert 'value="清理河道垃圾"' in page and "迎检前清理&lt;两岸&gt;垃圾</textarea>" in page
        assert f'value="{typed["deadline"]}"' in page
        checked = re.findall(r'name="target" value="(\d+)"[^>]*checked', page)
        assert checked == [str(zhengda), str(banli)]
        assert _field(page, "key") == typed["key"], "the same form, the same key"
        assert await Task.all().count() == 0 and await Case.all().count() == 0

        # No unit ticked: refused too, in the page's language.
        async with browser.post(url, data={**typed, "deadline": _local(deadline)}) as response:
            assert response.status == 409 and "请至少点选一个单位" in await response.text()

        # Given: three units, one case each; pressed twice, one task.
        fields = {**typed, "deadline": _local(deadline)}
        targets = [("target", str(unit)) for unit in (zhengda, banli, gaoceng)]
        for _press in range(2):
            async with browser.post(
                url, data=aiohttp.FormData([*fields.items(), *targets]), allow_redirects=False
            ) as response:
                assert response.status == 303, await response.text()
                assert re.fullmatch(r"/tasks/\d+", response.headers["Location"])
                location = response.headers["Location"]
        task = await Task.get()
        assert location == f"/tasks/{task.id}"
        assert (task.title, task.description) == ("清理河道垃圾", "迎检前清理<两岸>垃圾")
        assert task.deadline == deadline, "the time typed is the township's"
        made = await Case.filter(task_id=task.id).order_by("id").prefetch_related("unit")
        assert [c.unit.id for c in made] == [zhengda, banli, gaoceng]
        page = await backoffice.page(browser, f"{office.web_url}{location}")
        assert backoffice.listed(page) == [c.number for c in made]

        # Without script, "every village committee" ticks them all on the server.
        form = await backoffice.page(browser, url)
        async with browser.post(url, data={
            "csrf": backoffice.csrf(form), "key": _field(form, "key"), "title": "入户走访",
            "deadline": _local(deadline), "committees": "1",
        }, allow_redirects=False) as response:
            assert response.status == 303
    second = await Task.get(title="入户走访")
    committees = await Unit.filter(kind=UnitKind.VILLAGE, active=True).count()
    assert await Case.filter(task_id=second.id).count() == committees == 4


async def test_the_task_is_reviewed_from_the_case_page(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", SU)
    zheng = await backoffice.official(office, "zheng-guohua", ZHENG)
    creator = await Official.get(code="su-jinqiao")
    leader = await Official.get(code="zheng-guohua")
    task = await tasks.create(
        creator, title="清理河道垃圾", targets=await _committees("zhengda"),
        deadline=cases.now() + timedelta(days=3),
    )
    case = await Case.get(task_id=task.id)
    await cases.accept(case.id, leader)
    await cases.resolve(case.id, leader, "两岸垃圾已清理", ["photo-1"])
    url = f"{office.web_url}/cases/{case.number}"

    # The unit's leader sees the case and its task, but reviews nothing.
    async with await backoffice.signed_in(zheng) as browser:
        page = await backoffice.page(browser, url)
        assert f'<a href="/tasks/{task.id}">清理河道垃圾</a>' in page
        assert "/confirm" not in page and "/sendback" not in page
        page = await backoffice.post(
            browser, url + "/confirm", {"csrf": backoffice.csrf(page)}, 409
        )
        assert "只有派单人或调度员可以验收" in page
    assert (await Case.get(id=case.id)).status == CaseStatus.RESOLVED

    async with await backoffice.signed_in(su) as browser:
        page = await backoffice.page(browser, url)
        assert "中心工作任务" in page and "已办结，待验收" in page and "派单人" in page
        assert "/confirm" in page and "/sendback" in page
        # Sent back without a reason: refused, nothing changes.
        page = await backoffice.post(
            browser, url + "/sendback", {"reason": " ", "csrf": backoffice.csrf(page)}, 409
        )
        assert "请写几句" in page
        assert (await Case.get(id=case.id)).status == CaseStatus.RESOLVED
        await backoffice.post(
            browser, url + "/sendback",
            {"reason": "东岸还有一段没清", "csrf": backoffice.csrf(page)}, 303, follow=False,
        )
        back = await Case.get(id=case.id)
        assert (back.status, back.reopen_count, back.assignee_id) == (  # type: ignore[attr-defined]
            CaseStatus.ACCEPTED, 1, leader.id
        )
        await zheng.expect("东岸还有一段没清")
        page = await backoffice.page(browser, url)
        history = page.split('<ol class="timeline">')[1]
        assert "派发任务" in history and "要求重办" in history and "东岸还有一段没清" in history
        assert "/confirm" not in page, "nothing to review while it is being handled"

        await cases.resolve(case.id, leader, "东岸也清理完了", ["photo-2"])
        page = await backoffice.page(browser, url)
        await backoffice.post(
            browser, url + "/confirm", {"csrf": backoffice.csrf(page)}, 303, follow=False
        )
        closed = await Case.get(id=case.id)
        assert closed.status == CaseStatus.CLOSED
        await zheng.expect(f"已验收通过事项 {case.number}")
        page = await backoffice.page(browser, url)
        assert "验收通过" in page.split("<ol class=\"timeline\">")[1], "the history names it"
        # Once closed, a second press changes nothing.
        page = await backoffice.post(
            browser, url + "/confirm", {"csrf": backoffice.csrf(page)}, 409
        )
        assert (await Case.get(id=case.id)).version == closed.version
    assert await CaseEvent.filter(case_id=case.id, action="confirm").count() == 1


async def test_the_case_list_filters_villagers_reports_from_township_tasks(
    office: Sandbox,
) -> None:
    su = await backoffice.official(office, "su-jinqiao", SU)
    villager, _handset = await backoffice.villager(office, 1001)
    report = await backoffice.report(villager, "村口垃圾桶满了", "litter")
    task = await tasks.create(
        await Official.get(code="su-jinqiao"), title="清理河道垃圾",
        targets=await _committees("zhengda", "banli"), deadline=cases.now() + timedelta(days=3),
    )
    given = [c.number for c in await Case.filter(task_id=task.id).order_by("-id")]
    async with await backoffice.signed_in(su) as browser:
        every = await backoffice.page(browser, f"{office.web_url}/cases")
        assert sorted(backoffice.listed(every)) == sorted([report.number, *given])
        page = await backoffice.page(browser, f"{office.web_url}/cases?kind=tasks")
        assert backoffice.listed(page) == given
        assert '<option value="tasks" selected>' in page
        assert "/cases.csv?kind=tasks" in page, "the export keeps the filter"
        assert "kind=tasks" in re.search(r'href="(/cases\?[^"]*sort=number[^"]*)"',  # type: ignore[union-attr]
                                         page).group(1)
        page = await backoffice.page(browser, f"{office.web_url}/cases?kind=reports")
        assert backoffice.listed(page) == [report.number]
        assert backoffice.listed(
            await backoffice.page(browser, f"{office.web_url}/cases?kind=other")
        ) == backoffice.listed(every), "a kind the form never sends is ignored"

        body, _headers = await backoffice.download(
            browser, f"{office.web_url}/cases.csv?kind=tasks"
        )
        text = body.decode("utf-8-sig")
        assert all(number in text for number in given) and report.number not in text

        page = await backoffice.page(browser, f"{office.web_url}/map?kind=reports")
        assert '<option value="reports" selected>' in page
