"""How long the back office's dashboard takes to count, with many cases in the database.

`python -m bench.dashboard [--cases 100000] [--database PATH_OR_URL] [--runs 9]`

`--database` is an SQLite file (created if missing; a temporary one when left out) or a
PostgreSQL URL (`postgres://…`, an existing database). A database without the demo township is
migrated, given the township (examples/directory.yaml, every official bound to an account, a
villager per grid) and filled with `--cases` cases spread evenly over the three years before
now, each with its history as `bot.cases` writes it: reported, accepted, resolved, rated or
closed, some reopened, some accepted late or resolved late; the last weeks' cases are still
open, some overdue. The rows are written in batches of plain INSERTs (no domain calls: a
hundred thousand of those take an hour), then ANALYZE. A database that already holds the
township is used as it is, so a second run measures at once.

Measured, once to warm up and then `--runs` times (median and 95th percentile, ms), the whole of
`web.dashboard.compute` (the figures, this month's red/grey list, the open repeat problems) as
the page and the files call it:

- last month (a whole one), the whole township, as a dispatcher sees it;
- last month, as a member of one grid sees it (scope `bot.scope.cases_seen_by`);
- last month, one village;
- this week, the whole township;
- the last 365 days, the whole township (the longest range the page allows).

Then each distinct statement of the first of these is explained: EXPLAIN (ANALYZE, BUFFERS) on
PostgreSQL, EXPLAIN QUERY PLAN on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tortoise import connections
from tortoise.expressions import Q

from bench.common import QueryLog, machine, quiet, table
from bot import cases, db, scope
from bot.directory import import_file
from bot.models import (
    Account,
    Case,
    Category,
    Grid,
    Official,
    Role,
    Township,
    Unit,
    Village,
    Villager,
)
from bot.routing import NoResponsibleUnit, responsible_unit
from bot.sandbox import EXAMPLE_DIRECTORY
from scheduler import ranking
from scheduler.policy import Policy
from web import dashboard

SEED = 300
YEARS = 3
BATCH = 2000
OPEN_DAYS = 10  # cases of the last days are still open
OFFICIAL_ACCOUNT = 5000
VILLAGER_ACCOUNT = 100000
LANGUAGE = "zh-hans"
CASE_COLUMNS = (
    "id", "number", "township_id", "reporter_id", "category_id", "village_id", "grid_id",
    "unit_id", "assignee_id", "status", "description", "photos", "anonymous", "accept_by",
    "resolve_by", "accepted_at", "resolved_at", "closed_at", "rating", "reopen_count",
    "escalation_level", "overdue_level", "check_at", "version", "created_at", "updated_at",
)
EVENT_COLUMNS = (
    "case_id", "at", "action", "actor_id", "from_status", "to_status", "unit_id", "note",
    "attachments", "public",
)


def _url(database: str | None) -> str:
    if database is None:
        return f"sqlite://{Path(tempfile.mkdtemp(prefix='villagebot-dash-')) / 'bench.sqlite3'}"
    if database.startswith(("postgres://", "postgresql://", "sqlite://")):
        return database
    return f"sqlite://{Path(database).resolve()}"


def _insert(table_name: str, columns: tuple[str, ...], postgres: bool) -> str:
    marks = ", ".join(f"${i}" if postgres else "?" for i in range(1, len(columns) + 1))
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO "{table_name}" ({names}) VALUES ({marks})'


async def _routes(place: Township) -> list[tuple[Category, Villager, Unit, int]]:
    """(category, a villager of a grid, the unit it goes to, the account working it)."""
    villagers = []
    for grid in await Grid.filter(village__township_id=place.id).order_by("id"):
        account = await Account.create(id=VILLAGER_ACCOUNT + grid.id, first_name="李明",
                                       language=LANGUAGE)
        villager = await Villager.create(account=account, township=place,
                                         village_id=grid.village_id, grid=grid, name="李明")  # type: ignore[attr-defined]
        await villager.fetch_related("village", "grid")
        villagers.append(villager)
    routes = []
    for category in await Category.filter(township_id=place.id, level__isnull=False):
        for villager in villagers:
            try:
                unit = await responsible_unit(category, villager.village, villager.grid)
            except NoResponsibleUnit:
                continue
            worker = await Official.filter(units__id=unit.id, account_id__isnull=False).first()
            if worker is None:
                worker = await Official.filter(township_id=place.id, role=Role.DISPATCHER).first()
            assert worker is not None
            routes.append((category, villager, unit, worker.id))
    return routes


async def fill(count: int, now: datetime) -> None:
    """The demo township and `count` cases with their histories (see the module's doc)."""
    await import_file(EXAMPLE_DIRECTORY)
    for official in await Official.all().order_by("id"):
        official.account = await Account.create(  # type: ignore[assignment]
            id=OFFICIAL_ACCOUNT + official.id, first_name=official.name, language=LANGUAGE
        )
        await official.save()
    place = await Township.get(code="BL")
    routes = await _routes(place)
    rng = random.Random(SEED)
    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    case_sql = _insert("case", CASE_COLUMNS, postgres)
    event_sql = _insert("case_event", EVENT_COLUMNS, postgres)
    start = now - timedelta(days=365 * YEARS)
    span = (now - start).total_seconds()
    case_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []

    async def flush() -> None:
        if case_rows:
            await connection.execute_many(case_sql, case_rows)
            await connection.execute_many(event_sql, event_rows)
        case_rows.clear()
        event_rows.clear()

    for n in range(1, count + 1):
        category, villager, unit, worker = routes[rng.randrange(len(routes))]
        account = OFFICIAL_ACCOUNT + worker
        created = start + timedelta(seconds=span * (n - rng.random()) / count)
        accept_by = created + timedelta(hours=category.accept_hours or 24)
        resolve_by = created + timedelta(hours=category.resolve_hours or 72)
        events = [(created, "report", villager.account_id, None, "new")]  # type: ignore[attr-defined]
        status, accepted_at, resolved_at, closed_at, rating, reopens = (
            "new", None, None, None, None, 0)
        age = (now - created).days
        stage = 4 if age > OPEN_DAYS else rng.randrange(4)
        if rng.random() < 0.01:  # stuck: never accepted, overdue ever since
            stage = 0
        if stage >= 1:
            accepted_at = created + timedelta(hours=rng.uniform(0.2, 1.5) * (
                category.accept_hours or 24))
            events.append((accepted_at, "accept", account, "new", "accepted"))
            status = "accepted"
        if stage >= 2:
            resolved_at = accepted_at + timedelta(hours=rng.uniform(0.1, 1.2) * (  # type: ignore[operator]
                category.resolve_hours or 72))
            events.append((resolved_at, "resolve", account, "accepted", "resolved"))
            status = "resolved"
            if rng.random() < 0.05:
                reopens = 1
                events.append((resolved_at + timedelta(hours=5), "reopen", villager.account_id,  # type: ignore[attr-defined]
                               "resolved", "accepted"))
                resolved_at = resolved_at + timedelta(hours=30)
                events.append((resolved_at, "resolve", account, "accepted", "resolved"))
        if stage >= 3 and age > 2:
            closed_at = resolved_at + timedelta(hours=rng.uniform(1, 100))  # type: ignore[operator]
            if rng.random() < 0.7:
                rating = rng.choice((5, 5, 5, 4, 4, 3, 2, 1))
                events.append((closed_at, "rate", villager.account_id, "resolved", "closed"))  # type: ignore[attr-defined]
            else:
                events.append((closed_at, "close", None, "resolved", "closed"))
            status = "closed"
        events = [e for e in events if e[0] <= now]
        status = events[-1][4]
        case_rows.append((
            n, f"BL-B-{n:07d}", place.id, villager.id, category.id, villager.village_id,  # type: ignore[attr-defined]
            villager.grid_id, unit.id, worker if accepted_at else None, status, "路边垃圾",  # type: ignore[attr-defined]
            json.dumps([]), False, accept_by, resolve_by, accepted_at, resolved_at,
            closed_at if status == "closed" else None, rating if status == "closed" else None,
            reopens, 0, 0, None if status == "closed" else now, len(events), created,
            events[-1][0],
        ))
        event_rows.extend(
            (n, at, action, actor, was, becomes, unit.id, None, json.dumps([]), True)
            for at, action, actor, was, becomes in events
        )
        if len(case_rows) >= BATCH:
            await flush()
    await flush()
    if postgres:
        await connection.execute_script('SELECT setval(pg_get_serial_sequence(\'"case"\', \'id\'), '
                                        'MAX(id)) FROM "case"')
    await connection.execute_script("ANALYZE")


async def _timed(run: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float]:
    await run()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return statistics.median(samples), p95


async def _explain(statements: list[tuple[str, list[Any]]]) -> list[str]:
    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    seen: set[str] = set()
    out = []
    for sql, values in statements:
        if sql in seen or not sql.lstrip().upper().startswith("SELECT"):
            continue
        seen.add(sql)
        prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
        _, rows = await connection.execute_query(prefix + sql, values)
        plan = [str(row["QUERY PLAN"]) if postgres else str(row["detail"]) for row in rows]
        out.append(sql + "\n    " + "\n    ".join(plan))
    return out


async def main(args: argparse.Namespace) -> None:
    quiet()
    url = _url(args.database)
    now = cases.now()
    await db.start(url)
    try:
        if not await Township.filter(code="BL").exists():
            began = time.perf_counter()
            await fill(args.cases, now)
            print(f"filled {args.cases} cases in {time.perf_counter() - began:.0f} s")
        place = await Township.get(code="BL")
        total = await Case.filter(township_id=place.id).count()
        policy = Policy()
        dispatcher = await Official.get(code="su-jinqiao")
        member = await Official.get(code="lin-xiuying")
        village = await Village.get(code="zhengda")
        villages = set(await Village.all().values_list("id", flat=True))
        units = set(await Unit.all().values_list("id", flat=True))

        def choice(query: dict[str, str]) -> dashboard.Choice:
            chosen, problems = dashboard.choose(query, place.timezone, now, villages, units)
            assert not problems, problems
            return chosen

        year = {"period": "range", "from": (now - timedelta(days=365)).date().isoformat(),
                "to": now.date().isoformat()}
        cases_of: dict[str, Q] = {
            "dispatcher": await scope.cases_seen_by(dispatcher),
            "member": await scope.cases_seen_by(member),
        }
        last = {"period": "last-month"}
        scenarios = [
            ("last month, township (dispatcher)", choice(last), cases_of["dispatcher"]),
            ("last month, one grid's member", choice(last), cases_of["member"]),
            ("last month, one village", choice(last | {"village": str(village.id)}),
             cases_of["dispatcher"]),
            ("this week, township", choice({"period": "this-week"}), cases_of["dispatcher"]),
            ("last 365 days, township", choice(year), cases_of["dispatcher"]),
        ]
        rows = []
        for name, chosen, seen in scenarios:
            async def run(chosen: dashboard.Choice = chosen, seen: Q = seen) -> object:
                return await dashboard.compute(place, chosen, now, policy, seen, LANGUAGE)

            median, p95 = await _timed(run, args.runs)
            board = await run()
            assert isinstance(board, dashboard.Board)
            rows.append((name, board.figures.received, f"{median:.1f}", f"{p95:.1f}"))
        # The red/grey list the page shows is this month's, as far as it has gone: how long a
        # whole month's takes, timed apart (the month before).
        previous = ranking.Month.before(now, place.timezone)
        median, p95 = await _timed(lambda: ranking.rank(place, previous, LANGUAGE), args.runs)
        rows.append((f"red/grey list alone, {previous.label} (ranking.rank)", "", f"{median:.1f}",
                     f"{p95:.1f}"))
        kind = "PostgreSQL" if url.startswith("postgres") else "SQLite"
        print(f"{machine()}; {kind}; {total} cases; {args.runs} runs after one to warm up")
        print(table("Dashboard computation (web.dashboard.compute), ms",
                    ("period and place", "received", "median", "p95"), rows))
        with QueryLog() as log:
            await dashboard.compute(place, scenarios[0][1], now, policy, scenarios[0][2],
                                    LANGUAGE)
        print("\n### The statements of the first, explained\n")
        for plan in await _explain(log.statements):
            print(plan, end="\n\n")
    finally:
        await db.stop()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--database", help="an SQLite file or a postgres:// URL "
                        "(default: a temporary SQLite file)")
    parser.add_argument("--runs", type=int, default=9)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(arguments()))
