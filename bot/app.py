"""Composition root: the bot, the dispatcher with its storage and middlewares, the routers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods.base import Response, TelegramMethod, TelegramType

from bot import db
from bot.config import Settings
from bot.delivery import Courier, DirectReplies, SharedLimits
from bot.flows import ask, notice, registration, report, task
from bot.flows import casework as casework_flow
from bot.handlers import (
    admin,
    casework,
    common,
    errors,
    fallback,
    groups,
    lists,
    setup,
    start,
    villager,
    web,
)
from bot.i18n import catalogs
from bot.menus import set_default_menus
from bot.metrics import CountCalls, Observe
from bot.middlewares import OnceOnly, PersonMiddleware
from bot.startup import (
    CannotStart,
    import_directory_file,
    reach_telegram,
    refuse_if_webhook_set,
    set_webhook,
    warn_of_gaps,
)
from bot.storage import make_storage
from scheduler.policy import Policy
from scheduler.service import Clock, Supervisor, wall_clock
from web import health
from web.server import WebServer
from web.webhook import AnswerInResponse, Webhook

log = logging.getLogger(__name__)


def build_bot(settings: Settings) -> Bot:
    if not settings.bot_token:
        raise ValueError("BOT_TOKEN is required to talk to Telegram")
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(
        token=settings.bot_token,
        session=session,
        default=DefaultBotProperties(parse_mode=None, link_preview_is_disabled=True),
    )


class KeepResponseModels(BaseRequestMiddleware):
    """Holds on to the `Response[...]` model of each kind of request the bot has made.

    aiogram builds `Response[Message]` and the like for every answer from Telegram; pydantic
    caches such generic models only weakly, so once the garbage collector has taken one it is
    built again, at several milliseconds each. Held here, each is built once per process.
    """

    def __init__(self) -> None:
        self.models: dict[Any, type[Response[Any]]] = {}

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        returning = method.__returning__
        if returning not in self.models:
            self.models[returning] = Response[returning]  # type: ignore[valid-type]
        return await make_request(bot, method)


def build_dispatcher(settings: Settings, clock: Clock = wall_clock) -> Dispatcher:
    """One dispatcher with every router, in the order a message should be tried; `clock` is
    the handlers' now where a deadline is read (a test moves it on, as the scheduler's)."""
    bot_id = int(settings.bot_token.split(":", 1)[0]) if settings.bot_token else 0
    # In webhook mode other processes may receive this person's next update.
    storage, isolation, handled = make_storage(
        settings.redis_url, bot_id, alone=not settings.webhook_url
    )
    dispatcher = Dispatcher(storage=storage, events_isolation=isolation)
    dispatcher["settings"] = settings
    dispatcher["invite_ttl_days"] = settings.invite_ttl_days
    dispatcher["clock"] = clock
    dispatcher["handled"] = handled
    # Counted, timed and named in the log from here on (the duplicate check included).
    dispatcher.update.outer_middleware(Observe())
    # Inside aiogram's per-person lock (its FSM middleware comes first): a redelivered update
    # waits for its first delivery and is then dropped.
    dispatcher.update.outer_middleware(OnceOnly(handled))
    dispatcher.update.outer_middleware(PersonMiddleware(settings.default_language))
    dispatcher.include_routers(
        errors.routes.router(),
        groups.routes.router(),  # groups and channels: which unit a group serves, the digest
        groups.forwards.router(),  # an administrator's forwarded channel post, before the flows
        report.drafts.router(),  # /start with a draft waiting: before start clears it
        start.routes.router(),
        common.routes.router(),
        villager.routes.router(),
        lists.routes.router(),
        notice.routes.router(),
        task.routes.router(),
        admin.routes.router(),
        setup.routes.router(),
        web.routes.router(),
        casework.routes.router(),  # case cards' buttons, in groups too
        casework_flow.routes.router(),
        ask.routes.router(),
        report.routes.router(),
        registration.routes.router(),
        fallback.routes.router(),
    )
    return dispatcher


async def start_web(
    settings: Settings, bot: Bot | None = None, webhook: Webhook | None = None, *,
    listening: socket.socket | None = None,
) -> WebServer:
    """The back office on WEB_LISTEN, or `CannotStart` saying why it cannot listen there;
    `bot` fetches the cases' files from Telegram for it; `webhook` answers Telegram's POSTs.
    `listening`: WEB_LISTEN bound already, by the parent of `--workers`."""
    try:
        server = await WebServer.start(settings, bot, webhook, listening=listening)
    except OSError as error:
        raise CannotStart(
            f"setting WEB_LISTEN: cannot serve the back office on {settings.web_listen}: "
            f"{error.strerror or error}"
        ) from None
    log.info("back office on http://%s (WEB_URL %s)", settings.web_listen, settings.web_url)
    return server


@dataclass
class Villagebot:
    """A running bot: what `run` and the tests start and stop together."""

    settings: Settings
    bot: Bot
    dispatcher: Dispatcher
    courier: Courier
    #: None when SCHEDULER=false (another process supervises, or a test drives time itself).
    supervisor: Supervisor | None = None
    #: The back office; None when WEB_LISTEN is empty.
    web: WebServer | None = None
    #: Set by `stop`: what `receive` waits for in webhook mode.
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def start(
        cls, settings: Settings, *, bot: Bot | None = None, clock: Clock = wall_clock,
        listening: socket.socket | None = None,
    ) -> Villagebot:
        """Start it all, or, failing or cancelled at any step, undo the steps done and raise:
        a half-started bot would keep the process alive (an open SQLite connection alone does).
        Raises `CannotStart` for what the operator has to fix; waits while Telegram is out of
        reach. `listening`: WEB_LISTEN bound already (a worker of `--workers`)."""
        catalogs()  # fail now, not on the first message, if a catalog is broken
        async with contextlib.AsyncExitStack() as undo:
            await db.start(settings.database_url)
            undo.push_async_callback(db.stop)
            if settings.directory_file is not None:
                report = await import_directory_file(settings)
                log.info("directory %s: %s", settings.directory_file, report)
            bot = bot or build_bot(settings)
            undo.push_async_callback(bot.session.close)
            await reach_telegram(bot, settings.telegram_api_url)
            if not settings.webhook_url:
                await refuse_if_webhook_set(bot)
            dispatcher = build_dispatcher(settings, clock)
            undo.push_async_callback(dispatcher.storage.close)
            undo.push_async_callback(dispatcher["handled"].close)
            undo.push_async_callback(dispatcher.fsm.events_isolation.close)
            await set_default_menus(bot, settings.default_language)
            await warn_of_gaps(setup.telegram_checker(bot))
            shared = None
            if settings.redis_url:  # other processes may send as this bot: keep limits together
                shared = SharedLimits(settings.redis_url, bot.id, settings.messages_per_second)
                undo.push_async_callback(shared.close)
            courier = Courier(
                bot, per_second=settings.messages_per_second, owner=settings.instance,
                shared=shared,
            )
            if settings.webhook_url:  # outermost: a folded call is no request at all
                bot.session.middleware(AnswerInResponse())
            # Replies paced with the courier, retried, never stopped by a cosmetic call.
            bot.session.middleware(DirectReplies(courier))
            bot.session.middleware(KeepResponseModels())
            bot.session.middleware(CountCalls())  # innermost: each try is a call
            await courier.start()
            undo.push_async_callback(courier.stop)
            supervisor = None
            if settings.scheduler:
                supervisor = Supervisor(
                    Policy.from_settings(settings), every_seconds=settings.sweep_seconds,
                    clock=clock,
                )
                await supervisor.start()
                undo.push_async_callback(supervisor.stop)
            webhook = None
            if settings.webhook_url:
                assert settings.webhook_secret is not None  # Settings require it
                webhook = Webhook(
                    settings.webhook_path, settings.webhook_secret, bot, dispatcher
                )
            web = (
                await start_web(settings, bot, webhook, listening=listening)
                if settings.web_listen else None
            )
            if web is not None:
                web.runner.app[health.WATCHED].supervisor = supervisor  # for /readyz
                undo.push_async_callback(web.stop)
            if webhook is not None:  # listening already: the first POST finds an answer
                await set_webhook(bot, settings, dispatcher.resolve_used_update_types())
            undo.pop_all()  # started: from now on `stop` undoes it
        # What start-up made lives as long as the process: aiogram alone is some 200,000
        # objects (the whole Bot API as pydantic models). Frozen, the collector stops walking
        # them on every full collection, about 0.2 s each on a busy bot. (No collection first:
        # it would cost that much at every start, and the little garbage frozen with them is
        # collected after `stop`.)
        gc.freeze()
        return cls(
            settings=settings, bot=bot, dispatcher=dispatcher, courier=courier,
            supervisor=supervisor, web=web,
        )

    async def receive(self) -> None:
        """Receive updates until stopped: by webhook with WEBHOOK_URL, else by polling."""
        if self.settings.webhook_url:
            log.info("receiving updates by webhook: POST %s on %s",
                     self.settings.webhook_path, self.settings.web_listen)
            await self.stopped.wait()
        else:
            await self.poll()

    async def poll(self) -> None:
        """Receive updates by long polling until stopped."""
        await self.dispatcher.start_polling(
            self.bot, handle_signals=False, close_bot_session=False
        )

    async def stop(self) -> None:
        self.stopped.set()
        if self.web is not None:
            await self.web.stop()
        with contextlib.suppress(RuntimeError):  # raised when polling never started
            await self.dispatcher.stop_polling()
        if self.supervisor is not None:
            await self.supervisor.stop()
        await self.courier.stop()  # sends in flight finish before the session closes
        await self.dispatcher.storage.close()
        await self.dispatcher["handled"].close()
        await self.dispatcher.fsm.events_isolation.close()
        await self.bot.session.close()
        await db.stop()
        gc.unfreeze()  # a process that starts another bot (the tests) collects this one's
