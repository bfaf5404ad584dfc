"""The back office's case list over HTTP: every filter, every sort, pages that keep both, and
the exports (CSV and XLSX) holding the list's rows, within the reader's scope."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import backoffice
import pytest
from openpyxl import load_workbook
from tortoise import connections

from bot import cases
from bot.models import Account, Case, CaseStatus, Category, Grid, Official, Unit, Village, Villager
from bot.sandbox import Sandbox


async def _villager(telegram_id: int, village: str = "zhengda", name: str = "李明") -> Villager:
    account = await Account.create(id=telegram_id, first_name=name, language="zh-hans")
    grid = await Grid.get(village__code=village, code="g1")
    return await Villager.create(
        account=account, township_id=1, village_id=grid.village_id,  # type: ignore[attr-defined]
        grid=grid, name=name, phone="+8613800000001",
    )


def _csv_rows(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(body[3:].decode("utf-8"))))


def _xlsx_rows(body: bytes) -> list[list[object]]:
    book = load_workbook(io.BytesIO(body))
    return [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]


async def _at(case: Case, **moments: datetime) -> None:
    await Case.filter(id=case.id).update(**moments)


def _shanghai(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of November 2026 on the township's clock (UTC+8), in UTC."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC) - timedelta(hours=8)


# ---- filters -----------------------------------------------------------------------------------


async def test_each_filter_narrows_the_list(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    li = await _villager(1001)
    wang = await _villager(1003, village="banli", name="王芳")
    litter = await backoffice.report(li, "村口垃圾桶满了", "litter")
    roads = await backoffice.report(li, "村道塌了一块", "roads", anonymous=True)
    banli = await backoffice.report(wang, "坂里村的路灯坏了，WiFi 杆也歪了", "streetlights")
    late = await backoffice.report(wang, "桥边护栏松动", "roads")
    await cases.accept(roads.id, await Official.get(code="su-jinqiao"))
    await _at(litter, created_at=_shanghai(22, 23, 30))  # 15:30 UTC on the 22nd
    await _at(roads, created_at=_shanghai(23, 0, 30))  # 16:30 UTC, also the 22nd in UTC
    await _at(banli, created_at=_shanghai(25, 12))
    await _at(late, created_at=_shanghai(27, 9), accept_by=cases.now() - timedelta(hours=1))
    every = {litter.number, roads.number, banli.number, late.number}
    zhengda = await Village.get(code="zhengda")
    unit = await Unit.get(id=banli.unit_id)  # type: ignore[attr-defined]
    expected = {
        "": every,
        "status=accepted": {roads.number},
        "status=new": {litter.number, banli.number, late.number},
        f"village={zhengda.id}": {litter.number, roads.number},
        f"unit={unit.id}": {banli.number} | ({late.number} if late.unit_id == unit.id else set()),  # type: ignore[attr-defined]
        f"category={(await Category.get(code='roads')).id}": {roads.number, late.number},
        "overdue=1": {late.number},
        "anonymous=yes": {roads.number},
        "anonymous=no": {litter.number, banli.number, late.number},
        "from=2026-11-22&to=2026-11-22": {litter.number},  # the township's day, not UTC's
        "from=2026-11-23&to=2026-11-23": {roads.number},
        "from=2026-11-23": {roads.number, banli.number, late.number},
        "to=2026-11-25": {litter.number, roads.number, banli.number},
        "q=路灯": {banli.number},
        "q=wifi": {banli.number},  # letters in any case
        "q=垃圾桶满": {litter.number},
        f"q={late.number.lower()}": {late.number},
        f"q={late.number[-3:]}": {c for c in every if late.number[-3:] in c},
        "status=new&anonymous=no&from=2026-11-24": {banli.number, late.number},
    }
    async with await backoffice.signed_in(su) as browser:
        for query, numbers in expected.items():
            page = await backoffice.page(browser, f"{office.web_url}/cases?{query}")
            assert set(backoffice.listed(page)) == numbers, query
            assert f"共 {len(numbers)} 件事项" in page, query


# ---- sorting and pages -------------------------------------------------------------------------


async def _six(office: Sandbox) -> dict[str, Case]:
    """Cases in three villages and states with known times: each sort has one right order."""
    li = await _villager(1001)
    wang = await _villager(1003, village="banli", name="王芳")
    zhao = await _villager(1004, village="houfang", name="赵强")
    made = {
        "a": await backoffice.report(li, "一号", "litter"),
        "b": await backoffice.report(wang, "二号", "roads"),
        "c": await backoffice.report(zhao, "三号", "litter"),
        "d": await backoffice.report(li, "四号", "roads"),
        "e": await backoffice.report(wang, "五号", "streetlights"),
        "f": await backoffice.report(zhao, "六号", "streetlights"),
    }
    su = await Official.get(code="su-jinqiao")
    hour = timedelta(hours=1)
    base = cases.now() - timedelta(days=3)
    soon = cases.now()
    for n, case in enumerate(made.values()):
        await _at(case, created_at=base + n * hour, accept_by=soon + (10 - n) * hour)
    await cases.accept(made["b"].id, su)
    await cases.accept(made["d"].id, su)
    await _at(made["b"], resolve_by=soon + 5.5 * hour)  # before e's accept-by
    await _at(made["d"], resolve_by=soon + 30 * hour)
    await cases.accept(made["f"].id, su)
    await Case.filter(id=made["f"].id).update(status=CaseStatus.CLOSED)  # no deadline now
    return made


async def test_sorting_orders_by_each_column_both_ways(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    made = await _six(office)
    number = {key: case.number for key, case in made.items()}

    def order(keys: str) -> list[str]:
        return [number[key] for key in keys]

    expected = {
        "": order("fedcba"),  # newest first
        "sort=received&order=asc": order("abcdef"),
        "sort=number&order=asc": order("abcdef"),
        "sort=number": order("fedcba"),
        # waiting (a, c, e), being handled (b, d), closed (f); ties in the same direction
        "sort=status": order("acebdf"),
        "sort=status&order=desc": order("fdbeca"),
        # current deadlines: b 5.5h, e 6h, c 8h, a 10h, d 30h; f has none, so last both ways
        "sort=deadline": order("becadf"),
        "sort=deadline&order=desc": order("dacebf"),
        # 正达村 (a, d), 坂里村 (b, e), 后坊村 (c, f)
        "sort=village": order("adbecf"),
        "sort=village&order=desc": order("fcebda"),
        # litter (a, c), roads (b, d), streetlights (e, f): headings, then within them
        "sort=category": order("acbdef"),
        "sort=category&order=desc": order("fedbca"),
    }
    async with await backoffice.signed_in(su) as browser:
        for query, numbers in expected.items():
            page = await backoffice.page(browser, f"{office.web_url}/cases?{query}")
            assert backoffice.listed(page) == numbers, query
        page = await backoffice.page(browser, f"{office.web_url}/cases?sort=deadline")
        assert 'href="/cases?sort=deadline&amp;order=desc"' in page  # the header turns it round
        assert 'href="/cases?sort=village"' in page


async def test_pages_keep_the_filters_and_the_sort(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    li = await _villager(1001)
    made = [await backoffice.report(li, f"第{n}处垃圾", "litter") for n in range(55)]
    await backoffice.report(li, "村道塌了一块", "roads")  # filtered out
    litter = (await Category.get(code="litter")).id
    async with await backoffice.signed_in(su) as browser:
        url = f"{office.web_url}/cases?category={litter}&sort=number&order=asc"
        first = await backoffice.page(browser, url)
        assert "共 55 件事项" in first and "第 1 / 2 页" in first
        assert backoffice.listed(first) == [case.number for case in made[:50]]
        following = re.search(r'<a href="([^"]+)">下一页</a>', first)
        assert following is not None
        link = following.group(1).replace("&amp;", "&")
        assert f"category={litter}" in link and "sort=number" in link and "order=asc" in link
        second = await backoffice.page(browser, office.web_url + link)
        assert backoffice.listed(second) == [case.number for case in made[50:]]
        assert "第 2 / 2 页" in second and "上一页" in second
        beyond = await backoffice.page(browser, f"{office.web_url}/cases?category={litter}&page=9")
        assert "第 2 / 2 页" in beyond  # the last page, not an empty one


# ---- scope -------------------------------------------------------------------------------------


async def test_a_unit_members_list_and_exports_hold_only_their_scope(office: Sandbox) -> None:
    wu = await backoffice.official(office, "wu-lijuan", 9004)  # 坂里村's grids
    lin = await backoffice.official(office, "lin-xiuying", 9003)  # 正达村 grid 1 and its committee
    wang = await backoffice.official(office, "wang-qing", 9005)  # 纪委
    li = await _villager(1001)
    fang = await _villager(1003, village="banli", name="王芳")
    zhengda = await backoffice.report(li, "村口垃圾桶满了", "litter")
    banli = await backoffice.report(fang, "坂里村的垃圾没人收", "litter")
    secret = await backoffice.report(li, "村干部吃拿卡要", "misconduct")
    expected = {wu: {banli.number}, lin: {zhengda.number}, wang: {secret.number}}
    for handset, numbers in expected.items():
        async with await backoffice.signed_in(handset) as browser:
            listed = backoffice.listed(await backoffice.page(browser, f"{office.web_url}/cases"))
            assert set(listed) == numbers
            for query in ("", "?q=垃圾", f"?q={secret.number}", "?sort=deadline"):
                body, _ = await backoffice.download(browser, f"{office.web_url}/cases.csv{query}")
                exported = {row[0] for row in _csv_rows(body)[1:]}
                assert exported <= numbers and (exported or query), query
                body, _ = await backoffice.download(browser, f"{office.web_url}/cases.xlsx{query}")
                assert {row[0] for row in _xlsx_rows(body)[1:]} == exported, query


# ---- exports -----------------------------------------------------------------------------------


async def test_the_csv_has_the_bom_and_the_rows_the_list_shows(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    made = await _six(office)
    query = "status=new&sort=deadline"
    async with await backoffice.signed_in(su) as browser:
        page = await backoffice.page(browser, f"{office.web_url}/cases?{query}")
        assert f'href="/cases.csv?{query.replace("&", "&amp;")}"' in page
        assert f'href="/cases.xlsx?{query.replace("&", "&amp;")}"' in page
        body, headers = await backoffice.download(browser, f"{office.web_url}/cases.csv?{query}")
        assert headers["Content-Type"].startswith("text/csv")
        assert "attachment" in headers["Content-Disposition"]
    rows = _csv_rows(body)
    assert rows[0] == [
        "事项编号",
        "反映时间",
        "状态",
        "村",
        "类别",
        "单位",
        "办理人",
        "期限",
        "逾期",
        "问题描述",
    ]
    numbers = [made[key].number for key in "eca"]
    assert [row[0] for row in rows[1:]] == backoffice.listed(page) == numbers
    e = await Case.get(id=made["e"].id)
    assert e.accept_by is not None
    local = timedelta(hours=8)
    assert rows[1][1:] == [
        f"{e.created_at + local:%Y-%m-%d %H:%M}",
        "待受理",
        "坂里村",
        "路灯维修",
        "坂里村两委",
        "",
        f"{e.accept_by + local:%Y-%m-%d %H:%M}",
        "",
        "五号",
    ]
    assert "李明" not in body.decode("utf-8-sig") and "+86" not in body.decode("utf-8-sig")


async def test_the_xlsx_holds_what_the_list_shows_with_real_dates(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    made = await _six(office)
    await _at(made["d"], resolve_by=cases.now() - timedelta(hours=1))  # overdue now
    async with await backoffice.signed_in(su) as browser:
        page = await backoffice.page(browser, f"{office.web_url}/cases?sort=village")
        cases_at = f"{office.web_url}/cases"
        body, headers = await backoffice.download(browser, f"{cases_at}.xlsx?sort=village")
        csv_body, _ = await backoffice.download(browser, f"{cases_at}.csv?sort=village")
    assert headers["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    rows = _xlsx_rows(body)
    assert [row[0] for row in rows[1:]] == backoffice.listed(page)
    assert len(rows[0]) == 10
    by_number = {row[0]: row for row in rows[1:]}
    d = by_number[made["d"].number]
    assert isinstance(d[1], datetime) and isinstance(d[7], datetime)
    assert d[2] == "办理中" and d[6] == "苏进侨" and d[8] == "逾期" and d[9] == "四号"
    assert by_number[made["f"].number][7] is None  # closed: no deadline
    texts = [
        [
            ("" if cell is None else cell if isinstance(cell, str) else f"{cell:%Y-%m-%d %H:%M}")
            for cell in row
        ]
        for row in rows
    ]
    assert texts == _csv_rows(csv_body)


async def test_the_export_holds_every_page_not_only_the_first(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    li = await _villager(1001)
    made = [await backoffice.report(li, f"第{n}处垃圾", "litter") for n in range(120)]
    async with await backoffice.signed_in(su) as browser:
        page = await backoffice.page(browser, f"{office.web_url}/cases")
        body, _ = await backoffice.download(browser, f"{office.web_url}/cases.csv")
        xlsx, _ = await backoffice.download(
            browser, f"{office.web_url}/cases.xlsx?q=处垃圾&order=asc"
        )
    assert len(backoffice.listed(page)) == 50
    assert [row[0] for row in _csv_rows(body)[1:]] == [c.number for c in reversed(made)]
    assert [row[0] for row in _xlsx_rows(xlsx)[1:]] == [c.number for c in made]


async def test_a_formula_in_a_description_stays_text_in_the_exports(office: Sandbox) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    li = await _villager(1001)
    formula = '=HYPERLINK("http://evil.example","点这里")'
    await backoffice.report(li, formula, "litter")
    async with await backoffice.signed_in(su) as browser:
        body, _ = await backoffice.download(browser, f"{office.web_url}/cases.csv")
        xlsx, _ = await backoffice.download(browser, f"{office.web_url}/cases.xlsx")
    assert _csv_rows(body)[1][9] == "'" + formula
    cell = load_workbook(io.BytesIO(xlsx)).worksheets[0]["J2"]
    assert cell.data_type == "s" and cell.value == "'" + formula


# ---- bad parameters ----------------------------------------------------------------------------


async def test_garbage_parameters_are_ignored_or_explained_never_an_error(
    office: Sandbox,
) -> None:
    su = await backoffice.official(office, "su-jinqiao", 9002)
    li = await _villager(1001)
    case = await backoffice.report(li, "村口垃圾桶满了", "litter")
    garbage = [
        "status=lost",
        "village=abc",
        "village=%C2%B2",
        "page=%EF%BC%93",
        "village=99999999999999",
        "unit=-3",
        "category=1.5",
        "page=-1",
        "page=abc",
        "page=99999999999",
        "sort=password",
        "sort=deadline&order=up",
        "overdue=yes",
        "anonymous=maybe",
        "q=" + "长" * 500,
        "q=%25_%5C'%22",
        "q=%00",
        "from=9999-12-31",
        "to=9999-12-31",
        "from=0001-01-01",
        "to=2026-02-30",
        "from=yesterday",
        "status=new&status=closed",
        "village=&unit=&category=",
    ]
    async with await backoffice.signed_in(su) as browser:
        for query in garbage:
            page = await backoffice.page(browser, f"{office.web_url}/cases?{query}")
            assert "件事项" in page, query
            for fmt in ("csv", "xlsx"):
                await backoffice.download(browser, f"{office.web_url}/cases.{fmt}?{query}")
        ignored = await backoffice.page(
            browser, f"{office.web_url}/cases?status=lost&sort=password"
        )
        assert backoffice.listed(ignored) == [case.number]
        bad_date = await backoffice.page(browser, f"{office.web_url}/cases?from=yesterday")
        assert "“yesterday”不是日期" in bad_date and backoffice.listed(bad_date) == [case.number]
        reversed_period = await backoffice.page(
            browser, f"{office.web_url}/cases?from=2026-11-25&to=2026-11-01"
        )
        assert "结束日期早于开始日期" in reversed_period and "共 0 件事项" in reversed_period


# ---- indexes -----------------------------------------------------------------------------------


async def test_the_migration_gives_postgres_the_search_and_filter_indexes(database: str) -> None:
    if not database.startswith("postgres"):
        pytest.skip("the trigram indexes are PostgreSQL's")
    _, rows = await connections.get("default").execute_query(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'case'"
    )
    made = " ".join(row["indexdef"] for row in rows)
    for column in ("number", "description"):
        assert f"gin ((({column})::character varying) gin_trgm_ops)" in made
        assert f"gin (upper((({column})::character varying)::text) gin_trgm_ops)" in made
    for columns in (
        "unit_id, created_at",
        "village_id, created_at",
        "category_id, created_at",
        "assignee_id, status",
    ):
        assert f"btree ({columns})" in made
