"""/mycases, /tasks, /pool and a case's timeline, through the emulator."""

from __future__ import annotations

from bot import cases, notices, scope
from bot.emulator import buttons
from bot.i18n import catalogs
from bot.models import Account, Case, Category, Grid, Official, Villager
from bot.sandbox import Sandbox


async def _villager(telegram_id: int, name: str, language: str = "zh-hans") -> Villager:
    account = await Account.create(id=telegram_id, first_name=name, language=language)
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    return await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name=name,
    )


async def _official(code: str, telegram_id: int, language: str = "zh-hans") -> Official:
    official = await Official.get(code=code)
    official.account = await Account.create(
        id=telegram_id, first_name=official.name, language=language
    )
    await official.save()
    return official


async def _report(villager: Villager, description: str, category: str = "litter") -> Case:
    change = await cases.report(
        villager, await Category.get(code=category), description=description
    )
    return change.case


async def test_a_villager_lists_their_cases_and_opens_one(sandbox: Sandbox) -> None:
    villager = await _villager(1001, "李明")
    first = await _report(villager, "正达溪水葫芦长满水面")
    second = await _report(villager, "村口垃圾桶满了")
    await _report(await _villager(1002, "王芳"), "别人的案件")
    li = sandbox.phone(1001, "李明")
    await li.send("/mycases")
    listing = await li.expect("我反映的问题")
    assert listing["text"].index(second.number) < listing["text"].index(first.number)
    assert "BL-2026-000003" not in listing["text"]
    assert "待受理" in listing["text"]
    await li.tap(first.number)
    timeline = await li.expect(f"事项 {first.number}")
    assert "正达溪水葫芦长满水面" in timeline["text"]
    assert "村民反映" in timeline["text"]


async def test_the_timeline_shows_a_villager_only_public_notes(sandbox: Sandbox) -> None:
    villager = await _villager(1001, "Li Ming", language="en")
    case = await _report(villager, "Water hyacinth on the creek")
    lin = await _official("lin-xiuying", 9101)
    await cases.accept(case.id, lin)
    await cases.add_note(case.id, lin, "Boat booked for Friday", public=True)
    await cases.add_note(case.id, lin, "Ask the team for a second boat", public=False)
    li = sandbox.phone(1001, "Li Ming", language="en")
    await li.send("/mycases")
    await li.expect("being handled")
    await li.tap(case.number)
    timeline = await li.expect(f"Case {case.number}")
    assert "Boat booked for Friday" in timeline["text"]
    assert "second boat" not in timeline["text"]
    official = sandbox.phone(9101, "林秀英")
    await official.send("/tasks")
    await official.tap(case.number)
    full = await official.expect(f"事项 {case.number}")
    assert "second boat" in full["text"] and "（内部）" in full["text"]


async def test_pool_and_tasks_follow_the_case(sandbox: Sandbox) -> None:
    villager = await _villager(1001, "李明")
    case = await _report(villager, "路灯坏了")
    lin = await _official("lin-xiuying", 9101)
    phone = sandbox.phone(9101, "林秀英")
    await phone.send("/tasks")
    await phone.expect("您没有待办的事项。")
    await phone.send("/pool")
    pool = await phone.expect("待受理的事项")
    assert case.number in pool["text"]
    await cases.accept(case.id, lin)
    await phone.send("/pool")
    await phone.expect("没有待受理的事项。")
    await phone.send("/tasks")
    tasks = await phone.expect("您待办的事项")
    assert case.number in tasks["text"] and "办理中" in tasks["text"]


async def test_the_pool_of_another_village_does_not_show_the_case(sandbox: Sandbox) -> None:
    await _report(await _villager(1001, "李明"), "路灯坏了")
    await _official("wu-lijuan", 9102)
    phone = sandbox.phone(9102, "吴丽娟")
    await phone.send("/pool")
    await phone.expect("没有待受理的事项。")


async def test_someone_elses_case_cannot_be_opened(sandbox: Sandbox) -> None:
    case = await _report(await _villager(1001, "李明"), "路灯坏了")
    await _villager(1002, "王芳")
    wang = sandbox.phone(1002, "王芳")
    await wang.send("/mycases")
    await wang.expect("您还没有反映过问题。")
    query = await wang.user.tap_data(wang.last(), f"c1:{case.id}:open")
    answer = await sandbox.emulator.wait_answer(query)
    assert answer["text"] == "这个按钮已失效。" and answer["show_alert"]


async def test_lists_are_for_the_right_people(sandbox: Sandbox) -> None:
    await _villager(1001, "李明")
    li = sandbox.phone(1001, "李明")
    await li.send("/tasks")
    await li.expect("这个命令是给工作人员用的。")
    stranger = sandbox.phone(1003, "Nobody", language="en")
    await stranger.send("/mycases")
    await stranger.expect("You are not registered yet.")


async def test_a_dispatcher_sees_the_township_pool_but_not_confidential_cases(
    sandbox: Sandbox,
) -> None:
    villager = await _villager(1001, "李明")
    litter = await _report(villager, "路灯坏了")
    misconduct = await _report(villager, "村干部收红包", category="misconduct")
    su = await _official("su-jinqiao", 9103)
    phone = sandbox.phone(9103, "苏进侨")
    await phone.send("/pool")
    pool = await phone.expect("待受理的事项")
    assert litter.number in pool["text"] and misconduct.number not in pool["text"]
    assert await scope.may_handle(su, litter) and await scope.may_see(su, litter)
    assert not await scope.may_handle(su, misconduct)
    assert not await scope.may_assign(su, misconduct)
    assert not await scope.may_see(su, misconduct)


def _label(message: str) -> str:
    return catalogs().text(message, "zh-hans")


async def test_a_case_opened_from_a_list_has_the_buttons_its_reader_may_use(
    sandbox: Sandbox,
) -> None:
    """The list is where an official finds a case whose card never reached them: opened
    there, it offers what they may do now, and the buttons work."""
    villager = await _villager(1001, "李明")
    case = await _report(villager, "路灯坏了")
    await _official("lin-xiuying", 9101)
    await _official("su-jinqiao", 9103)
    accept, decline, escalate, assign = (
        _label(label)
        for label in (notices.ACCEPT, notices.DECLINE, notices.ESCALATE, notices.ASSIGN)
    )

    pool_title = _label("Cases waiting to be accepted, nearest deadline first:")
    su = sandbox.phone(9103, "苏进侨")
    await su.send("/pool")
    await su.expect(pool_title)
    await su.tap(case.number)
    opened = await su.expect(f"{case.number}")
    assert buttons(opened) == [accept, decline, escalate, assign], "a dispatcher may assign"

    lin = sandbox.phone(9101, "林秀英")
    await lin.send("/pool")
    await lin.expect(pool_title)
    await lin.tap(case.number)
    opened = await lin.expect(f"{case.number}")
    assert buttons(opened) == [accept, decline, escalate], "a member: no Assign"
    await sandbox.emulator.wait_answer(await lin.tap(accept))
    assert (await Case.get(id=case.id)).status == "accepted"

    await lin.send("/tasks")
    await lin.expect(_label("Your open cases, nearest deadline first:"))
    await lin.tap(case.number)
    opened = await lin.expect(f"{case.number}")
    assert buttons(opened) == [
        _label(notices.PROGRESS_NOTE), _label(notices.INTERNAL_NOTE), _label(notices.RESOLVE),
        escalate,
    ]
    li = sandbox.phone(1001, "李明")
    await li.send("/mycases")
    await li.expect(_label("Your cases, newest first:"))
    await li.tap(case.number)
    assert buttons(await li.expect(f"{case.number}")) == [], "the villager's own view"


async def test_a_voice_report_is_heard_with_the_card_and_in_the_timeline(
    sandbox: Sandbox,
) -> None:
    villager = await _villager(1001, "李明")
    spoken = await sandbox.phone(1001, "李明").user.send_voice(12)
    voice = spoken["voice"]["file_id"]
    await _official("lin-xiuying", 9101)
    lin = sandbox.phone(9101, "林秀英")
    await lin.send("/help")
    await lin.expect("/start")
    change = await cases.report(
        villager, await Category.get(code="litter"), description="", voice_file_id=voice
    )
    case = change.case

    heard = await sandbox.emulator.wait_for(9101, lambda m: "voice" in m)
    assert heard["voice"]["file_id"] == voice and heard["voice"]["duration"] == 12
    assert case.number in heard["caption"], "the card is the voice message's caption"
    assert _label(notices.ACCEPT) in buttons(heard)

    await lin.send("/pool")
    listing = await lin.expect(case.number)
    await lin.tap(case.number)
    again = await sandbox.emulator.wait_for(
        9101, lambda m: "voice" in m, after=listing["message_id"]
    )
    assert again["voice"]["file_id"] == voice
    timeline = await lin.expect(f"{case.number}")
    assert timeline["message_id"] > again["message_id"]
    assert _label(notices.ACCEPT) in buttons(timeline)


async def test_the_timeline_shows_the_stars_of_the_rating(sandbox: Sandbox) -> None:
    villager = await _villager(1001, "Li Ming", language="en")
    case = await _report(villager, "Water hyacinth on the creek")
    lin = await _official("lin-xiuying", 9101)
    await cases.accept(case.id, lin)
    await cases.resolve(case.id, lin, "Cleared", ["F2"])
    await cases.rate(case.id, villager, 4, "Quick, thanks")
    li = sandbox.phone(1001, "Li Ming", language="en")
    await li.send("/mycases")
    await li.expect("closed")
    await li.tap(case.number)
    timeline = await li.expect(f"Case {case.number}")
    assert "rated 4 of 5\n    Quick, thanks" in timeline["text"]
    official = sandbox.phone(9101, "林秀英")
    await official.send("/help")
    await official.expect("/start")
    query = await official.user.tap_data(official.last(), f"c1:{case.id}:open")
    await sandbox.emulator.wait_answer(query)
    full = await official.expect(f"事项 {case.number}")
    assert "评价 4 星" in full["text"]
