"""Conversation throughput and submit-to-card latency, beside a bare aiogram echo bot.

`python -m bench.throughput [--database sqlite|postgres] [--mode polling|webhook]
[--villagers 200] [--samples 100] [--profile FILE.html]`

Both bots poll their own instance of the same Bot API emulator (or, `--mode webhook`, are
sent each update by it in a POST, answered once handled), in this process, over real aiohttp
sessions on loopback, so each pays the same emulator and HTTP costs. The figures recorded
of the version before (`BEFORE`) are printed beside, for the same database and mode.

1. Throughput. `--villagers` people at once each complete the whole report flow (command,
   heading, category, description, photo, Done, location pin, Submit: 8 updates), each step
   waiting for the bot's answer as a person would. The echo bot gets the same number of people
   sending the same number of messages, each waiting for its echo. Figure: updates answered per
   second of wall time, and villagebot's share of the echo bot's rate. Between them, the
   floor: the echo bot that also claims each update before its echo and marks it done after
   (villagebot's `OnceOnly`, in a fresh database of the same kind), the least a bot must do that
   neither loses an update a process died with nor handles a redelivered one twice. The
   villagers are registered in the database beforehand (registration is not the report flow);
   the drafts live in the bot's conversation storage, the cases and cards go through the
   database and the outbox as in production.
2. Latency. `--samples` villagers bring a draft to its summary; then one Submit at a time,
   0.75 s apart, spread over five grid officials. Figures: from the Submit update to the first
   message of the case card and to its text with the buttons, in the official's private chat;
   beside the echo bot's round trip for one message. The card of a report with one photo is
   one message (the photo, the card its caption, the pin a map link), so both are the same;
   they were three messages before (photo, pin, text), the text held back by Telegram's one
   message a second per chat, which the courier keeps.
   The latency samples run first, so no card of the throughput run is queued before them.

The emulator's sending limits are off here and the echo bot keeps no pace, so villagebot is
started with MESSAGES_PER_SECOND above anything it reaches: the figure is what the bot itself
can do. Against Telegram both bots would be held to its 30 messages a second overall
(`bench.delivery` measures that limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bench.common import (
    UNPACED,
    QueryLog,
    arguments,
    fresh_database,
    machine,
    median,
    percentile,
    quiet,
    table,
)
from bench.conversation import Inbox, says, to_summary
from bench.processes import free_port
from bot import db
from bot.emulator import BotAPIEmulator, UserHandle, said
from bot.middlewares import OnceOnly
from bot.models import Account, Grid, Official, Villager
from bot.sandbox import Sandbox
from bot.storage import HandledUpdates

STEPS = 8
NUMBER = re.compile(r"[A-Z]+-\d{4}-\d{6}")
#: One grid of each grid official (several grids share an official): cards to distinct chats.
#: A Submit every 0.75 s over five chats gives each chat a card every 3.75 s, so no card waits
#: behind another (a card of several messages goes at one a second per chat).
LATENCY_GRIDS = [("zhengda", "g1"), ("zhengda", "g2"), ("banli", "g1"), ("gaoceng", "g1"),
                 ("houfang", "g1")]
SUBMIT_EVERY = 0.75
WEBHOOK_SECRET = "echo-bot-secret"

#: The report flow of the version before (README, Benchmarks: the same command, that version
#: run right before this one on the same machine, 2026-12-06): updates/s, share of the echo
#: bot's of its run, CPU ms, Bot API requests and statements per update; submit to the card's
#: first message and to its text (one message since that version: the same), p50 and p99 ms.
Figures = tuple[float, float, float, float, float, tuple[float, float, float, float]]
BEFORE: dict[tuple[str, str], Figures] = {
    ("sqlite", "polling"): (51, 0.08, 19.12, 2.13, 5.4, (35, 52, 35, 52)),
    ("postgres", "polling"): (64, 0.12, 15.83, 2.13, 5.4, (44, 64, 44, 64)),
    ("sqlite", "webhook"): (46, 0.11, 22.26, 1.76, 6.3, (34, 48, 34, 48)),
    ("postgres", "webhook"): (51, 0.10, 20.00, 1.76, 6.4, (37, 48, 37, 48)),
}


# ---- the echo bot --------------------------------------------------------------------------


@dataclass
class EchoBot:
    """aiogram's echo bot, polling or behind aiogram's own webhook handler (answering each
    POST once the update is handled, as villagebot's webhook does).

    Given `handled`, it is the floor of any bot that loses and doubles nothing: each update is
    claimed before its echo and marked done after it (villagebot's own `OnceOnly`, two
    statements an update), and nothing else."""

    webhook: bool = False
    handled: HandledUpdates | None = None
    emulator: BotAPIEmulator = field(init=False)
    task: asyncio.Task[None] | None = None
    runner: web.AppRunner | None = None

    async def __aenter__(self) -> EchoBot:
        self.emulator = BotAPIEmulator(webhook_http=self.webhook)
        await self.emulator.start()
        router = Router()

        @router.message()
        async def echo(message: Message) -> None:
            await message.answer(message.text or "…")

        self.dispatcher = Dispatcher()
        self.dispatcher.include_router(router)
        if self.handled is not None:
            self.dispatcher.update.outer_middleware(OnceOnly(self.handled))
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.emulator.base_url))
        self.bot = Bot(token=self.emulator.token, session=session)
        if self.webhook:
            app = web.Application()
            SimpleRequestHandler(self.dispatcher, self.bot, handle_in_background=False,
                                 secret_token=WEBHOOK_SECRET).register(app, path="/updates")
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            port = free_port()
            await web.TCPSite(self.runner, "127.0.0.1", port).start()
            await self.bot.set_webhook(f"http://127.0.0.1:{port}/updates",
                                       secret_token=WEBHOOK_SECRET)
        else:
            self.task = asyncio.create_task(
                self.dispatcher.start_polling(self.bot, handle_signals=False)
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner is not None:
            await self.bot.delete_webhook()
            await self.runner.cleanup()
        else:
            try:
                await self.dispatcher.stop_polling()
            except RuntimeError:  # polling had not started yet
                if self.task is not None:
                    self.task.cancel()
            if self.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self.task
        await self.bot.session.close()
        await self.emulator.stop()


@dataclass
class Rate:
    updates_per_second: float
    #: CPU time of this process (both bot and emulator) per update: 1 / rate when CPU-bound.
    cpu_per_update: float
    #: Bot API requests the bot made other than getUpdates (answers, edits, button answers,
    #: cards) per update; a call folded into a webhook's answer is no request of the bot's.
    calls_per_update: float
    #: Database statements per update (the conversation, the person, the case, the outbox).
    queries_per_update: float


def _calls(emulator: BotAPIEmulator) -> int:
    """The bot's Bot API requests but the getUpdates of polling and the webhook's set-up."""
    stats = emulator.stats
    return stats.total_requests - sum(stats.webhook_replies.values()) - sum(
        stats.requests[m] for m in ("getUpdates", "setWebhook", "getWebhookInfo")
    )


async def _measure(people: int, emulator: BotAPIEmulator, work: Awaitable[object]) -> Rate:
    updates = people * STEPS
    calls = _calls(emulator)
    with QueryLog() as queries:
        wall, cpu = time.perf_counter(), time.process_time()
        await work
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return Rate(
        updates / wall, cpu / updates, (_calls(emulator) - calls) / updates,
        len(queries.statements) / updates,
    )


async def echo_throughput(
    people: int, webhook: bool = False, handled: HandledUpdates | None = None
) -> Rate:
    async with EchoBot(webhook, handled) as echo:
        inbox = Inbox(echo.emulator)
        users = [echo.emulator.user(100_000 + i, f"U{i}") for i in range(people)]

        async def talk(user: UserHandle) -> None:
            for n in range(STEPS):
                await inbox.step(user, user.send_text(f"hello {n}"), says(f"hello {n}"))

        await asyncio.gather(*(inbox.step(u, u.send_text("warm"), says("warm")) for u in users))
        return await _measure(
            people, echo.emulator, asyncio.gather(*(talk(user) for user in users))
        )


async def floor_throughput(people: int, webhook: bool, database: str) -> Rate:
    """The echo bot with an update's claim and done mark in a fresh `database`."""
    async with fresh_database(database) as url:
        await db.start(url)
        handled = HandledUpdates(None, bot_id=1)
        try:
            return await echo_throughput(people, webhook, handled)
        finally:
            await handled.close()
            await db.stop()


async def echo_round_trips(samples: int, webhook: bool = False) -> list[float]:
    async with EchoBot(webhook) as echo:
        inbox = Inbox(echo.emulator)
        user = echo.emulator.user(100_000, "U")
        times = []
        for n in range(samples):
            since = inbox.mark(user.id)
            started = time.perf_counter()
            await user.send_text(f"ping {n}")
            arrived, _ = await inbox.wait(user.id, since, says(f"ping {n}"))
            times.append(arrived - started)
        return times


# ---- villagebot ----------------------------------------------------------------------------


async def _villagers(sandbox: Sandbox, first_id: int, count: int,
                     grids: list[tuple[str, str]] | None = None) -> list[UserHandle]:
    """Registered villagers, spread over the grids; Telegram users to act as."""
    every_grid = await Grid.all().prefetch_related("village").order_by("id")
    chosen = every_grid if grids is None else [
        g for code in grids for g in every_grid if (g.village.code, g.code) == code
    ]
    users = []
    for i in range(count):
        grid = chosen[i % len(chosen)]
        # Registered: they wrote to the bot in private (`started_at`), as registration needs.
        account = await Account.create(id=first_id + i, first_name=f"村民{i}", language="zh-hans",
                                       started_at=datetime.now(UTC))
        await Villager.create(
            account=account, township_id=grid.village.township_id,  # type: ignore[attr-defined]
            village=grid.village, grid=grid, name=f"村民{i}",
        )
        users.append(sandbox.emulator.user(first_id + i, f"村民{i}", language_code="zh-hans"))
    return users


async def _officials_on_telegram(sandbox: Sandbox, inbox: Inbox) -> None:
    """Every official bound to an account that has started the bot, so cards can reach them."""
    for official in await Official.all():
        account = await Account.create(
            id=5000 + official.id, first_name=official.name, language="zh-hans"
        )
        official.account = account
        await official.save()
        user = sandbox.emulator.user(account.id, official.name, language_code="zh-hans")
        await inbox.step(user, user.send_text("/start"), lambda message: True)


async def submit(inbox: Inbox, user: UserHandle, summary: dict) -> str:
    answer = await inbox.step(user, user.tap(summary, "✅ 提交"), says("事项编号"))
    found = NUMBER.search(said(answer))
    assert found is not None, said(answer)
    return found.group(0)


async def villagebot_figures(
    database: str, people: int, samples: int, webhook: bool = False
) -> tuple[Rate, list[float], list[float]]:
    async with (
        fresh_database(database) as url,
        Sandbox(url, messages_per_second=UNPACED, webhook=webhook) as sandbox,
    ):
        inbox = Inbox(sandbox.emulator)
        await _officials_on_telegram(sandbox, inbox)
        testers = await _villagers(sandbox, 200_000, samples, LATENCY_GRIDS)
        summaries = await asyncio.gather(*(to_summary(inbox, user) for user in testers))
        chats = [await _official_chat(user.id) for user in testers]
        started = time.perf_counter()

        async def sample(n: int) -> tuple[float, float]:
            await asyncio.sleep(started + n * SUBMIT_EVERY - time.perf_counter())
            since = inbox.mark(chats[n])
            submitted = time.perf_counter()
            number = await submit(inbox, testers[n], summaries[n])
            first, _ = await inbox.wait(chats[n], since, lambda message: True)
            whole, _ = await inbox.wait(chats[n], since, says(number))
            return first - submitted, whole - submitted

        timings = await asyncio.gather(*(sample(n) for n in range(samples)))
        users = await _villagers(sandbox, 100_000, people)

        async def report(user: UserHandle) -> None:
            await submit(inbox, user, await to_summary(inbox, user))

        rate = await _measure(
            people, sandbox.emulator, asyncio.gather(*(report(user) for user in users))
        )
        return rate, [t[0] for t in timings], [t[1] for t in timings]


async def _official_chat(villager_account: int) -> int:
    """The private chat the villager's grid card goes to (the grid unit has no group chat)."""
    villager = await Villager.get(account_id=villager_account).prefetch_related("grid")
    official = await Official.filter(
        units__grid_id=villager.grid.id, units__kind="grid"  # type: ignore[union-attr]
    ).first()
    assert official is not None and official.account_id is not None  # type: ignore[attr-defined]
    return official.account_id  # type: ignore[attr-defined,no-any-return]


def _ms(seconds: float, decimals: int = 0) -> str:
    return f"{seconds * 1000:.{decimals}f} ms"


def _profiler() -> Any:
    from pyinstrument import Profiler

    profiler = Profiler(async_mode="disabled")  # every task's time, the emulator's too
    profiler.start()
    return profiler


async def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--villagers", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument(
        "--mode", choices=["polling", "webhook"], default="polling",
        help="how both bots receive updates: polling, or the emulator POSTing each to them",
    )
    parser.add_argument(
        "--profile", metavar="FILE.html",
        help="profile villagebot's part with pyinstrument (pip install -e '.[bench]') into FILE",
    )
    options = parser.parse_args()
    quiet()

    webhook = options.mode == "webhook"
    echo_rate = await echo_throughput(options.villagers, webhook)
    floor = await floor_throughput(options.villagers, webhook, options.database)
    profiler = _profiler() if options.profile else None
    rate, first_parts, whole_cards = await villagebot_figures(
        options.database, options.villagers, options.samples, webhook
    )
    if profiler is not None:
        profiler.stop()
        Path(options.profile).write_text(profiler.output_html())
        print(f"profile of villagebot's part (the figures are slower for it): {options.profile}")
    round_trips = await echo_round_trips(options.samples, webhook)
    print(machine())
    print(f"database: {options.database}; {options.mode}; {options.villagers} people at once, "
          f"{STEPS} updates "
          f"each; {options.samples} latency samples\n")
    before = BEFORE.get((options.database, options.mode))
    print(table(
        "Conversation throughput",
        ["bot", "updates/s", "share of echo", "CPU per update", "Bot API requests per update",
         "queries per update"],
        [
            ["echo bot (aiogram, nothing else)", f"{echo_rate.updates_per_second:.0f}", "100%",
             _ms(echo_rate.cpu_per_update, 2), f"{echo_rate.calls_per_update:.2f}",
             f"{echo_rate.queries_per_update:.1f}"],
            *(
                [name, f"{r.updates_per_second:.0f}",
                 f"{r.updates_per_second / echo_rate.updates_per_second:.0%}",
                 _ms(r.cpu_per_update, 2), f"{r.calls_per_update:.2f}",
                 f"{r.queries_per_update:.1f}"]
                for name, r in (
                    ("floor: echo bot + an update's claim and done mark", floor),
                    ("villagebot, whole report flow", rate),
                )
            ),
            *([["villagebot before (recorded)", f"{before[0]:.0f}", f"{before[1]:.0%}",
                f"{before[2]:.2f} ms", f"{before[3]:.2f}", f"{before[4]:.1f}"]] if before else []),
        ],
    ))
    print()
    earlier = [f"{v:.0f} ms" for v in before[5]] if before else ["-"] * 4
    print(table("Submit to card", ["", "p50", "p99", "before: p50", "p99"], [
        ["echo bot round trip", _ms(median(round_trips)), _ms(percentile(round_trips, 0.99)),
         "", ""],
        ["Submit → the card's first message in the official's chat", _ms(median(first_parts)),
         _ms(percentile(first_parts, 0.99)), *earlier[:2]],
        ["Submit → the card's text and buttons", _ms(median(whole_cards)),
         _ms(percentile(whole_cards, 0.99)), *earlier[2:]],
    ]))


if __name__ == "__main__":
    asyncio.run(main())
