"""Public notices (通知公告): posted by an official, delivered once to each villager of the
audience through the outbox, listed by villagers, withdrawn; through the real bot and the
Bot API emulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import yaml
from conftest import TEST_REDIS_URL
from tortoise.transactions import in_transaction

from bot import delivery, public_notices
from bot.callbacks import OpenNotice, WithdrawNotice
from bot.directory import (
    DirectoryError,
    dump_yaml,
    export_directory,
    import_directory,
    load_directory,
)
from bot.emulator import buttons
from bot.models import (
    Account,
    Audience,
    Case,
    Delivery,
    Grid,
    Notice,
    NoticeKind,
    Official,
    Township,
    Village,
    Villager,
)
from bot.sandbox import EXAMPLE_DIRECTORY, Phone, Sandbox

POSTER = 5001


@pytest.fixture
async def fast(database_url: str) -> AsyncIterator[Sandbox]:
    """The sandbox with the courier allowed far more than Telegram's 30 a second (the
    emulator's limits are off): a broadcast to thousands takes seconds, not minutes."""
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    async with Sandbox(
        database_url, redis_url=TEST_REDIS_URL or None, messages_per_second=3000
    ) as running:
        yield running


async def _official(sandbox: Sandbox, code: str, telegram_id: int, language: str) -> Phone:
    official = await Official.get(code=code)
    official.account = await Account.create(
        id=telegram_id, first_name=official.name, language=language, language_chosen=True
    )
    await official.save()
    phone = sandbox.phone(telegram_id, official.name, language=language)
    await phone.send("/help")
    await phone.expect("/start")
    return phone


async def _villagers(
    sandbox: Sandbox, first_id: int, count: int, village: str, grid: str = "g1",
    language: str = "zh-hans",
) -> list[int]:
    """`count` registered villagers made directly in the database, each with an open chat."""
    g = await Grid.get(village__code=village, code=grid).prefetch_related("village")
    ids = list(range(first_id, first_id + count))
    async with in_transaction():
        await Account.bulk_create(
            [Account(id=i, first_name=f"村民{i}", language=language) for i in ids],
            batch_size=500,
        )
        await Villager.bulk_create(
            [
                Villager(
                    account_id=i, township_id=g.village.township_id,  # type: ignore[attr-defined]
                    village_id=g.village_id, grid_id=g.id, name=f"村民{i}",  # type: ignore[attr-defined]
                )
                for i in ids
            ],
            batch_size=500,
        )
    for i in ids:
        sandbox.emulator._user_chat(sandbox.emulator.user(i, f"村民{i}"), None)
    return ids


async def _villager(sandbox: Sandbox, telegram_id: int, village: str, language: str) -> Phone:
    await _villagers(sandbox, telegram_id, 1, village, language=language)
    phone = sandbox.phone(telegram_id, f"村民{telegram_id}", language=language)
    await phone.send("/start")
    await phone.expect(f"村民{telegram_id}")
    return phone


async def _post_to_village(
    poster: Phone, village_label: str, *, count: int, title: str = "2026年上半年村级财务公开"
) -> dict:
    """Drive /notice to the preview and confirm; returns the confirmation message."""
    await poster.send("/notice")
    await poster.expect("请点通知类别")
    await poster.tap("财务公开")
    await poster.expect("请发送标题")
    await poster.send(title)
    await poster.expect("请发送通知正文")
    await poster.send("收入 12 万元，支出 9 万元，明细见附件。")
    await poster.expect("然后点“完成”")
    await poster.tap("✅ 完成")
    await poster.expect("发给谁")
    await poster.tap("点选几个村")
    await poster.expect("请点要发送的村")
    await poster.tap(village_label)
    await poster.emulator.wait_for(
        poster.chat_id, lambda m: f"✅ {village_label}" in buttons(m), newest=True
    )
    await poster.tap("➡️ 继续")
    await poster.expect(f"将发给 {count} 位村民")
    await poster.tap("✅ 确认发出")
    return await poster.expect(f"通知正在发给 {count} 位村民")


def _notice_messages(sandbox: Sandbox, chat_id: int, title: str) -> list[dict]:
    return [m for m in sandbox.emulator.bot_messages(chat_id) if title in (m.get("text") or "")]


@pytest.fixture
async def paced(database_url: str) -> AsyncIterator[Sandbox]:
    """The courier at ten times Telegram's 30 a second (the emulator's limits are off, and
    the per-chat limits scale with it): a broadcast to 2,000 lasts several seconds, long
    enough for a villager to report while it goes, short enough for the suite."""
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    async with Sandbox(
        database_url, redis_url=TEST_REDIS_URL or None, messages_per_second=BROADCAST_RATE
    ) as running:
        yield running


BROADCAST_RATE = 300
LI, LIN = 1001, 9101  # a villager of 正达村 grid 1, and that grid's member (no group chat)
#: How long, in wall time, a case card may take from the Submit tap to the official's chat
#: while the broadcast goes: the card and the villager's answers do not queue behind it.
CARD_WITHIN = 5.0


async def _draft_at_summary(sandbox: Sandbox) -> Phone:
    """李明 of 正达村 grid 1, registered, with a litter report waiting at its summary."""
    li = await _villager(sandbox, LI, "zhengda", "zh-hans")
    await li.press("📝 我要反映问题")
    await li.tap("环境卫生")
    await li.tap("卫生清理")
    await li.expect("请描述问题")
    await li.send("村口垃圾堆三天没人清理")
    await li.expect("照片能帮助工作人员了解情况")
    await li.tap("✅ 完成")
    await li.expect("不需要位置？点“跳过”。")
    await li.tap("跳过")
    await li.expect("请核对您的反映内容")
    return li


async def test_a_notice_to_one_village_reaches_exactly_its_villagers_once_before_nothing_else(
    paced: Sandbox,
) -> None:
    """2,000 villagers of 坂里村 get it once; 正达村's do not; a villager of 正达村 taps Submit
    while it goes out, and the case card reaches the grid's official within seconds, long
    before the broadcast ends; the poster hears the count."""
    sandbox = paced
    emulator = sandbox.emulator
    arrived: list[tuple[int, str]] = []
    emulator.on_bot_message(
        lambda chat_id, message, edited: None if edited else arrived.append(
            (chat_id, message.get("text") or "")
        )
    )
    poster = await _official(sandbox, "su-jinqiao", POSTER, "zh-hans")
    await _official(sandbox, "lin-xiuying", LIN, "zh-hans")
    banli = await _villagers(sandbox, 100_000, 2000, "banli")
    zhengda = await _villagers(sandbox, 200_000, 30, "zhengda")
    li = await _draft_at_summary(sandbox)

    await _post_to_village(poster, "坂里村", count=2000)
    await emulator.wait_for(banli[0], "财务公开", timeout=10)
    submitted = time.monotonic()
    await li.tap("✅ 提交")
    card = await emulator.wait_for(LIN, "村口垃圾堆三天没人清理", timeout=CARD_WITHIN)
    took = time.monotonic() - submitted
    assert took < CARD_WITHIN, f"the card took {took:.1f} s"
    case = await Case.get()
    assert case.number in card["text"] and "📋" in card["text"]
    await li.expect(f"您的事项编号：{case.number}", timeout=CARD_WITHIN)

    await poster.expect("已送达 2000 位村民", timeout=60)
    banli_chats = set(banli)
    card_at = next(
        i for i, (chat, said) in enumerate(arrived) if chat == LIN and case.number in said
    )
    before_card = sum(1 for chat, _said in arrived[:card_at] if chat in banli_chats)
    assert before_card < 1000, "the card went out while most of the broadcast still waited"
    title = "2026年上半年村级财务公开"
    for chat_id in banli:
        assert len(_notice_messages(sandbox, chat_id, title)) == 1
    for chat_id in zhengda:
        assert not emulator.bot_messages(chat_id)
    assert not _notice_messages(sandbox, LI, title), "李明 lives in 正达村"
    notice = await Notice.get(title=title)
    assert notice.reach == 2000 and notice.reported_at is not None
    assert await Delivery.filter(key__startswith=f"notice:{notice.id}:").count() == 2000
    assert await Delivery.filter(priority=delivery.BROADCAST, sent_at__isnull=True).count() == 0
    report = poster.last()["text"]
    assert "村民1000" not in report and "屏蔽" not in report, "numbers only; none blocked"


async def test_a_restart_mid_broadcast_delivers_no_one_twice(fast: Sandbox) -> None:
    sandbox = fast
    poster = await _official(sandbox, "su-jinqiao", POSTER, "zh-hans")
    banli = await _villagers(sandbox, 100_000, 400, "banli")
    assert sandbox.app is not None
    await _post_to_village(poster, "坂里村", count=400, title="停水通知")
    while sandbox.app.courier.sent < 40:
        await asyncio.sleep(0.01)
    await sandbox.restart_bot()
    await poster.expect("已送达 400 位村民", timeout=60)
    for chat_id in banli:
        assert len(_notice_messages(sandbox, chat_id, "停水通知")) == 1
    assert sandbox.emulator.stats.requests["sendMessage"] >= 400


async def test_blocked_villagers_are_counted_apart(sandbox: Sandbox) -> None:
    poster = await _official(sandbox, "su-jinqiao", POSTER, "en")
    banli = await _villagers(sandbox, 100_000, 5, "banli")
    for chat_id in banli[:2]:
        sandbox.emulator.user(chat_id).block_bot()
    await poster.send("/notice")
    await poster.expect("What kind is it?")
    await poster.tap("General")
    await poster.expect("Send the title")
    await poster.send("Road closed")
    await poster.expect("Send the text")
    await poster.send("The bridge road is closed on Monday.")
    await poster.expect("then tap Done")
    await poster.tap("✅ Done")
    await poster.tap("One grid")
    await poster.tap("Banli Village")
    await poster.tap("Grid 1")
    await poster.expect("It will reach 5 villagers")
    await poster.tap("✅ Confirm")
    await poster.expect("Delivered to 3 villagers.", timeout=15)
    assert "2 could not be reached: they blocked the bot." in poster.last()["text"]


async def test_a_member_without_the_right_role_is_refused(sandbox: Sandbox) -> None:
    member = await _official(sandbox, "lin-xiuying", POSTER, "zh-hant")
    await member.send("/notice")
    await member.expect("您的角色不能發布通知公告。")
    assert await Notice.all().count() == 0


async def test_the_directory_decides_which_roles_may_post(sandbox: Sandbox) -> None:
    await Township.filter(code="BL").update(notice_roles=["admin"])
    leader = await _official(sandbox, "huang-likun", POSTER, "en")
    await leader.send("/notice")
    await leader.expect("Your role may not post public notices.")


async def test_villagers_list_notices_and_see_a_withdrawn_one_as_withdrawn(
    sandbox: Sandbox,
) -> None:
    poster = await _official(sandbox, "su-jinqiao", POSTER, "zh-hans")
    li = await _villager(sandbox, 3001, "banli", "zh-hans")
    anna = await _villager(sandbox, 3002, "banli", "en")
    other = await _villager(sandbox, 3003, "zhengda", "zh-hant")

    # A notice with a photo and a document, to 坂里村.
    await poster.send("/notice")
    await poster.tap("村务公开")
    await poster.expect("请发送标题")
    await poster.send("村道修缮公示")
    await poster.expect("请发送通知正文")
    await poster.send("村道修缮工程已完工，欢迎监督。")
    await poster.expect("然后点“完成”")
    await poster.user.send_photo()
    await poster.expect("照片已加上（1 张）")
    await poster.user.send_document("账目.pdf")
    await poster.expect("文件已加上")
    await poster.user.send_document("第二份.pdf")
    await poster.expect("一条通知只能附一个文件")
    await poster.tap("✅ 完成")
    await poster.tap("点选几个村")
    await poster.tap("坂里村")
    await poster.emulator.wait_for(POSTER, lambda m: "✅ 坂里村" in buttons(m), newest=True)
    await poster.tap("➡️ 继续")
    await poster.expect("将发给 2 位村民")
    await poster.tap("✅ 确认发出")
    await poster.expect("已送达 2 位村民", timeout=15)

    received = await anna.expect("📢 Public notice · Village affairs")
    assert "📎 Photos and document" in buttons(received)
    await li.expect("📢 通知公告 · 村务公开")
    await li.press("📢 通知公告")
    await li.expect("通知公告（最新的在前）")
    await li.tap("1")
    await li.expect("村道修缮工程已完工")
    await sandbox.emulator.wait_for(li.chat_id, lambda m: "photo" in m)
    document = await sandbox.emulator.wait_for(li.chat_id, lambda m: "document" in m)
    li.seen = document["message_id"]
    await other.send("/notices")
    await other.expect("還沒有通知公告。")

    await poster.tap("⛔ 撤回")
    await poster.expect("已撤回：“村道修缮公示”")
    assert (await Notice.get(title="村道修缮公示")).withdrawn_at is not None
    await anna.tap("📎 Photos and document")
    opened = await anna.expect("⛔ This notice was withdrawn.")
    assert "欢迎监督" not in opened["text"]
    await anna.send("/notices")
    await anna.expect("(withdrawn)")


async def test_a_villager_cannot_withdraw_or_open_another_villages_notice(
    sandbox: Sandbox,
) -> None:
    township = await Township.get(code="BL")
    banli = await Village.get(code="banli")
    poster = await Account.create(id=POSTER, first_name="苏", language="zh-hans")
    notice = await public_notices.publish(
        public_notices.Target(township.id, Audience.VILLAGES, [banli.id]), poster,
        kind=NoticeKind.GENERAL, title="秋收通知", body="请注意天气。",
    )
    assert notice.reach == 0
    other = await _villager(sandbox, 3003, "zhengda", "zh-hans")
    await other.send("/notices")
    await other.expect("还没有通知公告。")
    async def alert(data: str) -> str:
        query = await other.user.tap_data(other.last(), data)
        answer = await sandbox.emulator.wait_answer(query)
        assert answer["show_alert"]
        return str(answer["text"])

    assert await alert(OpenNotice(notice_id=notice.id).pack()) == "这个按钮已失效。"
    assert await alert(WithdrawNotice(notice_id=notice.id).pack()) == "只有发布人或管理员可以撤回。"
    assert (await Notice.get(id=notice.id)).withdrawn_at is None


async def test_bad_input_is_answered_in_the_users_language(sandbox: Sandbox) -> None:
    poster = await _official(sandbox, "su-jinqiao", POSTER, "en")
    await poster.send("/notice")
    await poster.tap("Finances")
    await poster.expect("Send the title")
    await poster.send("\u200b \u200b")
    await poster.expect("The title cannot be empty.")
    await poster.send("x" * (public_notices.TITLE_MAX + 1))
    await poster.expect("The title is too long")
    await poster.send("Accounts")
    await poster.expect("Send the text")
    await poster.send("y" * (public_notices.BODY_MAX + 1))
    await poster.expect("The text is too long: at most 3000 characters.")
    await poster.send("The accounts of the first half.")
    await poster.expect("then tap Done")
    await poster.user.send_document(
        "big.pdf", data=b"%PDF" + b"0" * (public_notices.DOCUMENT_MAX_BYTES + 1)
    )
    await poster.expect("The file is too big: at most 20 MB.")
    await poster.tap("✅ Done")
    await poster.tap("Choose villages")
    await poster.tap("➡️ Continue")
    await poster.tap("The whole township", timeout=5)
    await poster.expect("It will reach 0 villagers")
    await poster.tap("✖️ Cancel")
    await poster.expect("Cancelled. Nothing was sent.")
    assert await Notice.all().count() == 0


def _directory_problems(roles: object) -> list[str]:
    data = yaml.safe_load(EXAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    data["township"]["notice_roles"] = roles
    with pytest.raises(DirectoryError) as caught:
        load_directory(dump_yaml(data))
    return caught.value.problems


def test_the_directory_checks_notice_roles() -> None:
    assert _directory_problems([]) == ["township.notice_roles: must name at least one role"]
    assert _directory_problems(["leader", "leader"]) == [
        "township.notice_roles: names a role twice"
    ]
    assert len(_directory_problems(["mayor"])) == 1


async def test_notice_roles_are_imported_and_exported(database: str) -> None:
    data = yaml.safe_load(EXAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    await import_directory(load_directory(dump_yaml(data)))
    assert (await Township.get(code="BL")).notice_roles == ["leader", "dispatcher", "admin"]
    assert "notice_roles" not in (await export_directory("BL"))["township"], "the default"
    data["township"]["notice_roles"] = ["admin", "member"]
    await import_directory(load_directory(dump_yaml(data)))
    assert (await Township.get(code="BL")).notice_roles == ["admin", "member"]
    assert (await export_directory("BL"))["township"]["notice_roles"] == ["admin", "member"]
