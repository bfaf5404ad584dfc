"""Where the problem is: a villager reports a problem in another village of the township, the
case goes to that village's units, and a confidential case keeps away from both villages."""

from __future__ import annotations

import csv
import io
from zoneinfo import ZoneInfo

import backoffice
import pytest
from conftest import make_villager

from bot import cases, scope
from bot.callbacks import ChoosePlaceGrid
from bot.emulator import buttons, said
from bot.models import Account, Case, Category, Delivery, Grid, Official, Unit, Village, Villager
from bot.routing import NoResponsibleUnit
from bot.sandbox import Phone, Sandbox

LI = 1001
ZHENGDA_COMMITTEE_GROUP = -1001000000101
BANLI_COMMITTEE_GROUP = -1001000000102


async def _li(sandbox: Sandbox) -> tuple[Villager, Phone]:
    """李明 of Zhengda grid 1, registered, with the main menu on screen."""
    account = await Account.create(id=LI, first_name="李明", language="zh-hans")
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    villager = await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name="李明",
    )
    phone = sandbox.phone(LI, "李明", language="zh-hans")
    await phone.send("/start")
    await phone.expect("李明")
    return villager, phone


async def _official(sandbox: Sandbox, code: str, telegram_id: int) -> Official:
    official = await Official.get(code=code)
    official.account = await Account.create(
        id=telegram_id, first_name=official.name, language="zh-hans"
    )
    await official.save()
    handset = sandbox.phone(telegram_id, official.name, language="zh-hans")
    await handset.send("/help")
    await handset.expect("/start")
    return official


async def _to_location(li: Phone) -> dict:
    await li.press("📝 我要反映问题")
    await li.expect("您要反映哪方面的问题？请点一个类别。")
    await li.tap("环境卫生")
    await li.expect("环境卫生：具体是哪一类？")
    await li.tap("卫生清理")
    await li.expect("请描述问题")
    await li.send("去集市路上的垃圾堆没人清理")
    await li.expect("照片能帮助工作人员了解情况")
    await li.tap("✅ 完成")
    return await li.expect("不需要位置？点“跳过”。")


def _mentions(messages: list[dict], number: str) -> bool:
    return any(number in said(m) for m in messages)


async def test_the_own_village_costs_nothing_and_routes_to_the_own_grid(
    sandbox: Sandbox,
) -> None:
    _, li = await _li(sandbox)
    location = await _to_location(li)
    assert "问题在您所在的正达村。在别的村？请点“🏘 在别的村”。" in location["text"]
    assert "🏘 在别的村" in buttons(location)
    await li.tap("跳过")
    summary = await li.expect("请核对您的反映内容")
    assert "村：正达村" in summary["text"]
    await li.tap("✅ 提交")
    await li.expect("将由正达村第一网格办理")
    case = await Case.get().prefetch_related("village", "grid", "unit", "reporter_village")
    assert (case.village.code, case.grid.code, case.unit.code) == ("zhengda", "g1", "zhengda-g1")  # type: ignore[union-attr]
    assert case.reporter_village.code == "zhengda"  # type: ignore[union-attr]


async def _to_banli(li: Phone) -> dict:
    """From the location step to Banli's grid question."""
    await _to_location(li)
    await li.tap("🏘 在别的村")
    places = await li.expect("问题在哪个村？")
    assert buttons(places) == ["📍 在我们村（正达村）", "坂里村", "高层村", "后坊村"]
    await li.tap("坂里村")
    grids = await li.expect("问题在坂里村的哪个网格？")
    assert buttons(grids) == ["第一网格", "第二网格", "不清楚", "⬅️ 返回"]
    return grids


async def test_a_problem_in_a_neighbouring_village_reaches_that_villages_grid(
    sandbox: Sandbox,
) -> None:
    zhengda = sandbox.emulator.group(ZHENGDA_COMMITTEE_GROUP, "正达村两委")
    banli = sandbox.emulator.group(BANLI_COMMITTEE_GROUP, "坂里村两委")
    lin = await _official(sandbox, "lin-xiuying", 9101)  # Zhengda grid 1 and committee
    wu = await _official(sandbox, "wu-lijuan", 9102)  # Banli's grids
    _, li = await _li(sandbox)
    await _to_banli(li)
    await li.tap("第一网格")
    again = await li.expect("问题在坂里村 · 第一网格（不是您所在的村）")
    assert "🏘 在别的村" in buttons(again)
    await li.send("去集市的路口")
    summary = await li.expect("请核对您的反映内容")
    assert "村：坂里村" in summary["text"] and "网格：第一网格" in summary["text"]
    assert "位置：去集市的路口" in summary["text"]
    await li.tap("✅ 提交")
    await li.expect("将由坂里村第一网格办理")

    case = await Case.get().prefetch_related("village", "grid", "unit", "reporter_village")
    assert (case.village.code, case.grid.code, case.unit.code) == ("banli", "g1", "banli-g1")  # type: ignore[union-attr]
    assert case.reporter_village.code == "zhengda"  # type: ignore[union-attr]
    # Banli's grid units have no group: the card reaches their member's own chat.
    card = await sandbox.emulator.wait_for(9102, case.number)
    assert "坂里村" in card["text"] and "第一网格" in card["text"]
    chats = set(await Delivery.filter(case_id=case.id).values_list("chat_id", flat=True))
    assert chats == {9102, LI}, "Banli grid 1's member and the reporter only"
    assert not _mentions(zhengda.messages(), case.number)
    assert not _mentions(banli.messages(), case.number), "the grid has it, not the committee"
    assert not _mentions(sandbox.emulator.bot_messages(9101), case.number)
    assert not await scope.may_see(lin, case)
    assert await scope.may_see(wu, case)


async def test_i_dont_know_the_grid_leaves_it_to_that_villages_committee(
    sandbox: Sandbox,
) -> None:
    zhengda = sandbox.emulator.group(ZHENGDA_COMMITTEE_GROUP, "正达村两委")
    banli = sandbox.emulator.group(BANLI_COMMITTEE_GROUP, "坂里村两委")
    lin = await _official(sandbox, "lin-xiuying", 9101)
    wu = await _official(sandbox, "wu-lijuan", 9102)
    _, li = await _li(sandbox)
    await _to_banli(li)
    await li.tap("不清楚")
    again = await li.expect("问题在坂里村（不是您所在的村）")
    assert "🏘 在别的村" in buttons(again)
    await li.send("去集市的路口")
    summary = await li.expect("请核对您的反映内容")
    assert "村：坂里村" in summary["text"] and "网格：不清楚" in summary["text"]
    await li.tap("✅ 提交")
    await li.expect("将由坂里村两委办理")

    case = await Case.get().prefetch_related("village", "unit", "reporter_village")
    assert (case.village.code, case.grid_id, case.unit.code) == ("banli", None, "banli-committee")  # type: ignore[attr-defined]
    assert case.reporter_village.code == "zhengda"  # type: ignore[union-attr]
    card = await sandbox.emulator.wait_for(banli.chat_id, case.number)
    assert "坂里村" in card["text"]
    chats = set(await Delivery.filter(case_id=case.id).values_list("chat_id", flat=True))
    assert chats == {BANLI_COMMITTEE_GROUP, LI}, "Banli's committee and the reporter only"
    assert not _mentions(zhengda.messages(), case.number)
    for private in (9101, 9102):
        assert not _mentions(sandbox.emulator.bot_messages(private), case.number)
    assert not await scope.may_see(lin, case)
    assert not await scope.may_see(wu, case), "no grid was guessed"


async def test_back_and_edit_on_the_grid_question(sandbox: Sandbox) -> None:
    """Back on the grid question returns to the villages; Edit → Location asks both again, and
    the case goes where the last answers say."""
    _, li = await _li(sandbox)
    await _to_banli(li)
    await li.tap("⬅️ 返回")
    await li.expect("问题在哪个村？")
    await li.tap("高层村")
    await li.expect("问题在高层村的哪个网格？")
    await li.tap("第二网格")
    await li.expect("问题在高层村 · 第二网格（不是您所在的村）")
    await li.tap("跳过")
    summary = await li.expect("请核对您的反映内容")
    assert "村：高层村" in summary["text"] and "网格：第二网格" in summary["text"]
    await li.tap("✏️ 修改")
    await li.tap("位置")
    await li.expect("问题在高层村 · 第二网格（不是您所在的村）")
    await li.tap("🏘 在别的村")
    await li.tap("坂里村")
    await li.expect("问题在坂里村的哪个网格？")
    await li.tap("第二网格")
    await li.expect("问题在坂里村 · 第二网格（不是您所在的村）")
    await li.tap("跳过")
    summary = await li.expect("请核对您的反映内容")
    assert "村：坂里村" in summary["text"] and "网格：第二网格" in summary["text"]
    await li.tap("✅ 提交")
    await li.expect("将由坂里村第二网格办理")
    case = await Case.get().prefetch_related("unit")
    assert case.unit.code == "banli-g2"


async def test_a_grid_button_of_another_village_is_stale(sandbox: Sandbox) -> None:
    """A grid button of a village the villager moved away from (an old client still showing
    it) does nothing."""
    _, li = await _li(sandbox)
    banli_grids = await _to_banli(li)
    await li.tap("⬅️ 返回")
    await li.tap("高层村")
    await li.expect("问题在高层村的哪个网格？")
    banli_g1 = await Grid.get(village__code="banli", code="g1")
    old = ChoosePlaceGrid(village_id=banli_g1.village_id, grid_id=banli_g1.id).pack()  # type: ignore[attr-defined]
    stale = await li.user.tap_data(banli_grids, old)
    answer = await sandbox.emulator.wait_answer(stale)
    assert answer.get("show_alert") and answer["text"] == "这个按钮已失效。"
    await li.tap("第一网格")
    await li.expect("问题在高层村 · 第一网格")


async def test_choosing_the_own_village_again_brings_back_the_own_grid(sandbox: Sandbox) -> None:
    _, li = await _li(sandbox)
    await _to_location(li)
    await li.tap("🏘 在别的村")
    await li.tap("高层村")
    await li.tap("不清楚")
    await li.expect("问题在高层村（不是您所在的村）")
    await li.tap("🏘 在别的村")
    await li.tap("📍 在我们村（正达村）")
    await li.expect("问题在您所在的正达村")
    await li.tap("跳过")
    await li.tap("✅ 提交")
    await li.expect("将由正达村第一网格办理")
    case = await Case.get().prefetch_related("unit")
    assert case.unit.code == "zhengda-g1"


async def test_a_village_of_another_township_is_refused(sandbox: Sandbox) -> None:
    villager, _ = await _li(sandbox)
    litter = await Category.get(code="litter")
    stranger = Village(id=10**6, township_id=10**6, code="far", name="远村")
    with pytest.raises(cases.CaseRefused):
        await cases.report(villager, litter, description="x", village=stranger)
    # Nor a grid that is not of the village named.
    with pytest.raises(cases.CaseRefused):
        await cases.report(
            villager, litter, description="x", village=await Village.get(code="banli"),
            grid=await Grid.get(village__code="gaoceng", code="g1"),
        )
    assert not await Case.exists()


async def _misconduct_in_banli(li: Phone) -> Case:
    await li.press("📝 我要反映问题")
    await li.tap("清风")
    await li.tap("干部作风问题反映")
    await li.expect("请描述问题")
    await li.send("村干部吃拿卡要")
    await li.tap("✅ 完成")
    await li.tap("🏘 在别的村")
    await li.tap("坂里村")
    await li.tap("第一网格")
    await li.expect("问题在坂里村")
    await li.tap("跳过")
    await li.tap("✅ 提交")
    await li.expect("您的事项编号")
    return await Case.get(category__code="misconduct").prefetch_related("unit")


@pytest.mark.parametrize(
    ("above", "official", "sees"),
    [
        ("zhengda-committee", "zheng-guohua", False),  # the reporter's home village
        ("banli-committee", "yang-minghui", False),  # the problem's village
        ("gaoceng-committee", "dai-yongfu", True),  # neither: the chain reaches it
    ],
)
async def test_a_confidential_case_keeps_away_from_both_villages(
    sandbox: Sandbox, above: str, official: str, sees: bool
) -> None:
    """The directory refuses a village unit above the discipline office; were one there, the
    rule still keeps the case from the units of the reporter's and the problem's village."""
    upper = await Unit.get(code=above)
    await Unit.filter(code="jiwei").update(supervisor_id=upper.id)
    reader = await _official(sandbox, official, 9201)
    _, li = await _li(sandbox)
    case = await _misconduct_in_banli(li)
    assert case.unit.code == "jiwei"
    assert (above in [u.code for u in await scope.chain(case)]) is sees
    assert await scope.may_see(reader, case) is sees
    listed = await Case.filter(await scope.cases_seen_by(reader)).values_list("id", flat=True)
    assert (case.id in listed) is sees


@pytest.mark.parametrize(
    ("unit", "routed"),
    [("zhengda-committee", False), ("banli-committee", False), ("houfang-committee", True)],
)
async def test_a_confidential_category_is_never_routed_into_either_village(
    sandbox: Sandbox, unit: str, routed: bool
) -> None:
    villager, _ = await _li(sandbox)
    target = await Unit.get(code=unit)
    await Category.filter(code="misconduct").update(unit_id=target.id)
    misconduct = await Category.get(code="misconduct")
    banli = await Village.get(code="banli")
    if routed:
        change = await cases.report(villager, misconduct, description="x", village=banli)
        assert change.case.unit_id == target.id  # type: ignore[attr-defined]
    else:
        with pytest.raises(NoResponsibleUnit):
            await cases.report(villager, misconduct, description="x", village=banli)
        assert not await Case.exists()


async def test_the_back_office_lists_and_counts_a_case_under_the_problems_village(
    office: Sandbox,
) -> None:
    """The case list's village filter and the dashboard's by-village figures take the
    problem's village, not the reporter's home."""
    su = await backoffice.official(office, "su-jinqiao", 9002)
    li = await make_villager(LI)  # of Zhengda
    litter = await Category.get(code="litter")
    banli = await Village.get(code="banli")
    zhengda = await Village.get(code="zhengda")
    there = (await cases.report(
        li, litter, description="去集市路上的垃圾堆", village=banli,
        grid=await Grid.get(village_id=banli.id, code="g2"),
    )).case
    home = (await cases.report(li, litter, description="村口垃圾桶满了")).case
    today = cases.now().astimezone(ZoneInfo("Asia/Shanghai")).date()
    period = f"period=range&from={today}&to={today}"
    async with await backoffice.signed_in(su) as browser:
        page = await backoffice.page(browser, f"{office.web_url}/cases")
        await backoffice.post(
            browser, f"{office.web_url}/language",
            {"language": "en", "csrf": backoffice.csrf(page)},
        )
        for village, numbers in ((banli, [there.number]), (zhengda, [home.number])):
            page = await backoffice.page(browser, f"{office.web_url}/cases?village={village.id}")
            assert backoffice.listed(page) == numbers, village.code
        body, _ = await backoffice.download(browser, f"{office.web_url}/dashboard.csv?{period}")
        rows = list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))
        received = {row[0]: row[1] for row in rows if row and row[0].endswith(" Village")}
        assert (received["Banli Village"], received["Zhengda Village"]) == ("1", "1")
        narrowed = await backoffice.page(
            browser, f"{office.web_url}/dashboard?{period}&village={banli.id}"
        )
        assert '<span class="name">Received</span> <strong class="value">1</strong>' in narrowed
