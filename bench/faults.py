"""Reports and casework while a share of all Bot API calls fail at random.

`python -m bench.faults [--database sqlite|postgres] [--cases 500] [--rate 0.05] [--seed 14]
[--retry-after 3]`

The real bot runs as `villagebot run` (a process of its own, long polling) against the Bot API
emulator in this process. Before it starts, the demo township is imported, its officials bound
to Telegram accounts and `--cases` villagers registered over its nine grids (registration is
not what is measured here). Once the bot polls and every official has written /start, the
emulator answers `--rate` of all calls, of every method (getUpdates included), at random with
a 429 (retry_after 1 to `--retry-after` seconds), a 500 or a dropped connection, half of the
drops after the call took effect.

Then every villager reports a case through the whole flow (/report, heading, category,
description, a photo, Done, a pin, Submit), `AT_ONCE` at a time; the grid officials accept
half of the cards they get and resolve half of those (tap, evidence photo, note). Everyone
acts as a person does: an answer that has not come within `PATIENCE` seconds, and the person
sends the last message or taps the last button again.

At the end, from the database and the emulator: one case per report; every outbox row sent
(none failed or pending) and its message in the target chat; every message that arrived twice,
with its cause (a connection dropped after the send took effect: the duplicate the outbox and
the direct replies own up to; any other is counted as unexplained); and what was given up:
outbox rows failed, updates whose handling failed, cosmetic calls passed over, people left
without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.common import UNPACED, arguments, fresh_database, machine, table
from bench.conversation import Inbox, offers, says
from bot.emulator import BotAPIEmulator, UserHandle, buttons, said

FIRST_VILLAGER = 200_000
#: People acting at once.
AT_ONCE = 25
#: How long a person waits for the bot's answer before doing the same again.
PATIENCE = 10.0
#: ...and how many times in all before giving up (reported as an unanswered person).
TRIES = 6
#: How long an official waits for a case's card: the outbox holds one message a second per
#: private chat, and an official gets every card of their grids.
CARD_WITHIN = 600.0
DRAINED_WITHIN = 300.0
STARTED_WITHIN = 120.0
NUMBER = re.compile(r"[A-Z]+-\d{4}-\d{6}")
ACCEPT, RESOLVE = "✅ 受理", "✔️ 办结"
#: Sends: the calls that leave a message in a chat.
SENDS = ("sendMessage", "sendPhoto", "sendMediaGroup", "sendLocation", "sendVoice",
         "sendDocument")


class Unanswered(Exception):
    """A person who did the same thing `TRIES` times without the answer they waited for."""


@dataclass
class Outcome:
    """What a run tried and what it found."""

    cases: int
    reports: int = 0
    cases_in_database: int = 0
    reporters_with_other_than_one: list[int] = field(default_factory=list)
    accepted: int = 0
    resolved: int = 0
    calls: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    notices: int = 0
    notices_missing: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    pending: int = 0
    duplicates: Counter[str] = field(default_factory=Counter)
    unexplained: list[str] = field(default_factory=list)
    handler_errors: int = 0
    passed_over: int = 0
    unanswered: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def rows(self) -> list[list[object]]:
        injected = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.injected.items()))
        retries = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.retries.items()))
        duplicates = ", ".join(f"{cause}: {n}" for cause, n in sorted(self.duplicates.items()))
        return [
            ["cases reported / in the database", f"{self.reports} / {self.cases_in_database}"],
            ["reporters with other than one case", len(self.reporters_with_other_than_one)],
            ["cases accepted / resolved by officials", f"{self.accepted} / {self.resolved}"],
            ["Bot API calls", self.calls],
            ["faults injected", f"{sum(self.injected.values())} ({injected})"],
            ["retries", f"{sum(self.retries.values())} ({retries})"],
            ["outbox rows sent, message in the chat", f"{self.notices}"],
            ["outbox rows missing from their chat", len(self.notices_missing)],
            ["outbox rows failed / pending", f"{len(self.failed)} / {self.pending}"],
            ["duplicates", f"{sum(self.duplicates.values())} ({duplicates or 'none'})"],
            ["duplicates unexplained", len(self.unexplained)],
            ["steps that failed, apologised for (the person asked again)", self.handler_errors],
            ["cosmetic calls passed over", self.passed_over],
            ["people left without an answer", len(self.unanswered)],
            ["wall time, s", f"{self.seconds:.0f}"],
        ]


class BotProcess:
    """`villagebot run`, its stderr read all along (a full pipe would stall it)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, env: dict[str, str], cwd: str) -> BotProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", env=env, cwd=cwd,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode(errors="replace"))

    async def polling(self, emulator: BotAPIEmulator) -> None:
        """Until the bot asks for updates: started, however slowly on a busy machine."""
        deadline = time.perf_counter() + STARTED_WITHIN
        while not emulator.stats.requests["getUpdates"]:
            if self.process.returncode is not None or time.perf_counter() > deadline:
                raise RuntimeError("the bot did not start:\n" + "".join(self.lines[-40:]))
            await asyncio.sleep(0.2)

    def count(self, *texts: str) -> int:
        """Log lines holding every one of `texts`."""
        return sum(all(text in line for text in texts) for line in self.lines)

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), STARTED_WITHIN)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self._reader
        return self.process.returncode or 0


def _env(emulator: BotAPIEmulator, database_url: str, redis_url: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not k.upper().startswith(
            ("WEBHOOK_", "WEB_", "BOT_", "TELEGRAM_", "REDIS_", "DATABASE_", "DIRECTORY_",
             "SCHEDULER", "INSTANCE", "LOG_", "MESSAGES_")
        )
    }
    env.update(
        BOT_TOKEN=emulator.token, TELEGRAM_API_URL=emulator.base_url, DATABASE_URL=database_url,
        LOG_LEVEL="INFO", SCHEDULER="false", INSTANCE="faults", WEB_LISTEN="",
        # The emulator keeps no sending limits here: the bot's own pacing is not measured.
        MESSAGES_PER_SECOND=str(UNPACED),
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


async def _prepare(database_url: str, cases: int) -> tuple[list[int], dict[int, int]]:
    """The township, its officials on Telegram, the villagers; the villagers' ids and, by
    villager, the account of their grid's official."""
    from bot import db
    from bot.directory import import_file
    from bot.models import Account, Grid, Official, Villager
    from bot.sandbox import EXAMPLE_DIRECTORY

    await db.start(database_url)
    try:
        await import_file(EXAMPLE_DIRECTORY)
        for official in await Official.all():
            official.account = await Account.create(
                id=5000 + official.id, first_name=official.name, language="zh-hans"
            )
            await official.save()
        grids = await Grid.all().prefetch_related("village").order_by("id")
        handler: dict[int, int] = {}
        for grid in grids:
            member = await Official.filter(units__grid_id=grid.id).first()
            assert member is not None, f"nobody handles grid {grid.id}"
            handler[grid.id] = 5000 + member.id
        villagers, official_of = [], {}
        for i in range(cases):
            grid = grids[i % len(grids)]
            account = await Account.create(
                id=FIRST_VILLAGER + i, first_name=f"村民{i}", language="zh-hans"
            )
            await Villager.create(
                account=account, township_id=grid.village.township_id,  # type: ignore[attr-defined]
                village=grid.village, grid=grid, name=f"村民{i}",
            )
            villagers.append(account.id)
            official_of[account.id] = handler[grid.id]
        return villagers, official_of
    finally:
        await db.stop()


class Run:
    """The people of one run, and what they did."""

    def __init__(self, emulator: BotAPIEmulator, seed: int) -> None:
        self.emulator = emulator
        self.inbox = Inbox(emulator)
        self.random = random.Random(seed)
        #: When each chat's person last acted (a message or a tap), to tell a person's second
        #: request from a message sent twice.
        self.acted: dict[int, list[float]] = defaultdict(list)
        self.repeats = 0
        self.unanswered: list[str] = []
        self.reports: dict[int, str] = {}
        self.accepted = 0
        self.resolved = 0
        #: When the faults began: what arrived before is not this run's to explain.
        self.faulty_since = float("inf")

    async def step(
        self, user: UserHandle, act: Callable[[], Awaitable[object]],
        expected: Callable[[dict], bool], what: str,
    ) -> dict:
        """Do `act` and wait for the answer; again, as a person would, if it does not come.

        Returns the newest matching message, as a person reads the last one on the screen. A
        tap's answer may also be a notice over the chat (the callback query's answer), which
        is returned as a message with its text.
        """
        since = self.inbox.mark(user.id)
        taps: list[str] = []
        for attempt in range(TRIES):
            if attempt:
                self.repeats += 1
            self.acted[user.id].append(time.perf_counter())
            # A button an edit took away means the earlier tap took effect.
            with contextlib.suppress(LookupError):
                if isinstance(done := await act(), str):
                    taps.append(done)
            deadline = time.perf_counter() + PATIENCE
            while (left := deadline - time.perf_counter()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self.inbox.wait(user.id, since, expected), min(left, 1.0)
                    )
                    found = [m for _, m in self.inbox.arrived[user.id][since:] if expected(m)]
                    return found[-1]
                for query in taps:
                    answer = self.emulator.answer_for(query) or {}
                    if expected({"text": answer.get("text") or ""}):
                        return {"text": answer["text"]}
        last = self.inbox.arrived[user.id][-1:]
        shown = said(last[0][1])[:80] if last else "nothing"
        raise Unanswered(f"{user.first_name} ({user.id}): no answer to {what}; last: {shown!r}")

    async def report(self, user: UserHandle) -> str:
        """The whole report flow; the case number the bot gave."""
        step, i = self.step, user.id - FIRST_VILLAGER
        menu = await step(user, lambda: user.send_text("/report"), offers("环境卫生"), "/report")
        heading = await step(
            user, lambda: user.tap(menu, "环境卫生"), offers("卫生清理"), "the heading"
        )
        await step(user, lambda: user.tap(heading, "卫生清理"), says("请描述问题"), "category")
        text = f"村口垃圾桶满了，三天没人清理（{user.id}）"
        # Asked again after an apology, the description may find the draft at the photos
        # already: the bot says so, and the person goes on to the photo.
        await step(
            user, lambda: user.send_text(text),
            lambda m: "最多" in said(m) or "这里只能添加照片" in said(m), "the description",
        )
        photos = await step(user, user.send_photo, says("已收到照片"), "the photo")
        await step(user, lambda: user.tap(photos, "✅ 完成"), says("问题在什么位置"), "Done")
        # A pin of its own, a kilometre from the others: not offered as the same problem.
        where = (27.0 + i / 100, 118.9)
        summary = await step(user, lambda: user.send_location(*where), says("请核对"), "the pin")
        # A second tap, after an answer that never came, is told so over the chat.
        done = await step(
            user, lambda: user.tap(summary, "✅ 提交"),
            lambda m: "已提交。您的事项编号" in said(m) or "已经提交过了" in said(m), "Submit",
        )
        found = NUMBER.search(said(done))
        assert found is not None, said(done)
        return found.group()

    async def villager(self, user: UserHandle, queue: asyncio.Queue[str]) -> None:
        try:
            number = await self.report(user)
        except Unanswered as error:
            self.unanswered.append(str(error))
            return
        self.reports[user.id] = number
        await queue.put(number)

    async def card(self, user: UserHandle, number: str) -> dict:
        """The case's card in the official's chat, however long the outbox takes."""
        deadline = time.perf_counter() + CARD_WITHIN
        while True:
            try:
                return (await self.inbox.wait(
                    user.id, 0, lambda m: number in said(m) and ACCEPT in buttons(m)
                ))[1]
            except TimeoutError:
                if time.perf_counter() > deadline:
                    raise

    async def official(self, user: UserHandle, queue: asyncio.Queue[str | None]) -> None:
        """Takes each card of their grids in turn: accepts half, resolves half of those."""
        while (number := await queue.get()) is not None:
            accept = self.random.random() < 0.5
            resolve = self.random.random() < 0.5
            card = await self.card(user, number)
            if not accept:
                continue
            try:
                taken = await self.step(
                    user, lambda card=card: user.tap(card, ACCEPT),
                    lambda m: number in said(m) and RESOLVE in buttons(m),
                    f"accepting {number}",
                )
                self.accepted += 1
                if not resolve:
                    continue
                await self.step(
                    user, lambda taken=taken: user.tap(taken, RESOLVE),
                    says("请至少发送一张处理后的现场照片"), f"resolving {number}",
                )
                await self.step(user, user.send_photo, says("照片："), "the evidence")
                await self.step(
                    user, lambda: user.send_text("垃圾已清运"), says("已办结"), "the note"
                )
                self.resolved += 1
            except Unanswered as error:
                self.unanswered.append(str(error))


def _signature(message: dict) -> tuple[object, ...]:
    """What a message shows, to tell the same message sent twice."""
    if "photo" in message:
        return ("photo", message["photo"][-1]["file_unique_id"], message.get("caption"))
    if "location" in message:
        return ("location", message["location"]["latitude"], message["location"]["longitude"])
    if "voice" in message:
        return ("voice", message["voice"]["file_unique_id"], message.get("caption"))
    return ("text", message.get("text"))


async def _check(
    outcome: Outcome, run: Run, bot: BotProcess, emulator: BotAPIEmulator, database_url: str,
    villagers: list[int],
) -> None:
    from bot import db
    from bot.models import Case, Delivery, Villager

    # Every message as it arrived (before any edit), by chat.
    arrived: dict[int, list[tuple[float, int, tuple[object, ...]]]] = defaultdict(list)
    for chat_id, messages in run.inbox.arrived.items():
        seen: set[int] = set()
        for moment, message in messages:
            # An edit arrives under its message's id; before the faults, nothing to explain.
            if moment >= run.faulty_since and message["message_id"] not in seen:
                seen.add(message["message_id"])
                arrived[chat_id].append((moment, message["message_id"], _signature(message)))
    lost_answers: dict[int, set[int]] = defaultdict(set)
    for fault in emulator.injected:
        if fault.took_effect and fault.method in SENDS and fault.chat_id is not None:
            lost_answers[fault.chat_id].update(fault.message_ids)

    await db.start(database_url)
    try:
        rows = await Delivery.all().order_by("id")
        outcome.pending = sum(1 for r in rows if r.sent_at is None and r.failed_at is None)
        outcome.failed = [f"{r.id} to {r.chat_id}: {r.error}" for r in rows if r.failed_at]
        by_chat: dict[int, set[int]] = defaultdict(set)
        for row in rows:
            if row.sent_at is None:
                continue
            present = {m["message_id"] for m in emulator.bot_messages(row.chat_id)}
            if row.message_ids and set(row.message_ids) <= present:
                outcome.notices += 1
            else:
                outcome.notices_missing.append(row.id)
            by_chat[row.chat_id].update(row.message_ids or [])
        cases = await Case.all().values_list("reporter_id", flat=True)
        outcome.cases_in_database = len(cases)
        per_reporter = Counter(cases)
        accounts = dict(await Villager.all().values_list("id", "account_id"))
        counts = Counter({accounts[v]: n for v, n in per_reporter.items()})
        outcome.reporters_with_other_than_one = [
            a for a in villagers if a in run.reports and counts[a] != 1
        ] + [a for a, n in counts.items() if a not in run.reports]
    finally:
        await db.stop()

    # A copy: a message that shows what an earlier one in its chat showed, with nothing the
    # person did in between (so not an answer to a second request), or an outbox row's message
    # shown twice. Its cause is known when the earlier copy's send lost its answer.
    for chat_id, messages in arrived.items():
        acted = run.acted.get(chat_id, [])
        rows_here = by_chat.get(chat_id, set())
        #: Per thing shown: when the person last acted before its first copy, and its copies.
        #: The request a first copy answers began with the first act since the message before.
        runs: dict[tuple[object, ...], tuple[float, int, int]] = {}
        before_it = 0.0
        for moment, message_id, sig in messages:
            run_of = runs.get(sig)
            previous, before_it = before_it, moment
            if run_of is None:
                since = [a for a in acted if previous < a < moment]
                began = min(since) if since else max((a for a in acted if a < moment), default=0)
                runs[sig] = (began, 1, message_id)
                continue
            began, copies, earlier = run_of
            runs[sig] = (began, copies + 1, message_id)
            outbox = earlier in rows_here or message_id in rows_here
            asked = sum(1 for a in acted if began <= a < moment)
            if not outbox and asked > copies:
                continue  # the person asked again and got the answer again
            kind = "outbox" if outbox else "direct reply"
            if earlier in lost_answers[chat_id]:
                outcome.duplicates[f"{kind}, answer lost to a dropped connection"] += 1
            else:
                outcome.unexplained.append(f"chat {chat_id}: {sig} as {earlier} and {message_id}")
    # A failed step is apologised for and rolled back (bot/handlers/errors.py): the person
    # sees the apology and asks again.
    outcome.handler_errors = bot.count("bot.handlers.errors: update ", " failed: ") + bot.count(
        "Cause exception while process update"
    )
    outcome.passed_over = bot.count("going on without it")
    outcome.retries.update({
        "courier, after a 5xx or a network error": bot.count("courier: delivery", "; retry in "),
        "courier, after a 429": bot.count("courier: chat", ": retry after "),
        "direct replies": bot.count("; sending again"),
        "polling": bot.count("Failed to fetch updates"),
        "people asking again": run.repeats,
    })


async def measure(
    database_url: str, cases: int, rate: float, seed: int, at_once: int = AT_ONCE,
    retry_after: int = 3, redis_url: str = "",
) -> Outcome:
    """One run against a migrated, empty database at `database_url` (and Redis for the
    conversations, when given); a 429 asks the bot to wait 1 to `retry_after` seconds."""
    outcome = Outcome(cases)
    villagers, official_of = await _prepare(database_url, cases)
    async with BotAPIEmulator() as emulator:
        run = Run(emulator, seed)
        with tempfile.TemporaryDirectory(prefix="villagebot-faults-") as folder:
            bot = await BotProcess.start(_env(emulator, database_url, redis_url), folder)
            try:
                officials = sorted(set(official_of.values()))
                await bot.polling(emulator)
                users = [emulator.user(a, f"干部{a}", language_code="zh-hans") for a in officials]
                await asyncio.gather(*(
                    run.step(user, lambda user=user: user.send_text("/start"),
                             lambda m: True, "/start")
                    for user in users
                ))
                began = run.faulty_since = time.perf_counter()
                emulator.faults(rate, seed=seed, retry_after=(1, retry_after))
                queues: dict[int, asyncio.Queue[str | None]] = {
                    account: asyncio.Queue() for account in officials
                }
                working = [
                    asyncio.create_task(run.official(emulator.user(a, f"干部{a}"), queues[a]))
                    for a in officials
                ]
                room = asyncio.Semaphore(at_once)

                async def one(account: int) -> None:
                    async with room:
                        user = emulator.user(account, f"村民{account - FIRST_VILLAGER}",
                                             language_code="zh-hans")
                        await run.villager(user, queues[official_of[account]])  # type: ignore[arg-type]

                await asyncio.gather(*(one(account) for account in villagers))
                for queue in queues.values():
                    await queue.put(None)
                await asyncio.gather(*working)
                await _drained(database_url)
                outcome.seconds = time.perf_counter() - began
                emulator.faults(0)
            finally:
                code = await bot.stop()
        assert code == 0, "".join(bot.lines[-40:])
        outcome.reports = len(run.reports)
        outcome.accepted, outcome.resolved = run.accepted, run.resolved
        outcome.unanswered = run.unanswered
        outcome.calls = emulator.stats.total_requests
        outcome.injected = emulator.stats.injected
        await _check(outcome, run, bot, emulator, database_url, villagers)
    return outcome


async def _drained(database_url: str) -> None:
    """Until the outbox has nothing left to send (sent or failed, every row)."""
    from bot import db
    from bot.models import Delivery

    await db.start(database_url)
    try:
        deadline = time.perf_counter() + DRAINED_WITHIN
        while await Delivery.filter(sent_at__isnull=True, failed_at__isnull=True).exists():
            if time.perf_counter() > deadline:
                return  # reported as pending
            await asyncio.sleep(0.5)
    finally:
        await db.stop()


def report(outcome: Outcome, rate: float, seed: int) -> str:
    lines = [table(
        f"{outcome.cases} reports, {rate:.0%} of all Bot API calls failing (seed {seed})",
        ["", ""], outcome.rows(),
    )]
    for title, items in (
        ("unexplained duplicates", outcome.unexplained), ("failed outbox rows", outcome.failed),
        ("people without an answer", outcome.unanswered),
        ("outbox rows missing", [str(i) for i in outcome.notices_missing]),
    ):
        if items:
            lines.append(f"\n{title}:\n  " + "\n  ".join(items[:20]))
    return "\n".join(lines)


async def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument(
        "--retry-after", type=int, default=3,
        help="a 429 asks to wait 1 to this many seconds (a direct reply waits out up to 5)",
    )
    args = parser.parse_args()
    async with fresh_database(args.database) as url:
        outcome = await measure(
            url, args.cases, args.rate, args.seed, retry_after=args.retry_after
        )
    print(machine())
    print(report(outcome, args.rate, args.seed))


if __name__ == "__main__":
    asyncio.run(main())
