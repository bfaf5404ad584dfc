"""Groups and the digest channel bound from the chat, through the emulator with the real bot:
the bot added to a group and the unit chosen there, the group upgraded to a supergroup, the
bot removed, /digesthere and a forwarded channel post; and directory imports that keep or
override such bindings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from backoffice import official

from bot import cases, delivery
from bot.bindings import bind_digest_chat, bind_unit_group
from bot.directory import export_directory, import_text
from bot.emulator import buttons
from bot.links import bind_payload
from bot.models import Account, Case, Category, Delivery, Grid, Official, Township, Unit, Villager
from bot.sandbox import Phone, Sandbox

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "directory.yaml"
GROUP = -1002000000001
SUPERGROUP = -1002000000002
COMMITTEE = "正达村两委"


async def _villager(sandbox: Sandbox, telegram_id: int) -> tuple[Villager, Phone]:
    account = await Account.create(id=telegram_id, first_name="李明", language="zh-hans")
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    villager = await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name="李明", phone="+8613800000001",
    )
    handset = sandbox.phone(telegram_id, "李明")
    await handset.send("/help")
    await handset.expect("/report")
    return villager, handset


async def _report(villager: Villager, description: str) -> Case:
    """A road problem in Zhengda: handled by the village committee (正达村两委)."""
    change = await cases.report(
        villager, await Category.get(code="roads"), description=description  # type: ignore[arg-type]
    )
    delivery.wake()
    return change.case


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait for the bot to have done something the database shows."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the bot did not get there in time")
        await asyncio.sleep(0.05)


async def _committee() -> Unit:
    return await Unit.get(code="zhengda-committee")


async def _committee_without_group() -> None:
    await Unit.filter(code="zhengda-committee").update(group_chat_id=None)


def _bound_to(chat_id: int | None) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await _committee()).group_chat_id == chat_id

    return check


async def test_bot_added_to_a_group_and_bound_by_a_leader(sandbox: Sandbox) -> None:
    await _committee_without_group()
    leader = await official(sandbox, "zheng-guohua", 3001)  # leader of 正达村两委
    member = await official(sandbox, "lin-xiuying", 3002)  # a member: may not choose
    villager, _phone = await _villager(sandbox, 4001)
    emulator = sandbox.emulator
    group = emulator.group(GROUP, "正达村两委工作群", bot_inside=False)

    await group.add_bot(leader.user)
    greeting = await emulator.wait_for(GROUP, "这个群是哪个单位的工作群")
    assert "坂里乡" in greeting["text"]
    assert COMMITTEE in buttons(greeting) and "坂里村两委" in buttons(greeting)

    # Not allowed: a member, the villager, and the leader for a unit not their own.
    for tapper, unit in ((member, COMMITTEE), (_phone, COMMITTEE), (leader, "坂里村两委")):
        query = await tapper.user.tap(greeting, unit, chat=GROUP)
        answer = await emulator.wait_answer(query)
        assert "只有乡镇管理员、调度员和该单位的单位负责人" in answer["text"]
        assert answer["show_alert"]
    assert (await _committee()).group_chat_id is None
    assert await Unit.filter(group_chat_id=GROUP).count() == 0

    query = await leader.user.tap(greeting, COMMITTEE, chat=GROUP)
    await emulator.wait_answer(query)
    done = await emulator.wait_for(GROUP, "这个群现在是正达村两委的工作群")
    assert done["message_id"] == greeting["message_id"] and not buttons(done)
    committee = await _committee()
    assert committee.group_chat_id == GROUP and committee.group_bound_in_chat

    case = await _report(villager, "村口道路塌了一个坑")
    card = await emulator.wait_for(GROUP, case.number)
    assert "✅ 受理" in buttons(card)
    # The group, not each member privately, gets the card.
    await asyncio.sleep(0.2)
    privately = emulator.bot_messages(member.chat_id)
    assert not [m for m in privately if case.number in m.get("text", "")]


async def test_bindgroup_changes_and_unbinds_a_groups_unit(sandbox: Sandbox) -> None:
    await _committee_without_group()
    dispatcher = await official(sandbox, "su-jinqiao", 3003)
    emulator = sandbox.emulator
    emulator.group(GROUP, "工作群")
    committee = await _committee()

    await dispatcher.user.send_text(f"/start {bind_payload(committee.id)}", chat=GROUP)
    await emulator.wait_for(GROUP, "这个群现在是正达村两委的工作群")
    assert (await _committee()).group_chat_id == GROUP

    await dispatcher.user.send_text("/bindgroup", chat=GROUP)
    choice = await emulator.wait_for(GROUP, "这个群是正达村两委的工作群")
    assert "✖️ 解除绑定" in buttons(choice)
    await emulator.wait_answer(await dispatcher.user.tap(choice, "坂里村两委", chat=GROUP))
    await emulator.wait_for(GROUP, "正达村两委不再使用这个群")
    banli = await Unit.get(code="banli-committee")
    assert banli.group_chat_id == GROUP and banli.group_bound_in_chat
    assert (await _committee()).group_chat_id is None

    await dispatcher.user.send_text("/bindgroup", chat=GROUP)
    choice = await emulator.wait_for(GROUP, "这个群是坂里村两委的工作群")
    await emulator.wait_answer(await dispatcher.user.tap(choice, "✖️ 解除绑定", chat=GROUP))
    await emulator.wait_for(GROUP, "这个群不再是坂里村两委的工作群")
    assert (await Unit.get(code="banli-committee")).group_chat_id is None


async def test_a_group_upgraded_to_a_supergroup_still_receives_cards(sandbox: Sandbox) -> None:
    await _committee_without_group()
    leader = await official(sandbox, "zheng-guohua", 3001)
    villager, _phone = await _villager(sandbox, 4001)
    emulator = sandbox.emulator
    group = emulator.group(GROUP, "正达村两委工作群")
    await leader.user.send_text(f"/start {bind_payload((await _committee()).id)}", chat=GROUP)
    await _until(_bound_to(GROUP))

    supergroup = await group.migrate(SUPERGROUP, leader.user)
    assert supergroup.type == "supergroup"
    await _until(_bound_to(SUPERGROUP))
    case = await _report(villager, "路灯不亮")
    await emulator.wait_for(SUPERGROUP, case.number)
    assert not [m for m in emulator.bot_messages(GROUP) if case.number in m.get("text", "")]


async def test_a_card_sent_to_the_old_group_follows_it_to_the_supergroup(
    sandbox: Sandbox,
) -> None:
    """The bot missed the upgrade's messages (it was down longer than Telegram keeps them):
    Telegram's refusal with `migrate_to_chat_id` moves the card and the binding."""
    await _committee_without_group()
    leader = await official(sandbox, "zheng-guohua", 3001)
    villager, _phone = await _villager(sandbox, 4001)
    emulator = sandbox.emulator
    emulator.group(GROUP, "正达村两委工作群")
    await leader.user.send_text(f"/start {bind_payload((await _committee()).id)}", chat=GROUP)
    await _until(_bound_to(GROUP))
    emulator.group(SUPERGROUP, "正达村两委工作群", "supergroup")
    emulator._chats[GROUP].migrated_to = SUPERGROUP  # upgraded, without a word to the bot

    case = await _report(villager, "水管漏水")
    await emulator.wait_for(SUPERGROUP, case.number)
    await _until(_bound_to(SUPERGROUP))
    rows = await Delivery.filter(case_id=case.id, card=True)
    assert rows and all(row.chat_id == SUPERGROUP for row in rows)


async def test_bot_removed_cards_go_privately_and_the_administrators_are_told(
    sandbox: Sandbox,
) -> None:
    await _committee_without_group()
    admin = await official(sandbox, "admin", 3000)
    leader = await official(sandbox, "zheng-guohua", 3001)
    member = await official(sandbox, "lin-xiuying", 3002)
    villager, _phone = await _villager(sandbox, 4001)
    emulator = sandbox.emulator
    group = emulator.group(GROUP, "正达村两委工作群")
    await leader.user.send_text(f"/start {bind_payload((await _committee()).id)}", chat=GROUP)
    await _until(_bound_to(GROUP))
    waiting = await _report(villager, "桥栏杆断了")
    await emulator.wait_for(GROUP, waiting.number)

    await group.remove_bot(leader.user)
    told = await admin.expect("机器人已被移出正达村两委的工作群“正达村两委工作群”")
    assert "私信发给该单位的工作人员" in told["text"]
    await _until(_bound_to(None))
    # The case still waiting to be accepted: its card now reaches the members privately.
    for handset in (leader, member):
        card = await handset.expect(waiting.number)
        assert "✅ 受理" in buttons(card)

    later = await _report(villager, "路面积水")
    for handset in (leader, member):
        await handset.expect(later.number)
    assert not [m for m in emulator.bot_messages(GROUP) if later.number in m.get("text", "")]
    assert not [m for m in emulator.bot_messages(villager.account_id)  # type: ignore[attr-defined]
                if "移出" in m.get("text", "")]


async def test_digesthere_with_and_without_the_right_to_post(sandbox: Sandbox) -> None:
    admin = await official(sandbox, "admin", 3000)
    leader = await official(sandbox, "zheng-guohua", 3001)
    emulator = sandbox.emulator
    before = (await Township.get(code="BL")).digest_chat_id
    restricted = emulator.group(-1002000000010, "乡镇干部群")
    await restricted.restrict_bot(admin.user, can_send_messages=False)

    await admin.user.send_text("/digesthere", chat=restricted.chat_id)
    refusal = await admin.expect("没有“发送消息”权限")
    assert "乡镇干部群" in refusal["text"]
    await leader.user.send_text("/digesthere", chat=restricted.chat_id)
    await leader.expect("只有乡镇管理员可以指定接收周报的群或频道")
    assert (await Township.get(code="BL")).digest_chat_id == before

    group = emulator.group(-1002000000011, "乡镇周报群")
    await admin.user.send_text("/digesthere", chat=group.chat_id)
    await emulator.wait_for(group.chat_id, "这里今后接收坂里乡的周报和月度红灰榜")
    township = await Township.get(code="BL")
    assert township.digest_chat_id == group.chat_id and township.digest_bound_in_chat


async def test_a_forwarded_channel_post_binds_the_digest_channel(sandbox: Sandbox) -> None:
    admin = await official(sandbox, "admin", 3000)
    _villager_row, villager_phone = await _villager(sandbox, 4001)
    emulator = sandbox.emulator
    before = (await Township.get(code="BL")).digest_chat_id
    channel = emulator.channel(-1002000000020, "坂里乡公开频道", username="banli_news")

    post = await channel.post("本周村务公开")
    await admin.user.forward(post)
    await admin.expect("我无法在“坂里乡公开频道”发消息：我不在其中")

    await channel.add_bot(admin.user, admin=True)
    await admin.expect("请把这个频道的任意一条消息转发给我")
    await channel.set_bot_rights(admin.user, can_post_messages=False)
    await admin.user.forward(post)
    await admin.expect("没有“发布消息”权限")
    assert (await Township.get(code="BL")).digest_chat_id == before

    # A villager's forward is no binding: it reaches their own conversation.
    await villager_phone.user.forward(post)
    await villager_phone.expect("")
    assert (await Township.get(code="BL")).digest_chat_id == before

    await channel.set_bot_rights(admin.user)
    await admin.user.forward(post)
    await admin.expect("✅ “坂里乡公开频道”今后接收坂里乡的周报和月度红灰榜")
    township = await Township.get(code="BL")
    assert township.digest_chat_id == channel.chat_id and township.digest_bound_in_chat

    await channel.remove_bot(admin.user)
    await admin.expect("机器人已被移出坂里乡接收周报的“坂里乡公开频道”")
    await _until(lambda: _digest_is(None))


async def _digest_is(chat_id: int | None) -> bool:
    return (await Township.get(code="BL")).digest_chat_id == chat_id


async def test_imports_keep_chat_bindings_unless_the_file_names_another(database: str) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    await import_text(text)
    account = await Account.create(id=3000, first_name="林建华", language="zh-hans")
    await Official.filter(code="admin").update(account_id=account.id)
    township = await Township.get(code="BL")
    grid_unit = await Unit.get(code="zhengda-g1")  # the file names no group for it
    committee = await _committee()  # the file names -1001000000101

    await bind_unit_group(grid_unit.id, -1002000000101, account.id)
    await bind_unit_group(committee.id, -1002000000102, account.id)
    await bind_digest_chat(township.id, -1002000000103, account.id)

    await import_text(text)
    assert (await Unit.get(code="zhengda-g1")).group_chat_id == -1002000000101
    assert (await _committee()).group_chat_id == -1001000000101  # the file's id wins
    assert not (await _committee()).group_bound_in_chat
    assert (await Township.get(code="BL")).digest_chat_id == -1001000000001

    exported = await export_directory("BL")
    units = {unit["code"]: unit for unit in exported["units"]}
    assert units["zhengda-g1"]["group_chat_id"] == -1002000000101
    assert units["zhengda-committee"]["group_chat_id"] == -1001000000101

    # A file that names no digest chat and no committee group: the chat's bindings stay, the
    # file's own binding it no longer names goes.
    data = yaml.safe_load(text)
    del data["township"]["digest_chat_id"]
    for unit in data["units"]:
        if unit["code"] in ("zhengda-committee", "banli-committee"):
            del unit["group_chat_id"]
    await bind_digest_chat(township.id, -1002000000103, account.id)
    await bind_unit_group(committee.id, -1002000000102, account.id)
    await import_text(yaml.safe_dump(data, allow_unicode=True))
    assert (await Township.get(code="BL")).digest_chat_id == -1002000000103
    assert (await _committee()).group_chat_id == -1002000000102
    assert (await Unit.get(code="banli-committee")).group_chat_id is None
    assert (await Unit.get(code="zhengda-g1")).group_chat_id == -1002000000101
    exported = await export_directory("BL")
    assert exported["township"]["digest_chat_id"] == -1002000000103


# ---- the emulator's side: what Telegram answers the bot about groups and channels -----------


async def test_the_emulator_answers_as_telegram_about_the_bots_membership() -> None:
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramMigrateToChat
    from aiogram.types import ChatMemberAdministrator, ChatMemberRestricted

    from bot.emulator import BotAPIEmulator

    async with BotAPIEmulator() as emulator:
        session = AiohttpSession(api=TelegramAPIServer.from_base(emulator.base_url))
        async with Bot(emulator.token, session=session) as bot:
            li = emulator.user(1001, "李明")
            group = emulator.group(GROUP, "工作群", bot_inside=False)
            await li.send_text("hello", chat=GROUP)
            assert emulator.pending_updates == 0  # the bot is not in it: it sees nothing
            with pytest.raises(TelegramForbiddenError, match="not a member of the group chat"):
                await bot.send_message(GROUP, "hi")

            await group.add_bot(li)
            updates = await bot.get_updates(allowed_updates=["message", "my_chat_member"])
            added = updates[0].my_chat_member
            assert added is not None and added.from_user.id == li.id
            statuses = (added.old_chat_member.status, added.new_chat_member.status)
            assert statuses == ("left", "member")
            service = updates[1].message
            assert service is not None and service.new_chat_members[0].id == bot.id  # type: ignore[index]
            await bot.send_message(GROUP, "大家好")

            await group.restrict_bot(li, can_send_messages=False)
            member = await bot.get_chat_member(GROUP, bot.id)
            assert isinstance(member, ChatMemberRestricted) and not member.can_send_messages
            with pytest.raises(TelegramBadRequest, match="not enough rights"):
                await bot.send_message(GROUP, "hi")

            await group.set_bot_rights(li)
            await group.migrate(SUPERGROUP, li)
            with pytest.raises(TelegramMigrateToChat) as moved:
                await bot.send_message(GROUP, "hi")
            assert moved.value.migrate_to_chat_id == SUPERGROUP
            updates = await bot.get_updates(offset=updates[-1].update_id + 1)
            texts = [u.message for u in updates if u.message is not None]
            assert texts[-2].migrate_to_chat_id == SUPERGROUP
            assert texts[-1].migrate_from_chat_id == GROUP and texts[-1].chat.id == SUPERGROUP
            await bot.send_message(SUPERGROUP, "升级后")

            supergroup = emulator._groups[SUPERGROUP]
            await supergroup.remove_bot(li)
            with pytest.raises(TelegramForbiddenError, match="kicked from the supergroup chat"):
                await bot.send_message(SUPERGROUP, "hi")

            channel = emulator.channel(-1002000000020, "频道")
            await channel.add_bot(li, admin=True)
            admin = await bot.get_chat_member(channel.chat_id, bot.id)
            assert isinstance(admin, ChatMemberAdministrator) and admin.can_post_messages
            await channel.set_bot_rights(li, can_post_messages=False)
            with pytest.raises(TelegramBadRequest, match="need administrator rights"):
                await bot.send_message(channel.chat_id, "hi")


async def test_groups_have_a_menu_of_their_own_commands(sandbox: Sandbox) -> None:
    """Officials find /bindgroup and /digesthere in a group's menu, in the group's language."""
    menu = sandbox.emulator.commands({"type": "all_group_chats"}, "zh")
    assert [c["command"] for c in menu] == ["bindgroup", "digesthere"]
    assert menu[0]["description"] == "指定这个群是哪个单位的工作群"
    english = sandbox.emulator.commands({"type": "all_group_chats"}, "en")
    assert english[1]["description"] == "Send the township's weekly digest to this chat"
