"""`villagebot demo`: the real bot on the built-in Telegram emulator, playing a short story.

Everything a person would see is printed as it happens, chat by chat, so someone without a
bot token can watch villagebot work on their own machine in a minute.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from bot.config import Settings
from bot.invitations import invite
from bot.models import Official
from bot.sandbox import Sandbox

ADMIN, VILLAGER, VISITOR, OFFICIAL, GRID_MEMBER = 9001, 1001, 1002, 9002, 9003


def _printer(names: dict[int, str]):  # type: ignore[no-untyped-def]
    def show(chat_id: int, message: dict, edited: bool) -> None:
        who = names.get(chat_id, str(chat_id))
        text = message.get("text") or message.get("caption") or ""
        if "photo" in message:
            text = f"[photo] {text}".strip()
        elif "location" in message:
            text = "[location {latitude}, {longitude}]".format(**message["location"])
        buttons = [
            button["text"]
            for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
            for button in row
        ]
        mark = "✎" if edited else "→"
        line = f"  bot {mark} {who}: {text}"
        if buttons:
            line += "  [" + " | ".join(buttons) + "]"
        print(line.replace("\n", "\n      "), flush=True)

    return show


async def play(settings: Settings, *, database_url: str | None = None) -> int:
    for noisy in ("aiogram", "tortoise", "bot"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="villagebot-demo-") as folder:
        url = database_url or f"sqlite://{Path(folder) / 'demo.sqlite3'}"
        async with Sandbox(url, default_language=settings.default_language) as sandbox:
            names = {
                ADMIN: "admin", VILLAGER: "李明", VISITOR: "Anna", OFFICIAL: "苏进侨",
                GRID_MEMBER: "林秀英",
            }
            sandbox.emulator.on_bot_message(_printer(names))
            await _story(sandbox)
    print("\nThe demo is over. Connect a real bot: see “Running it for real” in README.md.")
    return 0


def _say(who: str, text: str) -> None:
    print(f"{who}: {text}", flush=True)


async def _story(sandbox: Sandbox) -> None:
    print("== A villager registers, in Chinese", flush=True)
    li = sandbox.phone(VILLAGER, "李明", language="zh-hans", echo=_say)
    await li.send("/start")
    await li.tap("正达村")
    await li.tap("第一网格")
    await li.expect("您的姓名")
    await li.send("李明")
    await li.expect("分享手机号码")
    await li.share_contact("+8613800001001")
    await li.expect("李明")

    print("\n== A visitor registers in English and opens the profile", flush=True)
    anna = sandbox.phone(VISITOR, "Anna", language="en", echo=_say)
    await anna.send("/start")
    await anna.tap("Houfang Village")
    await anna.tap("I don't know")
    await anna.expect("What is your name?")
    await anna.send("Anna Li")
    await anna.press("Skip")
    await anna.expect("registered")
    await anna.send("/profile")
    await anna.expect("Anna Li")

    print("\n== The administrator joins, then invites the deputy township head", flush=True)
    admin_official = await Official.get(code="admin", township__code="BL")
    link = await invite(admin_official, ttl_days=7)
    admin = sandbox.phone(ADMIN, "管理员", language="zh-hans", echo=_say)
    await admin.send(f"/start {link.token}")
    await admin.expect("绑定")
    await admin.send("/invite su-jinqiao")
    invitation = await admin.expect("https://t.me/")
    token = (invitation.get("text") or "").rsplit("start=", 1)[1].split()[0]
    su = sandbox.phone(OFFICIAL, "苏进侨", language="zh-hans", echo=_say)
    await su.send(f"/start {token}")
    await su.expect("苏进侨")
    await su.send("/help")
    await su.expect("/language")

    print("\n== The grid member joins; the villager reports litter with a photo and a pin")
    link = await invite(await Official.get(code="lin-xiuying", township__code="BL"), ttl_days=7)
    lin = sandbox.phone(GRID_MEMBER, "林秀英", language="zh-hans", echo=_say)
    await lin.send(f"/start {link.token}")
    await lin.expect("绑定")
    await li.press("📝 我要反映问题")
    await li.tap("环境卫生")
    await li.tap("卫生清理")
    await li.expect("请描述问题")
    await li.send("村口垃圾桶满了，垃圾散了一地")
    await li.expect("最多")
    _say("李明", "[photo]")
    await li.user.send_photo()
    await li.expect("已收到照片 1 张")
    await li.tap("✅ 完成")
    await li.expect("问题在什么位置")
    _say("李明", "[location pin]")
    await li.user.send_location(27.7431, 118.9961)
    await li.expect("请核对")
    await li.tap("✅ 提交")
    submitted = await li.expect("事项编号")
    number = submitted["text"].split("事项编号：", 1)[1].split()[0]

    print(f"\n== {number}: the grid member accepts, resolves with evidence", flush=True)
    await lin.expect(number, timeout=30)
    await lin.tap("✅ 受理")
    await li.expect("受理", timeout=30)
    await lin.tap("✔️ 办结", timeout=30)
    await lin.expect("现场照片")
    _say("林秀英", "[photo]")
    await lin.user.send_photo()
    await lin.expect("照片")
    await lin.send("垃圾已清运，垃圾桶已清洗")
    await lin.expect("已办结")

    print("\n== The villager confirms and rates", flush=True)
    await li.expect("问题解决了吗", timeout=30)
    await li.tap("👍 已解决")
    await li.tap("⭐⭐⭐⭐⭐")
    await li.expect("写几句评价")
    await li.tap("跳过")
    await li.expect("已结案")
    await lin.expect("评价", timeout=30)
    await li.send("/mycases")
    await li.expect(number)


if __name__ == "__main__":
    from bot.cli import main

    sys.exit(main(["demo"]))
