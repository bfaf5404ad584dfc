"""What the back office's tests share: the sandbox serving it, officials and villagers of the
demo township with their chats open, and an HTTP client signed in with the link the bot sends."""

from __future__ import annotations

import re

import aiohttp
from conftest import TEST_REDIS_URL
from multidict import CIMultiDictProxy

from bot import cases
from bot.models import Account, Case, Category, Grid, Official, Villager
from bot.sandbox import Phone, Sandbox


async def start(database_url: str, **settings: object) -> Sandbox:
    """The real bot over the emulator with the back office on a free port (Redis emptied)."""
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    return await Sandbox(
        database_url, redis_url=TEST_REDIS_URL or None, web=True, **settings
    ).start()


async def official(office: Sandbox, code: str, telegram_id: int) -> Phone:
    """An official of the demo township, bound to a Telegram account with an open chat."""
    found = await Official.get(code=code)
    found.account = await Account.create(id=telegram_id, first_name=found.name, language="zh-hans")
    await found.save()
    handset = office.phone(telegram_id, found.name)
    await handset.send("/help")
    await handset.expect("/web")
    return handset


async def villager(
    office: Sandbox, telegram_id: int, village: str = "zhengda", name: str = "李明"
) -> tuple[Villager, Phone]:
    """A registered villager of grid 1 whose chat with the bot is open, so notices reach them."""
    account = await Account.create(id=telegram_id, first_name=name, language="zh-hans")
    grid = await Grid.get(village__code=village, code="g1")
    registered = await Villager.create(
        account=account, township_id=1, village_id=grid.village_id,  # type: ignore[attr-defined]
        grid=grid, name=name, phone="+8613800000001",
    )
    handset = office.phone(telegram_id, name)
    await handset.send("/help")
    await handset.expect("/report")
    return registered, handset


async def report(villager: Villager, description: str, category: str, **extra: object) -> Case:
    change = await cases.report(
        villager, await Category.get(code=category), description=description, **extra  # type: ignore[arg-type]
    )
    return change.case


def browser() -> aiohttp.ClientSession:
    # unsafe: the back office is on 127.0.0.1, and cookies for IP addresses are kept only so.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def link(handset: Phone) -> str:
    """The sign-in link the bot sends the official on /web."""
    await handset.send("/web")
    message = await handset.expect("/signin/")
    found = re.search(r"https?://\S+/signin/\S+", message["text"])
    assert found is not None
    return found.group(0)


async def signed_in(handset: Phone) -> aiohttp.ClientSession:
    session = browser()
    async with session.get(await link(handset)) as response:
        assert response.status == 200 and response.url.path == "/cases"
    return session


async def page(session: aiohttp.ClientSession, url: str, status: int = 200) -> str:
    async with session.get(url) as response:
        text = await response.text()
        assert response.status == status, text
        return text


async def download(
    session: aiohttp.ClientSession, url: str, status: int = 200
) -> tuple[bytes, CIMultiDictProxy[str]]:
    """A file's bytes and the response's headers."""
    async with session.get(url) as response:
        body = await response.read()
        assert response.status == status, body[:500]
        return body, response.headers


def csrf(text: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', text)
    assert found is not None
    return found.group(1)


async def post(
    session: aiohttp.ClientSession, url: str, data: dict[str, str], status: int = 200,
    *, follow: bool = True,
) -> str:
    """A form posted; `follow=False` keeps the redirect (303) as the answer."""
    async with session.post(url, data=data, allow_redirects=follow) as response:
        text = await response.text()
        assert response.status == status, text
        return text


def listed(text: str) -> list[str]:
    """The case numbers a page links to, in its order."""
    return re.findall(r'<a href="/cases/([^"]+)">', text)
