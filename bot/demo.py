"""`villagebot demo`: the real bot on the built-in Telegram emulator, playing a short story.

Everything a person would see is printed as it happens, chat by chat, so someone without a
bot token can watch villagebot work on their own machine in a minute. Then, unless `--story`
asked for the story alone, a few more reports come in and the demo stays up with the phones
page (bot/phones: the emulator's chats as phones in a browser, to play with) and the back office
served on the same data, printing both addresses and a sign-in link for the dispatcher, until
Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from bot import cases, tasks
from bot.config import Settings, web_address
from bot.invitations import invite
from bot.models import Case, Category, Official, Unit, Villager
from bot.phones import Handset, PhonesPage
from bot.sandbox import Phone, Sandbox
from web.signin import TTL

ADMIN, VILLAGER, VISITOR, OFFICIAL, GRID_MEMBER, LEADER = 9001, 1001, 1002, 9002, 9003, 9004
#: 正达村两委's group chat (examples/directory.yaml), one of the phones.
COMMITTEE_GROUP = -1001000000101
#: The bot's pace in the demo: Telegram's limits (one message a second per private chat) times
#: 20. The emulator has no limits to keep, and at Telegram's pace the story alone takes a
#: minute; MESSAGES_PER_SECOND set by hand wins.
DEMO_PACE = 600


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


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def web_settings(settings: Settings) -> dict[str, str]:
    """Where the demo serves the back office: WEB_LISTEN (127.0.0.1:8080 unless set) when that
    port is free, else a free port of the same host; the links point at it, unless WEB_URL
    was set for this very address (a proxy in front, say)."""
    host, port = web_address(settings.web_listen or "127.0.0.1:8080")
    if port == 0 or not _port_free(host, port):
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if "web_url" in settings.model_fields_set and listen == settings.web_listen:
        return {"web_listen": listen, "web_url": settings.web_url}
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return {"web_listen": listen, "web_url": f"http://{shown}:{port}"}


async def play(
    settings: Settings, *, database_url: str | None = None, story_only: bool = False
) -> int:
    for noisy in ("aiogram", "tortoise", "bot", "web"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    web = {} if story_only else {"web": True, **web_settings(settings)}
    given = "messages_per_second" in settings.model_fields_set
    web["messages_per_second"] = settings.messages_per_second if given else DEMO_PACE
    with tempfile.TemporaryDirectory(prefix="villagebot-demo-") as folder:
        url = database_url or f"sqlite://{Path(folder) / 'demo.sqlite3'}"
        async with Sandbox(
            url, default_language=settings.default_language, **web  # type: ignore[arg-type]
        ) as sandbox:
            names = {
                ADMIN: "admin", VILLAGER: "李明", VISITOR: "Anna", OFFICIAL: "苏进侨",
                GRID_MEMBER: "林秀英", LEADER: "郑国华",
            }
            sandbox.emulator.on_bot_message(_printer(names))
            su = await story(sandbox)
            if not story_only:
                await more_reports(sandbox, names)
                await join_leader(sandbox)
                page = await phones_page(sandbox).start()
                try:
                    await _serve(sandbox, su, page.url)
                finally:
                    await page.stop()
    if story_only:
        print("\nThe demo is over. Connect a real bot: see “Running it for real” in README.md.")
    return 0


async def more_reports(sandbox: Sandbox, names: dict[int, str]) -> None:
    """Three more cases, so that the back office's list has more than one to show: two wait
    to be accepted, one is being handled; and a township task to three villages."""
    print("\n== Three more reports come in; the grid member accepts one", flush=True)
    for unit in await Unit.filter(group_chat_id__isnull=False):  # the units' group chats
        sandbox.emulator.group(unit.group_chat_id, unit.name)  # type: ignore[arg-type]
        names[unit.group_chat_id] = f"{unit.name}群"  # type: ignore[index]
    li = await Villager.get(account_id=VILLAGER)
    anna = await Villager.get(account_id=VISITOR)
    await cases.report(
        li, await Category.get(code="roads"), description="村道塌了一块，雨天车过不去"
    )
    await cases.report(
        anna, await Category.get(code="streetlights"),
        description="The street light by the bridge has been out for a week",
    )
    smell = await cases.report(
        li, await Category.get(code="litter"), description="广场边的垃圾池有异味，好几天没清运了"
    )
    await cases.accept(smell.case.id, await Official.get(code="lin-xiuying"))
    print("== The dispatcher gives a township task to three villages; Zhengda accepts it",
          flush=True)
    task = await tasks.create(
        await Official.get(code="su-jinqiao"), title="迎检前清理河道两岸垃圾",
        description="本周内清理本村河道两岸的垃圾和漂浮物，办结时附清理后的现场照片。",
        targets=[u.id for u in await Unit.filter(
            code__in=["zhengda-committee", "banli-committee", "gaoceng-committee"]
        ).order_by("id")],
        deadline=cases.now() + timedelta(days=5),
    )
    zhengda = await Case.get(task_id=task.id, unit__code="zhengda-committee")
    await cases.accept(zhengda.id, await Official.get(code="lin-xiuying"))
    assert sandbox.app is not None
    await sandbox.app.courier.drained()


async def join_leader(sandbox: Sandbox) -> None:
    """郑国华, leader of 正达村两委, joins by invitation: one more phone on the phones page."""
    print("\n== The village committee's leader joins", flush=True)
    link = await invite(await Official.get(code="zheng-guohua", township__code="BL"), ttl_days=7)
    zheng = sandbox.phone(LEADER, "郑国华", language="zh-hans", echo=_say)
    await zheng.send(f"/start {link.token}")
    await zheng.expect("绑定")


def handsets() -> list[Handset]:
    """The phones page's people: two villagers, three officials and a unit's group chat."""
    return [
        Handset(VILLAGER, "李明", "villager_zh", VILLAGER),
        Handset(VISITOR, "Anna Li", "villager_en", VISITOR),
        Handset(GRID_MEMBER, "林秀英", "grid_member", GRID_MEMBER),
        Handset(LEADER, "郑国华", "leader", LEADER),
        Handset(OFFICIAL, "苏进侨", "dispatcher", OFFICIAL),
        Handset(COMMITTEE_GROUP, "正达村两委", "group", LEADER),
    ]


def phones_page(sandbox: Sandbox) -> PhonesPage:
    """The phones page on the port after the back office's when it is free, else any."""
    host, port = web_address(sandbox.settings.web_listen)
    wanted = port + 1 if port and _port_free(host, port + 1) else 0
    return PhonesPage(
        sandbox.emulator, handsets(), back_office=sandbox.web_url,
        default_language=sandbox.settings.default_language, host=host or "127.0.0.1",
        port=wanted,
    )


async def _serve(sandbox: Sandbox, su: Phone, phones: str) -> None:
    """Keep the phones and the back office up until Ctrl-C or SIGTERM; Enter prints a new
    sign-in link."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stopping.set)
    links: asyncio.Queue[None] = asyncio.Queue()
    reading = _read_enter(loop, links)
    print(f"\n== The phones are open: {phones}", flush=True)
    print(f"== The back office is open: {sandbox.web_url}", flush=True)
    try:
        while True:
            link = await sign_in_link(su)
            print(f"\n   Sign in as 苏进侨 (dispatcher): {link}", flush=True)
            print(f"   Each link signs in once, within {int(TTL.total_seconds() // 60)} minutes. "
                  + ("Press Enter for a new one, " if reading else "")
                  + "Ctrl-C to stop the demo.", flush=True)
            wanted = asyncio.ensure_future(links.get())
            stop = asyncio.ensure_future(stopping.wait())
            await asyncio.wait({wanted, stop}, return_when=asyncio.FIRST_COMPLETED)
            if stopping.is_set():
                wanted.cancel()
                break
            stop.cancel()
    finally:
        if reading:
            loop.remove_reader(sys.stdin.fileno())
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)
    print("\nThe demo is stopped. Connect a real bot: see “Running it for real” in README.md.",
          flush=True)


def _read_enter(loop: asyncio.AbstractEventLoop, links: asyncio.Queue[None]) -> bool:
    """Queue a link for every line typed in the terminal; False where standard input is no
    terminal (none, a pipe, a file), and then there is no Enter to press."""

    def typed() -> None:
        if sys.stdin.readline():
            links.put_nowait(None)
        else:  # end of input: nothing more will be typed
            loop.remove_reader(sys.stdin.fileno())

    try:
        if sys.stdin is None or not sys.stdin.isatty():
            return False
        loop.add_reader(sys.stdin.fileno(), typed)
    except (OSError, ValueError):
        return False
    return True


async def sign_in_link(su: Phone) -> str:
    """The dispatcher asks the bot for a link, as an official does: /web."""
    await su.send("/web")
    message = await su.expect("/signin/")
    return next(word for word in message["text"].split() if "/signin/" in word)


def _say(who: str, text: str) -> None:
    print(f"{who}: {text}", flush=True)


async def story(sandbox: Sandbox) -> Phone:
    """Play the story; the dispatcher's phone is returned for the back office's links."""
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
    return su


if __name__ == "__main__":
    from bot.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
