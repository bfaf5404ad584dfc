"""Villager registration, profile and language, end to end through the emulator."""

from __future__ import annotations

import asyncio

import pytest

from bot.models import Account, Villager
from bot.sandbox import Sandbox


async def test_a_villager_registers_in_simplified_chinese(sandbox: Sandbox) -> None:
    li = sandbox.phone(1001, "李明", language="zh-hans")
    await li.send("/start")
    await li.expect("您住在哪个村？")
    await li.tap("正达村")
    await li.expect("您家属于哪个网格？")
    await li.tap("第一网格")
    await li.expect("请告诉我您的姓名")
    await li.send("李明")
    await li.expect("分享手机号码")
    await li.share_contact("+86 138 0000 1001")
    done = await li.expect("谢谢您，李明！您已登记为正达村村民。")
    assert "👤 我的信息" in sandbox.emulator.reply_keyboard(1001), "the main menu is shown"
    assert done

    villager = await Villager.get(account_id=1001).prefetch_related("village", "grid")
    assert (villager.name, villager.village.name, villager.grid.name) == (
        "李明", "正达村", "第一网格"
    )
    assert villager.phone == "+8613800001001"
    menu = sandbox.emulator.commands({"type": "chat", "chat_id": 1001})
    assert [c["command"] for c in menu] == [
        "start", "report", "mycases", "ask", "notices", "profile", "language", "help"
    ]
    assert menu[0]["description"] == "开始或返回主菜单"


async def test_a_villager_registers_in_english_without_grid_or_phone(sandbox: Sandbox) -> None:
    anna = sandbox.phone(1002, "Anna", language="en-US")
    await anna.send("/start")
    await anna.expect("Which village do you live in?")
    await anna.tap("Zhengda Village")
    await anna.tap("I don't know")
    await anna.expect("What is your name?")
    await anna.send("  Anna   Li ")
    await anna.press("Skip")
    await anna.expect("Thank you, Anna Li! You are registered in Zhengda Village.")
    villager = await Villager.get(account_id=1002)
    assert (villager.grid_id, villager.phone, villager.name) == (None, None, "Anna Li")  # type: ignore[attr-defined]
    assert (await Account.get(id=1002)).language == "en"


async def test_a_registered_villager_is_not_asked_again(sandbox: Sandbox) -> None:
    li = await _registered(sandbox)
    await li.send("/start")
    await li.expect("欢迎回来，李明！")
    assert await Villager.filter(account_id=1001).count() == 1


async def test_traditional_chinese_follows_telegram(sandbox: Sandbox) -> None:
    wang = sandbox.phone(1003, "王", language="zh-TW")
    await wang.send("/start")
    await wang.expect("您住在哪個村？")


async def test_bad_input_is_reprompted_and_changes_nothing(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    li = sandbox.phone(1001, "李明")
    await li.send("/start")
    await li.expect("您住在哪个村？")
    await li.send("正达村")  # typed instead of tapped
    await li.expect("请点上面的一个按钮。")
    await li.user.send_sticker()
    await li.expect("请点上面的一个按钮。")
    await li.tap("正达村")
    await li.tap("第一网格")
    await li.expect("请告诉我您的姓名")
    await li.send("长" * 65)  # too long
    await li.expect("最多 64 个字")
    await li.user.send_photo()
    await li.expect("请用文字发送您的姓名")
    await li.send("李明")
    await li.expect("分享手机号码")
    await li.share_contact("+8613911112222", own=False)  # someone else's card
    await li.expect("分享您本人的号码")
    await li.send("13911112222")
    await li.expect("请用下面的按钮分享号码")
    assert not await Villager.exists(account_id=1001)
    await li.press("跳过")
    await li.expect("您已登记")
    assert (await Villager.get(account_id=1001)).phone is None
    # a button from an earlier step is stale now
    village_question = next(
        m for m in emulator.bot_messages(1001) if "村：" in (m.get("text") or "")
    )
    query = await li.user.tap_data(village_question, "v1:999999")
    answer = await sandbox.emulator.wait_answer(query)
    assert answer["show_alert"] and answer["text"] == "这个按钮已失效。"


async def test_unknown_commands_and_stray_messages_get_an_answer(sandbox: Sandbox) -> None:
    li = await _registered(sandbox)
    await li.send("/frobnicate")
    await li.expect("没有 /frobnicate 这个命令")
    await li.send("hello?")
    await li.expect("没有看懂您的意思")
    await li.user.send_voice()
    await li.expect("这里处理不了这类消息")
    stranger = sandbox.phone(1099, "路人")
    await stranger.send("你好")
    await stranger.expect("请先发送 /start 完成登记。")


async def test_forged_buttons_change_nothing(sandbox: Sandbox) -> None:
    li = await _registered(sandbox)
    await li.send("/start")
    message = await li.expect("欢迎回来")
    for forged in ("v1:1", "i1:1", "zz:1", "g1:not-a-number", "p1:password"):
        query = await li.user.tap_data(message, forged)
        answer = await sandbox.emulator.wait_answer(query)
        assert answer["text"] == "这个按钮已失效。", forged
    villager = await Villager.get(account_id=1001).prefetch_related("village")
    assert villager.village.name == "正达村"


async def test_profile_changes_name_village_and_language(sandbox: Sandbox) -> None:
    li = await _registered(sandbox)
    await li.send("/profile")
    await li.expect("姓名：李明")
    await li.tap("修改姓名")
    await li.expect("请告诉我您的姓名")
    await li.send("李小明")
    await li.expect("已保存。")
    await li.press("👤 我的信息")
    await li.expect("姓名：李小明")
    await li.tap("修改村或网格")
    await li.tap("坂里村")
    await li.tap("不清楚")
    await li.expect("已保存。")
    villager = await Villager.get(account_id=1001).prefetch_related("village")
    assert (villager.village.name, villager.grid_id) == ("坂里村", None)  # type: ignore[attr-defined]
    await li.send("/language")
    await li.tap("English")
    await li.expect("From now on I will speak English.")
    await li.send("/profile")
    await li.expect("Name: 李小明")
    account = await Account.get(id=1001)
    assert (account.language, account.language_chosen) == ("en", True)
    menu = sandbox.emulator.commands({"type": "chat", "chat_id": 1001})
    assert menu[0]["description"] == "Start or return to the main menu"


async def test_a_command_in_a_group_points_to_the_private_chat(sandbox: Sandbox) -> None:
    group = sandbox.emulator.group(-100777, "正达村两委")
    li = sandbox.emulator.user(1001, "李明", language_code="zh-hans")
    await li.send_text("/start", chat=group.chat_id if hasattr(group, "chat_id") else -100777)
    reply = await sandbox.emulator.wait_for(-100777, "请私聊我")
    assert "@villagebot" in reply["text"]
    await li.send_text("大家好", chat=-100777)
    await li.send_text("/help@otherbot", chat=-100777)
    await li.send_text("/help", chat=-100777)
    await sandbox.emulator.wait_for(-100777, "请私聊我", after=reply["message_id"])
    assert len(sandbox.emulator.bot_messages(-100777)) == 2


async def test_a_half_finished_registration_survives_a_restart(sandbox: Sandbox) -> None:
    li = sandbox.phone(1001, "李明")
    await li.send("/start")
    await li.tap("正达村")
    await li.tap("第一网格")
    await li.expect("请告诉我您的姓名")
    await sandbox.restart_bot()
    await li.send("李明")
    await li.expect("分享手机号码")
    await li.press("跳过")
    await li.expect("您已登记为正达村村民")


async def test_a_conversation_goes_on_when_redis_drops_its_connections(sandbox: Sandbox) -> None:
    """Redis restarted, or idle connections closed: the next step is not an apology."""
    from conftest import TEST_REDIS_URL

    if not TEST_REDIS_URL:
        pytest.skip("needs VILLAGEBOT_TEST_REDIS_URL")
    from redis.asyncio import Redis

    li = sandbox.phone(1001, "李明")
    await li.send("/start")
    await li.tap("正达村")
    await li.tap("第一网格")
    await li.expect("请告诉我您的姓名")
    async with Redis.from_url(TEST_REDIS_URL) as redis:
        db = redis.connection_pool.connection_kwargs.get("db", 0)
        me = await redis.client_id()
        dropped = 0
        for client in await redis.client_list():
            if int(client["db"]) == int(db) and int(client["id"]) != me:
                dropped += await redis.client_kill_filter(_id=client["id"])
    assert dropped  # the bot's pooled connections were there to drop
    await li.send("李明")
    await li.expect("分享手机号码")
    assert "出了问题" not in sandbox.emulator.transcript(1001)


async def _registered(sandbox: Sandbox):  # type: ignore[no-untyped-def]
    li = sandbox.phone(1001, "李明")
    await li.send("/start")
    await li.tap("正达村")
    await li.tap("第一网格")
    await li.send("李明")
    await li.press("跳过")
    await li.expect("您已登记")
    return li


async def test_many_people_writing_at_once_are_all_answered(sandbox: Sandbox) -> None:
    """A burst larger than a connection pool: every update waits its turn, none fails (with
    REDIS_URL each update holds a Redis connection for its per-person lock)."""
    phones = [sandbox.phone(7000 + n, f"村民{n}") for n in range(160)]
    await asyncio.gather(*(phone.send("/start") for phone in phones))
    await asyncio.gather(*(phone.expect("您住在哪个村？", timeout=30) for phone in phones))
