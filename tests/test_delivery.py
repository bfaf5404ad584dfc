"""The outbox and its courier, through the real bot and the Bot API emulator.

Notifications are queued with `bot.delivery.post`/`edit` in the caller's transaction and must
reach the chat once, in order, whatever Telegram or the process does in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import (
    AnswerCallbackQuery,
    EditMessageText,
    GetUpdates,
    SendChatAction,
    SendMediaGroup,
    SendMessage,
)
from aiogram.methods.base import Response
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
)
from conftest import TEST_REDIS_URL
from tortoise.transactions import in_transaction

from bench.common import QueryLog
from bench.processes import free_port
from bot import cases, delivery, notices
from bot.delivery import Courier, SharedLimits, edit, post
from bot.emulator import BotAPIEmulator, SendingLimits, buttons
from bot.i18n import catalogs
from bot.models import (
    Account,
    Case,
    CaseEvent,
    CaseStatus,
    Category,
    Delivery,
    DeliveryKind,
    Grid,
    Official,
    Unit,
    Villager,
)
from bot.sandbox import Phone, Sandbox


def _keyboard(*labels: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=f"test:{n}")]
            for n, label in enumerate(labels)
        ]
    )


async def _open_chat(sandbox: Sandbox, user_id: int, name: str) -> Phone:
    """A person who has started the bot (so the bot may write to them), waiting at step one."""
    phone = sandbox.phone(user_id, name)
    await phone.send("/start")
    await phone.expect("您住在哪个村？")
    return phone


async def _open_chat_quietly(emulator: BotAPIEmulator, user_id: int) -> int:
    """A person who wrote once and got the one-line answer; returns that answer's id."""
    await emulator.user(user_id, "访客").send_text("你好")
    answer = await emulator.wait_for(user_id)
    return int(answer["message_id"])


async def _photo_ids(emulator: BotAPIEmulator, count: int) -> list[str]:
    """File ids Telegram knows: photos someone sent to the bot (in a chat we do not read)."""
    camera = emulator.user(3999, "相机")
    ids = []
    for _ in range(count):
        before = emulator.bot_messages(3999)
        message = await camera.send_photo()
        ids.append(message["photo"][-1]["file_id"])
        after = before[-1]["message_id"] if before else 0
        await emulator.wait_for(3999, after=after)  # the bot's answer, so it is not in flight
    return ids


def _since(emulator: BotAPIEmulator, chat_id: int, after: int) -> list[dict]:
    return [m for m in emulator.bot_messages(chat_id) if m["message_id"] > after]


def _what(message: dict) -> str:
    """A message as the chat shows it: "photo", or "photo: <caption>", or its text."""
    if "photo" in message:
        return f"photo: {message['caption']}" if "caption" in message else "photo"
    return str(message.get("text"))


def _texts(emulator: BotAPIEmulator, chat_id: int) -> list[str]:
    return [m["text"] for m in emulator.bot_messages(chat_id) if "text" in m]


async def test_a_notice_rings_once_with_its_text_under_its_last_photo(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    li = await _open_chat(sandbox, 1001, "李明")
    start = li.seen
    photos = await _photo_ids(emulator, 4)
    long_text = "很长的一段说明。" * 130  # over the 1,024 characters of a caption
    async with in_transaction():
        single = await post(li.chat_id, "一张照片", photos=photos[:1])
        card = await post(
            li.chat_id, "案件 BL-2026-000001", photos=photos[1:3], keyboard=_keyboard("接单"),
            card=True,
        )
        long = await post(li.chat_id, long_text, photos=photos[3:])
        # A card keeps room in its caption for the status its edits add: 900 do not fit.
        roomy = await post(li.chat_id, "卡" * 900, photos=photos[:1], card=True)
    delivery.wake()
    # One message a second in a private chat, an album counting as its photos: about 7 s.
    await li.expect("卡" * 900, timeout=25)

    arrived = _since(emulator, li.chat_id, start)
    assert [_what(m) for m in arrived] == [
        "photo: 一张照片", "photo", "photo", "案件 BL-2026-000001", "photo", long_text, "photo",
        "卡" * 900,
    ]
    assert arrived[0]["photo"][-1]["file_id"] == photos[0]
    assert arrived[1]["media_group_id"] == arrived[2]["media_group_id"], "one album"
    assert buttons(arrived[3]) == ["接单"]
    rang = [m["message_id"] for m in emulator.notifying_messages(li.chat_id)]
    assert [m["message_id"] for m in arrived if m["message_id"] in rang] == [
        arrived[0]["message_id"], arrived[3]["message_id"], arrived[5]["message_id"],
        arrived[7]["message_id"],
    ], "each notice rings once: what comes before its text is sent silently"

    await sandbox.app.courier.drained()
    kinds = [row.kind for row in await Delivery.filter(chat_id=li.chat_id).order_by("id")]
    assert kinds == [
        DeliveryKind.TEXT, DeliveryKind.ALBUM, DeliveryKind.TEXT, DeliveryKind.PHOTO,
        DeliveryKind.TEXT, DeliveryKind.PHOTO, DeliveryKind.TEXT,
    ]
    single, card, long, roomy = [
        await Delivery.get(id=row.id) for row in (single, card, long, roomy)
    ]
    assert single.message_ids == [arrived[0]["message_id"]] and single.card is False
    assert (card.kind, card.card) == (DeliveryKind.TEXT, True)
    assert card.message_ids == [arrived[3]["message_id"]]
    assert long.message_ids == [arrived[5]["message_id"]] and roomy.card is True
    album = await Delivery.get(chat_id=li.chat_id, kind=DeliveryKind.ALBUM)
    assert album.message_ids == [arrived[1]["message_id"], arrived[2]["message_id"]]


async def test_a_card_under_a_photo_is_edited_in_its_caption(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    li = await _open_chat(sandbox, 1001, "李明")
    (photo,) = await _photo_ids(emulator, 1)
    card = await post(li.chat_id, "案件 1\n\n等待接单", photos=[photo], keyboard=_keyboard("接单"),
                      card=True)
    sent = await li.expect("等待接单")
    assert "photo" in sent and "text" not in sent
    await edit(card, "案件 1\n\n已接单", _keyboard("办结"))
    # An edit that grew past the caption's limit keeps its last paragraph, the status.
    await edit(card, "很长的说明" * 300 + "\n\n已办结")
    await emulator.wait_for(li.chat_id, lambda m: m.get("caption", "").endswith("已办结"))
    await sandbox.app.courier.drained()
    shown = {m["message_id"]: m for m in emulator.bot_messages(li.chat_id)}[sent["message_id"]]
    assert shown["caption"].endswith("…\n\n已办结") and len(shown["caption"]) <= 1024
    assert "reply_markup" not in shown
    edits = await Delivery.filter(edit_of_id=card.id).order_by("id")
    assert [row.sent_at is not None for row in edits] == [True, True]
    assert await Delivery.filter(failed_at__isnull=False).count() == 0


async def test_a_photo_telegram_refuses_leaves_its_text_to_go_alone(sandbox: Sandbox) -> None:
    li = await _open_chat(sandbox, 1001, "李明")
    card = await post(li.chat_id, "照片发不出去，文字照发", photos=["no-such-file"],
                      keyboard=_keyboard("接单"), card=True)
    shown = await li.expect("照片发不出去")
    assert "photo" not in shown and buttons(shown) == ["接单"]
    await edit(card, "照片发不出去，文字照发\n\n已接单")  # an edit of a text, not a caption
    await sandbox.emulator.wait_for(li.chat_id, lambda m: m.get("text", "").endswith("已接单"))
    await sandbox.app.courier.drained()
    card = await Delivery.get(id=card.id)
    assert card.sent_at is not None and card.message_ids == [shown["message_id"]]
    refused = await Delivery.get(chat_id=li.chat_id, kind=DeliveryKind.PHOTO)
    assert refused.payload == {"photo": "no-such-file"} and refused.failed_at is not None
    assert "wrong file identifier" in (refused.error or "")
    assert await Delivery.filter(failed_at__isnull=False).count() == 1


async def test_a_rolled_back_change_tells_nobody(sandbox: Sandbox) -> None:
    li = await _open_chat(sandbox, 1001, "李明")
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await post(li.chat_id, "这条不该发出")
            raise RuntimeError("the change failed")
    await post(li.chat_id, "这条之后发出")
    await li.expect("这条之后发出")
    assert not any("这条不该发出" in text for text in _texts(sandbox.emulator, li.chat_id))
    assert await Delivery.filter(chat_id=li.chat_id).count() == 1


async def test_a_change_committed_before_a_crash_is_told_once_after_restart(
    sandbox: Sandbox,
) -> None:
    li = await _open_chat(sandbox, 1001, "李明")
    await sandbox.app.courier.stop()  # the process dies right after the commit
    async with in_transaction():
        await post(li.chat_id, "重启之后送达")
    # A row a dead courier had claimed and never finished: its lease has run out.
    claimed = await post(li.chat_id, "接管的那条")
    await Delivery.filter(id=claimed.id).update(
        lease_until=delivery._now() - timedelta(seconds=1), attempts=1
    )
    assert _texts(sandbox.emulator, li.chat_id)[-1] == "您住在哪个村？", "nothing sent yet"

    await sandbox.restart_bot()
    await li.expect("重启之后送达")
    await li.expect("接管的那条")
    await sandbox.app.courier.drained()
    texts = _texts(sandbox.emulator, li.chat_id)
    assert texts.count("重启之后送达") == 1 and texts.count("接管的那条") == 1
    assert await Delivery.filter(sent_at__isnull=True).count() == 0


async def test_429_is_waited_out_and_the_limits_are_kept(database_url: str) -> None:
    async with Sandbox(database_url, limits=True) as sandbox:
        emulator = sandbox.emulator
        emulator.limits = False  # people open their chats; the bot's answers are not the point
        chats = list(range(2001, 2041))
        for chat_id in chats:
            await _open_chat_quietly(emulator, chat_id)
        busy = 2100
        await _open_chat_quietly(emulator, busy)
        emulator.limits = True
        emulator.fail_next("sendMessage", status=429, retry_after=1)

        async with in_transaction():
            for n in range(5):
                await post(busy, f"第{n}条")
            for chat_id in chats:
                await post(chat_id, f"给{chat_id}的通知")
        delivery.wake()

        await emulator.wait_for(busy, "第4条", timeout=20)
        for chat_id in chats:
            await emulator.wait_for(chat_id, f"给{chat_id}的通知", timeout=20)
        await sandbox.app.courier.drained()

        assert _texts(emulator, busy)[1:] == [f"第{n}条" for n in range(5)], "once each, in order"
        for chat_id in chats:
            assert _texts(emulator, chat_id).count(f"给{chat_id}的通知") == 1
        assert emulator.stats.too_many_requests == 1, "only the injected 429: limits were kept"
        assert await Delivery.filter(failed_at__isnull=False).count() == 0


async def test_a_lower_overall_limit_is_kept(database_url: str) -> None:
    """MESSAGES_PER_SECOND below Telegram's 30 (a Bot API server in front that allows less):
    the courier keeps to it, so that server never refuses a notice."""
    async with Sandbox(database_url, limits=True, messages_per_second=10) as sandbox:
        emulator = sandbox.emulator
        emulator.sending_limits = SendingLimits(per_second=10)
        groups = [-1003000000000 - n for n in range(35)]
        for n, group in enumerate(groups):
            emulator.group(group, f"第{n}组")
        async with in_transaction():
            for group in groups:
                await post(group, f"给{group}的通知")
        delivery.wake()

        await emulator.wait_for(groups[-1], "的通知", timeout=20)
        await sandbox.app.courier.drained()

        assert emulator.stats.too_many_requests == 0, "30 a second would have met 429s"
        for group in groups:
            assert _texts(emulator, group) == [f"给{group}的通知"]


async def _villager(sandbox: Sandbox, telegram_id: int, name: str) -> Phone:
    """A registered villager of Zhengda grid 1 who has not written yet."""
    account = await Account.create(id=telegram_id, first_name=name, language="zh-hans")
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name=name,
    )
    return sandbox.phone(telegram_id, name)


async def test_direct_replies_go_first_during_a_broadcast(database_url: str) -> None:
    """While the courier sends flat out, people writing to the bot still get every answer:
    their replies take the next free place in the overall window instead of meeting a 429."""
    async with Sandbox(database_url, limits=True) as sandbox:
        emulator = sandbox.emulator
        # Groups the bot is in: the bot may write there without anyone opening a chat first.
        groups = [-1002000000000 - n for n in range(200)]
        for n, group in enumerate(groups):
            emulator.group(group, f"第{n}组")
        villagers = [await _villager(sandbox, 3001 + n, f"村民{n}") for n in range(12)]
        async with in_transaction():
            for group in groups:
                await post(group, f"给{group}的通知")
        delivery.wake()  # about 7 s of notices at 30 a second

        for round_ in range(3):
            await emulator.wait_for(groups[30 + 50 * round_], "的通知", timeout=20)
            asking = villagers[4 * round_ : 4 * round_ + 4]
            await asyncio.gather(*(phone.send("/help") for phone in asking))
            await asyncio.gather(*(phone.expect("/report") for phone in asking))
            assert not emulator.bot_messages(groups[-1]), "answered during the broadcast"
        await emulator.wait_for(groups[-1], "的通知", timeout=20)
        await sandbox.app.courier.drained()

        assert emulator.stats.too_many_requests == 0, "no reply refused, and no notice either"
        assert emulator.stats.requests["sendMessage"] == len(groups) + len(villagers), (
            "each answer and each notice sent once, none retried"
        )
        for group in groups:
            assert _texts(emulator, group) == [f"给{group}的通知"]
        assert sandbox.app.courier.sent == len(groups)
        assert await Delivery.filter(sent_at__isnull=True).count() == 0


async def test_a_direct_reply_refused_with_429_is_sent_again(sandbox: Sandbox) -> None:
    """Another process on the token may still fill Telegram's count: a short wait is waited
    out so the person gets the answer; a long one is the handler's to see, as before."""
    emulator = sandbox.emulator
    li = await _villager(sandbox, 3001, "李明")
    emulator.fail_next("sendMessage", status=429, retry_after=1)
    await li.send("/help")
    await li.expect("/report")
    assert emulator.stats.too_many_requests == 1
    assert emulator.stats.requests["sendMessage"] == 2

    emulator.fail_next("sendMessage", status=429, retry_after=60)
    with pytest.raises(TelegramRetryAfter):
        await sandbox.app.bot.send_message(li.chat_id, "等一分钟")
    assert emulator.stats.requests["sendMessage"] == 3, "not sent again"


async def test_the_model_of_telegram_answers_is_built_once(sandbox: Sandbox) -> None:
    """aiogram's `Response[Message]` survives the garbage collector between requests (pydantic
    keeps such models only weakly; rebuilding one costs milliseconds per request)."""
    await _open_chat_quietly(sandbox.emulator, 4101)
    built = id(Response[Message])
    gc.collect()
    assert id(Response[Message]) == built


def test_requests_count_as_the_messages_telegram_counts() -> None:
    media = [InputMediaPhoto(media=f"photo-{n}") for n in range(3)]
    assert delivery._messages_in(SendMediaGroup(chat_id=1, media=media)) == 3
    assert delivery._messages_in(SendMessage(chat_id=1, text="好")) == 1
    assert delivery._messages_in(EditMessageText(chat_id=1, message_id=2, text="好")) == 1
    assert delivery._messages_in(AnswerCallbackQuery(callback_query_id="1")) == 0
    assert delivery._messages_in(SendChatAction(chat_id=1, action="typing")) == 0
    assert delivery._messages_in(GetUpdates()) == 0


async def test_a_broadcast_leaves_room_in_every_second_for_everything_else() -> None:
    """25 of Telegram's 30 a second for a notice to thousands: a card queued meanwhile goes at
    once instead of waiting for the window the broadcast filled."""
    pacer = delivery._Pacer()
    now = time.monotonic()
    for n in range(delivery.broadcast_cap(delivery.GLOBAL_PER_SECOND)):
        assert pacer.overall_ready_in(1, now, broadcast=True) == 0, n
        pacer.started(1)
        pacer.finished(-1004000000000 - n, 1, now)
    assert delivery.broadcast_cap(delivery.GLOBAL_PER_SECOND) == 25
    assert pacer.overall_ready_in(1, now, broadcast=True) > 0
    assert pacer.overall_ready_in(1, now) == 0, "the card's room"
    for _ in range(5):
        pacer.started(1)
        pacer.finished(None, 1, now)
    assert pacer.overall_ready_in(1, now) > 0, "and not one more than Telegram's 30"
    assert pacer.overall_ready_in(1, now + 1.0, broadcast=True) == 0, "the next second"


@pytest.mark.skipif(not TEST_REDIS_URL, reason="shared pacing lives in Redis")
async def test_a_broadcast_leaves_room_for_everything_else_across_processes() -> None:
    limits = SharedLimits(TEST_REDIS_URL, int(time.time() * 1000))  # a bot of its own
    try:
        groups = [-1004100000000 - n for n in range(31)]
        taken = [await limits.take(group, 1, broadcast=True) for group in groups[:26]]
        assert [wait for wait, _ in taken[:25]] == [0.0] * 25
        wait, full = taken[25]
        assert wait > 0 and full, "the broadcast's 25 are used"
        assert [await limits.take(group, 1) for group in groups[26:30]] == [(0.0, False)] * 4
        # The broadcast's refused 26th was counted nowhere: the overall window had 5 left.
        assert await limits.take(groups[30], 1) == (0.0, False)
        wait, full = await limits.take(-1004200000000, 1)
        assert wait > 0 and full, "Telegram's 30 kept"
    finally:
        await limits.close()


async def test_server_errors_and_dropped_connections_are_retried(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    li = await _open_chat(sandbox, 1001, "李明")
    photos = await _photo_ids(emulator, 2)
    start = li.seen
    emulator.drop_connection_next("sendMediaGroup")
    emulator.fail_next("sendMessage", status=502, times=2)

    text = await post(li.chat_id, "重试之后送达", photos=photos)
    await li.expect("重试之后送达", timeout=20)
    await sandbox.app.courier.drained()

    picture = await Delivery.get(chat_id=li.chat_id, kind=DeliveryKind.ALBUM)
    text = await Delivery.get(id=text.id)
    assert (picture.attempts, text.attempts) == (1, 2)
    assert picture.sent_at is not None and text.sent_at is not None
    assert emulator.stats.errors[502] == 2
    assert [_what(m) for m in _since(emulator, li.chat_id, start)] == [
        "photo", "photo", "重试之后送达",
    ]


async def test_a_row_that_keeps_failing_is_given_up(sandbox: Sandbox) -> None:
    li = await _open_chat(sandbox, 1001, "李明")
    emulator = sandbox.emulator
    emulator.fail_next("sendMessage", status=500)
    async with in_transaction():  # the courier sees the row only as it is meant to be
        row = await post(li.chat_id, "一直失败")
        # As if it had failed often already: the next server error is the last one tried.
        await Delivery.filter(id=row.id).update(attempts=delivery.MAX_ATTEMPTS - 1)
    await post(li.chat_id, "后面的照常发出")
    await li.expect("后面的照常发出", timeout=20)
    row = await Delivery.get(id=row.id)
    assert row.failed_at is not None and row.sent_at is None
    assert row.attempts == delivery.MAX_ATTEMPTS
    assert "Internal Server Error" in (row.error or "")
    assert emulator.stats.errors[500] == 1


async def test_a_person_who_blocked_the_bot_is_marked_and_not_retried(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    li = await _open_chat(sandbox, 1001, "李明")
    li.user.block_bot()
    before = emulator.stats.requests["sendMessage"]
    rows = [await post(li.chat_id, f"通知{n}") for n in range(3)]
    await sandbox.app.courier.drained()

    account = await Account.get(id=li.chat_id)
    assert account.blocked_at is not None
    for row in rows:
        row = await Delivery.get(id=row.id)
        assert row.failed_at is not None and row.sent_at is None
        assert "blocked" in (row.error or "")
    assert emulator.stats.requests["sendMessage"] - before == 1, "one try, not one per row"
    assert emulator.stats.errors[403] == 1


async def _blocked_at(account_id: int, *, blocked: bool) -> Account:
    """The account once its `blocked_at` is set (or cleared): the update that tells it has
    no answer to wait for."""
    async with asyncio.timeout(5):
        while True:
            account = await Account.get(id=account_id)
            if (account.blocked_at is not None) == blocked:
                return account
            await asyncio.sleep(0.02)


async def test_telegrams_word_that_a_person_blocked_the_bot_marks_them_until_they_write(
    sandbox: Sandbox,
) -> None:
    """Blocking the bot reaches it as `my_chat_member` (kicked): that marks the account, it
    does not clear the mark a 403 made; a message in a group does not clear it either, only
    unblocking or writing in the private chat does."""
    li = await _open_chat(sandbox, 1001, "李明")
    li.user.block_bot()
    blocked = await _blocked_at(li.chat_id, blocked=True)
    group = sandbox.emulator.group(-1004300000000, "正达村村民群").chat_id
    await li.user.send_text("/start", chat=group)
    await sandbox.emulator.wait_for(group, None)  # answered: the update was handled
    assert (await Account.get(id=li.chat_id)).blocked_at == blocked.blocked_at
    li.user.unblock_bot()
    await _blocked_at(li.chat_id, blocked=False)


async def test_an_edit_waits_for_its_original_and_changes_that_message(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    li = await _open_chat(sandbox, 1001, "李明")
    emulator.fail_next("sendMessage", status=502)  # the original is late
    async with in_transaction():
        card = await post(li.chat_id, "新案件：路灯坏了", keyboard=_keyboard("接单"), card=True)
        await edit(card, "路灯坏了：王书记已接单", _keyboard("查看"))
        await post(li.chat_id, "另一条")

    edited = await li.expect("王书记已接单", timeout=20)
    await sandbox.app.courier.drained()
    card = await Delivery.get(id=card.id)
    assert card.message_ids == [edited["message_id"]]
    assert buttons(edited) == ["查看"]
    assert emulator.edit_count(li.chat_id, edited["message_id"]) == 1
    assert _texts(emulator, li.chat_id)[-2:] == ["路灯坏了：王书记已接单", "另一条"]

    same = await edit(card, "路灯坏了：王书记已接单", _keyboard("查看"))
    await sandbox.app.courier.drained()
    same = await Delivery.get(id=same.id)
    assert same.sent_at is not None and same.failed_at is None, "not modified counts as done"
    assert emulator.edit_count(li.chat_id, edited["message_id"]) == 1

    lost = await post(9_999_001, "没有这个聊天")
    change = await edit(lost, "改不了")
    await sandbox.app.courier.drained()
    lost, change = await Delivery.get(id=lost.id), await Delivery.get(id=change.id)
    assert lost.failed_at is not None and "chat not found" in (lost.error or "")
    assert change.failed_at is not None and change.sent_at is None


async def test_a_key_queues_a_notification_once(sandbox: Sandbox) -> None:
    li = await _open_chat(sandbox, 1001, "李明")

    async def remind() -> Delivery:
        async with in_transaction():
            return await post(li.chat_id, "提醒：案件即将超时", key="remind:case-1:accept")

    racing = await asyncio.gather(remind(), remind(), remind())
    again = await remind()
    assert {row.id for row in racing} == {again.id}
    await post(li.chat_id, "之后的消息")
    await li.expect("之后的消息")
    assert _texts(sandbox.emulator, li.chat_id).count("提醒：案件即将超时") == 1
    assert await Delivery.filter(chat_id=li.chat_id).count() == 2


async def test_two_couriers_on_one_database_send_each_row_once(sandbox: Sandbox) -> None:
    emulator = sandbox.emulator
    phones = [await _open_chat(sandbox, 1001 + n, f"村民{n}") for n in range(4)]
    await sandbox.app.courier.stop()
    for n in range(8):
        for phone in phones:
            await post(phone.chat_id, f"{phone.name}-{n}")

    session = AiohttpSession(api=TelegramAPIServer.from_base(emulator.base_url))
    other_bot = Bot(token=emulator.token, session=session)
    first, second = Courier(sandbox.app.bot), Courier(other_bot)
    try:
        await asyncio.gather(first.start(), second.start())
        await first.drained()
        await second.drained()
    finally:
        await first.stop()
        await second.stop()
        await session.close()

    for phone in phones:
        mine = [t for t in _texts(emulator, phone.chat_id) if t.startswith(phone.name)]
        assert mine == [f"{phone.name}-{n}" for n in range(8)], "each once, in order"
    assert first.sent + second.sent == 32
    assert await Delivery.filter(sent_at__isnull=True).count() == 0


async def test_a_pass_claims_the_rows_of_every_chat_in_one_statement(sandbox: Sandbox) -> None:
    """The rows a pass may send, one for each of four chats, are claimed together: one
    statement, not one a row, and each sent once; a row another courier holds is left to it."""
    phones = [await _open_chat(sandbox, 1001 + n, f"村民{n}") for n in range(4)]
    await sandbox.app.courier.stop()
    for phone in phones:
        await post(phone.chat_id, f"{phone.name}的通知")
    held = await post(-1005000000003, "别人领走的")
    await Delivery.filter(id=held.id).update(
        lease_owner="courier-elsewhere", lease_until=datetime.now(UTC) + timedelta(minutes=1)
    )
    courier = Courier(sandbox.app.bot)
    with QueryLog() as queries:
        try:
            await courier.start()
            for _ in range(200):  # (drained would wait for the row held elsewhere too)
                if courier.sent >= 4:
                    break
                await asyncio.sleep(0.05)
        finally:
            await courier.stop()
    claims = [sql for sql, _ in queries.statements
              if sql.startswith('UPDATE "delivery" SET "lease_until"') and "RETURNING" in sql]
    assert len(claims) == 1, claims
    for phone in phones:
        assert _texts(sandbox.emulator, phone.chat_id).count(f"{phone.name}的通知") == 1
    assert courier.sent == 4
    row = await Delivery.get(id=held.id)
    assert row.sent_at is None and row.lease_owner == "courier-elsewhere"


async def _two_processes_send(
    sandbox: Sandbox, groups: list[int], *, shared: bool
) -> tuple[int, float]:
    """Two couriers, as two processes of one bot would run them, send one notice to each
    group; Telegram's 429s and the seconds it took."""
    emulator = sandbox.emulator
    await sandbox.app.courier.stop()
    for group in groups:
        await post(group, f"给{group}的通知")
    session = AiohttpSession(api=TelegramAPIServer.from_base(emulator.base_url))
    other_bot = Bot(token=emulator.token, session=session)
    limits = [
        SharedLimits(TEST_REDIS_URL, sandbox.app.bot.id) if shared else None for _ in range(2)
    ]
    couriers = [
        Courier(sandbox.app.bot, shared=limits[0]), Courier(other_bot, shared=limits[1])
    ]
    refused = emulator.stats.too_many_requests
    started = time.monotonic()
    try:
        await asyncio.gather(*(courier.start() for courier in couriers))
        for group in groups:
            await emulator.wait_for(group, "的通知", timeout=30)
        took = time.monotonic() - started
        for courier in couriers:
            await courier.drained()
    finally:
        for courier in couriers:
            await courier.stop()
        for limit in limits:
            if limit is not None:
                await limit.close()
        await session.close()
    for group in groups:
        assert _texts(emulator, group) == [f"给{group}的通知"], "each once"
    return emulator.stats.too_many_requests - refused, took


@pytest.mark.skipif(not TEST_REDIS_URL, reason="shared pacing lives in Redis")
async def test_two_processes_keep_telegrams_30_a_second_together(database_url: str) -> None:
    from redis.asyncio import Redis

    async with Redis.from_url(TEST_REDIS_URL) as redis:
        await redis.flushdb()
    async with Sandbox(database_url, limits=True) as sandbox:
        groups = [-1003100000000 - n for n in range(90)]
        for n, group in enumerate(groups):
            sandbox.emulator.group(group, f"第{n}组")
        # Each paces itself: together they send up to 60 a second, and Telegram refuses.
        alone, _ = await _two_processes_send(sandbox, groups[:45], shared=False)
        assert alone > 0
        await asyncio.sleep(1.1)  # Telegram's window empties
        together, took = await _two_processes_send(sandbox, groups[45:], shared=True)
    # Kept together, they never ask more than 30 in any second: the 45 take over a second,
    # and Telegram refuses none (at most one, should a send's flight time meet the window's
    # edge: the one margin the shared count does not keep).
    assert together <= 1, together
    assert took >= 0.9, took


async def test_without_redis_each_process_paces_itself_and_nothing_is_held_back(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    limits = SharedLimits(f"redis://127.0.0.1:{free_port()}/0", sandbox.app.bot.id)
    try:
        assert await limits.take(-1003200000000, 1) == (0.0, False)
    finally:
        await limits.close()
    assert "shared pacing unavailable" in caplog.text



async def test_a_restarted_process_takes_back_its_own_rows_at_once(sandbox: Sandbox) -> None:
    """The rows this process slot had claimed when it stopped are sent right after the restart,
    not when their lease runs out a minute later; another process's rows stay its own."""
    li = await _open_chat(sandbox, 1001, "李明")
    wang = await _open_chat(sandbox, 1002, "王芳")
    await sandbox.app.courier.stop()
    mine = await post(li.chat_id, "上次没发完的那条")
    theirs = await post(wang.chat_id, "另一个进程正在发的那条")
    leased = delivery._now() + delivery.LEASE
    await Delivery.filter(id=mine.id).update(
        lease_until=leased, lease_owner=sandbox.settings.instance
    )
    await Delivery.filter(id=theirs.id).update(lease_until=leased, lease_owner="another-host")

    await sandbox.restart_bot()
    await li.expect("上次没发完的那条", timeout=3)
    assert (await Delivery.get(id=mine.id)).lease_owner == sandbox.settings.instance
    theirs = await Delivery.get(id=theirs.id)
    assert theirs.sent_at is None and theirs.lease_owner == "another-host"
    assert "另一个进程正在发的那条" not in _texts(sandbox.emulator, wang.chat_id)


async def test_posts_held_together_are_written_as_one_at_a_time(sandbox: Sandbox) -> None:
    """`together` (the sweep's chunks) writes what `post` and `edit` would have written one
    at a time: the same rows in the same order, a key once, a later emergency's priority
    raising what waits before it in its chat, a broadcast's row too; nothing when it fails."""
    await sandbox.app.courier.stop()
    await _villager(sandbox, 3001, "李明")
    fire = await cases.report(
        await Villager.get(account_id=3001), await Category.get(code="fire"),
        description="后山起火了",
    )
    await post(-1005000000000, "已有的键", key="known:-1005000000000")
    await post(-1005000000001, "已有的键", key="known:-1005000000001")

    async def queue(chat: int, *, held: bool) -> None:
        await delivery.broadcast([(chat, f"notice:{chat}", "全乡通知", None)])
        original = await post(chat, "原来的卡片", card=True)
        async with in_transaction(), delivery.together() if held else contextlib.nullcontext():
            first = await post(chat, "先到的一条")
            await edit(original, "改过的卡片")
            await post(chat, "现场照片", photos=["P1", "P2"])
            await post(chat, "火情", case_id=fire.case.id, photos=["P3"])
            await post(chat, "提醒", key=f"remind:{chat}")
            await post(chat, "提醒", key=f"remind:{chat}")
            await post(chat, "已有的键", key=f"known:{chat}")
        assert first.chat_id == chat

    async def written(chat: int) -> list[tuple]:
        rows = await Delivery.filter(chat_id=chat).order_by("id")
        place = {row.id: n for n, row in enumerate(rows)}
        return [
            (row.kind, row.payload, row.priority, row.card,
             (row.key or "").replace(str(chat), "C"),
             place.get(row.edit_of_id))  # type: ignore[attr-defined]
            for row in rows
        ]

    await queue(-1005000000000, held=False)
    await queue(-1005000000001, held=True)
    one_at_a_time, together = await written(-1005000000000), await written(-1005000000001)
    assert together == one_at_a_time
    assert [priority for _, _, priority, *_ in together] == [
        delivery.EMERGENCY, delivery.EMERGENCY, delivery.EMERGENCY, delivery.EMERGENCY,
        delivery.EMERGENCY, delivery.EMERGENCY, delivery.EMERGENCY, delivery.EMERGENCY, 0,
    ]
    assert [payload.get("text") for _, payload, *_ in together].count("提醒") == 1

    # An edit of a row held with it: not sent yet, so it says the new words from the start.
    async with delivery.together():
        card = await post(-1005000000002, "旧的说法", photos=["P4"], card=True)
        await edit(card, "新的说法")
    [row] = await Delivery.filter(chat_id=-1005000000002)
    assert row.payload == {"text": "新的说法", "photo": "P4"}

    before = await Delivery.all().count()
    with pytest.raises(RuntimeError):
        async with in_transaction(), delivery.together():
            await post(-1005000000002, "不该留下")
            raise RuntimeError("the chunk failed")
    assert await Delivery.all().count() == before


async def test_an_emergency_case_goes_before_everything_queued(sandbox: Sandbox) -> None:
    """A fire reported while the outbox holds many notices for other chats: its card and its
    confirmation are sent first; each chat still gets its own rows in order."""
    emulator = sandbox.emulator
    arrived: list[tuple[int, str]] = []
    emulator.on_bot_message(
        lambda chat_id, message, edited: arrived.append((chat_id, message.get("text") or ""))
    )
    dispatch = emulator.group(-1001000000201, "坂里乡调度中心")
    groups = [-1004000000000 - n for n in range(60)]
    for n, group in enumerate(groups):
        emulator.group(group, f"第{n}组")
    villager = await _villager(sandbox, 3001, "李明")
    await villager.send("/help")
    await villager.expect("/report")
    await sandbox.app.courier.stop()
    async with in_transaction():
        for group in groups:
            await post(group, f"给{group}的周报")
        await post(dispatch.chat_id, "调度中心的第一条")
    reporter = await Villager.get(account_id=3001)
    fire = await cases.report(
        reporter, await Category.get(code="fire"), description="后山起火了"
    )
    arrived.clear()
    await asyncio.sleep(1.0)  # Telegram's second per chat since the /help answer has passed

    await sandbox.app.courier.start()
    await emulator.wait_for(dispatch.chat_id, fire.case.number, timeout=10)
    await villager.expect(fire.case.number)
    await emulator.wait_for(groups[-1], "的周报", timeout=20)
    await sandbox.app.courier.drained()

    order = [chat_id for chat_id, _ in arrived]
    assert order.index(villager.chat_id) < 16, "the reporter is told among the first"
    dispatch_texts = [text for chat_id, text in arrived if chat_id == dispatch.chat_id]
    assert dispatch_texts[0] == "调度中心的第一条", "a chat's own order is kept"
    assert fire.case.number in dispatch_texts[1]
    assert order.index(dispatch.chat_id) < 16, "the dispatch centre's chat goes first"
    card = await Delivery.get(case_id=fire.case.id, chat_id=dispatch.chat_id)
    assert card.priority == delivery.EMERGENCY
    assert all(row.priority == 0 for row in await Delivery.filter(chat_id__in=groups))


def _label(message: str) -> str:
    """A button's label as a zh-hans reader sees it."""
    return catalogs().text(message, "zh-hans")


async def _bound(sandbox: Sandbox, code: str, telegram_id: int, *, opened: bool) -> Phone:
    """An official bound to a Telegram account by the directory; `opened`: they have written
    to the bot, so it may write to them."""
    official = await Official.get(code=code)
    official.account = await Account.create(
        id=telegram_id, first_name=official.name, language="zh-hans"
    )
    await official.save()
    phone = sandbox.phone(telegram_id, official.name)
    if opened:
        await phone.send("/help")
        await phone.expect("/start")
    return phone


async def _reporting_villager(sandbox: Sandbox) -> tuple[Villager, Phone]:
    phone = await _villager(sandbox, 3001, "李明")
    await phone.send("/help")
    await phone.expect("/report")
    return await Villager.get(account_id=3001), phone


async def test_a_card_for_a_unit_nobody_can_receive_goes_to_the_unit_above(
    sandbox: Sandbox,
) -> None:
    """Grid 1 has no group and nobody bound: its cards would reach no one, so the village
    committee's group sees each one, without the unit's buttons."""
    committee = sandbox.emulator.group(-1001000000101, "正达村两委")
    villager, _ = await _reporting_villager(sandbox)
    litter = await Category.get(code="litter")
    case = (await cases.report(villager, litter, description="垃圾桶满了")).case
    card = await sandbox.emulator.wait_for(committee.chat_id, case.number, timeout=10)
    assert "未能送达正达村第一网格的任何人" in card["text"] and "垃圾桶满了" in card["text"]
    assert buttons(card) == []
    assert "李明" not in card["text"], "the reporter's name stays with the unit handling it"


async def test_a_card_nobody_can_receive_with_no_unit_above_goes_to_the_dispatchers(
    sandbox: Sandbox,
) -> None:
    """Grid 1 has no group, nobody bound, and (here) no unit above: the township's
    dispatchers get the card privately, with the buttons, and can accept it from there."""
    await Unit.filter(code="zhengda-g1").update(supervisor_id=None)
    committee = sandbox.emulator.group(-1001000000101, "正达村两委")
    su = await _bound(sandbox, "su-jinqiao", 9002, opened=True)  # a dispatcher
    villager, li = await _reporting_villager(sandbox)
    litter = await Category.get(code="litter")
    case = (await cases.report(villager, litter, description="垃圾桶满了")).case
    card = await su.expect(case.number, timeout=10)
    assert "未能送达正达村第一网格的任何人" in card["text"] and "垃圾桶满了" in card["text"]
    # Accept and Assign; no Decline or Escalate, as there is nothing above to go to.
    assert buttons(card) == [_label(notices.ACCEPT), _label(notices.ASSIGN)]
    await sandbox.app.courier.drained()
    assert not [m for m in committee.messages() if case.number in (m.get("text") or "")]
    await su.tap(_label(notices.ACCEPT))
    await li.expect("苏进侨")
    accepted = await Case.get(id=case.id)
    assert accepted.status == CaseStatus.ACCEPTED
    assert accepted.assignee_id == (await Official.get(code="su-jinqiao")).id  # type: ignore[attr-defined]


@pytest.mark.parametrize("above", [False, True])
async def test_a_confidential_card_nobody_can_receive_stays_in_its_own_chain(
    sandbox: Sandbox, above: bool
) -> None:
    """王清 of the discipline office never opened the bot and the office has no group: its
    misconduct report goes up its own chain when there is one (a county office, without the
    buttons), and never to the township's dispatchers, who may not see it."""
    emulator = sandbox.emulator
    jiwei = await Unit.get(code="jiwei")
    await Unit.filter(id=jiwei.id).update(group_chat_id=None)
    county = -1001000000999
    if above:
        upper = await Unit.create(
            township_id=jiwei.township_id, code="county-jiwei", name="县纪委",  # type: ignore[attr-defined]
            kind=jiwei.kind, group_chat_id=county,
        )
        await Unit.filter(id=jiwei.id).update(supervisor_id=upper.id)
    county_group = emulator.group(county, "县纪委")
    dispatch_group = emulator.group(-1001000000201, "坂里乡调度中心")
    committee = emulator.group(-1001000000101, "正达村两委")
    su = await _bound(sandbox, "su-jinqiao", 9002, opened=True)  # a dispatcher
    wang = await _bound(sandbox, "wang-qing", 9301, opened=False)
    villager, li = await _reporting_villager(sandbox)
    misconduct = await Category.get(code="misconduct")
    case = (await cases.report(villager, misconduct, description="村干部吃拿卡要")).case
    await li.expect(case.number)
    await until_undelivered(case.id)
    await sandbox.app.courier.drained()
    covered = [m for m in county_group.messages() if case.number in (m.get("text") or "")]
    if above:
        [card] = covered
        assert "未能送达坂里乡纪委的任何人" in card["text"] and "吃拿卡要" in card["text"]
        assert buttons(card) == [], "the unit above sees it; the buttons are the office's"
        assert "李明" not in card["text"]
    else:
        assert covered == []
    for chat in (dispatch_group, committee):
        assert not [m for m in chat.messages() if case.number in (m.get("text") or "")]
    assert not [m for m in emulator.bot_messages(su.chat_id) if case.number in m["text"]]
    assert emulator.bot_messages(wang.chat_id) == []
    chats = set(await Delivery.filter(case_id=case.id).values_list("chat_id", flat=True))
    assert chats == {wang.chat_id, li.chat_id, *([county] if above else [])}


async def until_undelivered(case_id: int, timeout: float = 10.0) -> None:
    """Until the courier has given up a card of the case (the 403 of an unopened chat)."""
    deadline = time.monotonic() + timeout
    while not await CaseEvent.filter(case_id=case_id, action="undelivered").exists():
        assert time.monotonic() < deadline, "no card of the case was given up"
        await asyncio.sleep(0.05)


async def test_cards_for_an_official_who_never_opened_the_bot_are_not_lost(
    sandbox: Sandbox,
) -> None:
    """Bound by the directory, 林秀英 never started the bot, so Telegram refuses every card:
    the unit above sees each case, the administrator hears of her once, the timeline keeps
    it, and her /start brings the cards still waiting."""
    emulator = sandbox.emulator
    committee = emulator.group(-1001000000101, "正达村两委")
    admin = await _bound(sandbox, "admin", 9001, opened=True)
    lin = await _bound(sandbox, "lin-xiuying", 9101, opened=False)
    villager, li = await _reporting_villager(sandbox)
    litter = await Category.get(code="litter")
    first = (await cases.report(villager, litter, description="垃圾桶满了")).case

    fallback = await emulator.wait_for(committee.chat_id, first.number, timeout=10)
    assert "未能送达正达村第一网格的任何人" in fallback["text"]
    assert "垃圾桶满了" in fallback["text"], "the card itself"
    assert buttons(fallback) == [], "the unit above sees it; the buttons are the unit's"
    told = await admin.expect("收不到机器人的消息")
    assert "林秀英（正达村第一网格, 正达村两委）" in told["text"] and first.number in told["text"]
    assert "李明" not in told["text"]
    await li.expect(first.number)  # the villager's confirmation is not held up

    second = (await cases.report(villager, litter, description="路边有垃圾")).case
    await emulator.wait_for(committee.chat_id, second.number, timeout=10)
    await sandbox.app.courier.drained()
    assert len([t for t in _texts(emulator, admin.chat_id) if "收不到机器人的消息" in t]) == 1, (
        "once per official, not per card"
    )
    committee_texts = [m.get("text") or "" for m in committee.messages()]
    assert len([t for t in committee_texts if first.number in t]) == 1, "once per case"
    for case in (first, second):
        [event] = await CaseEvent.filter(case_id=case.id, action="undelivered")
        assert not event.public and "林秀英" in (event.note or "")
    assert emulator.bot_messages(lin.chat_id) == []

    await cases.accept(second.id, await Official.get(code="lin-xiuying"))  # taken meanwhile
    await lin.send("/start")
    await lin.expect("林秀英")
    card = await lin.expect(first.number)
    assert _label(notices.ACCEPT) in buttons(card)
    await sandbox.app.courier.drained()
    assert not [m for m in emulator.bot_messages(lin.chat_id) if second.number in m["text"]], (
        "a case no longer waiting is not sent again"
    )
    assert (await Account.get(id=lin.chat_id)).blocked_at is None
    await lin.send("/start")
    await lin.expect("林秀英")
    await sandbox.app.courier.drained()
    copies = [m for m in emulator.bot_messages(lin.chat_id) if first.number in m.get("text", "")]
    assert len(copies) == 1, "a card that reached her is not sent again"
    await lin.tap(_label(notices.ACCEPT))
    await li.expect(f"{first.number} 已由林秀英")


async def test_a_notice_given_up_is_told_and_kept_in_the_timeline(sandbox: Sandbox) -> None:
    """After MAX_ATTEMPTS the courier gives a row up: the administrator is told (the case and
    whom it was for, no villager's name), and the officials' timeline shows it."""
    emulator = sandbox.emulator
    admin = await _bound(sandbox, "admin", 9001, opened=True)
    lin = await _bound(sandbox, "lin-xiuying", 9101, opened=True)
    villager, li = await _reporting_villager(sandbox)
    litter = await Category.get(code="litter")
    case = (await cases.report(villager, litter, description="垃圾桶满了")).case
    await lin.expect(case.number)
    await li.expect(case.number)
    await sandbox.app.courier.stop()
    await cases.accept(case.id, await Official.get(code="lin-xiuying"))
    accepted = await Delivery.get(chat_id=li.chat_id, case_id=case.id, sent_at__isnull=True)
    await Delivery.filter(id=accepted.id).update(attempts=delivery.MAX_ATTEMPTS - 1)
    emulator.fail_next("sendMessage", status=500)  # the twelfth attempt fails too
    await sandbox.app.courier.start()

    told = await admin.expect(case.number)
    assert "的一条消息未能送达反映人" in told["text"] and "Internal Server Error" in told["text"]
    assert "李明" not in told["text"] and "垃圾桶满了" not in told["text"]
    [event] = await CaseEvent.filter(case_id=case.id, action="undelivered")
    assert not event.public
    await lin.send("/tasks")
    await lin.tap(case.number)
    timeline = await lin.expect(f"{case.number}")
    assert "消息未能送达" in timeline["text"] and "反映人" in timeline["text"]
    await li.send("/mycases")
    await li.tap(case.number)
    own = await li.expect(case.number)
    assert "消息未能送达" not in own["text"], "internal: not the villager's"
