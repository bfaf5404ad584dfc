"""Me too (附议): before a new case, the open cases of the same problem are offered; joining
one makes no case, and the supporter follows it and counts on it for the officials."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from zoneinfo import ZoneInfo

import aiohttp
import backoffice
import pytest
from conftest import TEST_REDIS_URL

from bot import cases
from bot.emulator import button_data, buttons
from bot.models import (
    Account,
    Case,
    CaseStatus,
    Category,
    Delivery,
    Grid,
    Official,
    Supporter,
    Township,
    Villager,
)
from bot.sandbox import Phone, Sandbox
from scheduler import repeats
from scheduler.policy import Policy

LI, WANG, ZHANG = 1001, 1002, 1003
LIN = 9101  # 林秀英: Zhengda grid 1 and the committee, where a litter case goes first


@pytest.fixture
async def office(database_url: str) -> AsyncIterator[Sandbox]:
    """The sandbox with its back office served on a free port."""
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    async with Sandbox(database_url, redis_url=TEST_REDIS_URL or None, web=True) as running:
        yield running


async def _villager(sandbox: Sandbox, telegram_id: int, name: str) -> tuple[Villager, Phone]:
    account = await Account.create(id=telegram_id, first_name=name, language="zh-hans")
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    villager = await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name=name, phone="+8613800000001",
    )
    phone = sandbox.phone(telegram_id, name, language="zh-hans")
    await phone.send("/start")
    await phone.expect(name)
    return villager, phone


async def _official(sandbox: Sandbox, code: str, telegram_id: int) -> tuple[Official, Phone]:
    official = await Official.get(code=code)
    official.account = await Account.create(
        id=telegram_id, first_name=official.name, language="zh-hans"
    )
    await official.save()
    handset = sandbox.phone(telegram_id, official.name, language="zh-hans")
    await handset.send("/help")
    await handset.expect("/start")
    return official, handset


async def _reported(villager: Villager, category: str = "litter", **extra: object) -> Case:
    change = await cases.report(
        villager, await Category.get(code=category), description="村口垃圾桶满了，三天没人清理",
        **extra,  # type: ignore[arg-type]
    )
    return change.case


async def _to_offer(wang: Phone, category: tuple[str, str] = ("环境卫生", "卫生清理")) -> dict:
    """王芳 reports the same kind of problem and taps Submit."""
    await wang.press("📝 我要反映问题")
    await wang.tap(category[0])
    await wang.tap(category[1])
    await wang.expect("请描述问题")
    await wang.send("垃圾桶满了")
    await wang.tap("✅ 完成")
    await wang.expect("不需要位置？点“跳过”。")
    await wang.tap("跳过")
    await wang.expect("请核对您的反映内容")
    await wang.tap("✅ 提交")
    return await wang.expect("已经有人反映过类似的问题。是下面其中一件吗？")


async def test_me_too_makes_no_case_and_the_supporter_follows_it(office: Sandbox) -> None:
    lin, lin_phone = await _official(office, "lin-xiuying", LIN)
    li, _li = await _villager(office, LI, "李明")
    case = await _reported(li)
    await lin_phone.expect(case.number)
    _wang, wang = await _villager(office, WANG, "王芳")

    offer = await _to_offer(wang)
    assert case.number in offer["text"] and "村口垃圾桶满了，三天没人清理" in offer["text"]
    assert "李明" not in offer["text"] and "+8613800000001" not in offer["text"]
    assert buttons(offer) == [f"🙋 我也遇到了 · {case.number}", "➡️ 不是，我的问题不一样"]
    me_too = button_data(offer, f"🙋 我也遇到了 · {case.number}")
    await wang.tap(f"🙋 我也遇到了 · {case.number}")
    await wang.expect(f"您已附议事项 {case.number}，没有另建新事项。")
    assert await Case.all().count() == 1, "no new case"
    assert (await Case.get(id=case.id)).supporters == 1

    # A second tap (an old client still showing the button) joins nothing more.
    late = await wang.user.tap_data(offer, me_too)
    assert (await office.emulator.wait_answer(late))["text"] == "您已经附议过这个事项了。"
    assert await Supporter.filter(case_id=case.id).count() == 1
    assert (await Case.get(id=case.id)).supporters == 1

    # The official's card shows the supporters, and so does their list.
    await office.emulator.wait_for(LIN, lambda m: "附议：1 人" in (m.get("text") or ""))
    await lin_phone.send("/pool")
    listed = await lin_phone.expect(case.number)
    assert "附议：1 人" in listed["text"]

    # The supporter hears the public updates, once each, and is asked for stars.
    await cases.accept(case.id, lin)
    await wang.expect(f"事项 {case.number}")
    await cases.add_note(case.id, lin, "明天上午清运", public=True)
    await cases.add_note(case.id, lin, "内部：找保洁公司", public=False)
    await wang.expect("明天上午清运")
    evidence = await lin_phone.user.send_photo()
    await cases.resolve(case.id, lin, "已清运完毕", [evidence["photo"][-1]["file_id"]])
    resolved = await wang.expect(f"您附议的事项 {case.number} 已办结。")
    assert buttons(resolved) == ["⭐", "⭐⭐", "⭐⭐⭐", "⭐⭐⭐⭐", "⭐⭐⭐⭐⭐"]
    rows = await Delivery.filter(case_id=case.id, chat_id=WANG).values_list("payload", flat=True)
    told = [payload["text"] for payload in rows if "text" in payload]  # the photo comes apart
    assert len(told) == len(set(told)) == 3, "accepted, the public note, resolved: once each"
    assert not any("找保洁公司" in payload for payload in told), "never the internal note"
    await wang.tap("⭐⭐⭐⭐")
    await wang.expect("谢谢！您的评价：4 星")
    row = await Supporter.get(case_id=case.id)
    assert row.rating == 4
    stored = await Case.get(id=case.id)
    assert (stored.status, stored.rating) == (CaseStatus.RESOLVED, None), "the reporter's own"


async def test_no_mine_is_different_makes_a_new_case(sandbox: Sandbox) -> None:
    li, _li = await _villager(sandbox, LI, "李明")
    first = await _reported(li)
    _wang, wang = await _villager(sandbox, WANG, "王芳")
    await _to_offer(wang)
    await wang.tap("➡️ 不是，我的问题不一样")
    done = await wang.expect("✅ 已提交。您的事项编号：BL-")
    assert await Case.all().count() == 2
    assert first.number not in done["text"]
    assert (await Case.get(id=first.id)).supporters == 0


@pytest.mark.parametrize(
    ("extra", "category"),
    [({"anonymous": True}, "litter"), ({}, "misconduct")],
)
async def test_an_anonymous_or_confidential_case_is_never_offered(
    sandbox: Sandbox, extra: dict, category: str
) -> None:
    li, _li = await _villager(sandbox, LI, "李明")
    await _reported(li, category, **extra)
    _wang, wang = await _villager(sandbox, WANG, "王芳")
    names = ("环境卫生", "卫生清理") if category == "litter" else ("清风", "干部作风问题反映")
    await wang.press("📝 我要反映问题")
    await wang.tap(names[0])
    await wang.tap(names[1])
    await wang.expect("请描述问题")
    await wang.send("同样的问题")
    await wang.tap("✅ 完成")
    await wang.tap("跳过")
    await wang.expect("请核对您的反映内容")
    await wang.tap("✅ 提交")
    await wang.expect("✅ 已提交。您的事项编号：BL-")
    assert await Case.all().count() == 2
    with pytest.raises(cases.CaseRefused):
        await cases.support((await Case.all().order_by("id").first()).id, _wang)  # type: ignore[union-attr]


async def test_a_villager_cannot_support_their_own_case(sandbox: Sandbox) -> None:
    li, _li = await _villager(sandbox, LI, "李明")
    case = await _reported(li)
    with pytest.raises(cases.CaseRefused):
        await cases.support(case.id, li)
    assert await Supporter.all().count() == 0


async def test_a_case_the_villager_joined_is_not_offered_again_to_them_only(
    sandbox: Sandbox,
) -> None:
    li, _li = await _villager(sandbox, LI, "李明")
    wang, _wang = await _villager(sandbox, WANG, "王芳")
    zhang, _zhang = await _villager(sandbox, ZHANG, "张伟")
    joined, other = await _reported(li), await _reported(li)
    await cases.support(joined.id, wang)
    litter = await Category.get(code="litter")
    village = await li.village
    assert [c.id for c in await cases.same_problem(wang, litter, village)] == [other.id]
    assert {c.id for c in await cases.same_problem(zhang, litter, village)} == {
        joined.id, other.id,
    }


async def test_a_pin_far_away_is_not_the_same_problem(sandbox: Sandbox) -> None:
    li, _li = await _villager(sandbox, LI, "李明")
    wang, _wang = await _villager(sandbox, WANG, "王芳")
    case = await _reported(li, latitude=28.9123, longitude=118.8765)
    litter = await Category.get(code="litter")
    village = await li.village
    near = await cases.same_problem(wang, litter, village, latitude=28.9140, longitude=118.8765)
    far = await cases.same_problem(wang, litter, village, latitude=28.9200, longitude=118.8765)
    unpinned = await cases.same_problem(wang, litter, village)
    assert [c.id for c in near] == [case.id], "about 190 m"
    assert far == [], "about 860 m"
    assert [c.id for c in unpinned] == [case.id]


async def test_the_back_office_shows_the_supporters(office: Sandbox) -> None:
    _lin, lin_phone = await _official(office, "lin-xiuying", LIN)
    li, _li = await _villager(office, LI, "李明")
    wang, _wang = await _villager(office, WANG, "王芳")
    case = await _reported(li)
    await cases.support(case.id, wang)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        await lin_phone.send("/web")
        message = await lin_phone.expect("/signin/")
        found = re.search(r"https?://\S+/signin/\S+", message["text"])
        assert found is not None
        async with browser.get(found.group(0)) as response:
            assert response.status == 200
            listing = await response.text()
        assert "附议：1 人" in listing
        async with browser.get(f"{office.web_url}/cases/{case.number}") as response:
            page = await response.text()
        assert "1 位村民遇到了同样的问题，附议了这个事项。" in page


async def test_a_case_older_than_30_days_or_closed_is_not_offered(sandbox: Sandbox) -> None:
    lin, _lin = await _official(sandbox, "lin-xiuying", LIN)
    li, _li = await _villager(sandbox, LI, "李明")
    wang, wang_phone = await _villager(sandbox, WANG, "王芳")
    now = cases.now()
    old = await _reported(li, at=now - timedelta(days=30, hours=1))
    recent = await _reported(li, at=now - timedelta(days=29))
    closed = await _reported(li, at=now - timedelta(hours=3))
    await cases.accept(closed.id, lin)
    await cases.resolve(closed.id, lin, "已清理", ["P"])
    await cases.rate(closed.id, li, 5)
    assert (await Case.get(id=closed.id)).status == CaseStatus.CLOSED

    offer = await _to_offer(wang_phone)
    assert recent.number in offer["text"]
    assert old.number not in offer["text"] and closed.number not in offer["text"]
    assert buttons(offer) == [f"🙋 我也遇到了 · {recent.number}", "➡️ 不是，我的问题不一样"]

    # The cut-off is 30 days to the second from the moment of the Submit.
    litter, village = await Category.get(code="litter"), await li.village
    edge = recent.created_at + timedelta(days=30)
    assert [c.id for c in await cases.same_problem(wang, litter, village, at=edge)] == [
        recent.id
    ]
    assert await cases.same_problem(wang, litter, village, at=edge + timedelta(seconds=1)) == []


async def test_supporters_push_a_repeat_problem_over_the_threshold_and_onto_the_dashboard(
    office: Sandbox,
) -> None:
    """Two reports and one villager who joined one of them make three: the repeat-problem
    warning goes out and the dashboard lists the problem; without the supporter, neither."""
    su_phone = await backoffice.official(office, "su-jinqiao", 9002)
    li, _li = await _villager(office, LI, "李明")
    wang, _wang = await _villager(office, WANG, "王芳")
    policy = Policy(quiet_hours=None, repeat_threshold=3)
    now = cases.now()
    made = [await _reported(li, at=now - timedelta(hours=h)) for h in (2, 1)]
    township = await Township.get(code="BL")
    period = (now - timedelta(days=1), now + timedelta(days=1))
    assert await repeats.warn(now, policy) == 0
    assert await repeats.open_bursts(township.id, policy, *period) == []

    await cases.support(made[0].id, wang)
    assert await repeats.warn(now, policy) == 1
    [warning] = await Delivery.filter(key__startswith="repeat:")
    assert warning.chat_id == 9002
    assert "正达村 7天内有 3 件卫生清理" in warning.payload["text"]
    assert all(case.number in warning.payload["text"] for case in made)
    [burst] = await repeats.open_bursts(township.id, policy, *period)
    assert burst.numbers == [case.number for case in made] and burst.still_open == 2

    browser = await backoffice.signed_in(su_phone)
    async with browser:
        today = now.astimezone(ZoneInfo("Asia/Shanghai")).date()  # the township's day
        days = f"?period=range&from={today - timedelta(days=1)}&to={today}"
        page = await backoffice.page(browser, office.web_url + "/dashboard" + days)
    assert f"正达村：卫生清理 2 件，2 件未结案：{made[0].number}, {made[1].number}" in page


async def test_the_tasks_list_shows_the_supporters(sandbox: Sandbox) -> None:
    lin, lin_phone = await _official(sandbox, "lin-xiuying", LIN)
    li, _li = await _villager(sandbox, LI, "李明")
    wang, _wang = await _villager(sandbox, WANG, "王芳")
    joined, alone = await _reported(li), await _reported(li)
    for case in (joined, alone):
        await cases.accept(case.id, lin)
    await cases.support(joined.id, wang)
    await lin_phone.send("/tasks")
    listed = await lin_phone.expect("您待办的事项（期限最近的在前）")
    lines = listed["text"].splitlines()
    [joined_line] = [line for line in lines if joined.number in line]
    [alone_line] = [line for line in lines if alone.number in line]
    assert joined_line.endswith(" · 附议：1 人")
    assert "附议" not in alone_line
