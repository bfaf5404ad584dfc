"""A Telegram Bot API emulator on loopback, for the tests, the demo and the benchmarks.

It answers the Bot API methods villagebot uses with the object shapes and the error texts of
Telegram, so a real aiogram `Bot` talks to it unchanged: give `TelegramAPIServer.from_base` the
emulator's `base_url`. Around the API is a small world to act in (`user(...)` and `group(...)`
send messages, photos, contacts and button taps as updates) and to read back (`messages`,
`wait_for`, `transcript`). Telegram's sending limits and injected faults make retries and
throughput testable, and an HTTP control API under `/_emulator/` lets another process drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import math
import mimetypes
import random
import re
import secrets
import struct
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import urlsplit

from aiohttp import (
    ClientError,
    ClientSession,
    ClientTimeout,
    MultipartReader,
    TCPConnector,
    web,
)

__all__ = [
    "BotAPIEmulator",
    "ChannelHandle",
    "EmulatorStats",
    "GroupHandle",
    "InjectedFault",
    "SendingLimits",
    "UserHandle",
    "button_data",
    "buttons",
    "reply_buttons",
]

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_ALBUM_SIZE = 10
#: Updates the emulator keeps to send again (`redeliver`).
RECENT_UPDATES = 10_000
MAX_INLINE_BUTTONS = 100
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_LANGUAGE = "zh-hans"

CHAT_NOT_FOUND = "Bad Request: chat not found"
BLOCKED_BY_USER = "Forbidden: bot was blocked by the user"
CANT_INITIATE = "Forbidden: bot can't initiate conversation with a user"
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
WRONG_FILE = "Bad Request: wrong file identifier/HTTP URL specified"
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
UPGRADED = "Bad Request: group chat was upgraded to a supergroup chat"
NEED_ADMIN_RIGHTS = "Bad Request: need administrator rights in the channel chat"
NOT_ENOUGH_RIGHTS = "Bad Request: not enough rights to send text messages to the chat"
POLL_CONFLICT = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)

_STATUS_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Request Entity Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

#: Update types Telegram leaves out unless a bot asks for them by name.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
_SCOPE_TYPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)
_INLINE_ACTIONS = (
    "callback_data",
    "url",
    "login_url",
    "web_app",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
_MEDIA_KEYS = ("photo", "document", "voice", "sticker", "video", "audio", "animation")
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
_WEBHOOK_FIRST_RETRY = 0.1
_WEBHOOK_MAX_RETRY = 2.0
#: The ports Telegram delivers webhooks to.
_WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
_WEBHOOK_HTTPS = "bad webhook: An HTTPS URL must be provided for webhook"
_WEBHOOK_PORT = "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
_WEBHOOK_SECRET = "secret token contains unallowed characters"
_DEFAULT_MAX_CONNECTIONS = 40

# Bytes that make each kind of file look like what it is to anyone who opens it.
_PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
_OGG = b"OggS\x00\x02" + bytes(22) + b"\x01\x13OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
_WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8X\x0a\x00\x00\x00\x10\x00\x00\x00\xff\x01\x00\xff\x01\x00"
_FILE_ID_PREFIX = {
    "photo": "AgACAgUAAxkBAAI",
    "document": "BQACAgUAAxkBAAI",
    "voice": "AwACAgUAAxkBAAI",
    "sticker": "CAACAgUAAxkBAAI",
}
_FILE_FOLDER = {"photo": "photos", "document": "documents", "voice": "voice", "sticker": "stickers"}

_UNSET: Any = object()


# --------------------------------------------------------------------------------------------
# Reading messages


def said(message: dict) -> str:
    """What a message says: its text, or the caption under its photo or voice."""
    return message.get("text") or message.get("caption") or ""


def buttons(message: dict) -> list[str]:
    """The inline button texts under a message, row after row: what a person can tap."""
    markup = message.get("reply_markup") or {}
    return [button.get("text", "") for row in markup.get("inline_keyboard", []) for button in row]


def button_data(message: dict, text: str) -> str:
    """The callback data behind the inline button labelled `text`."""
    markup = message.get("reply_markup") or {}
    for row in markup.get("inline_keyboard", []):
        for button in row:
            if button.get("text") == text and "callback_data" in button:
                return str(button["callback_data"])
    raise LookupError(f"no callback button {text!r}; the message has {buttons(message)}")


def reply_buttons(message: dict) -> list[str]:
    """The reply-keyboard labels a message brought up, row after row."""
    markup = message.get("reply_markup") or {}
    return [_label(button) for row in markup.get("keyboard", []) for button in row]


def _label(button: Any) -> str:
    return button if isinstance(button, str) else str(button.get("text", ""))


# --------------------------------------------------------------------------------------------
# Errors and small values


class _ApiError(Exception):
    """A Bot API error answer: `{"ok": false, "error_code": status, "description": ...}`."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def _bad(text: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {text}")


def _too_many(wait: float) -> NoReturn:
    seconds = max(1, math.ceil(wait))
    raise _ApiError(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})


@dataclass
class _Described:
    """A result that Telegram sends with a description, as setWebhook does."""

    result: Any
    description: str


@dataclass
class _Upload:
    filename: str
    content_type: str | None
    data: bytes


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    kind: str
    data: bytes
    file_path: str

    def as_file(self) -> dict:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


@dataclass
class _Fault:
    status: int
    description: str
    retry_after: int | None
    drop: bool = False


#: What `faults` may inject: Telegram's flood refusal, its server error, a cut connection.
FAULT_KINDS = (429, 500, "drop")


@dataclass
class InjectedFault:
    """One call answered with a random fault: which, to what, and whether it took effect.

    A dropped connection is cut either before the call is carried out or after (`took_effect`:
    the message is in the chat, the bot never heard so); `message_ids` are the messages such a
    call left in `chat_id`.
    """

    kind: str
    method: str
    chat_id: int | None
    took_effect: bool = False
    message_ids: list[int] = field(default_factory=list)


@dataclass
class _Queued:
    update: dict
    delivered: bool = False
    #: Being POSTed to the webhook now.
    posting: bool = False


@dataclass
class EmulatorStats:
    """What the bot asked of Telegram: calls per method, messages, and every refusal."""

    requests: Counter[str] = field(default_factory=Counter)
    #: Of those, the calls a webhook's answer carried (no request of the bot's own).
    webhook_replies: Counter[str] = field(default_factory=Counter)
    sent_messages: int = 0
    edited_messages: int = 0
    deleted_messages: int = 0
    too_many_requests: int = 0
    errors: Counter[int] = field(default_factory=Counter)
    updates_enqueued: int = 0
    updates_delivered: int = 0
    #: Random faults injected (`faults`), by kind: "429", "500", "drop" (cut before the call
    #: took effect), "drop after" (cut after it took effect).
    injected: Counter[str] = field(default_factory=Counter)
    #: Webhook POSTs that got no 2xx (refused, reset, timed out): each update is sent again.
    webhook_failures: int = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "total_requests": self.total_requests,
            "sent_messages": self.sent_messages,
            "edited_messages": self.edited_messages,
            "deleted_messages": self.deleted_messages,
            "too_many_requests": self.too_many_requests,
            "errors": {str(status): count for status, count in self.errors.items()},
            "updates_enqueued": self.updates_enqueued,
            "updates_delivered": self.updates_delivered,
            "injected": dict(self.injected),
            "webhook_failures": self.webhook_failures,
        }


@dataclass
class SendingLimits:
    """Telegram's published limits for sending and editing, enforced when `limits` is on."""

    per_second: int = 30
    private_per_second: int = 1
    group_per_minute: int = 20


class _Signal:
    """Wakes every waiter at once, without a lock, so plain functions can notify too.

    A waiter takes `event` first, then checks its condition, then waits: a notification in
    between sets the event it already holds, so nothing is missed.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def event(self) -> asyncio.Event:
        return self._event

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


# --------------------------------------------------------------------------------------------
# Text: markup parsing, entity detection, trimming


def _u16(text: str) -> int:
    """Length in UTF-16 code units: the unit of Telegram's entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def _parse_error(detail: str) -> _ApiError:
    return _bad(f"can't parse entities: {detail}")


_HTML_TAG_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_ENTITY = re.compile(r"&(#[xX][0-9a-fA-F]{1,8}|#[0-9]{1,9}|[a-zA-Z]{1,8});?")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _html_char(text: str, index: int) -> tuple[str, int] | None:
    """The character an HTML entity at `index` stands for, as Telegram decodes them."""
    match = _HTML_ENTITY.match(text, index)
    if match is None:
        return None
    body = match.group(1)
    if body.startswith("#"):
        code = int(body[2:], 16) if body[1] in "xX" else int(body[1:])
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return None
        return chr(code), match.end()
    char = _HTML_NAMED.get(body)
    return None if char is None else (char, match.end())


def _html_unescape(value: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(value):
        decoded = _html_char(value, index) if value[index] == "&" else None
        if decoded is None:
            out.append(value[index])
            index += 1
        else:
            out.append(decoded[0])
            index = decoded[1]
    return "".join(out)


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str]
    offset: int


def _parse_html(text: str) -> tuple[str, list[dict]]:
    """Telegram's HTML: the supported tags become entities, anything else is an error.

    Follows Telegram's parser: `<` always opens a tag, `&` is literal unless it starts one
    of the four named entities or a numeric one, and error offsets are in bytes.
    """
    out: list[str] = []
    size = 0
    stack: list[_OpenTag] = []
    entities: list[dict] = []
    index, length = 0, len(text)

    def fail(detail: str) -> NoReturn:
        raise _parse_error(detail)

    def skip_spaces(position: int) -> int:
        while position < length and text[position].isspace():
            position += 1
        return position

    while index < length:
        char = text[index]
        if char == "&":
            decoded = _html_char(text, index)
            if decoded is not None:
                out.append(decoded[0])
                size += _u16(decoded[0])
                index = decoded[1]
                continue
        if char != "<":
            out.append(char)
            size += _u16(char)
            index += 1
            continue
        begin = index
        where = f"at byte offset {_byte_offset(text, begin)}"
        index += 1
        if index >= length or text[index] != "/":
            start = index
            while index < length and not text[index].isspace() and text[index] != ">":
                index += 1
            if index >= length:
                fail(f"Unclosed start tag {where}")
            name = text[start:index].lower()
            if name not in _HTML_TAG_ENTITY:
                fail(f'Unsupported start tag "{name}" {where}')
            attrs: dict[str, str] = {}
            while True:
                index = skip_spaces(index)
                if index >= length:
                    fail(f"Unclosed start tag {where}")
                if text[index] == ">":
                    index += 1
                    break
                start = index
                while index < length and not text[index].isspace() and text[index] not in "=>":
                    index += 1
                attribute = text[start:index].lower()
                index = skip_spaces(index)
                if index >= length:
                    fail(f"Unclosed start tag {where}")
                if text[index] != "=":
                    if name == "blockquote" and attribute == "expandable":
                        attrs[attribute] = ""
                        continue
                    fail(
                        "Expected equal sign in declaration of an attribute of the tag "
                        f'"{name}" {where}'
                    )
                index = skip_spaces(index + 1)
                if index >= length:
                    fail(f"Unclosed start tag {where}")
                if text[index] in "'\"":
                    end = text.find(text[index], index + 1)
                    if end < 0:
                        fail(f"Unclosed start tag {where}")
                    raw = text[index + 1 : end]
                    index = end + 1
                else:
                    start = index
                    while index < length and (text[index].isalnum() or text[index] in ".-"):
                        index += 1
                    raw = text[start:index]
                attrs[attribute] = _html_unescape(raw)
            if name == "span" and attrs.get("class") != "tg-spoiler":
                fail(f'Tag "span" must have class "tg-spoiler" {where}')
            stack.append(_OpenTag(name, attrs, size))
            continue
        if not stack:
            fail(f"Unexpected end tag {where}")
        start = index + 1
        index = start
        while index < length and not text[index].isspace() and text[index] != ">":
            index += 1
        end_name = text[start:index].lower()
        index = skip_spaces(index)
        if index >= length or text[index] != ">":
            fail(f"Unclosed end tag {where}")
        index += 1
        tag = stack.pop()
        if end_name and end_name != tag.name:
            fail(f'Unmatched end tag {where}, expected "</{tag.name}>", found "</{end_name}>"')
        entity = _html_entity(tag, size - tag.offset, stack[-1] if stack else None)
        if entity is not None:
            entities.append(entity)
    if stack:
        fail(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return "".join(out), entities


def _html_entity(tag: _OpenTag, length: int, parent: _OpenTag | None) -> dict | None:
    kind = _HTML_TAG_ENTITY[tag.name]
    if kind == "code" and parent is not None and parent.name == "pre":
        language = tag.attrs.get("class", "")
        if language.startswith("language-") and parent.offset == tag.offset:
            parent.attrs["language"] = language.removeprefix("language-")
            return None
    if length <= 0:
        return None
    entity: dict[str, Any] = {"type": kind, "offset": tag.offset, "length": length}
    if kind == "text_link":
        href = tag.attrs.get("href", "")
        if not href:
            return None
        entity["url"] = href
    elif kind == "pre" and tag.attrs.get("language"):
        entity["language"] = tag.attrs["language"]
    elif kind == "blockquote" and "expandable" in tag.attrs:
        entity["type"] = "expandable_blockquote"
    elif kind == "custom_emoji":
        if not tag.attrs.get("emoji-id"):
            return None
        entity["custom_emoji_id"] = tag.attrs["emoji-id"]
    return entity


_MD2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MD2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
}


def _parse_markdown_v2(text: str) -> tuple[str, list[dict]]:
    """MarkdownV2, where every reserved character outside an entity must be escaped."""
    out: list[str] = []
    size = 0
    entities: list[dict] = []
    stack: list[tuple[str, int, int]] = []
    quote: int | None = None
    index, length = 0, len(text)

    def emit(chunk: str) -> None:
        nonlocal size
        out.append(chunk)
        size += _u16(chunk)

    def fail(detail: str) -> NoReturn:
        raise _parse_error(detail)

    def unclosed(kind: str, begin: int) -> NoReturn:
        fail(f"Can't find end of {kind} entity at byte offset {_byte_offset(text, begin)}")

    def escaped(position: int) -> bool:
        following = text[position + 1] if position + 1 < length else ""
        return text[position] == "\\" and 0 < ord(following or "\0") < 127

    while index < length:
        char = text[index]
        if escaped(index):
            emit(text[index + 1])
            index += 2
            continue
        if char == "\n":
            emit(char)
            index += 1
            if quote is not None and (index >= length or text[index] != ">"):
                entities.append({"type": "blockquote", "offset": quote, "length": size - 1 - quote})
                quote = None
            continue
        if char not in _MD2_RESERVED:
            emit(char)
            index += 1
            continue
        if char == ">" and (index == 0 or text[index - 1] == "\n"):
            if quote is None:
                quote = size
            index += 1
            continue
        if char == "`":
            width = 3 if text.startswith("```", index) else 1
            position = index + width
            chunk: list[str] = []
            while position < length:
                if escaped(position):
                    chunk.append(text[position + 1])
                    position += 2
                    continue
                if text.startswith("`" * width, position):
                    break
                chunk.append(text[position])
                position += 1
            else:
                unclosed("Pre" if width == 3 else "Code", index)
            content = "".join(chunk)
            language = ""
            if width == 3 and "\n" in content:
                first, rest = content.split("\n", 1)
                if first and not any(c.isspace() for c in first):
                    language, content = first, rest
            start = size
            emit(content)
            if content:
                entity: dict[str, Any] = {
                    "type": "pre" if width == 3 else "code",
                    "offset": start,
                    "length": size - start,
                }
                if language:
                    entity["language"] = language
                entities.append(entity)
            index = position + width
            continue
        if char == "[":
            stack.append(("text_link", size, index))
            index += 1
            continue
        if char == "]" and stack and stack[-1][0] == "text_link":
            _, start, _ = stack.pop()
            index += 1
            if index < length and text[index] == "(":
                position = index + 1
                url: list[str] = []
                while position < length and text[position] != ")":
                    if text[position] == "\\" and position + 1 < length:
                        url.append(text[position + 1])
                        position += 2
                        continue
                    url.append(text[position])
                    position += 1
                if position >= length:
                    fail(f"Can't find end of a URL at byte offset {_byte_offset(text, index)}")
                index = position + 1
                if size > start and url:
                    entities.append(
                        {
                            "type": "text_link",
                            "offset": start,
                            "length": size - start,
                            "url": "".join(url),
                        }
                    )
            continue
        top = stack[-1][0] if stack else None
        kind, width = "", 1
        if char == "*":
            kind = "bold"
        elif char == "~":
            kind = "strikethrough"
        elif char == "|" and text.startswith("||", index):
            kind, width = "spoiler", 2
        elif char == "_":
            double = text.startswith("__", index)
            if double and top == "underline":
                kind, width = "underline", 2
            elif top == "italic":
                kind = "italic"
            elif double:
                kind, width = "underline", 2
            else:
                kind = "italic"
        if not kind:
            fail(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")
        if top == kind:
            _, start, _ = stack.pop()
            if size > start:
                entities.append({"type": kind, "offset": start, "length": size - start})
        elif any(open_kind == kind for open_kind, _, _ in stack):
            unclosed(_MD2_NAMES[stack[-1][0]], stack[-1][2])
        else:
            stack.append((kind, size, index))
        index += width
    if stack:
        unclosed(_MD2_NAMES[stack[-1][0]], stack[-1][2])
    if quote is not None and size > quote:
        entities.append({"type": "blockquote", "offset": quote, "length": size - quote})
    return "".join(out), entities


def _parse_markdown(text: str) -> tuple[str, list[dict]]:
    """Legacy Markdown: `*bold*`, `_italic_`, code, pre and links, with no nesting."""
    out: list[str] = []
    size = 0
    entities: list[dict] = []
    index, length = 0, len(text)
    kinds = {"*": "bold", "_": "italic", "`": "code"}

    def unclosed(begin: int) -> _ApiError:
        return _parse_error(
            f"Can't find end of the entity starting at byte offset {_byte_offset(text, begin)}"
        )

    def add(kind: str | None, content: str, **extra: str) -> None:
        nonlocal size
        start = size
        out.append(content)
        size += _u16(content)
        if content and kind is not None:
            entities.append({"type": kind, "offset": start, "length": size - start, **extra})

    while index < length:
        char = text[index]
        if char == "\\" and index + 1 < length and text[index + 1] in "_*`[":
            add(None, text[index + 1])
            index += 2
            continue
        if char not in "_*`[":
            add(None, char)
            index += 1
            continue
        if char == "[":
            close = text.find("]", index + 1)
            if close < 0:
                raise unclosed(index)
            label = text[index + 1 : close]
            url = ""
            index = close + 1
            if text.startswith("(", index):
                end = text.find(")", index + 1)
                if end < 0:
                    raise unclosed(close)
                url, index = text[index + 1 : end], end + 1
            if url:
                add("text_link", label, url=url)
            else:
                add(None, label)
            continue
        if text.startswith("```", index):
            end = text.find("```", index + 3)
            if end < 0:
                raise unclosed(index)
            content = text[index + 3 : end]
            first, _, rest = content.partition("\n")
            if rest and first and not any(c.isspace() for c in first):
                add("pre", rest, language=first)
            else:
                add("pre", content)
            index = end + 3
            continue
        end = text.find(char, index + 1)
        if end < 0:
            raise unclosed(index)
        add(kinds[char], text[index + 1 : end])
        index = end + 1
    return "".join(out), entities


_URL_TAIL = ".,:;!?'\")]}"
_DETECTORS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "url",
        re.compile(
            r"(?<![\w@/.])(?:https?://|www\.|t\.me/)[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+",
            re.IGNORECASE,
        ),
    ),
    (
        "email",
        re.compile(r"(?<![\w.+-])[A-Za-z0-9.+_-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    ),
    (
        "bot_command",
        re.compile(r"(?<![\w/<>])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w/<>])"),
    ),
    ("mention", re.compile(r"(?<![\w@])@[A-Za-z][A-Za-z0-9_]{3,31}(?![\w@])")),
    ("hashtag", re.compile(r"(?<![\w#])#\w*[^\W\d]\w*")),
)
#: Entities nothing else may be detected inside.
_OPAQUE_ENTITIES = frozenset(
    {
        "code",
        "pre",
        "text_link",
        "text_mention",
        "url",
        "email",
        "bot_command",
        "mention",
        "hashtag",
        "cashtag",
        "phone_number",
        "custom_emoji",
    }
)


def _detect(text: str, entities: list[dict]) -> list[dict]:
    """Add what Telegram finds in plain text by itself: commands, links, mentions, hashtags."""
    taken = [
        (e["offset"], e["offset"] + e["length"]) for e in entities if e["type"] in _OPAQUE_ENTITIES
    ]
    found: list[dict] = []
    for kind, pattern in _DETECTORS:
        for match in pattern.finditer(text):
            start, end = match.start(), match.end()
            if kind == "url":
                while end > start and text[end - 1] in _URL_TAIL:
                    end -= 1
            offset = _u16(text[:start])
            size = _u16(text[start:end])
            if size == 0 or any(offset < b and a < offset + size for a, b in taken):
                continue
            taken.append((offset, offset + size))
            found.append({"type": kind, "offset": offset, "length": size})
    return sorted([*entities, *found], key=lambda e: (e["offset"], -e["length"]))


_SPACES = " \t\r\n\v\f"


def _trim(text: str, entities: list[dict]) -> tuple[str, list[dict]]:
    """Strip surrounding whitespace as Telegram does, moving entities along."""
    left = text.lstrip(_SPACES)
    lead = _u16(text[: len(text) - len(left)])
    result = left.rstrip(_SPACES)
    total = _u16(result)
    fixed: list[dict] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            fixed.append({**entity, "offset": start, "length": end - start})
    return result, fixed


def _format(text: str | None, parse_mode: str | None, entities: Any) -> tuple[str, list[dict]]:
    """Plain text and entities, as Telegram stores a message after parsing its markup."""
    raw = text or ""
    if entities is not None:
        if not isinstance(entities, list) or not all(_is_entity(e) for e in entities):
            raise _bad("can't parse entities JSON object")
        plain, parsed = raw, [dict(e) for e in entities]
    elif parse_mode:
        mode = parse_mode.lower()
        if mode == "html":
            plain, parsed = _parse_html(raw)
        elif mode == "markdownv2":
            plain, parsed = _parse_markdown_v2(raw)
        elif mode == "markdown":
            plain, parsed = _parse_markdown(raw)
        else:
            raise _bad("unsupported parse_mode")
    else:
        plain, parsed = raw, []
    plain, parsed = _trim(plain, parsed)
    return plain, _detect(plain, parsed)


def _is_entity(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("type"), str)
        and isinstance(value.get("offset"), int)
        and isinstance(value.get("length"), int)
        and value["offset"] >= 0
        and value["length"] > 0
    )


# --------------------------------------------------------------------------------------------
# Images


def _jpeg(width: int, height: int) -> bytes:
    """A valid baseline JPEG of the given size, flat grey: small, and instant to make.

    One grey component, Huffman tables with a single one-bit code each, so every 8x8 block
    is two zero bits (DC difference 0, end of block).
    """

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    bits = 2 * blocks
    scan = bytearray(bits // 8)
    if bits % 8:
        scan.append(0xFF >> (bits % 8))
    one_code = bytes([1] + [0] * 15) + b"\x00"
    return b"".join(
        [
            b"\xff\xd8",
            segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            segment(0xDB, b"\x00" + b"\x01" * 64),
            segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
            segment(0xC4, b"\x00" + one_code),
            segment(0xC4, b"\x10" + one_code),
            segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            bytes(scan),
            b"\xff\xd9",
        ]
    )


def _image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a JPEG, PNG, GIF or WebP image; None when it is none of them."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP" and data[12:16] == b"VP8X":
        if len(data) >= 30:
            width = 1 + int.from_bytes(data[24:27], "little")
            height = 1 + int.from_bytes(data[27:30], "little")
            return width, height
        return None
    if not data.startswith(b"\xff\xd8"):
        return None
    index = 2
    while index + 4 <= len(data):
        if data[index] != 0xFF:
            return None
        marker = data[index + 1]
        if marker == 0xFF:
            index += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            index += 2
            continue
        (segment_length,) = struct.unpack(">H", data[index + 2 : index + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if index + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + segment_length
    return None


# --------------------------------------------------------------------------------------------
# Request parameters


class _Params:
    """A Bot API call's parameters, typed on demand the way Telegram reads them.

    Form data carries strings (nested objects as JSON text), JSON bodies carry real values;
    both read the same here.
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

    def get(self, name: str) -> Any:
        value = self.raw.get(name)
        return None if value is None or (isinstance(value, str) and value == "") else value

    def text(self, name: str) -> str | None:
        value = self.get(name)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, _Upload):
            raise _bad(f'field "{name}" must be of type String')
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False)
        return str(value)

    def integer(self, name: str) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        if isinstance(value, bool | dict | list | _Upload):
            raise _bad(f'field "{name}" must be of type Integer')
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise _bad(f'field "{name}" must be of type Integer') from None

    def number(self, name: str) -> float | None:
        value = self.get(name)
        if value is None:
            return None
        if isinstance(value, bool | dict | list | _Upload):
            raise _bad(f'field "{name}" must be of type Number')
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad(f'field "{name}" must be of type Number') from None

    def flag(self, name: str) -> bool:
        value = self.get(name)
        if value is None:
            return False
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)

    def obj(self, name: str, what: str) -> Any:
        value = self.get(name)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise _bad(f"can't parse {what} JSON object") from None
        if isinstance(value, _Upload):
            raise _bad(f"can't parse {what} JSON object")
        return value


async def _read_multipart(reader: MultipartReader, limit: int = MAX_UPLOAD_BYTES) -> dict[str, Any]:
    """Fields and files of a multipart body: files by part name, as `attach://` refers to them."""
    fields: dict[str, Any] = {}
    total = 0
    while True:
        part = await reader.next()
        if part is None:
            return fields
        if isinstance(part, MultipartReader) or not part.name:
            continue
        data = bytes(await part.read(decode=True))
        total += len(data)
        if total > limit:
            raise _ApiError(413, "Request Entity Too Large")
        if part.filename is not None:
            fields[part.name] = _Upload(part.filename, part.headers.get("Content-Type"), data)
        else:
            fields[part.name] = data.decode(part.get_charset("utf-8"), errors="replace")


async def _read_request(request: web.Request) -> dict[str, Any]:
    """Every parameter of a call: query string plus a JSON, urlencoded or multipart body."""
    params: dict[str, Any] = dict(request.query)
    if not request.can_read_body:
        return params
    content_type = request.content_type
    try:
        if content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _bad("can't parse JSON encoded request") from None
            if not isinstance(body, dict):
                raise _bad("JSON object expected")
            params.update(body)
        elif content_type == "multipart/form-data":
            params.update(await _read_multipart(await request.multipart()))
        elif content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            params.update({key: value for key, value in form.items() if isinstance(value, str)})
    except web.HTTPRequestEntityTooLarge:
        raise _ApiError(413, "Request Entity Too Large") from None
    return params


def _public(message: dict) -> dict:
    """A message as the Bot API returns it: only inline keyboards are part of a message."""
    markup = message.get("reply_markup")
    if markup is None or "inline_keyboard" in markup:
        return dict(message)
    return {key: value for key, value in message.items() if key != "reply_markup"}


def _inline_markup(rows: Any) -> dict:
    """Validate an inline keyboard the way Telegram does before it shows one."""
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    count = 0
    for row in rows:
        for button in row:
            count += 1
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad(
                    'can\'t parse inline keyboard button: Field "text" must be of type String'
                )
            if not any(key in button for key in _INLINE_ACTIONS):
                raise _bad(
                    "can't parse inline keyboard button: Text buttons are unallowed in the "
                    "inline keyboard"
                )
            if "callback_data" in button:
                data = button["callback_data"]
                size = len(data.encode()) if isinstance(data, str) else 0
                if not 1 <= size <= MAX_CALLBACK_DATA_BYTES:
                    raise _bad("BUTTON_DATA_INVALID")
            if "url" in button and not re.match(
                r"(https?|tg)://\S+$", str(button["url"]), re.IGNORECASE
            ):
                raise _bad("BUTTON_URL_INVALID")
    if count > MAX_INLINE_BUTTONS:
        raise _bad("reply markup is too long")
    return {"inline_keyboard": [[dict(button) for button in row] for row in rows]}


def _update_type(update: dict) -> str:
    return next((key for key in update if key != "update_id"), "")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _describe(message: dict) -> str:
    """A message's content in a few words, for transcripts."""
    parts: list[str] = []
    if "photo" in message:
        largest = message["photo"][-1]
        tag = f"photo {largest['width']}x{largest['height']}"
        if message.get("media_group_id"):
            tag += f", album {message['media_group_id']}"
        parts.append(f"[{tag}]")
    if "document" in message:
        parts.append(f"[document {message['document'].get('file_name', '')}]")
    if "voice" in message:
        parts.append(f"[voice {message['voice']['duration']}s]")
    if "sticker" in message:
        parts.append(f"[sticker {message['sticker'].get('emoji', '')}]")
    if "location" in message:
        location = message["location"]
        parts.append(f"[location {location['latitude']}, {location['longitude']}]")
    if "contact" in message:
        contact = message["contact"]
        whose = " (own)" if contact.get("user_id") == message["from"]["id"] else ""
        parts.append(f"[contact {contact['phone_number']}{whose}]")
    for key in ("text", "caption"):
        if message.get(key):
            parts.append(message[key])
    return " ".join(parts) or "[message]"


# --------------------------------------------------------------------------------------------
# Chats and the people in them


@dataclass
class _Chat:
    id: int
    type: str
    title: str | None = None
    user: UserHandle | None = None
    messages: list[dict] = field(default_factory=list)
    by_id: dict[int, dict] = field(default_factory=dict)
    deleted: list[dict] = field(default_factory=list)
    edits: Counter[int] = field(default_factory=Counter)
    last_message_id: int = 0
    reply_keyboard: dict | None = None
    keyboards_shown: dict[int, dict] = field(default_factory=dict)
    #: The bot's messages sent with disable_notification: they made no sound on the phone.
    silent: set[int] = field(default_factory=set)
    timeline: list[tuple[Any, ...]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    sent_at: deque[float] = field(default_factory=deque)
    #: A group's or channel's: the bot's membership ("member", "administrator", "restricted",
    #: "left", "kicked") and its rights there (an administrator's, a restricted member's).
    bot_status: str = "member"
    bot_rights: dict[str, bool] = field(default_factory=dict)
    #: A group upgraded to a supergroup: the supergroup's id (Telegram refuses the old one).
    migrated_to: int | None = None
    channel_username: str | None = None

    @property
    def username(self) -> str | None:
        return self.user.username if self.user is not None else self.channel_username

    @property
    def bot_inside(self) -> bool:
        return self.bot_status in ("member", "administrator", "restricted")

    def as_json(self) -> dict:
        if self.user is not None:
            data: dict[str, Any] = {"id": self.id, "first_name": self.user.first_name}
            if self.user.last_name:
                data["last_name"] = self.user.last_name
            if self.user.username:
                data["username"] = self.user.username
            data["type"] = "private"
            return data
        data = {"id": self.id, "title": self.title or "", "type": self.type}
        if self.channel_username:
            data["username"] = self.channel_username
        return data


class UserHandle:
    """One Telegram user to act as: what they send becomes an update for the bot.

    Sending in the private chat starts it (from then on the bot may write there); `chat=`
    sends in a group registered with `emulator.group(...)` instead.
    """

    def __init__(
        self,
        emulator: BotAPIEmulator,
        user_id: int,
        first_name: str,
        *,
        last_name: str | None,
        username: str | None,
        language_code: str | None,
    ) -> None:
        self._emulator = emulator
        self.id = user_id
        self.first_name = first_name
        self.last_name = last_name
        self.username = username
        self.language_code = language_code
        self.phone_number = f"+86138{user_id % 10**8:08d}"
        self.blocked = False

    def __repr__(self) -> str:
        return f"UserHandle(id={self.id}, first_name={self.first_name!r})"

    @property
    def chat_id(self) -> int:
        """The private chat with the bot has the user's id."""
        return self.id

    def as_json(self) -> dict:
        """The User object Telegram puts in `from`."""
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data

    async def send_text(
        self, text: str, *, chat: int | None = None, reply_to: dict | int | None = None
    ) -> dict:
        """Type and send `text`; commands get their bot_command entity as in Telegram."""
        plain, entities = _format(text, None, None)
        if not plain:
            raise ValueError("Telegram apps do not send empty messages")
        content: dict[str, Any] = {"text": plain}
        if entities:
            content["entities"] = entities
        return await self._emulator._user_message(self, chat, content, reply_to=reply_to)

    # The updates sending or tapping in the private chat makes, kept out of the queue: for a
    # test that delivers them itself (to a webhook, forged, twice, to several processes).

    async def text_update(self, text: str) -> dict:
        plain, entities = _format(text, None, None)
        content: dict[str, Any] = {"text": plain, **({"entities": entities} if entities else {})}
        return await self._held_message(content)

    async def photo_update(
        self, *, caption: str | None = None, width: int = 1280, height: int = 960
    ) -> dict:
        return await self._held_message(self._photo_content(caption, None, width, height))

    async def location_update(self, latitude: float, longitude: float) -> dict:
        location = {"latitude": latitude, "longitude": longitude}
        return await self._held_message({"location": location})

    async def contact_update(self, phone_number: str | None = None) -> dict:
        """Sharing one's own contact, as a request_contact button does."""
        contact = self._contact(phone_number or self.phone_number, own=True, first_name=None)
        return await self._held_message({"contact": contact})

    async def tap_update(
        self, message: dict | int, button: str, *, chat: int | None = None
    ) -> dict:
        """Tapping an inline button (by its text or callback data) of a message in the private
        chat, or in `chat`; the query is known to answerCallbackQuery as a delivered one is."""
        target, stored = self._emulator._tappable(self, message, chat)
        data, label = self._callback_data(target, stored, button)
        query = self._emulator._new_query(self, target, stored, data, label)
        return {"update_id": next(self._emulator._update_ids), "callback_query": query}

    async def _held_message(self, content: dict) -> dict:
        message = await self._emulator._user_message(self, None, content, queue=False)
        return {"update_id": next(self._emulator._update_ids), "message": _public(message)}

    def _photo_content(
        self, caption: str | None, media_group_id: str | None, width: int, height: int
    ) -> dict[str, Any]:
        content: dict[str, Any] = {"photo": self._emulator._new_photo(width, height)}
        if media_group_id is not None:
            content["media_group_id"] = media_group_id
        if caption:
            plain, entities = _format(caption, None, None)
            content["caption"] = plain
            if entities:
                content["caption_entities"] = entities
        return content

    def _contact(self, phone_number: str, *, own: bool, first_name: str | None) -> dict:
        contact: dict[str, Any] = {"phone_number": phone_number}
        if own:
            contact["first_name"] = self.first_name
            if self.last_name:
                contact["last_name"] = self.last_name
            contact["user_id"] = self.id
        else:
            contact["first_name"] = first_name or "Contact"
        return contact

    def _callback_data(self, chat: _Chat, stored: dict, button: str) -> tuple[str, str]:
        """The data and label of the callback button `button` (its text, or its data)."""
        rows = (stored.get("reply_markup") or {}).get("inline_keyboard", [])
        flat = [b for row in rows for b in row]
        chosen = next((b for b in flat if b.get("text") == button), None) or next(
            (b for b in flat if b.get("callback_data") == button), None
        )
        if chosen is None:
            raise LookupError(
                f"no button {button!r} on message {stored['message_id']} in chat {chat.id}; "
                f"its buttons are {[b.get('text') for b in flat]}"
            )
        if "callback_data" not in chosen:
            kinds = [key for key in _INLINE_ACTIONS if key in chosen]
            raise ValueError(f"button {button!r} is a {kinds[0]} button, not a callback button")
        return chosen["callback_data"], chosen.get("text", button)

    async def send_photo(
        self,
        *,
        caption: str | None = None,
        chat: int | None = None,
        media_group_id: str | None = None,
        width: int = 1280,
        height: int = 960,
        data: bytes | None = None,
    ) -> dict:
        """Send a photo: a real JPEG of `width` x `height`, which getFile can download; or
        `data`, an image file of one's own (JPEG, PNG, GIF, WebP), as the full-size picture."""
        if data is not None:
            size = _image_size(data)
            if size is None:
                raise ValueError("the photo is no JPEG, PNG, GIF or WebP image")
            width, height = size
        content = self._photo_content(caption, media_group_id, width, height)
        if data is not None:
            content["photo"] = self._emulator._new_photo(width, height, data)
        return await self._emulator._user_message(self, chat, content)

    async def send_album(
        self, count: int, *, caption: str | None = None, chat: int | None = None
    ) -> list[dict]:
        """Send `count` photos as one album: one message each, a shared media_group_id."""
        if not 1 <= count <= MAX_ALBUM_SIZE:
            raise ValueError(f"an album has 1 to {MAX_ALBUM_SIZE} items, not {count}")
        group_id = self._emulator._new_media_group_id()
        return [
            await self.send_photo(
                caption=caption if index == 0 else None, chat=chat, media_group_id=group_id
            )
            for index in range(count)
        ]

    async def send_voice(self, duration: int = 5, *, chat: int | None = None) -> dict:
        """Send a voice note of `duration` seconds (Ogg bytes, downloadable)."""
        stored = self._emulator._store_file("voice", _OGG + bytes(160 * max(duration, 1)), ".oga")
        voice = {
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        self._emulator._media[stored.file_id] = ("voice", voice)
        return await self._emulator._user_message(self, chat, {"voice": voice})

    async def send_document(
        self,
        file_name: str = "a.pdf",
        mime_type: str = "application/pdf",
        *,
        chat: int | None = None,
        data: bytes | None = None,
        caption: str | None = None,
    ) -> dict:
        """Send a file; a PDF gets real PDF bytes unless `data` is given."""
        if data is None:
            data = _PDF if mime_type == "application/pdf" else secrets.token_bytes(256)
        document = self._emulator._new_document(data, file_name, mime_type)
        content: dict[str, Any] = {"document": document}
        if caption:
            content["caption"] = caption
        return await self._emulator._user_message(self, chat, content)

    async def send_sticker(self, *, chat: int | None = None, emoji: str = "👍") -> dict:
        stored = self._emulator._store_file("sticker", _WEBP, ".webp")
        sticker = {
            "width": 512,
            "height": 512,
            "emoji": emoji,
            "set_name": "VillageStickers",
            "is_animated": False,
            "is_video": False,
            "type": "regular",
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        self._emulator._media[stored.file_id] = ("sticker", sticker)
        return await self._emulator._user_message(self, chat, {"sticker": sticker})

    async def send_location(
        self, latitude: float, longitude: float, *, chat: int | None = None
    ) -> dict:
        location = {"latitude": latitude, "longitude": longitude}
        return await self._emulator._user_message(self, chat, {"location": location})

    async def send_contact(
        self,
        phone_number: str,
        *,
        own: bool = True,
        chat: int | None = None,
        first_name: str | None = None,
    ) -> dict:
        """Share a contact; `own=True` is what a request_contact button sends (with user_id)."""
        contact = self._contact(phone_number, own=own, first_name=first_name)
        return await self._emulator._user_message(self, chat, {"contact": contact})

    async def tap(self, message: dict | int, button: str, *, chat: int | None = None) -> str:
        """Tap an inline button by its text (or callback data); returns the query id.

        Looks at the message as it is now, so a button an edit removed cannot be tapped.
        """
        target, stored = self._emulator._tappable(self, message, chat)
        data, label = self._callback_data(target, stored, button)
        return self._emulator._callback_query(self, target, stored, data, label)

    async def tap_data(self, message: dict | int, data: str, *, chat: int | None = None) -> str:
        """A callback query with any data, as a modified client could send: for forgery tests."""
        target, stored = self._emulator._tappable(self, message, chat)
        return self._emulator._callback_query(self, target, stored, data, f"data {data!r}")

    async def press(self, button_text: str, *, chat: int | None = None) -> dict:
        """Press a button of the reply keyboard the bot showed last in this chat."""
        if self._reply_button(button_text, chat) == "contact":
            return await self.send_contact(self.phone_number, own=True, chat=chat)
        return await self.send_text(button_text, chat=chat)

    async def press_update(self, button_text: str) -> dict:
        """The update `press` makes in the private chat, kept out of the queue."""
        if self._reply_button(button_text, None) == "contact":
            return await self.contact_update()
        return await self.text_update(button_text)

    def _reply_button(self, button_text: str, chat: int | None) -> str:
        """What pressing `button_text` on the reply keyboard sends: "text" or "contact"."""
        target = self._emulator._chats.get(self.id if chat is None else chat)
        keyboard = target.reply_keyboard if target is not None else None
        if keyboard is None:
            raise LookupError(f"the bot shows {self.first_name} no reply keyboard")
        for row in keyboard.get("keyboard", []):
            for button in row:
                if _label(button) != button_text:
                    continue
                if isinstance(button, dict) and button.get("request_contact"):
                    return "contact"
                if isinstance(button, dict) and button.get("request_location"):
                    raise ValueError(
                        f"{button_text!r} asks for a location: use send_location(lat, lon)"
                    )
                return "text"
        raise LookupError(
            f"no reply button {button_text!r}; the keyboard has "
            f"{[_label(b) for row in keyboard.get('keyboard', []) for b in row]}"
        )

    async def forward(self, message: dict, *, chat: int | None = None) -> dict:
        """Forward a channel's post (`ChannelHandle.post`) to the bot, as Telegram's Forward
        does: the copy carries `forward_origin` naming the channel and the post."""
        if message["chat"].get("type") == "channel":
            origin = {"type": "channel", "chat": message["chat"],
                      "message_id": message["message_id"], "date": message["date"]}
        else:
            origin = {"type": "user", "sender_user": message["from"], "date": message["date"]}
        content: dict[str, Any] = {"forward_origin": origin}
        for key in ("text", "entities", "caption", "caption_entities", "photo"):
            if key in message:
                content[key] = message[key]
        return await self._emulator._user_message(self, chat, content)

    def block_bot(self) -> None:
        """Block the bot: sends to this user answer 403 until `unblock_bot`."""
        if not self.blocked:
            self.blocked = True
            self._emulator._member_changed(self, "member", "kicked")

    def unblock_bot(self) -> None:
        if self.blocked:
            self.blocked = False
            self._emulator._member_changed(self, "kicked", "member")


class GroupHandle:
    """A group or supergroup the bot is a member of."""

    def __init__(self, emulator: BotAPIEmulator, chat: _Chat) -> None:
        self._emulator = emulator
        self._chat = chat

    def __repr__(self) -> str:
        return f"GroupHandle(chat_id={self.chat_id}, title={self.title!r})"

    @property
    def chat_id(self) -> int:
        return self._chat.id

    @property
    def title(self) -> str:
        return self._chat.title or ""

    @property
    def type(self) -> str:
        return self._chat.type

    def as_json(self) -> dict:
        return self._chat.as_json()

    def messages(self) -> list[dict]:
        return self._emulator.messages(self.chat_id)

    @property
    def bot_status(self) -> str:
        """The bot's membership here, as getChatMember reports it."""
        return self._chat.bot_status

    async def add_bot(self, by: UserHandle, *, admin: bool = False) -> None:
        """`by` adds the bot: `my_chat_member` (left → member or administrator, from `by`),
        and in a group the service message `new_chat_members` with the bot."""
        rights = _admin_rights(self._chat.type) if admin else {}
        self._emulator._bot_member_changed(
            self._chat, by, "administrator" if admin else "member", rights
        )
        if self._chat.type != "channel":
            bot = self._emulator._bot_json()
            await self._emulator._service_message(
                self._chat, by, {"new_chat_participant": bot, "new_chat_member": bot,
                                 "new_chat_members": [bot]},
            )

    async def remove_bot(self, by: UserHandle, *, kicked: bool = True) -> None:
        """`by` removes the bot (banned with `kicked`, else it merely left): only
        `my_chat_member` reaches it, and from then on sends here are refused with 403."""
        self._emulator._bot_member_changed(self._chat, by, "kicked" if kicked else "left", {})
        await asyncio.sleep(0)

    async def restrict_bot(self, by: UserHandle, *, can_send_messages: bool = False) -> None:
        """An administrator restricts the bot: with `can_send_messages` off, sends answer 400."""
        self._emulator._bot_member_changed(
            self._chat, by, "restricted", _restricted_rights(can_send_messages)
        )
        await asyncio.sleep(0)

    async def migrate(self, new_chat_id: int, by: UserHandle) -> GroupHandle:
        """Upgrade this group to a supergroup (`BotAPIEmulator.migrate`)."""
        return await self._emulator.migrate(self, new_chat_id, by)

    async def set_bot_rights(self, by: UserHandle, **rights: bool) -> None:
        """Make the bot an administrator with these rights changed from the usual ones
        (e.g. `can_post_messages=False` in a channel)."""
        self._emulator._bot_member_changed(
            self._chat, by, "administrator", {**_admin_rights(self._chat.type), **rights}
        )
        await asyncio.sleep(0)


class ChannelHandle(GroupHandle):
    """A channel: the bot is in it only as an administrator (`add_bot(by, admin=True)`);
    `post` publishes as the channel, which a user may then `forward` to the bot."""

    async def post(self, text: str) -> dict:
        chat = self._chat
        chat.last_message_id += 1
        message: dict[str, Any] = {
            "message_id": chat.last_message_id,
            "sender_chat": chat.as_json(),
            "chat": chat.as_json(),
            "date": int(time.time()),
            "text": text,
        }
        self._emulator._store(chat, message)
        if chat.bot_status == "administrator":
            self._emulator._enqueue("channel_post", _public(message))
        await asyncio.sleep(0)
        return message


def _admin_rights(chat_type: str) -> dict[str, bool]:
    """What Telegram's apps grant a bot made administrator, by default."""
    rights = {
        "can_be_edited": False,
        "is_anonymous": False,
        "can_manage_chat": True,
        "can_delete_messages": True,
        "can_manage_video_chats": True,
        "can_restrict_members": True,
        "can_promote_members": False,
        "can_change_info": True,
        "can_invite_users": True,
        "can_post_stories": False,
        "can_edit_stories": False,
        "can_delete_stories": False,
        "can_send_welcome_messages": False,
    }
    if chat_type == "channel":
        rights.update(can_post_messages=True, can_edit_messages=True)
    else:
        rights.update(can_pin_messages=True)
    return rights


def _restricted_rights(can_send_messages: bool) -> dict[str, Any]:
    allowed = can_send_messages
    return {
        "is_member": True,
        "can_send_messages": allowed,
        "can_send_audios": allowed,
        "can_send_documents": allowed,
        "can_send_photos": allowed,
        "can_send_videos": allowed,
        "can_send_video_notes": allowed,
        "can_send_voice_notes": allowed,
        "can_send_polls": allowed,
        "can_send_other_messages": allowed,
        "can_add_web_page_previews": allowed,
        "can_react_to_messages": True,
        "can_edit_tag": False,
        "can_change_info": False,
        "can_invite_users": False,
        "can_pin_messages": False,
        "can_manage_topics": False,
        "until_date": 0,
    }


# --------------------------------------------------------------------------------------------
# The emulator

BotMessageHook = Callable[[int, dict, bool], None]
_Handler = Callable[["_Params"], Awaitable[Any]]


class BotAPIEmulator:
    """Telegram, as far as one bot can tell: the Bot API over HTTP plus the users it serves.

    Use `async with BotAPIEmulator() as emulator:` and point the bot at `emulator.base_url`.
    """

    def __init__(
        self,
        token: str = "123456:TEST-TOKEN",
        bot_username: str = "villagebot",
        bot_name: str = "Village Bot",
        host: str = "127.0.0.1",
        port: int = 0,
        limits: bool = False,
        webhook_http: bool = False,
    ) -> None:
        """`webhook_http=True` is the one difference from Telegram, for tests: `setWebhook`
        then also accepts http://127.0.0.1 on any port (Telegram wants https on 443, 80, 88
        or 8443, and refuses the rest with its error texts, as the emulator does otherwise)."""
        head, _, _ = token.partition(":")
        if not head.isdigit():
            raise ValueError("a bot token starts with the bot's numeric id, as in 123456:ABC")
        self.token = token
        self.bot_id = int(head)
        self.bot_username = bot_username
        self.bot_name = bot_name
        self.host = host
        self.port = port
        self.limits = limits
        self.webhook_http = webhook_http
        self.sending_limits = SendingLimits()
        #: Telegram's default for bots: in groups only commands and replies reach the bot.
        self.privacy_mode = True
        self.webhook_timeout = 10.0
        #: Telegram keeps its connections to a webhook open between updates. Off, each POST
        #: has a connection of its own, closed once answered: a connection the bot holds open
        #: is then an update it is handling (`bench.kills` finds a busy worker so).
        self.webhook_keep_alive = True
        self.stats = EmulatorStats()
        self.callback_answers: list[dict] = []

        self._runner: web.AppRunner | None = None
        self._client: ClientSession | None = None
        self._closing = False
        self._users: dict[int, UserHandle] = {}
        self._chats: dict[int, _Chat] = {}
        self._groups: dict[int, GroupHandle] = {}
        self._updates: deque[_Queued] = deque()
        #: The latest updates by id, for `redeliver`.
        self._recent_updates: dict[int, dict] = {}
        self._update_ids = itertools.count(1)
        self._last_update_id = 0
        self._allowed_updates: frozenset[str] | None = None
        self._updates_signal = _Signal()
        self._bot_signal = _Signal()
        self._poll_generation = 0
        self._hooks: list[BotMessageHook] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._fault_rate = 0.0
        self._fault_kinds: tuple[int | str, ...] = FAULT_KINDS
        self._fault_random = random.Random()
        self._fault_retry_after = (1, 3)
        #: Every random fault injected, in order (`faults`).
        self.injected: list[InjectedFault] = []
        self._sent_recently: deque[float] = deque()
        self._files: dict[str, _StoredFile] = {}
        self._paths: dict[str, _StoredFile] = {}
        self._media: dict[str, tuple[str, Any]] = {}
        self._file_numbers = itertools.count(1)
        self._queries: dict[str, dict] = {}
        self._commands: dict[tuple[Any, ...], list[dict]] = {}
        self._menu_buttons: dict[int | None, dict] = {}
        self._descriptions: dict[tuple[str, str], str] = {}
        self._webhook_url = ""
        self._webhook_secret: str | None = None
        self._webhook_error: tuple[int, str] | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_max_connections = _DEFAULT_MAX_CONNECTIONS
        self._webhook_posts: set[asyncio.Task[None]] = set()
        #: Per sender: when its next delivery may be tried, and the wait after a next failure.
        self._webhook_backoff: dict[Any, tuple[float, float]] = {}

        handlers: dict[str, _Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "sendVoice": self._send_voice,
            "sendMediaGroup": self._send_media_group,
            "sendLocation": self._send_location,
            "sendChatAction": self._send_chat_action,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "editMessageCaption": self._edit_message_caption,
            "deleteMessage": self._delete_message,
            "deleteMessages": self._delete_messages,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "setChatMenuButton": self._set_chat_menu_button,
            "getChatMenuButton": self._get_chat_menu_button,
            "setMyDescription": functools.partial(self._set_text, "description", 512),
            "getMyDescription": functools.partial(self._get_text, "description"),
            "setMyShortDescription": functools.partial(self._set_text, "short_description", 120),
            "getMyShortDescription": functools.partial(self._get_text, "short_description"),
            "setMyName": functools.partial(self._set_text, "name", 64),
            "getMyName": functools.partial(self._get_text, "name"),
            "getFile": self._get_file,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
        }
        self._handlers = handlers
        self._method_names = {name.lower(): name for name in handlers}

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Where the Bot API answers; give it to `TelegramAPIServer.from_base`."""
        if self._runner is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen on `host`:`port`; port 0 picks a free one, readable from `base_url`."""
        if self._runner is not None:
            return
        self._closing = False
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
        app.add_routes(
            [
                web.route("*", "/bot{token}/{method}", self._handle_api),
                web.get("/file/bot{token}/{path:.+}", self._handle_file),
                *self._control_routes(),
            ]
        )
        # Handler cancellation ends a long poll whose client went away.
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        self._client = ClientSession(
            connector=TCPConnector(force_close=not self.webhook_keep_alive)
        )

    async def stop(self) -> None:
        """Answer pending long polls, stop webhook delivery and close the server."""
        self._closing = True
        self._updates_signal.notify()
        self._bot_signal.notify()
        task, self._webhook_task = self._webhook_task, None
        posts, self._webhook_posts = self._webhook_posts, set()
        for running in [task, *posts]:
            if running is not None:
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def __aenter__(self) -> BotAPIEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- acting as users -------------------------------------------------------------------

    def user(
        self,
        user_id: int,
        first_name: str | None = None,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = _UNSET,
    ) -> UserHandle:
        """The user with this id; the same handle every time, updated with what is given.

        A new user is called "User" and speaks zh-hans unless told otherwise
        (`language_code=None`: a client that sends no language).
        """
        if user_id <= 0 or user_id == self.bot_id:
            raise ValueError(f"{user_id} cannot be a user id")
        handle = self._users.get(user_id)
        if handle is None:
            handle = UserHandle(
                self,
                user_id,
                first_name or "User",
                last_name=last_name,
                username=username,
                language_code=DEFAULT_LANGUAGE if language_code is _UNSET else language_code,
            )
            self._users[user_id] = handle
            return handle
        if first_name is not None:
            handle.first_name = first_name
        if last_name is not None:
            handle.last_name = last_name
        if username is not None:
            handle.username = username
        if language_code is not _UNSET:
            handle.language_code = language_code
        return handle

    def group(
        self, chat_id: int, title: str, type: str = "group", *, bot_inside: bool = True
    ) -> GroupHandle:
        """Register a group (negative id); users may then write there. The bot is a member
        already, or with `bot_inside=False` not yet (`GroupHandle.add_bot` adds it)."""
        if chat_id >= 0:
            raise ValueError("group chat ids are negative")
        if type not in ("group", "supergroup"):
            raise ValueError(f"a group is a 'group' or a 'supergroup', not {type!r}")
        existing = self._groups.get(chat_id)
        if existing is not None:
            existing._chat.title = title
            existing._chat.type = type
            return existing
        chat = _Chat(id=chat_id, type=type, title=title)
        if not bot_inside:
            chat.bot_status = "left"
        self._chats[chat_id] = chat
        handle = GroupHandle(self, chat)
        self._groups[chat_id] = handle
        return handle

    def channel(self, chat_id: int, title: str, *, username: str | None = None) -> ChannelHandle:
        """Register a channel (negative id) the bot is not in yet: `add_bot(by, admin=True)`."""
        if chat_id >= 0:
            raise ValueError("channel ids are negative")
        existing = self._groups.get(chat_id)
        if isinstance(existing, ChannelHandle):
            return existing
        if existing is not None:
            raise ValueError(f"chat {chat_id} is a group already")
        chat = _Chat(id=chat_id, type="channel", title=title, bot_status="left",
                     channel_username=username)
        self._chats[chat_id] = chat
        handle = ChannelHandle(self, chat)
        self._groups[chat_id] = handle
        return handle

    async def migrate(self, group: GroupHandle, new_chat_id: int, by: UserHandle) -> GroupHandle:
        """`by` upgrades a group to a supergroup with `new_chat_id`: the bot gets the message
        with `migrate_to_chat_id` in the old group and the one with `migrate_from_chat_id` in
        the new; sending to the old id is refused from then on with `migrate_to_chat_id`."""
        old = group._chat
        if old.type != "group" or old.migrated_to is not None:
            raise ValueError(f"chat {old.id} is not a group that can be upgraded")
        if new_chat_id >= 0 or new_chat_id in self._chats:
            raise ValueError(f"{new_chat_id} cannot be the supergroup's id")
        supergroup = self.group(new_chat_id, old.title or "", "supergroup")
        supergroup._chat.bot_status = old.bot_status
        supergroup._chat.bot_rights = dict(old.bot_rights)
        if old.bot_inside:
            await self._service_message(old, by, {"migrate_to_chat_id": new_chat_id})
            await self._service_message(supergroup._chat, by, {"migrate_from_chat_id": old.id})
        old.migrated_to = new_chat_id
        return supergroup

    def inject_update(self, update: dict) -> int:
        """Queue any raw update; returns its update_id.

        An update that already has an update_id keeps it and is delivered even when the bot
        has confirmed past it: that is how a redelivered update looks to a bot.
        """
        update = dict(update)
        if "update_id" not in update:
            update["update_id"] = next(self._update_ids)
        self._last_update_id = max(self._last_update_id, int(update["update_id"]))
        self._recent_updates[int(update["update_id"])] = update
        while len(self._recent_updates) > RECENT_UPDATES:
            del self._recent_updates[next(iter(self._recent_updates))]
        self._updates.append(_Queued(update))
        self.stats.updates_enqueued += 1
        self._updates_signal.notify()
        return int(update["update_id"])

    def redeliver(self, update_id: int) -> None:
        """Send an update again, as Telegram does when the bot's answer to it never came."""
        self.inject_update(self._recent_updates[update_id])

    @property
    def last_update_id(self) -> int:
        return self._last_update_id

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    @property
    def webhook_posts_in_flight(self) -> int:
        """Updates POSTed to the webhook and not yet answered."""
        return len(self._webhook_posts)

    # ---- faults ----------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls of `method` with this error instead.

        Without a description Telegram's usual one for the status is used; a 429 always
        carries parameters.retry_after (1 second unless given).
        """
        name = self._canonical(method)
        if status == 429:
            retry_after = retry_after or 1
        text = description or self._status_description(status, retry_after)
        queue = self._faults.setdefault(name, deque())
        queue.extend(_Fault(status, text, retry_after) for _ in range(times))

    def drop_connection_next(self, method: str, times: int = 1) -> None:
        """Close the connection on the next `times` calls of `method`, answering nothing."""
        queue = self._faults.setdefault(self._canonical(method), deque())
        queue.extend(_Fault(0, "", None, drop=True) for _ in range(times))

    def faults(
        self,
        rate: float,
        *,
        seed: int | None = None,
        kinds: tuple[int | str, ...] = FAULT_KINDS,
        retry_after: tuple[int, int] = (1, 3),
    ) -> None:
        """Answer a share `rate` of all calls, of every method, with a random fault; 0 stops.

        Kinds: 429 (retry_after drawn from `retry_after`, as Telegram's flood control gives
        it), 500 ("Internal Server Error"), "drop" (the connection is cut; half of the drops
        happen after the call took effect, so the bot never hears of a message that was
        sent). The draws follow `seed`; `injected` and `stats.injected` count what was done.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("the fault rate is a share between 0 and 1")
        unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
        if unknown or not kinds:
            raise ValueError(f"fault kinds are among {FAULT_KINDS}, not {unknown or kinds}")
        self._fault_rate = rate
        self._fault_kinds = tuple(kinds)
        self._fault_random = random.Random(seed)
        self._fault_retry_after = retry_after

    def _random_fault(self, name: str) -> tuple[str, int | None] | None:
        """Whether this call meets a random fault: its kind, and a 429's retry_after."""
        draw = self._fault_random
        if not self._fault_rate or draw.random() >= self._fault_rate:
            return None
        kind = str(draw.choice(self._fault_kinds))
        if kind == "429":
            return kind, draw.randint(*self._fault_retry_after)
        if kind == "drop" and draw.random() < 0.5:
            return "drop after", None
        return kind, None

    def _canonical(self, method: str) -> str:
        name = self._method_names.get(method.lower())
        if name is None:
            raise ValueError(f"the emulator does not implement {method!r}")
        return name

    @staticmethod
    def _status_description(status: int, retry_after: int | None) -> str:
        if status == 429:
            return f"Too Many Requests: retry after {retry_after}"
        return _STATUS_TEXT.get(status, "Internal Server Error")

    # ---- reading what chats received -------------------------------------------------------

    def messages(self, chat_id: int) -> list[dict]:
        """Every message in the chat, oldest first, as it looks now (edits applied in place)."""
        chat = self._chats.get(chat_id)
        return list(chat.messages) if chat is not None else []

    def bot_messages(self, chat_id: int) -> list[dict]:
        return [m for m in self.messages(chat_id) if m["from"]["id"] == self.bot_id]

    def notifying_messages(self, chat_id: int) -> list[dict]:
        """The bot's messages in the chat that made the phone ring (not sent silently)."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return []
        return [m for m in self.bot_messages(chat_id) if m["message_id"] not in chat.silent]

    def deleted_messages(self, chat_id: int) -> list[dict]:
        chat = self._chats.get(chat_id)
        return list(chat.deleted) if chat is not None else []

    def edit_count(self, chat_id: int, message_id: int) -> int:
        chat = self._chats.get(chat_id)
        return chat.edits[message_id] if chat is not None else 0

    def chat_actions(self, chat_id: int) -> list[str]:
        chat = self._chats.get(chat_id)
        return list(chat.actions) if chat is not None else []

    def chat(self, chat_id: int) -> dict | None:
        chat = self._chats.get(chat_id)
        return chat.as_json() if chat is not None else None

    def reply_keyboard(self, chat_id: int) -> list[str]:
        """The labels of the reply keyboard the chat's client shows now, row after row."""
        markup = self.reply_keyboard_markup(chat_id) or {}
        return [_label(button) for row in markup.get("keyboard", []) for button in row]

    def reply_keyboard_markup(self, chat_id: int) -> dict | None:
        """The whole ReplyKeyboardMarkup the chat shows now (Telegram keeps it on the client)."""
        chat = self._chats.get(chat_id)
        return chat.reply_keyboard if chat is not None else None

    async def wait_keyboard(self, chat_id: int, label: str, *, timeout: float = 5.0) -> None:
        """Wait until the chat's reply keyboard offers `label`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._bot_signal.event
            if label in self.reply_keyboard(chat_id):
                return
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise TimeoutError(
                    f"no keyboard button {label!r} in chat {chat_id} within {timeout:g}s; it has "
                    f"{self.reply_keyboard(chat_id)}; the chat ends with:\n"
                    f"{self.transcript(chat_id, last=12)}"
                )
            await _wait(event, remaining)

    async def wait_for(
        self,
        chat_id: int,
        predicate: Callable[[dict], bool] | str | None = None,
        *,
        timeout: float = 5.0,
        after: int | None = None,
        newest: bool = False,
    ) -> dict:
        """A bot message in the chat, sent or edited, that satisfies `predicate`.

        A string predicate means "text or caption contains it"; `after` counts only messages
        with a greater id. The earliest match wins, so a conversation reads in order; with
        `newest` the latest does (the message on screen now). Raises TimeoutError with the
        chat's last messages when nothing matches in time.
        """
        matches = self._matcher(predicate)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._bot_signal.event
            candidates = [
                m for m in self.bot_messages(chat_id) if after is None or m["message_id"] > after
            ]
            if newest:
                candidates.reverse()
            found = next((m for m in candidates if matches(m)), None)
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise TimeoutError(self._timeout_report(chat_id, predicate, after, timeout))
            await _wait(event, remaining)

    @staticmethod
    def _matcher(predicate: Callable[[dict], bool] | str | None) -> Callable[[dict], bool]:
        if predicate is None:
            return lambda message: True
        if isinstance(predicate, str):
            needle = predicate
            return lambda message: needle in (message.get("text") or message.get("caption") or "")
        return predicate

    def _timeout_report(
        self,
        chat_id: int,
        predicate: Callable[[dict], bool] | str | None,
        after: int | None,
        timeout: float,
    ) -> str:
        if isinstance(predicate, str):
            wanted = f"containing {predicate!r}"
        elif predicate is None:
            wanted = "at all"
        else:
            wanted = f"matching {getattr(predicate, '__name__', 'the predicate')}"
        since = f" after message {after}" if after is not None else ""
        lines = self.transcript(chat_id, last=12) or "(the chat is empty)"
        return (
            f"no bot message {wanted} in chat {chat_id}{since} within {timeout:g}s; "
            f"the chat ends with:\n{lines}"
        )

    def answer_for(self, callback_query_id: str) -> dict | None:
        """How the bot answered this callback query, or None while it has not."""
        return next(
            (a for a in self.callback_answers if a["callback_query_id"] == callback_query_id),
            None,
        )

    async def wait_answer(self, callback_query_id: str, *, timeout: float = 5.0) -> dict:
        """The bot's answerCallbackQuery for this query, once it comes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._bot_signal.event
            answer = self.answer_for(callback_query_id)
            if answer is not None:
                return answer
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise TimeoutError(
                    f"callback query {callback_query_id} was not answered within {timeout:g}s"
                )
            await _wait(event, remaining)

    def commands(self, scope: dict | None = None, language_code: str = "") -> list[dict]:
        """The command menu set for exactly this scope and language, as getMyCommands gives."""
        key = self._scope_key(scope or {"type": "default"}, language_code, strict=False)
        return [dict(command) for command in self._commands.get(key, [])]

    def menu_button(self, chat_id: int | None = None) -> dict | None:
        return self._menu_buttons.get(chat_id)

    def description(self, language_code: str = "") -> str:
        return self._descriptions.get(("description", language_code), "")

    def short_description(self, language_code: str = "") -> str:
        return self._descriptions.get(("short_description", language_code), "")

    @property
    def webhook_url(self) -> str:
        return self._webhook_url

    def on_bot_message(self, callback: BotMessageHook) -> Callable[[], None]:
        """Call `callback(chat_id, message, edited)` on every bot send and edit.

        Returns a function that removes the hook again.
        """
        self._hooks.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._hooks.remove(callback)

        return remove

    def transcript(self, chat_id: int, *, last: int | None = None) -> str:
        """The chat as a person would read it: `bot: text [buttons: A | B]`, `user: text`."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return ""
        lines: list[str] = []
        for entry in chat.timeline:
            if entry[0] == "message":
                message = chat.by_id.get(entry[1])
                if message is not None:
                    lines.append(self._transcript_line(chat, message))
            elif entry[0] == "tap":
                lines.append(f"{self._speaker(chat, entry[1])}: [taps {entry[2]}]")
            elif entry[0] == "answer":
                kind = "alert" if entry[2] else "notice"
                lines.append(f"bot: ({kind}) {entry[1]}")
        if last is not None:
            lines = lines[-last:]
        return "\n".join(lines)

    def _speaker(self, chat: _Chat, user_id: int) -> str:
        if user_id == self.bot_id:
            return "bot"
        if chat.type == "private":
            return "user"
        user = self._users.get(user_id)
        return f"user {user.first_name if user else user_id}"

    def _transcript_line(self, chat: _Chat, message: dict) -> str:
        body = _describe(message)
        if "inline_keyboard" in (message.get("reply_markup") or {}):
            body += f" [buttons: {' | '.join(buttons(message))}]"
        shown = chat.keyboards_shown.get(message["message_id"]) or {}
        if "keyboard" in shown:
            body += f" [keyboard: {' | '.join(reply_buttons({'reply_markup': shown}))}]"
        elif shown.get("remove_keyboard"):
            body += " [keyboard removed]"
        if "edit_date" in message:
            body += " (edited)"
        speaker = self._speaker(chat, message["from"]["id"])
        return f"{speaker}: {body}".replace("\n", "\n    ")

    # ---- HTTP: the Bot API -----------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        name = self._method_names.get(request.match_info["method"].lower())
        if name is None:
            return self._error(404, "Not Found")
        self.stats.requests[name] += 1
        faults = self._faults.get(name)
        if faults:
            fault = faults.popleft()
            if fault.drop:
                return await self._drop(request)
            parameters = {"retry_after": fault.retry_after} if fault.retry_after else None
            return self._error(fault.status, fault.description, parameters)
        chance = self._random_fault(name)
        if chance is not None and chance[0] != "drop after":
            return await self._inject(request, name, *chance)
        try:
            params = _Params(await _read_request(request))
            result = await self._handlers[name](params)
        except _ApiError as error:
            if chance is not None:  # refused anyway: nothing took effect
                return await self._inject(request, name, "drop", None)
            return self._error(error.status, error.description, error.parameters)
        if chance is not None:
            return await self._inject(request, name, "drop after", None, params, result)
        body: dict[str, Any] = {"ok": True}
        if isinstance(result, _Described):
            body["result"] = result.result
            body["description"] = result.description
        else:
            body["result"] = result
        return web.json_response(body, dumps=_dumps)

    async def _inject(
        self,
        request: web.Request,
        name: str,
        kind: str,
        retry_after: int | None,
        params: _Params | None = None,
        result: Any = None,
    ) -> web.StreamResponse:
        """Answer with the random fault drawn for this call, and remember it."""
        if params is None:
            with contextlib.suppress(Exception):
                params = _Params(await _read_request(request))
        chat_id = None
        if params is not None:
            with contextlib.suppress(_ApiError):
                chat_id = params.integer("chat_id")
        results = result if isinstance(result, list) else [result]
        message_ids = [
            item["message_id"] for item in results
            if isinstance(item, dict) and isinstance(item.get("message_id"), int)
        ]
        self.injected.append(
            InjectedFault(kind, name, chat_id, kind == "drop after", message_ids)
        )
        self.stats.injected[kind] += 1
        if kind.startswith("drop"):
            return await self._drop(request)
        if kind == "429":
            return self._error(
                429, self._status_description(429, retry_after), {"retry_after": retry_after}
            )
        return self._error(500, _STATUS_TEXT[500])

    def _error(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> web.Response:
        self.stats.errors[status] += 1
        if status == 429:
            self.stats.too_many_requests += 1
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status, dumps=_dumps)

    @staticmethod
    async def _drop(request: web.Request) -> web.StreamResponse:
        """Cut the connection mid-request: to the bot it is a network error."""
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        stored = self._paths.get(request.match_info["path"])
        if stored is None:
            return self._error(404, "Not Found")
        content_type = mimetypes.guess_type(stored.file_path)[0] or "application/octet-stream"
        return web.Response(body=stored.data, content_type=content_type)

    # ---- updates, long polling and webhooks ------------------------------------------------

    def _enqueue(self, kind: str, payload: dict) -> None:
        self.inject_update({kind: payload})

    def _is_allowed(self, update: dict) -> bool:
        kind = _update_type(update)
        if self._allowed_updates is None:
            return kind not in _OPT_IN_UPDATES
        return kind in self._allowed_updates

    def _drop_disallowed(self) -> None:
        if any(not self._is_allowed(q.update) for q in self._updates):
            self._updates = deque(q for q in self._updates if self._is_allowed(q.update))

    def _set_allowed(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad("can't parse allowed updates JSON object")
        self._allowed_updates = frozenset(value) if value else None

    async def _get_updates(self, p: _Params) -> list[dict]:
        if self._webhook_url:
            raise _ApiError(409, WEBHOOK_CONFLICT)
        offset = p.integer("offset")
        limit = min(max(p.integer("limit") or 100, 1), 100)
        timeout = max(p.number("timeout") or 0.0, 0.0)
        self._set_allowed(p.obj("allowed_updates", "allowed updates"))
        if offset is not None and offset < 0:
            self._updates = deque(list(self._updates)[offset:])
        elif offset is not None:
            self._updates = deque(
                q for q in self._updates if not (q.delivered and q.update["update_id"] < offset)
            )
        self._poll_generation += 1
        generation = self._poll_generation
        self._updates_signal.notify()  # a newer poll ends any older one, as on Telegram
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._updates_signal.event
            if generation != self._poll_generation:
                raise _ApiError(409, POLL_CONFLICT)
            if self._webhook_url:
                raise _ApiError(409, WEBHOOK_CONFLICT)
            self._drop_disallowed()
            batch = list(itertools.islice(self._updates, limit))
            remaining = deadline - loop.time()
            if batch or remaining <= 0 or self._closing:
                for queued in batch:
                    queued.delivered = True
                self.stats.updates_delivered += len(batch)
                return [queued.update for queued in batch]
            await _wait(event, remaining)

    def _check_webhook_url(self, url: str) -> None:
        """Telegram's checks of a webhook URL, with its texts; see `webhook_http`."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise _bad("bad webhook: Failed to resolve host: Name or service not known") from None
        if not parts.hostname:
            raise _bad(_WEBHOOK_HTTPS)
        if self.webhook_http and parts.scheme.lower() == "http" and parts.hostname == "127.0.0.1":
            return
        if parts.scheme.lower() != "https":
            raise _bad(_WEBHOOK_HTTPS)
        if (port or 443) not in _WEBHOOK_PORTS:
            raise _bad(_WEBHOOK_PORT)

    async def _set_webhook(self, p: _Params) -> _Described:
        url = p.text("url") or ""
        if not url:
            return self._remove_webhook(p.flag("drop_pending_updates"))
        self._check_webhook_url(url)
        secret = p.text("secret_token") or None
        if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
            raise _bad(_WEBHOOK_SECRET)
        max_connections = p.integer("max_connections")
        self._set_allowed(p.obj("allowed_updates", "allowed updates"))
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        unchanged = (url, secret) == (self._webhook_url, self._webhook_secret)
        self._webhook_url, self._webhook_secret = url, secret
        # Telegram keeps the value within 1..100, 40 when not given.
        self._webhook_max_connections = min(
            max(max_connections or _DEFAULT_MAX_CONNECTIONS, 1), 100
        )
        self._webhook_error = None
        self._webhook_backoff.clear()
        self._poll_generation += 1
        self._updates_signal.notify()
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.create_task(self._deliver_webhooks())
        return _Described(True, "Webhook is already set" if unchanged else "Webhook was set")

    async def _delete_webhook(self, p: _Params) -> _Described:
        return self._remove_webhook(p.flag("drop_pending_updates"))

    def _remove_webhook(self, drop_pending: bool) -> _Described:
        if drop_pending:
            self._updates.clear()
        if not self._webhook_url:
            return _Described(True, "Webhook is already deleted")
        self._webhook_url, self._webhook_secret = "", None
        self._updates_signal.notify()
        return _Described(True, "Webhook was deleted")

    async def _get_webhook_info(self, p: _Params) -> dict:
        info: dict[str, Any] = {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._webhook_url:
            info["max_connections"] = self._webhook_max_connections
            info["ip_address"] = self.host
            if self._allowed_updates is not None:
                info["allowed_updates"] = sorted(self._allowed_updates)
            if self._webhook_error is not None:
                info["last_error_date"], info["last_error_message"] = self._webhook_error
        return info

    @staticmethod
    def _sender(update: dict) -> Any:
        """Whose update it is: one sender's updates are delivered in order, one at a time."""
        for key, value in update.items():
            if key != "update_id" and isinstance(value, dict):
                who = value.get("from") or value.get("user") or value.get("chat")
                if isinstance(who, dict) and "id" in who:
                    return who["id"]
        return ("update", update.get("update_id"))

    def _next_deliveries(self) -> tuple[list[_Queued], float | None]:
        """The updates to POST now (each sender's first, not backing off, within
        max_connections), and when the next backed-off one may be tried."""
        now = time.monotonic()
        free = self._webhook_max_connections - len(self._webhook_posts)
        ready: list[_Queued] = []
        waiting: float | None = None
        senders: set[Any] = set()
        for queued in self._updates:
            sender = self._sender(queued.update)
            if sender in senders:
                continue
            senders.add(sender)
            if queued.posting:
                continue
            retry_at, _ = self._webhook_backoff.get(sender, (0.0, 0.0))
            if retry_at > now:
                waiting = retry_at if waiting is None else min(waiting, retry_at)
                continue
            if len(ready) < free:
                ready.append(queued)
        return ready, waiting

    async def _deliver_webhooks(self) -> None:
        """POST queued updates to the webhook as Telegram does: up to max_connections at
        once, each sender's in order; a failed one is kept and tried again after a wait that
        doubles (per sender), and leaves the queue once answered with a 2xx."""
        while not self._closing and self._webhook_url:
            event = self._updates_signal.event
            self._drop_disallowed()
            ready, waiting = self._next_deliveries()
            for queued in ready:
                queued.posting = True
                post = asyncio.create_task(self._deliver_one(queued))
                self._webhook_posts.add(post)
                post.add_done_callback(self._webhook_posts.discard)
            if ready:
                continue
            timeout = None if waiting is None else max(waiting - time.monotonic(), 0.0)
            await _wait(event, timeout)

    async def _deliver_one(self, queued: _Queued) -> None:
        sender = self._sender(queued.update)
        try:
            url, secret = self._webhook_url, self._webhook_secret
            error = await self._post_update(url, secret, queued.update) if url else "deleted"
        finally:
            queued.posting = False
            # Free its connection now: the notification below lets the next one start.
            self._webhook_posts.discard(asyncio.current_task())  # type: ignore[arg-type]
        if error is None:
            queued.delivered = True
            with contextlib.suppress(ValueError):
                self._updates.remove(queued)
            self._webhook_backoff.pop(sender, None)
            self.stats.updates_delivered += 1
        elif url:
            self.stats.webhook_failures += 1
            self._webhook_error = (int(time.time()), error)
            _, delay = self._webhook_backoff.get(sender, (0.0, _WEBHOOK_FIRST_RETRY))
            self._webhook_backoff[sender] = (
                time.monotonic() + delay, min(delay * 2, _WEBHOOK_MAX_RETRY)
            )
        self._updates_signal.notify()

    async def _post_update(self, url: str, secret: str | None, update: dict) -> str | None:
        """Deliver one update; None on success, else Telegram's last_error_message for it."""
        if self._client is None:
            return "Connection refused"
        headers = {"Content-Type": "application/json"}
        if secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        try:
            async with self._client.post(
                url,
                data=_dumps(update).encode(),
                headers=headers,
                timeout=ClientTimeout(total=self.webhook_timeout),
            ) as response:
                if not 200 <= response.status < 300:
                    return f"Wrong response from the webhook: {response.status} {response.reason}"
                await self._run_webhook_reply(response)
        except TimeoutError:
            return "Read timeout expired"
        except ClientError as error:
            return f"Connection failed: {error}"
        return None

    async def _run_webhook_reply(self, response: Any) -> None:
        """A webhook may answer with a method call in its body; Telegram then runs it."""
        if response.content_type == "multipart/form-data":
            params = await _read_multipart(MultipartReader(response.headers, response.content))
        elif response.content_type == "application/json":
            try:
                params = await response.json()
            except ValueError:
                return
        else:
            return
        if not isinstance(params, dict) or not isinstance(params.get("method"), str):
            return
        name = self._method_names.get(params["method"].lower())
        if name is None:
            return
        self.stats.requests[name] += 1
        self.stats.webhook_replies[name] += 1
        try:
            await self._handlers[name](_Params(params))
        except _ApiError as error:
            self.stats.errors[error.status] += 1
            log.info("the webhook's reply %s failed: %s", name, error.description)

    # ---- chats and messages ----------------------------------------------------------------

    def _lookup_chat(self, value: Any) -> _Chat | None:
        if isinstance(value, str) and value.startswith("@"):
            wanted = value[1:].lower()
            return next(
                (c for c in self._chats.values() if (c.username or "").lower() == wanted), None
            )
        try:
            chat_id = int(value)
        except (TypeError, ValueError):
            return None
        return self._chats.get(chat_id)

    def _existing_chat(self, p: _Params) -> _Chat:
        value = p.get("chat_id")
        if value is None:
            raise _bad("chat_id is empty")
        chat = self._lookup_chat(value)
        if chat is None:
            raise _ApiError(400, CHAT_NOT_FOUND)
        return chat

    def _send_target(self, p: _Params) -> _Chat:
        """The chat a send goes to; a known user who never wrote to the bot cannot get one."""
        value = p.get("chat_id")
        if value is None:
            raise _bad("chat_id is empty")
        chat = self._lookup_chat(value)
        if chat is None:
            with contextlib.suppress(TypeError, ValueError):
                if int(value) in self._users:
                    raise _ApiError(403, CANT_INITIATE)
            raise _ApiError(400, CHAT_NOT_FOUND)
        return chat

    def _bot_json(self) -> dict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.bot_name,
            "username": self.bot_username,
        }

    def _store(self, chat: _Chat, message: dict) -> None:
        chat.messages.append(message)
        chat.by_id[message["message_id"]] = message
        chat.timeline.append(("message", message["message_id"]))

    def _bot_changed(self, chat: _Chat, message: dict, *, edited: bool) -> None:
        self._bot_signal.notify()
        for hook in list(self._hooks):
            try:
                hook(chat.id, message, edited)
            except Exception:
                log.exception("an on_bot_message hook failed")

    def _check_inside(self, chat: _Chat) -> None:
        """A group the bot left, was removed from or that became a supergroup: refused."""
        if chat.user is not None:
            return
        if chat.migrated_to is not None:
            raise _ApiError(400, UPGRADED, {"migrate_to_chat_id": chat.migrated_to})
        kind = "supergroup" if chat.type == "supergroup" else chat.type
        if chat.bot_status == "kicked":
            raise _ApiError(403, f"Forbidden: bot was kicked from the {kind} chat")
        if chat.bot_status == "left":
            raise _ApiError(403, f"Forbidden: bot is not a member of the {kind} chat")

    def _check_may_post(self, chat: _Chat) -> None:
        """Telegram's refusals for a chat the bot is in without the right to write."""
        self._check_inside(chat)
        if chat.type == "channel" and not chat.bot_rights.get("can_post_messages"):
            raise _ApiError(400, NEED_ADMIN_RIGHTS)
        if chat.bot_status == "restricted" and not chat.bot_rights.get("can_send_messages"):
            raise _ApiError(400, NOT_ENOUGH_RIGHTS)

    def _check_limits(self, chat: _Chat) -> None:
        """Telegram's flood limits: overall per second, per private chat, per group minute."""
        if not self.limits:
            return
        rules = self.sending_limits
        now = time.monotonic()
        recent = self._sent_recently
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        if len(recent) >= rules.per_second:
            _too_many(recent[0] + 1.0 - now)
        if chat.type in ("group", "supergroup"):
            window, cap = 60.0, rules.group_per_minute
        else:
            window, cap = 1.0, rules.private_per_second
        mine = chat.sent_at
        while mine and now - mine[0] >= window:
            mine.popleft()
        if len(mine) >= cap:
            _too_many(mine[0] + window - now)
        recent.append(now)
        mine.append(now)

    def _commit_bot_messages(
        self,
        chat: _Chat,
        contents: list[dict],
        markup: dict | None,
        reply: dict | None,
        p: _Params,
    ) -> list[dict]:
        """Deliver validated content: blocked users and flood limits refuse it here."""
        if chat.user is not None and chat.user.blocked:
            raise _ApiError(403, BLOCKED_BY_USER)
        self._check_may_post(chat)
        self._check_limits(chat)
        sent: list[dict] = []
        for content in contents:
            chat.last_message_id += 1
            message: dict[str, Any] = {
                "message_id": chat.last_message_id,
                "from": self._bot_json(),
                "chat": chat.as_json(),
                "date": int(time.time()),
            }
            if reply is not None:
                message["reply_to_message"] = reply
            message.update(content)
            if markup is not None and "inline_keyboard" in markup:
                message["reply_markup"] = markup
            elif markup is not None:
                chat.keyboards_shown[message["message_id"]] = markup
            self._store(chat, message)
            if p.flag("disable_notification"):
                chat.silent.add(message["message_id"])
            sent.append(message)
        if markup is not None and "keyboard" in markup:
            chat.reply_keyboard = markup
        elif markup is not None and markup.get("remove_keyboard"):
            chat.reply_keyboard = None
        self.stats.sent_messages += len(sent)
        for message in sent:
            self._bot_changed(chat, message, edited=False)
        return sent

    def _reply_target(self, chat: _Chat, p: _Params) -> dict | None:
        parameters = p.obj("reply_parameters", "reply parameters")
        if parameters is None and p.get("reply_to_message_id") is not None:
            parameters = {
                "message_id": p.integer("reply_to_message_id"),
                "allow_sending_without_reply": p.flag("allow_sending_without_reply"),
            }
        if parameters is None:
            return None
        if not isinstance(parameters, dict):
            raise _bad("can't parse reply parameters JSON object")
        source = chat
        if parameters.get("chat_id") is not None:
            source = self._lookup_chat(parameters["chat_id"]) or chat
        try:
            message_id = int(parameters.get("message_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise _bad("message to be replied not found") from None
        original = source.by_id.get(message_id)
        if original is None:
            if parameters.get("allow_sending_without_reply"):
                return None
            raise _bad("message to be replied not found")
        return _public({k: v for k, v in original.items() if k != "reply_to_message"})

    def _markup(self, p: _Params, *, inline_only: bool = False) -> dict | None:
        raw = p.obj("reply_markup", "reply keyboard markup")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in raw:
            return _inline_markup(raw["inline_keyboard"])
        if inline_only:
            raise _bad("inline keyboard expected")
        if "keyboard" in raw:
            rows = raw["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
                raise _bad('field "keyboard" of the ReplyKeyboardMarkup must be an Array')
            keyboard = [
                [{"text": b} if isinstance(b, str) else dict(b) for b in row] for row in rows
            ]
            if any(not isinstance(b.get("text"), str) for row in keyboard for b in row):
                raise _bad('can\'t parse keyboard button: Field "text" must be of type String')
            return {**raw, "keyboard": keyboard}
        if raw.get("remove_keyboard") or raw.get("force_reply"):
            return dict(raw)
        raise _bad("can't parse reply keyboard markup JSON object")

    def _caption(self, p: _Params) -> tuple[str, list[dict]]:
        caption, entities = _format(
            p.text("caption"), p.text("parse_mode"), p.obj("caption_entities", "caption entities")
        )
        if len(caption) > MAX_CAPTION_LENGTH:
            raise _bad("message caption is too long")
        return caption, entities

    @staticmethod
    def _with_caption(content: dict, caption: str, entities: list[dict]) -> dict:
        if caption:
            content["caption"] = caption
            if entities:
                content["caption_entities"] = entities
        return content

    # ---- files -----------------------------------------------------------------------------

    def _store_file(self, kind: str, data: bytes, extension: str) -> _StoredFile:
        number = next(self._file_numbers)
        file_id = _FILE_ID_PREFIX[kind] + secrets.token_urlsafe(42)
        stored = _StoredFile(
            file_id=file_id,
            file_unique_id="AQAD" + secrets.token_urlsafe(9),
            kind=kind,
            data=data,
            file_path=f"{_FILE_FOLDER[kind]}/file_{number}{extension}",
        )
        self._files[file_id] = stored
        self._paths[stored.file_path] = stored
        return stored

    def _new_photo(self, width: int, height: int, original: bytes | None = None) -> list[dict]:
        """PhotoSize list as Telegram makes it: thumbnails, then the full picture."""
        if width <= 0 or height <= 0:
            raise ValueError("a photo has a positive width and height")
        longest = max(width, height)
        targets = [t for t in (90, 320, 800, 1280) if t < longest] + [min(longest, 2560)]
        if len(targets) < 2:
            targets.insert(0, targets[0])
        sizes: list[dict] = []
        for target in targets:
            scale = target / longest
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            data = original if original is not None and size == (width, height) else None
            stored = self._store_file("photo", data or _jpeg(*size), ".jpg")
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "file_size": len(stored.data),
                    "width": size[0],
                    "height": size[1],
                }
            )
        for size_json in sizes:
            self._media[size_json["file_id"]] = ("photo", sizes)
        return sizes

    def _new_document(self, data: bytes, file_name: str, mime_type: str | None) -> dict:
        extension = "." + file_name.rsplit(".", 1)[-1] if "." in file_name else ""
        stored = self._store_file("document", data, extension)
        guessed = mimetypes.guess_type(file_name)[0]
        document = {
            "file_name": file_name,
            "mime_type": mime_type or guessed or "application/octet-stream",
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(data),
        }
        self._media[stored.file_id] = ("document", document)
        return document

    @staticmethod
    def _new_media_group_id() -> str:
        return str(13_000_000_000_000_000 + secrets.randbelow(10**15))

    async def _input_file(self, value: Any, p: _Params) -> _Upload | str:
        """An upload (direct, attach:// or an HTTP URL to fetch) or a file_id to look up."""
        if isinstance(value, _Upload):
            upload = value
        elif not isinstance(value, str):
            raise _ApiError(400, WRONG_FILE)
        elif value.startswith("attach://"):
            attached = p.raw.get(value.removeprefix("attach://"))
            if not isinstance(attached, _Upload):
                raise _ApiError(400, WRONG_FILE)
            upload = attached
        elif re.match(r"https?://", value, re.IGNORECASE):
            upload = await self._fetch(value)
        else:
            return value
        if not upload.data:
            raise _bad("file must be non-empty")
        return upload

    async def _fetch(self, url: str) -> _Upload:
        if self._client is None:
            raise _bad("failed to get HTTP URL content")
        try:
            async with self._client.get(url, timeout=ClientTimeout(total=10)) as response:
                if response.status != 200:
                    raise _bad("failed to get HTTP URL content")
                data = await response.read()
                content_type = response.content_type
        except (ClientError, TimeoutError):
            raise _bad("failed to get HTTP URL content") from None
        name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "file"
        return _Upload(name, content_type, data)

    def _known_media(self, file_id: str, kind: str) -> Any:
        known = self._media.get(file_id)
        if known is None:
            raise _ApiError(400, WRONG_FILE)
        if known[0] != kind:
            raise _bad("type of file mismatch")
        return known[1]

    async def _photo(self, value: Any, p: _Params) -> list[dict]:
        source = await self._input_file(value, p)
        if isinstance(source, str):
            return [dict(size) for size in self._known_media(source, "photo")]
        size = _image_size(source.data)
        if size is None:
            raise _bad("IMAGE_PROCESS_FAILED")
        width, height = size
        if width + height > 10000 or max(width, height) > 20 * min(width, height):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        return self._new_photo(width, height, source.data)

    async def _document(self, value: Any, p: _Params) -> dict:
        source = await self._input_file(value, p)
        if isinstance(source, str):
            return dict(self._known_media(source, "document"))
        content_type = source.content_type
        if content_type in (None, "application/octet-stream"):
            content_type = None
        return self._new_document(source.data, source.filename, content_type)

    async def _voice(self, value: Any, p: _Params) -> dict:
        """A voice note: one Telegram knows by its file_id, or an upload (Ogg, as sent)."""
        source = await self._input_file(value, p)
        if isinstance(source, str):
            return dict(self._known_media(source, "voice"))
        stored = self._store_file("voice", source.data, ".oga")
        voice = {
            "duration": max(p.integer("duration") or 0, 0),
            "mime_type": "audio/ogg",
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(source.data),
        }
        self._media[stored.file_id] = ("voice", voice)
        return voice

    # ---- Bot API methods -------------------------------------------------------------------

    async def _get_me(self, p: _Params) -> dict:
        return {
            **self._bot_json(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _send_message(self, p: _Params) -> dict:
        chat = self._send_target(p)
        text, entities = _format(
            p.text("text"), p.text("parse_mode"), p.obj("entities", "message entities")
        )
        if not text:
            raise _bad("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise _bad("message is too long")
        markup = self._markup(p)
        reply = self._reply_target(chat, p)
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return _public(self._commit_bot_messages(chat, [content], markup, reply, p)[0])

    async def _send_file(
        self, p: _Params, field: str, load: Callable[[Any, _Params], Awaitable[Any]]
    ) -> dict:
        """sendPhoto, sendDocument, sendVoice: one file by id, URL or upload, and a caption."""
        chat = self._send_target(p)
        value = p.get(field)
        if value is None:
            raise _bad(f"there is no {field} in the request")
        caption, entities = self._caption(p)
        markup = self._markup(p)
        reply = self._reply_target(chat, p)
        content = self._with_caption({field: await load(value, p)}, caption, entities)
        return _public(self._commit_bot_messages(chat, [content], markup, reply, p)[0])

    async def _send_photo(self, p: _Params) -> dict:
        return await self._send_file(p, "photo", self._photo)

    async def _send_document(self, p: _Params) -> dict:
        return await self._send_file(p, "document", self._document)

    async def _send_voice(self, p: _Params) -> dict:
        return await self._send_file(p, "voice", self._voice)

    async def _send_media_group(self, p: _Params) -> list[dict]:
        chat = self._send_target(p)
        media = p.obj("media", "media")
        if media is None:
            raise _bad('parameter "media" is required')
        if not isinstance(media, list):
            raise _bad("can't parse media JSON object")
        if not media:
            raise _bad("there are no messages to send")
        if len(media) > MAX_ALBUM_SIZE:
            raise _bad("too many messages to send as an album")
        kinds: list[str] = []
        for item in media:
            if not isinstance(item, dict) or "media" not in item:
                raise _bad("can't parse InputMedia JSON object")
            kind = item.get("type")
            if kind not in ("photo", "document"):
                raise _bad(f'can\'t parse InputMedia: type "{kind}" is unsupported')
            kinds.append(kind)
        if "document" in kinds and any(kind != "document" for kind in kinds):
            raise _bad("document can't be mixed with other media types")
        reply = self._reply_target(chat, p)
        group_id = self._new_media_group_id() if len(media) > 1 else None
        contents: list[dict] = []
        for item, kind in zip(media, kinds, strict=True):
            caption, entities = _format(
                item.get("caption"), item.get("parse_mode"), item.get("caption_entities")
            )
            if len(caption) > MAX_CAPTION_LENGTH:
                raise _bad("message caption is too long")
            try:
                if kind == "photo":
                    content: dict[str, Any] = {"photo": await self._photo(item["media"], p)}
                else:
                    content = {"document": await self._document(item["media"], p)}
            except _ApiError as error:
                if error.status != 400:
                    raise
                detail = error.description.removeprefix("Bad Request: ")
                raise _bad(f"can't parse InputMedia: {detail}") from None
            if group_id is not None:
                content["media_group_id"] = group_id
            contents.append(self._with_caption(content, caption, entities))
        return [_public(m) for m in self._commit_bot_messages(chat, contents, None, reply, p)]

    async def _send_location(self, p: _Params) -> dict:
        chat = self._send_target(p)
        latitude = p.number("latitude")
        longitude = p.number("longitude")
        if latitude is None:
            raise _bad('parameter "latitude" is required')
        if longitude is None:
            raise _bad('parameter "longitude" is required')
        if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
            raise _bad("wrong location specified")
        location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        accuracy = p.number("horizontal_accuracy")
        if accuracy is not None:
            location["horizontal_accuracy"] = accuracy
        for name in ("live_period", "heading"):
            value = p.integer(name)
            if value is not None:
                location[name] = value
        markup = self._markup(p)
        reply = self._reply_target(chat, p)
        content = {"location": location}
        return _public(self._commit_bot_messages(chat, [content], markup, reply, p)[0])

    async def _send_chat_action(self, p: _Params) -> bool:
        chat = self._send_target(p)
        action = p.text("action")
        if action not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        if chat.user is not None and chat.user.blocked:
            raise _ApiError(403, BLOCKED_BY_USER)
        chat.actions.append(action)
        return True

    def _editable(self, p: _Params) -> tuple[_Chat, dict]:
        if p.get("inline_message_id") is not None:
            raise _bad("MESSAGE_ID_INVALID")
        chat = self._existing_chat(p)
        self._check_inside(chat)
        message_id = p.integer("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        message = chat.by_id.get(message_id)
        if message is None:
            raise _bad("message to edit not found")
        if message["from"]["id"] != self.bot_id:
            raise _bad("message can't be edited")
        return chat, message

    def _apply_edit(self, chat: _Chat, message: dict, changes: dict[str, Any]) -> dict:
        """Edit in place, refusing an edit that changes nothing, as Telegram does."""
        if all(message.get(key) == value for key, value in changes.items()):
            raise _ApiError(400, NOT_MODIFIED)
        self._check_limits(chat)
        for key, value in changes.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        message["edit_date"] = max(int(time.time()), message["date"])
        chat.edits[message["message_id"]] += 1
        self.stats.edited_messages += 1
        self._bot_changed(chat, message, edited=True)
        return dict(message)

    async def _edit_message_text(self, p: _Params) -> dict:
        chat, message = self._editable(p)
        text, entities = _format(
            p.text("text"), p.text("parse_mode"), p.obj("entities", "message entities")
        )
        if not text:
            raise _bad("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise _bad("MESSAGE_TOO_LONG")
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        markup = self._markup(p, inline_only=True)
        changes = {"text": text, "entities": entities or None, "reply_markup": markup}
        return self._apply_edit(chat, message, changes)

    async def _edit_message_caption(self, p: _Params) -> dict:
        chat, message = self._editable(p)
        if not any(key in message for key in _MEDIA_KEYS):
            raise _bad("there is no caption in the message to edit")
        caption, entities = self._caption(p)
        markup = self._markup(p, inline_only=True)
        changes = {
            "caption": caption or None,
            "caption_entities": entities or None,
            "reply_markup": markup,
        }
        return self._apply_edit(chat, message, changes)

    async def _edit_message_reply_markup(self, p: _Params) -> dict:
        chat, message = self._editable(p)
        markup = self._markup(p, inline_only=True)
        return self._apply_edit(chat, message, {"reply_markup": markup})

    def _remove(self, chat: _Chat, message_id: int) -> bool:
        message = chat.by_id.pop(message_id, None)
        if message is None:
            return False
        chat.messages.remove(message)
        chat.deleted.append(message)
        self.stats.deleted_messages += 1
        self._bot_signal.notify()
        return True

    async def _delete_message(self, p: _Params) -> bool:
        chat = self._existing_chat(p)
        message_id = p.integer("message_id")
        if message_id is None:
            raise _bad("message identifier is not specified")
        if not self._remove(chat, message_id):
            raise _bad("message to delete not found")
        return True

    async def _delete_messages(self, p: _Params) -> bool:
        chat = self._existing_chat(p)
        ids = p.obj("message_ids", "message identifiers")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise _bad("message_ids must be a non-empty Array of at most 100 Integers")
        for message_id in ids:
            with contextlib.suppress(TypeError, ValueError):
                self._remove(chat, int(message_id))
        return True

    async def _answer_callback_query(self, p: _Params) -> bool:
        query_id = p.text("callback_query_id") or ""
        query = self._queries.get(query_id)
        if query is None or query["answered"]:
            raise _ApiError(400, QUERY_INVALID)
        text = p.text("text")
        if text is not None and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        query["answered"] = True
        answer = {
            "callback_query_id": query_id,
            "text": text,
            "show_alert": p.flag("show_alert"),
            "url": p.text("url"),
            "cache_time": p.integer("cache_time") or 0,
            "date": int(time.time()),
        }
        self.callback_answers.append(answer)
        self._bot_signal.notify()
        chat = self._chats.get(query["chat_id"])
        if chat is not None and text:
            chat.timeline.append(("answer", text, answer["show_alert"]))
        return True

    def _scope_key(self, scope: Any, language_code: str, *, strict: bool) -> tuple[Any, ...]:
        if not isinstance(scope, dict) or scope.get("type") not in _SCOPE_TYPES:
            raise _bad("can't parse BotCommandScope JSON object")
        kind = scope["type"]
        chat_id: Any = None
        user_id: Any = None
        if kind in ("chat", "chat_administrators", "chat_member"):
            chat = self._lookup_chat(scope.get("chat_id"))
            if chat is None and strict:
                raise _ApiError(400, CHAT_NOT_FOUND)
            chat_id = chat.id if chat is not None else scope.get("chat_id")
        if kind == "chat_member":
            user_id = scope.get("user_id")
            if strict and user_id not in self._users:
                raise _bad("user not found")
        return (kind, chat_id, user_id, language_code or "")

    def _commands_key(self, p: _Params) -> tuple[Any, ...]:
        scope = p.obj("scope", "BotCommandScope") or {"type": "default"}
        language = p.text("language_code") or ""
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _bad("LANG_CODE_INVALID")
        return self._scope_key(scope, language, strict=True)

    async def _set_my_commands(self, p: _Params) -> bool:
        commands = p.obj("commands", "commands") or []
        key = self._commands_key(p)
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands specified")
        stored: list[dict] = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand JSON object")
            name, description = command.get("command"), command.get("description")
            if not isinstance(name, str) or not _COMMAND.fullmatch(name):
                raise _bad("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            stored.append({**command, "command": name, "description": description})
        if stored:
            self._commands[key] = stored
        else:
            self._commands.pop(key, None)
        return True

    async def _get_my_commands(self, p: _Params) -> list[dict]:
        return [dict(command) for command in self._commands.get(self._commands_key(p), [])]

    async def _delete_my_commands(self, p: _Params) -> bool:
        self._commands.pop(self._commands_key(p), None)
        return True

    async def _set_chat_menu_button(self, p: _Params) -> bool:
        chat_id = self._existing_chat(p).id if p.get("chat_id") is not None else None
        button = p.obj("menu_button", "menu button") or {"type": "default"}
        kind = button.get("type") if isinstance(button, dict) else None
        if kind not in ("default", "commands", "web_app"):
            raise _bad("can't parse menu button JSON object")
        if kind == "web_app" and not (button.get("text") and button.get("web_app")):
            raise _bad("can't parse menu button JSON object")
        self._menu_buttons[chat_id] = dict(button)
        return True

    async def _get_chat_menu_button(self, p: _Params) -> dict:
        if p.get("chat_id") is None:
            return dict(self._menu_buttons.get(None, {"type": "commands"}))
        chat = self._existing_chat(p)
        return dict(self._menu_buttons.get(chat.id, {"type": "default"}))

    async def _set_text(self, kind: str, limit: int, p: _Params) -> bool:
        value = p.text(kind) or ""
        if len(value) > limit:
            raise _bad(f"{kind.replace('_', ' ')} is too long")
        language = p.text("language_code") or ""
        if value:
            self._descriptions[(kind, language)] = value
        else:
            self._descriptions.pop((kind, language), None)
        return True

    async def _get_text(self, kind: str, p: _Params) -> dict:
        language = p.text("language_code") or ""
        value = self._descriptions.get((kind, language))
        if value is None and kind == "name":
            value = self.bot_name
        return {kind: value or ""}

    async def _get_file(self, p: _Params) -> dict:
        stored = self._files.get(p.text("file_id") or "")
        if stored is None:
            raise _bad("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise _bad("file is too big")
        return stored.as_file()

    async def _get_chat_member(self, p: _Params) -> dict:
        chat = self._existing_chat(p)
        self._check_inside(chat)
        user_id = p.integer("user_id")
        if user_id is None:
            raise _bad("user_id is empty")
        if user_id == self.bot_id:
            return self._member_json(chat.bot_status, chat.bot_rights)
        user = self._users.get(user_id)
        if user is None:
            raise _bad("PARTICIPANT_ID_INVALID")
        if chat.user is not None:
            return {"user": user.as_json(), "status": "member"}
        wrote = any(m.get("from", {}).get("id") == user_id for m in chat.messages)
        return {"user": user.as_json(), "status": "member" if wrote else "left"}

    async def _get_chat(self, p: _Params) -> dict:
        chat = self._existing_chat(p)
        self._check_inside(chat)
        return {
            **chat.as_json(),
            "accent_color_id": chat.id % 7 if chat.id > 0 else 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    # ---- what users do ---------------------------------------------------------------------

    def _user_chat(self, user: UserHandle, chat_id: int | None) -> _Chat:
        if chat_id is None or chat_id == user.id:
            chat = self._chats.get(user.id)
            if chat is None:
                chat = _Chat(id=user.id, type="private", user=user)
                self._chats[user.id] = chat
            return chat
        chat = self._chats.get(chat_id)
        if chat is None or chat.type in ("private", "channel"):
            raise LookupError(
                f"{user.first_name} cannot write in chat {chat_id}: register groups with "
                "emulator.group(chat_id, title)"
            )
        if chat.migrated_to is not None:
            raise LookupError(f"chat {chat_id} is now the supergroup {chat.migrated_to}")
        return chat

    async def _user_message(
        self,
        user: UserHandle,
        chat_id: int | None,
        content: dict,
        *,
        reply_to: dict | int | None = None,
        queue: bool = True,
    ) -> dict:
        """Store what the user sent and queue it for the bot, if the bot may see it."""
        chat = self._user_chat(user, chat_id)
        if chat.user is not None and user.blocked:
            user.unblock_bot()  # writing to a blocked bot means pressing "Restart" first
        chat.last_message_id += 1
        message: dict[str, Any] = {
            "message_id": chat.last_message_id,
            "from": user.as_json(),
            "chat": chat.as_json(),
            "date": int(time.time()),
        }
        if reply_to is not None:
            reply_id = reply_to["message_id"] if isinstance(reply_to, dict) else reply_to
            original = chat.by_id.get(reply_id)
            if original is None:
                raise LookupError(f"no message {reply_id} in chat {chat.id} to reply to")
            message["reply_to_message"] = _public(
                {k: v for k, v in original.items() if k != "reply_to_message"}
            )
        message.update(content)
        self._store(chat, message)
        if queue and self._bot_sees(chat, message):
            self._enqueue("message", _public(message))
        await asyncio.sleep(0)
        return message

    def _bot_sees(self, chat: _Chat, message: dict) -> bool:
        """Privacy mode: in groups the bot gets its commands, replies to it and mentions."""
        if chat.type != "private" and not chat.bot_inside:
            return False
        if chat.type == "private" or not self.privacy_mode:
            return True
        text = message.get("text") or message.get("caption") or ""
        entities = message.get("entities") or message.get("caption_entities") or []
        command = next(
            (e for e in entities if e["type"] == "bot_command" and e["offset"] == 0), None
        )
        if command is not None:
            _, _, addressee = text[: command["length"]].partition("@")
            return not addressee or addressee.lower() == self.bot_username.lower()
        replied = message.get("reply_to_message")
        if replied is not None and replied["from"]["id"] == self.bot_id:
            return True
        return f"@{self.bot_username.lower()}" in text.lower()

    def _tappable(
        self, user: UserHandle, message: dict | int, chat_id: int | None
    ) -> tuple[_Chat, dict]:
        if chat_id is None:
            chat_id = message["chat"]["id"] if isinstance(message, dict) else user.id
        message_id = message["message_id"] if isinstance(message, dict) else message
        chat = self._chats.get(chat_id)
        if chat is None or (chat.user is not None and chat.user is not user):
            raise LookupError(f"{user.first_name} has no chat {chat_id} with the bot")
        stored = chat.by_id.get(message_id)
        if stored is None:
            raise LookupError(f"message {message_id} is not (or no longer) in chat {chat_id}")
        return chat, stored

    def _callback_query(
        self, user: UserHandle, chat: _Chat, message: dict, data: str, label: str
    ) -> str:
        query = self._new_query(user, chat, message, data, label)
        self._enqueue("callback_query", query)
        return str(query["id"])

    def _new_query(
        self, user: UserHandle, chat: _Chat, message: dict, data: str, label: str
    ) -> dict:
        """A CallbackQuery for a tap, remembered so that answerCallbackQuery knows it."""
        query_id = str(secrets.randbits(63))
        self._queries[query_id] = {
            "answered": False,
            "chat_id": chat.id,
            "message_id": message["message_id"],
            "user_id": user.id,
            "data": data,
        }
        chat.timeline.append(("tap", user.id, label))
        return {
            "id": query_id,
            "from": user.as_json(),
            "message": _public(message),
            "chat_instance": str((chat.id * 2654435761) % (2**63)),
            "data": data,
        }

    def _member_changed(self, user: UserHandle, old: str, new: str) -> None:
        chat = self._chats.get(user.id)
        if chat is None:
            return

        def member(status: str) -> dict:
            data: dict[str, Any] = {"user": self._bot_json(), "status": status}
            if status == "kicked":
                data["until_date"] = 0
            return data

        self._enqueue(
            "my_chat_member",
            {
                "chat": chat.as_json(),
                "from": user.as_json(),
                "date": int(time.time()),
                "old_chat_member": member(old),
                "new_chat_member": member(new),
            },
        )

    def _member_json(self, status: str, rights: dict[str, Any]) -> dict:
        """The bot as a ChatMember of the given status, with its rights there."""
        data: dict[str, Any] = {"user": self._bot_json(), "status": status}
        if status == "kicked":
            data["until_date"] = 0
        if status in ("administrator", "restricted"):
            data.update(rights)
        return data

    def _bot_member_changed(
        self, chat: _Chat, by: UserHandle, status: str, rights: dict[str, Any]
    ) -> None:
        """The bot's membership of a group or channel changes: `my_chat_member` from `by`."""
        if chat.migrated_to is not None:
            raise ValueError(f"chat {chat.id} is now the supergroup {chat.migrated_to}")
        if chat.type == "channel" and status in ("member", "restricted"):
            raise ValueError("a bot is in a channel only as an administrator")
        old = self._member_json(chat.bot_status, chat.bot_rights)
        chat.bot_status, chat.bot_rights = status, dict(rights)
        self._enqueue(
            "my_chat_member",
            {
                "chat": chat.as_json(),
                "from": by.as_json(),
                "date": int(time.time()),
                "old_chat_member": old,
                "new_chat_member": self._member_json(status, rights),
            },
        )

    async def _service_message(self, chat: _Chat, by: UserHandle, content: dict) -> dict:
        """A service message in a group (members added, the upgrade to a supergroup): bots
        receive these whatever their privacy mode."""
        chat.last_message_id += 1
        message: dict[str, Any] = {
            "message_id": chat.last_message_id,
            "from": by.as_json(),
            "chat": chat.as_json(),
            "date": int(time.time()),
            **content,
        }
        self._store(chat, message)
        self._enqueue("message", _public(message))
        await asyncio.sleep(0)
        return message

    # ---- HTTP: the control API -------------------------------------------------------------

    def _control_routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_emulator/users/{user_id}/{action}", self._control_user),
            web.get("/_emulator/chats/{chat_id}/messages", self._control_messages),
            web.get("/_emulator/chats/{chat_id}/transcript", self._control_transcript),
            web.get("/_emulator/chats/{chat_id}/wait", self._control_wait),
            web.post("/_emulator/groups", self._control_group),
            web.post("/_emulator/groups/{chat_id}/{action}", self._control_group_action),
            web.post("/_emulator/updates", self._control_update),
            web.post("/_emulator/faults", self._control_fault),
            web.get("/_emulator/callback_answers", self._control_answers),
            web.get("/_emulator/commands", self._control_commands),
            web.get("/_emulator/stats", self._control_stats),
        ]

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    @staticmethod
    def _refused(error: Exception, status: int = 400) -> web.Response:
        if isinstance(error, KeyError):
            return web.json_response({"error": f"missing field {error}"}, status=status)
        return web.json_response({"error": str(error)}, status=status)

    async def _control_user(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            profile: dict[str, Any] = {
                key: body[key] for key in ("last_name", "username", "language_code") if key in body
            }
            user = self.user(int(request.match_info["user_id"]), body.get("first_name"), **profile)
            result = await self._user_action(user, request.match_info["action"], body)
        except (LookupError, ValueError, TypeError) as error:
            return self._refused(error)
        if result is None:
            return web.json_response({"error": "unknown action"}, status=404)
        return web.json_response(result, dumps=_dumps)

    async def _user_action(self, user: UserHandle, action: str, body: dict[str, Any]) -> Any:
        chat = int(body["chat"]) if body.get("chat") is not None else None
        match action:
            case "text":
                return await user.send_text(str(body["text"]), chat=chat)
            case "photo":
                return await user.send_photo(
                    caption=body.get("caption"),
                    chat=chat,
                    width=int(body.get("width", 1280)),
                    height=int(body.get("height", 960)),
                )
            case "album":
                return await user.send_album(
                    int(body.get("count", 2)), caption=body.get("caption"), chat=chat
                )
            case "location":
                return await user.send_location(
                    float(body["latitude"]), float(body["longitude"]), chat=chat
                )
            case "contact":
                return await user.send_contact(
                    str(body.get("phone_number", user.phone_number)),
                    own=bool(body.get("own", True)),
                    chat=chat,
                )
            case "voice":
                return await user.send_voice(int(body.get("duration", 5)), chat=chat)
            case "document":
                return await user.send_document(
                    str(body.get("file_name", "a.pdf")),
                    str(body.get("mime_type", "application/pdf")),
                    chat=chat,
                )
            case "sticker":
                return await user.send_sticker(chat=chat)
            case "tap":
                query = await user.tap(int(body["message_id"]), str(body["button"]), chat=chat)
                return {"callback_query_id": query}
            case "tap_data":
                query = await user.tap_data(int(body["message_id"]), str(body["data"]), chat=chat)
                return {"callback_query_id": query}
            case "press":
                return await user.press(str(body["button"]), chat=chat)
            case "block":
                user.block_bot()
                return {"blocked": True}
            case "unblock":
                user.unblock_bot()
                return {"blocked": False}
        return None

    async def _control_messages(self, request: web.Request) -> web.Response:
        chat_id = int(request.match_info["chat_id"])
        return web.json_response(self.messages(chat_id), dumps=_dumps)

    async def _control_transcript(self, request: web.Request) -> web.Response:
        return web.Response(text=self.transcript(int(request.match_info["chat_id"])))

    async def _control_wait(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            after = int(query["after"]) if "after" in query else None
            message = await self.wait_for(
                int(request.match_info["chat_id"]),
                query.get("text"),
                timeout=float(query.get("timeout", 5)),
                after=after,
            )
        except TimeoutError as error:
            return self._refused(error, status=408)
        except ValueError as error:
            return self._refused(error)
        return web.json_response(message, dumps=_dumps)

    async def _control_group(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            group = self.group(
                int(body["chat_id"]), str(body["title"]), str(body.get("type", "group"))
            )
        except (LookupError, ValueError, TypeError) as error:
            return self._refused(error)
        return web.json_response(group.as_json(), dumps=_dumps)

    async def _control_group_action(self, request: web.Request) -> web.Response:
        """What a group's members do to the bot: add_bot, remove_bot, restrict_bot, migrate
        (with `by`, the acting user's id), and post in a channel."""
        try:
            body = await self._body(request)
            handle = self._groups.get(int(request.match_info["chat_id"]))
            if handle is None:
                raise LookupError(f"no group {request.match_info['chat_id']}")
            action = request.match_info["action"]
            by = self.user(int(body["by"])) if "by" in body else None
            result: Any = {"ok": True}
            if action == "post" and isinstance(handle, ChannelHandle):
                result = await handle.post(str(body["text"]))
            elif by is None:
                raise KeyError("by")
            elif action == "add_bot":
                await handle.add_bot(by, admin=bool(body.get("admin", False)))
            elif action == "remove_bot":
                await handle.remove_bot(by, kicked=bool(body.get("kicked", True)))
            elif action == "restrict_bot":
                await handle.restrict_bot(
                    by, can_send_messages=bool(body.get("can_send_messages", False))
                )
            elif action == "migrate":
                result = (await self.migrate(handle, int(body["new_chat_id"]), by)).as_json()
            else:
                return web.json_response({"error": "unknown action"}, status=404)
        except (LookupError, ValueError, TypeError) as error:
            return self._refused(error)
        return web.json_response(result, dumps=_dumps)

    async def _control_update(self, request: web.Request) -> web.Response:
        try:
            update_id = self.inject_update(await self._body(request))
        except (ValueError, TypeError) as error:
            return self._refused(error)
        return web.json_response({"update_id": update_id})

    async def _control_fault(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            if "rate" in body:
                kinds = tuple(
                    kind if kind == "drop" else int(kind)
                    for kind in body.get("kinds", FAULT_KINDS)
                )
                seed = body.get("seed")
                self.faults(
                    float(body["rate"]), seed=int(seed) if seed is not None else None,
                    kinds=kinds,
                )
                return web.json_response({"ok": True})
            method = str(body["method"])
            times = int(body.get("times", 1))
            if body.get("drop"):
                self.drop_connection_next(method, times=times)
            else:
                retry_after = body.get("retry_after")
                self.fail_next(
                    method,
                    status=int(body.get("status", 500)),
                    description=body.get("description"),
                    retry_after=int(retry_after) if retry_after is not None else None,
                    times=times,
                )
        except (LookupError, ValueError, TypeError) as error:
            return self._refused(error)
        return web.json_response({"ok": True})

    async def _control_answers(self, request: web.Request) -> web.Response:
        return web.json_response(self.callback_answers, dumps=_dumps)

    async def _control_commands(self, request: web.Request) -> web.Response:
        try:
            scope = json.loads(request.query.get("scope", '{"type": "default"}'))
            result = self.commands(scope, request.query.get("language_code", ""))
        except (ValueError, _ApiError) as error:
            return self._refused(error)
        return web.json_response(result, dumps=_dumps)

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_dict())
