"""Signing in with Telegram's Login Widget, beside the /web link (`web.signin` checks both).

No script of Telegram's runs in our pages: the button is a plain link to Telegram's sign-in
page (oauth.telegram.org, the page the widget itself opens), which returns the signed payload
to `/signin/telegram` in the address's fragment; a few lines of our own script pass it on as
the query string, the form Telegram's widget sends with `data-auth-url`. Offered only when
WEB_LOGIN_WIDGET says the township has set the bot's domain with @BotFather, and a BOT_TOKEN
is there to check the payload with.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from bot.config import Settings
from bot.i18n import N_
from web import signin, words
from web.views import SETTINGS, message_page, render, start_session

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
CALLBACK = "/signin/telegram"


def _widget_token(settings: Settings) -> str | None:
    """The bot token the payloads are checked with, when the widget is offered at all."""
    return settings.bot_token if settings.web_login_widget and settings.bot_token else None


def telegram_link(settings: Settings) -> str:
    """Telegram's sign-in page for our bot, returning to the callback on WEB_URL."""
    assert settings.bot_token is not None
    address = urlsplit(settings.web_url)
    return "https://oauth.telegram.org/auth?" + urlencode({
        "bot_id": settings.bot_token.split(":", 1)[0],
        "origin": f"{address.scheme}://{address.netloc}",
        "return_to": settings.web_url + CALLBACK,
    })


@routes.get("/signin")
async def signin_page(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    link = telegram_link(settings) if _widget_token(settings) else None
    return await render(request, "signin.html", {"telegram_link": link})


@routes.get(CALLBACK)
async def telegram_callback(request: web.Request) -> web.StreamResponse:
    token = _widget_token(request.app[SETTINGS])
    if token is None:
        return await message_page(request, N_("Signing in with Telegram is not offered here."),
                                  404)
    if not request.query:  # back from Telegram: the payload is in the fragment, for the script
        return await render(request, "signin_telegram.html", {})
    fields = {key: value for key, value in request.query.items()}
    try:
        account_id = await signin.check_widget(fields, token)
    except signin.SignInRefused as refused:
        log.warning("back office: a Telegram sign-in refused: %s", refused.reason.value)
        return await message_page(request, words.SIGN_IN_REFUSALS[refused.reason], 403)
    return await start_session(request, account_id)
