"""The dashboard (一屏掌控): a period's figures for the township, a village or a unit, its trend,
its tables, this month's red/grey list and the open repeat problems; and its tables as files.

The figures are `scheduler.figures`, the weekly digest's own module, so the same week gives the
same numbers in both. Every figure counts only the cases the reader may see
(`bot.scope.cases_seen_by`, as the case list): a dispatcher the township's except confidential
ones, a unit's members their unit's and those below it, so nobody learns counts of cases
outside their scope. The township's own tasks (中心工作) have a table of their own, under the
same rule, and never count among the villagers' figures. The red/grey list is the township's,
as the channel publishes it: units and scores, and the units that let a task's deadline pass.
No name, phone or description of anyone appears on the page or in the files. The trend is an
SVG drawn here, on the server: no chart library, nothing to load.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from aiohttp_session import get_session
from markupsafe import Markup, escape
from tortoise.expressions import Q

from bot import cases
from bot.i18n import N_, catalogs
from bot.models import Category, Township, Unit, Village
from scheduler import figures, ranking, repeats
from scheduler.figures import Figures, Line, duration, percent
from scheduler.policy import Policy
from web import tables, views
from web.tables import Cell, Table

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PERIODS: dict[str, str] = {
    "this-week": N_("This week"),
    "last-week": N_("Last week"),
    "this-month": N_("This month"),
    "last-month": N_("Last month"),
    "range": N_("From … to …"),
}
DEFAULT_PERIOD = "this-month"
#: The longest range the dashboard counts (a year and a day for a leap year).
MAX_DAYS = 366
BAD_DATES = N_("Dates are written like 2026-11-16. Showing this month instead.")
FROM_AFTER_TO = N_("The first date is after the last one. Showing this month instead.")
TOO_LONG = N_("A range can be at most {days} days. Showing this month instead.")
NO_VILLAGE = N_("There is no such village in this township. Showing every village.")
NO_UNIT = N_("There is no such unit in this township. Showing every unit.")


@dataclass(frozen=True)
class Choice:
    """The period and place asked for, after checking: what the page and the files count."""

    period: str
    start: datetime  # township time
    end: datetime
    label: str
    first: date  # the period's first and last day, for the form and the heading
    last: date
    village: int | None
    unit: int | None

    def query(self) -> str:
        from urllib.parse import urlencode

        values: dict[str, object] = {"period": self.period}
        if self.period == "range":
            values |= {"from": self.first.isoformat(), "to": self.last.isoformat()}
        if self.village is not None:
            values["village"] = self.village
        if self.unit is not None:
            values["unit"] = self.unit
        return urlencode(values)


def _month(year: int, month: int, zone: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=zone)
    return start, datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)


def _period(name: str, today: date, zone: ZoneInfo) -> tuple[datetime, datetime, str]:
    """A named period around `today`: (start, end, label)."""
    if name in ("this-week", "last-week"):
        monday = today - timedelta(days=today.weekday() + (7 if name == "last-week" else 0))
        start = datetime.combine(monday, datetime.min.time(), zone)
        year, week, _ = monday.isocalendar()
        return start, start + timedelta(days=7), f"{year}-W{week:02d}"
    year, month = today.year, today.month
    if name == "last-month":
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    start, end = _month(year, month, zone)
    return start, end, f"{year}-{month:02d}"


def _day(value: str | None) -> date | None:
    """A date of the query string; None for text that is none, or a year nobody means (year 1
    in the township's zone is before the first moment a datetime holds)."""
    try:
        day = date.fromisoformat((value or "").strip()[:10])
    except ValueError:
        return None
    return day if 1970 <= day.year <= 2200 else None


def _id(value: str | None, known: set[int]) -> tuple[int | None, bool]:
    """(the id, whether it was refused): empty is no filter, unknown is refused."""
    if not value:
        return None, False
    number = views._number(value)
    return (number, False) if number in known else (None, True)


def choose(
    query: Mapping[str, str], timezone: str, now: datetime, villages: set[int], units: set[int]
) -> tuple[Choice, list[tuple[str, dict[str, object]]]]:
    """The period and place of the query string; what does not fit is replaced by the default
    and named in the problems (a message id and its values), never an error."""
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    problems: list[tuple[str, dict[str, object]]] = []
    name = query.get("period", "")
    if name not in PERIODS:
        name = "range" if query.get("from") or query.get("to") else DEFAULT_PERIOD
    if name == "range":
        first, last = _day(query.get("from")), _day(query.get("to"))
        if first is None or last is None:
            problems.append((BAD_DATES, {}))
        elif first > last:
            problems.append((FROM_AFTER_TO, {}))
        elif (last - first).days + 1 > MAX_DAYS:
            problems.append((TOO_LONG, {"days": MAX_DAYS}))
        else:
            start = datetime.combine(first, datetime.min.time(), zone)
            end = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
            label = f"{first.isoformat()}–{last.isoformat()}"
        if problems:
            name = DEFAULT_PERIOD
    if name != "range":
        start, end, label = _period(name, today, zone)
        first, last = start.date(), (end - timedelta(days=1)).date()
    village, refused = _id(query.get("village"), villages)
    if refused:
        problems.append((NO_VILLAGE, {}))
    unit, refused = _id(query.get("unit"), units)
    if refused:
        problems.append((NO_UNIT, {}))
    assert first is not None and last is not None
    return Choice(name, start, end, label, first, last, village, unit), problems


# ---- the trend as SVG --------------------------------------------------------------------------

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 28, 28
RECEIVED_COLOUR, RESOLVED_COLOUR = "#3b7dd8", "#3aa76d"


def _ticks(highest: int) -> list[int]:
    """Up to five round steps from 0 to at least `highest`."""
    step = 1
    while highest / step > 5:
        step *= 5 if str(step).startswith("2") else 2
    return list(range(0, max(highest, 1) + step, step))


def trend_svg(series: list[tuple[date, int, int]], words: Mapping[str, str]) -> Markup:
    """Bars per day or week (received, resolved), with an axis, a legend and each bar's
    numbers in its tooltip; `words` holds the title and the two series' names."""
    ticks = _ticks(max([0, *(r for _, r, _ in series), *(s for _, _, s in series)]))
    top = ticks[-1] or 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(series), 1)
    bar = max(slot * 0.38, 1)
    every = max(1, round(len(series) / 12))  # at most about a dozen dates under the axis
    title, received, resolved = (escape(words[k]) for k in ("title", "received", "resolved"))
    parts = [
        f'<svg class="trend" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{title}"><title>{title}</title>',
        f'<rect x="{LEFT}" y="6" width="10" height="10" fill="{RECEIVED_COLOUR}"/>'
        f'<text x="{LEFT + 14}" y="15" font-size="12">{received}</text>'
        f'<rect x="{LEFT + 120}" y="6" width="10" height="10" fill="{RESOLVED_COLOUR}"/>'
        f'<text x="{LEFT + 134}" y="15" font-size="12">{resolved}</text>',
    ]
    for tick in ticks:
        y = TOP + plot_h - plot_h * tick / top
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{tick}</text>'
        )
    for i, (day, got, done) in enumerate(series):
        x = LEFT + i * slot + slot / 2
        for offset, value, colour, name in (
            (-bar, got, RECEIVED_COLOUR, received), (0.0, done, RESOLVED_COLOUR, resolved),
        ):
            h = plot_h * value / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{day.isoformat()} {name}: {value}'
                "</title></rect>"
            )
        if i % every == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle">'
                f'{day.strftime("%m-%d")}</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))  # every text in it is escaped above


# ---- counting --------------------------------------------------------------------------------


@dataclass
class Board:
    """Everything the page and the files show."""

    township: Township
    choice: Choice
    figures: Figures
    place: str
    red: list[tuple[str, float]]
    grey: list[tuple[str, float]]
    tasks_late: list[tuple[str, int]]  # the red/grey list's township-task line
    month: str
    bursts: list[tuple[str, str, repeats.Burst]]  # village, category, the burst
    problems: list[tuple[str, dict[str, object]]]


async def _board(request: web.Request, language: str) -> Board:
    viewer = views._viewer_of(request)
    township = await Township.get(id=viewer.officials[0].township_id)  # type: ignore[attr-defined]
    now = cases.now()
    villages = set(await Village.filter(township_id=township.id).values_list("id", flat=True))
    units = set(await Unit.filter(township_id=township.id).values_list("id", flat=True))
    choice, problems = choose(request.query, township.timezone, now, villages, units)
    board = await compute(
        township, choice, now, Policy.from_settings(request.app[views.SETTINGS]),
        await views.seen_by(viewer), language,
    )
    board.problems = problems
    return board


async def compute(
    township: Township, choice: Choice, now: datetime, policy: Policy, seen: Q | None,
    language: str,
) -> Board:
    """The dashboard's figures, lists and problems for `choice`, of the cases `seen` selects
    (None: all of the township's); what `bench/dashboard.py` times."""
    villages = {v.id: v for v in await Village.filter(township_id=township.id)}
    units = {u.id: u for u in await Unit.filter(township_id=township.id)}
    counted = await figures.count(
        township, choice.start, choice.end, label=choice.label, now=now, policy=policy,
        language=language, seen=seen, village=choice.village, unit=choice.unit,
    )
    names = [villages[choice.village].display_name(language)] if choice.village else []
    if choice.unit is not None:
        names.append(units[choice.unit].display_name(language))
    place = " · ".join(names) or township.display_name(language)
    local = now.astimezone(ZoneInfo(township.timezone))
    month = ranking.Month.of(local.year, local.month, township.timezone)
    ranked = await ranking.rank(township, month, language, now=now)
    red, grey = ranked.lists()
    categories = {c.id: c for c in await Category.filter(township_id=township.id)}
    found = await repeats.open_bursts(
        township.id, policy, choice.start, choice.end, seen=seen, village=choice.village,
        unit=choice.unit,
    )
    named = [
        (villages[b.village_id].display_name(language),
         categories[b.category_id].display_name(language), b)
        for b in found
    ]
    return Board(township, choice, counted, place, red, grey, ranked.tasks_late, month.label,
                 named, [])


def _tiles(f: Figures, language: str) -> list[tuple[str, str, str, dict[str, object]]]:
    """(name, value, note, the note's values) for each tile."""
    return [
        (N_("Received"), str(f.received), "", {}),
        (N_("Accepted on time"), percent(f.on_time_acceptance),
         N_("of {count} accepted"), {"count": f.accepted}),
        (N_("Resolved on time"), percent(f.on_time_resolution),
         N_("of {count} resolutions"), {"count": f.resolved}),
        (N_("Completion rate"), percent(f.completion_rate), "", {}),
        (N_("Satisfaction rate"), percent(f.satisfaction_rate), "", {}),
        (N_("Reopen rate"), percent(f.reopen_rate), "", {}),
        (N_("Median time to accept"), duration(f.median_to_accept, language), "", {}),
        (N_("Median time to resolve"), duration(f.median_to_resolve, language), "", {}),
        (N_("Overdue now"), str(f.overdue_count), "", {}),
    ]


def _line_cells(line: Line) -> list[Cell]:
    return [line.name, line.received, line.resolved, percent(line.completion_rate),
            percent(line.satisfaction_rate), line.overdue]


LINE_HEADER = (N_("Received"), N_("Resolved"), N_("Completion rate"), N_("Satisfaction rate"),
               N_("Overdue now"))


def _tables(board: Board, language: str) -> list[Table]:
    """The dashboard's tables, in the reader's language: the page shows them, the files hold
    them."""
    def t(message: str, **values: object) -> str:
        return catalogs().text(message, language, **values)

    f = board.figures
    step, series = figures.trend(f)
    summary = Table(t(N_("Figures")), [t(N_("Figure")), t(N_("Value"))], [
        [t(N_("Period")), f"{board.choice.label} ({board.choice.first.isoformat()} – "
                          f"{board.choice.last.isoformat()})"],
        [t(N_("Place")), board.place],
        *[[t(name), value] for name, value, _, _ in _tiles(f, language)],
        [t(N_("Accepted")), f.accepted], [t(N_("Resolved")), f.resolved],
        [t(N_("Closed")), f.closed],
    ])
    trend = Table(t(N_("Trend")), [t(N_("Day") if step == "day" else N_("Week of")),
                                   t(N_("Received")), t(N_("Resolved"))],
                  [[day, got, done] for day, got, done in series])
    header = [t(name) for name in LINE_HEADER]
    by_village = Table(t(N_("By village")), [t(N_("Village")), *header],
                       [_line_cells(line) for line in f.villages])
    by_unit = Table(t(N_("By unit")), [t(N_("Unit")), *header],
                    [_line_cells(line) for line in f.units])
    by_category = Table(t(N_("By category")), [t(N_("Category")), *header],
                        [_line_cells(line) for line in f.by_category])
    lists = Table(t(N_("Red and grey list {month}"), month=board.month),
                  [t(N_("List")), t(N_("Place in the list")), t(N_("Unit")), t(N_("Score"))], [
        *[[t(N_("Red list")), i, name, round(score)] for i, (name, score) in
          enumerate(board.red, 1)],
        *[[t(N_("Grey list")), i, name, round(score)] for i, (name, score) in
          enumerate(board.grey, 1)],
        *[[t(N_("Township tasks overdue")), i, name, t(N_("{count} late"), count=late)]
          for i, (name, late) in enumerate(board.tasks_late, 1)],
    ])
    zone = ZoneInfo(board.township.timezone)
    problems = Table(t(N_("Repeat problems")), [
        t(N_("Village")), t(N_("Category")), t(N_("Cases")), t(N_("Still open")),
        t(N_("First reported")), t(N_("Last reported")), t(N_("Case numbers")),
    ], [
        [village, category, len(b.numbers), b.still_open,
         b.first.astimezone(zone), b.last.astimezone(zone),
         " ".join(b.numbers)]
        for village, category, b in board.bursts
    ])
    tasks = Table(t(N_("Township tasks")), [t(N_("Unit")), *[t(name) for name in TASK_HEADER]],
                  [_task_cells(f.tasks.total, t(N_("Total"))),
                   *[_task_cells(line) for line in f.tasks.units]])
    return [summary, trend, by_village, by_unit, by_category, lists, problems, tasks]


TASK_HEADER = (N_("Given"), N_("Accepted"), N_("Accepted on time"), N_("Resolved"),
               N_("Result accepted"), N_("Sent back"), N_("Late"), N_("Overdue now"),
               N_("Waiting to be accepted"))


def _task_cells(line: figures.TaskLine, name: str | None = None) -> list[Cell]:
    return [name or line.name, line.given, line.accepted, percent(line.on_time_acceptance),
            line.resolved, line.confirmed, line.sent_back, line.late, line.overdue,
            line.waiting]


async def _language(request: web.Request) -> str:
    session = await get_session(request)
    return views._language(request, session)


# ---- pages ---------------------------------------------------------------------------------


@routes.get("/dashboard")
async def dashboard(request: web.Request) -> web.StreamResponse:
    language = await _language(request)
    board = await _board(request, language)
    township = board.township
    step, series = figures.trend(board.figures)

    def t(message: str, **values: object) -> str:
        return catalogs().text(message, language, **values)

    chart = trend_svg(series, {
        "title": t(N_("Cases per day") if step == "day" else N_("Cases per week")),
        "received": t(N_("Received")), "resolved": t(N_("Resolved")),
    })
    context: dict[str, Any] = {
        "board": board, "f": board.figures, "choice": board.choice, "periods": PERIODS,
        "tiles": _tiles(board.figures, language), "chart": chart, "step": step,
        "tables": _tables(board, language),
        "villages": await Village.filter(township_id=township.id, active=True).order_by(
            "position", "id"),
        "units": await Unit.filter(township_id=township.id, active=True).order_by("id"),
        "cases_link": _cases_link(board.choice), "min_cases": ranking.MIN_CASES,
    }
    return await views.render(request, "dashboard.html", context,
                              status=400 if board.problems else 200)


def _cases_link(choice: Choice) -> str:
    """The villagers' overdue cases the tile counts (township tasks are counted apart)."""
    from urllib.parse import urlencode

    values: dict[str, object] = {"overdue": 1, "kind": "reports"}
    if choice.village is not None:
        values["village"] = choice.village
    if choice.unit is not None:
        values["unit"] = choice.unit
    return "/cases?" + urlencode(values)


async def _export(request: web.Request, fmt: str) -> web.StreamResponse:
    language = await _language(request)
    board = await _board(request, language)
    if board.problems:
        message, values = board.problems[0]
        return await views.message_page(request, message, 400, **values)
    log.info("back office: account %s exported the dashboard (%s, %s)",
             views._viewer_of(request).person.account.id, board.choice.label, fmt)
    return tables.download(
        _tables(board, language), fmt,
        f"dashboard-{board.township.code}-{board.choice.label}",
    )


@routes.get("/dashboard.csv")
async def dashboard_csv(request: web.Request) -> web.StreamResponse:
    return await _export(request, "csv")


@routes.get("/dashboard.xlsx")
async def dashboard_xlsx(request: web.Request) -> web.StreamResponse:
    return await _export(request, "xlsx")
