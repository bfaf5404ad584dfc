"""/setup: what a half-configured township lacks, in the bot, the back office and the log at
start, exactly; nothing once it is complete; administrators only."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backoffice import browser, csrf, link, page, post
from conftest import TEST_REDIS_URL

from bot import setup
from bot.directory import import_file
from bot.models import Account, Official, Township, Unit
from bot.sandbox import Sandbox

DIGEST = -1002000000900
HALF = """
township:
  code: HX
  name: 和心乡
  names: {en: Hexin Township}
  language: en
villages:
  - code: east
    name: 东村
    names: {en: East Village}
    grids: [{code: g1, name: 第一网格, names: {en: East Grid 1}}]
  - code: west
    name: 西村
    names: {en: West Village}
    grids: [{code: g1, name: 第一网格, names: {en: West Grid 1}}]
units:
  - {code: office, name: 乡办, names: {en: Township Office}, kind: township_office}
  - code: east-committee
    name: 东村两委
    names: {en: East Committee}
    kind: village
    village: east
    group_chat_id: -1002000000101
    supervisor: office
  - code: east-g1
    name: 东村第一网格
    names: {en: East Grid Unit}
    kind: grid
    village: east
    grid: g1
    supervisor: east-committee
  - code: west-committee
    name: 西村两委
    names: {en: West Committee}
    kind: village
    village: west
    group_chat_id: -1002000000102
    supervisor: office
categories:
  - code: environment
    name: 环境卫生
    names: {en: Environment}
    children:
      - {code: litter, name: 卫生清理, names: {en: Litter}, level: grid,
         accept_hours: 4, resolve_hours: 48}
      - {code: roads, name: 道路维修, names: {en: Roads}, level: village,
         accept_hours: 8, resolve_hours: 72}
  - code: safety
    name: 应急
    names: {en: Safety}
    children:
      - {code: fire, name: 火情, names: {en: Fire}, level: township, unit: office,
         accept_hours: 1, resolve_hours: 4}
officials:
  - {code: boss, name: 管理员甲, names: {en: Boss Admin}, role: admin, units: [office],
     telegram_id: 7001}
  - {code: gridman, name: 网格员乙, names: {en: Grid Worker}, role: member, units: [east-g1],
     telegram_id: 7002}
  - {code: chair, name: 主任丙, names: {en: East Chair}, role: leader, units: [east-committee]}
%(dispatcher)s
"""
DISPATCHER = """
  - {code: disp, name: 调度丁, names: {en: Dispatcher}, role: dispatcher, units: [office],
     telegram_id: 7004}
"""
#: What the half-configured township lacks, by kind and subject (codes only).
HALF_GAPS = {
    ("no_dispatcher", ""),
    ("no_digest_chat", ""),
    ("not_started", "gridman"),
    ("not_joined", "chair"),
    ("unit_unreachable", "east-g1"),
    ("no_unit", "litter@west"),
    ("no_unit", "roads@west"),
}


def directory(tmp_path: Path, *, complete: bool = False) -> Path:
    path = tmp_path / ("complete.yaml" if complete else "half.yaml")
    text = HALF % {"dispatcher": DISPATCHER if complete else ""}
    if complete:
        text = text.replace("  language: en\n", f"  language: en\n  digest_chat_id: {DIGEST}\n")
    path.write_text(text, encoding="utf-8")
    return path


async def started(tmp_path: Path, database_url: str, **settings: object) -> Sandbox:
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    return await Sandbox(
        database_url, directory=directory(tmp_path), redis_url=TEST_REDIS_URL or None,
        **settings,
    ).start()


@pytest.fixture
async def township(tmp_path: Path, database_url: str) -> AsyncIterator[Sandbox]:
    running = await started(tmp_path, database_url)
    await lose_west()
    yield running
    await running.stop()


async def lose_west() -> None:
    """West's committee gone from the database as an older import or a hand edit leaves it:
    an import checks that every village has its units, so a file cannot do this."""
    await Unit.filter(code="west-committee").update(active=False)


def numbered(message: dict) -> list[str]:
    """The checklist's lines, without their numbers."""
    return [m.group(1) for m in re.finditer(r"^\d+\. (.+)$", message["text"], re.M)]


def urls(message: dict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["url"] for row in markup.get("inline_keyboard", []) for b in row]


async def gaps_of(code: str = "HX") -> set[tuple[str, str]]:
    return {(gap.kind.value, gap.subject)
            for gap in await setup.missing(await Township.get(code=code))}


async def test_setup_lists_exactly_what_is_missing_then_all_set(
    township: Sandbox, tmp_path: Path
) -> None:
    boss = township.phone(7001, "Boss", language="en")
    await boss.send("/setup")
    checklist = await boss.expect("What Hexin Township still lacks (7):")
    assert numbered(checklist) == [
        "No dispatcher: nobody watches the township's cases, and cases that reach nobody "
        "have no one to go to.",
        "No digest chat: the weekly digest and the red/grey list go nowhere.",
        "Grid Worker (East Grid Unit) has not started the bot, or has blocked it: the bot "
        "cannot write to them.",
        "East Chair (East Committee) has not joined yet.",
        "East Grid Unit has no group chat and no member who started the bot: its cases would "
        "reach nobody.",
        "Litter in West Village: no unit is responsible, so villagers cannot report it there.",
        "Roads in West Village: no unit is responsible, so villagers cannot report it there.",
    ]
    assert "Add it to the directory file and import it again." in checklist["text"]
    assert "Ask them to open the bot and press Start." in checklist["text"]
    assert await gaps_of() == HALF_GAPS
    grid_unit = await Unit.get(code="east-g1")
    found = urls(checklist)
    username = township.emulator.bot_username
    assert found[0] == f"https://t.me/{username}?startgroup=digest"
    assert re.fullmatch(rf"https://t\.me/{username}\?start=inv-[A-Za-z0-9_-]+", found[1])
    assert found[2] == f"https://t.me/{username}?startgroup=bind-{grid_unit.id}"
    assert len(found) == 3
    labels = [b["text"] for row in checklist["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["2. Add the bot to the digest chat", "4. Invite East Chair",
                      "5. Add the bot to the group of East Grid Unit"]

    # A member is refused politely (and, writing to the bot, has started it).
    gridman = township.phone(7002, "Grid", language="en")
    await gridman.send("/setup")
    await gridman.expect("Only an administrator can see what the township still lacks.")
    # The chair joins with the button's invitation.
    chair = township.phone(7003, "Chair", language="en")
    await chair.send("/start " + found[1].split("?start=")[1])
    await chair.expect("Welcome, East Chair!")
    assert await gaps_of() == {("no_dispatcher", ""), ("no_digest_chat", ""),
                               ("no_unit", "litter@west"), ("no_unit", "roads@west")}

    # The directory completes the rest; the digest chat is one the bot is not in yet.
    await import_file(directory(tmp_path, complete=True), default_language="en",
                      default_timezone="Asia/Shanghai")
    dispatcher = township.phone(7004, "Disp", language="en")
    await dispatcher.send("/start")
    await dispatcher.expect("Welcome back")
    await boss.send("/setup")
    checklist = await boss.expect("still lacks (1):")
    assert numbered(checklist) == [
        "The bot is not in the digest chat: the digest cannot be posted."
    ]
    assert urls(checklist) == [f"https://t.me/{username}?startgroup=digest"]

    township.emulator.group(DIGEST, "Hexin digest")
    await boss.send("/setup")
    await boss.expect("All set: Hexin Township lacks nothing.")
    assert await gaps_of() == set()


async def test_an_official_the_courier_found_blocked_is_listed_again(township: Sandbox) -> None:
    boss = township.phone(7001, "Boss", language="en")
    gridman = township.phone(7002, "Grid", language="en")
    await gridman.send("/help")
    await gridman.expect("/web")
    assert ("not_started", "gridman") not in await gaps_of()
    # A 403 from Telegram marks the account blocked (bot.delivery), until they write again.
    await Account.filter(id=7002).update(blocked_at=datetime.now(UTC))
    assert ("not_started", "gridman") in await gaps_of()
    assert ("unit_unreachable", "east-g1") in await gaps_of()
    await boss.send("/setup")
    await boss.expect("Grid Worker (East Grid Unit) has not started the bot, or has blocked it")


async def test_the_post_right_read_from_telegrams_answer() -> None:
    from bot.handlers.setup import post_right
    from bot.setup import PostRight

    assert post_right("channel", {"status": "administrator", "can_post_messages": True}) \
        == PostRight.OK
    assert post_right("channel", {"status": "administrator", "can_post_messages": False}) \
        == PostRight.NO_POST_RIGHT
    assert post_right("channel", {"status": "member"}) == PostRight.NOT_ADMIN
    assert post_right("supergroup", {"status": "member"}) == PostRight.OK
    assert post_right("group", {"status": "restricted", "is_member": True,
                                "can_send_messages": False}) == PostRight.MUTED
    assert post_right("group", {"status": "kicked"}) == PostRight.NOT_MEMBER
    assert post_right("group", {"status": "left"}) == PostRight.NOT_MEMBER


def _listed(text: str) -> set[tuple[str, str]]:
    return set(re.findall(r'data-kind="([a-z_]+)" data-subject="([^"]*)"', text))


async def test_the_back_office_page_shows_the_same(tmp_path: Path, database_url: str) -> None:
    office = await started(tmp_path, database_url, web=True)
    await lose_west()
    try:
        boss = office.phone(7001, "Boss", language="en")
        async with browser() as session:
            async with session.get(await link(boss)) as response:
                assert response.status == 200
            text = await page(session, f"{office.web_url}/setup")
            assert _listed(text) == HALF_GAPS
            assert 'href="/setup"' in text  # in the header, for administrators
            username = office.emulator.bot_username
            grid_unit = await Unit.get(code="east-g1")
            assert f'href="https://t.me/{username}?startgroup=bind-{grid_unit.id}"' in text
            assert f'href="https://t.me/{username}?startgroup=digest"' in text
            assert "?start=inv-" not in text  # an invitation only when asked for
            chair = await Official.get(code="chair")
            invited = await post(session, f"{office.web_url}/setup/invite/{chair.id}",
                                 {"csrf": csrf(text)})
            found = re.search(rf"https://t\.me/{username}\?start=(inv-[A-Za-z0-9_-]+)", invited)
            assert found is not None
            joined = office.phone(7003, "Chair", language="en")
            await joined.send(f"/start {found.group(1)}")
            await joined.expect("Welcome, East Chair!")
            after = await page(session, f"{office.web_url}/setup")
            assert _listed(after) == HALF_GAPS - {("not_joined", "chair")}

        # A member signed in is told there is no such page.
        gridman = office.phone(7002, "Grid", language="en")
        async with browser() as session:
            async with session.get(await link(gridman)) as response:
                assert response.status == 200
            refused = await page(session, f"{office.web_url}/setup", status=404)
            assert "data-kind" not in refused
            assert 'href="/setup"' not in refused
    finally:
        await office.stop()


async def test_the_start_logs_each_gap_by_code(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bot.setup"):
        office = await started(tmp_path, database_url)
        stranger = office.phone(7999, "Someone", language="en")
        await stranger.send("/help")  # polling, so that it stops
        await stranger.expect("/language")
        await office.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "bot.setup"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "bot.setup")
    assert sorted(said) == sorted(
        f"setup: township HX: {kind}{' ' if subject else ''}{subject} (fix: {fix})"
        for kind, subject, fix in [
            ("no_dispatcher", "", "directory"), ("no_digest_chat", "", "bind_digest"),
            ("not_started", "boss", "start_bot"), ("not_started", "gridman", "start_bot"),
            ("not_joined", "chair", "invite"), ("unit_unreachable", "office", "bind_group"),
            ("unit_unreachable", "east-g1", "bind_group"),
        ]
    )
    # Codes, never names.
    assert not any(name in line for line in said for name in ("管理员甲", "网格员乙", "主任丙"))

