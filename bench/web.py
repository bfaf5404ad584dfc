"""How fast the back office's case list answers with 100,000 cases.

`python -m bench.web --database postgres://postgres@127.0.0.1:5432/villagebot_bench`
(or a SQLite file path, or `sqlite` / `postgres` for a fresh database dropped afterwards;
`--cases`, `--runs`).

The database is migrated and, when it holds no case yet, filled: the demo township
(examples/directory.yaml, every official bound to an account, a villager per grid) and `--cases`
cases spread over two years, every route (category × grid) the directory has, in every status:
most closed, some resolved, accepted and waiting, part of the open ones past their deadline,
one in ten anonymous, descriptions from a set of common problems. A database that already
holds cases is measured as it is, so the timings can be run again without filling again.

Then the list is asked for over HTTP, through the real application (`web.server.build`, an
aiohttp test server on loopback, a signed-in session), as the township's dispatcher (every
case but the confidential ones) and as a village committee member (their village's cases),
for the usual filters and sorts: each page is the count and one page of rows, as the browser
gets it. Each is asked once to warm up and `--runs` times more; median and 95th percentile in
milliseconds. Then each list's statements on `case` (recorded from tortoise's query log) are
explained: EXPLAIN (ANALYZE, BUFFERS) on PostgreSQL, EXPLAIN QUERY PLAN on SQLite. Last, the
whole list as CSV and as XLSX, once each.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from tortoise import connections

from bench.common import QueryLog, fresh_database, machine, median, percentile, quiet, table
from bench.growth import Route, township
from bot import db, scope
from bot.config import load_settings
from bot.models import Account, Case, CaseStatus, Category, Official, Role, Unit, Village
from web import server, signin

SEED = 7
BATCH = 5000
SPAN = timedelta(days=730)
PROBLEMS = (
    "村口垃圾桶满了，好几天没人清运", "路灯坏了，晚上看不清路", "河道里水葫芦堵住了",
    "村道塌了一块，车过不去", "邻居占用宅基地，协商不成", "申请低保，想问问要什么材料",
    "老房子墙体开裂，下雨漏水", "自来水停了两天", "养殖场气味大，影响休息",
    "有人在河边乱倒建筑垃圾", "桥边护栏松动，孩子上学危险", "广场舞音响太吵",
)
PLACES = ("村口", "祠堂", "小学", "桥头", "菜市场", "卫生室", "文化礼堂", "老年活动中心")
#: Of every 100 cases: closed, resolved, accepted, waiting to be accepted.
SHARES = ((CaseStatus.CLOSED, 86), (CaseStatus.RESOLVED, 3), (CaseStatus.ACCEPTED, 7),
          (CaseStatus.NEW, 4))


def _database(value: str) -> str:
    if value in ("sqlite", "postgres") or "://" in value:
        return value
    return f"sqlite://{Path(value).resolve()}"


@asynccontextmanager
async def database(given: str) -> AsyncIterator[str]:
    if given in ("sqlite", "postgres"):
        async with fresh_database(given) as url:
            yield url
    else:
        yield given


def _description(n: int, rng: random.Random) -> str:
    """What a villager writes: the problem, where, since when (40 to 70 characters)."""
    first, second = rng.sample(PROBLEMS, 2)
    return (f"{first}。{second}，就在第{n % 40 + 1}组{rng.choice(PLACES)}附近，"
            f"已经{rng.randint(2, 9)}天了，麻烦尽快派人来看看。")


def _case(n: int, route: Route, number: str, created: datetime, now: datetime,
          rng: random.Random) -> Case:
    status = rng.choices([s for s, _ in SHARES], weights=[w for _, w in SHARES])[0]
    accept_by = created + timedelta(hours=route.accept_hours)
    resolve_by = created + timedelta(hours=route.resolve_hours)
    open_case = status in (CaseStatus.NEW, CaseStatus.ACCEPTED)
    if open_case:  # open cases are recent; about a third of them past their deadline
        created = now - timedelta(hours=rng.uniform(0.1, 1.5) * (
            route.accept_hours if status == CaseStatus.NEW else route.resolve_hours
        ))
        accept_by = created + timedelta(hours=route.accept_hours)
        resolve_by = created + timedelta(hours=route.resolve_hours)
    accepted = created + timedelta(hours=route.accept_hours * rng.uniform(0.1, 0.9))
    resolved = accepted + timedelta(hours=route.resolve_hours * rng.uniform(0.1, 0.9))
    handled = status != CaseStatus.NEW
    return Case(
        number=number, township_id=1, reporter_id=route.reporter_id,
        category_id=route.category_id, village_id=route.village_id, grid_id=route.grid_id,
        unit_id=route.first.unit_id, assignee_id=route.first.official_id if handled else None,
        status=status, description=_description(n, rng),
        anonymous=rng.random() < 0.1, accept_by=accept_by, resolve_by=resolve_by,
        accepted_at=accepted if handled else None,
        resolved_at=resolved if status in (CaseStatus.RESOLVED, CaseStatus.CLOSED) else None,
        closed_at=resolved + timedelta(days=1) if status == CaseStatus.CLOSED else None,
        rating=rng.randint(1, 5) if status == CaseStatus.CLOSED else None,
        check_at=None if status == CaseStatus.CLOSED else now, created_at=created,
        updated_at=created, photos=[],
    )


async def fill(count: int) -> float:
    """The demo township and `count` cases; returns the seconds it took."""
    started = time.perf_counter()
    place, routes = await township()
    rng = random.Random(SEED)
    now = datetime.now(UTC)
    first = now - SPAN
    numbers: dict[int, int] = {}
    made: list[Case] = []
    for n in range(count):
        created = first + SPAN * (n / count)
        numbers[created.year] = numbers.get(created.year, 0) + 1
        number = f"{place.code}-{created.year}-{numbers[created.year]:06d}"
        made.append(_case(n, rng.choice(routes), number, created, now, rng))
        if len(made) == BATCH:
            await Case.bulk_create(made)
            made = []
    if made:
        await Case.bulk_create(made)
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        await connection.execute_script("VACUUM (ANALYZE)")
    else:
        await connection.execute_script("ANALYZE")
    return time.perf_counter() - started


@dataclass(frozen=True)
class Viewer:
    label: str
    code: str


async def _browser(app_url: str, code: str) -> aiohttp.ClientSession:
    official = await Official.get(code=code)
    account = await Account.get(id=official.account_id)  # type: ignore[attr-defined]
    browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with browser.get(f"{app_url}/signin/{await signin.issue(account)}") as response:
        assert response.status == 200 and response.url.path == "/cases", response.status
    return browser


async def scenarios(code: str) -> list[tuple[str, str]]:
    """(what, query string) for the lists measured for one official."""
    official = await Official.get(code=code)
    unit = await Unit.filter(members__id=official.id).order_by("id").first()
    village = await Village.filter(township_id=1).order_by("position", "id").first()
    category = await Category.filter(township_id=1, parent_id__isnull=False).order_by(
        "position", "id"
    ).first()
    assert unit is not None and village is not None and category is not None
    month = (datetime.now(UTC) - timedelta(days=60)).date()
    sample = await Case.filter(await scope.cases_seen_by(official)).order_by("id").offset(
        100
    ).first()
    assert sample is not None
    lists = [
        ("newest first, page 1", ""),
        ("page 40", "page=40"),
        ("waiting to be accepted", "status=new"),
        ("overdue, by deadline", "overdue=1&sort=deadline"),
        ("a village and a category", f"village={village.id}&category={category.id}"),
        ("a unit", f"unit={unit.id}"),
        ("a month", f"from={month}&to={month + timedelta(days=30)}"),
        ("anonymous, page 5", "anonymous=yes&page=5"),
        ("text, 2 characters (路灯)", "q=路灯"),
        ("text, 5 characters (河道里水葫)", "q=河道里水葫"),
        ("text, a case number", f"q={sample.number}"),
        ("by deadline", "sort=deadline&order=asc"),
        ("by status, page 10", "sort=status&page=10"),
        ("by village", "sort=village"),
        ("by category, descending", "sort=category&order=desc"),
    ]
    return lists


async def _get(browser: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with browser.get(url) as response:
        await response.read()
        assert response.status == 200, (url, response.status)
    return (time.perf_counter() - started) * 1000


def _on_case(sql: str) -> bool:
    return 'FROM "case"' in sql


async def explain(sql: str, values: list[Any]) -> str:
    connection = connections.get("default")
    if connection.capabilities.dialect == "postgres":
        _, rows = await connection.execute_query(
            f"EXPLAIN (ANALYZE, BUFFERS) {sql}", values
        )
        return "\n".join(row["QUERY PLAN"] for row in rows)
    _, rows = await connection.execute_query(f"EXPLAIN QUERY PLAN {sql}", values)
    return "\n".join(str(row["detail"]) for row in rows)


@dataclass
class Measured:
    viewer: str
    what: str
    count: str
    times: list[float]
    plans: list[tuple[str, str]]


async def measure(url: str, viewer: Viewer, runs: int) -> list[Measured]:
    measured = []
    browser = await _browser(url, viewer.code)
    async with browser:
        for what, query in await scenarios(viewer.code):
            page = f"{url}/cases?{query}"
            await _get(browser, page)
            times = [await _get(browser, page) for _ in range(runs)]
            with QueryLog() as log:
                async with browser.get(page) as response:
                    text = await response.text()
            found = re.search(r'class="count">\D*(\d+)', text)
            assert found is not None
            plans = [(sql, await explain(sql, values))
                     for sql, values in log.statements if _on_case(sql)]
            measured.append(Measured(viewer.label, what, found.group(1), times, plans))
    return measured


async def exports(url: str, viewer: Viewer) -> list[tuple[str, float, int]]:
    done = []
    browser = await _browser(url, viewer.code)
    async with browser:
        for fmt in ("csv", "xlsx"):
            started = time.perf_counter()
            async with browser.get(f"{url}/cases.{fmt}") as response:
                body = await response.read()
                assert response.status == 200
            done.append((fmt, (time.perf_counter() - started) * 1000, len(body)))
    return done


async def run(database_url: str, count: int, runs: int) -> None:
    await db.start(database_url)
    try:
        held = await Case.all().count()
        if held:
            print(f"The database holds {held} cases already: measured as they are.")
        else:
            print(f"Filled {count} cases in {await fill(count):.0f} s.")
        dispatcher = await Official.filter(role=Role.DISPATCHER).order_by("id").first()
        assert dispatcher is not None
        viewers = [Viewer("dispatcher", dispatcher.code),
                   Viewer("village committee member", "lin-xiuying")]
        key = base64.urlsafe_b64encode(b"bench-web-key-".ljust(32, b"!")).decode()
        settings = load_settings(web_listen="", web_secret=key)
        app = server.build(settings, await server.session_key(settings))
        async with TestServer(app) as test_server:
            url = str(test_server.make_url("")).rstrip("/")
            results = [m for viewer in viewers for m in await measure(url, viewer, runs)]
            files = await exports(url, viewers[0])
        total = await Case.all().count()
        dialect = connections.get("default").capabilities.dialect
    finally:
        await db.stop()
    print(f"\n{machine()}\n{dialect}, {total} cases, {runs} runs each after one to warm up\n")
    print(table(
        "The case list over HTTP (count and one page of 50), milliseconds",
        ["who", "list", "cases", "median", "p95"],
        [(m.viewer, m.what, m.count, f"{median(m.times):.1f}", f"{percentile(m.times, 0.95):.1f}")
         for m in results],
    ))
    print()
    print(table(
        "The whole list as a file, once (dispatcher, every case)",
        ["format", "milliseconds", "bytes"],
        [(fmt, f"{ms:.0f}", f"{size:,}") for fmt, ms, size in files],
    ))
    print("\n### Plans")
    for m in results:
        for sql, plan in m.plans:
            print(f"\n#### {m.viewer}: {m.what}\n\n{sql}\n\n{plan}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database", default="sqlite",
        help="a PostgreSQL URL, a SQLite file path, or sqlite / postgres for a fresh one",
    )
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    options = parser.parse_args()
    quiet()

    async def go() -> None:
        async with database(_database(options.database)) as url:
            await run(url, options.cases, options.runs)

    asyncio.run(go())


if __name__ == "__main__":
    main()
