"""The directory page, for administrators: the township as its directory file says, that file
to download, and an upload that imports a new one.

The page shows `bot.directory.export_directory`, the download is the same file as
`villagebot directory export`, and the upload goes through `bot.directory.import_text`, the
checks and the transaction of `villagebot directory import`: an invalid file is answered with
every problem, each placed, in the reader's language, and changes nothing. Officials' names and
phones are shown: administrators maintain them, and the file they download carries them anyway.
Anyone else is told there is no such page, as for an address guessed.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField

from bot.directory import (
    NOT_VALID,
    DirectoryError,
    ImportReport,
    Problem,
    dump_yaml,
    export_directory,
    import_text,
)
from bot.i18n import N_
from bot.models import Official, Township, Village
from web import words
from web.views import (
    SETTINGS,
    VIEWER,
    administered_township,
    message_page,
    reader_language,
    render,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
NO_FILE = N_("Choose a directory file (YAML) to upload.")


async def _township(request: web.Request) -> Township | None:
    return await administered_township(request, "the directory")


async def _not_found(request: web.Request) -> web.Response:
    return await message_page(request, N_("No such page."), 404)


def _named(entry: dict[str, Any], language: str) -> str:
    names: dict[str, str] = entry.get("names", {})
    return names.get(language) or str(entry["name"])


async def _page(
    request: web.Request, township: Township, *, problems: list[Problem] | None = None,
    report: ImportReport | None = None, upload: str = "", no_file: bool = False,
    status: int = 200,
) -> web.Response:
    language = await reader_language(request)
    directory = await export_directory(township.code)
    return await render(request, "directory.html", {
        "directory": directory,
        "township": township.display_name(language),
        "village_names": {v["code"]: _named(v, language) for v in directory["villages"]},
        "unit_names": {u["code"]: _named(u, language) for u in directory["units"]},
        "named": lambda entry: _named(entry, language),
        # The file names a person's telegram_id at their first post only: ask the rows.
        "bound": set(await Official.filter(
            township_id=township.id, active=True, account_id__isnull=False
        ).values_list("code", flat=True)),
        "kinds": words.UNIT_KINDS, "roles": words.ROLES, "levels": words.LEVELS,
        "problems": problems, "report": report, "upload": upload, "not_valid": NOT_VALID,
        "no_file": NO_FILE if no_file else None,
        # Each village's poster to download (web/posters.py), by the village's id.
        "poster_ids": dict(await Village.filter(
            township_id=township.id, active=True
        ).values_list("code", "id")),
    }, status=status)


@routes.get("/directory")
async def directory_page(request: web.Request) -> web.StreamResponse:
    township = await _township(request)
    if township is None:
        return await _not_found(request)
    return await _page(request, township)


@routes.get("/directory.yaml")
async def download(request: web.Request) -> web.StreamResponse:
    township = await _township(request)
    if township is None:
        return await _not_found(request)
    text = dump_yaml(await export_directory(township.code))
    return web.Response(
        text=text, content_type="application/yaml", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="directory-{township.code}.yaml"'},
    )


@routes.post("/directory")
async def upload(request: web.Request) -> web.StreamResponse:
    township = await _township(request)
    if township is None:
        return await _not_found(request)
    sent = (await request.post()).get("file")
    if not isinstance(sent, FileField) or not sent.filename:
        return await _page(request, township, no_file=True, status=400)
    name = sent.filename[:100]
    settings = request.app[SETTINGS]
    try:
        report = await import_text(
            sent.file.read(), default_language=settings.default_language,
            default_timezone=settings.timezone, township=township.code,
        )
    except DirectoryError as error:
        log.warning("back office: account %s uploaded a directory with %d problems",
                    request[VIEWER].person.account.id, len(error.placed))  # type: ignore[attr-defined]
        return await _page(request, township, problems=error.placed, upload=name, status=422)
    log.info("back office: account %s imported a directory: %s",
             request[VIEWER].person.account.id, report)  # type: ignore[attr-defined]
    return await _page(request, township, report=report, upload=name)
