"""When a handler fails: the person still gets an answer, and the failure is on record.

aiogram calls this for any exception a handler (or a middleware inside the dispatcher) raised.
The domain's transitions run in their own transactions, so whatever the failing step had
begun to change is rolled back; what is left to do is tell the person, in their language, and
log the update id so the failure can be traced.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramForbiddenError
from aiogram.types import ErrorEvent

from bot.config import Settings
from bot.i18n import N_, catalogs
from bot.languages import ZH_HANS, normalize_language
from bot.people import Person
from bot.routers import Routes

log = logging.getLogger(__name__)

routes = Routes("errors")

APOLOGY = N_("Sorry, something went wrong on our side and this step was not done. "
             "Please try again in a moment.")


def _language(event: ErrorEvent, data: dict[str, Any]) -> str:
    person: Person | None = data.get("person")
    if person is not None:
        return person.language
    settings: Settings | None = data.get("settings")
    fallback = settings.default_language if settings is not None else None
    user = data.get("event_from_user")
    return normalize_language(user.language_code if user else None, fallback) or ZH_HANS


@routes.errors()
async def apologise(event: ErrorEvent, bot: Bot, **data: Any) -> bool:
    update = event.update
    if isinstance(event.exception, TelegramForbiddenError):
        # The person blocked the bot: nothing of ours failed, and no message can reach them.
        log.info("update %s: the reply was refused: %s", update.update_id, event.exception)
        if update.callback_query is not None:
            with contextlib.suppress(Exception):
                await update.callback_query.answer()
        return True
    log.error(
        "update %s failed: %s", update.update_id, event.exception, exc_info=event.exception
    )
    text = catalogs().text(APOLOGY, _language(event, data))
    # Best effort: the failure may be Telegram itself. A tap gets a short answer (unless the
    # handler answered it already) and, like a message, the apology in the private chat.
    chat_id: int | None = None
    if update.callback_query is not None:
        query = update.callback_query
        with contextlib.suppress(Exception):
            await query.answer(text)
        chat_id = query.from_user.id
    elif update.message is not None and update.message.chat.type == "private":
        chat_id = update.message.chat.id
    if chat_id is not None:
        with contextlib.suppress(Exception):
            await bot.send_message(chat_id, text)
    return True
