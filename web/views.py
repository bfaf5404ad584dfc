"""The back office's pages: thin, as the bot's handlers are (parse, ask scope and cases, render).

Every POST carries the session's CSRF token (`guard` refuses it otherwise, before any view
runs); every case is looked up through `bot.scope`, and one the reader may not see is a 404,
whether it exists or not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import reduce
from html import escape
from operator import or_
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_session import Session, get_session, new_session
from tortoise.expressions import Q, RawSQL
from tortoise.functions import Coalesce
from tortoise.queryset import QuerySet

from bot import cases, delivery, scope
from bot.cases import CaseRefused, Refusal
from bot.config import Settings
from bot.flows.casework import acting
from bot.handlers.casework import DEADLINE_HOURS
from bot.handlers.lists import ACTION_NAMES
from bot.i18n import N_, catalogs
from bot.keyboards import LANGUAGE_NAME
from bot.languages import LANGUAGES
from bot.models import (
    Account,
    ApiKey,
    Case,
    CaseStatus,
    Category,
    Named,
    Official,
    Task,
    Township,
    Unit,
    Village,
)
from bot.notices import local_time
from bot.people import Person
from bot.posters import printable_villages
from web import pins, signin, words
from web.files import FILES, case_files
from web.tables import Cell, Table, download

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
SETTINGS = web.AppKey("settings", Settings)
VIEWER = web.RequestKey("viewer", object)
PAGE_SIZE = 50
#: The most a request may send (aiohttp's client_max_size): a form, a directory file with it.
MAX_BODY = 1024 * 1024
#: Pages anyone may open, signed in or not.
PUBLIC = ("/signin", "/signed-out", "/static/")
#: Paths that machines POST to with a check of their own (Telegram's webhook and its secret
#: token): no session, no CSRF token, no sign-in.
MACHINE_PATHS = web.AppKey("machine_paths", frozenset)


@dataclass
class Viewer:
    """The signed-in official: their account, their active official identities."""

    person: Person
    csrf: str

    @property
    def officials(self) -> list[Official]:
        return self.person.officials

    @property
    def administrator(self) -> Official | None:
        """The viewer's identity that may manage its township's directory, if any."""
        return next((o for o in self.officials if scope.may_manage_directory(o)), None)

    @property
    def task_official(self) -> Official | None:
        """The viewer's identity that may give township tasks or follow them, if any: the
        header links to the tasks only for them (anyone else follows none)."""
        return next(
            (o for o in self.officials
             if scope.may_create_task(o) or scope.may_follow_task_everywhere(o)),
            None,
        )


async def _viewer(session: Session) -> Viewer | None:
    account_id = session.get("account")
    if not isinstance(account_id, int):
        return None
    account = await Account.get_or_none(id=account_id)
    officials = await Official.filter(account_id=account_id, active=True).order_by("id")
    if account is None or not officials:  # no longer an official: signed out
        return None
    return Viewer(Person(account=account, officials=officials), csrf=session.get("csrf", ""))


def _language(request: web.Request, session: Session) -> str:
    chosen = session.get("language")
    return chosen if chosen in LANGUAGES else request.app[SETTINGS].default_language


async def reader_language(request: web.Request) -> str:
    """The language the pages speak to this reader (chosen, else DEFAULT_LANGUAGE)."""
    return _language(request, await get_session(request))


async def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """A page in the reader's language: `_` in the templates is the catalogs' `text`."""
    session = await get_session(request)
    language = _language(request, session)
    viewer = request.get(VIEWER)
    assert viewer is None or isinstance(viewer, Viewer)

    def _(message: str, **values: object) -> str:
        return catalogs().text(message, language, **values)

    header: dict[str, Any] = {}
    if viewer is not None:
        official = viewer.officials[0]
        township = await Township.get(id=official.township_id)  # type: ignore[attr-defined]
        header = {
            "township": township.display_name(language),
            "official": official.display_name(language),
            "posters": bool(await printable_villages(viewer.officials)),
        }
    page = {
        "_": _, "language": language, "viewer": viewer, "csrf": session.get("csrf", ""),
        "here": request.path_qs, "header": header,
        "languages": [(code, catalogs().text(LANGUAGE_NAME, code)) for code in LANGUAGES],
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, page, status=status)


async def administered_township(request: web.Request, page: str) -> Township | None:
    """The township the viewer administers (its directory, FAQ, setup pages); None, logged,
    for everyone else, who is shown "No such page"."""
    viewer = request[VIEWER]
    assert isinstance(viewer, Viewer)  # `guard` lets no one else past
    official = viewer.administrator
    if official is None:
        log.warning("back office: account %s may not open %s", viewer.person.account.id, page)
        return None
    return await Township.get(id=official.township_id)  # type: ignore[attr-defined]


async def message_page(
    request: web.Request, text: str, status: int, **values: object
) -> web.Response:
    return await render(request, "message.html", {"text": text, "values": values}, status=status)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is signed in; a POST without the session's CSRF token is refused before any view."""
    if request.path.startswith("/static/"):
        return await handler(request)
    if request.path in request.config_dict.get(MACHINE_PATHS, frozenset()):
        return await handler(request)
    session = await get_session(request)
    if request.method == "POST":
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            log.warning("back office: %s %s refused: too large", request.method, request.path)
            return await message_page(
                request, N_("This is too large to send: at most {limit} KB."), 413,
                limit=MAX_BODY // 1024,
            )
        sent = form.get("csrf")
        expected = session.get("csrf")
        if not (
            isinstance(sent, str) and isinstance(expected, str) and expected
            and secrets.compare_digest(sent.encode(), expected.encode())
        ):
            log.warning("back office: %s %s refused: CSRF token missing or wrong",
                        request.method, request.path)
            return await message_page(
                request, N_("This form has expired. Go back, reload the page and try again."),
                403,
            )
    request[VIEWER] = await _viewer(session)
    if request[VIEWER] is None and not request.path.startswith(PUBLIC):
        return await message_page(request, N_("Please sign in."), 401)
    return await handler(request)


def _viewer_of(request: web.Request) -> Viewer:
    viewer = request[VIEWER]
    assert isinstance(viewer, Viewer)  # `guard` lets no one else past
    return viewer


# ---- signing in and out ---------------------------------------------------------------------


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    """Every official may open the dashboard (it counts only what they may see): it is home."""
    raise web.HTTPSeeOther("/dashboard")


@routes.get("/signin/{token}")
async def sign_in(request: web.Request) -> web.StreamResponse:
    try:
        account_id = await signin.redeem(request.match_info["token"])
    except signin.SignInRefused as refused:
        log.warning("back office: a sign-in link refused: %s", refused.reason.value)
        return await message_page(request, words.SIGN_IN_REFUSALS[refused.reason], 403)
    return await start_session(request, account_id)


async def start_session(request: web.Request, account_id: int) -> web.StreamResponse:
    """Sign `account_id` in (checked an official by `web.signin`) and go to the cases: every
    way of signing in ends here."""
    account = await Account.get(id=account_id)
    session = await new_session(request)  # a fresh session: nothing carried over from before
    session["account"] = account_id
    session["csrf"] = secrets.token_urlsafe(32)
    session["language"] = account.language
    raise web.HTTPSeeOther("/cases")


@routes.post("/logout")
async def sign_out(request: web.Request) -> web.StreamResponse:
    (await get_session(request)).invalidate()
    raise web.HTTPSeeOther("/signed-out")


@routes.get("/signed-out")
async def signed_out(request: web.Request) -> web.StreamResponse:
    return await message_page(request, N_("You are signed out."), 200)


@routes.post("/language")
async def choose_language(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    session = await get_session(request)
    if form.get("language") in LANGUAGES:
        session["language"] = form["language"]
    back = form.get("next")
    raise web.HTTPSeeOther(
        back if isinstance(back, str) and back.startswith("/") and not back.startswith("//")
        else "/cases"
    )


# ---- the list ---------------------------------------------------------------------------------


def _number(value: str | None) -> int | None:
    """A whole number as a form sends it; anything else (², ３, -1, 10 digits) is none."""
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 10 else None


def _date(value: str) -> date | None:
    """A day written as the date field sends it (2026-11-23), in years a township can mean."""
    try:
        day = date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        return None
    return day if day is not None and 2000 <= day.year <= 2999 else None


def _searchable(text: str) -> str:
    """The search text on one line, without control characters (PostgreSQL refuses a NUL)."""
    return " ".join("".join(c for c in text if c.isprintable() or c.isspace()).split())[:100]


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """When `day` starts on the township's clock, in UTC."""
    return datetime.combine(day, time(), zone).astimezone(UTC)


BAD_DATE = N_("{value} is not a date (write it as 2026-11-23): the period leaves it out.")
REVERSED_PERIOD = N_("The period ends before it starts, so no case can match it.")
#: The columns the list sorts by, and whether a first click on the header sorts descending.
SORTS: dict[str, bool] = {
    "number": True, "received": True, "status": False, "deadline": False, "village": False,
    "category": False,
}
DEFAULT_SORT = "received"
ANONYMOUS = {"yes": True, "no": False}
#: Where a case came from: a villager's report, or a township task (中心工作).
KINDS = ("reports", "tasks")


@dataclass(frozen=True)
class Filters:
    """The list's filters and sort as the query string gives them. What the form never sends
    (an unknown status, a letter for a village) is ignored; a date typed wrong is ignored and
    said so in `problems` (msgid, value)."""

    status: CaseStatus | None = None
    village: int | None = None
    unit: int | None = None
    category: int | None = None
    overdue: bool = False
    anonymous: bool | None = None
    kind: str = ""
    since: date | None = None
    until: date | None = None
    text: str = ""
    sort: str = DEFAULT_SORT
    descending: bool = True
    page: int = 1
    problems: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        problems: list[tuple[str, str]] = []

        def day(name: str) -> date | None:
            written = query.get(name, "").strip()
            found = _date(written) if written else None
            if written and found is None:
                problems.append((BAD_DATE, written[:20]))
            return found

        since, until = day("from"), day("to")
        if since is not None and until is not None and since > until:
            problems.append((REVERSED_PERIOD, ""))
        status = query.get("status", "")
        sort = query.get("sort", "")
        sort = sort if sort in SORTS else DEFAULT_SORT
        order = query.get("order", "")
        kind = query.get("kind", "")
        return cls(
            status=CaseStatus(status) if status in set(CaseStatus) else None,
            village=_number(query.get("village")),
            unit=_number(query.get("unit")),
            category=_number(query.get("category")),
            overdue=query.get("overdue") == "1",
            anonymous=ANONYMOUS.get(query.get("anonymous", "")),
            kind=kind if kind in KINDS else "",
            since=since,
            until=until,
            text=_searchable(query.get("q", "")),
            sort=sort,
            descending=order == "desc" if order in ("asc", "desc") else SORTS[sort],
            page=max(_number(query.get("page")) or 1, 1),
            problems=tuple(problems),
        )

    def where(self, at: datetime, zone: ZoneInfo) -> Q:
        """The filters as a condition on cases; the period's days are the township's."""
        found = Q()
        if self.status is not None:
            found &= Q(status=self.status)
        if self.village is not None:
            found &= Q(village_id=self.village)
        if self.unit is not None:
            found &= Q(unit_id=self.unit)
        if self.category is not None:
            found &= Q(category_id=self.category)
        if self.anonymous is not None:
            found &= Q(anonymous=self.anonymous)
        if self.kind:
            found &= Q(task_id__isnull=self.kind == "reports")
        if self.since is not None:  # in UTC, as stored: SQLite compares the text
            found &= Q(created_at__gte=_midnight(self.since, zone))
        if self.until is not None:
            found &= Q(created_at__lt=_midnight(self.until + timedelta(days=1), zone))
        if self.overdue:
            found &= Q(status=CaseStatus.NEW, accept_by__lt=at) | Q(
                status=CaseStatus.ACCEPTED, resolve_by__lt=at
            )
        return found

    def searched(self, query: QuerySet[Case]) -> QuerySet[Case]:
        """The text filter, on the number and the description. Without a letter that has a
        case (Chinese, digits) LIKE finds what ILIKE would, three times faster. A text with a
        run of three letters or digits is looked up in the trigram indexes (PostgreSQL,
        migration 0007). A shorter one reads the table, through COALESCE, which no index is on:
        so its statements are planned apart, and a prepared statement's generic plan cannot
        pick the trigram indexes for it, which would read them whole, slower than the table."""
        if not self.text:
            return query
        lookup = "contains" if self.text.upper() == self.text.lower() else "icontains"
        number, description = "number", "description"
        if not any(len(run) >= 3 for run in re.findall(r"\w+", self.text)):
            query = query.annotate(number_text=Coalesce("number", ""),
                                   description_text=Coalesce("description", ""))
            number, description = "number_text", "description_text"
        return query.filter(Q(**{f"{number}__{lookup}": self.text})
                            | Q(**{f"{description}__{lookup}": self.text}))

    def _query(self) -> str:
        values = {
            "status": self.status or "", "village": self.village or "", "unit": self.unit or "",
            "category": self.category or "", "overdue": "1" if self.overdue else "",
            "anonymous": {True: "yes", False: "no", None: ""}[self.anonymous],
            "kind": self.kind,
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
            "q": self.text,
            "sort": self.sort if self.sort != DEFAULT_SORT else "",
            "order": "" if self.descending == SORTS[self.sort] else (
                "desc" if self.descending else "asc"
            ),
            "page": self.page if self.page > 1 else "",
        }
        return urlencode({k: v for k, v in values.items() if v != ""})

    def link(self, page: int) -> str:
        """This list at another page."""
        return "/cases?" + replace(self, page=page)._query()

    def sorted_by(self, column: str) -> str:
        """A column header's link: by that column, or the other way round when it is the
        column sorted by now; back to the first page."""
        descending = not self.descending if column == self.sort else SORTS[column]
        return "/cases?" + replace(self, sort=column, descending=descending, page=1)._query()

    def export(self, fmt: str) -> str:
        """The same cases, every page, as a file."""
        return f"/cases.{fmt}?" + replace(self, page=1)._query()


#: The sort keys that are not columns, in SQL both databases read (constants only: the
#: statuses are the enum's). Status as a case goes: waiting, being handled, resolved, closed.
STATUS_RANK = "CASE \"case\".\"status\" " + " ".join(
    f"WHEN '{status.value}' THEN {n}" for n, status in enumerate(CaseStatus)
) + f" ELSE {len(CaseStatus)} END"
DEADLINE = (
    f"CASE \"case\".\"status\" WHEN '{CaseStatus.NEW.value}' THEN \"case\".\"accept_by\" "
    f"WHEN '{CaseStatus.ACCEPTED.value}' THEN \"case\".\"resolve_by\" END"
)
WITHOUT_DEADLINE = f"CASE WHEN {DEADLINE} IS NULL THEN 1 ELSE 0 END"


def _ordered(query: QuerySet[Case], sort: str, descending: bool) -> QuerySet[Case]:
    """The list's order; the case id last, so that pages never overlap. Cases without a
    current deadline (resolved, closed) come after the others either way."""
    way = "-" if descending else ""
    keys: list[str]
    if sort == "status":
        query = query.annotate(status_rank=RawSQL(STATUS_RANK))
        keys = [f"{way}status_rank"]
    elif sort == "deadline":
        query = query.annotate(without_deadline=RawSQL(WITHOUT_DEADLINE),
                               deadline=RawSQL(DEADLINE))
        keys = ["without_deadline", f"{way}deadline"]
    elif sort == "village":  # the directory's order, as in the filters
        keys = [f"{way}village__position", f"{way}village_id"]
    elif sort == "category":  # the directory's order: by heading, then within it
        keys = [f"{way}category__parent__position", f"{way}category__position",
                f"{way}category_id"]
    elif sort == "number":
        keys = [f"{way}number"]
    else:
        keys = [f"{way}created_at"]
    return query.order_by(*keys, f"{way}id")


async def seen_by(viewer: Viewer) -> Q:
    """Every case any of the viewer's official identities may see (`bot.scope`)."""
    return reduce(or_, [await scope.cases_seen_by(o) for o in viewer.officials])


def _deadline(status: CaseStatus, accept_by: datetime | None,
              resolve_by: datetime | None) -> datetime | None:
    """The deadline a case is working against now: to be accepted, or to be resolved."""
    return {CaseStatus.NEW: accept_by, CaseStatus.ACCEPTED: resolve_by}.get(status)


def _overdue(case: Case, at: datetime) -> bool:
    deadline = _deadline(case.status, case.accept_by, case.resolve_by)
    return deadline is not None and deadline < at


#: What the list reads of a case, and nothing more (no reporter).
LISTED = (
    "id", "number", "township_id", "created_at", "status", "village_id", "category_id",
    "unit_id", "assignee_id", "accept_by", "resolve_by", "description", "supporters", "task_id",
)
#: The list's columns, as its header and the export's header say them.
HEADER = (
    N_("Number"), N_("Reported"), N_("Status"), N_("Village"), N_("Category"), N_("Unit"),
    N_("Handled by"), N_("Deadline"), N_("Overdue"), N_("Description"),
)
#: The page's columns and what each header sorts by (overdue is marked in the status).
COLUMNS: tuple[tuple[str, str | None], ...] = (
    (N_("Number"), "number"), (N_("Reported"), "received"), (N_("Status"), "status"),
    (N_("Village"), "village"), (N_("Category"), "category"), (N_("Unit"), None),
    (N_("Handled by"), None), (N_("Deadline"), "deadline"), (N_("Description"), None),
)
SUMMARY = 60
EXPORT_BATCH = 500


@dataclass(frozen=True)
class Row:
    """A case as the list and the export show it; times on the township's clock."""

    number: str
    received: datetime
    status: CaseStatus
    village: str
    category: str
    unit: str
    assignee: str
    deadline: datetime | None
    overdue: bool
    description: str
    supporters: int = 0  # villagers who joined the case (附议)
    task: bool = False  # a township task's case: resolved means waiting for its review

    @property
    def status_name(self) -> str:
        return words.status_name(self.status, task=self.task)

    @property
    def summary(self) -> str:
        text = " ".join(self.description.split())
        return text if len(text) <= SUMMARY else text[:SUMMARY] + "…"


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


@dataclass
class Directory:
    """The viewer's townships' villages, units, categories and officials, read once per
    request: the filters' choices, and the names the rows show."""

    villages: list[Village]
    units: list[Unit]
    categories: list[Category]
    names: dict[str, dict[int, str]]
    zones: dict[int, ZoneInfo]
    zone: ZoneInfo  # the viewer's own township's, for the period's days

    @classmethod
    async def load(cls, viewer: Viewer, language: str) -> Directory:
        townships = sorted({o.township_id for o in viewer.officials})  # type: ignore[attr-defined]
        villages = await Village.filter(township_id__in=townships).order_by("position", "id")
        units = await Unit.filter(township_id__in=townships).order_by("id")
        categories = await Category.filter(township_id__in=townships).order_by("position", "id")
        headings = {c.id: c.position for c in categories}
        officials = await Official.filter(township_id__in=townships)
        places = {t.id: ZoneInfo(t.timezone) for t in await Township.filter(id__in=townships)}
        named: dict[str, Sequence[Named]] = {
            "village": villages, "unit": units, "category": categories, "official": officials,
        }
        return cls(
            villages=[v for v in villages if v.active],
            units=[u for u in units if u.active],
            categories=sorted(
                (c for c in categories if c.active and c.parent_id is not None),  # type: ignore[attr-defined]
                key=lambda c: (headings.get(c.parent_id, 0), c.position, c.id),  # type: ignore[attr-defined]
            ),
            names={kind: {row.id: row.display_name(language) for row in rows}  # type: ignore[attr-defined]
                   for kind, rows in named.items()},
            zones=places,
            zone=places[viewer.officials[0].township_id],  # type: ignore[attr-defined]
        )

    def row(self, case: Mapping[str, Any], at: datetime) -> Row:
        zone = self.zones.get(case["township_id"], self.zone)
        status = CaseStatus(case["status"])
        deadline = _deadline(status, case["accept_by"], case["resolve_by"])
        return Row(
            number=case["number"], received=_local(case["created_at"], zone), status=status,
            village=self.names["village"].get(case["village_id"], ""),
            category=self.names["category"].get(case["category_id"], ""),
            unit=self.names["unit"].get(case["unit_id"], ""),
            assignee=self.names["official"].get(case["assignee_id"], ""),
            deadline=_local(deadline, zone) if deadline is not None else None,
            overdue=deadline is not None and deadline < at,
            description=case["description"] or "",
            supporters=case.get("supporters") or 0,
            task=case.get("task_id") is not None,
        )


@dataclass
class Listing:
    """One request's list: who asks, what they filter, and the cases that match."""

    filters: Filters
    directory: Directory
    language: str
    query: QuerySet[Case]
    at: datetime

    @classmethod
    async def of(cls, request: web.Request) -> Listing:
        viewer = _viewer_of(request)
        filters = Filters.parse(request.query)
        language = _language(request, await get_session(request))
        directory = await Directory.load(viewer, language)
        at = cases.now()
        query = filters.searched(
            Case.filter(await seen_by(viewer)).filter(filters.where(at, directory.zone))
        )
        return cls(filters, directory, language, query, at)

    def ordered(self) -> QuerySet[Case]:
        return _ordered(self.query, self.filters.sort, self.filters.descending)


@routes.get("/cases")
async def case_list(request: web.Request) -> web.StreamResponse:
    listing = await Listing.of(request)
    filters = listing.filters
    count = await listing.query.count()
    pages = max(math.ceil(count / PAGE_SIZE), 1)
    page = min(filters.page, pages)
    found = await listing.ordered().offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE).values(
        *LISTED
    )
    directory = listing.directory
    return await render(request, "cases.html", {
        "rows": [directory.row(case, listing.at) for case in found],
        "count": count, "page": page, "pages": pages, "filters": filters,
        "statuses": words.STATUS_NAMES, "columns": COLUMNS,
        "villages": directory.villages, "units": directory.units,
        "categories": directory.categories, "kinds": words.KIND_NAMES,
    })


def _cells(row: Row, language: str) -> list[Cell]:
    text = catalogs().text
    return [
        row.number, row.received, text(row.status_name, language), row.village,
        row.category, row.unit, row.assignee, row.deadline,
        text(N_("overdue"), language) if row.overdue else "", row.description,
    ]


@routes.get("/cases.csv")
@routes.get("/cases.xlsx")
async def case_export(request: web.Request) -> web.StreamResponse:
    """The list's cases, every page of them, in its order and with its columns. The ids come
    first, then the rows in batches of plain values, so a whole township's history is never
    held as ORM objects; the file is written off the event loop, which the bot shares."""
    fmt = request.path.rsplit(".", 1)[1]
    listing = await Listing.of(request)
    language = listing.language
    ids = await listing.ordered().values_list("id", flat=True)
    text = catalogs().text
    table = Table(text(N_("Cases"), language), [text(name, language) for name in HEADER])
    for start in range(0, len(ids), EXPORT_BATCH):
        batch = ids[start:start + EXPORT_BATCH]
        found = {case["id"]: case for case in await Case.filter(id__in=batch).values(*LISTED)}
        table.rows += [
            _cells(listing.directory.row(found[n], listing.at), language)
            for n in batch if n in found
        ]
    made = _local(listing.at, listing.directory.zone)
    return await asyncio.to_thread(download, [table], fmt, f"cases-{made:%Y%m%d-%H%M}")


# ---- a case -------------------------------------------------------------------------------------

NOT_ALLOWED_TO_ESCALATE = N_(
    "Only the case's unit, the official handling it or a dispatcher can escalate it."
)
NOT_ALLOWED_TO_SUPERVISE = N_(
    "Only a dispatcher or a leader of the case's unit or of a unit above it can supervise it."
)
NO_SUPERVISOR = N_("There is no higher unit to send this case to.")
NOT_SUPERVISABLE = N_("Only a case being handled by someone can be supervised.")
#: What a photo or voice message that Telegram would not give shows instead.
FILE_UNAVAILABLE = N_("This file could not be fetched from Telegram. Try again later.")


async def language_of(request: web.Request) -> str:
    """The reader's language, for what is rendered outside a template."""
    return _language(request, await get_session(request))


async def seen_case(request: web.Request) -> Case | None:
    """The case of the URL when the viewer may see it; None for a number guessed or hidden."""
    case = await Case.get_or_none(number=request.match_info["number"][:32])
    if case is None:
        return None
    for official in _viewer_of(request).officials:
        if await scope.may_see(official, case):
            return case
    log.warning("back office: account %s may not see case %s",
                _viewer_of(request).person.account.id, case.number)
    return None


async def not_found(request: web.Request) -> web.Response:
    return await message_page(request, N_("No such case, or not one you may see."), 404)


async def _case_page(
    request: web.Request, case: Case, *, refusal: str | None = None, values: Mapping[str, object]
    | None = None, status: int = 200,
) -> web.Response:
    viewer = _viewer_of(request)
    person = viewer.person
    await case.fetch_related("category", "village", "grid", "unit", "township", "assignee",
                             "reporter")
    open_case = case.status in (CaseStatus.NEW, CaseStatus.ACCEPTED)
    assigner = await acting(person, case, "assign") if open_case else None
    noter = await acting(person, case, "work") if case.status == CaseStatus.ACCEPTED else None
    # Escalate as the card offers it: to whoever may, while there is a unit above.
    upper = await scope.escalation_target(case) if open_case else None
    escalator = await acting(person, case, "escalate") if upper is not None else None
    supervisor = (
        await acting(person, case, "supervise")
        if case.status == CaseStatus.ACCEPTED and case.assignee is not None else None
    )
    personal = person.account.id in await scope.personal_data_chats(case)
    # A township task's case: its task, and its result reviewed here as on Telegram.
    task = await Task.get_or_none(id=case.task_id) if case.task_id is not None else None  # type: ignore[attr-defined]
    reviewer = (
        await acting(person, case, "review")
        if task is not None and case.status == CaseStatus.RESOLVED else None
    )
    events = await cases.history(case.id)
    files = case_files(case, events)
    language = await language_of(request)
    return await render(request, "case.html", {
        "case": case, "events": events,
        "status_name": words.status_name(case.status, task=task is not None),
        "actions": {**ACTION_NAMES, **words.TASK_ACTIONS} if task else ACTION_NAMES,
        "reporter": case.reporter if personal else None,
        "source": (await ApiKey.get(id=case.api_key_id)).name  # type: ignore[attr-defined]
        if case.api_key_id is not None else None,  # type: ignore[attr-defined]
        "task": task, "creator": await Official.get(id=task.creator_id) if task else None,  # type: ignore[attr-defined]
        "may_review": reviewer is not None,
        "candidates": await scope.assign_candidates(case, 50) if assigner else [],
        "may_note": noter is not None,
        "upper": upper if escalator is not None else None,
        "may_supervise": supervisor is not None,
        "note_max": cases.NOTE_MAX,
        "deadlines": [(hours, words.DEADLINES[hours]) for hours in DEADLINE_HOURS],
        "timezone": case.township.timezone, "local_time": local_time,
        "overdue": _overdue(case, cases.now()),
        "files": [f for f in files if f.event_id is None], "file_unavailable": FILE_UNAVAILABLE,
        "event_files": {
            event_id: [f for f in files if f.event_id == event_id]
            for event_id in {f.event_id for f in files if f.event_id is not None}
        },
        "map": pins.map_data(request.app[SETTINGS], [case], language, cluster=False)
        if case.latitude is not None and case.longitude is not None else None,
        "refusal": refusal, "refusal_values": values or {},
    }, status=status)


@routes.get("/cases/{number}")
async def case_view(request: web.Request) -> web.StreamResponse:
    case = await seen_case(request)
    if case is None:
        return await not_found(request)
    return await _case_page(request, case)


def _placeholder_image(text: str) -> bytes:
    """A photo that could not be fetched, as a picture saying so (an <img> shows no page)."""
    lines = "".join(
        f'<text x="50%" y="{46 + 8 * n}%" text-anchor="middle">{escape(line)}</text>'
        for n, line in enumerate(textwrap.wrap(text, 28))
    )
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="320" height="240" '
        'font-family="sans-serif" font-size="14" fill="#555">'
        f'<rect width="100%" height="100%" fill="#eee"/>{lines}</svg>'
    ).encode()


@routes.get("/cases/{number}/files/{n}")
async def case_file(request: web.Request) -> web.StreamResponse:
    """A photo or the voice message of a case, for one who may see the case: fetched from
    Telegram by the server once and kept (`web.files`); the browser never sees a file id."""
    case = await seen_case(request)
    if case is None:
        return await not_found(request)
    n = _number(request.match_info["n"])
    files = case_files(case, await cases.history(case.id))
    if n is None or not 1 <= n <= len(files):
        return await not_found(request)
    found = files[n - 1]
    return await kept_file(request, found.file_id, found.content_type,
                           photo=found.kind == "photo")


async def kept_file(
    request: web.Request, file_id: str, content_type: str, *, photo: bool
) -> web.StreamResponse:
    """A Telegram file through the back office's store (`web.files`), for one the caller
    checked may see it; one Telegram will not give is a picture saying so (a photo) or a page."""
    path = await request.app[FILES].get(file_id)
    if path is None:
        text = catalogs().text(FILE_UNAVAILABLE, await language_of(request))
        if photo:
            return web.Response(body=_placeholder_image(text), status=502,
                                content_type="image/svg+xml",
                                headers={"Cache-Control": "no-store"})
        return await message_page(request, FILE_UNAVAILABLE, 502)
    return web.FileResponse(path, headers={
        "Content-Type": content_type,
        # The same bytes for ever; private: only those who may see it get them.
        "Cache-Control": "private, max-age=86400",
    })


async def _act(
    request: web.Request, case: Case, check: str, not_allowed: str,
    act: Callable[[Official], Any], refusals: Mapping[Refusal, str] | None = None,
) -> web.StreamResponse:
    """One action through `bot.cases`, by the viewer's identity that may take it (else the
    first, for the domain to refuse); a refusal is shown on the case's page in words."""
    person = _viewer_of(request).person
    official = await acting(person, case, check) or person.officials[0]
    try:
        await act(official)
    except CaseRefused as refused:
        log.warning("back office: case %s: %s by account %s refused: %s", case.number, check,
                    person.account.id, refused.reason.value)
        texts = {**words.CASE_REFUSALS, **(refusals or {})}
        text = not_allowed if refused.reason == Refusal.NOT_ALLOWED else texts.get(
            refused.reason, words.CASE_REFUSALS[Refusal.CHANGED]
        )
        fresh = await Case.get(id=case.id)
        return await _case_page(request, fresh, refusal=text, status=409,
                                values={"limit": cases.NOTE_MAX})
    delivery.wake()  # the Telegram side is told now, as after a tap
    raise web.HTTPSeeOther(f"/cases/{case.number}")


@routes.post("/cases/{number}/note")
async def note(request: web.Request) -> web.StreamResponse:
    case = await seen_case(request)
    if case is None:
        return await not_found(request)
    text = str((await request.post()).get("note", ""))
    return await _act(
        request, case, "work", words.NOT_ALLOWED_TO_NOTE,
        lambda official: cases.add_note(case.id, official, text, public=False),
    )


@routes.post("/cases/{number}/assign")
async def assign(request: web.Request) -> web.StreamResponse:
    case = await seen_case(request)
    if case is None:
        return await not_found(request)
    form = await request.post()
    hours = _number(str(form.get("hours", "")))
    to = await Official.get_or_none(
        id=_number(str(form.get("official", ""))) or 0, township_id=case.township_id,  # type: ignore[attr-defined]
        active=True,
    )
    may_assign = await acting(_viewer_of(request).person, case, "assign") is not None

    async def act(by: Official) -> None:
        if to is None or hours not in DEADLINE_HOURS:
            raise CaseRefused(Refusal.NOT_FOUND, case)
        await cases.assign(case.id, by, to, cases.now() + timedelta(hours=hours))

    return await _act(
        request, case, "assign",
        words.NOT_ASSIGNABLE if may_assign else words.NOT_ALLOWED_TO_ASSIGN, act,
    )


@routes.post("/cases/{number}/escalate")
async def escalate(request: web.Request) -> web.StreamResponse:
    """Escalate as the card's button does: one level up, with an optional note."""
    case = await seen_case(request)
    if case is None:
        return await not_found(request)
    text = str((await request.post()).get("note", ""))
    return await _act(
        request, case, "escalate", NOT_ALLOWED_TO_ESCALATE,
        lambda official: cases.escalate(case.id, official, text),
        {Refusal.NO_SUPERVISOR: NO_SUPERVISOR},
    )


@routes.post("/cases/{number}/supervise")
async def supervise(request: web.Request) -> web.StreamResponse:
    """督办: the assignee is urged on in Telegram, and the history records it."""
    case = await seen_case(request)
    if case is None:
        return await not_found(request)
    text = str((await request.post()).get("note", ""))
    return await _act(
        request, case, "supervise", NOT_ALLOWED_TO_SUPERVISE,
        lambda official: cases.supervise(case.id, official, text),
        {Refusal.WRONG_STATE: NOT_SUPERVISABLE},
    )


@routes.post("/cases/{number}/confirm")
async def confirm(request: web.Request) -> web.StreamResponse:
    """A township task's result accepted (验收通过): the case closes, as the card's button does."""
    case = await seen_case(request)
    if case is None:
        return await not_found(request)
    return await _act(
        request, case, "review", words.NOT_ALLOWED_TO_REVIEW,
        lambda official: cases.confirm(case.id, official),
    )


@routes.post("/cases/{number}/sendback")
async def send_back(request: web.Request) -> web.StreamResponse:
    """A township task's result sent back (要求重办) with the reviewer's reason, required."""
    case = await seen_case(request)
    if case is None:
        return await not_found(request)
    text = str((await request.post()).get("reason", ""))
    return await _act(
        request, case, "review", words.NOT_ALLOWED_TO_REVIEW,
        lambda official: cases.send_back(case.id, official, text),
    )
