"""Group robots of WeCom, DingTalk and Feishu: the directory, and the digest, the red/grey list,
repeat warnings and overdue notices reaching each app's stand-in on loopback (bot.robot_emulator),
signed and shaped as the app documents, exactly once, through the same outbox as Telegram.

The real bot runs over the Bot API emulator (the sandbox), with its courier posting to the
robots; the stand-ins check each signature and payload and answer with the apps' own codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from conftest import make_villager

from bot import cases, robots
from bot.directory import (
    DirectoryError,
    dump_yaml,
    export_directory,
    import_text,
)
from bot.models import Case, Category, Delivery, DeliveryKind, Official, Robot, RobotKind, Township
from bot.robot_emulator import Hook, RobotEmulator
from bot.robots import RobotPolicy
from bot.sandbox import EXAMPLE_DIRECTORY, Sandbox
from scheduler import digest, ranking, repeats
from scheduler.policy import Policy

POLICY = Policy(quiet_hours=None, repeat_threshold=3)
NAME, PHONE = "李明", "13800001111"
ADMIN_CHAT = 9001
CHANNEL = -1001000000001
DING_SECRET = "SECd1ngta1k"
FEISHU_SECRET = "fe1shu-secret"
ENV = "VILLAGEBOT_TEST_FEISHU_SECRET"
FAST = RobotPolicy(
    limited_wait={kind: 0.3 for kind in RobotKind}, max_attempts=3, backoff_first=0.1
)


def _example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_DIRECTORY.read_text(encoding="utf-8"))


def _with_robots(
    stand_in: RobotEmulator, township: list[Hook], committee: list[Hook],
    secrets: dict[str, dict[str, str]] | None = None,
) -> str:
    """The demo township with robots on the township and on 正达村两委, and its administrator
    bound (so that a robot given up is told to someone)."""
    data = _example()
    secrets = secrets or {}

    def spec(hook: Hook) -> dict[str, str]:
        out = {"kind": hook.kind.value, "url": stand_in.url(hook)}
        if hook.name in secrets:
            out.update(secrets[hook.name])
        elif hook.secret:
            out["secret"] = hook.secret
        return out

    data["township"]["robots"] = [spec(hook) for hook in township]
    for unit in data["units"]:
        if unit["code"] == "zhengda-committee":
            unit["robots"] = [spec(hook) for hook in committee]
    for official in data["officials"]:
        if official["code"] == "admin":
            official["telegram_id"] = ADMIN_CHAT
    return dump_yaml(data)


@pytest.fixture
async def stand_in() -> Iterator[RobotEmulator]:  # type: ignore[misc]
    async with RobotEmulator() as running:
        yield running


@pytest.fixture
async def bot(sandbox: Sandbox) -> Sandbox:
    """The sandbox whose courier waits a moment, not minutes, after a refusal or "too fast"."""
    assert sandbox.app is not None
    sandbox.app.courier.robots.policy = FAST
    sandbox.emulator.group(CHANNEL, "坂里乡工作群")
    return sandbox


def _hooks(stand_in: RobotEmulator, prefix: str) -> list[Hook]:
    return [
        stand_in.add(RobotKind.WECOM, f"{prefix}-wecom"),
        stand_in.add(RobotKind.DINGTALK, f"{prefix}-ding", DING_SECRET),
        stand_in.add(RobotKind.FEISHU, f"{prefix}-feishu", FEISHU_SECRET),
    ]


async def _until(check: Callable[[], Awaitable[bool]] | Callable[[], bool],
                 timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("not within the time")
        await asyncio.sleep(0.05)


async def _robot_rows_done() -> bool:
    return not await Delivery.filter(
        kind=DeliveryKind.ROBOT, sent_at__isnull=True, failed_at__isnull=True
    ).exists()


async def _count_is(query: Any, count: int) -> bool:
    return await query.count() == count


def _no_personal_data(hooks: list[Hook]) -> None:
    official_names = ["林秀英", "苏进侨", "林建华", "黄丽坤"]
    for hook in hooks:
        for words in hook.texts():
            assert NAME not in words and PHONE not in words
            assert not any(name in words for name in official_names), words


# ---- the directory --------------------------------------------------------------------------


async def test_the_directory_keeps_robots_and_writes_them_back(
    database: str, stand_in: RobotEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, FEISHU_SECRET)
    wecom, ding, feishu = _hooks(stand_in, "t")
    text = _with_robots(stand_in, [wecom, ding], [feishu], {feishu.name: {"secret_env": ENV}})
    report = await import_text(text)
    assert report.robots.created == 3
    assert (await import_text(text)).changed is False
    exported = await export_directory("BL")
    assert exported["township"]["robots"] == [
        {"kind": "wecom", "url": stand_in.url(wecom)},
        {"kind": "dingtalk", "url": stand_in.url(ding), "secret": DING_SECRET},
    ]
    [committee] = [u for u in exported["units"] if u["code"] == "zhengda-committee"]
    assert committee["robots"] == [{"kind": "feishu", "url": stand_in.url(feishu),
                                    "secret_env": ENV}]
    assert FEISHU_SECRET not in dump_yaml(exported)  # from the environment: named, not written
    row = await Robot.get(kind=RobotKind.FEISHU)
    assert row.secret is None and row.secret_env == ENV
    # What was exported imports back to the same rows; a robot left out is deactivated.
    assert (await import_text(dump_yaml(exported))).changed is False
    exported["township"]["robots"] = exported["township"]["robots"][:1]
    report = await import_text(dump_yaml(exported))
    assert report.robots.deactivated == 1
    assert not (await Robot.get(kind=RobotKind.DINGTALK)).active


@pytest.mark.parametrize(("robot", "where", "words"), [
    ({"kind": "wecom", "url": "http://example.com/hook"}, "township.robots[0].url",
     "https://"),
    ({"kind": "wecom", "url": "https://qyapi.weixin.qq.com/x", "secret": "s"},
     "township.robots[0]", "WeCom robot takes no secret"),
    ({"kind": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=a",
      "secret": "s", "secret_env": "S"}, "township.robots[0]", "not both"),
    ({"kind": "line", "url": "https://example.com/"}, "township.robots[0].kind", ""),
    ({"kind": "feishu", "url": "https://open.feishu.cn/x", "secret_env": "no spaces"},
     "township.robots[0].secret_env", "environment variable"),
])
async def test_a_wrong_robot_is_refused_with_its_place(
    database: str, robot: dict[str, str], where: str, words: str
) -> None:
    data = _example()
    data["township"]["robots"] = [robot]
    with pytest.raises(DirectoryError) as refused:
        await import_text(dump_yaml(data))
    assert any(line.startswith(where) and words in line for line in refused.value.problems), (
        refused.value.problems
    )
    assert not await Township.exists()


async def test_one_webhook_in_two_places_is_refused(database: str) -> None:
    data = _example()
    robot = {"kind": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"}
    data["township"]["robots"] = [robot]
    data["units"][0]["robots"] = [robot]
    with pytest.raises(DirectoryError) as refused:
        await import_text(dump_yaml(data))
    assert refused.value.problems == [
        "units[0].robots[0].url: also used by township.robots[0].url"
    ]


# ---- what goes out --------------------------------------------------------------------------


async def _cases(count: int, at: datetime) -> list[Case]:
    li = await make_villager(1001, phone=PHONE)
    litter = await Category.get(code="litter")
    made = []
    for index in range(count):
        change = await cases.report(li, litter, description=f"{NAME} {PHONE} 门口垃圾",
                                    photos=["F1"], at=at + timedelta(minutes=index))
        made.append(change.case)
    return made


async def test_digest_and_ranking_reach_each_app_signed_once(
    bot: Sandbox, stand_in: RobotEmulator
) -> None:
    hooks = _hooks(stand_in, "t")
    await import_text(_with_robots(stand_in, hooks, []))
    now = datetime.now(UTC)
    await _cases(2, now - timedelta(days=8))
    township = await Township.get(code="BL")
    week = digest.Week.before(now, township.timezone)
    assert await digest.queue(township, week, now, POLICY) is not None
    assert await digest.queue(township, week, now, POLICY) is None  # once
    month = ranking.Month.before(now, township.timezone)
    assert await ranking.queue(township, month, now) is not None
    assert await ranking.queue(township, month, now) is None
    await _until(_robot_rows_done)
    wecom, ding, feishu = hooks
    # WeCom: the chart (PNG, md5 checked by the stand-in), then the digest, then the list.
    assert len(wecom.images()) == 1 and wecom.images()[0].startswith(b"\x89PNG")
    assert [b["msgtype"] for b in wecom.received] == ["image", "markdown", "markdown"]
    # DingTalk and Feishu cannot take an image: the texts alone, signed (or refused).
    assert [b["msgtype"] for b in ding.received] == ["markdown", "markdown"]
    assert ding.received[0]["markdown"]["title"].startswith("📊")
    assert [b["msg_type"] for b in feishu.received] == ["interactive", "interactive"]
    assert "sign" in feishu.received[0] and "timestamp" in feishu.received[0]
    for hook in hooks:
        texts = hook.texts()
        assert week.label in texts[0] and month.label in texts[1]
        assert [code for code, _ in hook.answers] == [0] * len(hook.received)
    _no_personal_data(hooks)
    # Telegram's channel got its own copy, as before.
    assert await Delivery.filter(key=digest.key(township, week), sent_at__isnull=False).exists()
    # Queued again by a restarted scheduler: nothing more.
    assert await digest.due(now, POLICY) == 0
    assert await Delivery.filter(kind=DeliveryKind.ROBOT).count() == 7  # WeCom's chart too


async def test_a_township_without_a_channel_gets_its_digest_on_its_robots(
    bot: Sandbox, stand_in: RobotEmulator
) -> None:
    hooks = _hooks(stand_in, "t")
    data = yaml.safe_load(_with_robots(stand_in, hooks, []))
    del data["township"]["digest_chat_id"]
    await import_text(dump_yaml(data))
    township = await Township.get(code="BL")
    assert township.digest_chat_id is None
    local = datetime(2026, 11, 23, 8, 30, tzinfo=UTC) - timedelta(hours=8)  # Monday 08:30
    assert await digest.due(local, POLICY) == 1
    assert await ranking.due(datetime(2026, 12, 1, 0, 30, tzinfo=UTC), POLICY) == 1
    await _until(_robot_rows_done)
    for hook in hooks:
        assert [("2026-W47" in t, "2026-11" in t) for t in hook.texts()] == [
            (True, False), (False, True)
        ]


async def test_repeat_warnings_and_overdue_notices_reach_the_robots_once(
    bot: Sandbox, stand_in: RobotEmulator
) -> None:
    township_hooks = _hooks(stand_in, "t")
    committee_hooks = _hooks(stand_in, "c")
    await import_text(_with_robots(stand_in, township_hooks, committee_hooks))
    now = datetime.now(UTC)
    made = await _cases(3, now - timedelta(hours=60))
    assert await repeats.warn(now, POLICY) == 1
    assert await repeats.warn(now, POLICY) == 0
    # The grid member accepts one, and lets its resolve deadline pass: 正达村两委 is told.
    lin = await Official.get(code="lin-xiuying")
    await cases.accept(made[0].id, lin, at=now - timedelta(hours=59))
    await cases.flag_overdue(made[0].id, 1, at=now)
    await _until(_robot_rows_done)
    for hook in township_hooks:
        [warning] = hook.texts()
        assert "3" in warning and "正达村" in warning and made[0].number in warning
    for hook in committee_hooks:
        [overdue] = hook.texts()
        assert made[0].number in overdue and "正达村第一网格" in overdue
        assert made[1].number not in overdue
    _no_personal_data(township_hooks + committee_hooks)
    # One warning and one notice per robot, nothing twice.
    assert sum(len(h.received) for h in township_hooks + committee_hooks) == 6


# ---- failures -------------------------------------------------------------------------------


async def _one_digest(hooks: list[Hook]) -> None:
    now = datetime.now(UTC)
    township = await Township.get(code="BL")
    await digest.queue(township, digest.Week.before(now, township.timezone), now, POLICY)


async def test_too_fast_is_waited_out_and_then_arrives(
    bot: Sandbox, stand_in: RobotEmulator
) -> None:
    hooks = _hooks(stand_in, "t")
    await import_text(_with_robots(stand_in, hooks, []))
    for hook in hooks:
        hook.busy(2)
    await _one_digest(hooks)
    await _until(_robot_rows_done)
    wecom, ding, feishu = hooks
    assert [code for code, _ in ding.answers] == [130101, 130101, 0]
    assert [code for code, _ in feishu.answers] == [11232, 11232, 0]
    assert [code for code, _ in wecom.answers][:2] == [45009, 45009]
    assert not await Delivery.filter(kind=DeliveryKind.ROBOT, failed_at__isnull=False).exists()
    # "Too fast" is no attempt: the rows went without using their tries up.
    assert {row.attempts for row in await Delivery.filter(kind=DeliveryKind.ROBOT)} == {0}


async def test_a_robot_that_keeps_failing_is_given_up_and_the_administrator_told(
    bot: Sandbox, stand_in: RobotEmulator
) -> None:
    hooks = _hooks(stand_in, "t")
    await import_text(_with_robots(stand_in, hooks, []))
    wecom, ding, feishu = hooks
    ding.broken(100)
    await _one_digest(hooks)
    await _until(_robot_rows_done)
    [failed] = await Delivery.filter(kind=DeliveryKind.ROBOT, failed_at__isnull=False)
    assert failed.robot_id == (await Robot.get(kind=RobotKind.DINGTALK)).id  # type: ignore[attr-defined]
    assert failed.error == "gave up after 3 attempts: HTTP 500" and failed.attempts == 3
    told_key = f"undelivered:{failed.id}:{ADMIN_CHAT}"
    found: list[Delivery] = []

    async def told_once() -> bool:  # the row itself, read when it stands (committed)
        found[:] = await Delivery.filter(chat_id=ADMIN_CHAT, key=told_key)
        return len(found) == 1

    await _until(told_once, 5)
    [told] = found
    assert "DingTalk" in told.payload["text"] or "钉钉" in told.payload["text"]
    assert "坂里乡" in told.payload["text"] and "HTTP 500" in told.payload["text"]
    assert len(wecom.received) == 2 and len(feishu.received) == 1  # the others are not held


async def test_a_wrong_secret_gives_up_at_once_with_the_apps_reason(
    bot: Sandbox, stand_in: RobotEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = _hooks(stand_in, "t")
    monkeypatch.delenv(ENV, raising=False)
    _, ding, feishu = hooks
    await import_text(_with_robots(stand_in, [ding, feishu], [], {
        ding.name: {"secret": "not-the-secret"}, feishu.name: {"secret_env": ENV},
    }))
    await _one_digest(hooks)
    await _until(_robot_rows_done)
    failed = {
        row.robot_id: row.error  # type: ignore[attr-defined]
        for row in await Delivery.filter(kind=DeliveryKind.ROBOT, failed_at__isnull=False)
    }
    ding_robot = await Robot.get(kind=RobotKind.DINGTALK)
    feishu_robot = await Robot.get(kind=RobotKind.FEISHU)
    assert failed == {
        ding_robot.id: "DingTalk 310000: sign not match",
        feishu_robot.id: f"environment variable {ENV} is not set",
    }
    assert [code for code, _ in ding.answers] == [310000]  # tried once: a refusal is final
    assert feishu.answers == []
    told = Delivery.filter(chat_id=ADMIN_CHAT, key__startswith="undelivered:")
    await _until(lambda: _count_is(told, 2), 5)
    # With the secret in the environment, the next digest is signed and arrives.
    monkeypatch.setenv(ENV, FEISHU_SECRET)
    now = datetime.now(UTC) + timedelta(days=7)
    township = await Township.get(code="BL")
    await digest.queue(township, digest.Week.before(now, township.timezone), now, POLICY)
    await _until(_robot_rows_done)
    assert len(feishu.received) == 1 and feishu.answers[-1][0] == 0


async def test_robots_are_paced_apart_from_telegram(bot: Sandbox, stand_in: RobotEmulator) -> None:
    """25 posts to one DingTalk robot: 20 go in the first minute's window and the other five
    wait for it, never answered "too fast"; meanwhile Telegram's rows go at once."""
    ding = stand_in.add(RobotKind.DINGTALK, "t-ding", DING_SECRET)
    await import_text(_with_robots(stand_in, [ding], []))
    [robot] = await robots.of_township(1)
    for index in range(25):
        await robots.post([robot], f"第{index}条\n· 内容", key=f"test:{index}")
    notice = await Delivery.create(
        chat_id=-100777, kind=DeliveryKind.TEXT, payload={"text": "telegram"},
        created_at=datetime.now(UTC), not_before=datetime.now(UTC),
    )
    bot.emulator.group(-100777, "group")
    await _until(lambda: len(ding.received) == 20)
    await _until(lambda: Delivery.filter(id=notice.id, sent_at__isnull=False).exists(), 5)
    await asyncio.sleep(0.5)
    assert len(ding.received) == 20  # the 21st waits for the robot's own minute
    assert [code for code, _ in ding.answers] == [0] * 20
    pending = await Delivery.filter(kind=DeliveryKind.ROBOT, sent_at__isnull=True).count()
    assert pending == 5
