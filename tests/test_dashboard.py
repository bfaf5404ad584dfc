"""The dashboard over HTTP: the week of tests/test_digest.py (moved to last week, so that "last
week" on the page is that week), counted by hand, on the page and in both files; the digest and
the dashboard agree; each reader counts only their own scope; bad choices are answered in
words, never with an error; and nothing personal appears anywhere."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import aiohttp
import backoffice
from conftest import make_villager
from openpyxl import load_workbook

from bot import cases, tasks
from bot.models import Case, Category, Official, Township, Unit, Village, Villager
from bot.sandbox import Phone, Sandbox
from scheduler import digest, ranking, repeats
from scheduler.figures import duration, percent
from scheduler.policy import Policy

NAME, PHONE = "李明", "13800001111"
DESCRIPTION = "正达溪边堆了一车建筑垃圾"
ZONE = "Asia/Shanghai"


async def _signed_in(
    office: Sandbox, handset: Phone, language: str = "en"
) -> aiohttp.ClientSession:
    """Signed in, reading the pages in `language`."""
    browser = await backoffice.signed_in(handset)
    page = await backoffice.page(browser, office.web_url + "/cases")
    await backoffice.post(
        browser, office.web_url + "/language",
        {"language": language, "csrf": backoffice.csrf(page)},
    )
    return browser


async def _get(browser: aiohttp.ClientSession, url: str, status: int = 200) -> bytes:
    body, _headers = await backoffice.download(browser, url, status)
    return body


def _week() -> digest.Week:
    """Last week: the dashboard's "last week" is the same."""
    return digest.Week.before(cases.now(), ZONE)


def _at(day: int, hour: int) -> datetime:
    """test_digest's 2026-11-<day> <hour>:00 UTC, moved to last week (W47 began 15 Nov 16:00
    UTC)."""
    return _week().start.astimezone(UTC) + timedelta(days=day - 15, hours=hour - 16)


async def _report(villager: Villager, at: datetime, category: str = "litter") -> Case:
    change = await cases.report(
        villager, await Category.get(code=category), description=DESCRIPTION, photos=["F1"],
        at=at,
    )
    return change.case


async def _week_of_cases() -> dict[str, Case]:
    """test_digest's week (without its case of the week after); its figures, counted by hand
    there: received 5, accepted 3 (2 on time), 4 resolutions (3 on time), 2 closed, completion
    2/5, satisfaction 1/2, median 1 h to accept and 36 h to resolve, reopen 1/4."""
    li = await make_villager(1001, phone=PHONE)
    banli = await make_villager(1002, village="banli")
    lin = await Official.get(code="lin-xiuying")
    made: dict[str, Case] = {}
    made["E"] = await _report(li, _at(10, 1))
    await cases.accept(made["E"].id, lin, at=_at(10, 2))
    await cases.resolve(made["E"].id, lin, "已清理", ["P"], at=_at(16, 3))
    made["A"] = await _report(li, _at(16, 1))
    await cases.accept(made["A"].id, lin, at=_at(16, 2))
    await cases.resolve(made["A"].id, lin, "已清理", ["P"], at=_at(16, 10))
    await cases.rate(made["A"].id, li, 5, at=_at(17, 2))
    made["B"] = await _report(li, _at(17, 1))
    await cases.accept(made["B"].id, lin, at=_at(17, 7))
    await cases.resolve(made["B"].id, lin, "已清理", ["P"], at=_at(18, 1))
    await cases.reopen(made["B"].id, li, "还有一堆", at=_at(18, 3))
    await cases.resolve(made["B"].id, lin, "全部清走", ["P"], at=_at(19, 1))
    await cases.rate(made["B"].id, li, 2, at=_at(19, 2))
    made["C"] = await _report(li, _at(18, 1))
    await cases.accept(made["C"].id, lin, at=_at(18, 2))
    made["D"] = await _report(banli, _at(19, 1))
    made["F"] = await _report(li, _at(22, 15))
    return made


def _tiles(page: str) -> dict[str, str]:
    return dict(re.findall(
        r'<span class="name">([^<]+)</span> <strong class="value">([^<]+)</strong>', page
    ))


HAND_COUNT = {
    "Received": "5", "Accepted on time": "67%", "Resolved on time": "75%",
    "Completion rate": "40%", "Satisfaction rate": "50%", "Reopen rate": "25%",
    "Median time to accept": "1.0 h", "Median time to resolve": "36.0 h",
}


def _csv_tables(body: bytes) -> dict[str, list[list[str]]]:
    """The CSV's blocks by title (each block: its title row, its header, its rows)."""
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))
    blocks: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for row in rows:
        if not row:
            current = []
            continue
        if not current and len(row) == 1 and row[0] not in blocks:
            blocks[row[0]] = current
            continue
        current.append(row)
    return blocks


def _xlsx_tables(body: bytes) -> dict[str, list[list[object]]]:
    book = load_workbook(io.BytesIO(body), read_only=True)
    return {sheet.title: [list(r) for r in sheet.iter_rows(values_only=True)] for sheet in
            book.worksheets}


def _figures_of(rows: list[list[str]] | list[list[object]]) -> dict[str, str]:
    return {str(row[0]): str(row[1]) for row in rows[1:]}


async def test_the_dashboard_shows_the_hand_count_on_the_page_and_in_both_files(
    office: Sandbox,
) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)  # a dispatcher: the township
    await backoffice.official(office, "lin-xiuying", 9003)
    await _week_of_cases()
    week = _week()
    async with await _signed_in(office, su) as browser:
        async with browser.get(office.web_url + "/", allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/dashboard"
        page = (await _get(browser, office.web_url + "/dashboard?period=last-week")).decode()
        tiles = _tiles(page)
        assert {name: tiles[name] for name in HAND_COUNT} == HAND_COUNT
        assert week.label in page and '<svg class="trend"' in page
        assert page.count("<title>") >= 14  # the chart's title and a tooltip per bar
        village_rows = re.findall(
            r"<tr><td>(Zhengda Village|Banli Village)</td><td>(\d+)</td><td>(\d+)</td>"
            r"<td>([^<]+)</td>", page
        )
        # A B C F received; A, B resolved (B twice, and E of the week before)
        assert ("Zhengda Village", "4", "4", "50%") in village_rows
        assert ("Banli Village", "1", "0", "0%") in village_rows

        query = "?period=last-week"
        text = await _get(browser, office.web_url + "/dashboard.csv" + query)
        blocks = _csv_tables(text)
        for name, value in HAND_COUNT.items():
            assert _figures_of(blocks["Figures"])[name] == value, name
        assert blocks["By village"][1][:5] == ["Zhengda Village", "4", "4", "50%", "50%"]
        assert [row[1:] for row in blocks["Trend"][1:]] == [
            ["1", "2"], ["1", "0"], ["1", "1"], ["1", "1"], ["0", "0"], ["0", "0"], ["1", "0"],
        ]
        assert {row[0] for row in blocks["By category"][1:]} == {"Litter and cleaning"}

        sheets = _xlsx_tables(await _get(browser, office.web_url + "/dashboard.xlsx" + query))
        for name, value in HAND_COUNT.items():
            assert _figures_of(sheets["Figures"])[name] == value, name
        assert sheets["By village"][1][:5] == ["Zhengda Village", 4, 4, "50%", "50%"]
        assert sum(row[1] for row in sheets["Trend"][1:]) == 5  # type: ignore[misc]
        everything = page + text.decode("utf-8-sig") + repr(sheets)
        for personal in (NAME, PHONE, DESCRIPTION, "林秀英", "+86"):
            assert personal not in everything, personal


async def test_the_digest_and_the_dashboard_give_the_same_numbers_for_the_same_week(
    office: Sandbox,
) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    await _week_of_cases()
    week = _week()
    async with await _signed_in(office, su) as browser:
        page = (await _get(browser, office.web_url + "/dashboard?period=last-week")).decode()
        blocks = _csv_tables(
            await _get(browser, office.web_url + "/dashboard.csv?period=last-week")
        )
    place = await Township.get(code="BL")
    f = await digest.figures(place, week, cases.now(), Policy(quiet_hours=None), "en")
    tiles = _tiles(page)
    assert tiles["Received"] == str(f.received)
    assert tiles["Completion rate"] == percent(f.completion_rate)
    assert tiles["Satisfaction rate"] == percent(f.satisfaction_rate)
    assert tiles["Accepted on time"] == percent(f.on_time_acceptance)
    assert tiles["Resolved on time"] == percent(f.on_time_resolution)
    assert tiles["Reopen rate"] == percent(f.reopen_rate)
    assert tiles["Median time to accept"] == duration(f.median_to_accept, "en")
    assert tiles["Median time to resolve"] == duration(f.median_to_resolve, "en")
    assert tiles["Overdue now"] == str(len([n for n, _ in f.overdue if n != "…"]))
    # Its link lists the same cases: villagers' reports (township tasks are counted apart).
    assert 'href="/cases?overdue=1&amp;kind=reports' in page
    assert f"of {f.accepted} accepted" in page and f"of {f.resolved} resolutions" in page
    figures = _figures_of(blocks["Figures"])
    assert (figures["Accepted"], figures["Resolved"], figures["Closed"]) == (
        str(f.accepted), str(f.resolved), str(f.closed))
    by_village = {row[0]: row for row in blocks["By village"][1:]}
    for line in f.villages:
        assert by_village[line.name][1:3] == [str(line.received), str(line.resolved)]
        assert by_village[line.name][5] == str(line.overdue)
    assert [tuple(map(int, row[1:])) for row in blocks["Trend"][1:]] == [
        (received, resolved) for _, received, resolved in f.daily
    ]


async def test_a_rate_with_nothing_to_count_shows_a_dash(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    await _week_of_cases()
    async with await _signed_in(office, su) as browser:
        quiet = "?period=range&from=2020-01-06&to=2020-01-12"
        tiles = _tiles((await _get(browser, office.web_url + "/dashboard" + quiet)).decode())
        figures = _figures_of(_csv_tables(
            await _get(browser, office.web_url + "/dashboard.csv" + quiet))["Figures"])
    for name in ("Accepted on time", "Resolved on time", "Completion rate",
                 "Satisfaction rate", "Reopen rate", "Median time to accept",
                 "Median time to resolve"):
        assert tiles[name] == "–" and figures[name] == "–", name
    assert tiles["Received"] == "0"


async def test_a_unit_member_counts_only_their_scope_and_a_village_narrows(
    office: Sandbox,
) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    wu = await backoffice.official(office, "wu-lijuan", 9004)  # 坂里村's grids: case D only
    await _week_of_cases()
    banli = await Village.get(code="banli")
    zhengda = await Village.get(code="zhengda")
    async with await _signed_in(office, wu) as browser:
        page = (await _get(browser, office.web_url + "/dashboard?period=last-week")).decode()
        assert _tiles(page)["Received"] == "1" and _tiles(page)["Completion rate"] == "0%"
        blocks = _csv_tables(
            await _get(browser, office.web_url + "/dashboard.csv?period=last-week")
        )
        by_village = {row[0]: row[1:3] for row in blocks["By village"][1:]}
        assert by_village["Banli Village"] == ["1", "0"]
        assert by_village["Zhengda Village"] == ["0", "0"]
        assert {row[0] for row in blocks["By unit"][1:]} == {"Banli Grid 1"}
        # Asking for another village's figures gives nothing away.
        other = (await _get(
            browser, f"{office.web_url}/dashboard?period=last-week&village={zhengda.id}"
        )).decode()
        assert _tiles(other)["Received"] == "0" and _tiles(other)["Completion rate"] == "–"
    async with await _signed_in(office, su) as browser:
        page = (await _get(
            browser, f"{office.web_url}/dashboard?period=last-week&village={banli.id}"
        )).decode()
        assert _tiles(page)["Received"] == "1"
        page = (await _get(
            browser, f"{office.web_url}/dashboard?period=last-week&village={zhengda.id}"
        )).decode()
        assert _tiles(page)["Received"] == "4" and _tiles(page)["Completion rate"] == "50%"


async def test_bad_choices_are_answered_in_words_and_never_an_error(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    await _week_of_cases()
    elsewhere = await Township.create(code="XT", name="别乡")
    foreign = await Village.create(township=elsewhere, code="v1", name="别村")
    said = {
        "?period=range&from=garbage&to=2026-13-45": "Dates are written like 2026-11-16",
        "?period=range&from=2026-11-20&to=2026-11-01": "The first date is after the last one",
        "?period=range&from=2020-01-01&to=2026-01-01": "at most 366 days",
        "?period=range": "Dates are written like",
        "?period=range&from=0001-01-01&to=9999-12-31": "Dates are written like",
        "?village=999999": "There is no such village in this township",
        f"?village={foreign.id}": "There is no such village in this township",
        "?village=abc": "There is no such village in this township",
        "?period=this-week&unit=-1": "There is no such unit in this township",
    }
    async with await _signed_in(office, su) as browser:
        for query, words in said.items():
            page = (await _get(browser, office.web_url + "/dashboard" + query, 400)).decode()
            assert words in page, query
            assert _tiles(page)["Received"].isdigit()  # the default's figures, still shown
            for suffix in (".csv", ".xlsx"):
                refused = await _get(browser, office.web_url + "/dashboard" + suffix + query,
                                     400)
                assert words in refused.decode(), (suffix, query)
        for ignored in ("?period=nonsense", "?period=this-week&from=x", "?unit=",
                        "?period=last-month", "?period=this-week"):
            await _get(browser, office.web_url + "/dashboard" + ignored)
        chinese = await _signed_in(office, su, "zh-hans")
        async with chinese:
            page = (await _get(chinese, office.web_url + "/dashboard?village=999999", 400)).decode()
            assert "本乡镇没有这个村" in page


async def test_open_repeat_problems_are_those_with_a_case_not_closed(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    lin = await Official.get(code="lin-xiuying")
    li = await make_villager(1001, phone=PHONE)
    policy = Policy(quiet_hours=None, repeat_threshold=3)
    start = cases.now() - timedelta(days=3)
    made = [await _report(li, start + timedelta(hours=i)) for i in range(3)]
    township = await Township.get(code="BL")
    period = (start - timedelta(days=1), cases.now() + timedelta(days=1))
    [burst] = await repeats.open_bursts(township.id, policy, *period)
    assert burst.numbers == [c.number for c in made] and burst.still_open == 3
    async with await _signed_in(office, su) as browser:
        days = f"?period=range&from={(start - timedelta(days=1)).date()}&to={cases.now().date()}"
        page = (await _get(browser, office.web_url + "/dashboard" + days)).decode()
        assert "3 cases of Litter and cleaning" in page and made[0].number in page
    for case in made:  # all closed: the problem is no longer open
        await cases.accept(case.id, lin)
        await cases.resolve(case.id, lin, "已清理", ["P"])
        await cases.rate(case.id, li, 5)
    assert await repeats.open_bursts(township.id, policy, *period) == []
    # One more case of the kind within the week is the same problem, open again; a case of
    # another kind is no problem of its own.
    again = await _report(li, cases.now() - timedelta(hours=1))
    await _report(li, cases.now() - timedelta(minutes=30), "homestead")
    [burst] = await repeats.open_bursts(township.id, policy, *period)
    assert burst.numbers == [c.number for c in [*made, again]] and burst.still_open == 1


async def test_an_automatic_escalation_counts_as_missed_for_the_unit_below(
    township: None,
) -> None:
    li = await make_villager(1001)
    case = await _report(li, cases.now())
    await cases.escalate(case.id, None)  # the scheduler's, at the accept deadline
    place = await Township.get(code="BL")
    local = cases.now().astimezone(ZoneInfo(ZONE))
    tallies = await ranking.tallies(place, ranking.Month.of(local.year, local.month, ZONE))
    assert tallies[case.unit_id].missed == 1  # type: ignore[attr-defined]
    assert tallies[case.unit_id].accepted == 0  # type: ignore[attr-defined]


async def _task_of_the_week() -> None:
    """tests/test_task_figures.py's task, moved to last week: 正达村两委 is sent back once and
    then done, 高层村两委 done, 坂里村两委 never accepts it."""
    su = await Official.get(code="su-jinqiao")
    zheng, dai = await Official.get(code="zheng-guohua"), await Official.get(code="dai-yongfu")
    task = await tasks.create(
        su, title="清理河道垃圾", deadline=_at(19, 1), at=_at(16, 1), targets=[
            (await Unit.get(code=f"{village}-committee")).id
            for village in ("zhengda", "banli", "gaoceng")
        ],
    )
    zhengda, _, gaoceng = await Case.filter(task_id=task.id).order_by("id")
    await cases.accept(zhengda.id, zheng, at=_at(16, 2))
    await cases.resolve(zhengda.id, zheng, "已清理", ["P"], at=_at(17, 1))
    await cases.send_back(zhengda.id, su, "东岸还有一段没清", at=_at(17, 3))
    await cases.resolve(zhengda.id, zheng, "东岸也清理完了", ["P"], at=_at(18, 1))
    await cases.confirm(zhengda.id, su, at=_at(18, 2))
    await cases.accept(gaoceng.id, dai, at=_at(16, 3))
    await cases.resolve(gaoceng.id, dai, "已清理", ["P"], at=_at(17, 5))
    await cases.confirm(gaoceng.id, su, at=_at(17, 6))


def _task_rows(page: str) -> dict[str, list[str]]:
    """The township tasks' table on the page, by its first column."""
    section = page.partition('<section class="tasks">')[2].partition("</section>")[0]
    return {
        name: re.findall(r"<td>([^<]*)</td>", cells)
        for name, cells in re.findall(r"<tr><td>([^<]+)</td>((?:<td>[^<]*</td>)+)</tr>", section)
    }


async def test_township_tasks_have_their_own_section_and_leave_the_villagers_figures_alone(
    office: Sandbox,
) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    wu = await backoffice.official(office, "wu-lijuan", 9004)  # 坂里村's grids, not its committee
    await _week_of_cases()
    await _task_of_the_week()
    async with await _signed_in(office, su) as browser:
        page = (await _get(browser, office.web_url + "/dashboard?period=last-week")).decode()
        tiles = _tiles(page)
        assert {name: tiles[name] for name in HAND_COUNT} == HAND_COUNT
        assert tiles["Overdue now"] == "3"  # C, D, F: never the task's case
        assert "<h2>Township tasks</h2>" in page
        # given, accepted, on time, resolved, result accepted, sent back, late, overdue, waiting
        assert _task_rows(page) == {
            "Total": ["3", "2", "100%", "3", "2", "1", "1", "1", "1"],
            "Zhengda Village Committee": ["1", "1", "100%", "2", "1", "1", "0", "0", "0"],
            "Banli Village Committee": ["1", "0", "–", "0", "0", "0", "1", "1", "1"],
            "Gaoceng Village Committee": ["1", "1", "100%", "1", "1", "0", "0", "0", "0"],
        }
        # This month's red/grey list names the committee that ignored the task.
        lists = page.partition("Township tasks overdue</h3>")[2].partition("</ol>")[0]
        assert "Banli Village Committee · 1 late" in lists and "Zhengda" not in lists
        blocks = _csv_tables(
            await _get(browser, office.web_url + "/dashboard.csv?period=last-week")
        )
        assert {row[0] for row in blocks["By unit"][1:]} == {"Zhengda Grid 1", "Banli Grid 1"}
        assert {row[0] for row in blocks["By category"][1:]} == {"Litter and cleaning"}
        assert blocks["Township tasks"][1] == [
            "Total", "3", "2", "100%", "3", "2", "1", "1", "1", "1"
        ]
        for person in ("郑国华", "杨明辉", "戴永福"):  # the viewer's own name heads the page
            assert person not in page + repr(blocks), person
    async with await _signed_in(office, wu) as browser:
        page = (await _get(browser, office.web_url + "/dashboard?period=last-week")).decode()
        assert _tiles(page)["Received"] == "1"
        assert _task_rows(page) == {} and "No township task in this period." in page
