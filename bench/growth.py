"""How the scheduler's cost grows with the case history: 10,000 cases against 1,000,000.

`python -m bench.growth [--small 10000] [--large 1000000]` (PostgreSQL only: a fresh database
on BENCH_POSTGRES_URL for each size, one after the other, dropped afterwards).

Both databases hold the demo township (examples/directory.yaml, every official bound to an
account, one villager per grid) and the same recent weeks, written row for row the same from a
fixed seed: about a thousand cases reported, accepted, resolved and rated or closed since
1 October, and the open cases of the moment. Of these, a few hundred fall due at `NOW`
(Monday 23 November 2026, 10:00 township time): reminders before the accept and the resolve
deadline, cases past their accept deadline (escalated, or flagged where there is nobody
above), accepted cases past their resolve deadline (flagged overdue), resolved cases waiting
a week for a rating (closed); a hundred more are open but not due yet. The databases differ
only in history: closed cases spread evenly from September 2020 to August 2026, four events
each (report, accept, resolve, rate or close) and the case card each one had in the outbox,
enough of them to make `--small` and `--large` cases in all. The history is written with
set-based SQL (INSERT ... SELECT over generate_series), the recent weeks with COPY; then
VACUUM ANALYZE, as a database of that age would have been, and so that autovacuum does not
wake up in the middle of the timings.

Measured, each once to warm up and then `RUNS` times (best and median reported):

- the reminder sweep, `scheduler.supervision.sweep(NOW, policy)`, in full: it reads, plans,
  queues reminders, escalates, flags and closes, each change committed as in production.
  After every run the database is put back (the due cases' rows from a copy taken before the
  first run; the events and outbox rows the run added deleted), outside the timing, so every
  run has the same work; the work each run did is printed and checked to be the same;
- the weekly digest's figures for the township, `scheduler.digest.figures` (week 2026-W47);
- the repeat warning, `scheduler.repeats.warn(NOW, policy)`, put back like the sweep;
- the monthly red and grey list, `scheduler.ranking.rank` (October 2026).

`--due 200 2000` measures the sweep alone instead: for each N a database of `--small` cases
with N cases due at NOW (a fifth of each kind), `--runs` timed sweeps put back as above, and
the statements of one more; it prints milliseconds and statements per due case beside the
figures of the first sweep, before it read a batch's directory once (`BEFORE`), and of the one
before it supervised chunks of cases in one transaction (`BEFORE_CHUNKS`).

The verdict is the ratio of the large database's median to the small one's: under 2 means
the cost follows the work due rather than the size of the tables. Then every distinct
statement each operation sent (recorded from tortoise's query log during one more run) is
explained in both databases, SELECTs with EXPLAIN (ANALYZE, BUFFERS) and writes with EXPLAIN,
and the table shows which index each one uses, or that it reads a table sequentially, with
the buffers the SELECTs touched.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.common import QueryLog, fresh_database, machine, table
from bot import db
from bot.directory import import_file
from bot.models import Account, Category, Grid, Official, Role, Township, Unit, Villager
from bot.notices import GROUP_LANGUAGE
from bot.routing import NoResponsibleUnit, responsible_unit
from bot.sandbox import EXAMPLE_DIRECTORY
from bot.worktime import Calendar, calendar_of
from scheduler import digest, ranking, repeats, supervision
from scheduler.policy import Policy

NOW = datetime(2026, 11, 23, 2, tzinfo=UTC)
POLICY = Policy()
HISTORY_FROM = datetime(2020, 9, 1, tzinfo=UTC)
HISTORY_TO = datetime(2026, 8, 15, tzinfo=UTC)
RECENT_FROM = datetime(2026, 9, 30, 16, tzinfo=UTC)
RECENT_TO = datetime(2026, 11, 19, tzinfo=UTC)
RECENT_CLOSED = 1000
DUE_KINDS = ("remind-accept", "accept-deadline", "remind-resolve", "resolve-deadline", "close")
DUE_EACH = 40
NOT_DUE = 100
RUNS = 5
SEED = 47
BIG_TABLES = ('"case"', "case_event", "delivery")
DESCRIPTION = "路边垃圾堆了三天, 没人清理"
OFFICIAL_ACCOUNT = 5000
VILLAGER_ACCOUNT = 100000


def hours(value: float) -> timedelta:
    return timedelta(hours=value)


# ---- the township ------------------------------------------------------------------------


@dataclass(frozen=True)
class Hands:
    """A unit, where its case cards go, and who works its cases."""

    unit_id: int
    chat_id: int
    official_id: int
    account_id: int


@dataclass(frozen=True)
class Route:
    """A category reported from one grid: where the case goes first, and above that."""

    category_id: int
    working_hours: bool
    accept_hours: int
    resolve_hours: int
    village_id: int
    grid_id: int
    reporter_id: int
    reporter_account: int
    first: Hands
    upper: Hands | None


async def _hands(unit: Unit, dispatcher: Official) -> Hands:
    member = (
        await Official.filter(units__id=unit.id, active=True, account_id__isnull=False)
        .order_by("id")
        .first()
    ) or dispatcher
    account = member.account_id  # type: ignore[attr-defined]
    return Hands(unit.id, unit.group_chat_id or account, member.id, account)


async def township() -> tuple[Township, list[Route]]:
    """The demo township, its officials bound, a villager per grid, and every route."""
    await import_file(EXAMPLE_DIRECTORY)
    for official in await Official.all().order_by("id"):
        official.account = await Account.create(  # type: ignore[assignment]
            id=OFFICIAL_ACCOUNT + official.id, first_name=official.name, language="zh-hans"
        )
        await official.save()
    place = await Township.get(code="BL")
    dispatcher = await Official.filter(township_id=place.id, role=Role.DISPATCHER).order_by(
        "id"
    ).first()
    assert dispatcher is not None
    units = {unit.id: unit for unit in await Unit.filter(township_id=place.id)}
    hands = {unit_id: await _hands(unit, dispatcher) for unit_id, unit in units.items()}
    villagers: dict[int, Villager] = {}
    for grid in await Grid.filter(village__township_id=place.id).order_by("id"):
        account = await Account.create(
            id=VILLAGER_ACCOUNT + grid.id, first_name="李明", language="zh-hans"
        )
        villager = await Villager.create(
            account=account, township=place, village_id=grid.village_id,  # type: ignore[attr-defined]
            grid=grid, name="李明",
        )
        await villager.fetch_related("village", "grid")
        villagers[grid.id] = villager
    routes = []
    categories = await Category.filter(township_id=place.id, level__isnull=False).order_by("id")
    for category in categories:
        for grid_id, villager in villagers.items():
            try:
                unit = await responsible_unit(category, villager.village, villager.grid)
            except NoResponsibleUnit:
                continue
            upper = units[unit.id].supervisor_id  # type: ignore[attr-defined]
            routes.append(Route(
                category.id, category.working_hours, category.accept_hours or 24,
                category.resolve_hours or 72, villager.village.id, grid_id, villager.id,
                villager.account_id, hands[unit.id],  # type: ignore[attr-defined]
                hands.get(upper),
            ))
    return place, routes


# ---- the recent weeks ----------------------------------------------------------------------


@dataclass
class Draft:
    """One case of the recent weeks, moved through its states as `bot.cases` moves them."""

    route: Route
    created: datetime
    calendar: Calendar
    hands: Hands = field(init=False)
    status: str = "new"
    assignee_id: int | None = None
    accept_by: datetime = field(init=False)
    resolve_by: datetime = field(init=False)
    accepted_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    rating: int | None = None
    reopen_count: int = 0
    escalation_level: int = 0
    overdue_level: int = 0
    check_at: datetime | None = None
    version: int = 0
    updated_at: datetime = field(init=False)
    events: list[tuple[datetime, str, int | None, str | None, str, int]] = field(
        default_factory=list
    )
    cards: list[tuple[datetime, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hands = self.route.first
        self._deadlines(self.created)
        self._event(self.created, "report", self.route.reporter_account, None, "new")
        self.version = 0
        self.cards.append((self.created, self.hands.chat_id))

    def _after(self, at: datetime, length: int) -> datetime:
        return self.calendar.add(at, length, working=self.route.working_hours)

    def _deadlines(self, at: datetime) -> None:
        self.accept_by = self._after(at, self.route.accept_hours)
        self.resolve_by = self._after(at, self.route.resolve_hours)

    def _event(self, at: datetime, action: str, actor: int | None, was: str | None,
               becomes: str) -> None:
        self.events.append((at, action, actor, was, becomes, self.hands.unit_id))
        self.status = becomes
        self.check_at = None if becomes == "closed" else at
        self.updated_at = at
        self.version += 1

    @property
    def last(self) -> datetime:
        return self.events[-1][0]

    def escalate(self, at: datetime) -> None:
        assert self.route.upper is not None
        self.hands = self.route.upper
        self.assignee_id, self.accepted_at, self.overdue_level = None, None, 0
        self.escalation_level += 1
        self._deadlines(at)
        self._event(at, "escalate", None, self.status, "new")
        self.cards.append((at, self.hands.chat_id))

    def accept(self, at: datetime) -> None:
        self.assignee_id, self.accepted_at = self.hands.official_id, at
        self._event(at, "accept", self.hands.account_id, "new", "accepted")

    def resolve(self, at: datetime) -> None:
        self.resolved_at = at
        self._event(at, "resolve", self.hands.account_id, "accepted", "resolved")

    def reopen(self, at: datetime) -> None:
        self.reopen_count += 1
        self.resolved_at, self.overdue_level = None, 0
        self.resolve_by = self._after(at, self.route.resolve_hours)
        self._event(at, "reopen", self.route.reporter_account, "resolved", "accepted")

    def rate(self, at: datetime, stars: int) -> None:
        self.rating, self.closed_at = stars, at
        self._event(at, "rate", self.route.reporter_account, "resolved", "closed")

    def close(self, at: datetime) -> None:
        self.closed_at = at
        self._event(at, "close", None, "resolved", "closed")


def _closed(route: Route, at: datetime, calendar: Calendar, rng: random.Random) -> Draft:
    case = Draft(route, at, calendar)
    if route.upper is not None and rng.random() < 0.1:
        at = case.accept_by
        case.escalate(at)
    at += hours(route.accept_hours * rng.uniform(0.1, 1.4))
    case.accept(at)
    at += hours(min(route.resolve_hours * rng.uniform(0.1, 1.2), 72))
    case.resolve(at)
    if rng.random() < 0.05:
        case.reopen(at + hours(3))
        at += hours(13)
        case.resolve(at)
    if rng.random() < 0.3:
        case.close(at + POLICY.auto_close)
    else:
        case.rate(at + hours(rng.uniform(1, 12)), rng.randint(1, 5))
    return case


def _due(kind: str, route: Route, calendar: Calendar, rng: random.Random) -> Draft:
    """An open case whose next moment has come; `check_at` is what the last sweep wrote."""
    accept, resolve = route.accept_hours, route.resolve_hours
    latest = NOW - timedelta(minutes=1)
    if kind == "remind-accept":
        case = Draft(route, NOW - hours(accept * rng.uniform(0.55, 0.95)), calendar)
        case.check_at = min(case.created + (case.accept_by - case.created) / 2, latest)
    elif kind == "accept-deadline":
        case = Draft(route, NOW - hours(accept * rng.uniform(1.05, 2.5)), calendar)
        case.check_at = case.accept_by
    elif kind == "remind-resolve":
        case = Draft(route, NOW - hours(resolve * rng.uniform(0.6, 0.9)), calendar)
        case.accept(case.created + hours(accept * 0.3))
        start = case.accepted_at
        assert start is not None
        case.check_at = min(start + (case.resolve_by - start) / 2, latest)
    elif kind == "resolve-deadline":
        case = Draft(route, NOW - hours(resolve * rng.uniform(1.02, 1.5)), calendar)
        case.accept(case.created + hours(accept * 0.3))
        case.check_at = case.resolve_by
    else:
        case = Draft(route, NOW - timedelta(days=rng.uniform(9, 14)), calendar)
        case.accept(case.created + hours(1))
        case.resolve(NOW - timedelta(days=rng.uniform(7.05, 8)))
        assert case.resolved_at is not None
        case.check_at = case.resolved_at + POLICY.auto_close
    return case


def recent(routes: list[Route], calendar: Calendar, due_each: int = DUE_EACH) -> list[Draft]:
    """The recent weeks, the same in every database; oldest first."""
    rng = random.Random(SEED)
    drafts = []
    span = RECENT_TO - RECENT_FROM
    for n in range(RECENT_CLOSED):
        at = RECENT_FROM + span * ((n + rng.random()) / RECENT_CLOSED)
        case = _closed(rng.choice(routes), at, calendar, rng)
        if case.last < NOW - hours(1):
            drafts.append(case)
    by_the_clock = [route for route in routes if not route.working_hours]
    for _ in range(due_each):
        drafts += [_due(kind, rng.choice(by_the_clock), calendar, rng) for kind in DUE_KINDS]
    for _ in range(NOT_DUE):
        route = rng.choice(by_the_clock)
        case = Draft(route, NOW - hours(route.accept_hours * rng.uniform(0.05, 0.4)), calendar)
        case.check_at = case.created + (case.accept_by - case.created) / 2
        drafts.append(case)
    return sorted(drafts, key=lambda case: case.created)


# ---- loading -------------------------------------------------------------------------------

ROUTE_TABLE = """
CREATE TEMP TABLE route (
    k int PRIMARY KEY, category_id int, village_id int, grid_id int, unit_id int,
    reporter_id int, assignee_id int, chat_id bigint, accept_hours int, resolve_hours int
)"""

HISTORY_CASES = """
INSERT INTO "case" (
    number, township_id, reporter_id, category_id, village_id, grid_id, unit_id, assignee_id,
    status, description, photos, anonymous, accept_by, resolve_by, accepted_at, resolved_at,
    closed_at, rating, reopen_count, escalation_level, overdue_level, check_at, version,
    created_at, updated_at
)
SELECT
    format('%s-%s-%s', $1::text, y,
           lpad((row_number() OVER (PARTITION BY y ORDER BY i))::text, 6, '0')),
    $2::int, r.reporter_id, r.category_id, r.village_id, r.grid_id, r.unit_id, r.assignee_id,
    'closed', $3::text, '["F1"]'::jsonb, false,
    created + r.accept_hours * interval '1 hour', created + r.resolve_hours * interval '1 hour',
    accepted, resolved, closed, rating, 0, 0, 0, NULL, 3, created, closed
FROM generate_series(1, $4::int) AS i
CROSS JOIN LATERAL (SELECT $5::timestamptz + (i - 1) * $6::interval AS created) AS c
CROSS JOIN LATERAL (
    SELECT extract(year FROM created AT TIME ZONE 'UTC')::int AS y,
           CASE WHEN i % 10 >= 3 THEN 1 + i * 7 % 5 END AS rating
) AS y
JOIN route AS r ON r.k = (i::bigint * 2654435761 % 4294967296) % $7::int
CROSS JOIN LATERAL (
    SELECT created + r.accept_hours * (1 + i % 11) * interval '6 minutes' AS accepted
) AS a
CROSS JOIN LATERAL (
    SELECT accepted + r.resolve_hours * (1 + i % 7) * interval '450 seconds' AS resolved
) AS s
CROSS JOIN LATERAL (
    SELECT CASE WHEN rating IS NULL THEN resolved + interval '7 days'
                ELSE resolved + (1 + i % 47) * interval '1 hour' END AS closed
) AS z
"""

HISTORY_EVENTS = """
INSERT INTO case_event (
    case_id, at, action, actor_id, from_status, to_status, unit_id, note, attachments, public
)
SELECT c.id, e.at, e.action, e.actor_id, e.from_status, e.to_status, c.unit_id, e.note,
       e.attachments, true
FROM "case" AS c
JOIN villager AS v ON v.id = c.reporter_id
JOIN official AS o ON o.id = c.assignee_id
CROSS JOIN LATERAL (VALUES
    (c.created_at, 'report', v.account_id, NULL, 'new', c.description, '["F1"]'::jsonb),
    (c.accepted_at, 'accept', o.account_id, 'new', 'accepted', NULL, '[]'::jsonb),
    (c.resolved_at, 'resolve', o.account_id, 'accepted', 'resolved', '已清理', '["P1"]'::jsonb),
    (c.closed_at, CASE WHEN c.rating IS NULL THEN 'close' ELSE 'rate' END,
     CASE WHEN c.rating IS NOT NULL THEN v.account_id END, 'resolved', 'closed', NULL,
     '[]'::jsonb)
) AS e (at, action, actor_id, from_status, to_status, note, attachments)
ORDER BY e.at, c.id
"""

HISTORY_CARDS = """
INSERT INTO delivery (
    chat_id, kind, payload, case_id, card, created_at, not_before, attempts, sent_at,
    message_ids, priority
)
SELECT u.chat_id, 'text', jsonb_build_object('text', c.number || ' ' || c.description),
       c.id, true, c.created_at, c.created_at, 1, c.created_at + interval '2 seconds',
       jsonb_build_array(c.id), 0
FROM "case" AS c
JOIN (SELECT DISTINCT unit_id, chat_id FROM route) AS u ON u.unit_id = c.unit_id
ORDER BY c.id
"""

CASE_COLUMNS = (
    "id", "number", "township_id", "reporter_id", "category_id", "village_id", "grid_id",
    "unit_id", "assignee_id", "status", "description", "photos", "anonymous", "accept_by",
    "resolve_by", "accepted_at", "resolved_at", "closed_at", "rating", "reopen_count",
    "escalation_level", "overdue_level", "check_at", "version", "created_at", "updated_at",
)
EVENT_COLUMNS = (
    "id", "case_id", "at", "action", "actor_id", "from_status", "to_status", "unit_id", "note",
    "attachments", "public",
)
CARD_COLUMNS = (
    "id", "chat_id", "kind", "payload", "case_id", "card", "created_at", "not_before",
    "attempts", "sent_at", "message_ids", "priority",
)


async def _max_id(conn: asyncpg.Connection, name: str) -> int:
    return await conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {name}")


async def load(
    conn: asyncpg.Connection, place: Township, routes: list[Route], cases: int,
    due_each: int = DUE_EACH,
) -> dict[str, Any]:
    """History, then the recent weeks; returns what was loaded and how long it took."""
    started = time.perf_counter()
    drafts = recent(routes, calendar_of(place), due_each)
    history = cases - len(drafts)
    if history < 0:
        raise SystemExit(f"{cases} cases is fewer than the {len(drafts)} of the recent weeks")
    await conn.execute(
        "SET synchronous_commit = off; SET work_mem = '256MB'; "
        "SET maintenance_work_mem = '512MB'"
    )
    await conn.execute(ROUTE_TABLE)
    await conn.copy_records_to_table("route", records=[
        (k, r.category_id, r.village_id, r.grid_id, r.first.unit_id, r.reporter_id,
         r.first.official_id, r.first.chat_id, r.accept_hours, r.resolve_hours)
        for k, r in enumerate(routes)
    ])
    if history:
        await conn.execute(
            HISTORY_CASES, place.code, place.id, DESCRIPTION, history, HISTORY_FROM,
            (HISTORY_TO - HISTORY_FROM) / history, len(routes),
        )
        await conn.execute(HISTORY_EVENTS)
        await conn.execute(HISTORY_CARDS)
    await _load_recent(conn, place, drafts)
    for name in BIG_TABLES:
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
            f"(SELECT max(id) FROM {name}))"
        )
    await conn.execute(
        "INSERT INTO case_counter (township_id, year, last_number) "
        "SELECT township_id, split_part(number, '-', 2)::int, count(*) FROM \"case\" "
        "GROUP BY 1, 2"
    )
    await conn.execute("DROP TABLE route")
    loaded = time.perf_counter() - started
    await conn.execute("VACUUM (ANALYZE)")
    counts = {name: await conn.fetchval(f"SELECT count(*) FROM {name}") for name in BIG_TABLES}
    size = await conn.fetchval("SELECT pg_database_size(current_database())")
    return {
        "counts": counts,
        "due": sum(1 for case in drafts if case.check_at is not None and case.check_at <= NOW),
        "load": loaded,
        "vacuum": time.perf_counter() - started - loaded,
        "size": size,
    }


async def _load_recent(conn: asyncpg.Connection, place: Township, drafts: list[Draft]) -> None:
    case_id = await _max_id(conn, '"case"')
    number = await conn.fetchval(
        "SELECT count(*) FROM \"case\" WHERE number LIKE $1", f"{place.code}-{NOW.year}-%"
    )
    cases, events, cards = [], [], []
    for index, case in enumerate(drafts, start=case_id + 1):
        assert case.created.year == NOW.year
        number += 1
        cases.append((
            index, f"{place.code}-{NOW.year}-{number:06d}", place.id, case.route.reporter_id,
            case.route.category_id, case.route.village_id, case.route.grid_id,
            case.hands.unit_id, case.assignee_id, case.status, DESCRIPTION, '["F1"]', False,
            case.accept_by, case.resolve_by, case.accepted_at, case.resolved_at, case.closed_at,
            case.rating, case.reopen_count, case.escalation_level, case.overdue_level,
            case.check_at, case.version, case.created, case.updated_at,
        ))
        events += [(index, *event) for event in case.events]
        cards += [(index, at, chat) for at, chat in case.cards]
    event_id = await _max_id(conn, "case_event")
    card_id = await _max_id(conn, "delivery")
    await conn.copy_records_to_table("case", records=cases, columns=CASE_COLUMNS)
    events.sort(key=lambda event: (event[1], event[0]))
    await conn.copy_records_to_table("case_event", columns=EVENT_COLUMNS, records=[
        (event_id + n, case, at, action, actor, was, becomes, unit,
         DESCRIPTION if action == "report" else None, '["F1"]' if action == "report" else "[]",
         True)
        for n, (case, at, action, actor, was, becomes, unit) in enumerate(events, start=1)
    ])
    cards.sort(key=lambda card: (card[1], card[0]))
    await conn.copy_records_to_table("delivery", columns=CARD_COLUMNS, records=[
        (card_id + n, chat, "text", json.dumps({"text": DESCRIPTION}), case, True, at, at, 1,
         at + timedelta(seconds=2), json.dumps([card_id + n]), 0)
        for n, (case, at, chat) in enumerate(cards, start=1)
    ])


# ---- putting the database back -------------------------------------------------------------


class Restorer:
    """Undoes what the sweep or the repeat warning wrote, so the next run has the same work."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.events = 0
        self.cards = 0
        self.columns = ""

    async def prepare(self) -> None:
        await self.conn.execute(
            'CREATE TEMP TABLE due_copy AS SELECT * FROM "case" WHERE check_at <= $1', NOW
        )
        await self.conn.execute("ANALYZE due_copy")
        self.events = await _max_id(self.conn, "case_event")
        self.cards = await _max_id(self.conn, "delivery")
        names = await self.conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'case' "
            "AND table_schema = current_schema() AND column_name <> 'id' "
            "ORDER BY ordinal_position"
        )
        self.columns = ", ".join(f'"{row["column_name"]}"' for row in names)

    async def __call__(self) -> None:
        copied = ", ".join(f"d.{name}" for name in self.columns.split(", "))
        async with self.conn.transaction():
            # Only rows the run added go, and no older row points at them: the per-row
            # foreign-key triggers (delivery.edit_of_id has no index) would only cost time.
            # The same setting lets the benchmark take back the events its run wrote, which
            # the history's append-only trigger (migration 0004) refuses to everyone else.
            await self.conn.execute("SET LOCAL session_replication_role = replica")
            await self.conn.execute("DELETE FROM delivery WHERE id > $1", self.cards)
            await self.conn.execute("DELETE FROM case_event WHERE id > $1", self.events)
            await self.conn.execute(
                f'UPDATE "case" AS c SET ({self.columns}) = ({copied}) '
                "FROM due_copy AS d WHERE d.id = c.id"
            )


# ---- timing and plans ----------------------------------------------------------------------


@dataclass
class Measured:
    seconds: list[float]
    work: list[str]

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def same_work(self) -> bool:
        return len(set(self.work)) == 1


Operation = Callable[[], Awaitable[str]]


async def measure(
    operation: Operation, restore: Restorer | None, runs: int = RUNS
) -> Measured:
    result = Measured([], [])
    for run in range(runs + 1):
        started = time.perf_counter()
        work = await operation()
        elapsed = time.perf_counter() - started
        if restore is not None:
            await restore()
        result.work.append(work)
        if run:
            result.seconds.append(elapsed)
    return result


def shape(sql: str) -> str:
    """The statement without its values: `IN ($1,$2)` and `IN ($7)` read alike."""
    text = re.sub(r"\$\d+", "?", " ".join(sql.split()))
    return re.sub(r"\?(?:\s*,\s*\?)+", "…", text)


def short(statement: str) -> str:
    text = re.sub(r"^SELECT .+? FROM ", "SELECT … FROM ", statement)
    text = re.sub(
        r"^INSERT INTO (\S+) \(.*?\) VALUES \(.*?\)", r"INSERT INTO \1 … VALUES (…)", text
    )
    assignments = re.match(r"^UPDATE (\S+) SET (.+?) WHERE ", text)
    if assignments:
        columns = ",".join(re.findall(r'"(\w+)"=', assignments.group(2)))
        text = f"UPDATE {assignments.group(1)} SET {columns} WHERE {text[assignments.end():]}"
    return f"`{text}`".replace("|", "\\|")


@dataclass
class Plan:
    scans: list[str]
    blocks: int | None
    sequential: list[str]

    def cell(self, marked: bool) -> str:
        scans = [
            f"**{scan}**" if marked and scan.removeprefix("Seq Scan ") in self.sequential
            else scan
            for scan in self.scans
        ]
        blocks = ""
        if self.blocks is not None:
            blocks = f" · {self.blocks:,} buffer{'' if self.blocks == 1 else 's'}"
        return "; ".join(scans) + blocks


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _walk(child)


async def explain(
    conn: asyncpg.Connection, sql: str, values: list[Any], indexes: dict[str, str]
) -> Plan:
    if values and isinstance(values[0], list | tuple):
        values = list(values[0])  # sent for many rows at once (executemany): its first row's
    reads = sql.lstrip().upper().startswith("SELECT")
    options = "ANALYZE, BUFFERS, FORMAT JSON" if reads else "FORMAT JSON"
    document = json.loads(await conn.fetchval(f"EXPLAIN ({options}) {sql}", *values))
    root = document[0]["Plan"]
    scans, sequential = [], []
    for node in _walk(root):
        kind, relation = node["Node Type"], node.get("Relation Name")
        if "Index Name" in node:
            scans.append(f"{kind} {indexes.get(node['Index Name'], node['Index Name'])}")
        elif kind == "Seq Scan":
            scans.append(f"Seq Scan {relation}")
            if f'"{relation}"' in BIG_TABLES or relation in BIG_TABLES:
                sequential.append(relation)
    blocks = None
    if reads:
        blocks = root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0)
    return Plan(list(dict.fromkeys(scans)) or ["no table read"], blocks, sequential)


async def index_names(conn: asyncpg.Connection) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT indexname, tablename, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema()"
    )
    names = {}
    for row in rows:
        columns = re.search(r"\((.*)\)\s*$", row["indexdef"])
        names[row["indexname"]] = f"{row['tablename']}({columns.group(1) if columns else '?'})"
    return names


@dataclass
class Plans:
    """Per operation: each distinct statement, how often one run sent it, and its plan."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    plans: dict[str, dict[str, Plan]] = field(default_factory=dict)


async def record_plans(
    conn: asyncpg.Connection, operations: dict[str, tuple[Operation, Restorer | None]]
) -> Plans:
    result = Plans()
    indexes = await index_names(conn)
    for name, (operation, restore) in operations.items():
        with QueryLog() as log:
            await operation()
        if restore is not None:
            await restore()
        counts: dict[str, int] = {}
        first: dict[str, tuple[str, list[Any]]] = {}
        for sql, values in log.statements:
            key = shape(sql)
            counts[key] = counts.get(key, 0) + 1
            first.setdefault(key, (sql, values))
        result.counts[name] = counts
        result.plans[name] = {
            key: await explain(conn, sql, values, indexes) for key, (sql, values) in first.items()
        }
    return result


# ---- one database --------------------------------------------------------------------------


async def sweep_work() -> str:
    """One whole sweep at NOW; what it did, to check that every run did the same."""
    r = await supervision.sweep(NOW, POLICY)
    errors = f", {len(r.errors)} errors" if r.errors else ""
    return (f"{r.looked_at} looked at: {r.reminders} reminders, {r.escalations} "
            f"escalated, {r.overdue} flagged, {r.closed} closed{errors}")


@dataclass
class Outcome:
    loaded: dict[str, Any]
    timings: dict[str, Measured]
    plans: Plans


async def run(cases: int) -> Outcome:
    async with fresh_database("postgres") as url:
        await db.start(url)
        conn = await asyncpg.connect(url)
        try:
            place, routes = await township()
            loaded = await load(conn, place, routes, cases)
            restore = Restorer(conn)
            await restore.prepare()
            week = digest.Week.before(NOW, place.timezone)
            month = ranking.Month.before(NOW, place.timezone)

            async def figures() -> str:
                f = await digest.figures(place, week, NOW, POLICY, GROUP_LANGUAGE)
                return (f"{week.label}: {f.received} received, {f.accepted} accepted, "
                        f"{f.resolved} resolved, {f.closed} closed")

            async def warn() -> str:
                return f"{await repeats.warn(NOW, POLICY)} warnings"

            async def rank() -> str:
                r = await ranking.rank(place, month, GROUP_LANGUAGE)
                return f"{month.label}: {len(r.ranked)} units ranked"

            operations: dict[str, tuple[Operation, Restorer | None]] = {
                "sweep": (sweep_work, restore),
                "digest figures": (figures, None),
                "repeat warning": (warn, restore),
                "red and grey list": (rank, None),
            }
            timings = {
                name: await measure(operation, again)
                for name, (operation, again) in operations.items()
            }
            plans = await record_plans(conn, operations)
            return Outcome(loaded, timings, plans)
        finally:
            await conn.close()
            await db.stop()


# ---- the sweep's cost per due case -----------------------------------------------------------

#: The sweep per due case before it read a batch's directory rows once (README, Benchmarks,
#: measured by `--due 200 2000` on the code of the time): due cases → (ms, statements).
BEFORE: dict[int, tuple[float, float]] = {200: (17.59, 32.6), 2000: (24.30, 32.7)}
#: ...and before it supervised a chunk of cases in one transaction and wrote their notices
#: together (the same command on the code of the time, AMD EPYC, 2026-12-06).
BEFORE_CHUNKS: dict[int, tuple[float, float]] = {200: (14.54, 8.3), 2000: (18.51, 8.3)}


@dataclass
class PerCase:
    due: int
    loaded: dict[str, Any]
    timing: Measured
    statements: int


async def per_due_case(due: int, cases: int, runs: int) -> PerCase:
    """The whole sweep with `due` cases due at NOW (a fifth of each kind) in a database of
    `cases` cases: its time and the statements it sent, to be divided by the cases due."""
    async with fresh_database("postgres") as url:
        await db.start(url)
        conn = await asyncpg.connect(url)
        try:
            place, routes = await township()
            each = max(1, due // len(DUE_KINDS))
            loaded = await load(conn, place, routes, max(cases, 0), due_each=each)
            restore = Restorer(conn)
            await restore.prepare()
            timing = await measure(sweep_work, restore, runs)
            with QueryLog() as log:
                await sweep_work()
            await restore()
            return PerCase(loaded["due"], loaded, timing, len(log.statements))
        finally:
            await conn.close()
            await db.stop()


def per_case_report(outcomes: list[PerCase], runs: int) -> str:
    rows = []
    for o in outcomes:
        before, chunks = BEFORE.get(o.due), BEFORE_CHUNKS.get(o.due)
        work = o.timing.work[0] if o.timing.same_work else f"differs: {sorted(set(o.timing.work))}"
        rows.append([
            o.due, f"{o.loaded['counts'][BIG_TABLES[0]]:,}", work, _ms(o.timing.median),
            f"{o.timing.median * 1000 / o.due:.2f}",
            f"{before[0]:.2f}" if before else "-",
            f"{chunks[0]:.2f}" if chunks else "-",
            f"{o.statements / o.due:.1f}",
            f"{before[1]:.1f}" if before else "-",
            f"{chunks[1]:.1f}" if chunks else "-",
        ])
    return "\n\n".join([
        f"Machine: {machine()}",
        f"Now: {NOW.isoformat()}; the median of {runs} timed sweeps after one to warm up; "
        "statements counted in one more.",
        table("The sweep per due case", [
            "Due", "Cases", "Work each run", "Sweep ms", "ms per due case", "first",
            "before chunks", "Statements per due case", "first", "before chunks",
        ], rows),
    ])


# ---- report --------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def _plan_cell(plan: Plan | None, marked: bool) -> str:
    return "not sent" if plan is None else plan.cell(marked)


def report(small: Outcome, large: Outcome) -> str:
    sizes = [("small", small), ("large", large)]
    parts = [f"Machine: {machine()}", f"Now: {NOW.isoformat()}; {RUNS} timed runs each, "
             "after one to warm up; times in milliseconds."]
    parts.append(table("Databases", [
        "Database", "Cases", "Case events", "Outbox rows", "Due now", "Size", "Load s",
        "VACUUM ANALYZE s",
    ], [
        [label, f"{o.loaded['counts'][BIG_TABLES[0]]:,}", f"{o.loaded['counts']['case_event']:,}",
         f"{o.loaded['counts']['delivery']:,}", o.loaded["due"],
         f"{o.loaded['size'] / 2**20:,.0f} MiB", f"{o.loaded['load']:.1f}",
         f"{o.loaded['vacuum']:.1f}"]
        for label, o in sizes
    ]))
    rows = []
    for name, s in small.timings.items():
        g = large.timings[name]
        ratio_median, ratio_best = g.median / s.median, g.best / s.best
        same = s.same_work and g.same_work and s.work[0] == g.work[0]
        work = s.work[0] if same else f"differs: {sorted(set(s.work + g.work))}"
        rows.append([
            name, work, _ms(s.best), _ms(s.median), _ms(g.best), _ms(g.median),
            f"{ratio_median:.2f}", f"{ratio_best:.2f}",
            "yes" if ratio_median < 2 else "**no**",
        ])
    parts.append(table("Time by database size", [
        "Operation", "Work each run", "Small best", "Small median", "Large best",
        "Large median", "Ratio (median)", "Ratio (best)", "Under 2",
    ], rows))
    sequential = []
    for name in small.plans.counts:
        counts = large.plans.counts[name]
        keys = list(dict.fromkeys([*counts, *small.plans.counts[name]]))
        plan_rows = []
        for key in keys:
            big = large.plans.plans[name].get(key)
            if big is not None and big.sequential:
                sequential.append(f"{name}: {short(key)}")
            plan_rows.append([
                short(key), counts.get(key, 0),
                _plan_cell(small.plans.plans[name].get(key), False), _plan_cell(big, True),
            ])
        parts.append(table(f"Statements of one run: {name}", [
            "Statement", "Sent per run", "Small: plan", "Large: plan",
        ], plan_rows))
    parts.append(
        "Sequential scans of case, case_event or delivery in the large database: "
        + ("; ".join(sequential) if sequential else "none.")
    )
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000, help="cases in the small database")
    parser.add_argument("--large", type=int, default=1_000_000, help="cases in the large one")
    parser.add_argument(
        "--due", type=int, nargs="+", metavar="N",
        help="instead: the sweep alone with N cases due (each N its own database of --small "
        "cases), its milliseconds and statements per due case beside the figures before",
    )
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs of each operation")
    options = parser.parse_args()

    if options.due:
        async def each() -> list[PerCase]:
            return [await per_due_case(n, options.small, options.runs) for n in options.due]

        print(per_case_report(asyncio.run(each()), options.runs))
        return

    async def both() -> tuple[Outcome, Outcome]:
        return await run(options.small), await run(options.large)

    small, large = asyncio.run(both())
    print(report(small, large))


if __name__ == "__main__":
    main()
