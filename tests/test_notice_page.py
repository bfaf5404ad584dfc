"""The back office's notices page: what was posted, to whom, how far it went; withdrawing."""

from __future__ import annotations

import re

from backoffice import csrf, official, page, post, signed_in

from bot import public_notices
from bot.models import Account, Audience, Grid, Notice, NoticeKind, Township, Village, Villager
from bot.sandbox import Sandbox

SU, ZHENG = 9002, 9201


async def _notice(poster_id: int, title: str, *, village: str = "banli") -> Notice:
    township = await Township.get(code="BL")
    target = public_notices.Target(
        township.id, Audience.VILLAGES, [(await Village.get(code=village)).id]
    )
    return await public_notices.publish(
        target, await Account.get(id=poster_id),
        kind=NoticeKind.FINANCE, title=title, body="收入 12 万元，支出 9 万元。",
    )


async def test_officials_see_the_township_notices_and_only_the_poster_withdraws(
    office: Sandbox,
) -> None:
    su = await official(office, "su-jinqiao", SU)
    zheng = await official(office, "zheng-guohua", ZHENG)
    notice = await _notice(SU, "2026年上半年村级财务公开")

    leader = await signed_in(zheng)
    seen = await page(leader, f"{office.web_url}/notices")
    row = re.search(rf'<tr id="notice-{notice.id}">(.*?)</tr>', seen, re.S)
    assert row is not None
    assert "2026年上半年村级财务公开" in row.group(1) and "财务公开" in row.group(1)
    assert "坂里村" in row.group(1) and "苏进侨" in row.group(1)
    assert "/withdraw" not in row.group(1), "a leader who did not post it sees no Withdraw"
    refused = await post(
        leader, f"{office.web_url}/notices/{notice.id}/withdraw", {"csrf": csrf(seen)}, status=403
    )
    assert "只有发布人或管理员可以撤回这条通知公告。" in refused
    assert (await Notice.get(id=notice.id)).withdrawn_at is None

    poster = await signed_in(su)
    mine = await page(poster, f"{office.web_url}/notices")
    done = await post(
        poster, f"{office.web_url}/notices/{notice.id}/withdraw", {"csrf": csrf(mine)}
    )
    assert "已撤回：村民再打开会看到已撤回" in done
    assert (await Notice.get(id=notice.id)).withdrawn_at is not None
    assert re.search(rf'<tr id="notice-{notice.id}">.*?已于 .*? 撤回', done, re.S)
    await page(poster, f"{office.web_url}/notices/999999/withdraw", status=405)
    for session in (leader, poster):
        await session.close()


async def _banli_villager(office: Sandbox, telegram_id: int, *, chat: bool = True) -> None:
    """A villager of 坂里村; `chat`: the emulator knows them and their chat with the bot is
    open (without, Telegram answers "chat not found")."""
    grid = await Grid.get(village__code="banli", code="g1").prefetch_related("village")
    account = await Account.create(
        id=telegram_id, first_name=f"村民{telegram_id}", language="zh-hans"
    )
    await Villager.create(
        account=account, township_id=grid.village.township_id, village_id=grid.village_id,  # type: ignore[attr-defined]
        grid=grid, name=f"村民{telegram_id}",
    )
    if chat:
        office.emulator._user_chat(office.emulator.user(telegram_id, f"村民{telegram_id}"), None)


async def test_the_page_counts_delivered_blocked_and_not_delivered(office: Sandbox) -> None:
    """Six villagers of 坂里村: three reached, two who blocked the bot, one whose chat
    Telegram does not know; and nobody of 正达村."""
    su = await official(office, "su-jinqiao", SU)
    for telegram_id in range(2001, 2006):
        await _banli_villager(office, telegram_id)
    await _banli_villager(office, 2006, chat=False)
    for telegram_id in (2004, 2005):
        office.emulator.user(telegram_id).block_bot()
    await _banli_villager(office, 2007)
    await Villager.filter(account_id=2007).update(
        village_id=(await Village.get(code="zhengda")).id,
        grid_id=(await Grid.get(village__code="zhengda", code="g1")).id,
    )
    notice = await _notice(SU, "坂里村停水通知")
    assert notice.reach == 6
    report = await su.expect("已送达 3 位村民", timeout=30)
    assert "2 位未能送达：对方已屏蔽机器人。" in report["text"]
    assert "1 位因其他原因未送达。" in report["text"]

    async with await signed_in(su) as browser:
        seen = await page(browser, f"{office.web_url}/notices")
    row = re.search(rf'<tr id="notice-{notice.id}">(.*?)</tr>', seen, re.S)
    assert row is not None
    cells = [c.strip() for c in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]
    # Posted, kind, title, audience, poster, reach, delivered, blocked, not delivered
    assert cells[5:9] == ["6", "3", "2", "1"]
    for telegram_id in (2001, 2002, 2003):
        assert any("坂里村停水通知" in (m.get("text") or "")
                   for m in office.emulator.bot_messages(telegram_id))
    assert not office.emulator.bot_messages(2007), "not of the audience"
