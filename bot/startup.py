"""What the bot needs before it can start, and why it cannot, in words for whoever runs it.

A start that fails says why on one line (an invalid directory file: one line per problem, as
`villagebot directory import` does) and leaves nothing running. Telegram out of reach is
different: it may come back, so the start waits for it, saying so on one line per attempt.
"""

from __future__ import annotations

import asyncio
import logging

from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import User

from bot.config import Settings
from bot.directory import DirectoryError, ImportReport, import_file
from bot.setup import ChatChecker, log_missing

log = logging.getLogger(__name__)

#: The pause after the first failed attempt to reach Telegram, doubled after each until LONGEST.
FIRST_WAIT = 1.0
LONGEST_WAIT = 60.0
#: How long one attempt waits for an answer: a server that swallows packets is not waited
#: on for the session's full minute.
ANSWER_WITHIN = 10


class CannotStart(Exception):
    """Why the bot cannot start; waiting will not help, the operator has to change something."""


async def import_directory_file(settings: Settings) -> ImportReport:
    """Import DIRECTORY_FILE; an invalid file stops the start with the file's problems."""
    assert settings.directory_file is not None
    try:
        return await import_file(
            settings.directory_file,
            default_language=settings.default_language,
            default_timezone=settings.timezone,
        )
    except DirectoryError as error:
        raise CannotStart(
            f"setting DIRECTORY_FILE: {settings.directory_file} is not valid; "
            f"nothing was changed:\n{error}"
        ) from None


async def reach_telegram(bot: Bot, api_url: str) -> User:
    """Ask Telegram who the bot is, until it answers.

    A server out of reach, overloaded or failing may recover: wait 1 s, 2 s, ... up to a
    minute between attempts. A refused token, or an answer no Bot API server gives (a web
    page, JSON of another kind), will not: `CannotStart`.
    """
    wait = FIRST_WAIT
    while True:
        pause = wait
        try:
            return await bot.get_me(request_timeout=ANSWER_WITHIN)
        except TelegramUnauthorizedError:
            raise CannotStart(
                f"setting BOT_TOKEN: {api_url} refused it (401 Unauthorized); "
                "copy the token again from @BotFather"
            ) from None
        except TelegramRetryAfter as error:
            why = f"asked to wait {error.retry_after} s"
            pause = max(wait, float(error.retry_after))
        except TelegramNetworkError as error:
            why = error.message.removeprefix("HTTP Client says - ")
        except TelegramServerError as error:
            why = f"server error: {error.message}"
        except ClientDecodeError:
            # Something answers there, but not as a Bot API server does (a web site, a wrong
            # path): waiting will not change that. (A proxy's error page while the Bot API
            # server behind it restarts looks the same; the service manager starts us again.)
            raise CannotStart(
                f"setting TELEGRAM_API_URL: {api_url} answered, but not as a Bot API server "
                "does; is it the right address?"
            ) from None
        except TelegramAPIError as error:
            raise CannotStart(
                f"setting TELEGRAM_API_URL: {api_url} answered {error.message!r} when asked "
                "for the bot; is it a Bot API server, and BOT_TOKEN this bot's token?"
            ) from None
        log.warning("cannot reach Telegram at %s: %s; trying again in %g s", api_url, why, pause)
        await asyncio.sleep(pause)
        wait = min(wait * 2, LONGEST_WAIT)


def _refused(what: str, error: TelegramAPIError) -> CannotStart:
    return CannotStart(f"{what}: Telegram answered {error.message!r}")


async def refuse_if_webhook_set(bot: Bot) -> None:
    """Polling with a webhook set gets 409 Conflict on every getUpdates: say so and stop."""
    try:
        info = await bot.get_webhook_info(request_timeout=ANSWER_WITHIN)
    except TelegramAPIError as error:
        raise _refused("cannot ask for the webhook", error) from None
    if info.url:
        raise CannotStart(
            f"a webhook is set ({info.url}), so Telegram will not answer polling: set "
            "WEBHOOK_URL and WEBHOOK_SECRET to run in webhook mode, or remove it with "
            "`villagebot webhook delete` to poll"
        )


async def set_webhook(
    bot: Bot, settings: Settings, allowed_updates: list[str], *, always: bool = False
) -> bool:
    """Point Telegram at WEBHOOK_URL unless it already is (unless `always`); True if it was
    set. Several processes starting together each find it set or set the same: no harm done."""
    try:
        if not always:
            info = await bot.get_webhook_info(request_timeout=ANSWER_WITHIN)
            if info.url == settings.webhook_url:
                return False
        await bot.set_webhook(
            url=settings.webhook_url,
            secret_token=settings.webhook_secret,
            allowed_updates=allowed_updates,
            request_timeout=ANSWER_WITHIN,
        )
    except TelegramAPIError as error:
        raise _refused(f"setting WEBHOOK_URL: cannot set the webhook {settings.webhook_url}",
                       error) from None
    log.info("webhook set: Telegram sends updates to %s", settings.webhook_url)
    return True


async def warn_of_gaps(checker: ChatChecker) -> None:
    """What each township still lacks (`bot.setup`, as /setup lists it), one WARNING a gap:
    said at start, never a reason not to start."""
    try:
        count = await log_missing(checker)
    except Exception:
        log.exception("setup: the check of what the townships lack failed")
        return
    if count:
        log.info("setup: %d thing(s) missing; an administrator sees them with /setup", count)
