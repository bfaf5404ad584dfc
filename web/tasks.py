"""Township tasks (中心工作, 派单) in the back office: the tasks one follows with their progress,
one task's targets, and the form that gives a new one.

Thin as the other pages: `bot.tasks` makes the task and its cases (all or nothing, once per
form: the form carries a key, so a second press of the button finds the task the first made)
and counts the progress; `bot.scope` says who may give or follow a task. A task one may not
follow is a 404, whether it exists or not. Photos are given with a task in Telegram only:
the form here has none, and the task's page shows those it has.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from multidict import MultiDictProxy

from bot import scope, tasks
from bot.i18n import N_, catalogs
from bot.models import Official, Task, Township, Unit, UnitKind
from bot.notices import local_time
from bot.tasks import Progress, TaskRefused
from web import words
from web.views import (
    _number,
    _viewer_of,
    kept_file,
    language_of,
    message_page,
    render,
)

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
#: How many tasks the list shows, newest first.
LIST_MAX = 100
NO_TASK = N_("No such task, or not one you may follow.")
NOT_A_CREATOR = N_("Only a dispatcher or a leader can give township tasks.")
NO_DEADLINE = N_("Please give the deadline: a day and a time.")
#: A form's key: as long as the task's column holds, made by `secrets` (never guessed).
KEY_LENGTH = (16, 64)


async def _followed(request: web.Request) -> Task | None:
    """The task of the URL when the viewer may follow it; None for an id guessed or hidden."""
    task = await Task.get_or_none(id=_number(request.match_info["id"]) or 0)
    if task is None:
        return None
    viewer = _viewer_of(request)
    if any(scope.may_follow_task(o, task) for o in viewer.officials):
        return task
    log.warning("back office: account %s may not follow task %s", viewer.person.account.id,
                task.id)
    return None


async def _names(ids: set[int], language: str) -> dict[int, str]:
    return {o.id: o.display_name(language) for o in await Official.filter(id__in=ids or [0])}


async def _zones(tasks_: list[Task]) -> dict[int, str]:
    ids = {t.township_id for t in tasks_} or {0}  # type: ignore[attr-defined]
    return {t.id: t.timezone for t in await Township.filter(id__in=ids)}


# ---- the list ---------------------------------------------------------------------------------


@routes.get("/tasks")
async def task_list(request: web.Request) -> web.StreamResponse:
    viewer = _viewer_of(request)
    language = await language_of(request)
    found: dict[int, Task] = {}
    for official in viewer.officials:
        for task in await tasks.followed_by(official, limit=LIST_MAX):
            found[task.id] = task
    listed = sorted(found.values(), key=lambda t: (t.created_at, t.id), reverse=True)[:LIST_MAX]
    zones = await _zones(listed)
    return await render(request, "tasks.html", {
        "rows": [(task, await tasks.progress(task)) for task in listed],
        "names": await _names({t.creator_id for t in listed}, language),  # type: ignore[attr-defined]
        "zones": zones, "local_time": local_time,
        "may_create": scope.task_giver(viewer.officials) is not None,
    })


# ---- a task -----------------------------------------------------------------------------------


@routes.get(r"/tasks/{id:\d+}")
async def task_view(request: web.Request) -> web.StreamResponse:
    task = await _followed(request)
    if task is None:
        return await message_page(request, NO_TASK, 404)
    language = await language_of(request)
    progress: Progress = await tasks.progress(task)
    people = {task.creator_id} | {  # type: ignore[attr-defined]
        t.case.assignee_id for t in progress.targets if t.case.assignee_id is not None  # type: ignore[attr-defined]
    }
    return await render(request, "task.html", {
        "task": task, "progress": progress, "names": await _names(people, language),
        "timezone": (await _zones([task]))[task.township_id],  # type: ignore[attr-defined]
        "local_time": local_time, "statuses": words.TASK_STATUS_NAMES,
    })


@routes.get(r"/tasks/{id:\d+}/photos/{n}")
async def task_photo(request: web.Request) -> web.StreamResponse:
    """A task's photo, fetched and kept as a case's are (`web.files`)."""
    task = await _followed(request)
    n = _number(request.match_info["n"])
    if task is None or n is None or not 1 <= n <= len(task.photos):
        return await message_page(request, NO_TASK, 404)
    return await kept_file(request, task.photos[n - 1], "image/jpeg", photo=True)


# ---- a new task -------------------------------------------------------------------------------


@dataclass
class Draft:
    """What the form holds: given back as typed when the task is refused."""

    key: str
    title: str = ""
    description: str = ""
    deadline: str = ""  # as the datetime-local field sends it: 2026-12-05T18:00
    targets: frozenset[int] = frozenset()
    committees: bool = False  # every village committee, whatever is ticked

    @classmethod
    def read(cls, form: MultiDictProxy[Any]) -> Draft:
        key = str(form.get("key", ""))
        return cls(
            key=key if KEY_LENGTH[0] <= len(key) <= KEY_LENGTH[1] else secrets.token_urlsafe(24),
            title=str(form.get("title", "")),
            description=str(form.get("description", "")),
            deadline=str(form.get("deadline", ""))[:20],
            targets=frozenset(
                n for n in (_number(str(v)) for v in form.getall("target", [])) if n is not None
            ),
            committees=form.get("committees") == "1",
        )

    def when(self, timezone: str) -> datetime | None:
        """The deadline on the township's clock, or None when the field holds no moment."""
        try:
            moment = datetime.fromisoformat(self.deadline) if "T" in self.deadline else None
        except ValueError:
            return None
        if moment is None or moment.tzinfo is not None or not 2000 <= moment.year <= 2999:
            return None
        return moment.replace(tzinfo=ZoneInfo(timezone))

    def chosen(self, units: list[Unit]) -> list[int]:
        """The units ticked, with every village committee when that box is ticked."""
        return [
            unit.id for unit in units
            if unit.id in self.targets or (self.committees and unit.kind == UnitKind.VILLAGE)
        ]


async def _form(
    request: web.Request, creator: Official, draft: Draft, *, refusal: str | None = None,
    status: int = 200,
) -> web.Response:
    units = await scope.task_targets(creator)
    township = await Township.get(id=creator.township_id)  # type: ignore[attr-defined]
    language = await language_of(request)
    villages: list[tuple[str, list[Unit]]] = [
        (group[0].village.display_name(language), group)
        for _, grouped in itertools.groupby(units, key=lambda u: u.village_id)  # type: ignore[attr-defined]
        if (group := list(grouped))
    ]
    context: Mapping[str, Any] = {
        "draft": draft, "villages": villages, "refusal": refusal,
        "timezone": township.timezone, "title_max": tasks.TITLE_MAX,
        "description_max": tasks.DESCRIPTION_MAX, "committee": UnitKind.VILLAGE,
    }
    return await render(request, "task_form.html", context, status=status)


@routes.get("/tasks/new")
async def new_task(request: web.Request) -> web.StreamResponse:
    creator = scope.task_giver(_viewer_of(request).officials)
    if creator is None:
        return await message_page(request, NOT_A_CREATOR, 403)
    return await _form(request, creator, Draft(key=secrets.token_urlsafe(24)))


@routes.post("/tasks/new")
async def give_task(request: web.Request) -> web.StreamResponse:
    """The task and its cases, once per form; refused, the form again as it was typed."""
    viewer = _viewer_of(request)
    creator = scope.task_giver(viewer.officials)
    if creator is None:
        return await message_page(request, NOT_A_CREATOR, 403)
    draft = Draft.read(await request.post())
    township = await Township.get(id=creator.township_id)  # type: ignore[attr-defined]
    deadline = draft.when(township.timezone)
    if deadline is None:
        text = catalogs().text(NO_DEADLINE, await language_of(request))
        return await _form(request, creator, draft, refusal=text, status=409)
    units = await scope.task_targets(creator)
    try:
        task = await tasks.create(
            creator, title=draft.title, description=draft.description,
            targets=draft.chosen(units), deadline=deadline, key=draft.key,
        )
    except TaskRefused as refused:
        log.warning("back office: a task by account %s refused: %s", viewer.person.account.id,
                    refused.reason.value)
        text = tasks.refusal_text(refused, await language_of(request))
        return await _form(request, creator, draft, refusal=text, status=409)
    raise web.HTTPSeeOther(f"/tasks/{task.id}")
