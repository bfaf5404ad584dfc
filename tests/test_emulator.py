"""The Bot API emulator, driven by a real aiogram Bot over HTTP.

Every answer must parse into aiogram's types and every refusal must raise the exception aiogram
raises for Telegram's, because the rest of the suite trusts the emulator to behave like Telegram.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    CallbackQuery,
    ChatFullInfo,
    ChatMemberBanned,
    ChatMemberMember,
    File,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    KeyboardButton,
    MenuButtonCommands,
    MenuButtonDefault,
    Message,
    PhotoSize,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    ReplyParameters,
    Update,
    User,
    WebhookInfo,
)
from aiohttp import ClientSession, FormData, web

from bot.emulator import BotAPIEmulator, button_data, buttons

pytestmark = pytest.mark.asyncio

LI = 1001
GROUP = -100777


def _session(emulator: BotAPIEmulator) -> AiohttpSession:
    return AiohttpSession(api=TelegramAPIServer.from_base(emulator.base_url))


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator() as running:
        yield running


@pytest.fixture
async def bot(emulator: BotAPIEmulator) -> AsyncIterator[Bot]:
    async with Bot(emulator.token, session=_session(emulator)) as client:
        yield client


async def _started(emulator: BotAPIEmulator, user_id: int = LI) -> dict:
    """A user who has written /start, so the bot may write to them."""
    return await emulator.user(user_id, "李明").send_text("/start")


def _keyboard(*labels: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=f"pick:{label.lower()}")]
            for label in labels
        ]
    )


def _jpeg_size(data: bytes) -> tuple[int, int]:
    start = data.index(b"\xff\xc0")
    height, width = struct.unpack(">HH", data[start + 5 : start + 9])
    return width, height


async def _download(bot: Bot, file_id: str) -> bytes:
    buffer = await bot.download(file_id)
    assert buffer is not None
    return buffer.getvalue()


async def test_get_me_is_an_aiogram_user(bot: Bot, emulator: BotAPIEmulator) -> None:
    me = await bot.get_me()
    assert isinstance(me, User)
    assert (me.id, me.username, me.first_name, me.is_bot) == (
        123456,
        "villagebot",
        "Village Bot",
        True,
    )
    assert me.id == emulator.bot_id == bot.id
    assert (me.can_join_groups, me.can_read_all_group_messages, me.supports_inline_queries) == (
        True,
        False,
        False,
    )


async def test_long_polling_waits_and_the_offset_confirms(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    li = emulator.user(LI, "李明", language_code="zh-hans")
    assert await bot.get_updates(timeout=0) == []
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.2)
    assert not poll.done(), "a long poll waits for an update"
    sent = await li.send_text("/start abc")
    [update] = await asyncio.wait_for(poll, 2)
    assert loop.time() - started < 2, "the poll returns as soon as the update exists"
    assert isinstance(update, Update) and update.message is not None
    message = update.message
    assert (message.text, message.message_id, message.chat.type) == (
        "/start abc",
        sent["message_id"],
        "private",
    )
    assert message.from_user is not None and message.from_user.language_code == "zh-hans"
    assert message.entities is not None
    assert (message.entities[0].type, message.entities[0].offset, message.entities[0].length) == (
        "bot_command",
        0,
        6,
    )
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [update.update_id], "unconfirmed updates come again"
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == []
    assert emulator.pending_updates == 0
    assert emulator.last_update_id == update.update_id


async def test_send_message_parses_html_and_keeps_inline_keyboards(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    await _started(emulator)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text="正达村", callback_data="v1:1"),
                InlineKeyboardButton(text="网站", url="https://example.org"),
            ]
        ]
    )
    message = await bot.send_message(
        LI,
        "<b>您住在</b>哪个村？ &lt;选&gt; AT&T <a href='https://t.me/villagebot'>链接</a>",
        parse_mode="HTML",
        reply_markup=markup,
    )
    assert isinstance(message, Message)
    assert message.text == "您住在哪个村？ <选> AT&T 链接"
    assert message.entities is not None
    assert [(e.type, e.offset, e.length) for e in message.entities] == [
        ("bold", 0, 3),
        ("text_link", 17, 2),
    ]
    assert message.entities[1].url == "https://t.me/villagebot"
    assert message.reply_markup is not None
    assert message.reply_markup.inline_keyboard[0][0].callback_data == "v1:1"
    assert message.from_user is not None and message.from_user.id == bot.id
    stored = emulator.bot_messages(LI)[-1]
    assert stored["text"] == message.text and stored["message_id"] == message.message_id
    assert buttons(stored) == ["正达村", "网站"]
    assert button_data(stored, "正达村") == "v1:1"
    with pytest.raises(LookupError):
        button_data(stored, "网站")
    reply = await bot.send_message(
        LI, "好的", reply_parameters=ReplyParameters(message_id=message.message_id)
    )
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.message_id == message.message_id
    transcript = emulator.transcript(LI)
    assert transcript.splitlines()[0] == "user: /start"
    assert "bot: 您住在哪个村？ <选> AT&T 链接 [buttons: 正达村 | 网站]" in transcript


async def test_send_message_refusals_use_telegram_texts(bot: Bot, emulator: BotAPIEmulator) -> None:
    await _started(emulator)
    emulator.user(2002, "从未开始")
    cases: list[tuple[str, dict]] = [
        ("chat not found", {"chat_id": 424242, "text": "hi"}),
        ("message text is empty", {"chat_id": LI, "text": "  \n "}),
        ("message is too long", {"chat_id": LI, "text": "x" * 4097}),
        (
            "can't parse entities: Can't find end tag corresponding to start tag \"b\"",
            {"chat_id": LI, "text": "<b>unclosed", "parse_mode": "HTML"},
        ),
        (
            'can\'t parse entities: Unsupported start tag "" at byte offset 2',
            {"chat_id": LI, "text": "1 < 2", "parse_mode": "HTML"},
        ),
        (
            'can\'t parse entities: Unsupported start tag "div" at byte offset 0',
            {"chat_id": LI, "text": "<div>x</div>", "parse_mode": "HTML"},
        ),
        (
            "can't parse entities: Character '.' is reserved",
            {"chat_id": LI, "text": "1.5", "parse_mode": "MarkdownV2"},
        ),
        ("unsupported parse_mode", {"chat_id": LI, "text": "x", "parse_mode": "BBCode"}),
        ("BUTTON_DATA_INVALID", {"chat_id": LI, "text": "x", "reply_markup": _data("x" * 65)}),
        ("BUTTON_DATA_INVALID", {"chat_id": LI, "text": "x", "reply_markup": _data("")}),
        (
            "message to be replied not found",
            {"chat_id": LI, "text": "x", "reply_parameters": ReplyParameters(message_id=999)},
        ),
    ]
    for expected, arguments in cases:
        with pytest.raises(TelegramBadRequest) as refused:
            await bot.send_message(**arguments)
        assert f"Bad Request: {expected}" in refused.value.message, arguments
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation"):
        await bot.send_message(2002, "hello")
    long_but_fine = await bot.send_message(LI, "<b>" + "字" * 4096 + "</b>", parse_mode="HTML")
    assert len(long_but_fine.text or "") == 4096, "the limit applies after parsing"
    assert emulator.stats.sent_messages == 1


def _data(data: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="b", callback_data=data)]]
    )


async def test_a_user_who_blocks_the_bot_gets_nothing(bot: Bot, emulator: BotAPIEmulator) -> None:
    await _started(emulator)
    li = emulator.user(LI)
    li.block_bot()
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(LI, "还在吗？")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_chat_action(LI, "typing")
    li.unblock_bot()
    assert (await bot.send_message(LI, "欢迎回来")).text == "欢迎回来"
    updates = await bot.get_updates(timeout=0)
    assert [u.event_type for u in updates] == ["message", "my_chat_member", "my_chat_member"]
    assert updates[1].my_chat_member is not None and updates[2].my_chat_member is not None
    assert isinstance(updates[1].my_chat_member.new_chat_member, ChatMemberBanned)
    assert isinstance(updates[2].my_chat_member.new_chat_member, ChatMemberMember)


async def test_photos_download_resend_and_upload(bot: Bot, emulator: BotAPIEmulator) -> None:
    li = emulator.user(LI, "李明")
    await li.send_photo(caption="路灯坏了", width=1280, height=960)
    [update] = await bot.get_updates(timeout=0)
    assert update.message is not None and update.message.photo is not None
    sizes = update.message.photo
    assert len(sizes) >= 2 and all(isinstance(size, PhotoSize) for size in sizes)
    assert (sizes[-1].width, sizes[-1].height) == (1280, 960)
    assert sizes[0].width < sizes[-1].width
    assert update.message.caption == "路灯坏了"
    file = await bot.get_file(sizes[-1].file_id)
    assert isinstance(file, File) and file.file_path
    data = await _download(bot, sizes[-1].file_id)
    assert data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9")
    assert _jpeg_size(data) == (1280, 960) and file.file_size == len(data)
    echoed = await bot.send_photo(LI, sizes[-1].file_id, caption="收到")
    assert echoed.photo is not None and echoed.photo[-1].file_id == sizes[-1].file_id
    uploaded = await bot.send_photo(
        LI,
        BufferedInputFile(data, filename="lamp.jpg"),
        caption="<i>新</i>照片",
        parse_mode="HTML",
    )
    assert uploaded.photo is not None
    assert (uploaded.photo[-1].width, uploaded.photo[-1].height) == (1280, 960)
    assert uploaded.photo[-1].file_id != sizes[-1].file_id
    assert uploaded.caption == "新照片" and uploaded.caption_entities is not None
    assert uploaded.caption_entities[0].type == "italic"
    assert await _download(bot, uploaded.photo[-1].file_id) == data
    refusals = [
        ("message caption is too long", {"photo": sizes[-1].file_id, "caption": "长" * 1025}),
        ("wrong file identifier/HTTP URL specified", {"photo": "AgACAgUAAxkBAAIbogus"}),
        ("IMAGE_PROCESS_FAILED", {"photo": BufferedInputFile(b"not an image", "x.jpg")}),
    ]
    for expected, arguments in refusals:
        with pytest.raises(TelegramBadRequest, match=expected):
            await bot.send_photo(LI, **arguments)
    with pytest.raises(TelegramBadRequest, match="Bad Request: invalid file_id"):
        await bot.get_file("nope")


async def test_albums_both_ways(bot: Bot, emulator: BotAPIEmulator) -> None:
    li = emulator.user(LI, "李明")
    sent = await li.send_album(3, caption="三张")
    updates = await bot.get_updates(timeout=0)
    messages = [u.message for u in updates if u.message is not None]
    assert len(messages) == 3
    assert {m.media_group_id for m in messages} == {sent[0]["media_group_id"]}
    assert [m.caption for m in messages] == ["三张", None, None]
    jpeg = await _download(bot, messages[0].photo[-1].file_id)  # type: ignore[index]
    album = await bot.send_media_group(
        LI,
        media=[
            InputMediaPhoto(media=BufferedInputFile(jpeg, "a.jpg"), caption="一"),
            InputMediaPhoto(media=BufferedInputFile(jpeg, "b.jpg")),
            InputMediaPhoto(media=messages[1].photo[-1].file_id),  # type: ignore[index]
        ],
    )
    assert len(album) == 3 and all(isinstance(m, Message) for m in album)
    assert album[0].media_group_id is not None
    assert {m.media_group_id for m in album} == {album[0].media_group_id}
    assert [m.message_id for m in album] == list(
        range(album[0].message_id, album[0].message_id + 3)
    )
    assert album[0].caption == "一" and album[1].caption is None
    photo = InputMediaPhoto(media=messages[0].photo[-1].file_id)  # type: ignore[index]
    document = InputMediaDocument(media=BufferedInputFile(b"%PDF-1.4", "a.pdf"))
    for expected, media in [
        ("too many messages to send as an album", [photo] * 11),
        ("there are no messages to send", []),
        ("document can't be mixed with other media types", [photo, document]),
    ]:
        with pytest.raises(TelegramBadRequest, match=expected):
            await bot.send_media_group(LI, media=media)
    assert len(emulator.bot_messages(LI)) == 3


async def test_documents_locations_actions_and_chats(bot: Bot, emulator: BotAPIEmulator) -> None:
    li = emulator.user(LI, "李明")
    await li.send_document("报告.pdf", "application/pdf")
    await li.send_voice(7)
    await li.send_sticker()
    await li.send_location(25.1, 118.2)
    await li.send_contact("+8613800001001")
    await li.send_contact("+8613911112222", own=False)
    updates = await bot.get_updates(timeout=0)
    received = [u.message for u in updates if u.message is not None]
    assert len(received) == 6
    document, voice, sticker, location, own, other = received
    assert document.document is not None and document.document.file_name == "报告.pdf"
    assert (await _download(bot, document.document.file_id)).startswith(b"%PDF")
    assert voice.voice is not None and voice.voice.duration == 7
    assert sticker.sticker is not None and sticker.sticker.type == "regular"
    assert location.location is not None and location.location.latitude == 25.1
    assert own.contact is not None and own.contact.user_id == LI
    assert other.contact is not None and other.contact.user_id is None
    again = await bot.send_document(LI, document.document.file_id, caption="已存档")
    assert again.document is not None and again.document.file_id == document.document.file_id
    pdf = b"%PDF-1.4\n%%EOF\n"
    uploaded = await bot.send_document(LI, BufferedInputFile(pdf, "回执.pdf"))
    assert uploaded.document is not None
    assert (uploaded.document.file_name, uploaded.document.mime_type) == (
        "回执.pdf",
        "application/pdf",
    )
    assert await _download(bot, uploaded.document.file_id) == pdf
    with pytest.raises(TelegramBadRequest, match="type of file mismatch"):
        await bot.send_photo(LI, document.document.file_id)
    pin = await bot.send_location(LI, 25.2, 118.1)
    assert pin.location is not None and pin.location.longitude == 118.1
    with pytest.raises(TelegramBadRequest):
        await bot.send_location(LI, 91, 0)
    assert await bot.send_chat_action(LI, "typing") is True
    assert emulator.chat_actions(LI) == ["typing"]
    with pytest.raises(TelegramBadRequest, match="wrong parameter action"):
        await bot.send_chat_action(LI, "dancing")
    emulator.group(GROUP, "正达村两委", type="supergroup")
    private, group = await bot.get_chat(LI), await bot.get_chat(GROUP)
    assert isinstance(private, ChatFullInfo) and isinstance(group, ChatFullInfo)
    assert (private.type, private.first_name) == ("private", "李明")
    assert (group.type, group.title) == ("supergroup", "正达村两委")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_chat(-1)


async def test_voice_messages_are_sent_by_file_id_or_upload(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    li = emulator.user(LI, "李明")
    heard = await li.send_voice(9)
    await bot.get_updates(timeout=0)
    file_id = heard["voice"]["file_id"]
    again = await bot.send_voice(LI, file_id, caption="村民的语音")
    assert again.voice is not None and again.voice.file_id == file_id
    assert (again.voice.duration, again.caption) == (9, "村民的语音")
    assert emulator.bot_messages(LI)[-1]["voice"]["file_id"] == file_id
    ogg = b"OggS" + bytes(60)
    uploaded = await bot.send_voice(LI, BufferedInputFile(ogg, "note.ogg"), duration=3)
    assert uploaded.voice is not None and uploaded.voice.duration == 3
    assert await _download(bot, uploaded.voice.file_id) == ogg
    with pytest.raises(TelegramBadRequest, match="wrong file identifier/HTTP URL specified"):
        await bot.send_voice(LI, "AwACAgUAAxkBAAInotknown")
    photo = await li.send_photo()
    with pytest.raises(TelegramBadRequest, match="type of file mismatch"):
        await bot.send_voice(LI, photo["photo"][-1]["file_id"])
    stranger = emulator.user(1002, "王芳")
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_voice(stranger.id, file_id)
    assert len(emulator.bot_messages(LI)) == 2


async def test_edits_and_deletes(bot: Bot, emulator: BotAPIEmulator) -> None:
    await _started(emulator)
    sent = await bot.send_message(LI, "您住在哪个村？", reply_markup=_keyboard("A", "B"))
    stored = emulator.bot_messages(LI)[-1]
    edited = await bot.edit_message_text(
        "村：正达村", chat_id=LI, message_id=sent.message_id, reply_markup=_keyboard("C")
    )
    assert isinstance(edited, Message) and edited.edit_date is not None
    assert (edited.text, buttons(stored)) == ("村：正达村", ["C"]), "edits change the stored dict"
    assert stored["text"] == "村：正达村" and emulator.edit_count(LI, sent.message_id) == 1
    with pytest.raises(TelegramBadRequest, match="message is not modified: specified new"):
        await bot.edit_message_text(
            "村：正达村", chat_id=LI, message_id=sent.message_id, reply_markup=_keyboard("C")
        )
    cleared = await bot.edit_message_reply_markup(chat_id=LI, message_id=sent.message_id)
    assert isinstance(cleared, Message) and cleared.reply_markup is None
    assert "reply_markup" not in stored and emulator.edit_count(LI, sent.message_id) == 2
    user_message = emulator.messages(LI)[0]
    for message_id, expected in [
        (999, "message to edit not found"),
        (user_message["message_id"], "message can't be edited"),
    ]:
        with pytest.raises(TelegramBadRequest, match=expected):
            await bot.edit_message_text("x", chat_id=LI, message_id=message_id)
    photo = await bot.send_photo(
        LI, (await emulator.user(LI).send_photo())["photo"][-1]["file_id"], caption="旧"
    )
    recaptioned = await bot.edit_message_caption(
        chat_id=LI, message_id=photo.message_id, caption="新"
    )
    assert isinstance(recaptioned, Message) and recaptioned.caption == "新"
    with pytest.raises(TelegramBadRequest, match="there is no text in the message to edit"):
        await bot.edit_message_text("x", chat_id=LI, message_id=photo.message_id)
    assert await bot.delete_message(LI, sent.message_id) is True
    assert sent.message_id not in [m["message_id"] for m in emulator.messages(LI)]
    assert [m["message_id"] for m in emulator.deleted_messages(LI)] == [sent.message_id]
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(LI, sent.message_id)


async def test_callback_queries_from_taps(bot: Bot, emulator: BotAPIEmulator) -> None:
    li = emulator.user(LI, "李明")
    await li.send_text("/start")
    markup = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="正达村", callback_data="v1:1")],
            [InlineKeyboardButton(text="网站", url="https://example.org")],
        ]
    )
    sent = await bot.send_message(LI, "您住在哪个村？", reply_markup=markup)
    query_id = await li.tap(emulator.bot_messages(LI)[-1], "正达村")
    updates = await bot.get_updates(timeout=0)
    query = updates[-1].callback_query
    assert isinstance(query, CallbackQuery)
    assert (query.id, query.data, query.from_user.id) == (query_id, "v1:1", LI)
    assert isinstance(query.message, Message) and query.message.message_id == sent.message_id
    assert query.chat_instance
    assert await bot.answer_callback_query(query_id, text="已选择", show_alert=True) is True
    answer = emulator.answer_for(query_id)
    assert answer is not None and (answer["text"], answer["show_alert"]) == ("已选择", True)
    for stale in (query_id, "123"):
        with pytest.raises(TelegramBadRequest, match="query is too old and response timeout"):
            await bot.answer_callback_query(stale)
    with pytest.raises(LookupError, match="正达村"):
        await li.tap(sent.message_id, "坂里村")
    with pytest.raises(ValueError, match="url button"):
        await li.tap(sent.message_id, "网站")
    forged = await li.tap_data(sent.message_id, "zz:1")
    [forged_update] = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    assert forged_update.callback_query is not None
    assert (forged_update.callback_query.id, forged_update.callback_query.data) == (forged, "zz:1")
    await bot.edit_message_reply_markup(chat_id=LI, message_id=sent.message_id)
    with pytest.raises(LookupError):
        await li.tap(sent.message_id, "正达村")
    assert "user: [taps 正达村]" in emulator.transcript(LI)
    assert "bot: (alert) 已选择" in emulator.transcript(LI)


async def test_commands_menus_and_descriptions(bot: Bot, emulator: BotAPIEmulator) -> None:
    await _started(emulator)
    default = [
        BotCommand(command="start", description="开始"),
        BotCommand(command="help", description="帮助"),
    ]
    assert await bot.set_my_commands(default) is True
    await bot.set_my_commands(
        [BotCommand(command="start", description="Start")], language_code="en"
    )
    mine = BotCommandScopeChat(chat_id=LI)
    await bot.set_my_commands([BotCommand(command="profile", description="我的信息")], scope=mine)
    fetched = await bot.get_my_commands()
    assert all(isinstance(c, BotCommand) for c in fetched)
    assert [c.command for c in fetched] == ["start", "help"]
    assert [c.description for c in await bot.get_my_commands(language_code="en")] == ["Start"]
    assert emulator.commands() == [c.model_dump(exclude_none=True) for c in default]
    assert emulator.commands({"type": "chat", "chat_id": LI}) == [
        {"command": "profile", "description": "我的信息"}
    ]
    for expected, commands, scope in [
        ("BOT_COMMAND_INVALID", [BotCommand(command="Start", description="x")], None),
        ("BOT_COMMAND_DESCRIPTION_INVALID", [BotCommand(command="ok", description="")], None),
        ("chat not found", default, BotCommandScopeChat(chat_id=555)),
    ]:
        with pytest.raises(TelegramBadRequest, match=expected):
            await bot.set_my_commands(commands, scope=scope)
    assert await bot.delete_my_commands(language_code="en") is True
    assert await bot.get_my_commands(language_code="en") == []
    assert await bot.set_chat_menu_button(chat_id=LI, menu_button=MenuButtonCommands()) is True
    assert isinstance(await bot.get_chat_menu_button(chat_id=LI), MenuButtonCommands)
    emulator.group(GROUP, "两委")
    assert isinstance(await bot.get_chat_menu_button(chat_id=GROUP), MenuButtonDefault)
    assert await bot.set_my_description("村务助手") is True
    assert await bot.set_my_short_description("报事") is True
    assert (await bot.get_my_description()).description == "村务助手"
    assert (await bot.get_my_short_description()).short_description == "报事"
    assert (emulator.description(), emulator.short_description()) == ("村务助手", "报事")


async def test_injected_faults_raise_the_matching_aiogram_errors(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    await _started(emulator)
    emulator.fail_next("getMe")
    with pytest.raises(TelegramServerError, match="Internal Server Error"):
        await bot.get_me()
    assert (await bot.get_me()).id == bot.id, "a fault lasts as many calls as asked"
    emulator.fail_next("sendMessage", status=429, retry_after=7)
    with pytest.raises(TelegramRetryAfter) as flood:
        await bot.send_message(LI, "x")
    assert flood.value.retry_after == 7
    emulator.fail_next("sendmessage", status=400, description="Bad Request: custom", times=2)
    for _ in range(2):
        with pytest.raises(TelegramBadRequest, match="custom"):
            await bot.send_message(LI, "x")
    emulator.fail_next("getMe", status=409)
    with pytest.raises(TelegramConflictError):
        await bot.get_me()
    emulator.fail_next("getMe", status=404)
    with pytest.raises(TelegramNotFound):
        await bot.get_me()
    emulator.drop_connection_next("sendMessage")
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(LI, "x")
    assert (await bot.send_message(LI, "终于")).text == "终于"
    with pytest.raises(TelegramNotFound, match="Not Found"):
        await bot.send_poll(LI, "?", ["a", "b"])
    async with Bot("654321:WRONG", session=_session(emulator)) as stranger:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    stats = emulator.stats
    assert stats.too_many_requests == 1
    assert (stats.errors[500], stats.errors[400], stats.errors[401]) == (1, 2, 1)
    assert stats.requests["sendMessage"] == 5 and stats.sent_messages == 1
    with pytest.raises(ValueError):
        emulator.fail_next("sendCarrierPigeon")


async def test_random_faults_hit_every_method_at_the_rate_and_are_counted(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    await _started(emulator)
    emulator.faults(0.3, seed=7, retry_after=(2, 4))
    outcomes: list[str] = []
    for index in range(300):
        try:
            if index % 2:
                await bot.send_message(LI, f"第{index}条")
            else:
                await bot.get_me()
            outcomes.append("ok")
        except TelegramRetryAfter as error:
            assert 2 <= error.retry_after <= 4
            outcomes.append("429")
        except TelegramServerError as error:
            assert "Internal Server Error" in error.message
            outcomes.append("500")
        except TelegramNetworkError:
            outcomes.append("drop")
    injected = emulator.stats.injected
    failed = sum(1 for outcome in outcomes if outcome != "ok")
    assert sum(injected.values()) == len(emulator.injected) == failed
    assert 60 <= len(emulator.injected) <= 120, injected  # 30% of 300, give or take
    assert injected["429"] == outcomes.count("429") > 0
    assert injected["500"] == outcomes.count("500") > 0
    assert injected["drop"] > 0 and injected["drop after"] > 0
    assert injected["drop"] + injected["drop after"] == outcomes.count("drop")
    assert {fault.method for fault in emulator.injected} == {"getMe", "sendMessage"}
    # A send cut after it took effect is in the chat, under the ids the fault remembers;
    # one cut before is not: the chat holds the answered sends plus the "drop after" ones.
    assert all(f.took_effect == (f.kind == "drop after") for f in emulator.injected)
    after = [f for f in emulator.injected if f.took_effect and f.method == "sendMessage"]
    assert all(f.chat_id == LI and len(f.message_ids) == 1 for f in after)
    answered_sends = sum(1 for i, o in enumerate(outcomes) if i % 2 and o == "ok")
    texts = [m["text"] for m in emulator.bot_messages(LI)]
    assert len(texts) == answered_sends + len(after)
    kept = {m["message_id"] for m in emulator.bot_messages(LI)}
    assert all(set(f.message_ids) <= kept for f in after)

    # The same seed draws the same faults; rate 0 turns them off.
    first = [(f.kind, f.method) for f in emulator.injected]
    emulator.injected.clear()
    emulator.faults(0.3, seed=7, retry_after=(2, 4))
    for index in range(300):
        with contextlib.suppress(TelegramRetryAfter, TelegramServerError, TelegramNetworkError):
            await (bot.send_message(LI, "x") if index % 2 else bot.get_me())
    assert [(f.kind, f.method) for f in emulator.injected] == first
    emulator.faults(0)
    before = len(emulator.injected)
    for _ in range(50):
        await bot.get_me()
    assert len(emulator.injected) == before
    with pytest.raises(ValueError):
        emulator.faults(0.1, kinds=(418,))
    with pytest.raises(ValueError):
        emulator.faults(1.5)


async def test_sending_limits_answer_429_with_retry_after() -> None:
    async with (
        BotAPIEmulator(limits=True) as emulator,
        Bot(emulator.token, session=_session(emulator)) as bot,
    ):
        await _started(emulator)
        first = await bot.send_message(LI, "一")
        with pytest.raises(TelegramRetryAfter) as private:
            await bot.send_message(LI, "二")
        assert private.value.retry_after == 1
        with pytest.raises(TelegramRetryAfter):
            await bot.edit_message_text("改", chat_id=LI, message_id=first.message_id)
        await asyncio.sleep(private.value.retry_after + 0.05)
        assert (await bot.send_message(LI, "二")).text == "二"
        emulator.group(GROUP, "两委")
        for number in range(20):
            await bot.send_message(GROUP, f"通知 {number}")
        with pytest.raises(TelegramRetryAfter) as group:
            await bot.send_message(GROUP, "第 21 条")
        assert 55 <= group.value.retry_after <= 60
        assert len(emulator.bot_messages(GROUP)) == 20
        assert emulator.stats.too_many_requests == 3
    async with (
        BotAPIEmulator(limits=True) as emulator,
        Bot(emulator.token, session=_session(emulator)) as bot,
    ):
        for user_id in range(2001, 2032):
            await _started(emulator, user_id)
        for user_id in range(2001, 2031):
            await bot.send_message(user_id, "通知")
        with pytest.raises(TelegramRetryAfter) as overall:
            await bot.send_message(2031, "通知")
        assert overall.value.retry_after == 1
        assert emulator.stats.sent_messages == 30


async def test_webhook_delivers_in_order_retries_and_runs_replies(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    emulator.webhook_http = True  # the hook below listens on loopback over http
    attempts: list[tuple[str | None, dict]] = []
    delivered: list[dict] = []
    arrived = asyncio.Event()

    async def receive(request: web.Request) -> web.Response:
        update = await request.json()
        attempts.append((request.headers.get("X-Telegram-Bot-Api-Secret-Token"), update))
        if len(attempts) == 1:
            return web.Response(status=500)
        delivered.append(update)
        if len(delivered) == 3:
            arrived.set()
            reply = {"method": "sendMessage", "chat_id": LI, "text": "来自 webhook"}
            return web.json_response(reply)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        li = emulator.user(LI, "李明")
        await li.send_text("一")
        with pytest.raises(TelegramBadRequest, match="bad webhook"):
            await bot.set_webhook("ftp://example.org/hook")
        assert await bot.set_webhook(url, secret_token="s3cret") is True
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates(timeout=0)
        await li.send_text("二")
        await li.send_text("三")
        await asyncio.wait_for(arrived.wait(), 5)
        assert [u["message"]["text"] for u in delivered] == ["一", "二", "三"]
        assert attempts[0][1] == attempts[1][1], "a failed delivery is retried first"
        assert {secret for secret, _ in attempts} == {"s3cret"}
        assert (await emulator.wait_for(LI, "来自 webhook"))["chat"]["id"] == LI
        info = await bot.get_webhook_info()
        assert isinstance(info, WebhookInfo)
        assert (info.url, info.pending_update_count) == (url, 0)
        assert info.last_error_message is not None and "500" in info.last_error_message
        assert await bot.delete_webhook() is True
        await li.send_text("四")
        [update] = await bot.get_updates(timeout=0)
        assert update.message is not None and update.message.text == "四"
    finally:
        await runner.cleanup()


async def test_a_dispatcher_polls_and_handles_callback_taps(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    router = Router()

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(f"echo: {message.text}", reply_markup=_keyboard("A", "B"))

    @router.callback_query(F.data.startswith("pick:"))
    async def picked(query: CallbackQuery) -> None:
        await query.answer(f"got {query.data}")
        assert isinstance(query.message, Message)
        await query.message.edit_text(f"picked {(query.data or '')[5:]}")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    polling = asyncio.create_task(
        dispatcher.start_polling(
            bot, handle_signals=False, close_bot_session=False, polling_timeout=5
        )
    )
    try:
        li = emulator.user(LI, "李明")
        await li.send_text("你好")
        reply = await emulator.wait_for(LI, "echo: 你好", timeout=5)
        assert buttons(reply) == ["A", "B"]
        query_id = await li.tap(reply, "B")
        edited = await emulator.wait_for(LI, "picked b", timeout=5)
        assert edited["message_id"] == reply["message_id"] and "edit_date" in edited
        answer = await emulator.wait_answer(query_id)
        assert answer["text"] == "got pick:b"
        await li.send_text("再见")
        await emulator.wait_for(LI, "echo: 再见", timeout=5)
    finally:
        await dispatcher.stop_polling()
        await asyncio.wait_for(polling, 5)
    assert emulator.stats.requests["getUpdates"] >= 2
    assert emulator.pending_updates == 0 or emulator.stats.updates_delivered >= 3


async def test_wait_for_reads_in_order_wakes_on_sends_and_explains_timeouts(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    await _started(emulator)
    seen: list[tuple[int, str, bool]] = []
    remove = emulator.on_bot_message(lambda chat, m, edited: seen.append((chat, m["text"], edited)))
    first = await bot.send_message(LI, "a1")
    await bot.send_message(LI, "a2")
    await bot.send_message(LI, "b")
    assert (await emulator.wait_for(LI, "a"))["text"] == "a1", "the earliest match"
    assert (await emulator.wait_for(LI, "a", newest=True))["text"] == "a2"
    assert (await emulator.wait_for(LI, "a", after=first.message_id))["text"] == "a2"
    waiting = asyncio.create_task(emulator.wait_for(LI, lambda m: "later" in m["text"], timeout=3))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await bot.send_message(LI, "later on")
    assert (await asyncio.wait_for(waiting, 1))["text"] == "later on"
    await bot.edit_message_text("a1 edited", chat_id=LI, message_id=first.message_id)
    assert seen[-1] == (LI, "a1 edited", True) and seen[0] == (LI, "a1", False)
    remove()
    await bot.send_message(LI, "unseen")
    assert len(seen) == 5
    with pytest.raises(TimeoutError) as timeout:
        await emulator.wait_for(LI, "zzz", timeout=0.2)
    assert "no bot message containing 'zzz'" in str(timeout.value)
    assert "bot: unseen" in str(timeout.value) and "user: /start" in str(timeout.value)


async def test_groups_deliver_only_what_privacy_mode_lets_through(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    group = emulator.group(GROUP, "正达村两委")
    assert group.chat_id == GROUP
    li = emulator.user(LI, "李明")
    for text in ("/start", "大家好", "/help@otherbot", "/help@villagebot"):
        await li.send_text(text, chat=GROUP)
    updates = await bot.get_updates(timeout=0)
    assert [u.message.text for u in updates if u.message] == ["/start", "/help@villagebot"]
    assert updates[0].message is not None
    assert (updates[0].message.chat.type, updates[0].message.chat.title) == ("group", "正达村两委")
    assert len(emulator.messages(GROUP)) == 4, "the group saw everything"
    notice = await bot.send_message(GROUP, "请私聊我 @villagebot")
    await li.send_text("好的", chat=GROUP, reply_to=notice.message_id)
    [reply] = await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    assert reply.message is not None and reply.message.reply_to_message is not None
    assert reply.message.reply_to_message.message_id == notice.message_id
    with pytest.raises(LookupError):
        await li.send_text("hi", chat=-100999)
    assert "user 李明: 大家好" in emulator.transcript(GROUP)


async def test_reply_keyboards_are_pressed_not_typed(bot: Bot, emulator: BotAPIEmulator) -> None:
    await _started(emulator)
    li = emulator.user(LI)
    markup = ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text="📱 分享手机号", request_contact=True)],
            [KeyboardButton(text="跳过"), KeyboardButton(text="📍 位置", request_location=True)],
        ],
        resize_keyboard=True,
    )
    asked = await bot.send_message(LI, "请分享手机号", reply_markup=markup)
    assert asked.reply_markup is None, "Telegram returns only inline keyboards with a message"
    assert "reply_markup" not in emulator.bot_messages(LI)[-1]
    assert emulator.reply_keyboard(LI) == ["📱 分享手机号", "跳过", "📍 位置"]
    await emulator.wait_keyboard(LI, "跳过", timeout=0.1)
    skipped = await li.press("跳过")
    shared = await li.press("📱 分享手机号")
    assert skipped["text"] == "跳过"
    assert shared["contact"] == {
        "phone_number": li.phone_number,
        "first_name": "李明",
        "user_id": LI,
    }
    with pytest.raises(ValueError, match="send_location"):
        await li.press("📍 位置")
    with pytest.raises(LookupError, match="跳过"):
        await li.press("不存在")
    updates = await bot.get_updates(timeout=0)
    contact = updates[-1].message
    assert contact is not None and contact.contact is not None and contact.contact.user_id == LI
    await bot.send_message(LI, "好的", reply_markup=ReplyKeyboardRemove())
    assert emulator.reply_keyboard(LI) == []
    with pytest.raises(LookupError):
        await li.press("跳过")
    transcript = emulator.transcript(LI)
    assert "bot: 请分享手机号 [keyboard: 📱 分享手机号 | 跳过 | 📍 位置]" in transcript
    assert "user: [contact " in transcript and "bot: 好的 [keyboard removed]" in transcript


async def test_the_http_control_api_drives_the_emulator(bot: Bot, emulator: BotAPIEmulator) -> None:
    async with ClientSession(emulator.base_url) as http:
        response = await http.post(
            "/_emulator/users/3003/text",
            json={"text": "/start", "first_name": "王", "language_code": "en"},
        )
        assert response.status == 200
        sent = await response.json()
        assert (sent["text"], sent["from"]["language_code"]) == ("/start", "en")
        [update] = await bot.get_updates(timeout=0)
        assert update.message is not None and update.message.from_user is not None
        assert update.message.from_user.first_name == "王"
        question = await bot.send_message(3003, "选一个", reply_markup=_keyboard("A"))
        listed = await (await http.get("/_emulator/chats/3003/messages")).json()
        assert [m["text"] for m in listed] == ["/start", "选一个"]
        tapped = await http.post(
            "/_emulator/users/3003/tap", json={"message_id": question.message_id, "button": "A"}
        )
        query_id = (await tapped.json())["callback_query_id"]
        [tap] = await bot.get_updates(offset=update.update_id + 1, timeout=0)
        assert tap.callback_query is not None and tap.callback_query.id == query_id
        missing = await http.post(
            "/_emulator/users/3003/tap", json={"message_id": question.message_id, "button": "Z"}
        )
        assert missing.status == 400 and "'A'" in (await missing.json())["error"]
        stats = await (await http.get("/_emulator/stats")).json()
        assert stats["requests"]["sendMessage"] == 1 and stats["updates_enqueued"] == 2
        fault = await http.post("/_emulator/faults", json={"method": "getMe", "status": 502})
        assert fault.status == 200
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.get_me()


async def test_raw_requests_in_every_encoding_and_error_shapes(emulator: BotAPIEmulator) -> None:
    await _started(emulator)
    api = f"/bot{emulator.token}"
    markup = {"inline_keyboard": [[{"text": "x", "callback_data": "y"}]]}
    async with ClientSession(emulator.base_url) as http:
        wrong = await http.post("/bot1:nope/getMe")
        assert (wrong.status, await wrong.json()) == (
            401,
            {"ok": False, "error_code": 401, "description": "Unauthorized"},
        )
        unknown = await http.post(f"{api}/sendCarrierPigeon")
        assert (unknown.status, await unknown.json()) == (
            404,
            {"ok": False, "error_code": 404, "description": "Not Found"},
        )
        as_json = await http.post(
            f"{api}/sendMessage", json={"chat_id": LI, "text": "json", "reply_markup": markup}
        )
        body = await as_json.json()
        assert body["ok"] and body["result"]["reply_markup"] == markup
        form = {"chat_id": str(LI), "text": "form", "reply_markup": json.dumps(markup)}
        as_form = await (await http.post(f"{api}/sendmessage", data=form)).json()
        assert as_form["ok"] and as_form["result"]["text"] == "form"
        as_query = await (await http.get(f"{api}/getMe")).json()
        assert as_query["result"]["username"] == "villagebot"
        jpeg = await (await http.get(f"/file/bot{emulator.token}/photos/none.jpg")).json()
        assert jpeg["error_code"] == 404
        emulator.fail_next("sendMessage", status=429, retry_after=3)
        flood = await http.post(f"{api}/sendMessage", json={"chat_id": LI, "text": "x"})
        assert (flood.status, await flood.json()) == (
            429,
            {
                "ok": False,
                "error_code": 429,
                "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3},
            },
        )
        upload = FormData()
        upload.add_field("chat_id", str(LI))
        upload.add_field("document", b"hello", filename="note.txt", content_type="text/plain")
        sent = await (await http.post(f"{api}/sendDocument", data=upload)).json()
        assert sent["result"]["document"]["file_name"] == "note.txt"
        assert sent["result"]["document"]["mime_type"] == "text/plain"


async def test_redelivered_updates_competing_polls_and_allowed_updates(
    bot: Bot, emulator: BotAPIEmulator
) -> None:
    sent = await _started(emulator)
    [first] = await bot.get_updates(timeout=0)
    assert await bot.get_updates(offset=first.update_id + 1, timeout=0) == []
    raw = {"update_id": first.update_id, "message": sent}
    assert emulator.inject_update(raw) == emulator.inject_update(raw) == first.update_id
    twice = await bot.get_updates(offset=first.update_id + 1, timeout=0)
    assert [u.update_id for u in twice] == [first.update_id] * 2
    assert all(u.message is not None and u.message.text == "/start" for u in twice)
    assert await bot.get_updates(offset=first.update_id + 1, timeout=0) == []
    assert emulator.inject_update({"message": sent}) == first.update_id + 1
    assert emulator.last_update_id == first.update_id + 1
    assert len(await bot.get_updates(offset=first.update_id + 1, timeout=0)) == 1
    older = asyncio.create_task(bot.get_updates(offset=first.update_id + 2, timeout=5))
    await asyncio.sleep(0.1)
    newer = await bot.get_updates(timeout=0)
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await older
    assert newer == []
    await emulator.user(LI).send_text("只要回调")
    assert await bot.get_updates(allowed_updates=["callback_query"], timeout=0) == []
    assert emulator.pending_updates == 0, "updates of other kinds are dropped"
