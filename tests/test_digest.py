"""The weekly digest and the monthly red/grey list against cases whose figures are worked out
by hand below, the chart as a real PNG, exactly-once queueing, and no personal data.

The week is 2026-W47 in Asia/Shanghai: Monday 16 November 00:00 (15 Nov 16:00 UTC) to
Monday 23 November 00:00 (22 Nov 16:00 UTC). Times below are UTC; "local" is UTC+8.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from conftest import make_villager
from test_cli import villagebot

from bot import cases
from bot.models import Case, Category, Delivery, DeliveryKind, Official, Township, Villager
from scheduler import digest, ranking, repeats
from scheduler.chart import PNG_SIGNATURE
from scheduler.digest import VillageLine, Week
from scheduler.policy import Policy
from scheduler.ranking import Month, Tally

NOW = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # Monday 08:00 local: the digest's hour
POLICY = Policy(quiet_hours=None)
CHANNEL = -1001000000001
NAME, PHONE = "李明", "13800001111"
DESCRIPTION = "正达溪边堆了一车建筑垃圾"


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


async def _report(villager: Villager, at: datetime, category: str = "litter") -> Case:
    change = await cases.report(
        villager, await Category.get(code=category), description=DESCRIPTION,
        photos=["F1"], at=at,
    )
    return change.case


async def _week_of_cases() -> dict[str, Case]:
    """Seven cases; the comments give what each adds to the figures."""
    li = await make_villager(1001, phone=PHONE)
    banli = await make_villager(1002, village="banli")
    lin = await Official.get(code="lin-xiuying")  # 正达村第一网格
    made: dict[str, Case] = {}

    # E: reported the week before, resolved late this Monday (counts as resolved, not on time).
    made["E"] = await _report(li, _at(10, 1))
    await cases.accept(made["E"].id, lin, at=_at(10, 2))
    await cases.resolve(made["E"].id, lin, "已清理", ["P"], at=_at(16, 3))
    # A: accepted in 1 h, resolved in 9 h, rated 5.
    made["A"] = await _report(li, _at(16, 1))
    await cases.accept(made["A"].id, lin, at=_at(16, 2))
    await cases.resolve(made["A"].id, lin, "已清理", ["P"], at=_at(16, 10))
    await cases.rate(made["A"].id, li, 5, at=_at(17, 2))
    # B: accepted late (6 h of 4), resolved in 24 h, reopened, resolved again at 48 h, rated 2.
    made["B"] = await _report(li, _at(17, 1))
    await cases.accept(made["B"].id, lin, at=_at(17, 7))
    await cases.resolve(made["B"].id, lin, "已清理", ["P"], at=_at(18, 1))
    await cases.reopen(made["B"].id, li, "还有一堆", at=_at(18, 3))
    await cases.resolve(made["B"].id, lin, "全部清走", ["P"], at=_at(19, 1))
    await cases.rate(made["B"].id, li, 2, at=_at(19, 2))
    # C: accepted in 1 h and never resolved: overdue since 20 Nov 02:00.
    made["C"] = await _report(li, _at(18, 1))
    await cases.accept(made["C"].id, lin, at=_at(18, 2))
    # D: 坂里村, never accepted: overdue since 19 Nov 05:00.
    made["D"] = await _report(banli, _at(19, 1))
    # F: Sunday 23:00 local, the week's last hour; not accepted by 22 Nov 19:00: overdue.
    made["F"] = await _report(li, _at(22, 15))
    # G: Monday 00:30 local, the next week; 24 hours to accept, so not overdue yet.
    made["G"] = await _report(li, _at(22, 16) + timedelta(minutes=30), "homestead")
    return made


async def test_the_digest_figures_equal_the_hand_count(township: None) -> None:
    made = await _week_of_cases()
    place = await Township.get(code="BL")
    week = Week.parse("2026-W47", place.timezone)
    assert week == Week.before(NOW, place.timezone)
    f = await digest.figures(place, week, NOW, POLICY, "zh-hans")

    assert (f.received, f.accepted, f.resolved, f.closed) == (5, 3, 4, 2)  # A B C D F; A B C
    assert f.completion_rate == 2 / 5  # of the five reported, A and B were resolved
    assert f.satisfaction_rate == 1 / 2  # A's 5 stars count, B's 2 do not
    assert f.on_time_acceptance == 2 / 3  # A and C; B took six hours
    assert f.on_time_resolution == 3 / 4  # A, B twice; E was days late
    assert f.median_to_accept == timedelta(hours=1)  # 1, 1, 6
    assert f.median_to_resolve == timedelta(hours=36)  # 9, 24, 48, 146: (24 + 48) / 2
    assert f.reopen_rate == 1 / 4  # one reopen, four resolutions
    by_name = {line.name: line for line in f.villages}
    assert by_name["正达村"] == VillageLine(
        "正达村", received=4, resolved=4, overdue=2, completed=2, rated=2, satisfied=1
    )
    assert by_name["坂里村"] == VillageLine("坂里村", received=1, resolved=0, overdue=1)
    assert by_name["高层村"] == VillageLine("高层村")
    assert f.categories == [("卫生清理", 5)]  # G, a homestead dispute, is next week's
    assert [number for number, _ in f.overdue] == [made[k].number for k in "CDF"]
    assert [unit for _, unit in f.overdue] == ["正达村第一网格", "坂里村第一网格", "正达村第一网格"]
    assert f.repeats == [("正达村", "卫生清理", 4)]
    assert f.daily == [
        (date(2026, 11, 16), 1, 2),  # A; E and A resolved
        (date(2026, 11, 17), 1, 0),  # B
        (date(2026, 11, 18), 1, 1),  # C; B
        (date(2026, 11, 19), 1, 1),  # D; B again
        (date(2026, 11, 20), 0, 0),
        (date(2026, 11, 21), 0, 0),
        (date(2026, 11, 22), 1, 0),  # F at 23:00 local
    ]


async def test_a_quiet_week_has_no_rates_rather_than_zero(township: None) -> None:
    place = await Township.get(code="BL")
    f = await digest.figures(place, Week.parse("2026-W47", place.timezone), NOW, POLICY, "en")
    assert (f.received, f.completion_rate, f.median_to_accept, f.overdue) == (0, None, None, [])
    words = digest.render(f, "en")
    assert "Completion rate: –" in words and "No open case is overdue" in words


def _png_size(image: bytes) -> tuple[int, int]:
    assert image.startswith(PNG_SIGNATURE)
    length, kind = struct.unpack(">I4s", image[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", image[16:24])  # type: ignore[return-value]


async def test_the_digest_goes_to_the_channel_once_with_a_chart_and_no_personal_data(
    township: None,
) -> None:
    made = await _week_of_cases()
    assert await digest.due(NOW - timedelta(minutes=1), POLICY) == 0  # last week's was sent
    # (nothing for W46 either: its moment, 16 Nov 08:00 local, is past the catch-up grace)
    assert await Delivery.filter(key__startswith="digest:").count() == 0

    assert await digest.due(NOW, POLICY) == 1
    assert await digest.due(NOW + timedelta(hours=3), POLICY) == 0
    rows = await Delivery.filter(chat_id=CHANNEL).order_by("id")
    # One message, the figures as the chart's caption: the channel is told once.
    assert [row.kind for row in rows] == [DeliveryKind.TEXT]
    (words,) = rows
    assert words.key == "digest:BL:2026-W47"
    width, height = _png_size(base64.b64decode(words.payload["upload"]))
    assert width > 400 and height > 200

    body = words.payload["text"]
    assert "2026-W47" in body and "办结率：40%" in body and "满意率：50%" in body
    assert all(made[k].number in body for k in "CDF")
    assert "· 正达村：卫生清理 4 件" in body
    for personal in (NAME, PHONE, DESCRIPTION, "林秀英"):
        assert personal not in body
    # The assignee's name is personal too; units stand for the people in them.


async def test_a_digest_missed_while_down_is_caught_up_within_the_grace(township: None) -> None:
    await _week_of_cases()
    late = NOW + POLICY.catch_up - timedelta(minutes=1)
    assert await digest.due(late, POLICY) == 1
    assert await Delivery.filter(key="digest:BL:2026-W47").count() == 1
    too_late = NOW + timedelta(days=7) + POLICY.catch_up + timedelta(minutes=1)
    assert await digest.due(too_late, POLICY) == 0  # W48's moment is past the grace
    assert await Delivery.filter(key="digest:BL:2026-W48").count() == 0


async def test_a_repeat_problem_warns_the_dispatchers_once(township: None) -> None:
    li = await make_villager(1001)
    policy = Policy(quiet_hours=None, repeat_threshold=3)
    made = [await _report(li, _at(16, 1) + timedelta(hours=i)) for i in range(2)]
    assert await repeats.warn(_at(16, 5), policy) == 0
    made.append(await _report(li, _at(18, 1)))
    assert await repeats.warn(_at(18, 1), policy) == 1
    assert await repeats.warn(_at(18, 2), policy) == 0  # said once
    dispatchers = {
        o.account_id  # type: ignore[attr-defined]
        for o in await Official.filter(role="dispatcher", account_id__isnull=False)
    }
    rows = await Delivery.filter(key__startswith="repeat:")
    assert {row.chat_id for row in rows} == dispatchers
    assert all(c.number in rows[0].payload["text"] for c in made)
    # A fourth case in the same week is part of the same problem: no second warning.
    await _report(li, _at(19, 1))
    assert await repeats.warn(_at(19, 1), policy) == 0
    # After a quiet week, three more are a new problem.
    later = [await _report(li, _at(26, 1) + timedelta(hours=i)) for i in range(3)]
    assert await repeats.warn(_at(26, 5), policy) == 1
    newest = await Delivery.filter(key__startswith="repeat:").order_by("-id").first()
    assert newest is not None and later[-1].number in newest.payload["text"]


async def test_a_confidential_repeat_problem_warns_its_own_unit_only(township: None) -> None:
    """Its own office's members hear of it: no dispatcher, no channel, no group robot."""
    li = await make_villager(1001)
    policy = Policy(quiet_hours=None, repeat_threshold=3)
    made = [await _report(li, _at(16, 1) + timedelta(hours=i), "misconduct") for i in range(3)]
    assert await repeats.warn(_at(16, 5), policy) == 1
    office = {
        o.account_id  # type: ignore[attr-defined]
        for o in await Official.filter(units__code="jiwei", active=True, account_id__isnull=False)
    }
    assert office, "the township fixture binds the office's members"
    rows = await Delivery.filter(key__startswith="repeat:")
    assert {row.chat_id for row in rows} == office
    assert all(row.kind == DeliveryKind.TEXT for row in rows), "no group robot"
    assert all(c.number in rows[0].payload["text"] for c in made)


def test_the_score_weighs_what_a_unit_did() -> None:
    perfect = Tally(accepted=4, accepted_on_time=4, resolved=4, resolved_on_time=4,
                    rated=2, satisfied=2)
    assert perfect.score() == 100
    # Half on time to accept (one missed outright), all resolved late, half satisfied,
    # one reopen in two resolutions.
    poor = Tally(accepted=1, accepted_on_time=1, missed=1, resolved=2, resolved_on_time=0,
                 rated=2, satisfied=1, reopened=1)
    assert poor.score() == (30 * 0.5 + 30 * 0 + 30 * 0.5 + 10 * 0.5)
    # What a unit had nothing of does not count against it.
    unrated = Tally(accepted=3, accepted_on_time=3)
    assert unrated.score() == 100
    assert Tally().score() is None


async def test_the_red_grey_list_ranks_units_with_enough_cases(township: None) -> None:
    month = Month.parse("2026-11", "Asia/Shanghai")
    li = await make_villager(1001)
    banli = await make_villager(1002, village="banli")
    lin, wu = await Official.get(code="lin-xiuying"), await Official.get(code="wu-lijuan")
    for i in range(3):
        mine = await _report(li, _at(2 + i, 1))
        await cases.accept(mine.id, lin, at=_at(2 + i, 2))  # on time
        theirs = await _report(banli, _at(2 + i, 1))
        await cases.accept(theirs.id, wu, at=_at(2 + i, 8))  # late
    place = await Township.get(code="BL")
    result = await ranking.rank(place, month, "zh-hans")
    assert [name for name, _ in result.ranked] == ["正达村第一网格", "坂里村第一网格"]
    assert [round(score) for _, score in result.ranked] == [100, 0]

    assert await ranking.due(datetime(2026, 12, 1, 0, tzinfo=UTC), POLICY) == 1
    assert await ranking.due(datetime(2026, 12, 1, 5, tzinfo=UTC), POLICY) == 0
    [row] = await Delivery.filter(key="redgrey:BL:2026-11")
    body = row.payload["text"]
    assert row.chat_id == CHANNEL
    assert body.index("正达村第一网格") < body.index("⚪") < body.index("坂里村第一网格")
    assert NAME not in body and "林秀英" not in body


async def test_the_running_bot_sends_the_digest_to_telegram_once(database_url: str) -> None:
    from bot.sandbox import Sandbox

    clock = [datetime(2026, 11, 18, 0, 0, tzinfo=UTC)]  # a Wednesday: nothing due
    async with Sandbox(database_url, scheduler=True, clock=lambda: clock[0]) as sandbox:
        channel = sandbox.emulator.group(CHANNEL, "坂里乡工作群")
        li = await make_villager(1001, phone=PHONE)
        await _report(li, _at(18, 1))
        # The bot was down over Monday 08:00; it catches up as it starts again.
        clock[0] = NOW + timedelta(hours=2)
        await sandbox.restart_bot()
        chart = await sandbox.emulator.wait_for(CHANNEL, "2026-W47", timeout=10)
        assert "photo" in chart, "the figures are the chart's caption"
        assert "新收 1 件" in chart["caption"] and PHONE not in chart["caption"]
        await sandbox.restart_bot()
        supervisor = sandbox.app.supervisor  # type: ignore[union-attr]
        assert supervisor is not None
        for _ in range(100):
            if supervisor.last_tick is not None:
                break
            await asyncio.sleep(0.05)
        assert supervisor.last_tick is not None and supervisor.last_tick.digests == 0
        await sandbox.app.courier.drained()  # type: ignore[union-attr]
        assert len(sandbox.emulator.bot_messages(channel.chat_id)) == 1


async def test_the_digest_command_prints_or_queues_it_once(
    township: None, database_url: str, tmp_path: Path
) -> None:
    await _week_of_cases()
    chart = tmp_path / "week.png"

    def digest_command(*args: str) -> subprocess.CompletedProcess[str]:
        return villagebot("digest", "--township", "BL", *args, database_url=database_url,
                          cwd=tmp_path)

    shown = digest_command("--week", "2026-W47", "--dry-run", "--chart", str(chart))
    assert shown.returncode == 0, shown.stderr
    assert "办结率：40%" in shown.stdout and PHONE not in shown.stdout
    assert chart.read_bytes().startswith(PNG_SIGNATURE)
    assert await Delivery.filter(key__startswith="digest:").count() == 0

    queued = digest_command("--week", "2026-W47")
    assert queued.returncode == 0 and "queued" in queued.stdout
    again = digest_command("--week", "2026-W47")
    assert again.returncode == 0 and "already queued" in again.stdout
    assert await Delivery.filter(key="digest:BL:2026-W47").count() == 1

    wrong = digest_command("--week", "47")
    assert wrong.returncode != 0 and "2026-W47" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
