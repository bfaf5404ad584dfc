"""The back office in headless Chromium, as an official uses it: the real bot on the emulator,
the real server, a real browser clicking the real pages. tests/test_web.py covers the rules over
HTTP; these show the pages work as pages (links, forms, buttons, the session cookie, Chinese
text) and that what is done in them reaches Telegram.

Each test leaves a full-page screenshot in test-artifacts/browser/ (see the `back_office`
fixture). They are skipped, with a line saying how to install Chromium, on a machine without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import backoffice
from browsing import NO_CHROMIUM, BackOffice

from bot import cases
from bot.emulator import buttons
from bot.models import Case, CaseStatus, Category, Official, Task, Villager
from bot.sandbox import Phone


async def _official(office: BackOffice, code: str, telegram_id: int) -> Phone:
    return await backoffice.official(office.sandbox, code, telegram_id)


async def _villager(
    office: BackOffice, telegram_id: int, village: str = "zhengda", name: str = "李明"
) -> Villager:
    registered, _handset = await backoffice.villager(office.sandbox, telegram_id, village, name)
    return registered


async def _three_cases(office: BackOffice) -> dict[str, Case]:
    """Litter in 正达村 (new), a road in 正达村 (accepted), a street light in 坂里村 (new)."""
    zhengda = await _villager(office, 1001)
    banli = await _villager(office, 1003, village="banli", name="王芳")
    made = {
        "litter": await backoffice.report(zhengda, "村口垃圾桶满了，垃圾散了一地", "litter"),
        "road": await backoffice.report(zhengda, "村道塌了一块，车过不去", "roads"),
        "light": await backoffice.report(banli, "坂里村桥头的路灯坏了", "streetlights"),
    }
    await cases.accept(made["road"].id, await Official.get(code="su-jinqiao"))
    return made


async def test_an_official_signs_in_with_the_bots_link_filters_the_list_and_signs_out(
    back_office: BackOffice,
) -> None:
    su = await _official(back_office, "su-jinqiao", 9002)  # the dispatcher: sees all three
    made = await _three_cases(back_office)
    await back_office.sign_in(su)
    page = await back_office.text()
    assert "坂里乡" in page and "苏进侨" in page and "退出" in page
    assert await back_office.count() == "共 3 件事项"
    assert await back_office.listed() == [made[k].number for k in ("light", "road", "litter")]

    assert await back_office.filter(status="办理中") == [made["road"].number]
    assert await back_office.filter(status="待受理") == [made["light"].number,
                                                       made["litter"].number]
    assert await back_office.filter(village="坂里村") == [made["light"].number]
    assert await back_office.filter(status="全部状态", village="全部村", text="垃圾桶") == [
        made["litter"].number
    ]
    assert await back_office.filter(text="没有这回事") == []
    assert "没有符合条件的事项" in await back_office.text()
    assert await back_office.filter(text="", category="道路维修") == [made["road"].number]
    assert await back_office.count() == "共 1 件事项"

    await back_office.sign_out()
    assert "您已退出" in await back_office.text()
    await back_office.page.goto(f"{back_office.url}/cases")
    assert "请登录" in await back_office.text()
    await back_office.page.goto(back_office.link)  # the link has been used
    assert "这个登录链接已经用过了" in await back_office.text()
    assert "请登录" not in await back_office.text()  # the refusal, with how to get a new link
    assert "发送 /web" in await back_office.text()


async def test_an_official_opens_a_case_assigns_it_and_the_assignee_gets_the_card(
    back_office: BackOffice,
) -> None:
    su = await _official(back_office, "su-jinqiao", 9002)
    lin = await _official(back_office, "lin-xiuying", 9003)  # 正达村 grid 1
    made = await _three_cases(back_office)
    litter = made["litter"]
    await back_office.sign_in(su)
    await back_office.open_case(litter.number)
    assert await back_office.fact("状态") == "待受理"
    assert await back_office.fact("办理人") == "-"
    assert "村口垃圾桶满了，垃圾散了一地" in await back_office.text()

    await back_office.assign(to="林秀英", by="1天")
    assert back_office.page.url == f"{back_office.url}/cases/{litter.number}"
    assert await back_office.fact("办理人") == "林秀英"
    assert await back_office.fact("状态") == "办理中"
    assert "指派" in await back_office.page.locator("ol.timeline").inner_text()

    card = await lin.expect("苏进侨将这个事项指派给您")
    assert litter.number in card["text"]
    assert "✔️ 办结" in buttons(card)  # her copy carries the buttons to work on it
    case = await Case.get(id=litter.id)
    assert case.status == CaseStatus.ACCEPTED
    assert case.assignee_id == (await Official.get(code="lin-xiuying")).id  # type: ignore[attr-defined]


async def test_the_language_switch_changes_every_page_and_stays_for_the_session(
    back_office: BackOffice,
) -> None:
    su = await _official(back_office, "su-jinqiao", 9002)
    made = await _three_cases(back_office)
    await back_office.sign_in(su)
    assert await back_office.count() == "共 3 件事项"
    assert any("CJK" in font for font in await back_office.fonts("p.count .total"))

    await back_office.switch_language("English")
    assert await back_office.count() == "3 cases"
    assert "Sign out" in await back_office.text()
    await back_office.open_case(made["light"].number)  # the choice holds on the next page
    assert await back_office.fact("Status") == "waiting to be accepted"
    assert await back_office.fact("Village") == "Banli Village · Grid 1"

    await back_office.switch_language("繁體中文")
    assert back_office.page.url.endswith(f"/cases/{made['light'].number}")  # stays on the page
    assert await back_office.fact("狀態") == "待受理"
    await back_office.nav("事項")
    assert await back_office.count() == "共 3 件事項"
    assert "登出" in await back_office.text()
    await back_office.switch_language("简体中文")
    assert await back_office.count() == "共 3 件事项"


async def test_the_dashboard_counts_this_months_cases_and_leads_to_the_overdue_ones(
    back_office: BackOffice,
) -> None:
    su = await _official(back_office, "su-jinqiao", 9002)
    await _three_cases(back_office)
    await back_office.sign_in(su)
    await back_office.nav("数据总览")
    page = back_office.page
    tile = page.locator(".tile", has=page.locator(".name", has_text="新收"))
    assert await tile.locator(".value").inner_text() == "3"
    period = page.locator("select[name=period] option:checked")
    assert await period.inner_text() == "本月"  # this month unless another period is chosen
    chart = page.locator("svg")
    assert await chart.count() >= 1 and await chart.first.is_visible()
    by_village = page.locator("section", has=page.locator("h2", has_text="分村情况"))
    assert "正达村" in await by_village.inner_text()

    await page.select_option("select[name=village]", label="坂里村")
    await page.get_by_role("button", name="查看").click()
    await page.wait_for_load_state()
    assert "坂里村" in await back_office.heading()
    assert await tile.locator(".value").inner_text() == "1"


async def test_the_map_shows_the_pins_in_scope_and_a_pin_opens_its_case(
    back_office: BackOffice,
) -> None:
    """No tile server is set (the default): the pins still show, on a plain background."""
    su = await _official(back_office, "su-jinqiao", 9002)
    zhengda = await _villager(back_office, 1001)
    spots = [(25.70, 117.90), (25.80, 118.00), (25.90, 118.10)]
    made = [
        (await cases.report(
            zhengda, await Category.get(code="litter"), description=f"垃圾 {n}",
            latitude=lat, longitude=lng,
        )).case
        for n, (lat, lng) in enumerate(spots)
    ]
    await backoffice.report(zhengda, "没有位置的事项", "roads")  # no pin: not on the map
    await back_office.sign_in(su)
    await back_office.nav("地图")
    page = back_office.page
    assert "共 3 件带位置的事项" in await back_office.text()
    pins = page.locator("#map path.leaflet-interactive")
    await pins.first.wait_for()
    assert await pins.count() == 3
    assert await page.locator("#map img.leaflet-tile").count() == 0  # no tiles were asked for

    await pins.nth(0).click(force=True)
    popup = page.locator(".leaflet-popup-content a")
    await popup.wait_for()
    number = await popup.inner_text()
    assert number in {case.number for case in made}
    await popup.click()
    await page.wait_for_url(f"{back_office.url}/cases/{number}")
    assert number in await back_office.heading()


async def test_the_dispatcher_gives_a_township_task_in_the_form_and_follows_its_progress(
    back_office: BackOffice,
) -> None:
    su = await _official(back_office, "su-jinqiao", 9002)
    await back_office.sign_in(su)
    await back_office.nav("中心工作任务")
    assert "还没有中心工作任务" in await back_office.text()
    page = back_office.page
    async with page.expect_navigation():
        await page.get_by_role("link", name="新建任务", exact=True).click()
    form = page.locator("form.task-form")
    await form.get_by_label("全部村两委", exact=True).check()  # the page ticks them as it says
    assert await form.get_by_label("高层村两委", exact=True).is_checked()
    assert not await form.get_by_label("高层村第一网格", exact=True).is_checked()
    await form.get_by_label("全部村两委", exact=True).uncheck()

    due = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=3)).replace(hour=18, minute=0)
    await back_office.give_task(
        title="清理河道垃圾", description="迎检前清理本村河道两岸垃圾",
        deadline=due.strftime("%Y-%m-%dT%H:%M"), units=["坂里村第一网格"], committees=True,
    )
    task = await Task.get()
    assert page.url == f"{back_office.url}/tasks/{task.id}"
    assert await back_office.heading() == "中心工作任务：清理河道垃圾"
    assert task.deadline == due.replace(second=0, microsecond=0)
    targets = page.locator("table.targets tbody tr")
    assert await targets.count() == 5  # four village committees and the grid ticked
    assert set(await page.locator("table.targets td.status").all_inner_texts()) == {"待受理"}
    assert await page.locator("dl.progress dd.total").inner_text() == "5"
    assert await Case.filter(task_id=task.id).count() == 5

    await back_office.nav("中心工作任务")
    assert "清理河道垃圾" in await back_office.text()
    assert await page.locator("table.tasks td.total").inner_text() == "5"
    async with page.expect_navigation():
        await page.get_by_role("link", name="清理河道垃圾", exact=True).click()
    first = (await Case.filter(task_id=task.id).order_by("id").first())
    assert first is not None
    await back_office.open_case(first.number)
    assert "清理河道垃圾" in await back_office.fact("中心工作任务")
    assert "派发任务" in await page.locator("ol.timeline").inner_text()
    async with page.expect_navigation():  # back to the progress, the page the screenshot keeps
        await page.locator("dl.facts").get_by_role("link", name="清理河道垃圾").click()
    assert page.url == f"{back_office.url}/tasks/{task.id}"


def test_without_chromium_the_browser_tests_are_skipped_saying_how_to_get_it(
    tmp_path: Path,
) -> None:
    """`make test` on a machine without Chromium: the tests are skipped, not failed, and the
    run ends with a plain line saying so."""
    environment = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("PYTEST_", "VILLAGEBOT_TEST_"))  # a run of its own, on SQLite
    }
    environment["VILLAGEBOT_CHROMIUM"] = str(tmp_path / "no-such-chromium")
    one = test_the_language_switch_changes_every_page_and_stays_for_the_session.__name__
    test = f"{Path(__file__).name}::{one}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", test],
        cwd=Path(__file__).parent, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 skipped" in result.stdout
    assert f"browser tests: 1 skipped, {NO_CHROMIUM}" in result.stdout
