"""The back office's pages: thin, as the bot's handlers are (parse, ask scope and cases, render).

Every POST carries the session's CSRF token (`guard` refuses it otherwise, before any view
runs); every case is looked up through `bot.scope`, and one the reader may not see is a 404,
whether it exists or not.
"""

from __future__ import annotations

import logging
import math
import secrets
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from html import escape
from operator import or_
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_session import Session, get_session, new_session
from tortoise.expressions import Q

from bot import cases, delivery, scope
from bot.cases import CaseRefused, Refusal
from bot.config import Settings
from bot.flows.casework import acting
from bot.handlers.casework import DEADLINE_HOURS
from bot.handlers.lists import ACTION_NAMES
from bot.i18n import N_, catalogs
from bot.keyboards import LANGUAGE_NAME
from bot.languages import LANGUAGES
from bot.models import Account, Case, CaseStatus, Category, Official, Township, Unit, Village
from bot.notices import local_time
from bot.people import Person
from web import pins, signin, words
from web.files import FILES, case_files

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
SETTINGS = web.AppKey("settings", Settings)
VIEWER = web.RequestKey("viewer", object)
PAGE_SIZE = 50
#: Pages anyone may open, signed in or not.
PUBLIC = ("/signin/", "/signed-out", "/static/")


@dataclass
class Viewer:
    """The signed-in official: their account, their active official identities."""

    person: Person
    csrf: str

    @property
    def officials(self) -> list[Official]:
        return self.person.officials


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
        }
    page = {
        "_": _, "language": language, "viewer": viewer, "csrf": session.get("csrf", ""),
        "here": request.path_qs, "header": header,
        "languages": [(code, catalogs().text(LANGUAGE_NAME, code)) for code in LANGUAGES],
        **context,
    }
    return aiohttp_jinja2.render_template(template, request, page, status=status)


async def message_page(
    request: web.Request, text: str, status: int, **values: object
) -> web.Response:
    return await render(request, "message.html", {"text": text, "values": values}, status=status)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who is signed in; a POST without the session's CSRF token is refused before any view."""
    if request.path.startswith("/static/"):
        return await handler(request)
    session = await get_session(request)
    if request.method == "POST":
        sent = (await request.post()).get("csrf")
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
    raise web.HTTPSeeOther("/cases")


@routes.get("/signin/{token}")
async def sign_in(request: web.Request) -> web.StreamResponse:
    try:
        account_id = await signin.redeem(request.match_info["token"])
    except signin.SignInRefused as refused:
        log.warning("back office: a sign-in link refused: %s", refused.reason.value)
        return await message_page(request, words.SIGN_IN_REFUSALS[refused.reason], 403)
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
    return int(value) if value and value.isdigit() and len(value) < 10 else None


@dataclass(frozen=True)
class Filters:
    """The list's filters as the query string gives them; what does not parse is ignored."""

    status: CaseStatus | None
    village: int | None
    unit: int | None
    category: int | None
    overdue: bool
    text: str
    page: int

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filters:
        status = query.get("status", "")
        return cls(
            status=CaseStatus(status) if status in set(CaseStatus) else None,
            village=_number(query.get("village")),
            unit=_number(query.get("unit")),
            category=_number(query.get("category")),
            overdue=query.get("overdue") == "1",
            text=query.get("q", "").strip()[:100],
            page=max(_number(query.get("page")) or 1, 1),
        )

    def where(self, at: datetime) -> Q:
        found = Q()
        if self.status is not None:
            found &= Q(status=self.status)
        if self.village is not None:
            found &= Q(village_id=self.village)
        if self.unit is not None:
            found &= Q(unit_id=self.unit)
        if self.category is not None:
            found &= Q(category_id=self.category)
        if self.overdue:
            found &= Q(status=CaseStatus.NEW, accept_by__lt=at) | Q(
                status=CaseStatus.ACCEPTED, resolve_by__lt=at
            )
        if self.text:
            found &= Q(number__icontains=self.text) | Q(description__icontains=self.text)
        return found

    def link(self, page: int) -> str:
        from urllib.parse import urlencode

        values = {
            "status": self.status or "", "village": self.village or "", "unit": self.unit or "",
            "category": self.category or "", "overdue": "1" if self.overdue else "",
            "q": self.text, "page": page,
        }
        return "/cases?" + urlencode({k: v for k, v in values.items() if v != ""})


async def seen_by(viewer: Viewer) -> Q:
    """Every case any of the viewer's official identities may see (`bot.scope`)."""
    return reduce(or_, [await scope.cases_seen_by(o) for o in viewer.officials])


def _overdue(case: Case, at: datetime) -> bool:
    deadline = {CaseStatus.NEW: case.accept_by, CaseStatus.ACCEPTED: case.resolve_by}.get(
        case.status
    )
    return deadline is not None and deadline < at


@routes.get("/cases")
async def case_list(request: web.Request) -> web.StreamResponse:
    viewer = _viewer_of(request)
    filters = Filters.parse(request.query)
    at = cases.now()
    query = Case.filter(await seen_by(viewer)).filter(filters.where(at))
    count = await query.count()
    pages = max(math.ceil(count / PAGE_SIZE), 1)
    found = (
        await query.order_by("-id").offset((min(filters.page, pages) - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE).prefetch_related("category", "village", "unit", "township")
    )
    townships = sorted({o.township_id for o in viewer.officials})  # type: ignore[attr-defined]
    return await render(request, "cases.html", {
        "cases": found, "count": count, "page": min(filters.page, pages), "pages": pages,
        "filters": filters, "statuses": words.STATUS_NAMES,
        "villages": await Village.filter(township_id__in=townships, active=True).order_by(
            "position", "id"
        ),
        "units": await Unit.filter(township_id__in=townships, active=True).order_by("id"),
        "categories": await Category.filter(
            township_id__in=townships, active=True, parent_id__isnull=False
        ).order_by("position", "id"),
        "overdue": lambda case: _overdue(case, at),
        "local_time": local_time,
    })


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
    events = await cases.history(case.id)
    files = case_files(case, events)
    language = await language_of(request)
    return await render(request, "case.html", {
        "case": case, "events": events,
        "statuses": words.STATUS_NAMES, "actions": ACTION_NAMES,
        "reporter": case.reporter if personal else None,
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
    path = await request.app[FILES].get(found.file_id)
    if path is None:
        text = catalogs().text(FILE_UNAVAILABLE, await language_of(request))
        if found.kind == "photo":
            return web.Response(body=_placeholder_image(text), status=502,
                                content_type="image/svg+xml",
                                headers={"Cache-Control": "no-store"})
        return await message_page(request, FILE_UNAVAILABLE, 502)
    return web.FileResponse(path, headers={
        "Content-Type": found.content_type,
        # The same bytes for ever; private: only those who may see the case get them.
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
