"""The demo's phones page (bot/phones): the emulator's chats as phones in a browser.

Over HTTP: the event stream brings what the bot says, and requests a phone cannot make are
refused. In headless Chromium (skipped, with the same line as the back office's browser tests,
where there is none): a new villager registers and reports by clicking and typing in the page,
the grid member accepts on their phone, and the back office lists the case. And `villagebot demo`
prints both addresses soon after it starts.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import backoffice
import browsing
import pytest

from bot import demo
from bot.phones import PhonesPage
from bot.sandbox import Phone, Sandbox


class Township:
    """The sandbox, its grid member's and dispatcher's chats open, and the phones page on it."""

    def __init__(self, sandbox: Sandbox, page: PhonesPage, lin: Phone, su: Phone) -> None:
        self.sandbox, self.page, self.lin, self.su = sandbox, page, lin, su


@pytest.fixture
async def township(database_url: str) -> AsyncIterator[Township]:
    sandbox = await backoffice.start(database_url)
    try:
        lin = await backoffice.official(sandbox, "lin-xiuying", demo.GRID_MEMBER)
        su = await backoffice.official(sandbox, "su-jinqiao", demo.OFFICIAL)
        page = await PhonesPage(
            sandbox.emulator, demo.handsets(), back_office=sandbox.web_url
        ).start()
        try:
            yield Township(sandbox, page, lin, su)
        finally:
            await page.stop()
    finally:
        await sandbox.stop()


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, dict]]:
    """The stream's events as (kind, data)."""
    kind = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])


async def test_the_event_stream_brings_what_the_bot_sends(township: Township) -> None:
    url = township.page.url
    async with aiohttp.ClientSession() as client, client.get(f"{url}/events") as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        events = _events(stream)
        first = [await anext(events) for _ in range(2 * len(demo.handsets()))]
        phones = [data["name"] for kind, data in first if kind == "phone"]
        assert phones == ["李明", "Anna Li", "林秀英", "郑国华", "苏进侨", "正达村两委"]
        async with client.post(f"{url}/chats/{demo.GRID_MEMBER}/text", json={"text": "/pool"}):
            pass

        async def answered() -> dict:
            async for kind, data in events:
                if kind == "chat" and data["chat_id"] == demo.GRID_MEMBER:
                    said = [m.get("text", "") for m in data["messages"] if m["from"]["is_bot"]]
                    if data["messages"][-1].get("text") != "/pool" and len(said) > 1:
                        return data
            raise AssertionError("the stream ended")

        chat = await asyncio.wait_for(answered(), timeout=15)
    mine = [m for m in chat["messages"] if not m["from"]["is_bot"]]
    assert [m["text"] for m in mine] == ["/help", "/pool"]
    bot = township.sandbox.emulator.bot_messages(demo.GRID_MEMBER)[-1]
    assert chat["messages"][-1]["text"] == bot["text"]  # the emulator's own message
    # her menu: bound without /start, she has no menu of her own; Chinese before any language
    assert chat["commands"] == township.sandbox.emulator.commands(None, "zh")


async def test_requests_a_phone_cannot_make_are_refused(township: Township) -> None:
    url = township.page.url
    async with aiohttp.ClientSession() as client:
        async def status(method: str, path: str, **body: object) -> int:
            async with client.request(method, url + path, **body) as response:  # type: ignore[arg-type]
                return response.status

        assert await status("POST", "/chats/4242/text", json={"text": "hi"}) == 404
        assert await status("POST", "/chats/abc/text", json={"text": "hi"}) == 404
        assert await status("GET", "/chats/4242") == 404
        assert await status("POST", f"/chats/{demo.GRID_MEMBER}/text", data="hi") == 400
        assert await status("POST", f"/chats/{demo.GRID_MEMBER}/text", json={"text": " "}) == 400
        assert await status("POST", f"/chats/{demo.GRID_MEMBER}/dance", json={}) == 400
        assert await status(
            "POST", f"/chats/{demo.GRID_MEMBER}/location", json={"latitude": 95, "longitude": 0}
        ) == 400
        message_id = township.lin.last()["message_id"]
        assert await status(
            "POST", f"/chats/{demo.GRID_MEMBER}/tap", json={"message_id": message_id, "data": "x"}
        ) == 400
        assert await status("POST", f"/chats/{demo.GRID_MEMBER}/press", json={"label": "x"}) == 400
        form = aiohttp.FormData()
        form.add_field("file", b"not a picture", filename="a.jpg", content_type="image/jpeg")
        assert await status("POST", f"/chats/{demo.GRID_MEMBER}/photo", data=form) == 400
        assert await status("GET", "/files/AgACAgUAAxkBAAInothing") == 404
    # none of it reached the bot: her chat is /help and its answer
    assert len(township.sandbox.emulator.messages(demo.GRID_MEMBER)) == 2


async def test_a_photo_from_the_computer_reaches_the_bot_as_sent(township: Township) -> None:
    picture = (Path(__file__).resolve().parents[1] / "docs" / "back-office-case.png").read_bytes()
    url = township.page.url
    async with aiohttp.ClientSession() as client:
        async with client.post(f"{url}/phones", headers={"Accept-Language": "en"}) as response:
            phone = await response.json()
        assert phone["role"] == "new_villager" and phone["name"] == "Villager 1"
        form = aiohttp.FormData()
        form.add_field("file", picture, filename="litter.png", content_type="image/png")
        async with client.post(f"{url}/chats/{phone['chat_id']}/photo", data=form) as response:
            assert response.status == 200
        async with client.get(f"{url}/chats/{phone['chat_id']}") as response:
            chat = await response.json()
        sent = chat["messages"][0]["photo"]["url"]
        async with client.get(f"{url}/{sent}") as response:
            assert response.status == 200
            shown = await response.read()
    assert shown == picture  # the picture itself, as the bot downloads it
    # an English-speaking newcomer's menu: the default one set for English clients
    emulator = township.sandbox.emulator
    assert chat["commands"] == emulator.commands(None, "en") != emulator.commands(None, "zh")


async def test_a_new_villager_reports_on_the_page_and_the_grid_member_accepts_it(
    township: Township, request: pytest.FixtureRequest
) -> None:
    executable = browsing.chromium_path()
    if executable is None:
        pytest.skip(browsing.NO_CHROMIUM)
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        pytest.skip(browsing.NO_PLAYWRIGHT)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable)
        try:
            context = await chromium.new_context(viewport={"width": 1200, "height": 900})
            page = await context.new_page()
            try:
                await page.goto(f"{township.page.url}/?lang=zh-hans")
                await page.get_by_role("button", name="新村民").click()
                me = page.locator(".phone[data-role=new_villager]")
                chat = me.locator(".chat")

                async def say(text: str) -> None:
                    await me.locator("input[name=text]").fill(text)
                    await me.get_by_role("button", name="发送", exact=True).click()

                async def tap(label: str) -> None:
                    await me.locator(".inline button", has_text=label).last.click()

                await say("/start")
                await tap("正达村")
                await tap("第一网格")
                await expect(chat).to_contain_text("您的姓名")
                await say("王小红")
                await me.locator(".keyboard button", has_text="跳过").click()
                await expect(chat).to_contain_text("您已登记为正达村村民")
                await me.locator(".keyboard button", has_text="我要反映问题").click()
                await tap("环境卫生")
                await tap("卫生清理")
                await expect(chat).to_contain_text("请描述问题")
                await say("桥头的垃圾箱倒了")
                await expect(chat).to_contain_text("最多 5 张")
                await me.locator(".attach").click()
                await me.get_by_role("button", name="示例照片").click()
                await expect(chat).to_contain_text("已收到照片 1 张")
                await expect(me.locator(".message.mine img.photo")).to_have_count(1)
                await tap("完成")
                await expect(chat).to_contain_text("问题在什么位置")
                await me.locator(".keyboard button", has_text="发送我的位置").click()
                await me.get_by_role("button", name="发送这个位置").click()
                await expect(chat).to_contain_text("请核对")
                await expect(me.locator(".message.mine .pin.leaflet-container")).to_have_count(1)
                await tap("提交")
                await expect(chat).to_contain_text("事项编号")
                found = re.search(r"事项编号：(BL-\d{4}-\d+)", await chat.inner_text())
                assert found is not None
                number = found.group(1)

                lin = page.locator(f".phone[data-chat='{demo.GRID_MEMBER}']")
                card = lin.locator(".message", has_text=f"事项 {number}")
                await expect(card).to_contain_text("王小红")
                # One message: the photo, the card under it, the place as a map link.
                await expect(card.locator("img.photo")).to_have_count(1)
                await expect(card.locator("a[href^='https://uri.amap.com/marker']")).to_have_count(1)
                await card.locator("button", has_text="受理").click()
                await expect(card).to_contain_text("办理中")  # the card, edited in place
                await expect(card.locator("button", has_text="办结")).to_have_count(1)
                await expect(chat).to_contain_text(f"您反映的事项 {number} 已由林秀英")

                office = browsing.BackOffice(await context.new_page(), township.sandbox)
                await office.sign_in(township.su)
                assert number in await office.listed()
                await office.open_case(number)
                assert "办理中" in await office.text()
            finally:
                path = browsing.artifact(request.node.name)
                path.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(path), full_page=True)
        finally:
            await chromium.close()
