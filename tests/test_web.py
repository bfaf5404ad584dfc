"""The back office over HTTP: an official signs in with the link the bot sends on /web, sees
exactly the cases the bot's scope lets them see, and acts through the same domain functions as
the buttons, so that Telegram (the emulator) hears of it as after a tap."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import aiohttp
import backoffice
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet

from bot import cases, scope
from bot.config import load_settings
from bot.models import (
    Account,
    Case,
    CaseEvent,
    CaseStatus,
    Category,
    Official,
    Villager,
    WebSignIn,
)
from bot.sandbox import Sandbox
from web import server, signin


def _listed(page: str) -> set[str]:
    return set(backoffice.listed(page))


# ---- signing in and out ------------------------------------------------------------------------


async def test_an_official_signs_in_with_the_link_from_the_bot_and_signs_out(
    office: Sandbox,
) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    link = await backoffice.link(su)
    assert link.startswith(office.web_url + "/signin/")
    assert await WebSignIn.filter(token_hash=link.rsplit("/", 1)[1]).count() == 0  # hash only
    async with backoffice.browser() as browser:
        assert "请登录" in await backoffice.page(browser, office.web_url + "/cases", 401)
        async with browser.get(link, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/cases"
            cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
        page = await backoffice.page(browser, office.web_url + "/cases")
        assert "苏进侨" in page and "坂里乡" in page and "退出" in page
        await backoffice.post(browser, office.web_url + "/logout", {"csrf": backoffice.csrf(page)})
        assert "请登录" in await backoffice.page(browser, office.web_url + "/cases", 401)


async def test_the_session_cookie_is_secure_behind_https(township: None) -> None:
    settings = load_settings(
        web_url="https://office.example.cn", web_listen="",
        web_secret=base64.urlsafe_b64encode(b"k" * 32).decode(),
    )
    account = await Account.get(id=5000 + (await Official.get(code="su-jinqiao")).id)
    token = await signin.issue(account)
    app = server.build(settings, await server.session_key(settings))
    async with TestServer(app) as test_server, backoffice.browser() as browser, browser.get(
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
    su = await backoffice.official(office, "su-jinqiao", 9002)
    link = await backoffice.link(su)
    async with backoffice.browser() as first, first.get(link) as response:
        assert response.url.path == "/cases"
    async with backoffice.browser() as second:
        page = await backoffice.page(second, link, 403)
        assert "这个登录链接已经用过了" in page
        assert "请登录" in await backoffice.page(second, office.web_url + "/cases", 401)
        assert "无效" in await backoffice.page(
            second, office.web_url + "/signin/not-a-real-link-at-all", 403
        )

    late = await backoffice.link(su)
    await WebSignIn.filter(used_at__isnull=True).update(
        expires_at=cases.now() - timedelta(seconds=1)
    )
    async with backoffice.browser() as third:
        assert "已过期" in await backoffice.page(third, late, 403)
        assert "请登录" in await backoffice.page(third, office.web_url + "/cases", 401)
    assert await WebSignIn.filter(used_at__isnull=True).count() == 1  # the late link: unused


async def test_villagers_and_strangers_are_told_the_back_office_is_for_officials(
    office: Sandbox,
) -> None:
    _li, li = await backoffice.villager(office, 1001)
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
    su = await backoffice.official(office, "su-jinqiao", 9002)
    villager, _li = await backoffice.villager(office, 1001)
    case = await backoffice.report(villager, "村口垃圾桶满了", "litter")
    await cases.accept(case.id, await Official.get(code="su-jinqiao"))
    notes = CaseEvent.filter(case_id=case.id, action="note")
    browser = await backoffice.signed_in(su)
    async with browser:
        url = f"{office.web_url}/cases/{case.number}"
        page = await backoffice.page(browser, url)
        assert "添加备注" in page
        forged = (
            {"note": "不该记下"},
            {"note": "不该记下", "csrf": "forged"},
            {"note": "不该记下", "csrf": "伪造"},
        )
        for data in forged:
            refused = await backoffice.post(browser, url + "/note", data, 403)
            assert "表单已失效" in refused
        await backoffice.post(browser, office.web_url + "/logout", {}, 403)
        # still signed in, nothing written
        assert "不该记下" not in await backoffice.page(browser, url)
        assert await notes.count() == 0
        await backoffice.post(
            browser, url + "/note", {"note": "已联系保洁员", "csrf": backoffice.csrf(page)}
        )
        assert await notes.count() == 1


# ---- who sees what -----------------------------------------------------------------------------


async def _four_cases(office: Sandbox) -> dict[str, Case]:
    """A case of each reach: a grid's, a village committee's, another village's, and a
    confidential one (anonymous) from 正达村."""
    zhengda, _ = await backoffice.villager(office, 1001)
    banli, _ = await backoffice.villager(office, 1003, village="banli", name="王芳")
    return {
        "grid": await backoffice.report(zhengda, "村口垃圾桶满了", "litter"),
        "village": await backoffice.report(zhengda, "村道塌了一块", "roads"),
        "banli": await backoffice.report(banli, "坂里村的路灯坏了", "litter"),
        "secret": await backoffice.report(zhengda, "村干部吃拿卡要", "misconduct", anonymous=True),
    }


async def test_each_role_sees_exactly_its_cases_and_personal_data_where_the_bot_shows_it(
    office: Sandbox,
) -> None:
    phones = {
        "su-jinqiao": await backoffice.official(office, "su-jinqiao", 9002),  # dispatcher
        # 正达村 grid 1, committee
        "lin-xiuying": await backoffice.official(office, "lin-xiuying", 9003),
        "wu-lijuan": await backoffice.official(office, "wu-lijuan", 9004),  # 坂里村 grids
        "wang-qing": await backoffice.official(office, "wang-qing", 9005),  # 纪委
    }
    made = await _four_cases(office)
    expected = {
        "su-jinqiao": {"grid", "village", "banli"},  # never the confidential case
        "lin-xiuying": {"grid", "village"},
        "wu-lijuan": {"banli"},
        "wang-qing": {"secret"},
    }
    for code, handset in phones.items():
        async with await backoffice.signed_in(handset) as browser:
            page = await backoffice.page(browser, office.web_url + "/cases")
            assert _listed(page) == {made[k].number for k in expected[code]}, code
            assert f"共 {len(expected[code])} 件事项" in page
            for key, case in made.items():
                status = 200 if key in expected[code] else 404
                await backoffice.page(browser, f"{office.web_url}/cases/{case.number}", status)

    async with await backoffice.signed_in(phones["lin-xiuying"]) as browser:  # a member of the unit
        page = await backoffice.page(browser, f"{office.web_url}/cases/{made['grid'].number}")
        assert "李明" in page and "+8613800000001" in page
    async with await backoffice.signed_in(
        phones["su-jinqiao"]
    ) as browser:  # sees it, does not handle it
        page = await backoffice.page(browser, f"{office.web_url}/cases/{made['grid'].number}")
        assert "李明" not in page and "+8613800000001" not in page
        assert "只有办理这个事项的人员能看到反映人" in page
    async with await backoffice.signed_in(phones["wang-qing"]) as browser:
        page = await backoffice.page(browser, f"{office.web_url}/cases/{made['secret'].number}")
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
    wu = await backoffice.official(office, "wu-lijuan", 9004)
    made = await _four_cases(office)
    changes = CaseEvent.filter(action__in=["note", "assign"])
    async with await backoffice.signed_in(wu) as browser:
        page = await backoffice.page(browser, f"{office.web_url}/cases/{made['grid'].number}", 404)
        assert "没有这个事项" in page
        await backoffice.page(browser, f"{office.web_url}/cases/BL-2099-999999", 404)
        csrf = backoffice.csrf(await backoffice.page(browser, office.web_url + "/cases"))
        await backoffice.post(
            browser,
            f"{office.web_url}/cases/{made['grid'].number}/note",
            {"note": "偷看", "csrf": csrf},
            404,
        )
        await backoffice.post(
            browser,
            f"{office.web_url}/cases/{made['grid'].number}/assign",
            {
                "official": str((await Official.get(code="wu-lijuan")).id),
                "hours": "24",
                "csrf": csrf,
            },
            404,
        )
    assert await changes.count() == 0
    assert (await Case.get(id=made["grid"].id)).status == CaseStatus.NEW


# ---- the list ----------------------------------------------------------------------------------


async def test_the_list_filters_counts_and_pages(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    made = await _four_cases(office)
    await cases.accept(made["village"].id, await Official.get(code="su-jinqiao"))
    zhengda = await Villager.get(account_id=1001)
    more = [await backoffice.report(zhengda, f"第{n}处垃圾", "litter") for n in range(50)]
    async with await backoffice.signed_in(su) as browser:
        first = await backoffice.page(browser, office.web_url + "/cases")
        assert "共 53 件事项" in first and "第 1 / 2 页" in first
        assert more[-1].number in _listed(first) and made["grid"].number not in _listed(first)
        second = await backoffice.page(browser, office.web_url + "/cases?page=2")
        assert _listed(second) == {
            made["grid"].number,
            made["village"].number,
            made["banli"].number,
        }
        accepted = await backoffice.page(browser, office.web_url + "/cases?status=accepted")
        assert _listed(accepted) == {made["village"].number}
        village = (await Case.get(id=made["banli"].id)).village_id  # type: ignore[attr-defined]
        banli = await backoffice.page(browser, f"{office.web_url}/cases?village={village}")
        assert _listed(banli) == {made["banli"].number}
        found = await backoffice.page(browser, office.web_url + "/cases?q=路灯")
        assert _listed(found) == {made["banli"].number}
        by_number = await backoffice.page(
            browser, f"{office.web_url}/cases?q={made['grid'].number}"
        )
        assert _listed(by_number) == {made["grid"].number}
        roads = (await Category.get(code="roads")).id
        assert _listed(
            await backoffice.page(browser, f"{office.web_url}/cases?category={roads}")
        ) == {made["village"].number}
        unit = made["banli"].unit_id  # type: ignore[attr-defined]
        assert _listed(await backoffice.page(browser, f"{office.web_url}/cases?unit={unit}")) == {
            made["banli"].number
        }
        await Case.filter(id=made["grid"].id).update(accept_by=cases.now() - timedelta(hours=1))
        late = await backoffice.page(browser, office.web_url + "/cases?overdue=1")
        assert _listed(late) == {made["grid"].number}


# ---- actions -----------------------------------------------------------------------------------


async def test_assign_from_the_web_reaches_the_assignee_in_telegram(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    lin = await backoffice.official(office, "lin-xiuying", 9003)
    made = await _four_cases(office)
    case = made["grid"]
    lin_official = await Official.get(code="lin-xiuying")
    async with await backoffice.signed_in(su) as browser:
        url = f"{office.web_url}/cases/{case.number}"
        page = await backoffice.page(browser, url)
        assert f'<option value="{lin_official.id}">林秀英</option>' in page
        async with browser.post(
            url + "/assign",
            data={
                "official": str(lin_official.id),
                "hours": "24",
                "csrf": backoffice.csrf(page),
            },
            allow_redirects=False,
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == f"/cases/{case.number}"
        await lin.expect("苏进侨将这个事项指派给您")
        assigned = await Case.get(id=case.id)
        assert assigned.status == CaseStatus.ACCEPTED
        assert assigned.assignee_id == lin_official.id  # type: ignore[attr-defined]
        assert assigned.resolve_by is not None
        assert cases.now() + timedelta(hours=23) < assigned.resolve_by
        assert "林秀英" in await backoffice.page(browser, url)


async def test_a_refused_action_is_shown_in_words_and_changes_nothing(office: Sandbox) -> None:
    lin = await backoffice.official(office, "lin-xiuying", 9003)  # a member, not a leader
    made = await _four_cases(office)
    case = made["grid"]
    async with await backoffice.signed_in(lin) as browser:
        url = f"{office.web_url}/cases/{case.number}"
        page = await backoffice.page(browser, url)
        assert "/assign" not in page  # no Assign for her, as on the card
        refused = await backoffice.post(
            browser,
            url + "/assign",
            {
                "official": str((await Official.get(code="lin-xiuying")).id),
                "hours": "24",
                "csrf": backoffice.csrf(page),
            },
            409,
        )
        assert "只有调度员或事项所在单位的单位负责人可以指派" in refused
    assert not await CaseEvent.filter(case_id=case.id, action="assign").exists()
    assert (await Case.get(id=case.id)).status == CaseStatus.NEW


async def test_an_internal_note_is_in_the_timeline_for_officials_and_never_reaches_the_villager(
    office: Sandbox,
) -> None:
    lin = await backoffice.official(office, "lin-xiuying", 9003)
    made = await _four_cases(office)
    case = made["grid"]
    await cases.accept(case.id, await Official.get(code="lin-xiuying"))
    assert office.app is not None
    await office.app.courier.drained()
    async with await backoffice.signed_in(lin) as browser:
        url = f"{office.web_url}/cases/{case.number}"
        page = await backoffice.page(browser, url)
        await backoffice.post(
            browser,
            url + "/note",
            {"note": "反映人情绪激动，注意沟通方式", "csrf": backoffice.csrf(page)},
        )
        timeline = await backoffice.page(browser, url)
        assert "反映人情绪激动，注意沟通方式" in timeline and "（内部）" in timeline
        empty = await backoffice.post(
            browser, url + "/note", {"note": "  ", "csrf": backoffice.csrf(page)}, 409
        )
        assert "请写几句话" in empty
    event = await CaseEvent.filter(case_id=case.id, action="note").get()
    assert not event.public
    await office.app.courier.drained()
    for message in office.emulator.bot_messages(1001):
        assert "反映人情绪激动" not in (message.get("text") or "")


# ---- languages ---------------------------------------------------------------------------------


async def test_the_language_switch_stays_for_the_session(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    async with await backoffice.signed_in(su) as browser:
        page = await backoffice.page(browser, office.web_url + "/cases")
        assert "事项" in page and ">简体中文<" in page and ">English<" in page
        english = await backoffice.post(
            browser,
            office.web_url + "/language",
            {
                "language": "en",
                "next": "/cases?status=new",
                "csrf": backoffice.csrf(page),
            },
        )
        assert "Sign out" in english and "0 cases" in english
        assert "Sign out" in await backoffice.page(browser, office.web_url + "/cases")
        traditional = await backoffice.post(
            browser,
            office.web_url + "/language",
            {
                "language": "zh-hant",
                "next": "//elsewhere.example",
                "csrf": backoffice.csrf(english),
            },
        )
        assert "事項" in traditional and "登出" in traditional and "共 0 件事項" in traditional
