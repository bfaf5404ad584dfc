"""The README's "Production" section followed on a clean machine, against the emulator.

The commands an operator types (`migrate`, `directory import`, `webhook set`, `invite`,
`run --workers 2`) run as real processes; Telegram is the emulator, POSTing every update to the
one WEBHOOK_URL both workers serve. A villager's conversation is then made to alternate
between the two workers by pausing one at a time (SIGSTOP): a paused process accepts nothing,
so whatever moves the conversation on was handled by the other, and the draft it continues
from was left by the first in the shared database (or Redis).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from test_workers import _free_port, alive, children, holds, listening_inode

from bench.processes import Command, Running, environment
from bot.emulator import BotAPIEmulator, said
from bot.sandbox import EXAMPLE_DIRECTORY, Phone
from web.webhook import MAX_UPDATE_BYTES, SECRET_HEADER

#: While a worker is paused, how long the emulator waits for an answer before it tries again,
#: as Telegram does after a timeout: a POST on a kept-alive connection to the paused worker
#: waits there, and its retry reaches the live one. (Kept long while both serve: a retry
#: then could reach the other worker while the first delivery is still being handled.)
DELIVERY_TIMEOUT = 1.5
#: One step of the conversation, a redelivery after a paused worker's timeout included.
STEP = 20.0
LI = 1001
LIN = 9101
#: Zhengda's village committee, where an unaccepted case of its grids escalates to.
COMMITTEE_GROUP = -1001000000101
#: Each worker's scheduler looks for due cases this often.
SWEEP_SECONDS = 5

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="--workers forks: no fork here")


@pytest.fixture
async def emulator() -> AsyncIterator[BotAPIEmulator]:
    async with BotAPIEmulator(webhook_http=True) as running:
        yield running


@pytest.fixture
async def command(
    database_url: str, tmp_path: Path, emulator: BotAPIEmulator
) -> Command:
    """Settings as `.env.example` asks for them. On SQLite a database file that does not exist
    yet (a clean machine); on PostgreSQL with Redis (`.ci/run`) this test process's own."""
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    port = _free_port()
    settings = {
        "BOT_TOKEN": emulator.token,
        "TELEGRAM_API_URL": emulator.base_url,
        "DATABASE_URL": database_url if TEST_DATABASE_URL
        else f"sqlite://{tmp_path}/production.sqlite3",
        "WEBHOOK_URL": f"http://127.0.0.1:{port}/telegram/{secrets.token_urlsafe(12)}",
        "WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "WEB_LISTEN": f"127.0.0.1:{port}",
        "WEB_URL": f"http://127.0.0.1:{port}",
        "WEB_FILES": str(tmp_path / "files"),
        "INSTANCE": "production",
        # Every worker supervises; often, and at any hour, for the escalation below.
        "SWEEP_SECONDS": str(SWEEP_SECONDS),
        "QUIET_HOURS": "off",
    }
    if TEST_REDIS_URL:
        settings["REDIS_URL"] = TEST_REDIS_URL
    return Command(environment(settings), tmp_path)


@pytest.fixture
async def production(command: Command) -> AsyncIterator[Callable[[], Running]]:
    """Starts `villagebot run --workers 2`; one that outlives a failed test is killed with
    its workers (a paused worker resumed first)."""
    started: list[Running] = []

    async def start() -> Running:
        running = Running(await command.start("run", "--workers", "2"))
        started.append(running)
        return running

    yield start  # type: ignore[misc]
    for running in started:
        if running.process.returncode is None:
            for child in children(running.process.pid):
                os.kill(child, signal.SIGKILL)
            running.process.kill()
        await running.stopped()


async def settled(emulator: BotAPIEmulator, bot: Running) -> range:
    """Every update delivered and answered 200: handled to the end (its id remembered), so
    no worker is still at it when the next one is paused or resumed. The update ids so far."""
    deadline = time.monotonic() + STEP
    last = emulator.stats.updates_enqueued  # ids count from 1
    while emulator.pending_updates or last not in bot.handled():
        assert time.monotonic() < deadline, f"update {last} was never handled\n{bot.log}"
        await asyncio.sleep(0.05)
    return range(1, last + 1)


async def refused(env: dict[str, str], update: dict) -> list[int]:
    """`update` POSTed to the workers without the secret, with a wrong one; then, with the
    right one, a body that is no JSON and one over the 1 MB an update may have: the statuses."""
    url, secret = env["WEBHOOK_URL"], env["WEBHOOK_SECRET"]
    body = json.dumps(update).encode()
    attempts = [
        (body, {}),
        (body, {SECRET_HEADER: secret[::-1]}),
        (b'{"update_id": 1, "message": ', {SECRET_HEADER: secret}),
        (b" " * (MAX_UPDATE_BYTES + 1) + body, {SECRET_HEADER: secret}),
    ]
    statuses = []
    async with aiohttp.ClientSession() as session:
        for data, headers in attempts:
            async with session.post(url, data=data, headers=headers) as response:
                statuses.append(response.status)
    return statuses


async def test_two_webhook_workers_carry_a_report_handed_between_them(
    emulator: BotAPIEmulator, command: Command, production, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    began = time.monotonic()
    # The README's steps: the schema, the township, the webhook once, then the service.
    migrated = await command("migrate")
    # A clean machine gets the whole schema; PostgreSQL here was migrated by the suite.
    assert ("applied models.0001_initial" if not TEST_DATABASE_URL else "up to date") in migrated
    # The two that do not depend on each other side by side, as each takes seconds to start.
    _, out = await asyncio.gather(
        command("directory", "import", str(EXAMPLE_DIRECTORY)), command("webhook", "set")
    )
    assert out.startswith(f"webhook set: {command.env['WEBHOOK_URL']} (")
    bot = await production()
    # While the workers start, the grid member is invited with the link the command prints.
    link = (await command("invite", "lin-xiuying")).strip()
    assert link.startswith("https://t.me/villagebot?start=inv-"), link
    await bot.said(lambda lines: sum("receiving updates by webhook" in x for x in lines) == 2)
    workers = sorted(children(bot.process.pid))
    assert len(workers) == 2, workers
    port = int(command.env["WEB_LISTEN"].rpartition(":")[2])
    inode = listening_inode(port)
    assert all(holds(pid, inode) for pid in workers), "one socket, served by both"
    assert emulator.webhook_url == command.env["WEBHOOK_URL"]
    assert emulator.stats.requests["setWebhook"] == 1, "set once, by the command, not by each"
    assert emulator.stats.requests["getUpdates"] == 0

    # The grid member joins.
    lin = Phone(emulator, LIN, "林秀英", language="zh-hans")
    await lin.send("/start " + link.partition("start=")[2])
    await lin.expect("您的 Telegram 账号已绑定", timeout=STEP)
    joined = await settled(emulator, bot)

    number_of = bot.workers()
    first, second = workers
    li = Phone(emulator, LI, "李明", language="zh-hans")
    #: The updates of each stretch of the conversation, and the one worker serving then.
    stretches: list[tuple[range, int]] = []
    began_at = joined.stop

    async def pause(paused: int, resumed: int | None) -> None:
        nonlocal began_at
        if resumed is not None:
            done = await settled(emulator, bot)
            stretches.append((range(began_at, done.stop), number_of[paused]))
            began_at = done.stop
            os.kill(resumed, signal.SIGCONT)
        os.kill(paused, signal.SIGSTOP)
        emulator.webhook_timeout = DELIVERY_TIMEOUT

    # Registration begins with the first worker paused: the second handles it.
    await pause(first, None)
    try:
        await li.send("/start")
        await li.expect("您住在哪个村？", timeout=STEP)
        await li.tap("正达村")
        await li.expect("您家属于哪个网格？", timeout=STEP)

        # Now the other way round: the first goes on from the step the second left.
        await pause(second, first)
        await li.tap("第一网格")
        await li.expect("请告诉我您的姓名", timeout=STEP)
        await li.send("李明")
        await li.expect("分享手机号码", timeout=STEP)
        await li.share_contact("+86 138 0000 1001")
        await li.expect("您已登记为正达村村民。", timeout=STEP)
        await li.press("📝 我要反映问题")
        await li.expect("您要反映哪方面的问题？请点一个类别。", timeout=STEP)
        await li.tap("环境卫生")
        await li.expect("环境卫生：具体是哪一类？", timeout=STEP)

        # And back: the second continues the draft the first began.
        await pause(first, second)
        await li.tap("卫生清理")
        await li.expect("请描述问题", timeout=STEP)
        await li.send("村口垃圾桶满了，三天没人清理")
        await li.expect("照片能帮助工作人员了解情况", timeout=STEP)
        await li.user.send_photo()
        await li.expect("已收到照片 1 张", timeout=STEP)
        await li.tap("✅ 完成")
        await li.expect("不需要位置？点“跳过”。", timeout=STEP)
        done = await settled(emulator, bot)
        stretches.append((range(began_at, done.stop), number_of[second]))
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        emulator.webhook_timeout = 10.0

    # Both serving again. What is no update of Telegram's is refused, and nothing is handled.
    before = len(emulator.bot_messages(LI))
    forged = {"update_id": 10**9, "message": {
        "message_id": 10**6, "date": int(time.time()), "text": "/mycases",
        "chat": {"id": LI, "type": "private"},
        "from": {"id": LI, "is_bot": False, "first_name": "李明"},
    }}
    assert await refused(command.env, forged) == [403, 403, 400, 413]
    await asyncio.sleep(0.5)
    assert len(emulator.bot_messages(LI)) == before, "a refused POST was handled"
    # The rest goes to whichever worker accepts it.
    await li.tap("跳过")
    await li.expect("请核对您的反映内容", timeout=STEP)
    await li.tap("✅ 提交")
    done = await li.expect("✅ 已提交。您的事项编号：BL-", timeout=STEP)
    number = done["text"].partition("您的事项编号：")[2].split()[0]
    card = await lin.expect(number, timeout=STEP)
    assert "村口垃圾桶满了" in said(card)
    everything = await settled(emulator, bot)
    await asyncio.sleep(1.0)  # time for a duplicate to show, were there one

    # Each stretch handled by the worker serving then, each update by one worker, once.
    handled = bot.handled()
    assert sorted(handled) == list(everything), "every update handled"
    twice = {update: by for update, by in handled.items() if len(by) > 1}
    assert not twice, f"handled more than once: {twice}"
    for updates, serving in stretches:
        assert updates, stretches
        assert {handled[update][0] for update in updates} == {serving}, (updates, handled)
    assert [serving for _, serving in stretches] == [
        number_of[second], number_of[first], number_of[second]
    ]

    # Exactly once, with two workers and redeliveries from the paused ones' connections.
    from datetime import UTC, datetime, timedelta

    from tortoise import Tortoise

    from bot import db
    from bot.models import Case, CaseEvent, Delivery, Villager

    await db.start(command.env["DATABASE_URL"])
    try:
        cases = await Case.all()
        villagers = await Villager.filter(account_id=LI)
        assert len(villagers) == 1
        assert [c.number for c in cases] == [number]
        assert cases[0].description == "村口垃圾桶满了，三天没人清理"
        assert len(cases[0].photos) == 1

        # Both workers' schedulers find the case past its accept deadline: it escalates once.
        past = datetime.now(UTC) - timedelta(seconds=1)
        await Case.filter(id=cases[0].id).update(accept_by=past, check_at=past)
        # A sweep every SWEEP_SECONDS, each slower on a machine busy with the rest of the suite.
        deadline = time.monotonic() + 6 * SWEEP_SECONDS + 2 * STEP
        while not await CaseEvent.filter(case_id=cases[0].id, action="escalate").exists():
            assert time.monotonic() < deadline, f"no escalation\n{bot.log}"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2 * SWEEP_SECONDS + 1)  # each worker has swept again since
        escalated = await Case.get(id=cases[0].id).prefetch_related("unit")
        assert (escalated.unit.code, escalated.escalation_level) == ("zhengda-committee", 1)
        assert await CaseEvent.filter(case_id=cases[0].id, action="escalate").count() == 1
        cards = [  # the card's text; its photo goes before it
            row.payload["text"] for row in await Delivery.filter(
                chat_id=COMMITTEE_GROUP, case_id=cases[0].id, kind="text"
            )
        ]
        assert len(cards) == 1 and number in cards[0], cards
    finally:
        await Tortoise.close_connections()
    texts = [said(m) for m in emulator.bot_messages(LI)]
    assert sum("✅ 已提交。您的事项编号" in t for t in texts) == 1, texts
    assert sum("您已登记为正达村村民。" in t for t in texts) == 1, texts
    assert sum("已收到照片 1 张" in t for t in texts) == 1, texts
    cards = [
        m for m in emulator.bot_messages(LIN)
        if number in said(m)
    ]
    assert len(cards) == 1, cards
    assert emulator.stats.requests["setWebhook"] == 1

    # SIGTERM to the command stops both workers cleanly, leaving nothing behind.
    bot.process.send_signal(signal.SIGTERM)
    assert await bot.stopped() == 0, bot.log
    assert "Traceback" not in bot.log, bot.log
    assert "SIGTERM: stopping 2 workers" in bot.log
    assert not any(alive(pid) for pid in workers), "a worker outlived the command"
    again = bot.log.count("arrived again; handled already")
    print(f"\nproduction: migrate, directory import, webhook set, invite, run --workers 2; "
          f"a report in {len(everything)} updates, stretches handled by workers "
          f"{[serving for _, serving in stretches]}, each update once ({again} second "
          f"arrivals dropped); escalated once by two schedulers; stopped cleanly; "
          f"{time.monotonic() - began:.1f} s")
