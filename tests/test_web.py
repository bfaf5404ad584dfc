"""The back office over HTTP: an official signs in with the link the bot sends on /web, sees
exactly the cases the bot's scope lets them see, and acts through the same domain functions as
the buttons, so that Telegram (the emulator) hears of it as after a tap."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from conftest import TEST_REDIS_URL
from cryptography.fernet import Fernet

from bot import cases, scope
from bot.config import load_settings
from bot.models import (
    Account,
    Case,
    CaseEvent,
    CaseStatus,
    Category,
    Grid,
    Official,
    Villager,
    WebSignIn,
)
from bot.sandbox import Phone, Sandbox
from web import server, signin


@pytest.fixture
async def office(database_url: str) -> AsyncIterator[Sandbox]:
    """The sandbox with its back office served on a free port."""
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    async with Sandbox(database_url, redis_url=TEST_REDIS_URL or None, web=True) as running:
        yield running


async def _official(office: Sandbox, code: str, telegram_id: int) -> Phone:
    """An official of the demo township, bound to a Telegram account with an open chat."""
    official = await Official.get(code=code)
    official.account = await Account.create(
        id=telegram_id, first_name=official.name, language="zh-hans"
    )
    await official.save()
    handset = office.phone(telegram_id, official.name)
    await handset.send("/help")
    await handset.expect("/web")
    return handset


async def _villager(
    office: Sandbox, telegram_id: int, village: str = "zhengda", name: str = "李明"
) -> tuple[Villager, Phone]:
    account = await Account.create(id=telegram_id, first_name=name, language="zh-hans")
    grid = await Grid.get(village__code=village, code="g1")
    villager = await Villager.create(
        account=account, township_id=1, village_id=grid.village_id,  # type: ignore[attr-defined]
        grid=grid, name=name, phone="+8613800000001",
    )
    handset = office.phone(telegram_id, name)
    await handset.send("/help")
    await handset.expect("/report")
    return villager, handset


async def _report(villager: Villager, description: str, category: str, **extra: object) -> Case:
    change = await cases.report(
        villager, await Category.get(code=category), description=description, **extra  # type: ignore[arg-type]
    )
    return change.case


def _browser() -> aiohttp.ClientSession:
    # unsafe: the back office is on 127.0.0.1, and cookies for IP addresses are kept only so.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _link(handset: Phone) -> str:
    await handset.send("/web")
    message = await handset.expect("/signin/")
    found = re.search(r"https?://\S+/signin/\S+", message["text"])
    assert found is not None
    return found.group(0)


async def _signed_in(handset: Phone) -> aiohttp.ClientSession:
    browser = _browser()
    async with browser.get(await _link(handset)) as response:
        assert response.status == 200 and response.url.path == "/cases"
    return browser


async def _page(browser: aiohttp.ClientSession, url: str, status: int = 200) -> str:
    async with browser.get(url) as response:
        text = await response.text()
        assert response.status == status, text
        return text


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def _post(
    browser: aiohttp.ClientSession, url: str, data: dict[str, str], status: int = 200
) -> str:
    async with browser.post(url, data=data) as response:
        text = await response.text()
        assert response.status == status, text
        return text


def _listed(page: str) -> set[str]:
    return set(re.findall(r'<a href="/cases/([^"]+)">', page))


# ---- signing in and out ------------------------------------------------------------------------


async def test_an_official_signs_in_with_the_link_from_the_bot_and_signs_out(
    office: Sandbox,
) -> None:
    su = await _official(office, "su-jinqiao", 9002)
    link = await _link(su)
    assert link.startswith(office.web_url + "/signin/")
    assert await WebSignIn.filter(token_hash=link.rsplit("/", 1)[1]).count() == 0  # hash only
    async with _browser() as browser:
        assert "请登录" in await _page(browser, office.web_url + "/cases", 401)
        async with browser.get(link, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/cases"
            cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
        page = await _page(browser, office.web_url + "/cases")
        assert "苏进侨" in page and "坂里乡" in page and "退出" in page
        await _post(browser, office.web_url + "/logout", {"csrf": _csrf(page)})
        assert "请登录" in await _page(browser, office.web_url + "/cases", 401)


async def test_the_session_cookie_is_secure_behind_https(township: None) -> None:
    settings = load_settings(
        web_url="https://office.example.cn", web_listen="",
        web_secret=base64.urlsafe_b64encode(b"k" * 32).decode(),
    )
    account = await Account.get(id=5000 + (await Official.get(code="su-jinqiao")).id)
    token = await signin.issue(account)
    app = server.build(settings, await server.session_key(settings))
    async with TestServer(app) as test_server, _browser() as browser, browser.get(
        test_server.make_url(f"/signin/{token}"), allow_redirects=False
    ) as response:
        cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


async def test_a_session_ends_eight_hours_after_sign_in(township: None) -> None:
    key = b"k" * 32
    settings = load_settings(
        web_listen="", web_secret=base64.urlsafe_b64encode(key).decode()
    )
    su = await Official.get(code="su-jinqiao")
    fernet = Fernet(base64.urlsafe_b64encode(key))

    def cookie(age: timedelta) -> dict[str, str]:
        data = {"created": int(time.time() - age.total_seconds()),
                "session": {"account": su.account_id, "csrf": "x", "language": "en"}}  # type: ignore[attr-defined]
        return {server.COOKIE: fernet.encrypt(json.dumps(data).encode()).decode()}

    app = server.build(settings, await server.session_key(settings))
    async with TestServer(app) as test_server, aiohttp.ClientSession() as browser:
        for minutes, status in ((479, 200), (481, 401)):
            url = test_server.make_url("/cases")
            async with browser.get(url, cookies=cookie(timedelta(minutes=minutes))) as response:
                assert response.status == status, minutes


async def test_a_link_works_once_and_only_for_ten_minutes(office: Sandbox) -> None:
    su = await _official(office, "su-jinqiao", 9002)
    link = await _link(su)
    async with _browser() as first, first.get(link) as response:
        assert response.url.path == "/cases"
    async with _browser() as second:
        page = await _page(second, link, 403)
        assert "这个登录链接已经用过了" in page
        assert "请登录" in await _page(second, office.web_url + "/cases", 401)
        assert "无效" in await _page(second, office.web_url + "/signin/not-a-real-link-at-all", 403)

    late = await _link(su)
    await WebSignIn.filter(used_at__isnull=True).update(
        expires_at=cases.now() - timedelta(seconds=1)
    )
    async with _browser() as third:
        assert "已过期" in await _page(third, late, 403)
        assert "请登录" in await _page(third, office.web_url + "/cases", 401)
    assert await WebSignIn.filter(used_at__isnull=True).count() == 1  # the late link: unused


async def test_villagers_and_strangers_are_told_the_back_office_is_for_officials(
    office: Sandbox,
) -> None:
    _li, li = await _villager(office, 1001)
    await li.send("/web")
    await li.expect("网页后台仅供工作人员使用")
    stranger = office.phone(1002, "Bob", language="en")
    await stranger.send("/web")
    await stranger.expect("The back office on the web is for officials.")
    assert await WebSignIn.all().count() == 0


# ---- CSRF --------------------------------------------------------------------------------------


async def test_a_post_without_the_right_csrf_token_is_refused_and_changes_nothing(
    office: Sandbox,
) -> None:
    su = await _official(office, "su-jinqiao", 9002)
    villager, _li = await _villager(office, 1001)
    case = await _report(villager, "村口垃圾桶满了", "litter")
    await cases.accept(case.id, await Official.get(code="su-jinqiao"))
    notes = CaseEvent.filter(case_id=case.id, action="note")
    browser = await _signed_in(su)
    async with browser:
        url = f"{office.web_url}/cases/{case.number}"
        page = await _page(browser, url)
        assert "添加备注" in page
        forged = ({"note": "不该记下"}, {"note": "不该记下", "csrf": "forged"},
                  {"note": "不该记下", "csrf": "伪造"})
        for data in forged:
            refused = await _post(browser, url + "/note", data, 403)
            assert "表单已失效" in refused
        await _post(browser, office.web_url + "/logout", {}, 403)
        assert "不该记下" not in await _page(browser, url)  # still signed in, nothing written
        assert await notes.count() == 0
        await _post(browser, url + "/note", {"note": "已联系保洁员", "csrf": _csrf(page)})
        assert await notes.count() == 1


# ---- who sees what -----------------------------------------------------------------------------


async def _four_cases(office: Sandbox) -> dict[str, Case]:
    """A case of each reach: a grid's, a village committee's, another village's, and a
    confidential one (anonymous) from 正达村."""
    zhengda, _ = await _villager(office, 1001)
    banli, _ = await _villager(office, 1003, village="banli", name="王芳")
    return {
        "grid": await _report(zhengda, "村口垃圾桶满了", "litter"),
        "village": await _report(zhengda, "村道塌了一块", "roads"),
        "banli": await _report(banli, "坂里村的路灯坏了", "litter"),
        "secret": await _report(zhengda, "村干部吃拿卡要", "misconduct", anonymous=True),
    }


async def test_each_role_sees_exactly_its_cases_and_personal_data_where_the_bot_shows_it(
    office: Sandbox,
) -> None:
    phones = {
        "su-jinqiao": await _official(office, "su-jinqiao", 9002),  # dispatcher
        "lin-xiuying": await _official(office, "lin-xiuying", 9003),  # 正达村 grid 1, committee
        "wu-lijuan": await _official(office, "wu-lijuan", 9004),  # 坂里村 grids
        "wang-qing": await _official(office, "wang-qing", 9005),  # 纪委
    }
    made = await _four_cases(office)
    expected = {
        "su-jinqiao": {"grid", "village", "banli"},  # never the confidential case
        "lin-xiuying": {"grid", "village"},
        "wu-lijuan": {"banli"},
        "wang-qing": {"secret"},
    }
    for code, handset in phones.items():
        async with await _signed_in(handset) as browser:
            page = await _page(browser, office.web_url + "/cases")
            assert _listed(page) == {made[k].number for k in expected[code]}, code
            assert f"共 {len(expected[code])} 件事项" in page
            for key, case in made.items():
                status = 200 if key in expected[code] else 404
                await _page(browser, f"{office.web_url}/cases/{case.number}", status)

    async with await _signed_in(phones["lin-xiuying"]) as browser:  # a member of the unit
        page = await _page(browser, f"{office.web_url}/cases/{made['grid'].number}")
        assert "李明" in page and "+8613800000001" in page
    async with await _signed_in(phones["su-jinqiao"]) as browser:  # sees it, does not handle it
        page = await _page(browser, f"{office.web_url}/cases/{made['grid'].number}")
        assert "李明" not in page and "+8613800000001" not in page
        assert "只有办理这个事项的人员能看到反映人" in page
    async with await _signed_in(phones["wang-qing"]) as browser:
        page = await _page(browser, f"{office.web_url}/cases/{made['secret'].number}")
        assert "匿名反映" in page and "李明" not in page and "+8613800000001" not in page


async def test_the_list_query_agrees_with_may_see_for_every_official(office: Sandbox) -> None:
    made = await _four_cases(office)
    escalated = await cases.escalate(made["grid"].id, None)  # now with the village committee
    assert escalated.case.unit_id != made["grid"].unit_id  # type: ignore[attr-defined]
    every = await Case.all()
    for official in await Official.all():
        listed = {c.id for c in await Case.filter(await scope.cases_seen_by(official))}
        seen = {c.id for c in every if await scope.may_see(official, c)}
        assert listed == seen, official.code


async def test_a_guessed_or_hidden_case_number_answers_404_and_changes_nothing(
    office: Sandbox,
) -> None:
    wu = await _official(office, "wu-lijuan", 9004)
    made = await _four_cases(office)
    changes = CaseEvent.filter(action__in=["note", "assign"])
    async with await _signed_in(wu) as browser:
        page = await _page(browser, f"{office.web_url}/cases/{made['grid'].number}", 404)
        assert "没有这个事项" in page
        await _page(browser, f"{office.web_url}/cases/BL-2099-999999", 404)
        csrf = _csrf(await _page(browser, office.web_url + "/cases"))
        await _post(browser, f"{office.web_url}/cases/{made['grid'].number}/note",
                    {"note": "偷看", "csrf": csrf}, 404)
        await _post(browser, f"{office.web_url}/cases/{made['grid'].number}/assign",
                    {"official": str((await Official.get(code="wu-lijuan")).id), "hours": "24",
                     "csrf": csrf}, 404)
    assert await changes.count() == 0
    assert (await Case.get(id=made["grid"].id)).status == CaseStatus.NEW


# ---- the list ----------------------------------------------------------------------------------


async def test_the_list_filters_counts_and_pages(office: Sandbox) -> None:
    su = await _official(office, "su-jinqiao", 9002)
    made = await _four_cases(office)
    await cases.accept(made["village"].id, await Official.get(code="su-jinqiao"))
    zhengda = await Villager.get(account_id=1001)
    more = [await _report(zhengda, f"第{n}处垃圾", "litter") for n in range(50)]
    async with await _signed_in(su) as browser:
        first = await _page(browser, office.web_url + "/cases")
        assert "共 53 件事项" in first and "第 1 / 2 页" in first
        assert more[-1].number in _listed(first) and made["grid"].number not in _listed(first)
        second = await _page(browser, office.web_url + "/cases?page=2")
        assert _listed(second) == {made["grid"].number, made["village"].number,
                                   made["banli"].number}
        accepted = await _page(browser, office.web_url + "/cases?status=accepted")
        assert _listed(accepted) == {made["village"].number}
        village = (await Case.get(id=made["banli"].id)).village_id  # type: ignore[attr-defined]
        banli = await _page(browser, f"{office.web_url}/cases?village={village}")
        assert _listed(banli) == {made["banli"].number}
        found = await _page(browser, office.web_url + "/cases?q=路灯")
        assert _listed(found) == {made["banli"].number}
        by_number = await _page(browser, f"{office.web_url}/cases?q={made['grid'].number}")
        assert _listed(by_number) == {made["grid"].number}
        roads = (await Category.get(code="roads")).id
        assert _listed(await _page(browser, f"{office.web_url}/cases?category={roads}")) == {
            made["village"].number
        }
        unit = made["banli"].unit_id  # type: ignore[attr-defined]
        assert _listed(await _page(browser, f"{office.web_url}/cases?unit={unit}")) == {
            made["banli"].number
        }
        await Case.filter(id=made["grid"].id).update(accept_by=cases.now() - timedelta(hours=1))
        late = await _page(browser, office.web_url + "/cases?overdue=1")
        assert _listed(late) == {made["grid"].number}


# ---- actions -----------------------------------------------------------------------------------


async def test_assign_from_the_web_reaches_the_assignee_in_telegram(office: Sandbox) -> None:
    su = await _official(office, "su-jinqiao", 9002)
    lin = await _official(office, "lin-xiuying", 9003)
    made = await _four_cases(office)
    case = made["grid"]
    lin_official = await Official.get(code="lin-xiuying")
    async with await _signed_in(su) as browser:
        url = f"{office.web_url}/cases/{case.number}"
        page = await _page(browser, url)
        assert f'<option value="{lin_official.id}">林秀英</option>' in page
        async with browser.post(url + "/assign", data={
            "official": str(lin_official.id), "hours": "24", "csrf": _csrf(page),
        }, allow_redirects=False) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/cases/{case.number}"
        await lin.expect("苏进侨将这个事项指派给您")
        assigned = await Case.get(id=case.id)
        assert assigned.status == CaseStatus.ACCEPTED
        assert assigned.assignee_id == lin_official.id  # type: ignore[attr-defined]
        assert assigned.resolve_by is not None
        assert cases.now() + timedelta(hours=23) < assigned.resolve_by
        assert "林秀英" in await _page(browser, url)


async def test_a_refused_action_is_shown_in_words_and_changes_nothing(office: Sandbox) -> None:
    lin = await _official(office, "lin-xiuying", 9003)  # a member, not a leader
    made = await _four_cases(office)
    case = made["grid"]
    async with await _signed_in(lin) as browser:
        url = f"{office.web_url}/cases/{case.number}"
        page = await _page(browser, url)
        assert "/assign" not in page  # no Assign for her, as on the card
        refused = await _post(browser, url + "/assign", {
            "official": str((await Official.get(code="lin-xiuying")).id), "hours": "24",
            "csrf": _csrf(page),
        }, 409)
        assert "只有调度员或事项所在单位的单位负责人可以指派" in refused
    assert not await CaseEvent.filter(case_id=case.id, action="assign").exists()
    assert (await Case.get(id=case.id)).status == CaseStatus.NEW


async def test_an_internal_note_is_in_the_timeline_for_officials_and_never_reaches_the_villager(
    office: Sandbox,
) -> None:
    lin = await _official(office, "lin-xiuying", 9003)
    made = await _four_cases(office)
    case = made["grid"]
    await cases.accept(case.id, await Official.get(code="lin-xiuying"))
    assert office.app is not None
    await office.app.courier.drained()
    async with await _signed_in(lin) as browser:
        url = f"{office.web_url}/cases/{case.number}"
        page = await _page(browser, url)
        await _post(browser, url + "/note", {"note": "反映人情绪激动，注意沟通方式",
                                             "csrf": _csrf(page)})
        timeline = await _page(browser, url)
        assert "反映人情绪激动，注意沟通方式" in timeline and "（内部）" in timeline
        empty = await _post(browser, url + "/note", {"note": "  ", "csrf": _csrf(page)}, 409)
        assert "请写几句话" in empty
    event = await CaseEvent.filter(case_id=case.id, action="note").get()
    assert not event.public
    await office.app.courier.drained()
    for message in office.emulator.bot_messages(1001):
        assert "反映人情绪激动" not in (message.get("text") or "")


# ---- languages ---------------------------------------------------------------------------------


async def test_the_language_switch_stays_for_the_session(office: Sandbox) -> None:
    su = await _official(office, "su-jinqiao", 9002)
    async with await _signed_in(su) as browser:
        page = await _page(browser, office.web_url + "/cases")
        assert "事项" in page and ">简体中文<" in page and ">English<" in page
        english = await _post(browser, office.web_url + "/language", {
            "language": "en", "next": "/cases?status=new", "csrf": _csrf(page),
        })
        assert "Sign out" in english and "0 cases" in english
        assert "Sign out" in await _page(browser, office.web_url + "/cases")
        traditional = await _post(browser, office.web_url + "/language", {
            "language": "zh-hant", "next": "//elsewhere.example", "csrf": _csrf(english),
        })
        assert "事項" in traditional and "登出" in traditional and "共 0 件事項" in traditional
