"""Delivery at Telegram's limit: one notice to each of `--chats` private chats through the outbox.

`python -m bench.delivery [--database sqlite|postgres] [--chats 3000]`

The real bot (its courier, its aiogram session over aiohttp) runs against the Bot API emulator
on loopback, in this process, with Telegram's sending limits on: 30 messages a second overall,
one a second per private chat, 20 a minute per group, and a 429 with retry_after beyond them.

Before the clock: every person writes to the bot once and gets its answer (with the limits off,
so opening the chats costs nothing against them), then one notice per chat is queued with
`post` in a single transaction. The clock starts when that transaction commits (the rows become
visible to the courier, which is woken) and stops when the emulator receives the last notice.

Figures: notices received per second of that wall time, and their share of Telegram's 30. The
limit is a sliding one-second window, so the first 30 may go at once: the steady rate leaves
them out (notices after the 30th, over the time from the 30th to the last). Then the send
attempts the emulator answered with 429, as a share of all sendMessage calls made while the
clock ran; lost (a chat that never got its notice) and duplicated (a notice received more than
once), counted from what each chat in the emulator holds after the courier has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import Counter
from collections.abc import Callable

from tortoise.transactions import in_transaction

from bench.common import arguments, fresh_database, machine, quiet, table
from bot import delivery
from bot.emulator import BotAPIEmulator
from bot.models import Delivery
from bot.sandbox import Sandbox

FIRST_CHAT = 100_000
TELEGRAM_PER_SECOND = 30
OPEN_AT_ONCE = 200
TIMEOUT = 900.0


def notice(chat_id: int) -> str:
    return f"通知：您的事项已受理（{chat_id}）"


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.perf_counter() + TIMEOUT
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what}: not done in {TIMEOUT:g} s")
        await asyncio.sleep(0.05)


async def open_chats(emulator: BotAPIEmulator, chats: list[int]) -> None:
    """Each person writes once and gets the bot's answer: the bot may write to them from then."""
    answered: set[int] = set()
    remove = emulator.on_bot_message(lambda chat_id, message, edited: answered.add(chat_id))
    emulator.limits = False
    try:
        for start in range(0, len(chats), OPEN_AT_ONCE):
            batch = chats[start : start + OPEN_AT_ONCE]
            await asyncio.gather(
                *(emulator.user(chat_id, f"村民{chat_id}").send_text("你好") for chat_id in batch)
            )
            await until(functools.partial(answered.issuperset, batch), "opening the chats")
    finally:
        remove()
        emulator.limits = True


async def measure(database: str, count: int) -> list[list[object]]:
    chats = list(range(FIRST_CHAT, FIRST_CHAT + count))
    async with fresh_database(database) as url, Sandbox(url, directory=None, limits=True) as box:
        emulator = box.emulator
        assert box.app is not None
        courier = box.app.courier
        await open_chats(emulator, chats)
        await courier.drained(timeout=60)

        wanted = {notice(chat_id): chat_id for chat_id in chats}
        arrivals: list[float] = []

        def hook(chat_id: int, message: dict, edited: bool) -> None:
            if not edited and wanted.get(message.get("text", "")) == chat_id:
                arrivals.append(time.perf_counter())

        emulator.on_bot_message(hook)
        attempts_before = emulator.stats.requests["sendMessage"]
        refused_before = emulator.stats.too_many_requests

        queued_at = time.perf_counter()
        async with in_transaction():
            for chat_id in chats:
                await delivery.post(chat_id, notice(chat_id))
        started = time.perf_counter()
        delivery.wake()

        with contextlib.suppress(TimeoutError):
            await until(lambda: len(arrivals) >= count, "delivering the notices")
        wall = (max(arrivals) if arrivals else time.perf_counter()) - started
        await courier.drained(timeout=60)

        attempts = emulator.stats.requests["sendMessage"] - attempts_before
        refused = emulator.stats.too_many_requests - refused_before
        received = Counter(
            message.get("text")
            for chat_id in chats
            for message in emulator.bot_messages(chat_id)
        )
        copies = [received[notice(chat_id)] for chat_id in chats]
        lost = sum(1 for n in copies if n == 0)
        duplicated = sum(n - 1 for n in copies if n > 1)
        unsent = await Delivery.filter(sent_at__isnull=True).count()
        failed = await Delivery.filter(failed_at__isnull=False).count()

    delivered = sum(1 for n in copies if n > 0)
    rate = delivered / wall if wall > 0 else 0.0
    arrivals.sort()
    burst = TELEGRAM_PER_SECOND
    steady = (
        (len(arrivals) - burst) / (arrivals[-1] - arrivals[burst - 1])
        if len(arrivals) > burst and arrivals[-1] > arrivals[burst - 1]
        else float("nan")
    )
    return [
        ["messages delivered", f"{delivered} of {count}"],
        ["queueing (one transaction, before the clock)", f"{started - queued_at:.2f} s"],
        ["wall time (commit → last notice received)", f"{wall:.1f} s"],
        ["messages/second", f"{rate:.2f}"],
        ["share of 30/s", f"{rate / TELEGRAM_PER_SECOND:.1%}"],
        ["steady messages/second (after the first 30)", f"{steady:.2f}"],
        ["steady share of 30/s", f"{steady / TELEGRAM_PER_SECOND:.1%}"],
        ["sendMessage attempts", attempts],
        ["answered 429", f"{refused} ({refused / attempts if attempts else 0:.2%})"],
        ["lost", lost],
        ["duplicated", duplicated],
        ["rows not recorded sent / failed", f"{unsent} / {failed}"],
    ]


async def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=3000)
    options = parser.parse_args()
    quiet()

    rows = await measure(options.database, options.chats)
    print(machine())
    print(f"database: {options.database}; {options.chats} private chats, one notice each\n")
    print(table("Delivery at Telegram's limit", ["", "figure"], rows))


if __name__ == "__main__":
    asyncio.run(main())
