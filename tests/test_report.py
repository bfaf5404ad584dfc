"""A villager reports a problem, end to end through the emulator, in Chinese and English."""

from __future__ import annotations

from aiogram.fsm.storage.base import StorageKey

from bot.emulator import button_data, buttons
from bot.models import Account, Case, Grid, Villager
from bot.sandbox import Phone, Sandbox

LI = 1001
ANNA = 1002


async def _villager(sandbox: Sandbox, telegram_id: int, name: str, language: str) -> Phone:
    """A villager of Zhengda grid 1, registered, with the main menu on screen."""
    account = await Account.create(id=telegram_id, first_name=name, language=language)
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name=name,
    )
    phone = sandbox.phone(telegram_id, name, language=language)
    await phone.send("/start")
    await phone.expect(name)
    return phone


async def _li(sandbox: Sandbox) -> Phone:
    return await _villager(sandbox, LI, "李明", "zh-hans")


async def _anna(sandbox: Sandbox) -> Phone:
    return await _villager(sandbox, ANNA, "Anna", "en")


async def _to_description(li: Phone) -> None:
    await li.press("📝 我要反映问题")
    await li.expect("您要反映哪方面的问题？请点一个类别。")
    await li.tap("环境卫生")
    await li.expect("环境卫生：具体是哪一类？")
    await li.tap("卫生清理")
    await li.expect("请描述问题")


async def _to_summary(li: Phone, description: str = "村口垃圾桶满了") -> dict:
    await _to_description(li)
    await li.send(description)
    await li.expect("照片能帮助工作人员了解情况")
    await li.tap("✅ 完成")
    await li.expect("不需要位置？点“跳过”。")
    await li.tap("跳过")
    return await li.expect("请核对您的反映内容")


async def _on_screen(sandbox: Sandbox, chat_id: int, text: str) -> dict:
    """The newest message shows `text`: for a message edited in place."""
    return await sandbox.emulator.wait_for(chat_id, text, newest=True)


async def _conversation(sandbox: Sandbox, chat_id: int) -> tuple[str | None, dict]:
    """The chat's conversation state and data, wherever the bot keeps them, once the update
    being handled for the chat is done (its changes are stored at its end)."""
    assert sandbox.app is not None
    key = StorageKey(bot_id=sandbox.app.bot.id, chat_id=chat_id, user_id=chat_id)
    dispatcher = sandbox.app.dispatcher
    async with dispatcher.fsm.events_isolation.lock(key):
        return await dispatcher.storage.get_state(key), await dispatcher.storage.get_data(key)


def _photo_id(message: dict) -> str:
    return str(message["photo"][-1]["file_id"])


def _texts_after(sandbox: Sandbox, chat_id: int, message_id: int) -> list[str]:
    return [
        m.get("text") or ""
        for m in sandbox.emulator.bot_messages(chat_id)
        if m["message_id"] > message_id
    ]


async def test_a_report_with_text_two_photos_and_a_pin_makes_one_case(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    assert sandbox.emulator.reply_keyboard(LI)[0] == "📝 我要反映问题", "the first button"
    await _to_description(li)
    await li.send("  村口垃圾桶满了，三天没人清理  ")
    await li.expect("照片能帮助工作人员了解情况。请发送照片（最多 5 张）")
    first = await li.user.send_photo()
    await li.expect("已收到照片 1 张（最多 5 张）")
    second = await li.user.send_photo()
    await li.expect("已收到照片 2 张（最多 5 张）")
    await li.tap("✅ 完成")
    await li.expect("不需要位置？点“跳过”。")
    assert "📍 发送我的位置" in sandbox.emulator.reply_keyboard(LI)
    await li.user.send_location(28.912341, 118.876539)
    summary = await li.expect("请核对您的反映内容，无误后点“提交”。")
    for line in (
        "类别：环境卫生 › 卫生清理",
        "描述：村口垃圾桶满了，三天没人清理",
        "照片：2 张",
        "位置：定位（28.91234，118.87654）",
        "匿名：否",
    ):
        assert line in summary["text"], line
    assert not await Case.exists()

    await li.tap("✅ 提交")
    done = await li.expect("✅ 已提交。您的事项编号：BL-")
    case = await Case.get().prefetch_related("category", "unit", "reporter")
    assert case.number in done["text"]
    assert case.number.startswith("BL-") and case.number.endswith("-000001")
    assert "将由正达村第一网格办理，应在" in done["text"]
    assert (case.category.code, case.description) == ("litter", "村口垃圾桶满了，三天没人清理")
    assert case.photos == [_photo_id(first), _photo_id(second)]
    assert (round(case.latitude, 6), round(case.longitude, 6)) == (28.912341, 118.876539)  # type: ignore[arg-type]
    assert (case.address, case.voice_file_id, case.anonymous) == (None, None, False)
    assert case.reporter.account_id == LI  # type: ignore[union-attr,attr-defined]
    assert case.report_key and len(case.report_key) >= 16
    assert sandbox.emulator.reply_keyboard(LI)[0] == "📝 我要反映问题", "the menu is back"
    assert "✅ 提交" not in buttons(sandbox.emulator.bot_messages(LI)[-2]), "summary is done"


async def test_an_english_report_by_voice_with_a_typed_address(sandbox: Sandbox) -> None:
    anna = await _anna(sandbox)
    await anna.send("/report")
    await anna.expect("What is the problem about? Choose a category.")
    await anna.tap("Infrastructure")
    await anna.expect("Infrastructure: which one?")
    await anna.tap("Street lights")
    await anna.expect("Send a text, or a voice message if you would rather speak.")
    voice = await anna.user.send_voice(7)
    await anna.expect("Voice message received.")
    await anna.expect("Photos help the officials see the problem.")
    await anna.tap("✅ Done")
    await anna.expect("No location needed? Tap Skip.")
    await anna.send("Next to the old bridge, Zhengda")
    summary = await anna.expect("Please check your report, then tap Submit.")
    assert "Voice message: attached" in summary["text"]
    assert "Location: Next to the old bridge, Zhengda" in summary["text"]
    assert "Photos: 0" in summary["text"]
    await anna.tap("✅ Submit")
    done = await anna.expect("Your report is submitted. Case number: BL-")
    assert "Zhengda Village Committee will handle it" in done["text"]
    case = await Case.get().prefetch_related("category")
    assert case.category.code == "streetlights"
    assert case.voice_file_id == voice["voice"]["file_id"]
    assert (case.description, case.address, case.latitude) == (
        "", "Next to the old bridge, Zhengda", None
    )


async def test_an_album_is_one_step_with_one_answer(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await _to_description(li)
    await li.send("路灯坏了")
    prompt = await li.expect("照片能帮助工作人员了解情况")
    album = await li.user.send_album(3)
    await sandbox.emulator.wait_for(LI, "已收到照片 3 张（最多 5 张）", after=prompt["message_id"])
    assert len(_texts_after(sandbox, LI, prompt["message_id"])) == 1, "one answer per album"
    li.seen = sandbox.emulator.bot_messages(LI)[-1]["message_id"]
    await li.tap("✅ 完成")
    await li.tap("跳过")
    await li.expect("照片：3 张")
    await li.tap("✅ 提交")
    await li.expect("已提交")
    assert (await Case.get()).photos == [_photo_id(m) for m in album]


async def test_a_sixth_photo_and_what_is_not_a_photo_are_refused(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await _to_description(li)
    await li.send("河道里有垃圾")
    prompt = await li.expect("照片能帮助工作人员了解情况")
    await li.user.send_document("photo.pdf")
    await li.expect("您发送的是文件，不是照片")
    await li.user.send_sticker()
    await li.expect("这里只能添加照片")
    await li.send("完成了")
    await li.expect("这里只能添加照片")
    await li.user.send_photo()
    await li.expect("已收到照片 1 张")
    await li.user.send_photo()
    await li.expect("已收到照片 2 张")
    before = sandbox.emulator.bot_messages(LI)[-1]["message_id"]
    await li.user.send_album(4)  # three fit, one does not
    await sandbox.emulator.wait_for(LI, "其中 1 张没有保存", after=before)
    assert len(_texts_after(sandbox, LI, before)) == 1
    assert "已收到照片 5 张" in sandbox.emulator.bot_messages(LI)[-1]["text"]
    li.seen = sandbox.emulator.bot_messages(LI)[-1]["message_id"]
    await li.user.send_photo()
    await li.expect("已经有 5 张照片了，这是每条反映的上限。请点“完成”继续。")
    await li.tap("✅ 完成")
    await li.expect("不需要位置？点“跳过”。")
    await li.tap("跳过")
    await li.expect("照片：5 张")
    await li.tap("✅ 提交")
    await li.expect("已提交")
    assert len((await Case.get()).photos) == 5
    assert prompt


async def test_a_too_long_description_is_refused_and_the_step_stays(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await _to_description(li)
    await li.send("长" * 2001)
    await li.expect("描述太长了：共 2001 个字。请控制在 2000 个字以内")
    await li.user.send_photo()
    await li.expect("请用文字或语音描述问题。")
    await li.send("长" * 2000)
    await li.expect("照片能帮助工作人员了解情况")
    await li.tap("✅ 完成")
    await li.tap("跳过")
    await li.tap("✅ 提交")
    await li.expect("已提交")
    assert len((await Case.get()).description) == 2000


async def test_back_works_at_every_step(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await _to_description(li)
    await li.tap("⬅️ 返回")  # description → the categories under 环境卫生
    await li.expect("环境卫生：具体是哪一类？")
    await li.tap("⬅️ 返回")  # → the headings, edited in place
    await li.expect("您要反映哪方面的问题？请点一个类别。")
    await li.tap("基础设施")
    await li.tap("道路维修")
    await li.expect("请描述问题")
    await li.send("路面塌陷")
    await li.expect("照片能帮助")
    await li.tap("⬅️ 返回")  # photos → description
    await li.expect("请描述问题")
    await li.send("路面塌了一个坑")
    await li.expect("照片能帮助")
    await li.tap("✅ 完成")
    await li.expect("不需要位置？点“跳过”。")
    await li.tap("⬅️ 返回")  # location → photos
    await li.expect("照片能帮助")
    await li.tap("✅ 完成")
    await li.tap("跳过")
    await li.expect("请核对您的反映内容")
    await li.tap("⬅️ 返回")  # summary → location
    await li.expect("不需要位置？点“跳过”。")
    await li.send("村委会门口")
    summary = await li.expect("请核对您的反映内容")
    assert "类别：基础设施 › 道路维修" in summary["text"]
    assert "描述：路面塌了一个坑" in summary["text"]
    assert "位置：村委会门口" in summary["text"]
    await li.tap("✅ 提交")
    await li.expect("已提交")
    case = await Case.get().prefetch_related("category")
    assert (case.category.code, case.description, case.address) == (
        "roads", "路面塌了一个坑", "村委会门口"
    )


async def test_edit_from_the_summary_returns_to_the_summary(sandbox: Sandbox) -> None:
    anna = await _anna(sandbox)
    await anna.send("/report")
    await anna.tap("Environment and sanitation")
    await anna.tap("Litter and cleaning")
    await anna.send("Bins are full")
    await anna.tap("✅ Done")
    await anna.user.send_location(28.9, 118.9)
    await anna.expect("Please check your report")
    await anna.tap("✏️ Edit")
    await anna.tap("Description")
    await anna.expect("Describe the problem")
    await anna.send("Bins at the bridge are full")
    summary = await anna.expect("Please check your report")
    assert "Description: Bins at the bridge are full" in summary["text"]
    assert "Location: a pin at 28.90000, 118.90000" in summary["text"], "the rest is kept"
    await anna.tap("✏️ Edit")
    await anna.tap("Category")
    await anna.expect("What is the problem about?")
    await anna.tap("Infrastructure")
    await anna.tap("Water supply")
    summary = await anna.expect("Please check your report")
    assert "Category: Infrastructure › Water supply" in summary["text"]
    await anna.tap("✏️ Edit")
    await anna.tap("Photos")
    await anna.user.send_photo()
    await anna.expect("Photos: 1 of 5")
    await anna.tap("✅ Done")
    await anna.expect("Photos: 1")
    await anna.tap("✏️ Edit")
    await anna.tap("Location")
    await anna.expect("No location needed? Tap Skip.")
    await anna.tap("⬅️ Back")  # back while editing: to the summary, location unchanged
    summary = await anna.expect("Please check your report")
    assert "a pin at 28.90000" in summary["text"]
    await anna.tap("✏️ Edit")
    await anna.tap("⬅️ Back to the summary")
    await anna.tap("✅ Submit")
    await anna.expect("Your report is submitted")
    case = await Case.get().prefetch_related("category")
    assert (case.category.code, case.description, len(case.photos)) == (
        "water-supply", "Bins at the bridge are full", 1
    )


async def test_cancel_drops_the_draft(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await _to_description(li)
    await li.send("垃圾没人清")
    await li.expect("照片能帮助")
    await li.tap("✖️ 取消")
    await li.expect("已取消，没有提交任何内容。")
    assert sandbox.emulator.reply_keyboard(LI)[0] == "📝 我要反映问题"
    assert not await Case.exists()
    await li.user.send_photo()
    await li.expect("这里处理不了这类消息")  # no draft waits for photos any more
    await li.send("/report")
    await li.expect("您要反映哪方面的问题？")  # a fresh start, no offer to continue


async def test_a_draft_survives_a_restart(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await _to_description(li)
    await li.send("水管爆了")
    await li.expect("照片能帮助")
    photo = await li.user.send_photo()
    await li.expect("已收到照片 1 张")
    await sandbox.restart_bot()
    await li.user.send_photo()
    await li.expect("已收到照片 2 张")
    await li.tap("✅ 完成")
    await li.tap("跳过")
    await li.tap("✅ 提交")
    await li.expect("已提交")
    case = await Case.get()
    assert case.description == "水管爆了"
    assert case.photos[0] == _photo_id(photo)


async def test_start_or_report_during_a_draft_offers_to_continue(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await _to_description(li)
    await li.send("/start")
    await li.expect("欢迎回来，李明！")
    await li.expect("您有一条还没提交的反映。要继续填写，还是重新开始？")
    await li.tap("▶️ 继续填写")
    await li.expect("请描述问题")
    await li.send("垃圾堆在路边")
    await li.expect("照片能帮助")
    key = (await _conversation(sandbox, LI))[1]["report"]["key"]
    await li.press("📝 我要反映问题")
    await li.expect("您有一条还没提交的反映")
    await li.tap("🔄 重新开始")
    await li.expect("您要反映哪方面的问题？")
    draft = (await _conversation(sandbox, LI))[1]["report"]
    assert draft["key"] != key and draft["description"] is None


async def test_a_double_tap_on_submit_makes_one_case(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    summary = await _to_summary(li)
    first = await li.user.tap(summary, "✅ 提交")
    second = await li.user.tap(summary, "✅ 提交")
    answers = [
        (await sandbox.emulator.wait_answer(query))["text"] for query in (first, second)
    ]
    case = await Case.get()
    assert answers == [f"已提交：{case.number}", f"这条反映已经提交过了：{case.number}"]
    assert await Case.all().count() == 1
    await li.expect("已提交。您的事项编号")
    await sandbox.app.courier.drained()
    confirmations = [t for t in _texts_after(sandbox, LI, 0) if "已提交。您的事项编号" in t]
    assert len(confirmations) == 1


async def test_the_same_submit_delivered_twice_makes_one_case(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    summary = await _to_summary(li, "重复投递")
    submit = button_data(summary, "✅ 提交")
    update = {
        "update_id": sandbox.emulator.last_update_id + 100,
        "callback_query": {
            "id": "4242",
            "from": li.user.as_json(),
            "message": dict(summary),
            "chat_instance": "1",
            "data": submit,
        },
    }
    sandbox.emulator.inject_update(update)
    sandbox.emulator.inject_update(update)
    await li.expect("已提交。您的事项编号")
    # the summary lost its buttons; an old client may still send the tap: handled after both
    late = await li.user.tap_data(summary, submit)
    case = await Case.get()
    assert (await sandbox.emulator.wait_answer(late))["text"] == (
        f"这条反映已经提交过了：{case.number}"
    )
    assert await Case.all().count() == 1
    confirmations = [t for t in _texts_after(sandbox, LI, 0) if "已提交。您的事项编号" in t]
    assert len(confirmations) == 1


async def test_a_bot_stopped_right_after_submit_tells_the_number_after_restart(
    sandbox: Sandbox,
) -> None:
    """The Submit button is gone once the case exists: the number must come, once, even when
    the process stops between the case's commit and any message leaving it."""
    li = await _li(sandbox)
    summary = await _to_summary(li, "桥头路灯不亮")
    submit = button_data(summary, "✅ 提交")
    await sandbox.app.courier.stop()  # the process is going down: nothing more is sent...
    sandbox.emulator.drop_connection_next("sendMessage")  # ...not even a direct reply
    query = await li.user.tap_data(summary, submit)
    await sandbox.emulator.wait_answer(query)
    await sandbox.emulator.wait_for(
        LI, lambda m: m["message_id"] == summary["message_id"] and not buttons(m)
    )
    case = await Case.get()
    assert not [t for t in _texts_after(sandbox, LI, 0) if case.number in t]

    await sandbox.restart_bot()
    done = await li.expect(f"✅ 已提交。您的事项编号：{case.number}", timeout=10)
    assert "将由正达村第一网格办理，应在" in done["text"]
    assert sandbox.emulator.reply_keyboard(LI)[0] == "📝 我要反映问题", "with the menu"
    await sandbox.app.courier.drained()
    assert len([t for t in _texts_after(sandbox, LI, 0) if case.number in t]) == 1

    late = await li.user.tap_data(summary, submit)
    assert (await sandbox.emulator.wait_answer(late))["text"] == (
        f"这条反映已经提交过了：{case.number}"
    )
    assert await Case.all().count() == 1


async def test_an_emergency_shows_the_numbers_and_skips_to_the_summary(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await li.send("/report")
    await li.tap("应急上报")
    await li.tap("火情")
    numbers = await li.expect("🚨 如有人身危险，请立即拨打：")
    for line in ("🔥 火警：119", "🚑 急救：120", "🚓 报警：110"):
        assert line in numbers["text"]
    await li.expect("请说明发生了什么、在哪里")
    await li.send("后山起火了")
    summary = await li.expect("请核对您的反映内容")
    asked = _texts_after(sandbox, LI, numbers["message_id"])
    assert not any("照片能帮助" in t or "问题在什么位置" in t for t in asked)
    assert "位置：未提供" in summary["text"]
    await li.user.send_location(28.95, 118.85)  # a pin is still welcome
    summary = await li.expect("位置：定位（28.95000，118.85000）")
    await li.tap("⬅️ 返回")
    await li.expect("请说明发生了什么、在哪里")  # back from the summary: the description
    await li.send("后山起火了，火势在变大")
    await li.tap("✅ 提交")
    done = await li.expect("已提交")
    case = await Case.get().prefetch_related("category", "unit")
    assert case.category.emergency and case.category.code == "fire"
    assert (case.description, case.photos, case.latitude) == ("后山起火了，火势在变大", [], 28.95)
    assert case.unit.code == "dispatch"
    assert "坂里乡调度中心" in done["text"]


async def test_the_anonymous_toggle(sandbox: Sandbox) -> None:
    anna = await _anna(sandbox)
    await anna.send("/report")
    await anna.tap("Disputes")
    await anna.tap("Neighbour dispute")
    await anna.send("Noise every night")
    await anna.tap("✅ Done")
    await anna.tap("Skip")
    await anna.expect("Anonymous: no. Officials will see your name and phone.")
    await anna.tap("☐ Report anonymously")
    await _on_screen(sandbox, ANNA, "Anonymous: yes. Officials will not see your name or phone.")
    await anna.tap("☑️ Report anonymously")
    await _on_screen(sandbox, ANNA, "Anonymous: no.")
    await anna.tap("☐ Report anonymously")
    await _on_screen(sandbox, ANNA, "Anonymous: yes.")
    await anna.tap("✅ Submit")
    done = await anna.expect("Your report is submitted")
    assert "Officials will not see your name or phone." in done["text"]
    assert (await Case.get()).anonymous is True


async def test_text_where_a_button_is_expected_is_reprompted(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await li.send("/report")
    await li.expect("您要反映哪方面的问题？")
    await li.send("垃圾")
    await li.expect("请点上面的一个按钮。")
    await li.tap("环境卫生")
    await li.tap("卫生清理")
    await li.send("垃圾")
    await li.tap("✅ 完成")
    await li.user.send_sticker()
    await li.expect("请用下方按钮发送定位、输入地址，或点“跳过”。")
    await li.tap("跳过")
    await li.expect("请核对您的反映内容")
    await li.send("好了")
    await li.expect("请使用确认内容下方的按钮：提交、修改或取消。")
    assert not await Case.exists()


async def test_someone_not_registered_is_sent_to_start(sandbox: Sandbox) -> None:
    stranger = sandbox.phone(1099, "路人")
    await stranger.send("/report")
    await stranger.expect("请先发送 /start 完成登记。")
    visitor = sandbox.phone(1098, "Visitor", language="en")
    await visitor.send("/report")
    await visitor.expect("Please send /start to register first.")
    assert await _conversation(sandbox, 1099) == (None, {})


async def test_the_villager_menu_and_help_offer_reporting(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await li.send("/help")
    await li.expect("/report：反映问题")
    await li.send("/language")
    await li.tap("English")
    await li.expect("From now on I will speak English.")
    await li.send("/help")
    await li.expect("/report: report a problem")  # handled after the menu was set
    assert sandbox.emulator.reply_keyboard(LI)[0] == "📝 Report a problem"
    menu = sandbox.emulator.commands({"type": "chat", "chat_id": LI})
    assert [c["command"] for c in menu][:2] == ["start", "report"]
    assert menu[1]["description"] == "Report a problem"
