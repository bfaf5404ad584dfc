"""The case state machine on the real database: numbering, routing, transitions, history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_villager as _villager
from tortoise import connections
from tortoise.exceptions import IntegrityError, OperationalError

from bot import cases
from bot.cases import CaseRefused, Refusal
from bot.models import Case, CaseEvent, CaseStatus, Category, Official, Villager

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


async def _official(code: str) -> Official:
    return await Official.get(code=code)


async def _report(villager: Villager, category: str = "litter", **extra: object) -> Case:
    change = await cases.report(
        villager, await Category.get(code=category), description="正达溪水葫芦长满水面",
        photos=["F1"], at=AT, **extra,  # type: ignore[arg-type]
    )
    return change.case


async def test_a_report_is_numbered_routed_and_recorded(township: None) -> None:
    villager = await _villager()
    case = await _report(villager)
    await case.fetch_related("unit")
    assert case.number == "BL-2026-000001"
    assert case.unit.code == "zhengda-g1"
    assert case.status == CaseStatus.NEW
    category = await Category.get(code="litter")
    assert case.accept_by == AT + timedelta(hours=category.accept_hours)  # type: ignore[operator]
    [event] = await cases.history(case.id)
    assert (event.action, event.from_status, event.to_status) == ("report", None, "new")
    assert (await _report(villager)).number == "BL-2026-000002"


async def test_without_a_grid_the_village_unit_is_responsible(township: None) -> None:
    case = await _report(await _villager(grid=False))
    await case.fetch_related("unit")
    assert case.unit.code == "zhengda-committee"


async def test_a_confidential_case_never_reaches_the_village(township: None) -> None:
    case = await _report(await _villager(), category="misconduct")
    await case.fetch_related("unit")
    assert case.unit.code == "jiwei"
    assert case.unit.village_id is None  # type: ignore[attr-defined]


async def test_concurrent_reports_get_numbers_without_gaps_or_repeats(township: None) -> None:
    villager = await _villager()
    made = await asyncio.gather(*(_report(villager) for _ in range(12)))
    numbers = sorted(case.number for case in made)
    assert numbers == [f"BL-2026-{n:06d}" for n in range(1, 13)]


async def test_two_officials_accepting_at_once_one_wins(township: None) -> None:
    case = await _report(await _villager())
    lin, su = await _official("lin-xiuying"), await _official("su-jinqiao")
    results = await asyncio.gather(
        cases.accept(case.id, lin, at=AT), cases.accept(case.id, su, at=AT),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, cases.Change)]
    losers = [r for r in results if isinstance(r, CaseRefused)]
    assert len(winners) == 1 and len(losers) == 1
    assert losers[0].reason == Refusal.TAKEN
    stored = await Case.get(id=case.id)
    assert stored.assignee_id == winners[0].case.assignee_id  # type: ignore[attr-defined]
    assert await CaseEvent.filter(case_id=case.id, action="accept").count() == 1
    late = await _official("zheng-guohua")
    with pytest.raises(CaseRefused):
        await cases.accept(case.id, late)


async def test_an_official_of_another_village_cannot_touch_the_case(township: None) -> None:
    case = await _report(await _villager())
    outsider = await _official("wu-lijuan")  # 坂里村 grid worker
    for attempt in (
        cases.accept(case.id, outsider),
        cases.decline(case.id, outsider, "不归我管"),
        cases.escalate(case.id, outsider),
    ):
        with pytest.raises(CaseRefused) as refused:
            await attempt
        assert refused.value.reason == Refusal.NOT_ALLOWED
    stored = await Case.get(id=case.id)
    assert (stored.status, stored.version) == (CaseStatus.NEW, 0)


async def test_decline_needs_a_reason_and_goes_up_one_level(township: None) -> None:
    case = await _report(await _villager())
    lin = await _official("lin-xiuying")
    with pytest.raises(CaseRefused) as refused:
        await cases.decline(case.id, lin, "  ")
    assert refused.value.reason == Refusal.NEEDS_REASON
    change = await cases.decline(case.id, lin, "需要村里协调")
    await change.case.fetch_related("unit")
    assert change.case.unit.code == "zhengda-committee"
    assert change.case.escalation_level == 1
    assert change.event.note == "需要村里协调"


async def test_escalation_climbs_until_there_is_no_one_above(township: None) -> None:
    case = await _report(await _villager())
    seen = []
    while True:
        try:
            change = await cases.escalate(case.id, None, "逾期未受理")
        except CaseRefused as refused:
            assert refused.reason == Refusal.NO_SUPERVISOR
            break
        await change.case.fetch_related("unit")
        seen.append(change.case.unit.code)
    assert seen[:2] == ["zhengda-committee", "zhengda-team"]
    assert seen[-1] == "dispatch"


async def test_the_whole_loop_with_evidence_rating_and_reopen(township: None) -> None:
    villager = await _villager()
    case = await _report(villager)
    lin = await _official("lin-xiuying")
    await cases.accept(case.id, lin, at=AT)
    await cases.add_note(case.id, lin, "已联系保洁队", public=True)
    await cases.add_note(case.id, lin, "需要打捞船", public=False)
    with pytest.raises(CaseRefused) as refused:
        await cases.resolve(case.id, lin, "已清理", [])
    assert refused.value.reason == Refusal.NEEDS_EVIDENCE
    await cases.resolve(case.id, lin, "已清理", ["P1", "P2"])
    with pytest.raises(CaseRefused) as refused:
        await cases.rate(case.id, villager, 6)
    assert refused.value.reason == Refusal.BAD_RATING
    reopened = await cases.reopen(case.id, villager, "还有一半没清")
    assert reopened.case.status == CaseStatus.ACCEPTED
    assert reopened.case.assignee_id == lin.id  # type: ignore[attr-defined]
    assert reopened.case.reopen_count == 1
    await cases.resolve(case.id, lin, "全部清理完毕", ["P3"])
    closed = await cases.rate(case.id, villager, 5, "很满意")
    assert (closed.case.status, closed.case.rating) == (CaseStatus.CLOSED, 5)
    actions = [e.action for e in await cases.history(case.id)]
    assert actions == [
        "report", "accept", "note", "note", "resolve", "reopen", "resolve", "rate"
    ]
    public = [e.action for e in await cases.history(case.id, public_only=True)]
    assert public.count("note") == 1
    with pytest.raises(CaseRefused) as refused:
        await cases.reopen(case.id, villager, "again")
    assert refused.value.reason == Refusal.WRONG_STATE


async def test_only_the_assignee_resolves_and_only_the_reporter_rates(township: None) -> None:
    villager = await _villager()
    other = await _villager(1002)
    case = await _report(villager)
    lin, chen = await _official("lin-xiuying"), await _official("chen-jianping")
    await cases.accept(case.id, lin)
    with pytest.raises(CaseRefused):
        await cases.resolve(case.id, chen, "done", ["P"])
    await cases.resolve(case.id, lin, "done", ["P"])
    with pytest.raises(CaseRefused) as refused:
        await cases.rate(case.id, other, 5)
    assert refused.value.reason == Refusal.NOT_ALLOWED
    closed = await cases.close(case.id)
    assert closed.case.status == CaseStatus.CLOSED and closed.event.actor_id is None  # type: ignore[attr-defined]


async def test_assignment_by_a_dispatcher_with_a_deadline(township: None) -> None:
    case = await _report(await _villager())
    su, lin, chen = [await _official(c) for c in ("su-jinqiao", "lin-xiuying", "chen-jianping")]
    deadline = AT + timedelta(days=3)
    with pytest.raises(CaseRefused):
        await cases.assign(case.id, chen, lin, deadline)  # a member may not assign
    change = await cases.assign(case.id, su, chen, deadline)
    assert change.case.assignee_id == chen.id  # type: ignore[attr-defined]
    assert change.case.resolve_by == deadline
    assert change.case.status == CaseStatus.ACCEPTED


async def test_the_database_refuses_to_change_or_delete_the_history(township: None) -> None:
    villager = await _villager()
    case = await _report(villager)
    await cases.accept(case.id, await _official("lin-xiuying"), at=AT + timedelta(hours=1))
    events = await cases.history(case.id)
    refused = (IntegrityError, OperationalError)
    with pytest.raises(refused):
        await CaseEvent.filter(id=events[0].id).update(note="改过的")
    with pytest.raises(refused):
        await CaseEvent.filter(id=events[1].id).delete()
    with pytest.raises(refused):  # no foreign key takes the history with the case
        await Case.filter(id=case.id).delete()
    connection = connections.get("default")
    for statement in ("UPDATE case_event SET action = 'close'", "DELETE FROM case_event"):
        with pytest.raises(refused):
            await connection.execute_query(statement)
    assert [(e.id, e.action, e.note) for e in await cases.history(case.id)] == [
        (e.id, e.action, e.note) for e in events
    ]
    assert await Case.filter(id=case.id).exists()
