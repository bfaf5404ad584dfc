"""Outgoing notifications: queued in the outbox with the change, sent by the courier.

Every notice to a person or a group (a case card, a reminder, "your case was accepted") goes
through here and nowhere else. `post` and `edit` write `Delivery` rows in the caller's database
transaction, so a change that rolls back tells nobody and a change that commits is told even if
the process dies a moment later. The `Courier` of each running process sends the rows:

- It claims the rows a pass over the outbox may send with one conditional UPDATE that sets
  `lease_until` and `lease_owner` (`_CLAIM`); two processes on one database never both claim a
  row, and the rows of a courier that died are taken over when its lease runs out. A courier
  restarted under the same owner (the INSTANCE setting) takes its own unfinished rows back at
  start instead of waiting for the lease.
- Per chat, rows go out in id order: a chat's row is sent only when every earlier row of that
  chat is sent or has failed. An edit therefore waits for its original. Across chats, rows of
  an emergency case (`priority`) go before the others, and so do the rows queued before them
  in their chat.
- Telegram's limits are kept in memory: 30 messages a second overall, one a second per private
  chat, 20 a minute per group; an album counts as its number of photos. With REDIS_URL they
  are kept in Redis as well (`SharedLimits`), so several processes of one bot keep them
  together, not each. The handlers' direct
  replies go through the same Bot, so `DirectReplies` (a session middleware) counts them in the
  same windows and lets them go first: a person gets the answer during a broadcast.
  A 429 is waited out (`retry_after`, for that chat, and the whole courier slows down for a
  while); network errors and 5xx are retried with capped exponential backoff and given up after
  `MAX_ATTEMPTS`; a 403 (blocked, deactivated, never started) marks the account blocked and
  fails that chat's pending rows; any other refusal fails the row with Telegram's text.
- A row that fails for good is not only logged: `bot.notices.undelivered` tells whom it
  concerns (the case's timeline, the township's administrators, another reader for a card).
- No database transaction is open during a call to Telegram.
- Rows to a group robot of WeCom, DingTalk or Feishu (kind ROBOT, `bot.robots`) share all of
  this but the sending: a `RobotSender` posts them, paced per robot by the app's own limits
  and never counted in Telegram's windows nor held back by them.

Exactly once, honestly: Telegram has no idempotency key, so "sent" is written right after
Telegram answers. If the process dies in between (or the answer is lost to a network error or
a timeout after Telegram accepted the message), the row is sent again once its lease runs out
or on the retry: the chat may see that one message twice. Nothing is ever lost, and nothing
else is sent twice.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    AiogramError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import (
    AnswerCallbackQuery,
    CopyMessage,
    CopyMessages,
    EditMessageCaption,
    EditMessageMedia,
    EditMessageReplyMarkup,
    EditMessageText,
    ForwardMessage,
    ForwardMessages,
    GetUpdates,
    SendAnimation,
    SendAudio,
    SendChatAction,
    SendContact,
    SendDice,
    SendDocument,
    SendLocation,
    SendMediaGroup,
    SendMessage,
    SendPhoto,
    SendPoll,
    SendSticker,
    SendVenue,
    SendVideo,
    SendVideoNote,
    SendVoice,
    TelegramMethod,
)
from aiogram.methods.base import Response, TelegramType
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    ReplyKeyboardMarkup,
)
from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q, Subquery
from tortoise.functions import Min
from tortoise.transactions import in_transaction

from bot import cache, db, robots
from bot.models import Account, Case, Delivery, DeliveryKind
from bot.storage import redis_pool

__all__ = ["Courier", "DirectReplies", "SharedLimits", "edit", "post", "together", "wake"]

log = logging.getLogger(__name__)

ALBUM_MAX = 10
#: Telegram's longest caption under a photo or a voice message.
CAPTION_MAX = 1024
#: What a card's caption keeps free for its edits: the status line under the card ("being
#: handled by ..., to be resolved by ...") and a longer "me too" count.
CARD_EDIT_ROOM = 256
#: How long a claimed row belongs to its courier; longer than any one call to Telegram.
LEASE = timedelta(seconds=60)
REQUEST_TIMEOUT = 20
#: Idle courier looks at the outbox this often even when nobody wakes it.
POLL_SECONDS = 0.25
MAX_ATTEMPTS = 12
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 300.0
#: Sends in flight at once (to different chats).
MAX_IN_FLIGHT = 16
#: Posts to group robots in flight at once, besides those.
MAX_ROBOTS_IN_FLIGHT = 8
BATCH = 200
#: Overall budget per second: all of Telegram's 30 (the MESSAGES_PER_SECOND setting). `_Pacer`
#: never counts below Telegram, so the courier alone cannot trip it; the time a send holds its
#: place (about 1 s plus the round trip and the write that records it) keeps the rate a little
#: under 30.
GLOBAL_PER_SECOND = 30
PRIVATE_PER_SECOND = 1
GROUP_PER_MINUTE = 20
#: After a 429 the overall budget is halved for this long.
SLOW_SECONDS = 30.0
#: Longest a direct reply waits for room in the windows: a burst of people writing at once
#: (forty villagers registering, two replies each) is answered within Telegram's 30 a second
#: rather than refused.
REPLY_WAIT = 10.0
#: A direct reply refused with 429 is sent again after `retry_after` up to this long...
REPLY_RETRY_MAX = 5
#: ...and this many times; a longer wait is raised to the handler as before.
REPLY_RETRIES = 2
NOT_MODIFIED = "message is not modified"
ERROR_MAX = 255
#: `Delivery.priority` of an emergency case's rows.
EMERGENCY = 1
#: `Delivery.priority` of a broadcast (a public notice): below every case's rows, so a
#: notice to thousands never holds back a card or a reply queued after it.
BROADCAST = -1
#: The share of the overall budget a broadcast leaves free, in every second: a card or an
#: answer queued while a notice goes out to thousands finds room at once instead of waiting
#: for the window the broadcast filled (5 of Telegram's 30).
BROADCAST_LEAVES = 1 / 6
UPLOAD_NAME = "chart.png"
OWNER_MAX = 64

_couriers: set[Courier] = set()


@dataclass
class _Held:
    """A post's or an edit's rows, held by `together` to be written with the others."""

    rows: list[Delivery]
    key: str | None = None
    #: A post raises the rows waiting before it in its chat to its priority; an edit does not.
    post: bool = True


#: The rows queued inside `together`, in order.
_held: ContextVar[list[_Held] | None] = ContextVar("delivery_held", default=None)

#: True in the courier's sending tasks: `DirectReplies` leaves those requests to the courier.
_courier_sending: ContextVar[bool] = ContextVar("courier_sending", default=False)


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------
# Queueing


def wake() -> None:
    """Tell this process's couriers to look at the outbox now (after a commit, say)."""
    for courier in list(_couriers):
        courier.wake()


def _chunks(photos: Sequence[str]) -> list[list[str]]:
    items = list(photos)
    return [items[start : start + ALBUM_MAX] for start in range(0, len(items), ALBUM_MAX)]


#: The case whose notices are being queued, with whether it is an emergency (`for_case`).
_case_at_hand: ContextVar[tuple[int, bool] | None] = ContextVar("case_at_hand", default=None)


@contextlib.contextmanager
def for_case(case: Case) -> Iterator[None]:
    """Posts inside are about `case`, its category read: their priority needs no statement."""
    token = _case_at_hand.set((case.id, bool(case.category.emergency)))
    try:
        yield
    finally:
        _case_at_hand.reset(token)


async def _priority(case_id: int | None) -> int:
    """An emergency case's rows go first: the one rule, kept here so no notice forgets it."""
    if case_id is None:
        return 0
    at_hand = _case_at_hand.get()
    if at_hand is not None and at_hand[0] == case_id:
        return EMERGENCY if at_hand[1] else 0
    emergency = await Case.filter(id=case_id, category__emergency=True).exists()
    return EMERGENCY if emergency else 0


@contextlib.asynccontextmanager
async def together() -> AsyncIterator[None]:
    """Posts and edits inside are written at its end, all in a few statements instead of
    two or three each: a change's notices, a sweep's chunk of cases. Use it inside the
    transaction that causes them, so they commit with it; when the block raises, nothing held
    is written. A keyed post already queued is left out, as `post` would return it; a keyed
    post with pictures is written at once (its rows must stand or fall together)."""
    if _held.get() is not None:
        yield
        return
    held: list[_Held] = []
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
    await _write_held(held)


async def _write_held(held: list[_Held]) -> None:
    known = await _known_keys([group.key for group in held if group.key is not None])
    kept: list[_Held] = []
    for group in held:
        if group.key is not None:
            if group.key in known:
                continue
            known.add(group.key)
        kept.append(group)
    # What `post` does one at a time: each post raises the rows before it in its chat, those
    # held here and those already waiting, to its own priority.
    levels: dict[int, int] = {}
    for group in reversed(kept):
        for row in reversed(group.rows):
            level = levels.get(row.chat_id)
            if level is not None and row.priority < level:
                row.priority = level
            if group.post:
                levels[row.chat_id] = row.priority
    for level in sorted(set(levels.values())):
        chats = [chat for chat, its in levels.items() if its == level]
        for start in range(0, len(chats), BATCH):
            await _pending().filter(
                chat_id__in=chats[start : start + BATCH], priority__lt=level
            ).update(priority=level)
    rows = [row for group in kept for row in group.rows]
    # A race with another process on a key leaves that row out rather than fail them all.
    await Delivery.bulk_create(rows, batch_size=BATCH, ignore_conflicts=True)


async def _known_keys(keys: Sequence[str]) -> set[str]:
    """Which of `keys` are queued already, read a batch at a time."""
    known: set[str] = set()
    for start in range(0, len(keys), BATCH):
        known.update(await Delivery.filter(key__in=keys[start : start + BATCH]).values_list(
            "key", flat=True
        ))
    return known


def _rows(common: dict[str, Any], media: list[tuple[DeliveryKind, dict[str, Any]]],
          payload: dict[str, Any], card: bool, key: str | None) -> list[Delivery]:
    """A post's rows, unsaved: its earlier pictures or voice, silent, then its text."""
    rows = [Delivery(kind=kind, payload={**medium, "silent": True}, **common)
            for kind, medium in media]
    rows.append(Delivery(kind=DeliveryKind.TEXT, payload=payload, card=card, key=key, **common))
    return rows


async def _common(chat_id: int, case_id: int | None) -> dict[str, Any]:
    now = _now()
    return {"chat_id": chat_id, "case_id": case_id, "created_at": now, "not_before": now,
            "priority": await _priority(case_id)}


async def post(
    chat_id: int,
    text: str,
    *,
    voice: str | None = None,
    photos: Sequence[str] = (),
    image: bytes | None = None,
    keyboard: InlineKeyboardMarkup | ReplyKeyboardMarkup | None = None,
    case_id: int | None = None,
    card: bool = False,
    key: str | None = None,
) -> Delivery:
    """Queue one notification; returns the row that carries its text.

    `voice` and `photos` are Telegram file ids; `image` is a picture of our own (a PNG chart),
    uploaded. `keyboard` is the text's buttons, or a menu under the typing field. The chat is
    told once: where the last picture or voice is a single one and the text fits under it as
    its caption, they are one message; what comes before goes silently (no sound on the
    phone), then the text. A card keeps `CARD_EDIT_ROOM` free in its caption for the status
    its edits add. Joins the caller's transaction when there is one. With `key`, a
    notification already queued under that key is returned instead and nothing new is queued.
    Inside `together` the rows are held and written at its end (the row returned is unsaved).
    """
    media: list[tuple[DeliveryKind, dict[str, Any]]] = []
    if voice is not None:
        media.append((DeliveryKind.VOICE, {"voice": voice}))
    if image is not None:
        media.append((DeliveryKind.PHOTO, {"upload": base64.b64encode(image).decode("ascii")}))
    for chunk in _chunks(photos):
        if len(chunk) == 1:
            media.append((DeliveryKind.PHOTO, {"photo": chunk[0]}))
        else:
            media.append((DeliveryKind.ALBUM, {"photos": chunk}))
    payload = _text_payload(text, keyboard)
    room = CARD_EDIT_ROOM if card else 0
    if media and media[-1][0] != DeliveryKind.ALBUM and _length(text) + room <= CAPTION_MAX:
        payload.update(media.pop()[1])  # the text goes as that picture's or voice's caption
    held = _held.get()
    if held is not None and (key is None or not media):
        rows = _rows(await _common(chat_id, case_id), media, payload, card, key)
        held.append(_Held(rows, key))
        return rows[-1]
    if key is not None:
        existing = await Delivery.get_or_none(key=key)
        if existing is not None:
            return existing
    joined = db.in_callers_transaction()
    try:
        # A savepoint inside the caller's transaction, where a lost race on `key` must undo
        # only this; else the caller's transaction, or one of its own.
        async with in_transaction() if key is not None else db.atomic():
            common = await _common(chat_id, case_id)
            # The chat's earlier rows stand between it and this one: they go first too (a
            # broadcast's row waiting in this chat, the rows before an emergency's).
            await _pending().filter(chat_id=chat_id, priority__lt=common["priority"]).update(
                priority=common["priority"]
            )
            for row in _rows(common, media, payload, card, key):
                await row.save()
    except IntegrityError:
        existing = await Delivery.get_or_none(key=key) if key is not None else None
        if existing is None:
            raise
        return existing
    if not joined:
        wake()
    return row


def _length(text: str) -> int:
    """A text's length as Telegram counts it for its limits: in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _fit_caption(text: str) -> str:
    """A caption within Telegram's limit, keeping its last paragraph (a card's status).

    Only an edit can need this: `post` leaves a card `CARD_EDIT_ROOM` for what edits add.
    """
    if _length(text) <= CAPTION_MAX:
        return text
    head, _, tail = text.rpartition("\n\n")
    if not head or _length(tail) > CAPTION_MAX // 2:
        head, tail = text, ""
    suffix = "…" + ("\n\n" + tail if tail else "")
    cut = len(head)
    while _length(head[:cut]) + _length(suffix) > CAPTION_MAX:
        cut -= max(1, (_length(head[:cut]) + _length(suffix) - CAPTION_MAX) // 2)
    return head[:cut] + suffix


async def broadcast(
    messages: Sequence[tuple[int, str, str, InlineKeyboardMarkup | None]],
) -> int:
    """Queue one text per chat, `(chat_id, key, text, keyboard)`, at `BROADCAST` priority.

    Written in bulk in the caller's transaction: thousands of rows in a few statements. A key
    already queued is left out, so each chat gets it once; returns how many were queued.
    """
    known = await _known_keys([key for _, key, _, _ in messages])
    now = _now()
    rows = [
        Delivery(
            chat_id=chat_id, kind=DeliveryKind.TEXT, payload=_text_payload(text, keyboard),
            key=key, created_at=now, not_before=now, priority=BROADCAST,
        )
        for chat_id, key, text, keyboard in messages
        if key not in known
    ]
    await Delivery.bulk_create(rows, batch_size=BATCH)
    if not db.in_callers_transaction():
        wake()
    return len(rows)


async def edit(
    original: Delivery, text: str, keyboard: InlineKeyboardMarkup | None = None
) -> Delivery:
    """Queue a change of `original`'s message: sent after it, dropped if it failed."""
    held = _held.get()
    if held is not None and original.id is None:
        # Held too, so not sent yet: it says the new words from the start.
        medium = {key: value for key, value in original.payload.items() if key in _MEDIA_KEYS}
        original.payload = {**_text_payload(text, keyboard), **medium}
        return original
    now = _now()
    row = Delivery(
        chat_id=original.chat_id,
        kind=DeliveryKind.EDIT,
        payload=_text_payload(text, keyboard),
        edit_of_id=original.id,
        case_id=original.case_id,  # type: ignore[attr-defined]
        created_at=now,
        not_before=now,
        priority=original.priority,
    )
    if held is not None:
        held.append(_Held([row], post=False))
        return row
    await row.save()
    if not db.in_callers_transaction():
        wake()
    return row


def _text_payload(
    text: str, keyboard: InlineKeyboardMarkup | ReplyKeyboardMarkup | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text}
    if keyboard is not None:
        payload["reply_markup"] = keyboard.model_dump(mode="json", exclude_none=True)
    return payload


def _keyboard(payload: dict[str, Any]) -> InlineKeyboardMarkup | ReplyKeyboardMarkup | None:
    markup = payload.get("reply_markup")
    if not markup:
        return None
    if "keyboard" in markup:
        return ReplyKeyboardMarkup.model_validate(markup)
    return InlineKeyboardMarkup.model_validate(markup)


#: What a TEXT row's payload may carry besides its text: the picture or voice it captions.
_MEDIA_KEYS = ("photo", "upload", "voice")
#: Telegram's refusals of a file rather than of the message (its text would go alone).
_MEDIUM_REFUSALS = (
    "file identifier", "wrong type of", "http url content", "image_process_failed",
    "photo_invalid_dimensions", "file must be non-empty", "type of file", "file of type",
    "voice_messages_forbidden", "caption is too long",
)


def _medium_refused(error: TelegramBadRequest) -> bool:
    return any(words in error.message.lower() for words in _MEDIUM_REFUSALS)


async def _record_refused_medium(row: Delivery, error: str) -> None:
    """A captioned text went without its picture or voice: that part is a failed row of its
    own, so whom it concerns hears of it as of any notice given up on."""
    medium = {key: row.payload[key] for key in _MEDIA_KEYS if key in row.payload}
    kind = DeliveryKind.VOICE if "voice" in medium else DeliveryKind.PHOTO
    now = _now()
    # Its message is a text now: its edits are edits of a text.
    text = {key: value for key, value in row.payload.items() if key not in medium}
    await Delivery.filter(id=row.id).update(payload=text)
    log.warning("courier: delivery %s to %s went without its %s: %s",
                row.id, row.chat_id, kind, error)
    failed = await Delivery.create(
        chat_id=row.chat_id, kind=kind, payload=medium, case_id=row.case_id,  # type: ignore[attr-defined]
        created_at=row.created_at, not_before=now, priority=row.priority, failed_at=now,
        error=error[:ERROR_MAX],
    )
    await _undelivered([failed.id], forbidden=False)


def _photo(payload: dict[str, Any]) -> str | BufferedInputFile:
    """A row's photo: a Telegram file id, or our own picture to upload."""
    if "upload" in payload:
        return BufferedInputFile(base64.b64decode(payload["upload"]), UPLOAD_NAME)
    return str(payload["photo"])


def _cost(row: Delivery) -> int:
    """How many messages Telegram counts for this row."""
    if row.kind == DeliveryKind.ALBUM:
        return max(1, len(row.payload.get("photos", [])))
    return 1


# --------------------------------------------------------------------------------------------
# Pacing


class _Window:
    """At most `cap` messages in any `seconds`: Telegram's rule, kept as a log of send times.

    A send bigger than the cap (an album in a private chat) is spread into the future, so the
    chat's next message waits as long as if the photos had been sent one by one.
    """

    def __init__(self, cap: int, seconds: float) -> None:
        self.cap = cap
        self.seconds = seconds
        self.times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self.times and now - self.times[0] >= self.seconds:
            self.times.popleft()

    def ready_in(self, now: float, cost: int, cap: int | None = None) -> float:
        cap = cap or self.cap
        self._trim(now)
        excess = len(self.times) + min(cost, cap) - cap
        if excess <= 0:
            return 0.0
        moment = self.times[min(excess, len(self.times)) - 1]
        return max(0.0, moment + self.seconds - now)

    def take(self, now: float, cost: int) -> None:
        spacing = self.seconds / self.cap
        start = max([now, *self.times]) if cost > self.cap else now
        for index in range(cost):
            self.times.append(start + (index * spacing if cost > self.cap else 0.0))

    def idle(self, now: float) -> bool:
        self._trim(now)
        return not self.times


def broadcast_cap(cap: int) -> int:
    """What of an overall budget of `cap` a second a broadcast may use."""
    return max(1, cap - max(1, round(cap * BROADCAST_LEAVES)))


class _Pacer:
    """The courier's view of Telegram's limits: overall (direct replies included), per
    private chat, per group.

    A message is counted when Telegram has answered, which is after Telegram counted it, and
    the sends still in flight hold their place meanwhile: so the counts here are never below
    Telegram's, whatever the network's delays.
    """

    def __init__(self, per_second: int = GLOBAL_PER_SECOND) -> None:
        self.per_second = per_second
        self.overall = _Window(per_second, 1.0)
        self.in_flight = 0
        self.chats: dict[int, _Window] = {}
        self.slow_until = 0.0
        self.paused_until = 0.0
        #: Direct replies waiting for room: the courier starts nothing while there are any.
        self.replies_waiting = 0
        #: The courier held back for waiting replies: the last of them to finish wakes it.
        self.courier_gave_way = False
        #: Set whenever a send finishes, so a waiting reply looks again.
        self.finishing = asyncio.Event()

    def _chat(self, chat_id: int) -> _Window:
        window = self.chats.get(chat_id)
        if window is None:
            if len(self.chats) > 10_000:
                now = time.monotonic()
                self.chats = {k: w for k, w in self.chats.items() if not w.idle(now)}
            # Per chat the limits scale with the overall one: a Bot API server in front that
            # allows more than Telegram's 30 a second (the emulator with its limits off, in the
            # benchmarks) allows more per chat too; at 30 they are Telegram's.
            scale = max(1, self.per_second // GLOBAL_PER_SECOND)
            if chat_id > 0:
                window = _Window(PRIVATE_PER_SECOND * scale, 1.0)
            else:
                window = _Window(GROUP_PER_MINUTE * scale, 60.0)
            self.chats[chat_id] = window
        return window

    def chat_ready_in(self, chat_id: int, cost: int, now: float) -> float:
        return self._chat(chat_id).ready_in(now, cost)

    def overall_ready_in(self, cost: int, now: float, *, broadcast: bool = False) -> float:
        """0 when a courier send of `cost` messages may start now; else roughly how long to
        wait. A broadcast's send keeps `BROADCAST_LEAVES` of the budget free."""
        if self.replies_waiting:
            self.courier_gave_way = True
            return POLL_SECONDS  # replies go first; the last of them wakes the courier
        cap = self.per_second // 2 if now < self.slow_until else self.per_second
        if broadcast:
            cap = broadcast_cap(cap)
        return max(self.paused_until - now, self._room_in(cost, now, cap))

    def _room_in(self, cost: int, now: float, cap: int) -> float:
        """How long until `cost` more messages fit under `cap`, counting the sends in flight."""
        if self.in_flight and self.in_flight + cost > cap:
            return POLL_SECONDS  # a finishing send tells sooner
        return self.overall.ready_in(now, min(cost + self.in_flight, cap), cap)

    async def reserve_for_reply(self, cost: int, chat_id: int | None) -> None:
        """Hold room for a direct reply: the next free place, ahead of the courier.

        The reply waits for room overall and in its chat (a welcome and the question after it
        are two messages to one chat, which Telegram allows one a second). It waits at most
        `REPLY_WAIT`, then goes anyway: a person's answer is not held back for long, and a 429
        it might meet is retried by `DirectReplies`. The full 30 apply, even while the courier
        slows itself down after a 429.
        """
        deadline = time.monotonic() + REPLY_WAIT
        self.replies_waiting += 1
        try:
            while (now := time.monotonic()) < deadline:
                wait = self._room_in(cost, now, self.per_second)
                if chat_id is not None:
                    wait = max(wait, self.chat_ready_in(chat_id, cost, now))
                if wait <= 0:
                    break
                self.finishing.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.finishing.wait(), min(wait, deadline - now))
        finally:
            self.replies_waiting -= 1
        self.started(cost)  # no await since the last look: the room is still there

    def started(self, cost: int) -> None:
        self.in_flight += cost

    def given_back(self, cost: int) -> None:
        """A send that was started is not made after all."""
        self.in_flight -= cost
        self.finishing.set()

    def finished(self, chat_id: int | None, cost: int, now: float) -> None:
        """A send is answered: from now it counts in the overall window, and in its chat's
        when `chat_id` is given."""
        self.in_flight -= cost
        self.overall.take(now, cost)
        if chat_id is not None:
            self._chat(chat_id).take(now, cost)
        self.finishing.set()

    def reply_finished(self, cost: int, now: float, chat_id: int | None) -> bool:
        """A direct reply is answered; True when the courier gave way to replies and none is
        waiting any more, so it should look again now rather than at its next poll."""
        self.finished(chat_id, cost, now)
        if not self.courier_gave_way or self.replies_waiting:
            return False
        self.courier_gave_way = False
        return True

    def slow_down(self, now: float, retry_after: float) -> None:
        self.slow_until = max(self.slow_until, now + SLOW_SECONDS)
        # Nothing at all for a moment: the limit hit may have been the overall one.
        self.paused_until = max(self.paused_until, now + min(float(retry_after), 1.0))


class SharedLimits:
    """Telegram's limits for all processes of one bot together, kept in Redis by `limits`
    (its moving window: at most N sends in any window, across processes, in one Lua call).

    Each process still keeps its own `_Pacer`, which counts a send when Telegram has answered
    and lets replies go first. This counts a send when it starts, which is as early as any
    process can count it: the flight time to Telegram (milliseconds) is the one margin the
    processes together do not keep. When Redis does not answer, sends are paced by each
    process alone, with a warning, rather than held back: /readyz says Redis is failing.
    """

    def __init__(self, redis_url: str, bot_id: int, per_second: int = GLOBAL_PER_SECOND) -> None:
        from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        self._pool = redis_pool(redis_url)
        self._storage = RedisStorage(
            f"async+{redis_url}", implementation="redispy",
            key_prefix=f"villagebot:pacing:{bot_id}", connection_pool=self._pool,
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        scale = max(1, per_second // GLOBAL_PER_SECOND)  # as `_Pacer._chat`
        self._overall = RateLimitItemPerSecond(per_second)
        self._broadcast = RateLimitItemPerSecond(broadcast_cap(per_second))
        self._private = RateLimitItemPerSecond(PRIVATE_PER_SECOND * scale)
        self._group = RateLimitItemPerMinute(GROUP_PER_MINUTE * scale)
        self._warned = False

    async def take(
        self, chat_id: int | None, cost: int, *, broadcast: bool = False
    ) -> tuple[float, bool]:
        """Count `cost` messages (to `chat_id`) if all processes together have room: (0, _).
        Else nothing is counted: (seconds to wait at least, whether the overall window is
        full rather than the chat's). A broadcast's messages count in a smaller window too,
        which keeps room for everything else (`BROADCAST_LEAVES`)."""
        try:
            if chat_id is not None:
                chat = self._private if chat_id > 0 else self._group
                # An album bigger than the chat's window counts as the whole window.
                chat_cost = min(cost, chat.amount)
                if not await self._limiter.test(chat, str(chat_id), cost=chat_cost):
                    return await self._wait(chat, str(chat_id)), False
            if broadcast and not await self._limiter.hit(self._broadcast, "broadcast", cost=cost):
                return await self._wait(self._broadcast, "broadcast"), True
            if not await self._limiter.hit(self._overall, "all", cost=cost):
                return await self._wait(self._overall, "all"), True
            if chat_id is not None:
                # Two processes sending to one chat in the same instant may both pass the test
                # above; the second send then meets Telegram's 429 and waits it out.
                await self._limiter.hit(chat, str(chat_id), cost=chat_cost)
        except Exception as error:  # Redis down or restarting: pace per process meanwhile
            if not self._warned:
                log.warning("shared pacing unavailable, each process paces itself: %s", error)
                self._warned = True
            return 0.0, False
        self._warned = False
        return 0.0, False

    async def _wait(self, item: Any, key: str) -> float:
        stats = await self._limiter.get_window_stats(item, key)
        return max(POLL_SECONDS / 5, stats.reset_time - time.time())

    async def close(self) -> None:
        await self._pool.disconnect()


# --------------------------------------------------------------------------------------------
# The courier


class _Gone(Exception):
    """The row cannot be delivered: Telegram refused it, or its original was never sent."""


class _NotYet(Exception):
    """An edit whose original is not sent yet."""


#: Rows claimed by a courier: those of `{ids}` unfinished and unheld (or held past their
#: lease), in one statement that says which. (The parameters in the order they are written:
#: SQLite numbers its `?` so.)
_CLAIM = (
    'UPDATE "delivery" SET "lease_until" = {until}, "lease_owner" = {owner}'
    ' WHERE ("lease_until" IS NULL OR "lease_until" <= {now})'
    ' AND "sent_at" IS NULL AND "failed_at" IS NULL AND "id" IN ({ids}) RETURNING "id"'
)


def _pending() -> Any:
    return Delivery.filter(sent_at__isnull=True, failed_at__isnull=True)


async def _heads(now: datetime, *, limit: int, free_only: bool = True) -> list[Delivery]:
    """The first unfinished row of each chat, when it is due (and, by default, unclaimed)."""
    firsts = _pending().annotate(first=Min("id")).group_by("chat_id").values("first")
    query = Delivery.filter(id__in=Subquery(firsts), not_before__lte=now)
    if free_only:
        query = query.filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
    return await query.order_by("-priority", "id").limit(limit)


async def _undelivered(row_ids: list[int], *, forbidden: bool) -> None:
    """Rows failed for good: the domain decides who must hear of it (never only a log line)."""
    from bot import notices  # the domain queues through this module: imported when needed

    try:
        await notices.undelivered(row_ids, forbidden=forbidden)
    except Exception:
        log.exception("courier: telling about undelivered rows %s failed", row_ids)
    wake()


async def _finished(keys: Sequence[str | None]) -> None:
    """Keyed rows sent or failed for good: a broadcast whose last row this was is reported."""
    from bot import public_notices  # the domain queues through this module: imported when needed

    done = [key for key in keys if key]
    if not done:
        return
    try:
        await public_notices.finished(done)
    except Exception:
        log.exception("courier: settling broadcasts of %s failed", done)


def _describe(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text[:ERROR_MAX]


class Courier:
    """Sends the outbox through one Bot; start one per process, any number per database.

    `owner` names the process slot (the INSTANCE setting): the same name after a restart
    takes back the rows the previous run had claimed. Without one the courier is a stranger
    to every earlier run, and their rows wait for their leases to run out.
    """

    def __init__(
        self,
        bot: Bot,
        *,
        per_second: int = GLOBAL_PER_SECOND,
        owner: str | None = None,
        shared: SharedLimits | None = None,
        robot_sender: robots.RobotSender | None = None,
    ) -> None:
        self.bot = bot
        self.robots = robot_sender or robots.RobotSender()
        #: Robot posts in flight: they take no place of Telegram's `MAX_IN_FLIGHT`.
        self._robot_flight = 0
        self.owner = (owner or f"courier-{secrets.token_hex(6)}")[:OWNER_MAX]
        self._pacer = _Pacer(per_second)
        self._shared = shared
        self._wakeup = asyncio.Event()
        #: Set when rows are queued: a pass over the outbox stops to read it again, so a row
        #: that outranks the rest does not wait for the pass's end.
        self._news = asyncio.Event()
        self._progress = asyncio.Event()
        self._busy: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Sends started, ever: a pass that started one may stop for news (see `_dispatch`).
        self._launched = 0
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Rows this courier delivered (sent or edited), for the logs and the tests.
        self.sent = 0

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self._loop_task is not None:
            return
        await self._take_back()
        self._stopping = False
        self._loop_task = asyncio.create_task(self._run(), name="courier")
        _couriers.add(self)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop looking, let the sends in flight finish (up to `grace` seconds), then end."""
        _couriers.discard(self)
        self._stopping = True
        self._wakeup.set()
        if self._loop_task is not None:
            task, self._loop_task = self._loop_task, None
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in late:
                # Their rows stay leased: taken over when the lease runs out (see above).
                task.cancel()
            if late:
                await asyncio.wait(late)
        await self.robots.close()

    async def _take_back(self) -> None:
        """The rows this owner claimed before a restart are free again: sent now, not in a
        minute. (Each may have reached Telegram just before the process stopped: the one
        resend the module's docstring owns up to.)"""
        released = await (
            _pending()
            .filter(lease_owner=self.owner, lease_until__isnull=False)
            .update(lease_until=None)
        )
        if released:
            log.info("courier %s: took back %s unfinished rows", self.owner, released)

    def wake(self) -> None:
        self._news.set()
        self._wakeup.set()

    async def drained(self, timeout: float = 10.0) -> None:
        """Return once nothing is due: every row sent, failed or waiting for a later retry."""
        async with asyncio.timeout(timeout):
            while True:
                self._progress.clear()
                if not self._tasks and not await _heads(_now(), limit=1, free_only=False):
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), POLL_SECONDS)

    # ---- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        log.info("courier started")
        while not self._stopping:
            self._wakeup.clear()
            try:
                delay = await self._dispatch()
            except Exception:
                log.exception("courier: reading the outbox failed")
                delay = 1.0
            self._progress.set()
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)
        log.info("courier stopped")

    async def _dispatch(self) -> float:
        """Start sending what is due and allowed; returns how long to sleep if nobody wakes.
        The rows for Telegram are claimed together, in one statement, at the pass's end."""
        chosen: list[tuple[Delivery, int]] = []
        try:
            return await self._choose(chosen)
        finally:
            await self._claim_and_launch(chosen)

    async def _choose(self, chosen: list[tuple[Delivery, int]]) -> float:
        """What of the outbox may go now, into `chosen` with its cost (its places in the
        pacer's windows held); returns how long to sleep if nobody wakes."""
        delay = POLL_SECONDS
        if len(self._tasks) >= MAX_IN_FLIGHT + MAX_ROBOTS_IN_FLIGHT:
            return delay
        now = _now()
        telegram_full = False  # Telegram's rows wait; the robots' go on
        self._news.clear()
        before = self._launched
        for row in await _heads(now, limit=BATCH):
            if self._stopping:
                break
            if self._news.is_set() and (chosen or self._launched > before):
                return 0.0  # rows queued since the read may go first: read again now
            if row.chat_id in self._busy:
                continue
            if row.kind == DeliveryKind.ROBOT:
                delay = min(delay, await self._start_robot(row))
                continue
            in_flight = len(self._tasks) - self._robot_flight + len(chosen)
            if telegram_full or in_flight >= MAX_IN_FLIGHT:
                continue
            cost = _cost(row)
            moment = time.monotonic()
            wait = self._pacer.chat_ready_in(row.chat_id, cost, moment)
            if wait > 0:
                delay = min(delay, wait)
                continue
            broadcast = row.priority <= BROADCAST
            wait = self._pacer.overall_ready_in(cost, moment, broadcast=broadcast)
            if wait > 0:
                delay = min(delay, wait)
                telegram_full = True
                continue
            # Hold the place before the awaits, or a reply could take it meanwhile.
            self._pacer.started(cost)
            try:
                wait, full = await self._shared_room(row.chat_id, cost, broadcast)
            except BaseException:
                self._pacer.given_back(cost)
                raise
            if wait > 0:  # the other processes have used the room meanwhile
                self._pacer.given_back(cost)
                delay = min(delay, wait)
                telegram_full = full
                continue
            self._busy.add(row.chat_id)  # one row a chat at a time, from here on
            chosen.append((row, cost))
        return delay

    async def _claim_and_launch(self, chosen: list[tuple[Delivery, int]]) -> None:
        """Claim the chosen rows in one statement and start sending those claimed; a row
        another courier took meanwhile gives its places back."""
        if not chosen:
            return
        claimed: set[int] = set()
        try:
            if not self._stopping:  # (else they wait for the next start, or another courier)
                claimed = await self._claim_all([row.id for row, _ in chosen])
        except Exception:
            log.exception("courier: claiming %d rows failed", len(chosen))
        for row, cost in chosen:
            if row.id in claimed:
                self._launch(row, cost)
            else:
                self._pacer.given_back(cost)
                self._busy.discard(row.chat_id)

    def _launch(self, row: Delivery, cost: int) -> None:
        self._busy.add(row.chat_id)
        task = asyncio.create_task(self._deliver(row, cost))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._launched += 1

    async def _start_robot(self, row: Delivery) -> float:
        """Start posting a robot's row when its own windows allow; returns how long until
        they would if they do not."""
        if self._robot_flight >= MAX_ROBOTS_IN_FLIGHT:
            return POLL_SECONDS
        kind = await self.robots.kind_of(row.robot_id)  # type: ignore[attr-defined]
        moment = time.monotonic()
        wait = self.robots.ready_in(row.robot_id, kind, moment)  # type: ignore[attr-defined]
        if wait > 0:
            return wait
        if not await self._claim(row):
            return POLL_SECONDS
        self.robots.started(row.robot_id, kind, moment)  # type: ignore[attr-defined]
        self._robot_flight += 1
        self._launch(row, 0)
        return POLL_SECONDS

    async def _shared_room(
        self, chat_id: int, cost: int, broadcast: bool
    ) -> tuple[float, bool]:
        if self._shared is None:
            return 0.0, False
        return await self._shared.take(chat_id, cost, broadcast=broadcast)

    async def room_for_reply(self, chat_id: int | None, cost: int) -> None:
        """Wait for room among all processes for a direct reply, at most `REPLY_WAIT`."""
        if self._shared is None:
            return
        deadline = time.monotonic() + REPLY_WAIT
        while True:
            wait, _ = await self._shared.take(chat_id, cost)
            left = deadline - time.monotonic()
            if wait <= 0 or left <= 0:
                return
            await asyncio.sleep(min(wait, left))

    async def _claim(self, row: Delivery) -> bool:
        """Take the row if nobody holds it."""
        return row.id in await self._claim_all([row.id])

    async def _claim_all(self, row_ids: list[int]) -> set[int]:
        """Of these rows, those nobody held, now this courier's: one conditional UPDATE, safe
        across processes (`_CLAIM`)."""
        now = _now()
        connection = connections.get("default")
        marks = db.parameters(connection, 3 + len(row_ids))
        rows = await connection.execute_query_dict(
            _CLAIM.format(until=marks[0], owner=marks[1], now=marks[2], ids=", ".join(marks[3:])),
            [now + LEASE, self.owner, now, *row_ids],
        )
        return {int(row["id"]) for row in rows}

    async def _deliver(self, row: Delivery, cost: int) -> None:
        _courier_sending.set(True)  # in this task's own context: counted here, not by DirectReplies
        robot = row.kind == DeliveryKind.ROBOT
        try:
            await (self._attempt_robot(row) if robot else self._attempt(row))
        except Exception:
            log.exception("courier: delivery %s failed unexpectedly", row.id)
        finally:
            if robot:
                self._robot_flight -= 1
            else:
                self._pacer.finished(row.chat_id, cost, time.monotonic())
            self._busy.discard(row.chat_id)
            self._progress.set()
            self._wakeup.set()

    async def _attempt(self, row: Delivery) -> None:
        try:
            message_ids = await self._send(row)
        except _NotYet:
            await self._release(row, delay=1.0, count=False, error=None)
        except _Gone as error:
            await self._fail(row, str(error))
        except TelegramRetryAfter as error:
            log.warning("courier: chat %s: retry after %ss", row.chat_id, error.retry_after)
            self._pacer.slow_down(time.monotonic(), error.retry_after)
            await self._release(row, delay=float(error.retry_after), count=False, error=None)
        except TelegramForbiddenError as error:
            await self._forbidden(row, _describe(error))
        except TelegramMigrateToChat as error:
            await self._migrated(row, error.migrate_to_chat_id)
        except TelegramEntityTooLarge as error:
            await self._fail(row, _describe(error))
        except (TelegramNetworkError, TelegramServerError, TelegramUnauthorizedError) as error:
            await self._retry(row, _describe(error))
        except TelegramBadRequest as error:
            if row.kind == DeliveryKind.EDIT and NOT_MODIFIED in error.message:
                await self._sent(row, (await self._edited(row)).message_ids[-1:])
            else:
                await self._fail(row, _describe(error))
        except TelegramAPIError as error:
            await self._fail(row, _describe(error))
        except AiogramError as error:  # an answer that is not the Bot API's (a proxy page)
            await self._retry(row, _describe(error))
        except Exception as error:
            log.exception("courier: delivery %s raised", row.id)
            await self._retry(row, _describe(error))
        else:
            await self._sent(row, message_ids)

    async def _attempt_robot(self, row: Delivery) -> None:
        """A robot's row: the app's "too fast" waits, a refusal gives up, the rest retries."""
        policy = self.robots.policy
        try:
            await self.robots.send(row)
        except robots.RobotLimited as error:
            log.warning("courier: robot row %s: %s", row.id, error)
            kind = await self.robots.kind_of(row.robot_id)  # type: ignore[attr-defined]
            wait = policy.limited_wait[kind]
            await self._release(row, delay=wait, count=False, error=str(error))
        except robots.RobotRefused as error:
            await self._fail(row, str(error))
        except robots.RobotFailed as error:
            attempts = row.attempts + 1
            if attempts >= policy.max_attempts:
                await Delivery.filter(id=row.id).update(attempts=attempts)
                await self._fail(row, f"gave up after {attempts} attempts: {error}")
            else:
                log.info("courier: robot row %s: %s; again later", row.id, error)
                await self._release(row, delay=policy.backoff(attempts), count=True,
                                    error=str(error))
        else:
            await self._sent(row, [])

    # ---- talking to Telegram ---------------------------------------------------------------

    async def _send(self, row: Delivery) -> list[int]:
        payload = row.payload
        bot, chat_id, timeout = self.bot, row.chat_id, REQUEST_TIMEOUT
        silent = payload.get("silent")
        if row.kind in (DeliveryKind.TEXT, DeliveryKind.PHOTO, DeliveryKind.VOICE):
            text, markup = payload.get("text"), _keyboard(payload)
            try:
                if "photo" in payload or "upload" in payload:
                    message = await bot.send_photo(
                        chat_id, _photo(payload), caption=text, reply_markup=markup,
                        disable_notification=silent, request_timeout=timeout,
                    )
                elif "voice" in payload:
                    message = await bot.send_voice(
                        chat_id, payload["voice"], caption=text, reply_markup=markup,
                        disable_notification=silent, request_timeout=timeout,
                    )
                else:
                    message = await bot.send_message(
                        chat_id, text, reply_markup=markup, request_timeout=timeout
                    )
            except TelegramBadRequest as error:
                if text is None or not _medium_refused(error):
                    raise
                # The picture or voice is refused (a file id Telegram no longer knows, a
                # person who takes no voice messages): the text still goes, on its own.
                message = await bot.send_message(
                    chat_id, text, reply_markup=markup, request_timeout=timeout
                )
                await _record_refused_medium(row, _describe(error))
            return [message.message_id]
        if row.kind == DeliveryKind.ALBUM:
            media = [InputMediaPhoto(media=photo) for photo in payload["photos"]]
            messages = await bot.send_media_group(
                chat_id, media, disable_notification=silent, request_timeout=timeout
            )
            return [message.message_id for message in messages]
        if row.kind == DeliveryKind.LOCATION:  # queued by an earlier version: cards had a pin
            message = await bot.send_location(
                chat_id, payload["latitude"], payload["longitude"], request_timeout=timeout
            )
            return [message.message_id]
        if row.kind == DeliveryKind.EDIT:
            original = await self._edited(row)
            message_id = [original.message_ids[-1]]
            if not any(key in original.payload for key in _MEDIA_KEYS):
                await bot.edit_message_text(
                    text=payload["text"],
                    chat_id=chat_id,
                    message_id=message_id[0],
                    reply_markup=_keyboard(payload),
                    request_timeout=timeout,
                )
            else:  # the text is the caption of a photo or a voice message
                await bot.edit_message_caption(
                    caption=_fit_caption(payload["text"]),
                    chat_id=chat_id,
                    message_id=message_id[0],
                    reply_markup=_keyboard(payload),
                    request_timeout=timeout,
                )
            return message_id
        raise _Gone(f"unknown delivery kind {row.kind}")

    @staticmethod
    async def _edited(row: Delivery) -> Delivery:
        """The row whose message an EDIT row changes (its last message), once sent."""
        original = await Delivery.get_or_none(id=row.edit_of_id)  # type: ignore[attr-defined]
        if original is None or original.failed_at is not None:
            raise _Gone("the message to edit was never sent")
        if original.sent_at is None:
            raise _NotYet
        if not original.message_ids:
            raise _Gone("the message to edit has no message id")
        return original

    # ---- recording the outcome -------------------------------------------------------------

    async def _sent(self, row: Delivery, message_ids: list[int]) -> None:
        # The window where a crash means one resend: keep it to this one write, retried.
        for attempt in range(3):
            try:
                await Delivery.filter(id=row.id).update(
                    sent_at=_now(), lease_until=None, message_ids=message_ids, error=None
                )
                break
            except Exception:
                if attempt == 2:
                    raise
                log.warning("courier: recording delivery %s as sent failed; again", row.id)
                await asyncio.sleep(0.5)
        self.sent += 1
        await _finished([row.key])

    @staticmethod
    async def _fail(row: Delivery, error: str) -> None:
        log.warning("courier: delivery %s to %s failed: %s", row.id, row.chat_id, error)
        await Delivery.filter(id=row.id).update(
            failed_at=_now(), lease_until=None, error=error[:ERROR_MAX]
        )
        await _undelivered([row.id], forbidden=False)
        await _finished([row.key])

    @staticmethod
    async def _release(row: Delivery, *, delay: float, count: bool, error: str | None) -> None:
        changes: dict[str, Any] = {
            "lease_until": None,
            "not_before": _now() + timedelta(seconds=delay),
        }
        if count:
            changes["attempts"] = row.attempts + 1
        if error is not None:
            changes["error"] = error[:ERROR_MAX]
        await Delivery.filter(id=row.id).update(**changes)

    async def _retry(self, row: Delivery, error: str) -> None:
        attempts = row.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            await Delivery.filter(id=row.id).update(attempts=attempts)
            await self._fail(row, f"gave up after {attempts} attempts: {error}")
            return
        delay = min(BACKOFF_FIRST * 2 ** (attempts - 1), BACKOFF_CAP)
        log.info("courier: delivery %s: %s; retry in %.1fs", row.id, error, delay)
        await self._release(row, delay=delay, count=True, error=error)

    @staticmethod
    async def _forbidden(row: Delivery, error: str) -> None:
        """Blocked, deactivated or never started: stop trying this chat's queued rows."""
        now = _now()
        log.warning("courier: chat %s refuses messages: %s", row.chat_id, error)
        if row.chat_id > 0 and await Account.filter(
            id=row.chat_id, blocked_at__isnull=True
        ).update(blocked_at=now):
            await cache.changed()
        failing = await _pending().filter(chat_id=row.chat_id).values_list("id", flat=True)
        await Delivery.filter(id__in=list(failing), sent_at__isnull=True).update(
            failed_at=now, lease_until=None, error=error[:ERROR_MAX]
        )
        await _undelivered(list(failing), forbidden=True)
        await _finished(await Delivery.filter(id__in=list(failing)).values_list("key", flat=True))

    @staticmethod
    async def _migrated(row: Delivery, new_chat_id: int) -> None:
        """A group became a supergroup: its queued rows go to the new chat id, and what the
        group served (a unit, a digest) follows it (bot.bindings)."""
        from bot.bindings import group_migrated

        log.warning("courier: chat %s moved to %s", row.chat_id, new_chat_id)
        await Delivery.filter(id=row.id).update(lease_until=None)
        await group_migrated(row.chat_id, new_chat_id)


async def moved(old_chat_id: int, new_chat_id: int) -> None:
    """A chat's queued rows go to its new id (a group upgraded to a supergroup)."""
    await _pending().filter(chat_id=old_chat_id).update(chat_id=new_chat_id)


# --------------------------------------------------------------------------------------------
# Direct replies

#: Requests Telegram counts as messages towards its limits: sends and edits (the courier counts
#: its edits too). Chat actions, callback answers, getUpdates and the like are not messages.
_MESSAGE_METHODS: tuple[type[TelegramMethod[Any]], ...] = (
    SendMessage, SendPhoto, SendMediaGroup, SendLocation, SendDocument, SendVoice, SendAudio,
    SendVideo, SendVideoNote, SendAnimation, SendSticker, SendContact, SendVenue, SendPoll,
    SendDice, CopyMessage, CopyMessages, ForwardMessage, ForwardMessages, EditMessageText,
    EditMessageCaption, EditMessageReplyMarkup, EditMessageMedia,
)
_EDITS = (EditMessageText, EditMessageCaption, EditMessageReplyMarkup, EditMessageMedia)
#: A direct reply that meets a 5xx or a network error is sent again after these pauses.
REPLY_BACKOFF = (0.2, 0.5, 1.0)


def _messages_in(method: TelegramMethod[Any]) -> int:
    """How many messages Telegram counts for a request: an album, its items; 0 if none."""
    if isinstance(method, SendMediaGroup):
        return max(1, len(method.media))
    if isinstance(method, CopyMessages | ForwardMessages):
        return max(1, len(method.message_ids))
    return 1 if isinstance(method, _MESSAGE_METHODS) else 0


def _chat_of(method: TelegramMethod[Any]) -> int | None:
    chat_id = getattr(method, "chat_id", None)
    return chat_id if isinstance(chat_id, int) else None


def _cosmetic(method: TelegramMethod[Any]) -> bool:
    """Calls whose failure must not stop a step: answering a tap, taking used buttons away,
    showing "typing". The step's real answer comes after them."""
    if isinstance(method, AnswerCallbackQuery | SendChatAction):
        return True
    return isinstance(method, EditMessageReplyMarkup) and method.reply_markup is None


class DirectReplies(BaseRequestMiddleware):
    """What the handlers send themselves survives what the courier survives.

    Register it on the courier's Bot (`bot.session.middleware(DirectReplies(courier))`):
    - Replies are counted in the courier's overall window and go first, so a person gets the
      answer during a broadcast; and they keep to their chat's window, so two replies in a row
      to one person do not meet Telegram's one-a-second limit.
    - A 429 with a short `retry_after`, a 5xx or a network error is sent again (`REPLY_BACKOFF`).
    - A cosmetic call (`_cosmetic`) that still fails is logged and passed over, and an edit
      Telegram refuses as "not modified" already shows what it asked for: neither stops the
      step, so the next question is always asked.
    The courier's own requests pass straight through: it counts and retries them itself.
    """

    def __init__(self, courier: Courier) -> None:
        self.courier = courier

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if _courier_sending.get() or isinstance(method, GetUpdates):
            return await make_request(bot, method)  # polling has its own backoff
        limited = failed = 0
        while True:
            try:
                return await self._paced(make_request, bot, method)
            except TelegramRetryAfter as error:
                if limited >= REPLY_RETRIES or error.retry_after > REPLY_RETRY_MAX:
                    if _cosmetic(method):
                        return self._passed_over(method, error)
                    raise
                limited += 1
                log.warning(
                    "%s refused: retry after %ss; sending again",
                    method.__api_method__, error.retry_after,
                )
                await asyncio.sleep(error.retry_after)
            except (TelegramServerError, TelegramNetworkError) as error:
                if failed >= len(REPLY_BACKOFF):
                    if _cosmetic(method):
                        return self._passed_over(method, error)
                    raise
                log.warning(
                    "%s failed (%s); sending again", method.__api_method__, _describe(error)
                )
                await asyncio.sleep(REPLY_BACKOFF[failed])
                failed += 1
            except TelegramBadRequest as error:
                if isinstance(method, _EDITS) and NOT_MODIFIED in error.message:
                    return True  # type: ignore[return-value]
                if _cosmetic(method):
                    return self._passed_over(method, error)
                raise
            except TelegramAPIError as error:
                if _cosmetic(method):
                    return self._passed_over(method, error)
                raise

    @staticmethod
    def _passed_over(method: TelegramMethod[Any], error: Exception) -> Any:
        log.warning("%s failed, going on without it: %s", method.__api_method__, _describe(error))
        return True

    async def _paced(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        cost = _messages_in(method)
        if not cost:
            return await make_request(bot, method)
        pacer, chat_id = self.courier._pacer, _chat_of(method)
        await pacer.reserve_for_reply(cost, chat_id)
        try:
            await self.courier.room_for_reply(chat_id, cost)
            return await make_request(bot, method)
        finally:
            if pacer.reply_finished(cost, time.monotonic(), chat_id):
                self.courier.wake()
