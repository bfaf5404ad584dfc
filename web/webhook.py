"""Telegram's webhook: the POSTs that carry updates, answered on the back office's server.

A POST is handled before it is answered: the 200 tells Telegram the update is done with, so
one that a crash or a failure left unfinished is not answered 200 and Telegram sends it
again (after a 500, or after no answer at all). `OnceOnly` makes such a second arrival of
an update that was in fact handled do nothing.

The 200 may carry one Bot API call, which Telegram then makes itself: a round trip saved.
`AnswerInResponse` folds into it a call whose failure would change nothing a person needs,
as Telegram tells nobody whether such a call worked: a tap's answer when it has no words, or
else an update's first taking away of used buttons or "typing".
"""

from __future__ import annotations

import hmac
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.methods import AnswerCallbackQuery, EditMessageReplyMarkup, SendChatAction
from aiogram.methods.base import Response, TelegramMethod, TelegramType
from aiogram.types import Update
from aiogram.types.update import UpdateTypeLookupError
from aiohttp import web
from pydantic import ValidationError

from bot import storage
from web.views import MACHINE_PATHS

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Telegram's updates are a few kilobytes; a larger body is no update of theirs.
MAX_UPDATE_BYTES = 1024 * 1024


@dataclass
class _Fold:
    """The one call an update's POST may answer with."""

    #: The update is a tap: its answer is the call to fold (every tap has one).
    tap: bool
    method: TelegramMethod[Any] | None = None

    def takes(self, method: TelegramMethod[Any]) -> bool:
        if self.method is not None:
            return False
        if isinstance(method, AnswerCallbackQuery):
            return method.text is None and method.url is None
        if self.tap:
            return False
        if isinstance(method, EditMessageReplyMarkup):
            return method.reply_markup is None and method.inline_message_id is None
        return isinstance(method, SendChatAction)


_fold: ContextVar[_Fold | None] = ContextVar("fold", default=None)


class AnswerInResponse(BaseRequestMiddleware):
    """Register it first on the session (outermost) in webhook mode: the update's foldable
    call waits for the POST's answer instead of making a request of its own."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        fold = _fold.get()
        if fold is not None and fold.takes(method):
            fold.method = method
            return True  # type: ignore[return-value]  # what Telegram answers these calls
        return await make_request(bot, method)


def _as_answer(method: TelegramMethod[Any]) -> web.Response:
    body = method.model_dump(mode="json", exclude_none=True, warnings=False)
    return web.json_response({"method": method.__api_method__, **body})


@dataclass
class Webhook:
    """The route WEBHOOK_URL's path names, feeding what arrives there to the dispatcher."""

    path: str
    secret: str
    bot: Bot
    dispatcher: Dispatcher

    def install(self, app: web.Application) -> None:
        app.router.add_post(self.path, self.receive)
        app[MACHINE_PATHS] = app.get(MACHINE_PATHS, frozenset()) | {self.path}

    async def receive(self, request: web.Request) -> web.Response:
        sent = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(sent.encode(), self.secret.encode()):
            log.warning("webhook: a POST from %s refused: secret token %s", request.remote,
                        "wrong" if sent else "missing")
            return web.Response(status=403)
        if (request.content_length or 0) > MAX_UPDATE_BYTES:
            return self._too_large(request)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large(request)
        if len(body) > MAX_UPDATE_BYTES:
            return self._too_large(request)
        try:
            update = Update.model_validate_json(body, context={"bot": self.bot})
            update.event_type  # noqa: B018  (raises for an update with no event)
        except (ValidationError, UpdateTypeLookupError) as error:
            log.warning("webhook: a POST refused: not an update (%s)",
                        str(error).splitlines()[0])
            return web.Response(status=400)
        fold = _Fold(tap=update.callback_query is not None)
        token = _fold.set(fold)
        try:
            with storage.one_update():
                await self.dispatcher.feed_update(self.bot, update)
        except Exception:
            # Past the error handler (the storage out of reach, say): not done, so not
            # acknowledged; Telegram sends it again.
            log.exception("webhook: update %s failed; Telegram will send it again",
                          update.update_id)
            return web.Response(status=500)
        finally:
            _fold.reset(token)
        if fold.method is not None:
            return _as_answer(fold.method)
        return web.Response(status=200)

    @staticmethod
    def _too_large(request: web.Request) -> web.Response:
        log.warning("webhook: a POST from %s refused: larger than %d bytes", request.remote,
                    MAX_UPDATE_BYTES)
        return web.Response(status=413)
