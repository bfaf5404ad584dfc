"""`/healthz`, `/readyz` and `/metrics`, on the back office's server (WEB_LISTEN).

- `/healthz`: the process answers; nothing else is asked, so a slow database never gets a live
  process restarted.
- `/readyz`: the database answers a trivial query, Redis (when REDIS_URL is set) a PING, no
  outbox row has waited past READY_OUTBOX_SECONDS, and this process's scheduler (when it runs
  one) has ticked within a few sweeps. 200 with each check, or 503 naming each failing part.
- `/metrics`: Prometheus' text format (bot/metrics.py), only when METRICS_TOKEN is set and
  sent as `Authorization: Bearer <token>`; otherwise 404, as if there were no such page.

None of them needs a session: `unguarded` answers them before the back office's sign-in check.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from tortoise import connections

from bot import metrics
from bot.config import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from scheduler.service import Supervisor

log = logging.getLogger(__name__)

PATHS = ("/healthz", "/readyz", "/metrics")
#: Longest any one readiness check may take: a hung database is a failing one.
CHECK_SECONDS = 3.0
#: Sweeps the scheduler may miss before it counts as stuck.
MISSED_SWEEPS = 3


@dataclass
class Watched:
    """What this process's readiness depends on beyond the settings: its scheduler, if any
    (set by `bot.app.Villagebot` once started), and a Redis client made on first use."""

    settings: Settings
    supervisor: Supervisor | None = None
    redis: Redis | None = field(default=None, repr=False)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None


WATCHED = web.AppKey("health", Watched)


def setup(app: web.Application, settings: Settings) -> Watched:
    """Add the three pages to the back office's application; returns what `/readyz` watches."""
    watched = Watched(settings)
    app[WATCHED] = watched
    app.middlewares.insert(0, unguarded)

    async def close(_app: web.Application) -> None:
        await watched.close()

    app.on_cleanup.append(close)
    app.router.add_routes(routes)
    return watched


@web.middleware
async def unguarded(request: web.Request, handler: Any) -> web.StreamResponse:
    """These pages skip the session and sign-in middlewares: a probe has no cookie, and
    `/healthz` must not touch the database the session check may read."""
    if request.path in PATHS and request.match_info.http_exception is None:
        return await request.match_info.handler(request)
    return await handler(request)


routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _database() -> str:
    await connections.get("default").execute_query("SELECT 1")
    return "ok"


async def _redis(watched: Watched) -> str:
    if watched.redis is None:
        from redis.asyncio import Redis

        watched.redis = Redis.from_url(
            watched.settings.redis_url or "", socket_connect_timeout=CHECK_SECONDS,
            socket_timeout=CHECK_SECONDS,
        )
    await watched.redis.ping()
    return "ok"


async def _outbox(watched: Watched) -> str:
    rows, oldest = await metrics.outbox_waiting()
    limit = watched.settings.ready_outbox_seconds
    if oldest > limit:
        raise Failing(f"{rows} due, the oldest for {oldest:.0f}s (limit {limit}s)")
    return f"{rows} due" + (f", the oldest for {oldest:.0f}s" if rows else "")


async def _scheduler(supervisor: Supervisor) -> str:
    stalled = supervisor.stalled(MISSED_SWEEPS)
    if stalled is not None:
        raise Failing(
            f"no tick for {stalled:.0f}s (one every {supervisor.every_seconds}s)"
        )
    return "ok"


class Failing(Exception):
    """A check that answered, with why the part is not ready."""


async def _check(name: str, work: Any) -> tuple[str, bool, str]:
    try:
        return name, True, await asyncio.wait_for(work, CHECK_SECONDS)
    except Failing as failing:
        return name, False, str(failing)
    except TimeoutError:
        return name, False, f"no answer within {CHECK_SECONDS:g}s"
    except Exception as error:
        return name, False, f"{type(error).__name__}: {error}"[:200]


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    watched = request.app[WATCHED]
    checks = [_check("database", _database())]
    if watched.settings.redis_url:
        checks.append(_check("redis", _redis(watched)))
    checks.append(_check("outbox", _outbox(watched)))
    if watched.supervisor is not None:
        checks.append(_check("scheduler", _scheduler(watched.supervisor)))
    results = await asyncio.gather(*checks)
    failing = [name for name, ready, _ in results if not ready]
    body = {
        "ready": not failing,
        "failing": failing,
        "checks": {name: {"ok": ready, "detail": detail} for name, ready, detail in results},
    }
    if failing:
        log.warning("not ready: %s", "; ".join(
            f"{name}: {detail}" for name, ready, detail in results if not ready
        ))
    return web.json_response(body, status=503 if failing else 200)


def _authorized(request: web.Request, token: str | None) -> bool:
    if not token:
        return False
    sent = request.headers.get("Authorization", "")
    scheme, _, credentials = sent.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credentials.strip().encode(), token.encode()
    )


@routes.get("/metrics")
async def metrics_page(request: web.Request) -> web.Response:
    if not _authorized(request, request.app[WATCHED].settings.metrics_token):
        raise web.HTTPNotFound()
    await metrics.refresh()
    return web.Response(
        body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
