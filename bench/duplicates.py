"""Every update delivered twice, to two processes: no duplicate case, event, photo or notice.

`python -m bench.duplicates [--database sqlite|postgres] [--redis URL] [--updates 1000]`

Two separate `villagebot run` processes in webhook mode (each its own WEB_LISTEN port and
INSTANCE name, one database between them; Redis too when `--redis` names one) serve the Bot
API emulator's bot. Nothing reaches them from the emulator's own webhook queue: every update is
made by the emulator but POSTed by this script, with the secret header, to both processes, the
two deliveries at once (in a random order, the second now and then a few milliseconds later),
as Telegram could when a proxy before several processes retries. A person's next update goes
out once both deliveries of the previous one are answered and the bot's reply is on screen.

Villagers register (/start, village, grid, name, contact) and report (category, description,
a photo, a pin, submit), several at a time; the grid member accepts each case from its card
and writes a progress note. Then, from the database and the emulator: one case per submitted
report, each case's events and photos once, each villager and each answer, card and notice once
(outbox rows and the chats as Telegram shows them), and each update handled by one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import arguments, fresh_database, machine, table
from bench.processes import (
    Command,
    Instance,
    environment,
    start_instances,
    stop_instances,
    webhook_settings,
)
from bot.emulator import BotAPIEmulator, buttons, said
from bot.sandbox import EXAMPLE_DIRECTORY, Phone

#: The grid member of Zhengda grid 1, where the villagers here live.
LIN = 9101
FIRST_VILLAGER = 300_000
#: Updates of one villager: five to register, eight to report.
VILLAGER_UPDATES = 13
#: The grid member's per case: accept, the note button, the note.
CASE_UPDATES = 3
#: Villagers talking at once.
AT_ONCE = 6
#: One step of a conversation: both deliveries handled and the reply on screen.
STEP = 60.0
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: The second delivery's head start for the first, seconds; mostly none.
DELAYS = (0.0, 0.0, 0.0, 0.005, 0.02, 0.05)

#: A villager's conversation: what the bot says at each step, once each.
ANSWERS = (
    "您住在哪个村？", "您家属于哪个网格？", "请告诉我您的姓名", "分享手机号码",
    "您已登记为正达村村民。", "您要反映哪方面的问题？请点一个类别。", "环境卫生：具体是哪一类？",
    "请描述问题", "照片能帮助工作人员了解情况", "已收到照片 1 张", "不需要位置？点“跳过”。",
    "请核对您的反映内容", "✅ 已提交。您的事项编号：",
)
#: What the villager hears of the casework, once each.
NOTICES = ("已由林秀英（正达村第一网格）受理", "明天一早安排保洁车")


@dataclass
class Deliveries:
    """Posts every update to each process; what came of it."""

    urls: list[str]
    secret: str
    rng: random.Random
    session: aiohttp.ClientSession
    updates: int = 0
    posts: int = 0
    #: Posts answered other than 200 (then posted again, as Telegram would).
    refused: Counter[int] = field(default_factory=Counter)

    async def _post(self, url: str, body: bytes, delay: float) -> None:
        await asyncio.sleep(delay)
        for _ in range(5):
            self.posts += 1
            async with self.session.post(
                url, data=body, headers={
                    "Content-Type": "application/json", SECRET_HEADER: self.secret,
                }, timeout=aiohttp.ClientTimeout(total=STEP),
            ) as response:
                if response.status == 200:
                    return
                self.refused[response.status] += 1
            await asyncio.sleep(0.5)
        raise AssertionError(f"{url}: never answered 200")

    async def __call__(self, update: dict) -> None:
        body = json.dumps(update, ensure_ascii=False).encode()
        first, second = self.rng.sample(self.urls, 2)
        self.updates += 1
        await asyncio.gather(
            self._post(first, body, 0.0), self._post(second, body, self.rng.choice(DELAYS))
        )


@dataclass
class Outcome:
    """What was sent, and the duplicates of each kind found afterwards."""

    villagers: int
    updates: int
    posts: int
    refused: Counter[int]
    cases_expected: int
    cases_found: int
    duplicates: dict[str, int]
    #: Each kind's first few duplicates, to say what was doubled.
    examples: dict[str, list[str]]
    #: Migrating, importing and starting both processes; then the conversations.
    starting: float
    talking: float

    @property
    def clean(self) -> bool:
        return self.cases_found == self.cases_expected and not any(self.duplicates.values())

    def rows(self) -> list[list[object]]:
        rows: list[list[object]] = [
            ["villagers (registered, then one report each)", self.villagers],
            ["updates sent", self.updates],
            ["deliveries (POSTs, each update to both processes)", self.posts],
            ["deliveries answered other than 200", sum(self.refused.values())],
            ["cases expected / found", f"{self.cases_expected} / {self.cases_found}"],
        ]
        rows += [[f"duplicate {kind}", count] for kind, count in self.duplicates.items()]
        rows += [
            ["setting up and starting both processes", f"{self.starting:.1f} s"],
            ["the conversations, every delivery answered",
             f"{self.talking:.1f} s ({self.updates / self.talking:.1f} updates/s)"],
        ]
        return rows


def villagers_for(updates: int) -> int:
    """Villagers enough for `updates` updates (the grid member's joining one of them)."""
    return max(1, -(-(updates - 1) // (VILLAGER_UPDATES + CASE_UPDATES)))


@contextlib.asynccontextmanager
async def two_processes(
    emulator: BotAPIEmulator, database_url: str, redis_url: str | None, folder: Path
) -> AsyncIterator[tuple[Command, list[Instance], str]]:
    """The township set up as the README does and two `villagebot run` of their own: the
    command to run more, the two, and the grid member's invitation. Both are stopped on the
    way out."""
    settings = webhook_settings(
        token=emulator.token, api_url=emulator.base_url, database_url=database_url,
        folder=folder, redis_url=redis_url,
    )
    setup = Command(environment(settings), folder)
    await setup("migrate")
    await setup("directory", "import", str(EXAMPLE_DIRECTORY))
    link = await setup("invite", "lin-xiuying")
    both = await start_instances(2, settings, folder)
    try:
        yield setup, both, link.strip()
    finally:
        await stop_instances(both)


async def villager(
    emulator: BotAPIEmulator, deliver: Callable[[dict], Awaitable[None]], index: int,
    cases: asyncio.Queue[str],
) -> None:
    """One villager registers through the bot and reports one problem, with a photo and a pin
    (apart from the others' pins: no "me too" offer). The case's number goes to `cases`."""
    name = f"村民{index}"
    phone = Phone(emulator, FIRST_VILLAGER + index, name, language="zh-hans", deliver=deliver)
    await phone.send("/start")
    await phone.expect("您住在哪个村？", timeout=STEP)
    await phone.tap("正达村", timeout=STEP)
    await phone.expect("您家属于哪个网格？", timeout=STEP)
    await phone.tap("第一网格", timeout=STEP)
    await phone.expect("请告诉我您的姓名", timeout=STEP)
    await phone.send(name)
    await phone.expect("分享手机号码", timeout=STEP)
    await phone.share_contact(phone.user.phone_number)
    await phone.expect("您已登记为正达村村民。", timeout=STEP)
    await phone.press("📝 我要反映问题")
    await phone.expect("您要反映哪方面的问题？请点一个类别。", timeout=STEP)
    await phone.tap("环境卫生", timeout=STEP)
    await phone.expect("环境卫生：具体是哪一类？", timeout=STEP)
    await phone.tap("卫生清理", timeout=STEP)
    await phone.expect("请描述问题", timeout=STEP)
    await phone.send(f"村口垃圾桶满了，三天没人清理（{index}）")
    await phone.expect("照片能帮助工作人员了解情况", timeout=STEP)
    await phone.send_photo()
    await phone.expect("已收到照片 1 张", timeout=STEP)
    await phone.tap("✅ 完成", timeout=STEP)
    await phone.expect("不需要位置？点“跳过”。", timeout=STEP)
    # About 550 m apart, well past the 300 m within which a case is offered to join.
    await phone.send_location(28.90 + index // 20 * 0.005, 118.80 + index % 20 * 0.006)
    await phone.expect("请核对您的反映内容", timeout=STEP)
    await phone.tap("✅ 提交", timeout=STEP)
    done = await phone.expect("✅ 已提交。您的事项编号：BL-", timeout=STEP)
    await cases.put(done["text"].partition("您的事项编号：")[2].split()[0])


async def grid_member(
    emulator: BotAPIEmulator, deliver: Callable[[dict], Awaitable[None]], link: str,
    cases: asyncio.Queue[str | None],
) -> list[str]:
    """林秀英 joins by her invitation, then accepts each case from its card and writes a
    progress note, until `cases` gives None; the cases she worked."""
    lin = Phone(emulator, LIN, "林秀英", language="zh-hans", deliver=deliver)
    await lin.send("/start " + link.partition("start=")[2])
    await lin.expect("您的 Telegram 账号已绑定", timeout=STEP)
    worked = []
    while (number := await cases.get()) is not None:
        card = await emulator.wait_for(
            LIN, lambda m, n=number: n in said(m) and "✅ 受理" in buttons(m),
            timeout=STEP,
        )
        await lin.tap("✅ 受理", on=card)
        taken = await emulator.wait_for(
            LIN, lambda m, n=number: n in said(m) and "💬 反馈进展" in buttons(m),
            timeout=STEP,
        )
        await lin.tap("💬 反馈进展", on=taken)
        await lin.expect("请写事项", timeout=STEP)
        await lin.send(f"明天一早安排保洁车（{number}）")
        await lin.expect("村民会收到通知", timeout=STEP)
        worked.append(number)
    return worked


def _text(message: dict) -> str:
    """Its text or caption; a photo by its file, a pin by its place (each case's are its own)."""
    if message.get("photo"):
        return f"[photo {message['photo'][-1]['file_unique_id']}] {message.get('caption') or ''}"
    if message.get("location"):
        return f"[location {message['location']['latitude']}, {message['location']['longitude']}]"
    return said(message)


async def examine(
    shown: dict[int, dict[int, list[str]]], database_url: str, villagers: int,
    numbers: list[str], logs: list[str],
) -> tuple[int, dict[str, int], dict[str, list[str]]]:
    """The cases found, and the duplicates of each kind, with examples."""
    from tortoise import Tortoise

    from bot import db
    from bot.models import Case, CaseEvent, Delivery, Villager

    found: dict[str, Counter[str]] = {}

    def doubled(kind: str, things: Counter[str]) -> None:
        found[kind] = Counter({k: n - 1 for k, n in things.items() if n > 1})

    await db.start(database_url)
    try:
        cases = await Case.all()
        doubled("cases (per reporter)", Counter(str(c.reporter_id) for c in cases))  # type: ignore[attr-defined]
        doubled("cases (per description)", Counter(c.description for c in cases))
        doubled("villagers", Counter(
            str(v.account_id) for v in await Villager.all()  # type: ignore[attr-defined]
        ))
        doubled("case events", Counter(
            f"{e.case_id} {e.action}" for e in await CaseEvent.all()  # type: ignore[attr-defined]
        ))
        # One photo each: any more is a photo counted twice.
        doubled("photos on a case", Counter({c.number: len(c.photos) for c in cases}))
        doubled("outbox rows", Counter(
            f"{d.chat_id} {d.case_id} {d.kind} "  # type: ignore[attr-defined]
            f"{json.dumps(d.payload, sort_keys=True, ensure_ascii=False)}"
            for d in await Delivery.filter(edit_of_id__isnull=True)
        ))
        case_count = len(cases)
    finally:
        await Tortoise.close_connections()

    # By chat, each message the bot sent with every text it had (edits move a conversation
    # on in place): a doubled answer is a second message with it.
    answers: Counter[str] = Counter()
    notices: Counter[str] = Counter()
    same: Counter[str] = Counter()
    for index in range(villagers):
        chat = FIRST_VILLAGER + index
        messages = shown.get(chat, {})
        for answer in ANSWERS:
            answers[f"{chat} {answer}"] += sum(
                any(answer in t for t in texts) for texts in messages.values()
            )
        for notice in NOTICES:
            notices[f"{chat} {notice}"] += sum(
                any(notice in t for t in texts) for texts in messages.values()
            )
        same += Counter(f"{chat} {texts[0][:40]}" for texts in messages.values())
    lin = shown.get(LIN, {})
    cards = Counter({
        n: sum(any(n in t and "反映人" in t for t in texts) for texts in lin.values())
        for n in numbers
    })
    same += Counter(
        f"{LIN} {texts[0][:40]}" for texts in lin.values() if not texts[0].startswith("请写事项")
    )
    handled = Counter(re.findall(r"aiogram\.event: Update id=(\d+) is handled\.", "".join(logs)))
    doubled("answers to a villager", answers)
    doubled("notices to a villager", notices)
    doubled("cards to the grid member", cards)
    doubled("identical messages in a chat", same)
    doubled("updates handled (by either process)", handled)
    expected = {**answers, **notices, **cards}
    missing = [k for k, n in expected.items() if n == 0]
    assert not missing, f"never received: {missing[:5]}"
    return (
        case_count,
        {kind: sum(c.values()) for kind, c in found.items()},
        {kind: [k for k, _ in c.most_common(3)] for kind, c in found.items() if c},
    )


async def run(
    database_url: str, redis_url: str | None, updates: int, *, seed: int = 14,
    folder: Path | None = None,
) -> Outcome:
    """The whole exercise on a migrated-or-empty database; what it found."""
    villagers = villagers_for(updates)
    if redis_url:
        from redis.asyncio import Redis

        async with Redis.from_url(redis_url) as redis:
            await redis.flushdb()
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="villagebot-")))
        timings = {"began": time.monotonic()}
        async with (
            BotAPIEmulator(webhook_http=True) as emulator,
            two_processes(emulator, database_url, redis_url, folder) as (setup, both, link),
            aiohttp.ClientSession() as session,
        ):
            shown: dict[int, dict[int, list[str]]] = {}
            emulator.on_bot_message(lambda chat, message, edited: shown.setdefault(
                chat, {}).setdefault(message["message_id"], []).append(_text(message)))
            deliver = Deliveries(
                [instance.url for instance in both], setup.env["WEBHOOK_SECRET"],
                random.Random(seed), session,
            )
            timings["serving"] = time.monotonic()
            numbers: asyncio.Queue[str | None] = asyncio.Queue()
            official = asyncio.create_task(grid_member(emulator, deliver, link, numbers))
            waiting = list(range(villagers))

            async def talker() -> None:
                while waiting:
                    await villager(emulator, deliver, waiting.pop(0), numbers)  # type: ignore[arg-type]

            await asyncio.gather(*(talker() for _ in range(min(AT_ONCE, villagers))))
            await numbers.put(None)
            worked = await official
            timings["talked"] = time.monotonic()
            await asyncio.sleep(2.0)  # time for a late duplicate to show, were there one
            assert emulator.stats.updates_enqueued == 0, "only this script's POSTs reach the bot"
            logs = [instance.log for instance in both]
            for log in logs:
                assert "Traceback" not in log, log
            cases_found, duplicates, examples = await examine(
                shown, database_url, villagers, worked, logs
            )
    return Outcome(
        villagers, deliver.updates, deliver.posts, deliver.refused, villagers, cases_found,
        duplicates, examples, timings["serving"] - timings["began"],
        timings["talked"] - timings["serving"],
    )


async def main() -> None:
    parser = arguments(__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--redis", default=None, help="REDIS_URL for both processes (flushed)")
    options = parser.parse_args()
    async with fresh_database(options.database) as url:
        outcome = await run(url, options.redis, options.updates)
    print(machine())
    print(f"database: {options.database}{', Redis' if options.redis else ', no Redis'}; "
          f"two `villagebot run` processes, every update POSTed to both\n")
    print(table("Every update delivered twice, to two processes", ["", "figure"],
                outcome.rows()))
    for kind, keys in outcome.examples.items():
        print(f"  {kind}, e.g.: {keys}")
    print(f"\n{'no duplicates' if outcome.clean else 'DUPLICATES FOUND'}")


if __name__ == "__main__":
    asyncio.run(main())
