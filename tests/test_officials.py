"""Officials join by invitation through the chat; help and menus follow the role."""

from __future__ import annotations

from bot.invitations import invite
from bot.models import Account, Invitation, Official
from bot.sandbox import Sandbox


async def _join(sandbox: Sandbox, code: str, user_id: int, name: str):  # type: ignore[no-untyped-def]
    """Bind `code` to a new phone and wait for the welcome, so the link is spent before we go on."""
    official = await Official.get(code=code)
    made = await invite(official, ttl_days=7)
    phone = sandbox.phone(user_id, name)
    await phone.send(f"/start {made.token}")
    await sandbox.emulator.wait_for(user_id, "您的 Telegram 账号已绑定")
    return phone, made


async def test_an_official_joins_with_a_link_and_sees_the_official_help(sandbox: Sandbox) -> None:
    su, _ = await _join(sandbox, "su-jinqiao", 9002, "苏进侨")
    welcome = await su.expect("欢迎您，苏进侨！您的 Telegram 账号已绑定")
    assert "调度员" in welcome["text"]
    assert (await Official.get(code="su-jinqiao")).account_id == 9002  # type: ignore[attr-defined]
    await su.send("/help")
    await su.expect("您已登记为工作人员。")
    await su.send("/start")
    await su.expect("欢迎回来，苏进侨。")
    menu = sandbox.emulator.commands({"type": "chat", "chat_id": 9002})
    assert [c["command"] for c in menu] == [
        "start", "tasks", "newtask", "pool", "notice", "notices", "web", "language", "help"
    ]


async def test_a_used_link_is_refused_to_someone_else_in_their_language(sandbox: Sandbox) -> None:
    _, made = await _join(sandbox, "su-jinqiao", 9002, "苏进侨")
    other = sandbox.phone(9003, "Mallory", language="en")
    await other.send(f"/start {made.token}")
    await other.expect("This invitation link has already been used.")
    assert (await Official.get(code="su-jinqiao")).account_id == 9002  # type: ignore[attr-defined]
    assert not await Official.filter(account_id=9003).exists()


async def test_a_forged_link_binds_nothing(sandbox: Sandbox) -> None:
    await invite(await Official.get(code="su-jinqiao"), ttl_days=7)
    mallory = sandbox.phone(9003, "Mallory", language="zh-hant")
    await mallory.send("/start inv-" + "x" * 32)
    await mallory.expect("這個邀請連結無效。")
    assert not await Official.filter(account_id=9003).exists()


async def test_an_admin_invites_from_the_chat(sandbox: Sandbox) -> None:
    admin, _ = await _join(sandbox, "admin", 9001, "管理员")
    await admin.expect("管理员")
    await admin.send("/help")
    await admin.expect("/invite")
    assert [c["command"] for c in sandbox.emulator.commands({"type": "chat", "chat_id": 9001})] \
        == [
        "start", "tasks", "pool", "notice", "notices", "web", "language", "help", "invite",
        "setup"
    ]
    await admin.send("/invite")
    await admin.expect("要邀请哪位工作人员？")
    await admin.tap("苏进侨")
    link_message = await admin.expect("https://t.me/villagebot?start=inv-")
    token = link_message["text"].rsplit("start=", 1)[1].strip()
    su = sandbox.phone(9002, "苏进侨")
    await su.send(f"/start {token}")
    await su.expect("欢迎您，苏进侨！")
    invitation = await Invitation.get(used_by_id=9002)
    assert invitation.created_by_id == 9001  # type: ignore[attr-defined]
    await admin.send("/invite no-such-person")
    await admin.expect("没有编号为 no-such-person 的工作人员。")


async def test_only_an_admin_may_invite(sandbox: Sandbox) -> None:
    su, _ = await _join(sandbox, "su-jinqiao", 9002, "苏进侨")
    await su.expect("欢迎您")
    await su.send("/invite admin")
    await su.expect("只有管理员可以邀请工作人员。")
    message = su.last()
    query = await su.user.tap_data(message, "i1:1")
    answer = await sandbox.emulator.wait_answer(query)
    assert answer["text"] == "这个按钮已失效。"
    assert await Invitation.all().count() == 1


async def test_default_menus_are_set_per_language(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    assert emulator.commands()[0]["description"] == "开始或返回主菜单"
    assert emulator.commands(language_code="en")[0]["description"] == (
        "Start or return to the main menu"
    )
    assert [c["command"] for c in emulator.commands()] == [
        "start", "report", "mycases", "ask", "notices", "profile", "language", "help"
    ]
    assert await Account.all().count() == 0
