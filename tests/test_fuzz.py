"""Random updates of every kind through the real dispatcher: it never dies, every person's
message or tap in a private chat gets an answer, and forged input changes no row.

Hypothesis draws the updates: each message content type, callback data of any characters and
length (and well-formed payloads with ids far outside the database's range), edited messages,
the bot blocked and unblocked, group messages and channel posts, from an unregistered person,
a registered villager and an official.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from conftest import make_villager
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.emulator import UserHandle
from bot.handlers.errors import APOLOGY
from bot.i18n import catalogs
from bot.languages import LANGUAGES
from bot.models import Account, Case, CaseEvent, Delivery, Official, Villager
from bot.sandbox import Sandbox

VILLAGER, STRANGER, OFFICIAL = 1001, 1003, 5001
GROUP, CHANNEL = -100777, -100888
RAW_IDS = itertools.count(1_000_000)

PEOPLE = st.sampled_from([VILLAGER, STRANGER, OFFICIAL])
PREFIXES = ["t1", "v1", "g1", "l1", "p1", "i1", "k1", "r1", "c1", "a1", "s1", "x9", ""]
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70), st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**63, -1])
)
ACTIONS = st.sampled_from(["accept", "open", "decline", "assign", "submit", "name", "zz", ""])
FORGED = st.builds(
    lambda prefix, parts: ":".join([prefix, *parts]),
    st.sampled_from(PREFIXES),
    st.lists(st.one_of(NUMBERS.map(str), ACTIONS), max_size=4),
)
CALLBACK_DATA = st.one_of(st.text(max_size=100), FORGED)
TEXT = st.one_of(
    st.text(min_size=1, max_size=300).filter(lambda t: t.strip() != ""),
    st.sampled_from(["/start", "/report", "/mycases", "/tasks", "/pool", "/profile", "/cancel",
                     "/language", "/help", "/invite", "/start inv-forged", "/nonsense"]),
)
RAW_CONTENT = st.sampled_from([
    {"video": {"file_id": "v", "file_unique_id": "v", "width": 1, "height": 1, "duration": 1}},
    {"animation": {"file_id": "a", "file_unique_id": "a", "width": 1, "height": 1,
                   "duration": 1}},
    {"audio": {"file_id": "au", "file_unique_id": "au", "duration": 1}},
    {"video_note": {"file_id": "n", "file_unique_id": "n", "length": 1, "duration": 1}},
    {"dice": {"emoji": "🎲", "value": 3}},
    {"venue": {"location": {"latitude": 29.1, "longitude": 119.2}, "title": "x",
               "address": "y"}},
    {"poll": {"id": "1", "question": "?", "options": [], "total_voter_count": 0,
              "is_closed": False, "is_anonymous": True, "type": "regular",
              "allows_multiple_answers": False, "allows_revoting": False,
              "members_only": False}},
])

MOVES = st.one_of(
    st.tuples(st.just("text"), PEOPLE, TEXT),
    st.tuples(st.just("photo"), PEOPLE, st.none()),
    st.tuples(st.just("voice"), PEOPLE, st.none()),
    st.tuples(st.just("sticker"), PEOPLE, st.none()),
    st.tuples(st.just("document"), PEOPLE, st.none()),
    st.tuples(st.just("location"), PEOPLE,
              st.tuples(st.floats(-90, 90), st.floats(-180, 180))),
    st.tuples(st.just("contact"), PEOPLE, st.text("0123456789+", min_size=1, max_size=20)),
    st.tuples(st.just("raw"), PEOPLE, RAW_CONTENT),
    st.tuples(st.just("tap"), PEOPLE, CALLBACK_DATA),
    st.tuples(st.just("edited"), PEOPLE, TEXT),
    st.tuples(st.just("block"), PEOPLE, st.none()),
    st.tuples(st.just("group"), PEOPLE, TEXT),
    st.tuples(st.just("channel"), st.just(0), TEXT),
)


async def _rows() -> tuple[int, ...]:
    bound = await Official.filter(account_id__isnull=False).count()
    return (
        await Case.all().count(), await CaseEvent.all().count(),
        await Villager.all().count(), bound, await Delivery.all().count(),
    )


def _raw_message(user: UserHandle, chat: dict[str, Any], content: dict[str, Any]) -> dict:
    return {"message_id": next(RAW_IDS), "from": user.as_json(), "chat": chat,
            "date": int(time.time()), **content}


async def _play(sandbox: Sandbox, users: dict[int, UserHandle], move: tuple) -> None:
    """One update; for a private message or a tap, wait for its answer."""
    kind, who, value = move
    emulator = sandbox.emulator
    if kind == "channel":
        emulator.inject_update({"channel_post": {
            "message_id": next(RAW_IDS), "date": int(time.time()), "text": value,
            "chat": {"id": CHANNEL, "type": "channel", "title": "Township"}}})
        return
    user = users[who]
    if kind == "tap":
        before = emulator.bot_messages(who)
        if not before:
            return
        query = await user.tap_data(before[-1], value)
        await emulator.wait_answer(query, timeout=10)
        return
    if kind == "block":
        if user.blocked:
            user.unblock_bot()
        else:
            user.block_bot()
        return
    if kind == "group":
        await user.send_text(value, chat=GROUP)
        return
    if kind == "edited":
        chat = {"id": who, "type": "private", "first_name": user.first_name}
        emulator.inject_update({"edited_message": {
            **_raw_message(user, chat, {"text": value}), "edit_date": int(time.time())}})
        return
    last = max((m["message_id"] for m in emulator.messages(who)), default=0)
    if kind == "text":
        await user.send_text(value)
    elif kind == "photo":
        await user.send_photo()
    elif kind == "voice":
        await user.send_voice()
    elif kind == "sticker":
        await user.send_sticker()
    elif kind == "document":
        await user.send_document("notes.pdf", "application/pdf")
    elif kind == "location":
        await user.send_location(*value)
    elif kind == "contact":
        await user.send_contact(value)
    elif kind == "raw":
        chat = {"id": who, "type": "private", "first_name": user.first_name}
        emulator.inject_update({"message": _raw_message(user, chat, value)})
    await emulator.wait_for(who, None, after=last, timeout=10)


@settings(
    max_examples=25, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(moves=st.lists(MOVES, min_size=1, max_size=8))
async def test_random_updates_are_answered_and_forged_ones_change_nothing(
    sandbox: Sandbox, moves: list[tuple]
) -> None:
    emulator = sandbox.emulator
    if not await Villager.filter(account_id=VILLAGER).exists():
        await make_villager(VILLAGER)
        official = await Official.get(code="su-jinqiao")
        official.account = await Account.create(
            id=OFFICIAL, first_name=official.name, language="zh-hans"
        )
        await official.save()
    users = {
        VILLAGER: emulator.user(VILLAGER, "李明", language_code="zh-hans"),
        STRANGER: emulator.user(STRANGER, "Stranger", language_code="en"),
        OFFICIAL: emulator.user(OFFICIAL, "苏进侨", language_code="zh-hans"),
    }
    emulator.group(GROUP, "正达村第一网格")
    for user in users.values():
        if user.blocked:
            user.unblock_bot()
        if not emulator.bot_messages(user.id):
            await user.send_text("/help")
            await emulator.wait_for(user.id, None, timeout=10)
    rows = await _rows()
    for move in moves:
        await _play(sandbox, users, move)
    # Still alive and answering, and nothing random made or bound anything.
    await users[VILLAGER].send_text("/help")
    await emulator.wait_for(VILLAGER, "/report", timeout=10, newest=True)
    assert await _rows() == rows
    # Every answer was a real one: no handler failed and fell back on the apology.
    apologies = {catalogs().text(APOLOGY, language) for language in LANGUAGES}
    answers = [a["text"] for a in emulator.callback_answers if a["text"]]
    for chat in users:
        answers += [m.get("text", "") for m in emulator.bot_messages(chat)]
    assert not apologies & set(answers)
