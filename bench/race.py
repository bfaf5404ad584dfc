"""Every official of a unit taps Accept on the same card at once, through two processes:
does each case get exactly one assignee?

`python -m bench.race [--database sqlite|postgres] [--officials 100] [--cases 20]`

A township as many have it: one village committee (一村两委) whose officials all sit in the
committee's group chat, bound in the directory by their Telegram ids, where the bot posts each
new case's card. Two separate `villagebot run` processes serve the one webhook path, each on
its own port and INSTANCE, sharing the database (and Redis with `--redis`), as behind a
reverse proxy (`bench/processes.py`). Telegram is the emulator on loopback.

First every official and the villager open the bot (/start, POSTed alternately to the two
processes). Then the villager's cases are reported with the function the bot's Submit calls,
in this process, against the same database; the processes' couriers post the cards to the
group. Then, one card after another, every official taps the card's Accept: the taps' updates
are built first (each official sees the card with its buttons), then all POSTed at once,
alternating between the two processes, each answered once handled.

Found, per case: assignees and accept events in the database (one each is right), the taps
answered (answerCallbackQuery) and how: the winner's confirmation, the others an alert naming
the winner; what the group's card shows once edited (one acceptor, no buttons); which
officials got the private copy to work on (the winner alone). Exit status 1 when any case is
wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import arguments, fresh_database, machine, quiet, table
from bench.processes import (
    Instance,
    post_update,
    start_instances,
    stop_instances,
    webhook_settings,
)
from bot import cases as domain
from bot import db
from bot.callbacks import CaseAction
from bot.directory import import_file
from bot.emulator import BotAPIEmulator, said
from bot.models import Account, Case, CaseEvent, Category, Grid, Official, Villager

GROUP = -1009000000001
VILLAGER = 600_001
FIRST_OFFICIAL = 700_001
#: How long the cards, the answers and the edits may take to arrive, on a busy machine.
WAIT = 120.0


def directory(officials: int) -> str:
    """The township: one village, its committee with a group chat, `officials` members."""
    lines = [
        "township: {code: RC, name: 竞速乡, timezone: Asia/Shanghai, language: zh-hans}",
        "villages:",
        "  - {code: yicun, name: 一村, grids: [{code: g1, name: 第一网格}]}",
        "units:",
        "  - {code: yicun-committee, name: 一村两委, kind: village, village: yicun,",
        f"     group_chat_id: {GROUP}, supervisor: office}}",
        "  - {code: office, name: 竞速乡调度中心, kind: township_office}",
        "categories:",
        "  - code: roads",
        "    name: 道路交通",
        "    children:",
        "      - {code: potholes, name: 路面坑洼, level: village, accept_hours: 4,"
        " resolve_hours: 48}",
        "officials:",
    ]
    lines += [
        f"  - {{code: o{n:03d}, name: {official_name(n)}, role: member,"
        f" units: [yicun-committee], telegram_id: {FIRST_OFFICIAL + n - 1}}}"
        for n in range(1, officials + 1)
    ]
    return "\n".join(lines) + "\n"


def official_name(n: int) -> str:
    """All of one length, so that no name is part of another."""
    return f"干部{n:03d}"


@dataclass
class Found:
    """One case after its race."""

    number: str
    taps: int
    answered: int = 0
    confirmed: int = 0  # the winner's "You accepted case ..."
    told_who: int = 0  # an alert naming the one who has it
    assignees: int = 0
    accept_events: int = 0
    acceptors_on_card: int = 0
    buttons_left: int = 0
    private_copies: int = 0
    rejected_posts: int = 0  # a POST answered other than 200
    winner: str = ""

    @property
    def unanswered(self) -> int:
        return self.taps - self.answered

    @property
    def right(self) -> bool:
        return (
            self.assignees == 1 and self.accept_events == 1 and self.confirmed == 1
            and self.told_who == self.taps - 1 and self.unanswered == 0
            and self.acceptors_on_card == 1 and self.buttons_left == 0
            and self.private_copies == 1 and self.rejected_posts == 0
        )


@dataclass
class Outcome:
    officials: int
    instances: int
    found: list[Found] = field(default_factory=list)
    taps_per_instance: Counter[int] = field(default_factory=Counter)
    seconds_per_round: list[float] = field(default_factory=list)
    #: Seconds until both processes received updates; from then to the last round's end.
    starting: float = 0.0
    racing: float = 0.0

    @property
    def right(self) -> bool:
        return bool(self.found) and all(f.right for f in self.found)

    def rows(self) -> list[list[object]]:
        return [
            [f.number, f.taps, f.assignees, f.accept_events, f.confirmed, f.told_who,
             f.unanswered, f.acceptors_on_card, f.private_copies, f.winner]
            for f in self.found
        ]

    def table(self, title: str) -> str:
        return table(title, [
            "case", "taps", "assignees", "accept events", "winner's confirmation",
            "told who has it", "unanswered taps", "acceptors on the card", "private copies",
            "winner",
        ], self.rows())

    def summary(self) -> str:
        wrong = [f.number for f in self.found if not f.right]
        taps = sum(f.taps for f in self.found)
        spread = ", ".join(
            f"instance {n}: {c}" for n, c in sorted(self.taps_per_instance.items())
        )
        slowest = max(self.seconds_per_round, default=0.0)
        return (
            f"{len(self.found)} cases, {taps} taps by {self.officials} officials through "
            f"{self.instances} processes ({spread}); cases with exactly one winner: "
            f"{sum(f.assignees == 1 for f in self.found)} of {len(self.found)}; "
            f"unanswered taps: {sum(f.unanswered for f in self.found)}; slowest round "
            f"{slowest:.1f} s (the processes started in {self.starting:.1f} s, the rest took "
            f"{self.racing:.1f} s); " + ("every case right" if not wrong else f"WRONG: {wrong}")
        )


async def until(what: str, check: Callable[[], bool], wait: float = WAIT) -> None:
    deadline = time.monotonic() + wait
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {wait:g} s")
        await asyncio.sleep(0.1)


async def _post_all(
    session: aiohttp.ClientSession, instances: list[Instance], updates: list[dict],
    outcome: Outcome,
) -> list[int]:
    """All at once, alternating between the instances; each one's HTTP status."""
    for index in range(len(updates)):
        outcome.taps_per_instance[index % len(instances) + 1] += 1
    return list(await asyncio.gather(*(
        post_update(session, instances[index % len(instances)], update)
        for index, update in enumerate(updates)
    )))


def _card(emulator: BotAPIEmulator, number: str) -> dict | None:
    return next(
        (m for m in emulator.messages(GROUP) if number in said(m)), None
    )


def _buttons(message: dict) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [b.get("callback_data", "") for row in rows for b in row]


async def race(
    database_url: str, *, officials: int, cases: int, folder: Path,
    redis_url: str | None = None, instances: int = 2, seed: int = 14,
) -> Outcome:
    """The whole run on a migrated (or new) database nobody else uses; its findings."""
    (folder / "township.yaml").write_text(directory(officials), encoding="utf-8")
    outcome = Outcome(officials, instances)
    shuffle = random.Random(seed).shuffle
    await db.start(database_url)
    try:
        await import_file(folder / "township.yaml")
        account = await Account.create(id=VILLAGER, first_name="李明", language="zh-hans")
        grid = await Grid.get(code="g1").prefetch_related("village")
        villager = await Villager.create(
            account=account, township_id=grid.village.township_id,  # type: ignore[attr-defined]
            village=grid.village, grid=grid, name="李明",
        )
        category = await Category.get(code="potholes")
        async with BotAPIEmulator(webhook_http=True) as emulator:
            emulator.group(GROUP, "一村两委")
            shared = webhook_settings(
                token=emulator.token, api_url=emulator.base_url, database_url=database_url,
                folder=folder, redis_url=redis_url,
            )
            began = time.monotonic()
            running = await start_instances(instances, shared, folder)
            outcome.starting = time.monotonic() - began
            try:
                async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0),
                    timeout=aiohttp.ClientTimeout(total=WAIT),
                ) as session:
                    people = [emulator.user(VILLAGER, "李明")] + [
                        emulator.user(FIRST_OFFICIAL + n - 1, official_name(n))
                        for n in range(1, officials + 1)
                    ]
                    opened = await _post_all(
                        session, running, [await p.text_update("/start") for p in people],
                        Outcome(officials, instances),
                    )
                    assert opened == [200] * len(people), Counter(opened)
                    numbers = []
                    for n in range(cases):
                        change = await domain.report(
                            villager, category, description=f"村道第{n + 1}处坑洼，车辆难行",
                        )
                        numbers.append(change.case.number)
                    await until("the cards in the group", lambda: all(
                        _card(emulator, number) is not None for number in numbers
                    ))
                    for number in numbers:
                        outcome.found.append(await _round(
                            emulator, session, running, number, people[1:], outcome, shuffle
                        ))
                    outcome.racing = time.monotonic() - began - outcome.starting
            finally:
                codes = await stop_instances(running)
                logs = "".join(i.log for i in running)
                assert codes == [0] * len(running), (codes, logs[-5000:])
                assert "Traceback" not in logs, logs[-5000:]
    finally:
        await db.stop()
    return outcome


async def _round(
    emulator: BotAPIEmulator, session: aiohttp.ClientSession, running: list[Instance],
    number: str, officials: list, outcome: Outcome, shuffle: Callable[[list], None],
) -> Found:
    """Every official taps the case's card at once; what came of it."""
    case = await Case.get(number=number)
    card = _card(emulator, number)
    assert card is not None
    accept = CaseAction(case_id=case.id, action="accept").pack()
    tappers = list(officials)
    shuffle(tappers)
    updates = [await o.tap_update(card, accept) for o in tappers]
    began = time.monotonic()
    statuses = await _post_all(session, running, updates, outcome)
    outcome.seconds_per_round.append(time.monotonic() - began)
    found = Found(number, len(updates), rejected_posts=sum(s != 200 for s in statuses))

    case = await Case.get(id=case.id)
    found.assignees = int(case.assignee_id is not None)  # type: ignore[attr-defined]
    events = await CaseEvent.filter(case_id=case.id, action=domain.Action.ACCEPT)
    found.accept_events = len(events)
    if case.assignee_id is None:  # type: ignore[attr-defined]
        return found
    winner = await Official.get(id=case.assignee_id)  # type: ignore[attr-defined]
    found.winner = winner.name
    assert all(e.actor_id == winner.account_id for e in events)  # type: ignore[attr-defined]

    queries = [u["callback_query"]["id"] for u in updates]
    with contextlib.suppress(TimeoutError):  # one never answered is counted below
        await until("every tap answered", lambda: all(
            emulator.answer_for(q) is not None for q in queries
        ), 20.0)
    for update, query in zip(updates, queries, strict=True):
        answer = emulator.answer_for(query)
        if answer is None:
            continue
        found.answered += 1
        toast = answer.get("text") or ""
        if update["callback_query"]["from"]["id"] == winner.account_id:  # type: ignore[attr-defined]
            found.confirmed += int(number in toast and not answer["show_alert"])
        else:
            found.told_who += int(winner.name in toast and bool(answer["show_alert"]))

    names = [official_name(n) for n in range(1, len(officials) + 1)]

    def edited() -> bool:
        now = _card(emulator, number) or {}
        return winner.name in said(now) and not _buttons(now)

    with contextlib.suppress(TimeoutError):  # what did not come is counted below
        await until("the card edited", edited, 30.0)
        await until("the winner's private copy", lambda: any(
            number in said(m)
            for m in emulator.bot_messages(winner.account_id)  # type: ignore[attr-defined]
        ), 30.0)
    shown = said(_card(emulator, number) or {})
    found.acceptors_on_card = sum(name in shown for name in names)
    found.buttons_left = len(_buttons(_card(emulator, number) or {}))
    with_copy = [
        o.id for o in officials
        if any(number in said(m) for m in emulator.bot_messages(o.id))
    ]
    found.private_copies = len(with_copy)
    return found


async def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("--officials", type=int, default=100)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--redis", default=None, help="REDIS_URL for the processes, e.g. "
                        "redis://127.0.0.1:6379/13 (a database number nobody else uses)")
    args = parser.parse_args()
    quiet()
    if args.redis:
        from redis.asyncio import Redis

        async with Redis.from_url(args.redis) as redis:
            await redis.flushdb()
    with tempfile.TemporaryDirectory(prefix="villagebot-race-") as folder:
        async with fresh_database(args.database) as url:
            outcome = await race(
                url, officials=args.officials, cases=args.cases, folder=Path(folder),
                redis_url=args.redis,
            )
    print(machine())
    store = "PostgreSQL" if args.database == "postgres" else "SQLite"
    print(outcome.table(
        f"{args.officials} officials tap Accept on each card at once, two processes, "
        f"{store}{' + Redis' if args.redis else ''}"
    ))
    print()
    print(outcome.summary())
    sys.exit(0 if outcome.right else 1)


if __name__ == "__main__":
    asyncio.run(main())
