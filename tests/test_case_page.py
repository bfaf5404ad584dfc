"""A case in the back office: its photos and voice message fetched through the Bot API (and
kept, the token never shown), its pin and the Map page, and the actions Escalate and
Supervise (督办), refused as the buttons are. Real sandbox, real browser session, the
emulator for Telegram."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import backoffice
import pytest
from aiogram.exceptions import TelegramBadRequest

from bench.processes import free_port
from bot import cases, scope
from bot.config import SettingsError, load_settings
from bot.emulator import MAX_DOWNLOAD_BYTES, BotAPIEmulator
from bot.models import Account, Case, CaseEvent, CaseStatus, Grid, Official, Villager
from bot.sandbox import EXAMPLE_DIRECTORY, Sandbox
from bot.startup import import_directory_file
from web import pins, signin

COMMITTEE_CHAT = -1001000000101  # 正达村两委's group chat, above 正达村第一网格


async def _file(
    browser: aiohttp.ClientSession, url: str, status: int = 200
) -> tuple[str, bytes]:
    body, headers = await backoffice.download(browser, url, status)
    return headers.get("Content-Type", ""), body


async def _post(
    browser: aiohttp.ClientSession, url: str, data: dict[str, str], status: int = 303
) -> str:
    async with browser.post(url, data=data, allow_redirects=False) as response:
        text = await response.text()
        assert response.status == status, text
        return text


def _map_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="map-data">(.*?)</script>', page, re.S)
    assert found is not None, "no map on the page"
    data: dict = json.loads(found.group(1))
    return data



def _get_files(office: Sandbox) -> int:
    return office.emulator.stats.requests["getFile"]


# ---- photos and the voice message ----------------------------------------------------------


async def test_photos_and_voice_are_fetched_once_shown_to_who_may_see_and_never_show_the_token(
    office: Sandbox,
) -> None:
    lin = await backoffice.official(office, "lin-xiuying", 9003)  # 正达村 grid 1
    wu = await backoffice.official(office, "wu-lijuan", 9004)  # 坂里村: may not see it
    villager, li = await backoffice.villager(office, 1001)
    photo = (await li.user.send_photo())["photo"][-1]["file_id"]
    voice = (await li.user.send_voice(3))["voice"]["file_id"]
    case = await backoffice.report(villager, "", "litter", photos=[photo], voice_file_id=voice)
    url = f"{office.web_url}/cases/{case.number}"
    async with await backoffice.signed_in(lin) as browser:
        page = await backoffice.page(browser, url)
        assert f'<img src="/cases/{case.number}/files/1"' in page
        assert f'<audio controls preload="none" src="/cases/{case.number}/files/2"' in page
        assert office.emulator.token not in page and photo not in page and voice not in page
        before = _get_files(office)
        kind, jpeg = await _file(browser, url + "/files/1")
        assert kind == "image/jpeg" and jpeg.startswith(b"\xff\xd8")
        assert _get_files(office) == before + 1
        assert await _file(browser, url + "/files/1") == (kind, jpeg)  # kept: Telegram not asked
        assert _get_files(office) == before + 1
        kind, ogg = await _file(browser, url + "/files/2")
        assert kind == "audio/ogg" and ogg.startswith(b"OggS")
        for wrong in ("3", "0", "x", "99999999999"):
            await _file(browser, f"{url}/files/{wrong}", 404)

        # Evidence photos join the case's files, under their event in the history.
        await cases.accept(case.id, await Official.get(code="lin-xiuying"))
        evidence = (await lin.user.send_photo(width=640, height=480))["photo"][-1]["file_id"]
        await cases.resolve(case.id, await Official.get(code="lin-xiuying"), "已清理", [evidence])
        page = await backoffice.page(browser, url)
        assert re.search(r'已清理</div>\s*<div class="photos">\s*<a href="/cases/[^"]+/files/3">',
                         page)
        kind, proof = await _file(browser, url + "/files/3")
        assert kind == "image/jpeg" and proof.startswith(b"\xff\xd8") and proof != jpeg
    assert _get_files(office) == before + 3

    async with await backoffice.signed_in(wu) as browser:  # the same 404 as for a guessed number
        for n in ("1", "2", "3"):
            _kind, body = await _file(browser, f"{url}/files/{n}", 404)
            assert "没有这个事项" in body.decode()
    assert _get_files(office) == before + 3


async def test_a_file_telegram_will_not_give_shows_a_placeholder_not_a_broken_page(
    office: Sandbox,
) -> None:
    lin = await backoffice.official(office, "lin-xiuying", 9003)
    villager, li = await backoffice.villager(office, 1001)
    big = await li.user.send_document("video.mp4", "video/mp4", data=bytes(MAX_DOWNLOAD_BYTES + 1))
    too_big = big["document"]["file_id"]
    assert office.app is not None
    with pytest.raises(TelegramBadRequest, match="Bad Request: file is too big"):
        await office.app.bot.get_file(too_big)
    with pytest.raises(TelegramBadRequest, match="Bad Request: invalid file_id"):
        await office.app.bot.get_file("AgACAgUAAxkBAAIbogus")
    case = await backoffice.report(villager, "垃圾桶满了", "litter", photos=[too_big],
                         voice_file_id="AwACAgUAAxkBAAIbogus")
    url = f"{office.web_url}/cases/{case.number}"
    async with await backoffice.signed_in(lin) as browser:
        page = await backoffice.page(browser, url)
        assert "/files/1" in page and "/files/2" in page
        kind, picture = await _file(browser, url + "/files/1", 502)
        assert kind == "image/svg+xml" and "暂时无法从 Telegram 获取这个文件" in picture.decode()
        kind, words = await _file(browser, url + "/files/2", 502)
        assert kind.startswith("text/html") and "暂时无法从 Telegram 获取这个文件" in words.decode()
        assert office.emulator.token not in picture.decode() + words.decode()
        assert "垃圾桶满了" in await backoffice.page(browser, url)  # the page itself still shows


# ---- the map -----------------------------------------------------------------------------------


async def _pinned_cases(office: Sandbox) -> dict[str, Case]:
    zhengda, _ = await backoffice.villager(office, 1001)
    banli, _ = await backoffice.villager(office, 1003, village="banli", name="王芳")
    return {
        "grid": await backoffice.report(
            zhengda, "村口垃圾桶满了", "litter", latitude=28.1, longitude=118.1
        ),
        "village": await backoffice.report(
            zhengda, "村道塌了一块", "roads", latitude=28.2, longitude=118.2, address="正达村村道"
        ),
        "banli": await backoffice.report(
            banli, "坂里村的路灯坏了", "litter", latitude=28.3, longitude=118.3
        ),
        "secret": await backoffice.report(
            zhengda, "村干部吃拿卡要", "misconduct", anonymous=True, latitude=28.4, longitude=118.4
        ),
        "unpinned": await backoffice.report(zhengda, "水沟堵了", "litter"),
    }


async def test_the_map_shows_only_the_pins_in_scope_coloured_by_status_without_tiles(
    office: Sandbox,
) -> None:
    lin = await backoffice.official(office, "lin-xiuying", 9003)
    # dispatcher: never the confidential case
    su = await backoffice.official(office, "su-jinqiao", 9002)
    made = await _pinned_cases(office)
    await cases.accept(made["village"].id, await Official.get(code="lin-xiuying"))
    async with await backoffice.signed_in(lin) as browser:
        page = await backoffice.page(browser, office.web_url + "/map")
        data = _map_data(page)
        assert data["tiles"] == "" and data["cluster"] is True
        assert "/static/vendor/leaflet-1.9.4/leaflet.js" in page
        assert "/static/vendor/leaflet.markercluster-1.5.3/leaflet.markercluster.js" in page
        by_number = {p["number"]: p for p in data["pins"]}
        assert set(by_number) == {made["grid"].number, made["village"].number}
        grid, village = by_number[made["grid"].number], by_number[made["village"].number]
        assert grid["colour"] == pins.STATUS_COLOURS[CaseStatus.NEW] != village["colour"]
        assert village["colour"] == pins.STATUS_COLOURS[CaseStatus.ACCEPTED]
        assert (village["lat"], village["lng"]) == (28.2, 118.2)
        assert village["url"] == f"/cases/{made['village'].number}"
        assert village["status"] == "办理中" and village["category"] == "道路维修"
        assert set(village) == {"number", "lat", "lng", "colour", "status", "category", "url"}
        for private in ("李明", "+8613800000001", "村道塌了一块", "正达村村道"):
            assert private not in page  # no personal data, nor the description
        assert "共 2 件带位置的事项" in page
        accepted = _map_data(
            await backoffice.page(browser, office.web_url + "/map?status=accepted")
        )
        assert [p["number"] for p in accepted["pins"]] == [made["village"].number]
        found = _map_data(await backoffice.page(browser, office.web_url + "/map?q=垃圾"))
        assert [p["number"] for p in found["pins"]] == [made["grid"].number]
        empty = await backoffice.page(browser, office.web_url + "/map?status=closed")
        assert "没有符合条件、带位置的事项" in empty and 'id="map-data"' not in empty
        case_page = await backoffice.page(browser, f"{office.web_url}/cases/{made['grid'].number}")
        assert [p["number"] for p in _map_data(case_page)["pins"]] == [made["grid"].number]
        assert "（28.10000，118.10000）" in case_page
        unpinned = await backoffice.page(
            browser, f"{office.web_url}/cases/{made['unpinned'].number}"
        )
        assert 'id="map-data"' not in unpinned
    async with await backoffice.signed_in(su) as browser:
        data = _map_data(await backoffice.page(browser, office.web_url + "/map"))
        assert {p["number"] for p in data["pins"]} == {
            made[k].number for k in ("grid", "village", "banli")
        }
    async with backoffice.browser() as stranger:  # the vendored scripts are served, the map is not
        await backoffice.page(stranger, office.web_url + "/static/vendor/leaflet-1.9.4/leaflet.js")
        await backoffice.page(stranger, office.web_url + "/static/vendor/leaflet-1.9.4/LICENSE")
        assert "请登录" in await backoffice.page(stranger, office.web_url + "/map", 401)


async def test_the_tile_server_is_a_setting(database_url: str) -> None:
    tiles = "https://tiles.township.example.cn/{z}/{x}/{y}.png"
    with pytest.raises(SettingsError, match="setting WEB_TILES"):
        load_settings(web_tiles="https://tiles.example.cn/map.png")
    with pytest.raises(SettingsError, match="setting WEB_TILES"):
        load_settings(web_tiles="ftp://tiles.example.cn/{z}/{x}/{y}.png")
    running = await backoffice.start(
        database_url, web_tiles=tiles, web_tiles_attribution="© 乡测绘"
    )
    try:
        lin = await backoffice.official(running, "lin-xiuying", 9003)
        await _pinned_cases(running)
        async with await backoffice.signed_in(lin) as browser:
            data = _map_data(await backoffice.page(browser, running.web_url + "/map"))
            assert data["tiles"] == tiles and data["attribution"] == "© 乡测绘"
            assert len(data["pins"]) == 2
    finally:
        await running.stop()


# ---- escalate and supervise ---------------------------------------------------------------------


async def test_escalate_from_the_web_reaches_the_unit_above_as_the_button_does(
    office: Sandbox,
) -> None:
    office.emulator.group(COMMITTEE_CHAT, "正达村两委")
    lin = await backoffice.official(office, "lin-xiuying", 9003)  # a member of the case's grid
    zhengda, li = await backoffice.villager(office, 1001)
    case = await backoffice.report(zhengda, "村口垃圾桶满了", "litter")
    url = f"{office.web_url}/cases/{case.number}"
    async with await backoffice.signed_in(lin) as browser:
        page = await backoffice.page(browser, url)
        assert "事项将转到正达村两委" in page
        await _post(
            browser, url + "/escalate", {"note": "需要村里协调", "csrf": backoffice.csrf(page)}
        )
        card = await office.emulator.wait_for(COMMITTEE_CHAT, case.number)
        assert "村口垃圾桶满了" in card["text"]
        await li.expect(f"您反映的事项 {case.number} 已转交正达村两委办理")
        moved = await Case.get(id=case.id).prefetch_related("unit")
        assert moved.unit.code == "zhengda-committee" and moved.escalation_level == 1
        event = await CaseEvent.get(case_id=case.id, action="escalate")
        assert event.note == "需要村里协调" and event.actor_id == 9003  # type: ignore[attr-defined]
        assert "需要村里协调" in await backoffice.page(browser, url)


async def test_supervise_reaches_the_assignee_in_telegram_and_is_in_the_history(
    office: Sandbox,
) -> None:
    lin = await backoffice.official(office, "lin-xiuying", 9003)
    zheng = await backoffice.official(office, "zheng-guohua", 9006)  # leader of the committee above
    zhengda, _li = await backoffice.villager(office, 1001)
    case = await backoffice.report(zhengda, "村口垃圾桶满了", "litter")
    await cases.accept(case.id, await Official.get(code="lin-xiuying"))
    url = f"{office.web_url}/cases/{case.number}"
    async with await backoffice.signed_in(zheng) as browser:
        page = await backoffice.page(browser, url)
        assert "将在 Telegram 督促林秀英" in page
        await _post(
            browser, url + "/supervise", {"note": "请今天处理完", "csrf": backoffice.csrf(page)}
        )
        nudge = await lin.expect("督办：郑国华督促您尽快办理事项")
        assert case.number in nudge["text"] and "请今天处理完" in nudge["text"]
        assert "✔️ 办结" in str(nudge.get("reply_markup"))  # the work buttons come with it
        history = await backoffice.page(browser, url)
        assert re.search(
            r'督办：已督促办理人\s*<em>（内部）</em>\s*<div class="note">请今天处理完', history
        )
    event = await CaseEvent.get(case_id=case.id, action="supervise")
    assert not event.public and event.actor_id == 9006  # type: ignore[attr-defined]
    assert (await Case.get(id=case.id)).status == CaseStatus.ACCEPTED
    assert office.app is not None
    await office.app.courier.drained()
    assert not any("督办" in (m.get("text") or "") for m in office.emulator.bot_messages(1001))


async def test_who_may_not_escalate_or_supervise_is_refused_and_nothing_changes(
    office: Sandbox,
) -> None:
    lin = await backoffice.official(office, "lin-xiuying", 9003)  # member and assignee: no 督办
    # sees it from above: no Escalate
    zheng = await backoffice.official(office, "zheng-guohua", 9006)
    wu = await backoffice.official(office, "wu-lijuan", 9004)  # another village: does not see it
    su = await backoffice.official(office, "su-jinqiao", 9002)  # dispatcher
    zhengda, _li = await backoffice.villager(office, 1001)
    case = await backoffice.report(zhengda, "村口垃圾桶满了", "litter")
    # at the dispatch centre: nobody above
    fire = await backoffice.report(zhengda, "山上冒烟", "fire")
    await cases.accept(case.id, await Official.get(code="lin-xiuying"))
    url = f"{office.web_url}/cases/{case.number}"
    version = (await Case.get(id=case.id)).version

    async with await backoffice.signed_in(lin) as browser:
        page = await backoffice.page(browser, url)
        assert "/supervise" not in page and "/escalate" in page
        refused = await _post(
            browser, url + "/supervise", {"note": "催", "csrf": backoffice.csrf(page)}, 409
        )
        assert "只有调度员，或事项所在单位及其上级单位的单位负责人可以督办" in refused
    async with await backoffice.signed_in(zheng) as browser:
        page = await backoffice.page(browser, url)
        assert "/escalate" not in page and "/supervise" in page
        refused = await _post(
            browser, url + "/escalate", {"note": "", "csrf": backoffice.csrf(page)}, 409
        )
        assert "只有事项所在单位、办理人或调度员可以上报上级" in refused
    async with await backoffice.signed_in(wu) as browser:
        csrf = backoffice.csrf(await backoffice.page(browser, office.web_url + "/cases"))
        for action in ("escalate", "supervise"):
            await _post(browser, f"{url}/{action}", {"note": "", "csrf": csrf}, 404)
    async with await backoffice.signed_in(su) as browser:
        page = await backoffice.page(browser, f"{office.web_url}/cases/{fire.number}")
        assert "/escalate" not in page and "/supervise" not in page  # new, and nobody above
        refused = await _post(
            browser,
            f"{office.web_url}/cases/{fire.number}/escalate",
            {"note": "", "csrf": backoffice.csrf(page)},
            409,
        )
        assert "没有可以上报的上级单位" in refused
        refused = await _post(
            browser,
            f"{office.web_url}/cases/{fire.number}/supervise",
            {"note": "", "csrf": backoffice.csrf(page)},
            409,
        )
        assert "只有办理中（已有办理人）的事项可以督办" in refused
        too_long = await _post(
            browser,
            url + "/supervise",
            {"note": "催" * (cases.NOTE_MAX + 1), "csrf": backoffice.csrf(page)},
            409,
        )
        assert f"请控制在 {cases.NOTE_MAX} 个字以内" in too_long

    after = await Case.get(id=case.id)
    assert after.version == version and after.unit_id == case.unit_id  # type: ignore[attr-defined]
    assert (await Case.get(id=fire.id)).version == fire.version
    assert not await CaseEvent.filter(action__in=["escalate", "supervise"]).exists()
    may = {
        code: await scope.may_supervise(await Official.get(code=code), after)
        for code in (
            "su-jinqiao",
            "zheng-guohua",
            "lin-xiuying",
            "wu-lijuan",
            "chen-jianping",
            "yang-minghui",
        )
    }
    assert may == {
        "su-jinqiao": True,
        "zheng-guohua": True,
        "lin-xiuying": False,
        "wu-lijuan": False,
        "chen-jianping": False,
        "yang-minghui": False,
    }


async def test_escalate_and_supervise_need_the_csrf_token(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    zhengda, _li = await backoffice.villager(office, 1001)
    case = await backoffice.report(zhengda, "村口垃圾桶满了", "litter")
    await cases.accept(case.id, await Official.get(code="lin-xiuying"))
    url = f"{office.web_url}/cases/{case.number}"
    async with await backoffice.signed_in(su) as browser:
        page = await backoffice.page(browser, url)
        assert "/escalate" in page and "/supervise" in page
        for action in ("escalate", "supervise"):
            for data in ({"note": "x"}, {"note": "x", "csrf": "forged"}):
                refused = await _post(browser, f"{url}/{action}", data, 403)
                assert "表单已失效" in refused
    assert not await CaseEvent.filter(action__in=["escalate", "supervise"]).exists()
    assert (await Case.get(id=case.id)).status == CaseStatus.ACCEPTED


# ---- the back office alone ----------------------------------------------------------------------


async def test_the_back_office_alone_fetches_files_with_the_bot_token(
    database: str, tmp_path: Path
) -> None:
    """`villagebot web` in a process of its own makes a Bot of BOT_TOKEN to fetch with."""
    emulator = BotAPIEmulator()
    await emulator.start()
    try:
        await import_directory_file(
            load_settings(database_url=database, directory_file=EXAMPLE_DIRECTORY)
        )
        lin = await Official.get(code="lin-xiuying")
        lin.account = await Account.create(id=9003, first_name="林秀英", language="zh-hans")
        await lin.save()
        villager_account = await Account.create(id=1001, first_name="李明", language="zh-hans")
        grid = await Grid.get(village__code="zhengda", code="g1")
        villager = await Villager.create(
            account=villager_account,
            township_id=1,
            village_id=grid.village_id,  # type: ignore[attr-defined]
            grid=grid,
            name="李明",
        )
        photo = (await emulator.user(1001, "李明").send_photo())["photo"][-1]["file_id"]
        case = await backoffice.report(villager, "村口垃圾桶满了", "litter", photos=[photo])
        port = free_port()
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.upper().startswith(
                ("BOT_", "TELEGRAM_", "DATABASE_", "REDIS_", "WEB_", "DIRECTORY_")
            )
        }
        environment.update(
            BOT_TOKEN=emulator.token,
            TELEGRAM_API_URL=emulator.base_url,
            DATABASE_URL=database,
            WEB_LISTEN=f"127.0.0.1:{port}",
            WEB_URL=f"http://127.0.0.1:{port}",
            WEB_FILES=str(tmp_path / "files"),
        )
        office = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "web",
            env=environment,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert office.stdout is not None
            line = await asyncio.wait_for(office.stdout.readline(), timeout=90)
            assert line.decode().startswith("back office on"), line
            assert lin.account is not None
            link = f"http://127.0.0.1:{port}/signin/{await signin.issue(lin.account)}"
            async with backoffice.browser() as browser:
                async with browser.get(link) as response:
                    assert response.status == 200 and response.url.path == "/cases"
                url = f"http://127.0.0.1:{port}/cases/{case.number}"
                page = await backoffice.page(browser, url)
                assert emulator.token not in page
                kind, jpeg = await _file(browser, url + "/files/1")
                assert kind == "image/jpeg" and jpeg.startswith(b"\xff\xd8")
                assert await _file(browser, url + "/files/1") == (kind, jpeg)
            assert emulator.stats.requests["getFile"] == 1
            assert [p.read_bytes() for p in (tmp_path / "files").iterdir()] == [jpeg]
        finally:
            office.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(office.communicate(), timeout=90)
            assert office.returncode == 0 and emulator.token not in stderr.decode()
    finally:
        await emulator.stop()
