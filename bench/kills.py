"""kill -9 of a worker at random moments while villagers report and an official works the cases.

`python -m bench.kills [--database sqlite|postgres] [--reports 200] [--kills 50] [--seed N]`

The bot runs as an operator runs it: `migrate`, `directory import`, `webhook set`, `invite`,
then `run --workers 2` in webhook mode, real processes on one database (and Redis with
`--redis`), with the Bot API emulator in this process POSTing every update to the webhook and
sending again, as Telegram does, any update not answered with 200.

`--reports` villagers register first (before the killer starts); then each reports a problem
(category, description, a photo, a pin, submit), `AT_ONCE` at a time, while the grid member
accepts some of the cases and resolves some of those. Meanwhile the killer sends SIGKILL to a
worker at seeded random moments (`--seed`, printed); the parent starts it again. The killer
keeps under the parent's rule (a worker that ends `DEATHS` times within `WITHIN` seconds
stops the command): it kills a worker only when every worker serves again, and never one that
has died `DEATHS - 1` times within `WITHIN` seconds.

Each person's script goes on from what their chat shows: an answer is sent once, and the next
question must come, whether from the worker that got the answer or, after a kill, from the
one the emulator sent it to again. Nobody ever starts over. At the end, with the outbox
drained: every report confirmed to its villager is exactly one case, with the villager's own
description, photo and pin; no other case; each case's card reached the grid member; no
outbox row pending or failed, none received twice. Counted, not a failure: a question asked
twice in a villager's chat, when a worker was killed after asking it and before answering
Telegram 200 (the update then comes again and is handled again from the same step; direct
replies are at least once, the outbox's notices exactly once).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import secrets
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import processes
from bench.common import arguments, fresh_database, machine, table
from bench.processes import Running, free_port
from bot.emulator import BotAPIEmulator, said
from bot.sandbox import EXAMPLE_DIRECTORY, Phone

#: Starting imports aiogram: seconds on a busy machine.
STARTED_WITHIN = 120.0
#: One answer's next question, kills, restarts and redeliveries included.
STEP = 90.0
#: The outbox drained after the last report: the grid member's chat gets each case's card
#: (one message, its photo with the card as caption) at one a second, as Telegram allows a
#: private chat, besides the replies and notices of the grid member's own work.
DRAINED_WITHIN = 900.0
WORKERS = 2
#: The parent's rule (bot.workers): the killer stays under it.
DEATHS = 5
WITHIN = 30.0
#: Wall time a report takes among the others, with kills, on 2 busy cores: the killer
#: spreads its kills over the reports' time with it.
SECONDS_PER_REPORT = 0.8
#: Villagers reporting at once.
AT_ONCE = 12
#: How often the killer looks for a worker handling an update.
LOOK_EVERY = 0.003
LIN = 9101
FIRST_VILLAGER = 30_000
#: Zhengda village, where the villagers' pins go, each well apart from the others (more than
#: cases.SAME_PLACE_METRES, so no report is offered another's "me too").
LATITUDE, LONGITUDE = 30.0, 120.0
APART = 0.01  # degrees of latitude, about 1.1 km
SUBMITTED = "✅ 已提交。您的事项编号："
ACCEPT, ACCEPTED = "✅ 受理", "办理中：林秀英已受理"
RESOLVE, EVIDENCE, EVIDENCE_PHOTOS, RESOLVED = (
    "✔️ 办结", "请至少发送一张处理后的现场照片", "照片：1 张", "已办结"
)
WEBHOOK_UP = "receiving updates by webhook"


@dataclass
class Outcome:
    """What was tried and what was found."""

    seed: int
    reports: int
    kills: int = 0
    #: Kills that came while the worker handled an update.
    kills_handling: int = 0
    redeliveries: int = 0
    second_arrivals: int = 0
    confirmed: dict[int, str] = field(default_factory=dict)  # villager: case number
    accepted: set[str] = field(default_factory=set)
    resolved: set[str] = field(default_factory=set)
    cases_found: int = 0
    missing: list[str] = field(default_factory=list)  # confirmed, no case
    duplicate_cases: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)  # a case nobody was told of
    wrong: list[str] = field(default_factory=list)  # a case unlike what was sent
    pending: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)  # each failed row: what and why
    duplicated: int = 0  # notices received more than once
    cards_missing: list[str] = field(default_factory=list)
    repeated: list[tuple[int, str]] = field(default_factory=list)  # a question asked twice
    seconds: float = 0.0

    @property
    def problems(self) -> list[str]:
        found = []
        if len(self.confirmed) != self.reports:
            found.append(f"{self.reports - len(self.confirmed)} reports not confirmed")
        for name in ("missing", "duplicate_cases", "unconfirmed", "wrong", "cards_missing",
                     "failures"):
            if getattr(self, name):
                found.append(f"{name}: {getattr(self, name)}")
        for name in ("pending", "failed", "duplicated"):
            if getattr(self, name):
                found.append(f"{name}: {getattr(self, name)}")
        return found

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {self.reports} reports, {self.kills} kills "
            f"({self.kills_handling} while handling an update), "
            f"{self.redeliveries} redeliveries ({self.second_arrivals} arrived again after "
            f"being handled); cases expected {len(self.confirmed)}, found {self.cases_found} "
            f"({len(self.accepted)} accepted, {len(self.resolved)} resolved under kills); "
            f"notices pending {self.pending}, failed {self.failed}, duplicated "
            f"{self.duplicated}; questions asked twice {len(self.repeated)}; "
            f"{self.seconds:.0f} s"
        )


def environment(emulator: BotAPIEmulator, database_url: str, redis_url: str | None,
                folder: Path) -> dict[str, str]:
    """The production settings (`.env.example`), on a free port of loopback."""
    port = free_port()
    settings = {
        "BOT_TOKEN": emulator.token,
        "TELEGRAM_API_URL": emulator.base_url,
        "DATABASE_URL": database_url,
        "WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram/{secrets.token_urlsafe(12)}",
        "WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "WEB_LISTEN": f"127.0.0.1:{port}",
        "WEB_URL": f"http://127.0.0.1:{port}",
        "WEB_FILES": str(folder / "files"),
        "INSTANCE": "kills",
        "QUIET_HOURS": "off",
    }
    if redis_url:
        settings["REDIS_URL"] = redis_url
    return processes.environment(settings)


class Bot:
    """`run --workers N` (a `Running` process), and what the killer reads of its log."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.running: Running | None = None

    async def start(self, workers: int) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", "--workers", str(workers),
            env=self.env, cwd=self.cwd,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        self.running = Running(process)
        await self.until(lambda: self.serving() == workers, "the workers to start")

    @property
    def lines(self) -> list[str]:
        return self.running.lines if self.running is not None else []

    @property
    def log(self) -> str:
        return "".join(self.lines)

    async def until(self, condition: Callable[[], bool], what: str,
                    within: float = STARTED_WITHIN) -> None:
        deadline = time.monotonic() + within
        while not condition():
            assert self.running is not None
            if self.running.process.returncode is not None:
                raise RuntimeError(f"the command ended, waiting for {what}:\n{self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waiting for {what}:\n{self.log[-5000:]}")
            await asyncio.sleep(0.05)

    def started(self) -> int:
        return sum("started (pid" in line for line in self.lines)

    def serving(self) -> int:
        return sum(WEBHOOK_UP in line for line in self.lines)

    @property
    def port(self) -> int:
        """Where the workers take the webhook's POSTs."""
        return int(self.env["WEB_LISTEN"].rsplit(":", 1)[1])

    def workers(self) -> dict[int, int]:
        """Each worker's latest pid, by its number."""
        found: dict[int, int] = {}
        for number, pid in re.findall(r"worker (\d+) started \(pid (\d+),", self.log):
            found[int(number)] = int(pid)
        return found

    async def stop(self) -> int:
        if self.running is None:
            return 0
        process = self.running.process
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STARTED_WITHIN)
            except TimeoutError:
                for pid in self.workers().values():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                process.kill()
        return await self.running.stopped()


def handling(workers: dict[int, int], port: int) -> set[int]:
    """The workers (by number) holding a connection on `port` open. The emulator closes each
    webhook POST's connection once answered (`webhook_keep_alive` off), so these are the
    workers handling an update now. Linux's /proc: the established connections on the port,
    and which process has each one's socket open."""
    sockets: set[str] = set()
    for connections in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(connections).read_text().splitlines()[1:]:
                columns = line.split()
                established = columns[3] == "01"
                if established and int(columns[1].rsplit(":", 1)[1], 16) == port:
                    sockets.add(f"socket:[{columns[9]}]")
    found: set[int] = set()
    for number, pid in workers.items():
        with contextlib.suppress(OSError), os.scandir(f"/proc/{pid}/fd") as descriptors:
            for descriptor in descriptors:
                with contextlib.suppress(OSError):
                    if os.readlink(descriptor.path) in sockets:
                        found.add(number)
                        break
    return found


async def busy_worker(bot: Bot, allowed: list[int], within: float,
                      rng: random.Random) -> tuple[int, bool]:
    """One of the `allowed` workers while it handles an update, waiting at most `within`
    seconds for one: the kill then cuts that update short (an idle moment would test
    nothing). After that, any of them; the flag says which it was."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if found := sorted(handling(bot.workers(), bot.port) & set(allowed)):
            return rng.choice(found), True
        await asyncio.sleep(LOOK_EVERY)
    return rng.choice(allowed), False


async def killer(bot: Bot, kills: int, gap: float,
                 rng: random.Random, done: asyncio.Event, outcome: Outcome,
                 echo: Callable[[str], None]) -> None:
    """SIGKILL to a worker `kills` times at random busy moments, each once every worker
    serves again, staying under the parent's rule of DEATHS deaths within WITHIN seconds."""
    deaths: dict[int, list[float]] = {}
    while outcome.kills < kills and not done.is_set():
        await asyncio.sleep(rng.uniform(0.1, 2 * gap))
        await bot.until(lambda: bot.serving() == bot.started(), "a killed worker to serve")
        now = time.monotonic()
        recent = {
            # The parent counts a death when it sees it, a moment after the kill: a window
            # a few seconds longer than its own keeps the killer on the safe side.
            number: [t for t in deaths.get(number, []) if now - t < WITHIN + 5]
            for number in bot.workers()
        }
        allowed = sorted(n for n, times in recent.items() if len(times) < DEATHS - 1)
        if not allowed or done.is_set():
            continue
        number, handling_one = await busy_worker(bot, allowed, gap, rng)
        pid = bot.workers()[number]
        with contextlib.suppress(ProcessLookupError):  # ended by itself: the parent restarts it
            os.kill(pid, signal.SIGKILL)
        deaths[number] = [*recent[number], now]
        outcome.kills += 1
        outcome.kills_handling += handling_one
        echo(f"kill {outcome.kills}: worker {number} (pid {pid})"
             + (", handling an update" if handling_one else ", idle"))
        await bot.until(lambda n=number, p=pid: bot.workers()[n] != p, "the restart")


class Person(Phone):
    async def answer(
        self, act: Callable[[], object], question: str, within: float = STEP
    ) -> dict:
        """Do `act` once, then wait for the next question, however long a kill delays it."""
        result = act()
        if asyncio.iscoroutine(result):
            await result
        return await self.expect(question, timeout=within)


async def register(emulator: BotAPIEmulator, user_id: int, n: int) -> Person:
    person = Person(emulator, user_id, f"村民{n}", language="zh-hans")
    await person.answer(lambda: person.send("/start"), "您住在哪个村？")
    await person.answer(lambda: person.tap("正达村", timeout=STEP), "您家属于哪个网格？")
    await person.answer(lambda: person.tap("第一网格", timeout=STEP), "请告诉我您的姓名")
    await person.answer(lambda: person.send(f"村民{n}"), "分享手机号码")
    await person.answer(
        lambda: person.share_contact(f"+86 139 {n:04d} {n:04d}"), "您已登记为正达村村民。"
    )
    return person


def description(n: int) -> str:
    return f"第{n}号路灯不亮，已经一周了"


def pin(n: int) -> tuple[float, float]:
    return LATITUDE + n * APART, LONGITUDE


async def report(person: Person, n: int) -> str:
    """The whole report, each step once; the case number the villager was given."""
    await person.answer(lambda: person.press("📝 我要反映问题"), "请点一个类别")
    await person.answer(lambda: person.tap("环境卫生", timeout=STEP), "环境卫生：具体是哪一类？")
    await person.answer(lambda: person.tap("卫生清理", timeout=STEP), "请描述问题")
    await person.answer(lambda: person.send(description(n)), "照片能帮助工作人员了解情况")
    await person.answer(lambda: person.user.send_photo(), "已收到照片 1 张")
    await person.answer(lambda: person.tap("✅ 完成", timeout=STEP), "不需要位置？点“跳过”。")
    await person.answer(lambda: person.user.send_location(*pin(n)), "请核对您的反映内容")
    done = await person.answer(lambda: person.tap("✅ 提交", timeout=STEP), SUBMITTED)
    return str(done["text"]).partition(SUBMITTED)[2].split()[0]


async def casework(emulator: BotAPIEmulator, lin: Person, work: asyncio.Queue[str | None],
                   rng: random.Random, outcome: Outcome) -> None:
    """The grid member: accepts about a third of the cases, resolves about half of those.
    The accept is answered at once; the card's edit comes through the outbox, behind the
    chat's other cards (one message a second to a private chat, as Telegram allows): each
    resolution waits for its card's edit, and they are done one at a time."""
    talking = asyncio.Lock()
    resolving: list[asyncio.Task[None]] = []

    async def resolve(number: str, card: dict) -> None:
        current = await emulator.wait_for(
            LIN, lambda m: m["message_id"] == card["message_id"]
            and ACCEPTED in said(m), timeout=DRAINED_WITHIN,
        )
        async with talking:
            await lin.answer(lambda: lin.user.tap(current, RESOLVE), EVIDENCE)
            await lin.answer(lambda: lin.user.send_photo(), EVIDENCE_PHOTOS)
            # "Resolved" comes through the outbox too, behind the chat's other cards.
            await lin.answer(lambda: lin.send("路灯已修好"), RESOLVED, within=DRAINED_WITHIN)
        outcome.resolved.add(number)

    while (number := await work.get()) is not None:
        if rng.random() >= 1 / 3:
            continue
        card = await emulator.wait_for(LIN, number, timeout=DRAINED_WITHIN, after=0)
        async with talking:
            query = await lin.user.tap(card, ACCEPT)
            await emulator.wait_answer(query, timeout=STEP)
        outcome.accepted.add(number)
        if rng.random() < 0.5:
            resolving.append(asyncio.create_task(resolve(number, card)))
    await asyncio.gather(*resolving)


async def check(url: str, outcome: Outcome, sent: Counter[tuple[int, str]]) -> None:
    """The database against what the villagers were told and what the emulator received."""
    from bot.models import Case, CaseStatus, Delivery

    cases = await Case.all().prefetch_related("reporter")
    by_number = {case.number: case for case in cases}
    outcome.cases_found = len(cases)
    told = {number: n for n, number in outcome.confirmed.items()}
    per_reporter = Counter(case.reporter_id for case in cases)  # type: ignore[attr-defined]
    outcome.duplicate_cases = sorted(
        case.number for case in cases
        if per_reporter[case.reporter_id] > 1  # type: ignore[attr-defined]
    )
    outcome.missing = sorted(number for number in told if number not in by_number)
    outcome.unconfirmed = sorted(number for number in by_number if number not in told)
    for number, n in told.items():
        case = by_number.get(number)
        if case is None:
            continue
        if (case.description, len(case.photos), (case.latitude, case.longitude)) != (
            description(n - FIRST_VILLAGER), 1, pin(n - FIRST_VILLAGER)
        ):
            outcome.wrong.append(number)
    for number in sorted(outcome.accepted):
        case = by_number.get(number)
        wanted = CaseStatus.RESOLVED if number in outcome.resolved else CaseStatus.ACCEPTED
        if case is not None and case.status != wanted:
            outcome.wrong.append(f"{number} {case.status}, not {wanted}")
    rows = await Delivery.all()
    outcome.pending = sum(row.sent_at is None and row.failed_at is None for row in rows)
    outcome.failed = sum(row.failed_at is not None for row in rows)
    outcome.failures = [
        f"{row.kind} to {row.chat_id} (case {row.case_id}): {row.error}"  # type: ignore[attr-defined]
        for row in rows if row.failed_at is not None
    ]
    texts = [row for row in rows if row.kind == "text" and row.sent_at is not None]
    outcome.duplicated = sum(
        max(0, sent[(row.chat_id, row.payload["text"])] - 1) for row in texts
    )
    cards = {row.case_id for row in texts if row.card and row.chat_id == LIN}  # type: ignore[attr-defined]
    outcome.cards_missing = sorted(
        case.number for case in cases if case.id not in cards
    )


async def invitation(official: str) -> str:
    """The /start payload of a one-time invitation, as `villagebot invite` makes it."""
    from bot.invitations import invite
    from bot.models import Official

    return (await invite(await Official.get(code=official), ttl_days=1)).token


async def drained(url: str) -> None:
    from bot.models import Delivery

    deadline = time.monotonic() + DRAINED_WITHIN
    while await Delivery.filter(sent_at=None, failed_at=None).exists():
        if time.monotonic() > deadline:
            return  # counted as pending
        await asyncio.sleep(0.5)


def repeated_questions(emulator: BotAPIEmulator, chats: list[int],
                       new: dict[int, list[str]]) -> list[tuple[int, str]]:
    """A bot message sent twice in one chat: an update handled twice."""
    found = []
    for chat in chats:
        for text, times in Counter(new.get(chat, [])).items():
            if times > 1 and text:  # a photo without a caption says nothing
                found.append((chat, text))
    return found


async def run(database_url: str, *, reports: int, kills: int, seed: int,
              redis_url: str | None = None, echo: Callable[[str], None] = print) -> Outcome:
    """The whole scenario on `database_url` (migrated or not); what it found. Kills come
    about every `gap` seconds after the last killed worker serves again, spread over the
    time the reports take on this machine."""
    gap = max(0.5, reports * SECONDS_PER_REPORT / kills)
    from bot import db

    began = time.monotonic()
    say = echo

    def echo(line: str) -> None:
        say(f"[{time.monotonic() - began:5.1f} s] {line}")

    rng = random.Random(seed)
    outcome = Outcome(seed=seed, reports=reports)
    echo(f"seed {seed}: {reports} reports, {kills} kills, --workers {WORKERS}")
    if redis_url:
        from redis.asyncio import Redis

        async with Redis.from_url(redis_url) as redis:
            await redis.flushdb()
    with tempfile.TemporaryDirectory(prefix="villagebot-kills-") as folder:
        emulator = BotAPIEmulator(webhook_http=True)
        emulator.webhook_keep_alive = False  # a connection the bot holds is an update it handles
        async with emulator:
            new: dict[int, list[str]] = {}
            sent: Counter[tuple[int, str]] = Counter()

            def received(chat_id: int, message: dict, edited: bool) -> None:
                if not edited:
                    text = said(message)
                    new.setdefault(chat_id, []).append(text)
                    sent[(chat_id, text)] += 1

            emulator.on_bot_message(received)
            for chat_id in sorted(set(re.findall(
                r"chat_id: (-\d+)", EXAMPLE_DIRECTORY.read_text()
            ))):
                emulator.group(int(chat_id), f"group {chat_id}")  # the township's groups
            env = environment(emulator, database_url, redis_url, Path(folder))
            # The command migrates and imports the township once, before its workers start;
            # each worker sets the webhook at start if Telegram has none.
            env["DIRECTORY_FILE"] = str(EXAMPLE_DIRECTORY)
            bot = Bot(env, Path(folder))
            try:
                await bot.start(WORKERS)
                echo(f"migrated, township imported, {WORKERS} workers serving")
                await db.start(database_url)
                link = await invitation("lin-xiuying")
                lin = Person(emulator, LIN, "林秀英", language="zh-hans")
                await lin.answer(lambda: lin.send("/start " + link),
                                 "您的 Telegram 账号已绑定")
                ids = [FIRST_VILLAGER + n for n in range(1, reports + 1)]
                gate = asyncio.Semaphore(AT_ONCE)

                async def registered(user_id: int) -> Person:
                    async with gate:
                        return await register(emulator, user_id, user_id - FIRST_VILLAGER)

                people = await asyncio.gather(*(registered(i) for i in ids))
                echo(f"{reports} villagers registered; reporting under kills")

                done = asyncio.Event()
                work: asyncio.Queue[str | None] = asyncio.Queue()

                async def reported(person: Person) -> None:
                    async with gate:
                        number = await report(person, person.chat_id - FIRST_VILLAGER)
                    outcome.confirmed[person.chat_id] = number
                    work.put_nowait(number)

                killing = asyncio.create_task(killer(
                    bot, kills, gap, rng, done, outcome, echo
                ))
                official = asyncio.create_task(
                    casework(emulator, lin, work, random.Random(seed + 1), outcome)
                )
                try:
                    await asyncio.gather(*(reported(p) for p in people))
                    work.put_nowait(None)
                    await official
                finally:
                    done.set()
                    killing.cancel()
                    official.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await killing
                    with contextlib.suppress(asyncio.CancelledError):
                        await official
                await bot.until(lambda: bot.serving() == bot.started(), "the last restart")
                await drained(database_url)
                await asyncio.sleep(1.0)  # time for a duplicate to show, were there one
                await check(database_url, outcome, sent)
                # The grid member's prompts repeat from case to case: the villagers' chats.
                outcome.repeated = repeated_questions(emulator, ids, new)
                outcome.redeliveries = emulator.stats.webhook_failures
            finally:
                await db.stop()
                await bot.stop()
            outcome.second_arrivals = bot.log.count("arrived again; handled already")
    outcome.seconds = time.monotonic() - began
    echo(outcome.summary())
    for problem in outcome.problems:
        echo(f"PROBLEM: {problem}")
    return outcome


async def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("--reports", type=int, default=200)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--redis", default=None, help="REDIS_URL for conversations (flushed)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    async with fresh_database(args.database) as url:
        outcome = await run(url, reports=args.reports, kills=args.kills, seed=seed,
                            redis_url=args.redis, echo=lambda line: print(line, flush=True))
    print(machine())
    print(table(
        f"kill -9 during {outcome.reports} reports ({args.database}"
        f"{' + Redis' if args.redis else ''}, seed {seed})",
        ["reports confirmed", "kills", "redeliveries", "cases expected / found",
         "notices pending / failed / duplicated", "questions asked twice"],
        [[len(outcome.confirmed), outcome.kills, outcome.redeliveries,
          f"{len(outcome.confirmed)} / {outcome.cases_found}",
          f"{outcome.pending} / {outcome.failed} / {outcome.duplicated}",
          len(outcome.repeated)]],
    ))
    sys.exit(1 if outcome.problems else 0)


if __name__ == "__main__":
    asyncio.run(main())
