"""The Open311 GeoReport v2 API under `/open311/v2/`, in JSON and XML (the extension chooses).

Thin, as the back office's pages are: parse the request, ask `bot.open311`, render. No session,
no CSRF token: `unguarded` answers these paths before the back office's middlewares, and a POST
proves itself with its `api_key` instead. Every error is the standard's list, with the same code
as the HTTP status.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any
from xml.etree import ElementTree

from aiohttp import web
from aiohttp.typedefs import Handler

from bot import apikeys, open311
from bot.models import ApiKey, Township
from bot.open311 import Problem

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
PREFIX = "/open311/v2/"
FORMAT = "{format:json|xml}"


def _xml_value(parent: ElementTree.Element, name: str, value: object) -> None:
    element = ElementTree.SubElement(parent, name)
    if isinstance(value, bool):
        element.text = "true" if value else "false"
    elif isinstance(value, list):
        for item in value:
            _xml_item(element, name[:-1] if name.endswith("s") else "item", item)
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            _xml_value(element, key, inner)
    elif value is not None:
        element.text = str(value)


def _xml_item(parent: ElementTree.Element, name: str, fields: Mapping[str, object]) -> None:
    element = ElementTree.SubElement(parent, name)
    for key, value in fields.items():
        _xml_value(element, key, value)


def _answer(
    request: web.Request, root: str, item: str, rows: Sequence[Mapping[str, Any]],
    *, status: int = 200, single: bool = False,
) -> web.Response:
    """JSON: the list (or, `single`, the one object); XML: `<root><item>…</item>…</root>`."""
    if request.match_info.get("format") == "xml":
        top = ElementTree.Element(root)
        if single:
            for key, value in rows[0].items():
                _xml_value(top, key, value)
        else:
            for row in rows:
                _xml_item(top, item, row)
        body = ElementTree.tostring(top, encoding="UTF-8", xml_declaration=True)
        return web.Response(body=body, status=status, content_type="text/xml", charset="utf-8")
    data: object = rows[0] if single else list(rows)
    return web.Response(
        text=json.dumps(data, ensure_ascii=False), status=status,
        content_type="application/json", charset="utf-8",
    )


def _error(request: web.Request, problem: Problem) -> web.Response:
    return _answer(
        request, "errors", "error",
        [{"code": problem.status, "description": problem.description}], status=problem.status,
    )


@web.middleware
async def unguarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API skips the back office's session and sign-in: a client has no cookie. A
    `Problem` raised anywhere below becomes the standard's error list."""
    if not request.path.startswith(PREFIX):
        return await handler(request)
    missing = request.match_info.http_exception
    if missing is not None:  # no such endpoint, or a method it does not take
        return _error(request, Problem(missing.status, missing.reason))
    try:
        return await request.match_info.handler(request)
    except Problem as problem:
        return _error(request, problem)


def setup(app: web.Application) -> None:
    app.middlewares.insert(0, unguarded)
    app.router.add_routes(routes)


async def _township(request: web.Request, form: Mapping[str, str] | None = None) -> Township:
    given = (form or {}).get("jurisdiction_id") or request.query.get("jurisdiction_id")
    return await open311.jurisdiction(given)


async def _reader(township: Township, key: str | None) -> ApiKey | None:
    """A GET may carry a key for its right to anonymous descriptions; a wrong one is refused
    rather than silently read as none."""
    if not key:
        return None
    found = await apikeys.valid_key(township, key)
    if found is None:
        raise Problem(403, "api_key is not a valid key of this jurisdiction")
    return found


@routes.get(PREFIX + "services." + FORMAT)
async def services(request: web.Request) -> web.Response:
    township = await _township(request)
    rows = [
        {"service_code": s.code, "service_name": s.name, "description": s.description,
         "metadata": s.metadata, "type": s.type, "keywords": s.keywords, "group": s.group}
        for s in await open311.services(township)
    ]
    return _answer(request, "services", "service", rows)


@routes.get(PREFIX + "services/{code}." + FORMAT)
async def service_definition(request: web.Request) -> web.Response:
    township = await _township(request)
    code, attributes = await open311.definition(township, request.match_info["code"])
    row = {
        "service_code": code,
        "attributes": [
            {"variable": a.variable, "code": a.code, "datatype": a.datatype,
             "required": a.required, "datatype_description": a.datatype_description,
             "order": a.order, "description": a.description,
             "values": [{"key": key, "name": name} for key, name in a.values]}
            for a in attributes
        ],
    }
    return _answer(request, "service_definition", "", [row], single=True)


def _requests(rows: Sequence[open311.Request]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


@routes.get(PREFIX + "requests." + FORMAT)
async def requests(request: web.Request) -> web.Response:
    township = await _township(request)
    query = request.query
    key = await _reader(township, query.get("api_key"))
    rows = await open311.search(
        township,
        service_request_id=query.get("service_request_id"),
        service_code=query.get("service_code"),
        start_date=query.get("start_date"),
        end_date=query.get("end_date"),
        status=query.get("status"),
        anonymous_text=key is not None and key.anonymous_text,
    )
    return _answer(request, "service_requests", "request", _requests(rows))


@routes.get(PREFIX + "requests/{id}." + FORMAT)
async def one_request(request: web.Request) -> web.Response:
    township = await _township(request)
    key = await _reader(township, request.query.get("api_key"))
    row = await open311.request(
        township, request.match_info["id"],
        anonymous_text=key is not None and key.anonymous_text,
    )
    return _answer(request, "service_requests", "request", _requests([row]))


@routes.get(PREFIX + "tokens/{token}." + FORMAT)
async def token(request: web.Request) -> web.Response:
    township = await _township(request)
    value = request.match_info["token"]
    number = await open311.token(township, value)
    return _answer(request, "service_requests", "request",
                   [{"service_request_id": number, "token": value}])


@routes.post(PREFIX + "requests." + FORMAT)
async def create(request: web.Request) -> web.Response:
    try:
        posted = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise Problem(413, "the request is larger than 1 MB") from None
    form = {key: value for key, value in posted.items() if isinstance(value, str)}
    township = await _township(request, form)
    key = await apikeys.valid_key(township, form.get("api_key"))
    if key is None:
        log.warning("open311: POST requests refused: api_key missing or not valid")
        raise Problem(403, "api_key is missing, or not a valid key of this jurisdiction")
    submitted = await open311.submit(
        township, key,
        service_code=form.get("service_code"),
        village=form.get(f"attribute[{open311.VILLAGE}]"),
        description=form.get("description"),
        lat=form.get("lat"), long=form.get("long"),
        address=form.get("address_string"),
        media_url=form.get("media_url"),
    )
    log.info("open311: key %s reported %s", key.id, submitted.service_request_id)
    return _answer(request, "service_requests", "request", [{
        "service_request_id": submitted.service_request_id, "token": submitted.token,
        "service_notice": submitted.service_notice, "account_id": None,
    }])
