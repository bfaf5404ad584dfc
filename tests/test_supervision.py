"""督办 on an injected clock: reminders, quiet hours, escalation, overdue levels, auto-close.

Every test moves time by handing the sweep a moment; nothing sleeps. Most look at the outbox
rows the sweep queues, which are what the courier will send (the courier itself is tested in
test_delivery); the last ones run the real bot (`sandbox`) and read what arrives in the chats.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from backoffice import official
from conftest import make_villager

from bot import cases, delivery
from bot.emulator import buttons, said
from bot.models import (
    Account,
    Case,
    CaseEvent,
    CaseStatus,
    Category,
    Delivery,
    Official,
    Role,
    Township,
    Unit,
    Village,
    Villager,
)
from bot.sandbox import Phone, Sandbox
from scheduler.policy import Policy
from scheduler.service import Supervisor
from scheduler.supervision import SweepReport, supervise, sweep

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # Friday 17:00 in the township
DAYTIME = Policy(quiet_hours=None)
COMMITTEE_GROUP = -1001000000101
DISPATCH_GROUP = -1001000000201


async def _report(villager: Villager, category: str = "litter", at: datetime = AT) -> Case:
    change = await cases.report(
        villager, await Category.get(code=category), description="正达溪水葫芦长满水面",
        photos=["F1"], at=at,
    )
    return change.case


async def _account(code: str) -> int:
    official = await Official.get(code=code)
    return official.account_id  # type: ignore[attr-defined,no-any-return]


async def _reminders(case: Case) -> list[Delivery]:
    return await Delivery.filter(key__startswith=f"remind:{case.id}:").order_by("id")


async def _texts_to(chat_id: int, after_id: int = 0) -> list[str]:
    rows = await Delivery.filter(chat_id=chat_id, kind="text", id__gt=after_id).order_by("id")
    return [row.payload["text"] for row in rows]


async def _last_delivery_id() -> int:
    row = await Delivery.all().order_by("-id").first()
    return row.id if row is not None else 0


async def test_an_accept_reminder_fires_at_its_moment_and_not_before(township: None) -> None:
    case = await _report(await make_villager())
    assert case.accept_by == AT + timedelta(hours=4)
    await sweep(AT, DAYTIME)
    case = await Case.get(id=case.id)
    assert case.check_at == AT + timedelta(hours=2)  # half of the four hours to accept
    assert (await sweep(AT + timedelta(hours=2) - timedelta(seconds=1), DAYTIME)).looked_at == 0
    assert await _reminders(case) == []

    report = await sweep(AT + timedelta(hours=2), DAYTIME)
    assert report.reminders == 1
    [reminder] = await _reminders(case)
    assert reminder.chat_id == await _account("lin-xiuying")  # the grid has no group chat
    assert case.number in reminder.payload["text"]
    assert reminder.card  # its buttons are edited with the case, like every card
    # Looking again, or a moment later, sends nothing more; the deadline is next.
    await sweep(AT + timedelta(hours=2), DAYTIME)
    await sweep(AT + timedelta(hours=3), DAYTIME)
    assert len(await _reminders(case)) == 1
    assert (await Case.get(id=case.id)).check_at == AT + timedelta(hours=4)


async def test_resolve_reminders_at_half_time_and_two_hours_before(township: None) -> None:
    case = await _report(await make_villager())
    lin = await Official.get(code="lin-xiuying")
    accepted_at = AT + timedelta(hours=1)
    await cases.accept(case.id, lin, at=accepted_at)
    case = await Case.get(id=case.id)
    window = case.resolve_by - accepted_at  # type: ignore[operator]
    half, late = accepted_at + window / 2, case.resolve_by - timedelta(hours=2)  # type: ignore[operator]

    await sweep(accepted_at, DAYTIME)
    await sweep(half - timedelta(minutes=1), DAYTIME)
    assert await _reminders(case) == []
    await sweep(half, DAYTIME)
    await sweep(late - timedelta(minutes=1), DAYTIME)
    assert [r.key.split(":")[-2] for r in await _reminders(case)] == ["0"]  # type: ignore[union-attr]
    await sweep(late, DAYTIME)
    reminders = await _reminders(case)
    assert [r.key.split(":")[-2] for r in reminders] == ["0", "1"]  # type: ignore[union-attr]
    assert {r.chat_id for r in reminders} == {lin.account_id}  # type: ignore[attr-defined]


async def test_quiet_hours_hold_reminders_until_morning_but_not_emergencies(
    township: None,
) -> None:
    policy = Policy()  # quiet 22:00-07:00 township time
    villager = await make_villager()
    # Homestead disputes: 24 hours to accept; half time is 05:00 in the township.
    dispute = await _report(villager, "homestead")
    night = AT + timedelta(hours=12)  # 05:00 local
    await sweep(AT, policy)
    report = await sweep(night, policy)
    assert (report.reminders, report.deferred) == (0, 1)
    assert await _reminders(dispute) == []
    morning = AT + timedelta(hours=14)  # 07:00 local
    assert (await Case.get(id=dispute.id)).check_at == morning
    await sweep(morning - timedelta(minutes=1), policy)
    assert await _reminders(dispute) == []
    await sweep(morning, policy)
    assert len(await _reminders(dispute)) == 1

    # A fire at 22:00 local: half of its hour to accept falls in the quiet hours, and counts.
    evening = AT + timedelta(hours=5)
    fire = await _report(villager, "fire", at=evening)
    await sweep(evening, policy)
    report = await sweep(evening + timedelta(minutes=30), policy)
    assert (report.reminders, report.deferred) == (1, 0)
    assert len(await _reminders(fire)) == 1


async def test_an_unaccepted_case_escalates_up_two_levels(township: None) -> None:
    case = await _report(await make_villager())
    await sweep(AT, DAYTIME)
    first_deadline = AT + timedelta(hours=4)
    assert (await sweep(first_deadline - timedelta(seconds=1), DAYTIME)).escalations == 0

    before = await _last_delivery_id()
    report = await sweep(first_deadline, DAYTIME)
    assert report.escalations == 1
    case = await Case.get(id=case.id).prefetch_related("unit")
    assert (case.unit.code, case.escalation_level) == ("zhengda-committee", 1)
    # The committee gets its full four hours from now, and its card says why it came.
    assert case.accept_by == first_deadline + timedelta(hours=4)
    [card] = await _texts_to(COMMITTEE_GROUP, before)
    assert case.number in card

    await sweep(first_deadline, DAYTIME)  # plans the committee's reminders and deadline
    assert (await sweep(first_deadline, DAYTIME)).escalations == 0
    report = await sweep(case.accept_by, DAYTIME)  # type: ignore[arg-type]
    assert report.escalations == 1
    case = await Case.get(id=case.id).prefetch_related("unit")
    assert (case.unit.code, case.escalation_level, case.status) == (
        "zhengda-team", 2, CaseStatus.NEW,
    )
    events = await CaseEvent.filter(case_id=case.id, action="escalate").order_by("id")
    assert [(e.actor_id, e.at) for e in events] == [  # type: ignore[attr-defined]
        (None, first_deadline),
        (None, first_deadline + timedelta(hours=4)),
    ]


async def test_an_overdue_case_is_supervised_one_level_up_each_day(township: None) -> None:
    case = await _report(await make_villager())
    lin = await Official.get(code="lin-xiuying")
    await cases.accept(case.id, lin, at=AT + timedelta(hours=1))
    case = await Case.get(id=case.id)
    deadline = case.resolve_by
    assert deadline is not None
    await sweep(AT + timedelta(hours=1), DAYTIME)

    before = await _last_delivery_id()
    assert (await sweep(deadline, DAYTIME)).overdue == 1
    case = await Case.get(id=case.id)
    assert (case.status, case.overdue_level, case.assignee_id) == (  # type: ignore[attr-defined]
        CaseStatus.ACCEPTED, 1, lin.id,
    )
    # Level 1: the committee's group, the township's dispatcher, and the assignee.
    assert len(await _texts_to(COMMITTEE_GROUP, before)) == 1
    assert len(await _texts_to(await _account("su-jinqiao"), before)) == 1
    [told] = await _texts_to(lin.account_id, before)  # type: ignore[attr-defined]
    assert case.number in told

    assert (await sweep(deadline + timedelta(hours=23), DAYTIME)).overdue == 0
    before = await _last_delivery_id()
    assert (await sweep(deadline + timedelta(hours=24), DAYTIME)).overdue == 1
    # Level 2: the township team, whose members are told privately.
    team = await Unit.get(code="zhengda-team")
    members = {o.account_id for o in await team.members.all()}  # type: ignore[attr-defined]
    assert {r.chat_id for r in await Delivery.filter(id__gt=before, kind="text")} == (
        members | {lin.account_id}  # type: ignore[attr-defined]
    )
    before = await _last_delivery_id()
    assert (await sweep(deadline + timedelta(hours=48), DAYTIME)).overdue == 1
    assert len(await _texts_to(DISPATCH_GROUP, before)) == 1
    # The dispatch centre is the top: nothing further, ever.
    assert (await sweep(deadline + timedelta(days=30), DAYTIME)).overdue == 0
    assert (await Case.get(id=case.id)).overdue_level == 3
    assert await CaseEvent.filter(case_id=case.id, action="overdue").count() == 3


async def test_a_resolved_case_nobody_rates_closes_after_seven_days(township: None) -> None:
    villager = await make_villager()
    case = await _report(villager)
    lin = await Official.get(code="lin-xiuying")
    await cases.accept(case.id, lin, at=AT + timedelta(hours=1))
    resolved_at = AT + timedelta(hours=3)
    await cases.resolve(case.id, lin, "已清理", ["F2"], at=resolved_at)
    await sweep(resolved_at, DAYTIME)
    assert (await sweep(resolved_at + timedelta(days=7, seconds=-1), DAYTIME)).closed == 0
    before = await _last_delivery_id()
    assert (await sweep(resolved_at + timedelta(days=7), DAYTIME)).closed == 1
    case = await Case.get(id=case.id)
    assert (case.status, case.rating, case.closed_at) == (
        CaseStatus.CLOSED, None, resolved_at + timedelta(days=7),
    )
    [told] = await _texts_to(villager.account_id, before)  # type: ignore[attr-defined]
    assert case.number in told and "7" in told
    assert (await sweep(resolved_at + timedelta(days=8), DAYTIME)).looked_at == 0


async def test_a_reopened_case_gets_a_new_resolve_deadline(township: None) -> None:
    villager = await make_villager()
    case = await _report(villager)
    lin = await Official.get(code="lin-xiuying")
    await cases.accept(case.id, lin, at=AT + timedelta(hours=1))
    await cases.resolve(case.id, lin, "已清理", ["F2"], at=AT + timedelta(hours=3))
    later = AT + timedelta(days=3)  # past the first resolve deadline
    await cases.reopen(case.id, villager, "还有垃圾", at=later)
    case = await Case.get(id=case.id)
    assert case.resolve_by == later + timedelta(hours=48)
    assert (await sweep(later, DAYTIME)).overdue == 0


async def test_nothing_repeats_after_a_restart_or_with_two_schedulers(township: None) -> None:
    villager = await make_villager()
    made = [await _report(villager, at=AT + timedelta(minutes=i)) for i in range(6)]
    lin = await Official.get(code="lin-xiuying")
    for case in made[:3]:
        await cases.accept(case.id, lin, at=AT + timedelta(hours=1))
    moments = [AT + timedelta(hours=h) for h in (1, 2, 3, 5, 30, 60, 80)]

    async def run(supervisors: list[Supervisor]) -> None:
        for moment in moments:
            clock[0] = moment
            await asyncio.gather(*(s.tick() for s in supervisors))

    clock = [AT]
    await run([Supervisor(DAYTIME, clock=lambda: clock[0])])
    once = (
        sorted(r.key for r in await Delivery.filter(key__isnull=False)),  # type: ignore[type-var]
        await CaseEvent.all().count(),
        await Delivery.all().count(),
    )
    assert once[0] and once[1] > 6 + 3
    # A restart (a new scheduler on the same database) and a second one at the same time,
    # going over the same moments again: nothing new is due, nothing is sent twice.
    await run([Supervisor(DAYTIME, clock=lambda: clock[0]) for _ in range(2)])
    again = (
        sorted(r.key for r in await Delivery.filter(key__isnull=False)),  # type: ignore[type-var]
        await CaseEvent.all().count(),
        await Delivery.all().count(),
    )
    assert again == once


async def test_two_schedulers_at_once_escalate_and_remind_once(township: None) -> None:
    villager = await make_villager()
    made = [await _report(villager, at=AT) for _ in range(8)]
    await sweep(AT, DAYTIME)
    first, second = Supervisor(DAYTIME, clock=lambda: AT + timedelta(hours=2)), Supervisor(
        DAYTIME, clock=lambda: AT + timedelta(hours=2)
    )
    await asyncio.gather(first.tick(), second.tick())
    for case in made:
        assert len(await _reminders(case)) == 1
    both = [Supervisor(DAYTIME, clock=lambda: AT + timedelta(hours=4)) for _ in range(2)]
    reports = await asyncio.gather(*(s.tick() for s in both))
    assert sum(r.sweep.escalations for r in reports) == len(made)
    for case in made:
        assert await CaseEvent.filter(case_id=case.id, action="escalate").count() == 1



async def test_a_sweep_that_read_the_case_before_another_escalated_it_leaves_it_alone(
    township: None,
) -> None:
    """Two schedulers read the same due case; the one that acts second must not escalate the
    case the first has already moved up (its plan was made from the case as it was)."""
    case = await _report(await make_villager())
    await sweep(AT, DAYTIME)
    due = AT + timedelta(hours=4)
    stale = await Case.get(id=case.id).prefetch_related("category", "township")
    assert (await sweep(due, DAYTIME)).escalations == 1  # the other scheduler, first
    report = SweepReport()
    await supervise(stale, due, DAYTIME, report)
    assert report.escalations == 0
    moved = await Case.get(id=case.id).prefetch_related("unit")
    assert (moved.unit.code, moved.escalation_level) == ("zhengda-committee", 1)
    assert await CaseEvent.filter(case_id=case.id, action="escalate").count() == 1

async def test_a_reminder_planned_from_a_case_since_accepted_is_not_sent(
    township: None,
) -> None:
    """The sweep read the case, then its unit accepted it: the reminder to accept, planned
    from the case as read, goes nowhere, and the accept's own next moment stands."""
    case = await _report(await make_villager())
    await sweep(AT, DAYTIME)
    due = AT + timedelta(hours=2)
    stale = await Case.get(id=case.id).prefetch_related("category", "township")
    accepted = await cases.accept(case.id, await Official.get(code="lin-xiuying"), at=due)
    report = SweepReport()
    await supervise(stale, due, DAYTIME, report)
    assert report.reminders == 0
    assert await _reminders(case) == []
    assert (await Case.get(id=case.id)).check_at == accepted.case.check_at == due


async def test_a_broken_case_does_not_hold_back_the_others_in_its_chunk(township: None) -> None:
    """A case the sweep cannot handle (its village moved to another township, which no
    directory read for the batch knows) is reported; the rest of its chunk is done."""
    villager = await make_villager()
    made = [await _report(villager, at=AT + timedelta(seconds=i)) for i in range(4)]
    await sweep(AT + timedelta(seconds=4), DAYTIME)
    elsewhere = await Township.create(code="XX", name="别处镇")
    broken = made[1]
    await Case.filter(id=broken.id).update(
        village_id=(await Village.create(township=elsewhere, code="far", name="远村")).id
    )
    before = await CaseEvent.all().count()
    report = await sweep(AT + timedelta(hours=2, seconds=4), DAYTIME)
    assert (report.looked_at, report.reminders) == (4, 3)
    assert [error.split(":")[0] for error in report.errors] == [broken.number]
    for case in made:
        assert len(await _reminders(case)) == (0 if case is broken else 1)
    assert await CaseEvent.all().count() == before
    assert (await Case.get(id=broken.id)).check_at == AT + timedelta(hours=2, seconds=1)  # again


# ---- confidential cases (清风) and personal data ------------------------------------------

JIWEI_GROUP = -1001000000202
PHONE = "+8613800000001"


async def _chats_after(before: int) -> set[int]:
    return {row.chat_id for row in await Delivery.filter(id__gt=before, kind="text")}


async def _jiwei_member(code: str, account_id: int, name: str) -> Official:
    """One more official of the discipline office, besides its leader 王清."""
    jiwei = await Unit.get(code="jiwei")
    account = await Account.create(id=account_id, first_name=name, language="zh-hans")
    official = await Official.create(
        township_id=jiwei.township_id, code=code, name=name, role=Role.MEMBER, account=account,  # type: ignore[attr-defined]
    )
    await official.units.add(jiwei)
    return official


async def test_an_unaccepted_confidential_case_is_told_to_its_units_leaders(
    township: None,
) -> None:
    case = await _report(await make_villager(phone=PHONE), "misconduct")
    await sweep(AT, DAYTIME)
    before = await _last_delivery_id()
    report = await sweep(case.accept_by, DAYTIME)  # type: ignore[arg-type]
    assert report.overdue == 1
    wang = await _account("wang-qing")
    # The discipline office's leader, who handles it and may read who reported it; never the
    # dispatchers, nor anyone of the reporter's village.
    assert await _chats_after(before) == {wang}
    [told] = await _texts_to(wang, before)
    assert case.number in told and "逾期未受理" in told and PHONE in told
    case = await Case.get(id=case.id)
    assert case.overdue_level == 1 and case.check_at is not None
    assert (await sweep(case.accept_by + timedelta(days=30), DAYTIME)).overdue == 0  # type: ignore[operator]


async def test_an_overdue_confidential_case_climbs_its_own_chain_and_says_who_was_told(
    township: None,
) -> None:
    zhou = await _jiwei_member("zhou-ming", 7001, "周明")
    case = await _report(await make_villager(phone=PHONE), "misconduct")
    await cases.accept(case.id, zhou, at=AT + timedelta(hours=1))
    await sweep(AT + timedelta(hours=1), DAYTIME)
    case = await Case.get(id=case.id)
    before = await _last_delivery_id()
    assert (await sweep(case.resolve_by, DAYTIME)).overdue == 1  # type: ignore[arg-type]
    wang = await _account("wang-qing")
    assert await _chats_after(before) == {wang, 7001}
    [told] = await _texts_to(7001, before)
    assert "已通知坂里乡纪委的单位负责人" in told and "调度员" not in told
    [supervised] = await _texts_to(wang, before)
    assert "督办" in supervised and "周明" in supervised
    # Nothing above the discipline office: nobody more, ever; never the dispatchers.
    later = case.resolve_by + timedelta(days=30)  # type: ignore[operator]
    assert (await sweep(later, DAYTIME)).overdue == 0
    assert await CaseEvent.filter(case_id=case.id, action="overdue").count() == 1


async def test_when_nobody_above_can_be_told_the_administrators_are_asked_without_the_case(
    township: None,
) -> None:
    await Unit.filter(code="jiwei").update(group_chat_id=None)
    wang = await Official.get(code="wang-qing")
    case = await _report(await make_villager(phone=PHONE), "misconduct")
    await cases.accept(case.id, wang, at=AT + timedelta(hours=1))
    await sweep(AT + timedelta(hours=1), DAYTIME)
    case = await Case.get(id=case.id)
    before = await _last_delivery_id()
    assert (await sweep(case.resolve_by, DAYTIME)).overdue == 1  # type: ignore[arg-type]
    admin = await _account("admin")
    assert await _chats_after(before) == {admin, wang.account_id}  # type: ignore[attr-defined]
    [asked] = await _texts_to(admin, before)
    assert case.number in asked and "请在名录中为坂里乡纪委指定单位负责人" in asked
    assert "水葫芦" not in asked and "李明" not in asked and PHONE not in asked
    [told] = await _texts_to(wang.account_id, before)  # type: ignore[attr-defined]
    assert "已请乡镇管理员指定督办人" in told


async def test_supervision_notices_carry_the_reporters_name_only_to_those_handling_it(
    township: None,
) -> None:
    case = await _report(await make_villager(phone=PHONE))
    lin = await Official.get(code="lin-xiuying")
    await cases.accept(case.id, lin, at=AT + timedelta(hours=1))
    case = await Case.get(id=case.id)
    await sweep(AT + timedelta(hours=1), DAYTIME)
    before = await _last_delivery_id()
    await sweep(case.resolve_by - timedelta(hours=2), DAYTIME)  # type: ignore[operator]
    [reminder] = await _texts_to(lin.account_id, before)  # type: ignore[attr-defined]
    assert "反映人：李明" in reminder and PHONE in reminder  # the assignee handles it

    before = await _last_delivery_id()
    assert (await sweep(case.resolve_by, DAYTIME)).overdue == 1  # type: ignore[arg-type]
    [committee] = await _texts_to(COMMITTEE_GROUP, before)
    [dispatcher] = await _texts_to(await _account("su-jinqiao"), before)
    for supervising in (committee, dispatcher):
        assert case.number in supervising and "正达溪水葫芦" in supervising
        assert "李明" not in supervising and PHONE not in supervising
        assert "反映人：由办理单位掌握" in supervising


# ---- through the running bot: what arrives in the chats ---------------------------------------

JIWEI_GROUP = -1001000000202


async def _opened(sandbox: Sandbox, code: str, telegram_id: int) -> tuple[Official, Phone]:
    """An official of the demo township, bound to an account whose chat with the bot is open."""
    phone = await official(sandbox, code, telegram_id)
    return await Official.get(code=code), phone


async def _reporter(sandbox: Sandbox) -> Villager:
    """李明 of Zhengda grid 1 with his phone number, his chat with the bot open."""
    villager = await make_villager(phone=PHONE)
    phone = sandbox.phone(1001, "李明")
    await phone.send("/help")
    await phone.expect("/report")
    return villager


def _mentioning(sandbox: Sandbox, chat_id: int, number: str) -> list[str]:
    return [
        said(message)
        for message in sandbox.emulator.messages(chat_id)
        if number in said(message)
    ]


async def test_confidential_supervision_arrives_in_its_own_leaders_chats(
    sandbox: Sandbox,
) -> None:
    """The overdue misconduct case, supervised with the bot running: 王清, the discipline
    office's leader, reads the 督办 in his chat, the assignee reads who was told, and neither
    the dispatcher nor anyone of the reporter's village hears of it."""
    jiwei = sandbox.emulator.group(JIWEI_GROUP, "坂里乡纪委")
    committee = sandbox.emulator.group(COMMITTEE_GROUP, "正达村两委")
    dispatch = sandbox.emulator.group(DISPATCH_GROUP, "坂里乡调度中心")
    _, wang = await _opened(sandbox, "wang-qing", 9301)
    _, su = await _opened(sandbox, "su-jinqiao", 9002)
    _, lin = await _opened(sandbox, "lin-xiuying", 9101)
    zhou = await _jiwei_member("zhou-ming", 7001, "周明")
    zhou_phone = sandbox.phone(7001, "周明")
    await zhou_phone.send("/help")
    await zhou_phone.expect("/start")
    at = cases.now()  # the bot's own steps happen now: the sweeps follow from there
    case = await _report(await _reporter(sandbox), "misconduct", at=at)
    delivery.wake()
    await sandbox.emulator.wait_for(jiwei.chat_id, case.number)
    await cases.accept(case.id, zhou, at=at + timedelta(hours=1))
    await sweep(at + timedelta(hours=1), DAYTIME)
    case = await Case.get(id=case.id)
    assert (await sweep(case.resolve_by, DAYTIME)).overdue == 1  # type: ignore[arg-type]
    delivery.wake()
    supervised = await wang.expect("督办", timeout=10)
    assert case.number in supervised["text"] and "周明" in supervised["text"]
    told = await zhou_phone.expect("已通知坂里乡纪委的单位负责人", timeout=10)
    assert case.number in told["text"] and "调度员" not in told["text"]
    await sandbox.app.courier.drained()
    for chat_id in (su.chat_id, lin.chat_id, committee.chat_id, dispatch.chat_id):
        assert _mentioning(sandbox, chat_id, case.number) == [], chat_id


@pytest.mark.parametrize("anonymous", [True, False], ids=["anonymous", "named"])
async def test_the_reporters_name_and_phone_reach_only_those_handling_the_case(
    sandbox: Sandbox, anonymous: bool
) -> None:
    """李明's report at grid 1, through the running bot: the card, the dispatcher's /pool and
    the timeline it opens, the assignee's /tasks and timeline, and the overdue notices to the
    committee, its leader and the dispatcher. Named, only 林秀英 (grid 1's member, then the
    assignee) reads his name and number; anonymous, no official ever does."""
    committee = sandbox.emulator.group(COMMITTEE_GROUP, "正达村两委")
    lin_official, lin = await _opened(sandbox, "lin-xiuying", 9101)
    _, su = await _opened(sandbox, "su-jinqiao", 9002)
    _, zheng = await _opened(sandbox, "zheng-guohua", 9201)
    villager = await _reporter(sandbox)
    change = await cases.report(
        villager, await Category.get(code="litter"), description="正达溪水葫芦长满水面",
        anonymous=anonymous,
    )
    case = change.case
    delivery.wake()
    card = await lin.expect(case.number)
    assert ("反映人：匿名" in card["text"]) is anonymous

    await su.send("/pool")
    await su.expect("待受理的事项")
    await su.tap(case.number)
    await su.expect("办理经过")

    await lin.tap("✅ 受理", on=card)
    await sandbox.emulator.wait_for(lin.chat_id, "林秀英已受理", newest=True)
    await lin.send("/tasks")
    await lin.expect(case.number)
    await lin.tap(case.number)
    timeline = await lin.expect("办理经过")
    assert "✔️ 办结" in buttons(timeline)

    await sweep(cases.now() + timedelta(hours=1), DAYTIME)
    case = await Case.get(id=case.id)
    before = await _last_delivery_id()
    assert (await sweep(case.resolve_by, DAYTIME)).overdue == 1  # type: ignore[arg-type]
    assert await _chats_after(before) >= {committee.chat_id, su.chat_id}
    delivery.wake()
    await sandbox.emulator.wait_for(committee.chat_id, "督办", timeout=10)
    await su.expect("督办", timeout=10)
    await sandbox.app.courier.drained()

    handling = {lin.chat_id} if not anonymous else set()
    for chat_id in (lin.chat_id, su.chat_id, zheng.chat_id, committee.chat_id):
        texts = "\n".join(
            said(message)
            for message in sandbox.emulator.messages(chat_id)
        )
        shown = "李明" in texts or PHONE in texts
        assert shown is (chat_id in handling), (chat_id, texts)
    assert lin_official.id == (await Case.get(id=case.id)).assignee_id  # type: ignore[attr-defined]
