"""The back office's aiohttp application, and the server that `run`, `web` and the sandbox start.

Sessions live in an encrypted cookie (aiohttp-session with Fernet): the account, the CSRF
token and the chosen language, nothing else. The key is WEB_SECRET, or when that is not set a
key made once and kept in the database (`WebKey`), so that every process on the same database
reads the same cookies and a restart signs nobody out.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiogram import Bot
from aiohttp import web
from aiohttp_session import setup as setup_sessions
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from tortoise.exceptions import IntegrityError

from bot.config import Settings, web_address
from bot.models import WebKey
from web import (
    casemap,
    dashboard,
    directory,
    faq,
    health,
    login,
    notices,
    open311,
    posters,
    setup,
    tasks,
    views,
)
from web.files import FILES, FileStore
from web.webhook import Webhook

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: A session ends this long after sign-in, whatever is done meanwhile.
SESSION_SECONDS = 8 * 3600
COOKIE = "villagebot_session"


async def session_key(settings: Settings) -> bytes:
    """WEB_SECRET, or the key kept in the database (made by the first process that needs it)."""
    if settings.web_secret:
        return base64.urlsafe_b64decode(settings.web_secret.encode())
    made = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    with contextlib.suppress(IntegrityError):  # another process made it first
        await WebKey.get_or_create(id=1, defaults={"secret": made, "created_at": datetime.now(UTC)})
    key = await WebKey.get(id=1)
    return base64.urlsafe_b64decode(key.secret.encode())


def build(
    settings: Settings, key: bytes, bot: Bot | None = None, webhook: Webhook | None = None
) -> web.Application:
    """The application; `bot` fetches the cases' photos and voice messages from Telegram
    (the bot's own in `run`, one made from BOT_TOKEN in `web`; None: only those kept);
    `webhook`, in webhook mode, answers Telegram's POSTs too."""
    app = web.Application(client_max_size=views.MAX_BODY)
    setup_sessions(
        app,
        EncryptedCookieStorage(
            key, cookie_name=COOKIE, max_age=SESSION_SECONDS, httponly=True, samesite="Lax",
            secure=settings.web_url.startswith("https://"),
        ),
    )
    app.middlewares.append(views.guard)  # inside the session middleware: it reads the session
    aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app[views.SETTINGS] = settings
    app[FILES] = FileStore(settings.web_files, bot)
    app.router.add_routes(login.routes)  # before views': /signin/telegram is no link token
    app.router.add_routes(views.routes)
    app.router.add_routes(directory.routes)
    app.router.add_routes(dashboard.routes)
    app.router.add_routes(casemap.routes)
    app.router.add_routes(faq.routes)
    app.router.add_routes(setup.routes)
    app.router.add_routes(notices.routes)
    app.router.add_routes(tasks.routes)
    app.router.add_routes(posters.routes)
    if bot is not None:
        app[posters.BOT] = bot  # the posters' links name the bot
    app.router.add_static("/static", STATIC)
    health.setup(app, settings)  # /healthz, /readyz, /metrics: no session needed
    open311.setup(app)  # /open311/v2/: no session either; a POST carries its api_key
    if webhook is not None:
        webhook.install(app)
    return app


@dataclass
class WebServer:
    """The back office listening on WEB_LISTEN; `port` is the one bound (WEB_LISTEN may say 0)."""

    runner: web.AppRunner
    port: int

    @classmethod
    async def start(
        cls, settings: Settings, bot: Bot | None = None, webhook: Webhook | None = None, *,
        listening: socket.socket | None = None,
    ) -> WebServer:
        """Listen, or raise OSError (the address is taken, say) with nothing left running.
        `listening`: WEB_LISTEN bound already, shared by the workers of `--workers`."""
        host, port = web_address(settings.web_listen)
        runner = web.AppRunner(
            build(settings, await session_key(settings), bot, webhook), access_log=None
        )
        await runner.setup()
        try:
            site: web.BaseSite = (
                web.TCPSite(runner, host, port) if listening is None
                else web.SockSite(runner, listening)
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        bound = runner.addresses[0][1] if runner.addresses else port
        return cls(runner=runner, port=bound)

    async def stop(self) -> None:
        await self.runner.cleanup()
