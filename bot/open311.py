"""Cases as the Open311 GeoReport v2 standard sees them: services and service requests (its
API keys: `bot.apikeys`).

The web layer (`web/open311.py`) parses and renders; what a request says about a case, who may
read what, and how a request becomes a case are decided here. A request through the API becomes
a case through `cases.report`, the function the bot's Submit calls, routed by `bot.routing` the
same way; it has no reporter, and its client follows it through `requests/{id}`.

Privacy: no reporter's name or phone is ever part of a request; a confidential category's case
is never shown (its id answers as unknown); the description of an anonymous report only to a key
with `anonymous_text`.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot import cases
from bot.i18n import N_, catalogs
from bot.models import ApiKey, Case, CaseEvent, CaseStatus, Category, Township, Village
from bot.notices import local_time
from bot.routing import NoResponsibleUnit

#: The standard's defaults for `requests`: the last 90 days, at most 1,000 requests.
WINDOW = timedelta(days=90)
MOST = 1000
#: A token names the case it made: `report_key` is `open311:<token>`.
TOKEN_PREFIX = "open311:"
#: The only attribute a service asks for: where the problem is (villages have no coordinates).
VILLAGE = "village"
#: The events whose words the reporter hears, the latest of which is `status_notes`.
NOTED = ("note", "resolve")
MEDIA_URL_MAX = 255
ADDRESS_MAX = 255


class Problem(Exception):
    """What the standard's error list says: an HTTP status and a description (in English: the
    API speaks to developers, as the command line does)."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def _now() -> datetime:
    return datetime.now(UTC)


# ---- jurisdiction and services -------------------------------------------------------------


async def jurisdiction(code: str | None) -> Township:
    """`jurisdiction_id` is the township code: needed when more than one township is active."""
    if code:
        found = await Township.get_or_none(code=code, active=True)
        if found is None:
            raise Problem(404, f"jurisdiction_id {code!r} is not a township of this server")
        return found
    active = await Township.filter(active=True).order_by("id").limit(2)
    if len(active) == 1:
        return active[0]
    if not active:
        raise Problem(404, "this server has no township yet")
    raise Problem(400, "jurisdiction_id is required: this server serves several townships")


def _text(message: str, township: Township, **values: object) -> str:
    return catalogs().text(message, township.language, **values)


def _services_query(township: Township):  # type: ignore[no-untyped-def]
    """The township's active leaf categories, not its township-task category."""
    return Category.filter(
        township_id=township.id, active=True, task=False, parent_id__isnull=False,
        parent__active=True,
    )


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    description: str
    group: str
    confidential: bool
    metadata: bool = True
    #: The case exists as soon as the request is answered.
    type: str = "realtime"
    keywords: str = ""


def _hours(category: Category) -> tuple[int, int]:
    return (category.accept_hours or cases.DEFAULT_ACCEPT_HOURS,
            category.resolve_hours or cases.DEFAULT_RESOLVE_HOURS)


def _service(township: Township, category: Category, parent: Category) -> Service:
    accept, resolve = _hours(category)
    language = township.language
    description = _text(
        N_("Accepted within {accept} hours and resolved within {resolve} hours."),
        township, accept=accept, resolve=resolve,
    )
    if category.confidential:
        description += " " + _text(
            N_("Confidential: its requests are accepted but never published."), township
        )
    return Service(
        code=category.code, name=category.display_name(language), description=description,
        group=parent.display_name(language), confidential=category.confidential,
    )


async def services(township: Township) -> list[Service]:
    rows = await _services_query(township).prefetch_related("parent").order_by(
        "parent__position", "parent_id", "position", "id"
    )
    return [_service(township, row, row.parent) for row in rows]


async def _category(township: Township, code: str) -> Category:
    found = await _services_query(township).filter(code=code).prefetch_related("parent").first()
    if found is None:
        raise Problem(404, f"service_code {code!r} is not a service of this jurisdiction")
    return found


@dataclass(frozen=True)
class Attribute:
    code: str
    datatype: str
    required: bool
    description: str
    datatype_description: str
    order: int
    values: list[tuple[str, str]]
    variable: bool = True


async def _villages(township: Township) -> list[Village]:
    return await Village.filter(township_id=township.id, active=True).order_by("position", "id")


async def definition(township: Township, code: str) -> tuple[str, list[Attribute]]:
    """A service's definition: every service asks for the village where the problem is, the
    only thing routing needs that the standard's fields do not carry."""
    category = await _category(township, code)
    language = township.language
    village = Attribute(
        code=VILLAGE, datatype="singlevaluelist", required=True,
        description=_text(N_("The village where the problem is"), township),
        datatype_description=_text(N_("One of the township's village codes"), township),
        order=1,
        values=[(v.code, v.display_name(language)) for v in await _villages(township)],
    )
    return category.code, [village]


# ---- service requests -----------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One case as the standard's `request`; every time in the township's own offset."""

    service_request_id: str
    status: str
    status_notes: str | None
    service_name: str
    service_code: str
    description: str | None
    agency_responsible: str
    service_notice: str
    requested_datetime: str
    updated_datetime: str
    expected_datetime: str | None
    address: str | None
    lat: float | None
    long: float | None
    media_url: str | None
    address_id: None = None
    zipcode: None = None


def local(moment: datetime | None, township: Township) -> str | None:
    """ISO 8601 with the township's offset: `2026-12-04T09:30:00+08:00`."""
    if moment is None:
        return None
    return moment.astimezone(ZoneInfo(township.timezone)).isoformat(timespec="seconds")


def status_of(case: Case) -> str:
    """`closed` once the work is done (resolved, whether or not confirmed yet); a reopened
    case is open again."""
    return "open" if case.status in (CaseStatus.NEW, CaseStatus.ACCEPTED) else "closed"


def notice(township: Township, case: Case) -> str:
    """What the client should know: when the case is to be accepted and resolved."""
    if case.status == CaseStatus.NEW:
        return _text(N_("To be accepted by {accept} and resolved by {resolve}."), township,
                     accept=local_time(case.accept_by, township.timezone),
                     resolve=local_time(case.resolve_by, township.timezone))
    if case.status == CaseStatus.ACCEPTED:
        return _text(N_("Being handled; to be resolved by {resolve}."), township,
                     resolve=local_time(case.resolve_by, township.timezone))
    if case.status == CaseStatus.RESOLVED:
        return _text(N_("Resolved."), township)
    return _text(N_("Closed."), township)


def _published() -> dict[str, object]:
    """Never a confidential category's case, nor a township task's (no one requested it)."""
    return {"category__confidential": False, "task_id__isnull": True}


async def _requests(township: Township, query, anonymous_text: bool) -> list[Request]:  # type: ignore[no-untyped-def]
    rows = await query.prefetch_related("category", "unit")
    notes: dict[int, str] = {}
    if rows:
        events = await CaseEvent.filter(
            case_id__in=[row.id for row in rows], action__in=NOTED, public=True,
            note__isnull=False,
        ).order_by("id").values("case_id", "note")
        for event in events:  # the latest wins
            notes[event["case_id"]] = event["note"]
    language = township.language
    return [
        Request(
            service_request_id=case.number,
            status=status_of(case),
            status_notes=notes.get(case.id),
            service_name=case.category.display_name(language),
            service_code=case.category.code,
            description=None if case.anonymous and not anonymous_text else case.description,
            agency_responsible=case.unit.display_name(language),
            service_notice=notice(township, case),
            requested_datetime=local(case.created_at, township),  # type: ignore[arg-type]
            updated_datetime=local(case.updated_at, township),  # type: ignore[arg-type]
            expected_datetime=local(case.resolve_by, township),
            address=case.address,
            lat=case.latitude,
            long=case.longitude,
            media_url=case.media_url,
        )
        for case in rows
    ]


async def request(township: Township, number: str, *, anonymous_text: bool = False) -> Request:
    query = Case.filter(township_id=township.id, number=number, **_published())
    found = await _requests(township, query, anonymous_text)
    if not found:
        raise Problem(404, f"service_request_id {number!r} is not a request of this jurisdiction")
    return found[0]


def _date(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        # A "+" left unescaped in a query string arrives as a space.
        written = re.sub(r" (\d\d:?\d\d)$", r"+\1", text.strip())
        moment = datetime.fromisoformat(written.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(400, f"{name} is not a W3C date and time, e.g. "
                           "2026-12-04T09:30:00+08:00") from None
    if moment.tzinfo is None:
        raise Problem(400, f"{name} needs its offset, e.g. 2026-12-04T09:30:00+08:00")
    return moment


def _listed(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


async def search(
    township: Township,
    *,
    service_request_id: str | None = None,
    service_code: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    status: str | None = None,
    anonymous_text: bool = False,
    at: datetime | None = None,
) -> list[Request]:
    """`GET requests`: ids (comma list) override every other filter; otherwise the service
    codes, the time window on `requested_datetime` (90 days at most, the last 90 by default)
    and the statuses; newest first, at most 1,000."""
    query = Case.filter(township_id=township.id, **_published())
    ids = _listed(service_request_id)
    if ids:
        query = query.filter(number__in=ids[:MOST])
    else:
        codes = _listed(service_code)
        if codes:
            query = query.filter(category__code__in=codes)
        start, end = _date(start_date, "start_date"), _date(end_date, "end_date")
        if start is None and end is None:
            end = at or _now()
        if start is None:
            start = end - WINDOW  # type: ignore[operator]
        if end is None:
            end = start + WINDOW
        if end < start:
            raise Problem(400, "end_date is before start_date")
        if end - start > WINDOW:
            raise Problem(400, "start_date and end_date may not span more than 90 days")
        query = query.filter(created_at__gte=start, created_at__lte=end)
        statuses = _listed(status)
        if any(s not in ("open", "closed") for s in statuses):
            raise Problem(400, "status is open, closed or both (comma-separated)")
        if set(statuses) == {"open"}:
            query = query.filter(status__in=[CaseStatus.NEW, CaseStatus.ACCEPTED])
        elif set(statuses) == {"closed"}:
            query = query.filter(status__in=[CaseStatus.RESOLVED, CaseStatus.CLOSED])
    return await _requests(
        township, query.order_by("-created_at", "-id").limit(MOST), anonymous_text
    )


async def token(township: Township, value: str) -> str:
    """The id of the request a POST answered with this token (as published requests are)."""
    case = await Case.filter(
        township_id=township.id, report_key=TOKEN_PREFIX + value, **_published()
    ).first()
    if case is None:
        raise Problem(404, "no request has this token")
    return case.number


# ---- a new request --------------------------------------------------------------------------


def _coordinate(text: str | None, name: str, limit: float) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise Problem(400, f"{name} is not a number") from None
    if not math.isfinite(value) or abs(value) > limit:
        raise Problem(400, f"{name} is out of range")
    return value


@dataclass(frozen=True)
class Submitted:
    service_request_id: str
    token: str
    service_notice: str


async def submit(
    township: Township,
    key: ApiKey,
    *,
    service_code: str | None,
    village: str | None,
    description: str | None,
    lat: str | None = None,
    long: str | None = None,
    address: str | None = None,
    media_url: str | None = None,
    at: datetime | None = None,
) -> Submitted:
    """`POST requests`: a case of the service's category in the village named, through
    `cases.report` as the bot's Submit makes it (the same routing, card and notices).

    The requester's name, phone, e-mail, device and account, which the standard lets a client
    send, are not kept: the case has no reporter, and the client answers its requester.
    """
    if not service_code:
        raise Problem(400, "service_code is required")
    category = await _category(township, service_code)
    if not village:
        raise Problem(400, "attribute[village] is required: the code of the village where "
                           "the problem is (see the service definition)")
    place = await Village.get_or_none(township_id=township.id, code=village, active=True)
    if place is None:
        raise Problem(400, f"attribute[village] {village!r} is not a village of this "
                           "jurisdiction")
    description = (description or "").strip()
    if not description:
        raise Problem(400, "description is required")
    if len(description) > cases.DESCRIPTION_MAX:
        raise Problem(400, f"description is longer than {cases.DESCRIPTION_MAX} characters")
    latitude, longitude = _coordinate(lat, "lat", 90), _coordinate(long, "long", 180)
    if (latitude is None) != (longitude is None):
        raise Problem(400, "lat and long go together")
    address = (address or "").strip() or None
    if address is not None and len(address) > ADDRESS_MAX:
        raise Problem(400, f"address_string is longer than {ADDRESS_MAX} characters")
    media_url = (media_url or "").strip() or None
    if media_url is not None and (
        len(media_url) > MEDIA_URL_MAX or not media_url.startswith(("https://", "http://"))
    ):
        raise Problem(400, f"media_url is an http(s) URL of at most {MEDIA_URL_MAX} characters")
    value = secrets.token_urlsafe(16)
    try:
        change = await cases.report(
            None, category, description=description, latitude=latitude, longitude=longitude,
            address=address, village=place, report_key=TOKEN_PREFIX + value, api_key=key,
            media_url=media_url, at=at,
        )
    except NoResponsibleUnit:
        raise Problem(400, "the directory has no unit for this service in this village") from None
    except cases.CaseRefused as refused:
        raise Problem(400, f"the request was refused: {refused.reason.value}") from None
    return Submitted(change.case.number, value, notice(township, change.case))

