"""After a case is reported: cards, Accept, notes, evidence, the villager's verdict, through
the emulator, with the real bot, database and outbox."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bot import cases, delivery
from bot.emulator import buttons, said
from bot.models import (
    Account,
    Case,
    CaseEvent,
    CaseStatus,
    Category,
    Delivery,
    Grid,
    Official,
    Township,
    Unit,
    Villager,
)
from bot.sandbox import Phone, Sandbox

COMMITTEE_GROUP = -1001000000101  # 正达村两委
JIWEI_GROUP = -1001000000202  # 坂里乡纪委


async def _villager(
    sandbox: Sandbox, telegram_id: int, name: str, language: str = "zh-hans",
    phone: str | None = "+8613800000001",
) -> tuple[Villager, Phone]:
    """A registered villager of Zhengda grid 1, whose private chat with the bot is open."""
    account = await Account.create(id=telegram_id, first_name=name, language=language)
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    villager = await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name=name, phone=phone,
    )
    handset = sandbox.phone(telegram_id, name, language=language)
    await handset.send("/help")
    await handset.expect("/report")
    return villager, handset


async def _official(
    sandbox: Sandbox, code: str, telegram_id: int, language: str = "zh-hans"
) -> tuple[Official, Phone]:
    """An official of the demo township, bound to a Telegram account with an open chat."""
    official = await Official.get(code=code)
    official.account = await Account.create(
        id=telegram_id, first_name=official.name, language=language
    )
    await official.save()
    handset = sandbox.phone(telegram_id, official.name, language=language)
    await handset.send("/help")
    await handset.expect("/start")
    return official, handset


async def _report(
    villager: Villager, description: str, category: str = "litter", **extra: object
) -> Case:
    change = await cases.report(
        villager, await Category.get(code=category), description=description, **extra  # type: ignore[arg-type]
    )
    delivery.wake()
    return change.case


def _has(text: str, *buttons_wanted: str):  # type: ignore[no-untyped-def]
    def match(message: dict) -> bool:
        return text in (message.get("text") or "") and all(
            b in buttons(message) for b in buttons_wanted
        )

    return match


async def _photo_file_id(handset: Phone) -> str:
    """A photo Telegram knows: sent by someone to the bot, as evidence is."""
    sent = await handset.user.send_photo()
    await handset.expect("")
    return sent["photo"][-1]["file_id"]


LOOP_TEXTS = {
    "zh-hans": {
        "accept": "✅ 受理", "decline": "↩️ 退回", "escalate": "⬆️ 上报", "assign": "👤 指派",
        "note": "💬 反馈进展", "resolve": "✔️ 办结", "taken": "办理中：林秀英已受理",
        "villager_accepted": "已由林秀英（正达村第一网格）受理", "note_prompt": "请写事项",
        "note_text": "明天一早安排保洁车", "note_done": "村民会收到通知",
        "evidence_prompt": "请至少发送一张处理后的现场照片", "photos": "照片：1 张",
        "evidence_note": "垃圾已清运，垃圾桶已清洗", "resolved": "已办结。村民会收到您的现场照片",
        "question": "问题解决了吗？", "solved": "👍 已解决", "stars_prompt": "打几颗星",
        "comment_prompt": "写几句评价", "comment": "很及时，谢谢", "closed": "已结案",
        "rated": "评价：4 星", "card_closed": "🔒 已结案，评价 4 星", "reporter": "反映人：李明",
        "accept_by": "受理期限", "resolve_by": "办结期限",
    },
    "en": {
        "accept": "✅ Accept", "decline": "↩️ Decline", "escalate": "⬆️ Escalate",
        "assign": "👤 Assign", "note": "💬 Progress note", "resolve": "✔️ Resolve",
        "taken": "Being handled by Lin Xiuying",
        "villager_accepted": "accepted by Lin Xiuying (Zhengda Grid 1)",
        "note_prompt": "Write the progress note", "note_text": "The cleaning truck comes tomorrow",
        "note_done": "the villager is told", "evidence_prompt": "send at least one photo",
        "photos": "Photos: 1.", "evidence_note": "Litter removed, bins washed",
        "resolved": "The villager gets your evidence", "question": "Is the problem solved?",
        "solved": "👍 Solved", "stars_prompt": "How do you rate", "comment_prompt": "Skip",
        "comment": None, "closed": "is closed with 4 of 5", "rated": "4 of 5",
        "card_closed": "🔒 Closed, rated 4 of 5", "reporter": "Reporter: Li Ming",
        "accept_by": "Accept by", "resolve_by": "Resolve by",
    },
}


@pytest.mark.parametrize("language", ["zh-hans", "en"])
async def test_the_whole_loop_from_card_to_rating(sandbox: Sandbox, language: str) -> None:
    words = LOOP_TEXTS[language]
    lin_official = await Official.get(code="lin-xiuying")
    lin_official.names = {**lin_official.names, "en": "Lin Xiuying"}
    await lin_official.save()
    villager, li = await _villager(
        sandbox, 1001, "李明" if language == "zh-hans" else "Li Ming", language
    )
    _, lin = await _official(sandbox, "lin-xiuying", 9101, language)
    case = await _report(villager, "村口垃圾桶满了" if language == "zh-hans" else "Bins full")

    card = await lin.expect(case.number)
    assert words["reporter"] in card["text"] and "+8613800000001" in card["text"]
    assert buttons(card) == [words["accept"], words["decline"], words["escalate"]]

    await lin.tap(words["accept"])
    taken = await sandbox.emulator.wait_for(
        9101, _has(words["taken"], words["note"], words["resolve"])
    )
    # Once taken, the card gives the deadline that counts now: to resolve, not to accept.
    assert words["resolve_by"] in taken["text"] and words["accept_by"] not in taken["text"]
    await li.expect(words["villager_accepted"])

    await lin.tap(words["note"])
    await lin.expect(words["note_prompt"])
    await lin.send(words["note_text"])
    await lin.expect(words["note_done"])
    await li.expect(words["note_text"])

    await lin.tap(words["resolve"])
    await lin.expect(words["evidence_prompt"])
    await lin.user.send_photo()
    await lin.expect(words["photos"])
    await lin.send(words["evidence_note"])
    await lin.expect(words["resolved"])

    verdict = await li.expect(words["question"])
    # One message: the evidence photo with the question as its caption, under its buttons.
    assert words["evidence_note"] in verdict["caption"]
    evidence = [m for m in sandbox.emulator.bot_messages(1001) if "photo" in m]
    assert [m["message_id"] for m in evidence] == [verdict["message_id"]]
    await li.tap(words["solved"])
    await li.expect(words["stars_prompt"])
    await li.tap("⭐⭐⭐⭐")
    await li.expect(words["comment_prompt"])
    if words["comment"]:
        await li.send(words["comment"])
    else:
        await li.tap("Skip")
    await li.expect(words["closed"])

    await lin.expect(words["rated"])
    closed = await Case.get(id=case.id)
    assert closed.status == CaseStatus.CLOSED and closed.rating == 4
    assert closed.rating_comment == words["comment"]
    await sandbox.emulator.wait_for(9101, _has(words["card_closed"]))
    actions = [e.action for e in await cases.history(case.id)]
    assert actions == ["report", "accept", "note", "resolve", "rate"]


async def test_a_card_with_a_photo_and_a_pin_is_one_message_that_rings_once(
    sandbox: Sandbox,
) -> None:
    villager, li = await _villager(sandbox, 1001, "李明")
    _, lin = await _official(sandbox, "lin-xiuying", 9101)
    photo = await _photo_file_id(li)
    before = len(sandbox.emulator.bot_messages(9101))
    case = await _report(villager, "村口垃圾桶满了", photos=[photo], latitude=28.912341,
                         longitude=118.876539)
    card = await lin.expect(case.number)
    assert card["photo"][-1]["file_id"] == photo and buttons(card)[0] == "✅ 受理"
    assert "照片：1 张" in card["caption"]
    pin = "位置：https://uri.amap.com/marker?position=118.876539,28.912341&coordinate=wgs84"
    assert pin in card["caption"]
    await sandbox.app.courier.drained()  # type: ignore[union-attr]
    arrived = sandbox.emulator.bot_messages(9101)[before:]
    assert [m["message_id"] for m in arrived] == [card["message_id"]], "one message"
    assert card["message_id"] in [
        m["message_id"] for m in sandbox.emulator.notifying_messages(9101)
    ]

    await lin.tap("✅ 受理")
    taken = await sandbox.emulator.wait_for(
        9101, lambda m: m["message_id"] == card["message_id"] and "办理中" in said(m)
    )
    assert "photo" in taken and pin in taken["caption"], "its caption edited, the photo kept"


async def test_two_officials_tap_accept_at_once_and_one_wins(sandbox: Sandbox) -> None:
    await Unit.filter(code="zhengda-committee").update(group_chat_id=None)  # private copies
    villager, _li = await _villager(sandbox, 1001, "李明")
    zheng_official, zheng = await _official(sandbox, "zheng-guohua", 9201)
    lin_official, lin = await _official(sandbox, "lin-xiuying", 9101)
    case = await _report(villager, "村道塌了一块", category="roads")
    card_zheng = await zheng.expect(case.number)
    card_lin = await lin.expect(case.number)
    assert "👤 指派" in buttons(card_zheng) and "👤 指派" not in buttons(card_lin)

    first, second = await asyncio.gather(zheng.tap("✅ 受理"), lin.tap("✅ 受理"))
    answers = [
        await sandbox.emulator.wait_answer(first),
        await sandbox.emulator.wait_answer(second),
    ]
    taken = await Case.get(id=case.id)
    winner = zheng_official if taken.assignee_id == zheng_official.id else lin_official  # type: ignore[attr-defined]
    assert taken.status == CaseStatus.ACCEPTED and taken.assignee_id in (  # type: ignore[attr-defined]
        zheng_official.id, lin_official.id,
    )
    texts = sorted(a.get("text", "") for a in answers)
    assert texts == sorted([f"您已受理事项 {case.number}。", f"已被{winner.name}受理。"])
    loser_answer = next(a for a in answers if a.get("text", "").startswith("已被"))
    assert loser_answer["show_alert"]
    assert await CaseEvent.filter(case_id=case.id, action="accept").count() == 1
    for chat in (9201, 9101):
        shown = await sandbox.emulator.wait_for(chat, _has(f"{winner.name}已受理"), newest=True)
        assert shown["message_id"] == (card_zheng if chat == 9201 else card_lin)["message_id"]
        winner_chat = winner.account_id  # type: ignore[attr-defined]
        assert ("✔️ 办结" in buttons(shown)) == (chat == winner_chat)
        assert "✅ 受理" not in buttons(shown)


async def test_forged_and_foreign_taps_change_nothing(sandbox: Sandbox) -> None:
    villager, li = await _villager(sandbox, 1001, "李明")
    _, lin = await _official(sandbox, "lin-xiuying", 9101)
    _, wu = await _official(sandbox, "wu-lijuan", 9102)
    case = await _report(villager, "村口垃圾桶满了")
    card = await lin.expect(case.number)
    banli_account = await Account.create(id=1002, first_name="王芳", language="zh-hans")
    banli_grid = await Grid.get(village__code="banli", code="g1").prefetch_related("village")
    banli_villager = await Villager.create(
        account=banli_account, township_id=banli_grid.village.township_id,  # type: ignore[attr-defined]
        village=banli_grid.village, grid=banli_grid, name="王芳",
    )
    other = await _report(banli_villager, "别村的案件")

    async def alert(handset: Phone, data: str, message: dict | None = None) -> str:
        query = await handset.user.tap_data(message or handset.last(), data)
        answer = await sandbox.emulator.wait_answer(query)
        assert answer["show_alert"]
        return answer["text"]

    assert await alert(li, f"c1:{case.id}:accept") == "这个按钮是给工作人员用的。"
    assert await alert(wu, f"c1:{case.id}:accept") == (
        "这个事项现在由正达村第一网格办理，您不能操作。"
    )
    assert await alert(lin, f"c1:{other.id}:accept", card) == (
        "这个事项现在由坂里村第一网格办理，您不能操作。"
    )
    assert await alert(lin, "c1:999999:accept", card) == "这个按钮已失效。"
    assert await alert(lin, f"a1:{case.id}:{(await Official.get(code='lin-xiuying')).id}:24",
                       card) == "只有调度员或事项所在单位的单位负责人可以指派。"
    assert await alert(lin, f"c1:{case.id}:resolve", card) == (
        "只有承办这个事项的工作人员可以这样做。"
    )
    assert await alert(lin, f"c1:{case.id}:solved", card) == (
        "只有反映这个事项的村民可以这样做。"
    )
    assert await alert(li, f"c1:{case.id}:solved") == "事项已有新变化，这个按钮不能再用了。"
    assert await alert(li, f"s1:{case.id}:5") == "事项已有新变化，这个按钮不能再用了。"
    for unchanged in (case, other):
        fresh = await Case.get(id=unchanged.id)
        assert fresh.status == CaseStatus.NEW and fresh.version == 0


async def test_decline_goes_up_and_the_dispatcher_assigns_with_a_deadline(
    sandbox: Sandbox,
) -> None:
    group = sandbox.emulator.group(COMMITTEE_GROUP, "正达村两委")
    villager, li = await _villager(sandbox, 1001, "李明")
    zheng_official, zheng = await _official(sandbox, "zheng-guohua", 9201)
    _, su = await _official(sandbox, "su-jinqiao", 9002)
    lin_official, lin = await _official(sandbox, "lin-xiuying", 9101)
    case = await _report(villager, "村道塌了一块", category="roads")
    card = await sandbox.emulator.wait_for(group.chat_id, case.number)
    assert buttons(card) == ["✅ 受理", "↩️ 退回", "⬆️ 上报", "👤 指派"]
    assert "反映人：李明，+8613800000001" in card["text"]
    assert not [m for m in sandbox.emulator.bot_messages(9101) if case.number in m["text"]]

    query = await zheng.user.tap(card, "↩️ 退回", chat=group.chat_id)
    assert (await sandbox.emulator.wait_answer(query))["text"] == "我在私聊里问您了。"
    await zheng.expect(f"为什么退回事项 {case.number}")
    await zheng.send("路面塌陷要乡里安排工程队")
    await zheng.expect(f"已退回。事项 {case.number} 已转到正达村组团联村。")
    moved = await Case.get(id=case.id)
    team = await Unit.get(code="zhengda-team")
    assert moved.unit_id == team.id and moved.status == CaseStatus.NEW  # type: ignore[attr-defined]
    assert moved.escalation_level == 1

    old = await sandbox.emulator.wait_for(group.chat_id, "➡️ 已转交正达村组团联村，待受理")
    assert old["message_id"] == card["message_id"] and buttons(old) == []
    # The committee no longer handles it: its copy no longer shows who reported it.
    assert "李明" not in old["text"] and "+8613800000001" not in old["text"]
    await li.expect("已转交正达村组团联村办理")
    new_card = await su.expect(case.number)
    assert "↩️ 正达村两委退回：路面塌陷要乡里安排工程队" in new_card["text"]
    assert "👤 指派" in buttons(new_card)

    stale = await zheng.user.tap_data(old, f"c1:{case.id}:accept", chat=group.chat_id)
    stale_answer = await sandbox.emulator.wait_answer(stale)
    assert stale_answer["text"] == "这个事项现在由正达村组团联村办理，您不能操作。"
    assert (await Case.get(id=case.id)).version == moved.version

    await su.tap("👤 指派")
    offer = await su.expect(f"事项 {case.number} 指派给谁？")
    # Whoever just declined it is not offered it back.
    assert "林秀英" in buttons(offer) and "郑国华" not in buttons(offer)
    with pytest.raises(cases.CaseRefused):
        await cases.assign(case.id, await Official.get(code="su-jinqiao"), zheng_official,
                           cases.now() + timedelta(days=1))
    await su.tap("林秀英")
    await sandbox.emulator.wait_for(9002, "指派给林秀英：限期多久？", newest=True)
    before = cases.now()
    await su.tap("1天")
    await sandbox.emulator.wait_for(9002, "已指派给林秀英", newest=True)
    assigned = await Case.get(id=case.id)
    assert assigned.status == CaseStatus.ACCEPTED
    assert assigned.assignee_id == lin_official.id  # type: ignore[attr-defined]
    assert assigned.resolve_by is not None
    assert before + timedelta(hours=23) < assigned.resolve_by < cases.now() + timedelta(hours=25)
    await lin.expect("苏进侨将这个事项指派给您")
    assert "✔️ 办结" in buttons(lin.last())
    await li.expect("现由林秀英办理")
    await sandbox.emulator.wait_for(9002, _has("林秀英已受理"), newest=True)
    assert zheng_official.id != lin_official.id


async def test_escalate_with_an_optional_note(sandbox: Sandbox) -> None:
    group = sandbox.emulator.group(COMMITTEE_GROUP, "正达村两委")
    villager, li = await _villager(sandbox, 1001, "李明")
    _, lin = await _official(sandbox, "lin-xiuying", 9101)
    case = await _report(villager, "河边堆了很多垃圾")
    await lin.expect(case.number)
    await lin.tap("⬆️ 上报")
    await lin.expect("上报上级单位")
    await lin.tap("跳过")
    await lin.expect(f"已上报上级。事项 {case.number} 已转到正达村两委。")
    card = await sandbox.emulator.wait_for(group.chat_id, case.number)
    assert "⬆️ 正达村第一网格上报上级" in card["text"] and "✅ 受理" in buttons(card)
    await li.expect("已转交正达村两委办理")
    event = await CaseEvent.filter(case_id=case.id, action="escalate").first()
    assert event is not None and event.note is None


async def test_not_solved_reopens_with_the_same_assignee(sandbox: Sandbox) -> None:
    villager, li = await _villager(sandbox, 1001, "李明")
    lin_official, lin = await _official(sandbox, "lin-xiuying", 9101)
    case = await _report(villager, "村口垃圾桶满了")
    await lin.expect(case.number)
    photo = await _photo_file_id(lin)
    await cases.accept(case.id, lin_official)
    await cases.resolve(case.id, lin_official, "已清运", [photo])
    delivery.wake()
    await li.expect("问题解决了吗？")
    await li.tap("👎 没解决")
    await li.expect("还有什么问题")
    await li.send("第二天又满了")
    await li.expect("已重办")
    reopened = await Case.get(id=case.id)
    assert reopened.status == CaseStatus.ACCEPTED and reopened.reopen_count == 1
    assert reopened.assignee_id == lin_official.id  # type: ignore[attr-defined]
    told = await lin.expect("没有解决：第二天又满了")
    assert "✔️ 办结" in buttons(told)


async def _resolving(sandbox: Sandbox) -> tuple[Case, Phone]:
    """Li Ming's case accepted by Lin Xiuying, who has tapped Resolve and is asked for evidence."""
    villager, _li = await _villager(sandbox, 1001, "李明")
    lin_official, lin = await _official(sandbox, "lin-xiuying", 9101)
    case = await _report(villager, "村口垃圾桶满了")
    await lin.expect(case.number)
    await cases.accept(case.id, lin_official)
    delivery.wake()
    await sandbox.emulator.wait_for(9101, _has("林秀英已受理", "✔️ 办结"))
    await lin.tap("✔️ 办结")
    await lin.expect("办结事项")
    return case, lin


async def test_resolve_without_a_photo_is_refused(sandbox: Sandbox) -> None:
    case, lin = await _resolving(sandbox)
    await lin.send("已经处理好了")
    await lin.expect("办结需要现场照片和说明：至少一张处理后的现场照片和一段说明。")
    unchanged = await Case.get(id=case.id)
    assert unchanged.status == CaseStatus.ACCEPTED and unchanged.resolved_at is None
    assert not await CaseEvent.filter(case_id=case.id, action="resolve").exists()
    await lin.user.send_photo()
    done = await lin.expect("照片：1 张。说明：已经处理好了")
    assert "✅ 完成" in buttons(done)
    await lin.tap("✅ 完成")
    await lin.expect("已办结")
    assert (await Case.get(id=case.id)).status == CaseStatus.RESOLVED


@pytest.mark.parametrize("anonymous", [True, False])
async def test_a_misconduct_report_reaches_only_the_discipline_office(
    sandbox: Sandbox, anonymous: bool
) -> None:
    committee = sandbox.emulator.group(COMMITTEE_GROUP, "正达村两委")
    jiwei = sandbox.emulator.group(JIWEI_GROUP, "坂里乡纪委")
    villager, _li = await _villager(sandbox, 1001, "李明")
    await _official(sandbox, "lin-xiuying", 9101)
    await _official(sandbox, "zheng-guohua", 9201)
    await _official(sandbox, "wang-qing", 9301)
    case = await _report(villager, "村干部吃拿卡要", category="misconduct", anonymous=anonymous)
    assert case.unit_id == (await Unit.get(code="jiwei")).id  # type: ignore[attr-defined]
    card = await sandbox.emulator.wait_for(jiwei.chat_id, case.number)
    if anonymous:
        assert "反映人：匿名" in card["text"]
        assert "李明" not in card["text"] and "+8613800000001" not in card["text"]
    else:
        assert "反映人：李明，+8613800000001" in card["text"]
    # The discipline office has no unit above it: nothing to decline or escalate to.
    assert buttons(card) == ["✅ 受理", "👤 指派"]
    chats = set(await Delivery.filter(case_id=case.id).values_list("chat_id", flat=True))
    assert chats == {jiwei.chat_id, 1001}, "the office, and the reporter's confirmation"
    assert not [m for m in committee.messages() if case.number in (m.get("text") or "")]
    for private in (9101, 9201, 9301):
        assert not [
            m for m in sandbox.emulator.bot_messages(private) if case.number in m["text"]
        ]


async def test_the_assign_list_of_a_confidential_case_offers_only_who_may_see_it(
    sandbox: Sandbox,
) -> None:
    jiwei = sandbox.emulator.group(JIWEI_GROUP, "坂里乡纪委")
    villager, _li = await _villager(sandbox, 1001, "李明")
    wang_official, wang = await _official(sandbox, "wang-qing", 9301)
    lin_official, _lin = await _official(sandbox, "lin-xiuying", 9101)
    await _official(sandbox, "zheng-guohua", 9201)
    await _official(sandbox, "su-jinqiao", 9002)
    case = await _report(villager, "村干部吃拿卡要", category="misconduct")
    card = await sandbox.emulator.wait_for(jiwei.chat_id, case.number)
    await wang.user.tap(card, "👤 指派", chat=jiwei.chat_id)
    offer = await wang.expect(f"事项 {case.number} 指派给谁？")
    # Not the officials of the reporter's village, nor the township's dispatcher.
    assert buttons(offer) == ["王清"]
    with pytest.raises(cases.CaseRefused):
        await cases.assign(case.id, wang_official, lin_official, cases.now() + timedelta(days=1))
    assert (await Case.get(id=case.id)).status == CaseStatus.NEW


async def test_group_cards_speak_default_language_when_the_directory_names_none(
    database_url: str, tmp_path: Path
) -> None:
    """A directory whose township says no `language:`, imported under DEFAULT_LANGUAGE=en: the
    township's groups read English cards."""
    from bot.sandbox import EXAMPLE_DIRECTORY

    text = EXAMPLE_DIRECTORY.read_text(encoding="utf-8")
    assert "\n  language: zh-hans" in text
    directory = tmp_path / "directory.yaml"
    directory.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("  language:")),
        encoding="utf-8",
    )
    async with Sandbox(database_url, directory=directory, default_language="en") as sandbox:
        assert (await Township.get(code="BL")).language == "en"
        group = sandbox.emulator.group(COMMITTEE_GROUP, "正达村两委")
        villager, _li = await _villager(sandbox, 1001, "李明")
        case = await _report(villager, "村道塌了一块", category="roads")
        card = await sandbox.emulator.wait_for(group.chat_id, case.number)
    assert f"📋 Case {case.number}" in card["text"] and "Category: Road repair" in card["text"]
    assert buttons(card) == ["✅ Accept", "↩️ Decline", "⬆️ Escalate", "👤 Assign"]


async def test_group_cards_speak_the_townships_language(sandbox: Sandbox) -> None:
    await Township.filter(code="BL").update(language="en")
    group = sandbox.emulator.group(COMMITTEE_GROUP, "正达村两委")
    villager, _li = await _villager(sandbox, 1001, "李明")
    case = await _report(villager, "村道塌了一块", category="roads")
    card = await sandbox.emulator.wait_for(group.chat_id, case.number)
    assert f"📋 Case {case.number}" in card["text"] and "Category: Road repair" in card["text"]
    assert buttons(card) == ["✅ Accept", "↩️ Decline", "⬆️ Escalate", "👤 Assign"]
