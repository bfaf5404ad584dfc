"""The back office's notices page: what was posted, to whom, how far it went; withdrawing."""

from __future__ import annotations

import re

from backoffice import csrf, official, page, post, signed_in

from bot import public_notices
from bot.models import Account, Audience, Notice, NoticeKind, Township, Village
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
