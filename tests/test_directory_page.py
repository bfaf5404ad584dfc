"""The directory page (administrators only) and signing in with Telegram's Login Widget, over
HTTP against the sandbox's back office, as an official's browser would."""

from __future__ import annotations

import html
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import backoffice
import pytest
import yaml
from test_cli import villagebot

from bot.directory import dump_yaml, export_directory
from bot.models import Account, Grid, Official, Village, Villager
from bot.sandbox import Sandbox
from web import signin, views


@pytest.fixture
async def widget_office(database_url: str) -> AsyncIterator[Sandbox]:
    """The back office of a township that has set the bot's domain with @BotFather."""
    running = await backoffice.start(database_url, web_login_widget=True)
    yield running
    await running.stop()


async def _upload(
    browser: aiohttp.ClientSession, url: str, content: bytes, csrf: str | None, status: int
) -> str:
    form = aiohttp.FormData()
    if csrf is not None:
        form.add_field("csrf", csrf)
    form.add_field("file", content, filename="directory.yaml", content_type="application/yaml")
    async with browser.post(url, data=form) as response:
        text = await response.text()
        assert response.status == status, text
        return text


async def _exported() -> str:
    return dump_yaml(await export_directory("BL"))


def _problems(page: str) -> list[str]:
    section = re.search(r'<section class="refusal" id="problems">(.*?)</section>', page, re.S)
    assert section is not None, page
    return [html.unescape(re.sub(r"<[^>]+>", "", item)).strip()
            for item in re.findall(r"<li>(.*?)</li>", section.group(1), re.S)]


# ---- the directory page -------------------------------------------------------------------------


async def test_an_administrator_sees_the_directory_and_downloads_what_the_command_exports(
    office: Sandbox, database_url: str, tmp_path: Path
) -> None:
    admin = await backoffice.official(office, "admin", 9101)
    async with await backoffice.signed_in(admin) as browser:
        cases = await backoffice.page(browser, office.web_url + "/cases")
        assert '<a href="/directory">名录</a>' in cases
        page = await backoffice.page(browser, office.web_url + "/directory")
        assert "坂里乡" in page and "正达村" in page and "苏进侨" in page
        assert "调度员" in page and "管理员" in page  # officials with their roles
        assert "<code>zhengda-g1</code>" in page  # a unit, by its code
        async with browser.get(office.web_url + "/directory.yaml") as response:
            assert response.status == 200
            assert response.content_type == "application/yaml"
            assert "attachment" in response.headers["Content-Disposition"]
            downloaded = await response.text()
    command = villagebot("directory", "export", database_url=database_url, cwd=tmp_path)
    assert command.returncode == 0, command.stderr
    assert downloaded == command.stdout
    assert yaml.safe_load(downloaded)["township"]["code"] == "BL"


async def test_other_officials_find_no_directory_page(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9102)  # a dispatcher, not an administrator
    before = await _exported()
    async with await backoffice.signed_in(su) as browser:
        cases = await backoffice.page(browser, office.web_url + "/cases")
        assert 'href="/directory"' not in cases
        assert "没有这个页面" in await backoffice.page(browser, office.web_url + "/directory", 404)
        await backoffice.page(browser, office.web_url + "/directory.yaml", 404)
        await _upload(browser, office.web_url + "/directory", before.replace("正达村", "改名村")
                      .encode(), backoffice.csrf(cases), 404)
    assert await _exported() == before
    async with backoffice.browser() as stranger:  # not signed in at all
        await backoffice.page(stranger, office.web_url + "/directory", 401)


def _three_mistakes(text: str) -> bytes:
    data: dict[str, Any] = yaml.safe_load(text)
    data["villages"][0]["name"] = "改名村"  # a valid change, which must not happen either
    del data["villages"][2]["grids"][0]["name"]
    data["units"][3]["supervisor"] = "foo"
    data["township"]["timezone"] = "Asia/Beijing"
    return dump_yaml(data).encode()


async def test_an_upload_with_three_mistakes_reports_all_three_in_chinese_and_changes_nothing(
    office: Sandbox,
) -> None:
    admin = await backoffice.official(office, "admin", 9103)
    before = await _exported()
    counts = (await Village.all().count(), await Official.all().count())
    async with await backoffice.signed_in(admin) as browser:
        page = await backoffice.page(browser, office.web_url + "/directory")
        answer = await _upload(browser, office.web_url + "/directory", _three_mistakes(before),
                               backoffice.csrf(page), 422)
    assert "directory.yaml 有错误，什么都没有改动：" in answer
    assert sorted(_problems(answer)) == sorted([
        "township.timezone: 没有 'Asia/Beijing' 这个时区（例如 Asia/Shanghai）",
        "units[3].supervisor: 没有代码为 'foo' 的单位",
        "villages[2].grids[0].name: 缺少这一项",
    ])
    assert await _exported() == before
    assert (await Village.all().count(), await Official.all().count()) == counts
    assert await Village.filter(name="改名村").count() == 0


async def test_the_same_mistakes_in_english_for_an_english_reader(office: Sandbox) -> None:
    admin = await backoffice.official(office, "admin", 9104)
    before = await _exported()
    async with await backoffice.signed_in(admin) as browser:
        page = await backoffice.page(browser, office.web_url + "/directory")
        async with browser.post(office.web_url + "/language",
                                data={"csrf": backoffice.csrf(page), "language": "en",
                                      "next": "/directory"}) as response:
            assert response.status == 200
        answer = await _upload(browser, office.web_url + "/directory", _three_mistakes(before),
                               backoffice.csrf(page), 422)
    assert "directory.yaml is not valid; nothing was changed:" in answer
    assert "units[3].supervisor: unknown unit 'foo'" in _problems(answer)
    assert len(_problems(answer)) == 3
    assert await _exported() == before


async def test_a_valid_upload_imports_it_and_says_what_changed(office: Sandbox) -> None:
    admin = await backoffice.official(office, "admin", 9105)
    data = yaml.safe_load(await _exported())
    data["villages"][0]["name"] = "新正达村"
    data["villages"][0].pop("names", None)
    async with await backoffice.signed_in(admin) as browser:
        page = await backoffice.page(browser, office.web_url + "/directory")
        answer = await _upload(browser, office.web_url + "/directory",
                               dump_yaml(data).encode(), backoffice.csrf(page), 200)
        assert '<p class="message" id="report">名录 BL：更新 村 1</p>' in answer
        assert "新正达村" in answer  # the page shows the directory as it now is
        again = await _upload(browser, office.web_url + "/directory",
                              dump_yaml(data).encode(), backoffice.csrf(page), 200)
        assert "名录 BL：没有变化" in again
    assert (await Village.get(code=data["villages"][0]["code"])).name == "新正达村"


async def test_an_upload_for_another_township_is_refused(office: Sandbox) -> None:
    admin = await backoffice.official(office, "admin", 9106)
    before = await _exported()
    async with await backoffice.signed_in(admin) as browser:
        page = await backoffice.page(browser, office.web_url + "/directory")
        other = before.replace("code: BL", "code: XY").encode()
        answer = await _upload(
            browser, office.web_url + "/directory", other, backoffice.csrf(page), 422
        )
    assert _problems(answer) == ["township.code: 必须是 BL：这是 BL 的名录"]
    assert await _exported() == before


async def test_an_oversize_upload_is_refused_with_its_limit(office: Sandbox) -> None:
    admin = await backoffice.official(office, "admin", 9107)
    before = await _exported()
    big = before.encode() + b"#" + b"x" * views.MAX_BODY + b"\n"
    async with await backoffice.signed_in(admin) as browser:
        page = await backoffice.page(browser, office.web_url + "/directory")
        answer = await _upload(
            browser, office.web_url + "/directory", big, backoffice.csrf(page), 413
        )
    assert "内容太大，无法发送：最多 1024 KB。" in answer
    assert await _exported() == before


async def test_an_upload_without_the_form_token_is_refused(office: Sandbox) -> None:
    admin = await backoffice.official(office, "admin", 9108)
    before = await _exported()
    changed = before.replace("正达村", "改名村").encode()
    async with await backoffice.signed_in(admin) as browser:
        await backoffice.page(browser, office.web_url + "/directory")
        await _upload(browser, office.web_url + "/directory", changed, None, 403)
        await _upload(browser, office.web_url + "/directory", changed, "forged", 403)
    assert await _exported() == before


async def test_an_upload_without_a_file_or_not_text_is_answered(office: Sandbox) -> None:
    admin = await backoffice.official(office, "admin", 9109)
    before = await _exported()
    async with await backoffice.signed_in(admin) as browser:
        page = await backoffice.page(browser, office.web_url + "/directory")
        async with browser.post(
            office.web_url + "/directory", data={"csrf": backoffice.csrf(page)}
        ) as response:
            assert response.status == 400
            assert "请先附上要上传的名录文件（YAML）。" in await response.text()
        answer = await _upload(
            browser, office.web_url + "/directory", b"\xff\xfe\x00junk", backoffice.csrf(page), 422
        )
    assert _problems(answer) == ["文件: 不是 UTF-8 文本"]
    assert await _exported() == before


# ---- Telegram's Login Widget --------------------------------------------------------------------


def _payload(office: Sandbox, telegram_id: int, **changes: object) -> dict[str, str]:
    fields = {
        "id": str(telegram_id),
        "first_name": "Lin",
        "username": "lin_jianhua",
        "auth_date": str(int(time.time())),
    }
    fields.update({key: str(value) for key, value in changes.items()})
    token = office.settings.bot_token
    assert token is not None
    return {**fields, "hash": signin.widget_hash(fields, token)}


async def _widget_sign_in(
    office: Sandbox, fields: dict[str, str], status: int
) -> tuple[str, aiohttp.ClientSession]:
    browser = backoffice.browser()
    async with browser.get(f"{office.web_url}/signin/telegram?{urlencode(fields)}") as response:
        text = await response.text()
        assert response.status == status, text
    return text, browser


async def _no_session(office: Sandbox, browser: aiohttp.ClientSession) -> None:
    await backoffice.page(browser, office.web_url + "/cases", 401)
    await browser.close()


async def test_the_sign_in_page_offers_telegram_only_where_the_domain_is_set(
    office: Sandbox, widget_office: Sandbox
) -> None:
    async with backoffice.browser() as browser:
        plain = await backoffice.page(browser, office.web_url + "/signin")
        assert "/web" in plain and "oauth.telegram.org" not in plain
        refused = await backoffice.page(
            browser, office.web_url + "/signin/telegram?id=1&hash=x", 404
        )
        assert "这里不能用 Telegram 登录" in refused
        offered = await backoffice.page(browser, widget_office.web_url + "/signin")
    token = widget_office.settings.bot_token
    assert token is not None
    bot_id = token.split(":")[0]
    assert f"https://oauth.telegram.org/auth?bot_id={bot_id}&amp;origin=" in offered
    assert "telegram.org/js" not in offered  # no script of Telegram's in our page
    async with backoffice.browser() as browser:
        back = await backoffice.page(browser, widget_office.web_url + "/signin/telegram")
    assert '<script src="/static/telegram-signin.js"></script>' in back


async def test_a_correctly_signed_payload_signs_an_official_in(widget_office: Sandbox) -> None:
    await backoffice.official(widget_office, "admin", 9201)
    text, browser = await _widget_sign_in(widget_office, _payload(widget_office, 9201), 200)
    async with browser:
        assert "林建华" in text  # on the case list, as the administrator
        page = await backoffice.page(browser, widget_office.web_url + "/directory")
        assert "正达村" in page


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (lambda fields: {**fields, "hash": "0" * 64}, "无法核实"),
        (lambda fields: {**fields, "first_name": "Mallory"}, "无法核实"),
        (lambda fields: {k: v for k, v in fields.items() if k != "hash"}, "无法核实"),
        (lambda fields: {k: v for k, v in fields.items() if k != "auth_date"}, "无法核实"),
        (lambda fields: {**fields, "id": "abc"}, "无法核实"),
    ],
    ids=["wrong hash", "changed field", "no hash", "no auth_date", "id not a number"],
)
async def test_a_payload_that_does_not_check_signs_nobody_in(
    widget_office: Sandbox, spoil: Any, words: str
) -> None:
    await backoffice.official(widget_office, "admin", 9202)
    text, browser = await _widget_sign_in(widget_office, spoil(_payload(widget_office, 9202)), 403)
    assert words in text
    await _no_session(widget_office, browser)


@pytest.mark.parametrize("age", [2 * 86400, 86400 + 60, -3600], ids=["2 days", "a day", "future"])
async def test_an_old_or_future_payload_signs_nobody_in(widget_office: Sandbox, age: int) -> None:
    await backoffice.official(widget_office, "admin", 9203)
    fields = _payload(widget_office, 9203, auth_date=int(time.time()) - age)
    text, browser = await _widget_sign_in(widget_office, fields, 403)
    assert "太久" in text
    await _no_session(widget_office, browser)


async def test_a_villager_or_a_stranger_is_refused_with_the_links_words(
    widget_office: Sandbox,
) -> None:
    account = await Account.create(id=9204, first_name="李明", language="zh-hans")
    grid = await Grid.get(village__code="zhengda", code="g1")
    await Villager.create(
        account=account,
        township_id=1,
        village_id=grid.village_id,  # type: ignore[attr-defined]
        grid=grid,
        name="李明",
        phone="+8613800000001",
    )
    for telegram_id in (9204, 9205):  # a villager; someone the bot never saw
        text, browser = await _widget_sign_in(
            widget_office, _payload(widget_office, telegram_id), 403
        )
        assert "网页后台仅供工作人员使用。" in text
        await _no_session(widget_office, browser)
