"""villagebot wired to the Bot API emulator on loopback: for the demo, tests and benchmarks.

The bot inside is the real one (dispatcher, aiohttp session, database); only Telegram is
played by the emulator, so what works here works against Telegram.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType

from bot.app import Villagebot
from bot.config import Settings, load_settings
from bot.emulator import BotAPIEmulator, buttons
from scheduler.service import Clock, wall_clock

EXAMPLE_DIRECTORY = Path(__file__).resolve().parent.parent / "examples" / "directory.yaml"


class Phone:
    """One person's Telegram app: send, tap, press, and wait for what the bot says next.

    Scenarios read like the conversation: `await li.send("/start")`, `await li.tap("正达村")`,
    `await li.expect("您住在哪个村")`. `expect` only looks at what arrived after the last
    message it returned, so an old message can never satisfy a new expectation.
    """

    def __init__(
        self,
        emulator: BotAPIEmulator,
        user_id: int,
        first_name: str,
        *,
        language: str | None,
        echo: Callable[[str, str], None] | None = None,
        deliver: Callable[[dict], Awaitable[object]] | None = None,
    ) -> None:
        """`deliver`: what the person sends is not queued in the emulator but handed to it,
        an update, for the caller to deliver itself (to several processes, twice...)."""
        self.emulator = emulator
        self.user = emulator.user(user_id, first_name, language_code=language)
        self.chat_id = user_id
        self.name = first_name
        self.seen = 0
        self._echo = echo
        self._deliver = deliver

    def _said(self, text: str) -> None:
        if self._echo is not None:
            self._echo(self.name, text)

    async def _handed(self, update: dict) -> dict:
        assert self._deliver is not None
        await self._deliver(update)
        return update

    async def send(self, text: str) -> dict:
        self._said(text)
        if self._deliver is not None:
            return (await self._handed(await self.user.text_update(text)))["message"]
        return await self.user.send_text(text)

    async def press(self, label: str) -> dict:
        await self.emulator.wait_keyboard(self.chat_id, label)
        self._said(f"[{label}]")
        if self._deliver is not None:
            return (await self._handed(await self.user.press_update(label)))["message"]
        return await self.user.press(label)

    async def share_contact(self, phone_number: str, *, own: bool = True) -> dict:
        self._said(f"[contact {phone_number}]")
        if self._deliver is not None and own:
            return (await self._handed(await self.user.contact_update(phone_number)))["message"]
        return await self.user.send_contact(phone_number, own=own)

    async def send_photo(self) -> dict:
        self._said("[photo]")
        if self._deliver is not None:
            return (await self._handed(await self.user.photo_update()))["message"]
        return await self.user.send_photo()

    async def send_location(self, latitude: float, longitude: float) -> dict:
        self._said(f"[location {latitude}, {longitude}]")
        if self._deliver is not None:
            update = await self.user.location_update(latitude, longitude)
            return (await self._handed(update))["message"]
        return await self.user.send_location(latitude, longitude)

    async def tap(self, button: str, *, timeout: float = 5.0, on: dict | None = None) -> str:
        """Tap the button on the newest bot message that has it, waiting for it to arrive
        (or on the message `on`); the query's id."""
        message = on or await self.emulator.wait_for(
            self.chat_id, lambda m: button in buttons(m), timeout=timeout, newest=True
        )
        self._said(f"[{button}]")
        self.seen = max(self.seen, message["message_id"])
        if self._deliver is not None:
            update = await self._handed(await self.user.tap_update(message, button))
            return str(update["callback_query"]["id"])
        return await self.user.tap(message, button)

    async def expect(self, text: str, *, timeout: float = 5.0) -> dict:
        """The next bot message (after what was already seen) that contains `text`."""
        message = await self.emulator.wait_for(
            self.chat_id, text, timeout=timeout, after=self.seen
        )
        self.seen = message["message_id"]
        return message

    def last(self) -> dict:
        return self.emulator.bot_messages(self.chat_id)[-1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


#: The bot's pace when the emulator keeps no limits (`limits=False`): Telegram's 30 a second,
#: and one a second per private chat, times 100. Telegram's limits are tested with
#: `limits=True`, at its own pace; elsewhere a conversation's answers would wait a second each
#: in their chat for a limit nobody keeps. A `messages_per_second` given wins.
FREE_PACE = 3000


class Sandbox:
    """Start with `async with Sandbox(database_url) as sandbox:`; act through `emulator`."""

    def __init__(
        self,
        database_url: str,
        *,
        directory: Path | None = EXAMPLE_DIRECTORY,
        limits: bool = False,
        clock: Clock = wall_clock,
        web: bool = False,
        webhook: bool = False,
        **settings: object,
    ) -> None:
        """`webhook=True`: the bot in webhook mode, the emulator POSTing the updates to it on
        the back office's port (served then too), as Telegram would behind a proxy."""
        self.emulator = BotAPIEmulator(limits=limits, webhook_http=webhook)
        self._database_url = database_url
        self._directory = directory
        # Tests and the demo drive the scheduler themselves, unless they ask for it; `clock`
        # is its time, so a test moves days on without waiting for them.
        settings.setdefault("scheduler", False)
        if not limits:
            settings.setdefault("messages_per_second", FREE_PACE)
        # The back office only when asked, on a free port of loopback: `web_url` is its address.
        # The back office keeps the files it fetched from Telegram in a folder of its own.
        self._files: tempfile.TemporaryDirectory[str] | None = None
        if web or webhook:
            self._files = tempfile.TemporaryDirectory(prefix="villagebot-files-")
            settings.setdefault("web_files", Path(self._files.name))
            port = _free_port()
            settings.setdefault("web_listen", f"127.0.0.1:{port}")
            settings.setdefault("web_url", f"http://127.0.0.1:{port}")
            if webhook:
                settings.setdefault("webhook_url", f"http://127.0.0.1:{port}/telegram/updates")
                settings.setdefault("webhook_secret", secrets.token_urlsafe(32))
        else:
            settings.setdefault("web_listen", "")
        self._settings = settings
        self._clock = clock
        self.app: Villagebot | None = None
        self._polling: asyncio.Task[None] | None = None

    @property
    def web_url(self) -> str:
        """The back office's address; the sandbox serves it when started with `web=True`."""
        assert self.app is not None and self.app.web is not None, "started without web=True"
        return self.settings.web_url

    @property
    def settings(self) -> Settings:
        assert self.app is not None, "the sandbox is not started"
        return self.app.settings

    async def start(self) -> Sandbox:
        await self.emulator.start()
        settings = load_settings(
            bot_token=self.emulator.token,
            telegram_api_url=self.emulator.base_url,
            database_url=self._database_url,
            directory_file=self._directory,
            **self._settings,
        )
        self.app = await Villagebot.start(settings, clock=self._clock)
        self._polling = asyncio.create_task(self.app.receive())
        return self

    def phone(
        self,
        user_id: int,
        first_name: str,
        *,
        language: str | None = "zh-hans",
        echo: Callable[[str, str], None] | None = None,
    ) -> Phone:
        return Phone(self.emulator, user_id, first_name, language=language, echo=echo)

    async def restart_bot(self) -> None:
        """Stop the bot and start a new one on the same database: a process restart."""
        await self._stop_bot()
        settings = self.settings
        self.app = await Villagebot.start(settings, clock=self._clock)
        self._polling = asyncio.create_task(self.app.receive())

    async def _stop_bot(self) -> None:
        if self.app is not None:
            await self.app.stop()
        if self._polling is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._polling, timeout=5)
            self._polling = None

    async def stop(self) -> None:
        await self._stop_bot()
        await self.emulator.stop()
        if self._files is not None:
            self._files.cleanup()

    async def __aenter__(self) -> Sandbox:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
