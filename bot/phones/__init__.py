"""The phones page of `villagebot demo`: the emulator's chats as phones in a browser.

Demo and test code, beside the emulator: nothing in `run` or `web` imports it. Each phone is a
person of the demo township (or a group chat), drawn from the emulator's own state: the messages
as they are now (edits applied, deletions gone), the reply keyboard the chat shows, the command
menu Telegram would pick for it. What is typed or tapped on a phone goes to the bot through the
emulator's user side (`UserHandle`), as an update, exactly as the tests' phones do; what the bot
sends comes back to the page over server-sent events. Nothing about the bot is played here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import ClientSession, web

from bot.emulator import BotAPIEmulator, UserHandle
from bot.i18n import N_, catalogs
from bot.languages import LANGUAGES, normalize_language

HERE = Path(__file__).resolve().parent
#: Leaflet, vendored for the back office's map: the location pins use it too.
VENDOR = HERE.parent.parent / "web" / "static" / "vendor"
#: How often the page looks at the chats besides when the bot acts (a user's own message).
LOOK_EVERY = 0.25
#: How long a tap waits for the bot's answerCallbackQuery before the page stops waiting.
ANSWER_WAIT = 10.0
#: The largest file a phone sends (Telegram's bots may download 20 MB).
MAX_FILE = 20 * 1024 * 1024
#: New villagers' Telegram ids: far from the demo's own people.
FIRST_NEW_VILLAGER = 2001

#: The page's own words; the chats are the bot's.
LABELS: dict[str, str] = {
    "title": N_("villagebot demo: the phones"),
    "intro": N_(
        "Each phone is a person of the demo township talking to the real bot. Type, tap and "
        "send photos or a location: the bot answers here."
    ),
    "new_villager": N_("New villager"),
    "back_office": N_("Back office"),
    "message": N_("Message"),
    "send": N_("Send"),
    "attach": N_("Attach"),
    "sample_photo": N_("Sample photo"),
    "own_photo": N_("Photo from this computer"),
    "voice": N_("Voice message"),
    "location": N_("Location"),
    "document": N_("Document"),
    "send_location": N_("Send this location"),
    "latitude": N_("Latitude"),
    "longitude": N_("Longitude"),
    "cancel": N_("Cancel"),
    "menu": N_("Menu"),
    "edited": N_("edited"),
    "ok": N_("OK"),
    "empty": N_("No messages yet. Send /start."),
    "failed": N_("Not sent: {reason}"),
}
#: What each kind of phone is, under its name.
ROLES: dict[str, str] = {
    "villager_zh": N_("Villager, speaks Chinese"),
    "villager_en": N_("Villager, speaks English"),
    "grid_member": N_("Grid member"),
    "leader": N_("Village committee leader"),
    "dispatcher": N_("Dispatcher"),
    "group": N_("The unit's group chat"),
    "new_villager": N_("New villager, not registered yet"),
}
NEW_VILLAGER_NAME = N_("Villager {number}")

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE), autoescape=True, undefined=jinja2.StrictUndefined
)


@dataclass(frozen=True)
class Handset:
    """One phone on the page: the chat it shows and the Telegram user who types on it (in a
    group chat, a member of it)."""

    chat_id: int
    name: str
    role: str
    user_id: int

    def as_json(self, language: str) -> dict[str, Any]:
        data = asdict(self)
        data["role_label"] = catalogs().text(ROLES[self.role], language)
        return data


def page_language(request: web.Request, default: str) -> str:
    """?lang= when given, else the browser's Accept-Language (first one of ours), else the
    demo's default language."""
    asked = request.query.get("lang", "")
    if asked in LANGUAGES:
        return asked
    wanted: list[tuple[float, int, str]] = []
    for position, part in enumerate(request.headers.get("Accept-Language", "").split(",")):
        code, _, quality = part.strip().partition(";q=")
        try:
            weight = float(quality) if quality else 1.0
        except ValueError:
            continue
        found = normalize_language(code, fallback=None)
        if found is not None:
            wanted.append((-weight, position, found))
    return min(wanted)[2] if wanted else default


def _file_id(sizes: list[dict]) -> str:
    """The photo size a phone shows: the full picture (the emulator's smaller sizes are
    placeholders, flat grey), scaled down by the page."""
    return str(sizes[-1]["file_id"])


def shown(message: dict) -> dict[str, Any]:
    """What a phone draws of a message: the content, with files as links to `/files/`."""
    keep = (
        "message_id", "date", "edit_date", "text", "entities", "caption", "caption_entities",
        "location", "contact",
    )
    data: dict[str, Any] = {key: message[key] for key in keep if key in message}
    sender = message.get("from") or {}
    data["from"] = {
        "id": sender.get("id"), "is_bot": bool(sender.get("is_bot")),
        "name": " ".join(filter(None, (sender.get("first_name"), sender.get("last_name")))),
    }
    if message.get("photo"):
        data["photo"] = {"url": f"files/{_file_id(message['photo'])}"}
    if "voice" in message:
        voice = message["voice"]
        data["voice"] = {"duration": voice.get("duration", 0), "url": f"files/{voice['file_id']}"}
    if "document" in message:
        document = message["document"]
        data["document"] = {
            "name": document.get("file_name") or "file", "url": f"files/{document['file_id']}",
        }
    if "sticker" in message:
        data["sticker"] = message["sticker"].get("emoji", "")
    rows = (message.get("reply_markup") or {}).get("inline_keyboard")
    if rows:
        data["buttons"] = [
            [
                {"text": b.get("text", ""), "data": b.get("callback_data"), "url": b.get("url")}
                for b in row
            ]
            for row in rows
        ]
    return data


class PhonesPage:
    """The page and its endpoints, served on its own port beside the emulator's.

    Start with `await PhonesPage(emulator, handsets).start()`; `url` is its address.
    """

    def __init__(
        self,
        emulator: BotAPIEmulator,
        handsets: list[Handset],
        *,
        back_office: str | None = None,
        default_language: str = LANGUAGES[0],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.emulator = emulator
        self.handsets: dict[int, Handset] = {h.chat_id: h for h in handsets}
        self.back_office = back_office
        self.default_language = default_language
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._listeners: set[asyncio.Queue[str | None]] = set()
        self._seen: dict[int, str] = {}
        self._poke = asyncio.Event()
        self._new_ids = itertools.count(FIRST_NEW_VILLAGER)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_FILE + 64 * 1024)
        app.add_routes([
            web.get("/", self._page),
            web.get("/events", self._events),
            web.get("/chats/{chat_id}", self._chat),
            web.post("/chats/{chat_id}/{action}", self._act),
            web.post("/phones", self._new_phone),
            web.get("/files/{file_id}", self._file),
            web.get("/static/phones.js", self._asset("phones.js", "text/javascript")),
            web.get("/static/phones.css", self._asset("phones.css", "text/css")),
        ])
        app.router.add_static("/static/vendor", VENDOR)
        return app

    async def start(self) -> PhonesPage:
        runner = web.AppRunner(
            self.app(), access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        self._client = ClientSession()
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def stop(self) -> None:
        for queue in list(self._listeners):
            queue.put_nowait(None)  # each open stream ends
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    # ---- what a phone shows ----------------------------------------------------------------

    def snapshot(self, handset: Handset) -> dict[str, Any]:
        """The chat as the person's Telegram app shows it now."""
        chat_id = handset.chat_id
        return {
            "chat_id": chat_id,
            "messages": [shown(m) for m in self.emulator.messages(chat_id)],
            "keyboard": self.emulator.reply_keyboard_markup(chat_id),
            "commands": self.menu(handset),
        }

    def menu(self, handset: Handset) -> list[dict]:
        """The command menu Telegram picks for this chat: the narrowest scope set, in the
        client's language before any language (as Telegram resolves it)."""
        user = self.emulator.user(handset.user_id)
        language = (user.language_code or "")[:2]
        chat = {"type": "chat", "chat_id": handset.chat_id}
        broad = {"type": "all_group_chats" if handset.chat_id < 0 else "all_private_chats"}
        for scope in (chat, broad, {"type": "default"}):
            for code in (language, ""):
                found = self.emulator.commands(scope, code)
                if found:
                    return found
        return []

    def _event(self, kind: str, data: object) -> str:
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    def _broadcast(self, text: str) -> None:
        for queue in self._listeners:
            queue.put_nowait(text)

    def _changes(self) -> list[dict[str, Any]]:
        """The snapshots of the chats that changed since the last look."""
        changed = []
        for handset in list(self.handsets.values()):
            snapshot = self.snapshot(handset)
            digest = hashlib.sha256(
                json.dumps(snapshot, sort_keys=True, ensure_ascii=False).encode()
            ).hexdigest()
            if self._seen.get(handset.chat_id) != digest:
                self._seen[handset.chat_id] = digest
                changed.append(snapshot)
        return changed

    async def _watch(self) -> None:
        """Push every changed chat to the open pages: when the bot acts (the emulator's hook),
        when a phone acts, and every LOOK_EVERY seconds for anything else."""
        remove = self.emulator.on_bot_message(lambda *_: self._poke.set())
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), LOOK_EVERY)
                self._poke.clear()
                for snapshot in self._changes():
                    self._broadcast(self._event("chat", snapshot))
        finally:
            remove()

    # ---- HTTP ------------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.Response:
        language = page_language(request, self.default_language)
        say = catalogs().text
        labels = {key: say(message, language) for key, message in LABELS.items()}
        html = _ENVIRONMENT.get_template("page.html").render(
            language=language,
            labels=labels,
            languages={"zh-hans": "简体中文", "zh-hant": "繁體中文", "en": "English"},
            back_office=self.back_office,
            handsets=[h.as_json(language) for h in self.handsets.values()],
        )
        return web.Response(text=html, content_type="text/html")

    @staticmethod
    def _asset(name: str, content_type: str) -> Any:
        async def serve(request: web.Request) -> web.Response:
            return web.Response(
                body=(HERE / name).read_bytes(), content_type=content_type, charset="utf-8"
            )

        return serve

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: each chat as it is now, then each chat whenever it changes,
        and each new phone."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._listeners.add(queue)
        try:
            language = page_language(request, self.default_language)
            for handset in list(self.handsets.values()):
                await response.write(self._event("phone", handset.as_json(language)).encode())
                await response.write(self._event("chat", self.snapshot(handset)).encode())
            async for text in self._queued(queue):
                await response.write(text.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._listeners.discard(queue)
        return response

    @staticmethod
    async def _queued(queue: asyncio.Queue[str | None]) -> AsyncIterator[str]:
        while True:
            try:
                text = await asyncio.wait_for(queue.get(), 15)
            except TimeoutError:
                yield ": still here\n\n"  # keeps proxies and the browser from giving up
                continue
            if text is None:
                return
            yield text

    def _handset(self, request: web.Request) -> Handset:
        try:
            chat_id = int(request.match_info["chat_id"])
        except ValueError:
            raise web.HTTPNotFound(text="no such phone") from None
        handset = self.handsets.get(chat_id)
        if handset is None:
            raise web.HTTPNotFound(text="no such phone")
        return handset

    async def _chat(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot(self._handset(request)))

    async def _act(self, request: web.Request) -> web.Response:
        """One thing done on a phone, sent to the bot as the person's update."""
        handset = self._handset(request)
        action = request.match_info["action"]
        user = self.emulator.user(handset.user_id)
        chat = handset.chat_id if handset.chat_id < 0 else None
        try:
            result = await self._do(action, user, chat, request)
        except (LookupError, ValueError, TypeError) as error:
            return web.json_response({"ok": False, "error": str(error)}, status=400)
        finally:
            self._poke.set()
        return web.json_response({"ok": True, **result})

    async def _do(
        self, action: str, user: UserHandle, chat: int | None, request: web.Request
    ) -> dict[str, Any]:
        if action in ("photo", "document") and request.content_type == "multipart/form-data":
            form = await request.post()
            upload = form.get("file")
            if not isinstance(upload, web.FileField):
                raise ValueError("no file in the form")
            data = upload.file.read()
            if action == "photo":
                await user.send_photo(chat=chat, data=data)
            else:
                await user.send_document(
                    upload.filename or "file", upload.content_type or "application/octet-stream",
                    chat=chat, data=data,
                )
            return {}
        if action == "photo":
            await user.send_photo(chat=chat)
        elif action == "document":
            await user.send_document("sample.pdf", chat=chat)
        elif action == "voice":
            await user.send_voice(5, chat=chat)
        else:
            body = await self._json(request)
            if action == "text":
                text = str(body.get("text") or "").strip()
                if not text:
                    raise ValueError("nothing to send")
                await user.send_text(text[:4096], chat=chat)
            elif action == "press":
                await user.press(str(body.get("label") or ""), chat=chat)
            elif action == "location":
                latitude, longitude = float(body["latitude"]), float(body["longitude"])
                if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
                    raise ValueError("no such place")
                await user.send_location(latitude, longitude, chat=chat)
            elif action == "tap":
                query = await user.tap(int(body["message_id"]), str(body["data"]), chat=chat)
                with contextlib.suppress(TimeoutError):
                    answer = await self.emulator.wait_answer(query, timeout=ANSWER_WAIT)
                    return {"answer": {"text": answer["text"], "alert": answer["show_alert"]}}
            else:
                raise LookupError(f"a phone cannot {action!r}")
        return {}

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ValueError("the body is no JSON") from None
        if not isinstance(body, dict):
            raise ValueError("the body is no JSON object")
        return body

    async def _new_phone(self, request: web.Request) -> web.Response:
        """A phone for someone the bot has not met, in the page's language."""
        language = page_language(request, self.default_language)
        user_id = next(self._new_ids)
        while user_id in self.handsets:
            user_id = next(self._new_ids)
        name = catalogs().text(NEW_VILLAGER_NAME, language, number=user_id - FIRST_NEW_VILLAGER + 1)
        self.emulator.user(user_id, name, language_code=language)
        handset = Handset(chat_id=user_id, name=name, role="new_villager", user_id=user_id)
        self.handsets[user_id] = handset
        self._broadcast(self._event("phone", handset.as_json(language)))
        self._poke.set()
        return web.json_response(handset.as_json(language))

    async def _file(self, request: web.Request) -> web.Response:
        """A file of a chat, fetched from the emulator as a bot fetches it (getFile)."""
        assert self._client is not None
        base = f"{self.emulator.base_url}/bot{self.emulator.token}"
        async with self._client.get(
            f"{base}/getFile", params={"file_id": request.match_info["file_id"]}
        ) as answer:
            found = await answer.json()
        if not found.get("ok"):
            raise web.HTTPNotFound(text="no such file")
        path = found["result"]["file_path"]
        async with self._client.get(
            f"{self.emulator.base_url}/file/bot{self.emulator.token}/{path}"
        ) as download:
            body = await download.read()
            kind = download.content_type
        return web.Response(body=body, content_type=kind)
