"""Peak resident memory of the bot with `--drafts` report drafts open (10,000 by default).

`python -m bench.memory [--database sqlite|postgres] [--drafts 10000] [--at-once 200] [--redis]`

Two processes, so that only the bot is measured. The bot runs alone in a child process: the real
`Villagebot` (aiogram dispatcher, aiohttp session, database, conversation storage), started as
the sandbox starts it (example directory, scheduler off), long polling the Bot API emulator over
loopback. This process holds the emulator, which keeps every chat's messages, and the villagers
who talk to the bot; none of that is in the figures. The child imports only the bot (`serve`),
and its memory is read from /proc/<pid>/status: VmRSS at each point, and VmHWM, the high-water
mark that getrusage reports as ru_maxrss, for the peak.

1. At start: the bot has migrated a fresh database, loaded the demo township, and answered
   nothing yet.
2. Registered: `--drafts` villagers are written to the database by this process, spread over
   the township's grids. Registration is not what is measured, and through the bot it would
   double the run; the bot has not heard from them yet.
3. Drafts open: each villager goes through the report flow to the photos step, where the draft
   then waits: /report, a heading, a category, a description typed (4 updates through the bot).
   `--at-once` villagers talk at a time, each waiting for the bot's answer before the next step,
   as a person would. The emulator keeps no sending limits and the bot is told so
   (MESSAGES_PER_SECOND), so 40,000 updates take minutes, not Telegram's 30 replies a second.

Per draft: (RSS with the drafts open - RSS registered) / drafts, so everything the bot keeps for
a person with a draft open. `--redis` runs it all a second time on a new database with
REDIS_URL set to `BENCH_REDIS_URL` (default redis://127.0.0.1:6379/14), so the conversations live
in Redis; that Redis database is flushed before and after. It doubles the run time.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import UNPACED, arguments, fresh_database, machine, quiet, table
from bot import db
from bot.models import Account, Grid, Villager

if TYPE_CHECKING:
    from bot.emulator import UserHandle

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
ROOT = Path(__file__).resolve().parent.parent
DIRECTORY = ROOT / "examples" / "directory.yaml"
FIRST_VILLAGER = 100_000
TIMEOUT = 120.0
#: Time for answers still in flight (callback answers, edits) before memory is read.
SETTLE = 1.0


# ---- the bot process ----------------------------------------------------------------------


def serve() -> None:
    """The bot process: settings as JSON in argv[1]; "ready" on stdout, stops on a stdin line.

    Imports nothing the bot does not (the emulator and the Redis client stay in the parent).
    """
    asyncio.run(_serve(json.loads(sys.argv[1])))


async def _serve(overrides: dict[str, Any]) -> None:
    from bot.app import Villagebot
    from bot.config import load_settings

    quiet()
    overrides.setdefault("web_listen", "")  # the bot alone, and no port shared with anyone
    app = await Villagebot.start(load_settings(**overrides))
    polling = asyncio.create_task(app.poll())
    commands = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(commands), sys.stdin
    )
    print("ready", flush=True)
    await commands.readline()
    await app.stop()
    await polling
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)


@dataclass
class Memory:
    """KiB, as /proc/<pid>/status gives them."""

    rss: int
    peak: int


class BotProcess:
    """The bot in a child process: started, measured, stopped."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, **settings: object) -> BotProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from bench.memory import serve; serve()", json.dumps(settings),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        )
        bot = cls(process)
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await bot.stop()
            raise RuntimeError(f"the bot did not start (exit status {process.returncode})")
        return bot

    def memory(self) -> Memory:
        found = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
        return Memory(rss=found["VmRSS"], peak=found["VmHWM"])

    async def settled(self) -> Memory:
        await asyncio.sleep(SETTLE)
        return self.memory()

    async def stop(self) -> int | None:
        """Stop the bot; its ru_maxrss in KiB, as it reported it on the way out."""
        process = self.process
        if process.returncode is None and process.stdin is not None:
            process.stdin.write(b"stop\n")
            await process.stdin.drain()
        try:
            out, _ = await asyncio.wait_for(process.communicate(), TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            return None
        last = out.split()[-1:] if out else []
        return int(last[0]) if last and last[0].isdigit() else None


# ---- the villagers ------------------------------------------------------------------------


async def register(database_url: str, count: int) -> None:
    """Villagers straight into the database, round-robin over the township's grids."""
    await db.start(database_url, migrate=False)
    try:
        grids = await Grid.all().prefetch_related("village").order_by("id")
        ids = range(FIRST_VILLAGER, FIRST_VILLAGER + count)
        await Account.bulk_create(
            [Account(id=i, first_name=f"村民{i}", language="zh-hans") for i in ids],
            batch_size=500,
        )
        villagers = []
        for n, i in enumerate(ids):
            grid = grids[n % len(grids)]
            villagers.append(Villager(
                account_id=i, township_id=grid.village.township_id,  # type: ignore[attr-defined]
                village_id=grid.village.id, grid_id=grid.id, name=f"村民{i}",
            ))
        await Villager.bulk_create(villagers, batch_size=500)
    finally:
        await db.stop()


async def each(
    users: Iterable[UserHandle], act: Callable[[UserHandle], Awaitable[None]], at_once: int
) -> float:
    """`act` for every user, `at_once` at a time; the seconds it took."""
    queue = iter(users)

    async def worker() -> None:
        for user in queue:
            await act(user)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(at_once)))
    return time.perf_counter() - started


# ---- one run ------------------------------------------------------------------------------


@dataclass
class Figures:
    start: Memory
    registered: Memory
    drafts_open: Memory
    drafts: int
    at_once: int
    seconds: float
    #: What the bot reported on its way out, beside VmHWM read with the drafts open.
    ru_maxrss: int | None

    @property
    def per_draft(self) -> float:
        """KiB."""
        return (self.drafts_open.rss - self.registered.rss) / self.drafts


async def run(database: str, drafts: int, at_once: int, redis_url: str | None) -> Figures:
    from bench.conversation import Inbox, open_draft
    from bot.emulator import BotAPIEmulator

    async with fresh_database(database) as url, BotAPIEmulator() as emulator:
        inbox = Inbox(emulator)
        bot = await BotProcess.start(
            bot_token=emulator.token, telegram_api_url=emulator.base_url, database_url=url,
            directory_file=str(DIRECTORY), scheduler=False, redis_url=redis_url,
            messages_per_second=UNPACED,
        )
        try:
            start = await bot.settled()
            await register(url, drafts)
            registered = await bot.settled()
            users = [
                emulator.user(i, f"村民{i}", language_code="zh-hans")
                for i in range(FIRST_VILLAGER, FIRST_VILLAGER + drafts)
            ]
            seconds = await each(users, lambda user: open_draft(inbox, user), at_once)
            drafts_open = await bot.settled()
        finally:
            ru_maxrss = await bot.stop()
        return Figures(start, registered, drafts_open, drafts, at_once, seconds, ru_maxrss)


async def redis_answers(url: str) -> bool:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(url, socket_connect_timeout=2)
    try:
        return bool(await client.ping())
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


async def flush(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def row(storage: str, figures: Figures) -> list[object]:
    updates = figures.drafts * 4
    return [
        storage, _mib(figures.start.rss), _mib(figures.registered.rss),
        _mib(figures.drafts_open.rss), _mib(figures.drafts_open.peak),
        f"{figures.per_draft:.2f} KiB", figures.at_once,
        f"{figures.seconds:.0f} s ({updates / figures.seconds:.0f} updates/s)",
    ]


async def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--drafts", type=int, default=10_000)
    parser.add_argument("--at-once", type=int, default=200, help="villagers talking at a time")
    parser.add_argument(
        "--redis", action="store_true",
        help=f"again with the conversations in Redis ({REDIS_URL}; doubles the time)",
    )
    options = parser.parse_args()
    quiet()

    runs = [(f"database ({options.database})", await run(
        options.database, options.drafts, options.at_once, None
    ))]
    notes = []
    if options.redis and await redis_answers(REDIS_URL):
        await flush(REDIS_URL)
        try:
            figures = await run(
                options.database, options.drafts, options.at_once, REDIS_URL
            )
        finally:
            await flush(REDIS_URL)
        runs.append((f"Redis ({REDIS_URL})", figures))
    elif options.redis:
        notes.append(f"Redis at {REDIS_URL} does not answer: no Redis run.")
    for storage, figures in runs:
        if figures.ru_maxrss is not None and figures.ru_maxrss > figures.drafts_open.peak + 1024:
            notes.append(f"{storage}: ru_maxrss on the way out, {_mib(figures.ru_maxrss)}, "
                         "is above VmHWM with the drafts open: stopping took more.")

    print(machine())
    print(f"database: {options.database}; {options.drafts} villagers registered, then each opens "
          "a draft through the bot and leaves it at the photos step (category chosen, "
          "description typed)\n")
    print(table(
        f"Bot process memory with {options.drafts} report drafts open",
        ["conversations in", "RSS at start", "registered", "drafts open", "peak (VmHWM)",
         "per draft", "at once", "opening the drafts"],
        [row(storage, figures) for storage, figures in runs],
    ))
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    asyncio.run(main())
