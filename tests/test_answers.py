"""Nobody is left without an answer: failed Bot API calls, handler errors, forged and
repeated taps, the same update twice, and two replies in a row to one chat.

Each scenario goes through the real bot and the emulator, which fails calls and refuses what
Telegram refuses (a second answer to one callback, an edit that changes nothing).
"""

from __future__ import annotations

import asyncio

import pytest

from bot.emulator import button_data, buttons
from bot.models import Account, Case, Conversation, Grid, Villager
from bot.sandbox import Phone, Sandbox

ANNA = 1002


async def _anna(sandbox: Sandbox) -> Phone:
    """Anna of Zhengda grid 1, registered, speaking English, with the menu on screen."""
    account = await Account.create(id=ANNA, first_name="Anna", language="en")
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name="Anna",
    )
    phone = sandbox.phone(ANNA, "Anna", language="en")
    await phone.send("/start")
    await phone.expect("Anna")
    return phone


async def _to_description(anna: Phone) -> None:
    await anna.press("📝 Report a problem")
    await anna.expect("What is the problem about?")
    await anna.tap("Environment and sanitation")
    await anna.expect("which one?")
    await anna.tap("Litter and cleaning")
    await anna.expect("Describe the problem")


async def _to_photos(anna: Phone) -> None:
    await _to_description(anna)
    await anna.send("The bins at the village gate are full")
    await anna.expect("Photos help the officials")


async def test_a_failing_tap_answer_and_button_removal_do_not_lose_the_next_question(
    sandbox: Sandbox,
) -> None:
    anna = await _anna(sandbox)
    await anna.press("📝 Report a problem")
    await anna.expect("What is the problem about?")
    emulator = sandbox.emulator
    # More failures than a reply is retried: the cosmetic calls are given up, the step goes on.
    emulator.fail_next("answerCallbackQuery", status=502, times=4)
    emulator.fail_next("editMessageText", status=502, times=1)
    await anna.tap("Environment and sanitation")
    await anna.expect("which one?", timeout=10)
    assert emulator.stats.errors[502] == 5
    await anna.tap("Litter and cleaning")
    await anna.expect("Describe the problem")


async def test_a_reply_that_meets_a_5xx_or_a_dropped_connection_is_sent_again(
    sandbox: Sandbox,
) -> None:
    anna = await _anna(sandbox)
    await _to_photos(anna)
    sandbox.emulator.fail_next("sendMessage", status=502, times=2)
    await anna.tap("✅ Done")
    await anna.expect("Where is the problem?")
    sandbox.emulator.drop_connection_next("sendMessage")
    await anna.send("/mycases")
    await anna.expect("reported any problem")


async def test_a_failing_step_is_answered_with_an_apology_and_changes_nothing(
    sandbox: Sandbox,
) -> None:
    anna = await _anna(sandbox)
    await _to_photos(anna)
    # Telegram refuses the next question outright: the step fails, the person is told.
    sandbox.emulator.fail_next("sendMessage", status=400, description="Bad Request: broken")
    await anna.tap("✅ Done")
    await anna.expect("Sorry, something went wrong on our side")
    # The tap itself was answered once, not left spinning.
    assert await Case.all().count() == 0


async def test_a_failing_step_puts_the_draft_back_so_trying_again_works(
    sandbox: Sandbox,
) -> None:
    anna = await _anna(sandbox)
    await _to_description(anna)
    # The description is taken, then asking for photos fails: the step is not done.
    sandbox.emulator.fail_next("sendMessage", status=400, description="Bad Request: broken")
    await anna.send("The bins at the village gate are full")
    await anna.expect("Sorry, something went wrong on our side")
    # As the apology asks, she sends it again: it is the description step that answers.
    await anna.send("The bins at the village gate are full, again")
    await anna.expect("Photos help the officials")


async def test_a_failing_message_is_answered_with_an_apology_in_the_persons_language(
    sandbox: Sandbox,
) -> None:
    li = sandbox.phone(1001, "李明", language="zh-hans")
    sandbox.emulator.fail_next("sendMessage", status=400, description="Bad Request: broken")
    await li.send("/start")
    apology = await li.expect("抱歉")
    assert "Sorry" not in apology["text"]


@pytest.mark.parametrize(
    "data", ["c1:99999999999999999999999:accept", "c1:3000000000:open", "c1:-5:open",
             "a1:1:2147483648:4", "s1:1:99", "k1:4294967296"],
)
async def test_a_forged_id_beyond_the_databases_range_is_answered_and_changes_nothing(
    sandbox: Sandbox, data: str
) -> None:
    anna = await _anna(sandbox)
    before = await Conversation.exclude(key__startswith="handled:").count()
    query = await anna.user.tap_data(anna.last(), data)
    answer = await sandbox.emulator.wait_answer(query)
    assert answer["show_alert"] and "no longer active" in answer["text"]
    assert await Case.all().count() == 0
    assert await Conversation.exclude(key__startswith="handled:").count() == before


async def test_tapping_the_language_already_chosen_is_answered(sandbox: Sandbox) -> None:
    anna = await _anna(sandbox)
    await anna.send("/language")
    chooser = await anna.expect("Choose your language")
    english = button_data(chooser, "English")
    await anna.tap("English")
    await anna.expect("I will speak English")
    # The same tap again (a double tap): the chooser already says "Language: English".
    query = await anna.user.tap_data(chooser["message_id"], english)
    await sandbox.emulator.wait_answer(query)
    await anna.expect("I will speak English")  # the step went to its end, as the first time
    await anna.send("/mycases")
    await anna.expect("reported any problem")
    assert not [m for m in anna.emulator.bot_messages(ANNA) if "Sorry" in m.get("text", "")]


async def test_the_same_photo_delivered_twice_counts_once(sandbox: Sandbox) -> None:
    anna = await _anna(sandbox)
    await _to_photos(anna)
    await anna.user.send_photo()
    await anna.expect("Photos: 1 of 5")
    photo_update = sandbox.emulator.last_update_id
    sandbox.emulator.redeliver(photo_update)
    await anna.send("/mycases")  # handled after the redelivered photo: the lock keeps order
    await anna.expect("reported any problem")
    texts = [m.get("text", "") for m in anna.emulator.bot_messages(ANNA)]
    assert not [text for text in texts if "Photos: 2 of 5" in text]
    await anna.tap("✅ Done")
    await anna.expect("Where is the problem?")
    await anna.tap("Skip")
    summary = await anna.expect("Please check your report")
    assert "Photos: 1" in summary["text"]


async def test_forty_villagers_registering_at_once_meet_no_429(database_url: str) -> None:
    async with Sandbox(database_url, limits=True) as sandbox:
        phones = [
            sandbox.phone(3000 + n, f"V{n}", language="en") for n in range(40)
        ]
        await asyncio.gather(*(phone.send("/start") for phone in phones))
        await asyncio.gather(*(phone.expect("village", timeout=20) for phone in phones))
        assert sandbox.emulator.stats.too_many_requests == 0
        assert all(buttons(phone.last()) for phone in phones)
