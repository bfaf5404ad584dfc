"""A case's photos and voice message for the back office, fetched from Telegram and kept.

Telegram keeps the files; the database keeps only their file ids (`Case.photos`,
`Case.voice_file_id`, and `CaseEvent.attachments`: evidence and any later photos). The browser
asks `/cases/{number}/files/{n}`, where `n` counts the case's files in a fixed order, so a file
id never comes from the browser and the Bot API's download address (which carries the bot's
token) never goes to it: the server fetches the file through the Bot API's getFile and the
file download, as the bot's own `Bot` does, and serves the bytes itself.

Fetched files are kept on disk, in WEB_FILES (`data/files` by default, beside the SQLite
database), one file per file id named by its SHA-256. A file id names the same bytes forever,
so a kept file never goes stale and a second view does not ask Telegram again; the folder
survives restarts and serves `run` and `web` alike on one host. It grows with the cases (a few
photos of some hundred kilobytes each, one voice message) and may be emptied at any time: what
is missing is fetched again. A bounded in-memory cache would instead fetch everything again
after each restart and once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiohttp import ClientError, web

from bot.models import Case, CaseEvent

log = logging.getLogger(__name__)

#: What each kind of file is served as: Telegram's photos are JPEG, its voice messages
#: OGG with Opus inside.
CONTENT_TYPES = {"photo": "image/jpeg", "voice": "audio/ogg"}
#: How long a fetch from Telegram may take before the page shows the placeholder instead.
FETCH_SECONDS = 30


@dataclass(frozen=True)
class CaseFile:
    """One file of a case: `number` (from 1) is its address on the case's page."""

    number: int
    kind: str  # "photo" or "voice"
    file_id: str
    #: The history event it came with (evidence, say); None for the report's own files.
    event_id: int | None

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.kind]


def case_files(case: Case, events: Sequence[CaseEvent]) -> list[CaseFile]:
    """The case's photos, its voice message, then the photos of its history, oldest first:
    the history only grows, so a file keeps its number. A file listed twice (the report's
    photos are also its event's) counts once, at its first place."""

    def found() -> Iterator[tuple[str, str, int | None]]:
        for file_id in case.photos:
            yield "photo", file_id, None
        if case.voice_file_id:
            yield "voice", case.voice_file_id, None
        for event in events:
            for file_id in event.attachments:
                yield "photo", file_id, event.id

    files: list[CaseFile] = []
    seen: set[str] = set()
    for kind, file_id, event_id in found():
        if isinstance(file_id, str) and file_id and file_id not in seen:
            seen.add(file_id)
            files.append(CaseFile(len(files) + 1, kind, file_id, event_id))
    return files


class FileStore:
    """Files fetched through `bot` and kept in `folder`; without a bot (the back office
    alone with no BOT_TOKEN) only what is kept already can be shown."""

    def __init__(self, folder: Path, bot: Bot | None) -> None:
        self.folder = folder
        self.bot = bot
        self._fetching: dict[str, asyncio.Lock] = {}

    def path(self, file_id: str) -> Path:
        return self.folder / hashlib.sha256(file_id.encode()).hexdigest()

    async def get(self, file_id: str) -> Path | None:
        """The kept file, fetched from Telegram first if need be; None when it cannot be."""
        path = self.path(file_id)
        if path.is_file():
            return path
        lock = self._fetching.setdefault(file_id, asyncio.Lock())
        async with lock:  # two views at once fetch it once
            try:
                if not path.is_file() and not await self._fetch(file_id, path):
                    return None
            finally:
                self._fetching.pop(file_id, None)
        return path

    async def _fetch(self, file_id: str, path: Path) -> bool:
        if self.bot is None:
            log.warning("back office: a case file is not kept here and there is no BOT_TOKEN "
                        "to fetch it with")
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        try:
            await self.bot.download(file_id, destination=part, timeout=FETCH_SECONDS)
            os.replace(part, path)  # whole or not at all, for every reader
            return True
        except TelegramAPIError as error:  # Telegram's own words: never the token
            log.warning("back office: Telegram refused a case file: %s", error.message)
        except (ClientError, OSError, TimeoutError) as error:  # their words name the URL: the token
            log.warning("back office: a case file could not be fetched: %s",
                        type(error).__name__)
        finally:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
        return False


FILES = web.AppKey("files", FileStore)
