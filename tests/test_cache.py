"""Who is talking and the township's directory, kept in the process under the directory's
version number (`bot.cache`), and a conversation stored once per update."""

from __future__ import annotations

import asyncio

from conftest import TEST_REDIS_URL
from test_casework import _official
from test_report import LI, _li, _to_description
from tortoise.expressions import F

from bench.common import QueryLog
from bot import cache
from bot.models import Conversation, Official, Version, Villager
from bot.sandbox import Sandbox
from bot.storage import HANDLING

PEOPLE_TABLES = ('FROM "account"', 'FROM "villager"', 'FROM "official"')
#: What `_all_handled` asks, left out of the statements counted.
_WAITING = 'SELECT 1 FROM "conversation"'


async def _all_handled() -> None:
    """Until no update is being handled (the database's claims; with Redis, none to wait on)."""
    for _ in range(500):
        if not await Conversation.filter(state=HANDLING).exists():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("an update is still being handled after 5 s")


async def test_a_step_reads_no_person_and_writes_its_conversation_once(sandbox: Sandbox) -> None:
    """Without Redis a step costs two statements: its claim, which reads the directory's
    version too, and its conversation written with the mark that it is handled."""
    li = await _li(sandbox)
    await _to_description(li)
    await _all_handled()  # the step before wrote its conversation after its answer
    with QueryLog() as queries:
        await li.send("村口垃圾桶满了")
        await li.expect("照片能帮助工作人员了解情况")
        await _all_handled()
    statements = [sql for sql, _ in queries.statements if _WAITING not in sql]
    assert not [s for s in statements if any(t in s for t in PEOPLE_TABLES)], statements
    if not TEST_REDIS_URL:  # (with Redis the conversation is there, written in one MULTI)
        # One statement writes the person's conversation and marks the update handled.
        conversation_writes = [
            (sql, values) for sql, values in queries.statements
            if sql.startswith(("INSERT", "UPDATE")) and "fsm:" in str(values)
        ]
        assert len(conversation_writes) == 1, statements
        assert "handled:" in str(conversation_writes[0][1]), conversation_writes
        # The claim on the update says the directory's version: a step is two statements of
        # its own (the courier, polling the outbox meanwhile, may add its own).
        claim, write = [s for s in statements if '"conversation"' in s or "FROM version" in s]
        assert claim.startswith('INSERT INTO "conversation"') and "FROM version" in claim
        assert write == conversation_writes[0][0]
    assert any("FROM version" in s for s in statements), "the version is asked each update"


async def test_a_change_made_elsewhere_is_seen_once_the_version_rises(sandbox: Sandbox) -> None:
    """What decides is the number: a change that did not raise it (as no code of ours makes)
    is not seen; once another process raised it, the next update reads the person again."""
    li = await _li(sandbox)
    await li.send("/profile")
    await li.expect("姓名：李明")
    await Villager.filter(account_id=LI).update(name="李小明")  # in bulk: no signal here
    await li.send("/profile")
    await li.expect("姓名：李明")
    await Version.filter(name=cache.DIRECTORY).update(number=F("number") + 1)
    await li.send("/profile")
    await li.expect("姓名：李小明")


async def test_a_save_in_this_process_is_seen_at_the_next_update(sandbox: Sandbox) -> None:
    li = await _li(sandbox)
    await li.send("/profile")
    await li.expect("姓名：李明")
    before = await cache.fresh()
    villager = await Villager.get(account_id=LI)
    villager.name = "李小明"
    await villager.save()
    assert await cache.fresh() > before, "a save raises the number for every process"
    await li.send("/profile")
    await li.expect("姓名：李小明")


async def test_an_official_made_inactive_elsewhere_no_longer_acts_as_one(
    sandbox: Sandbox,
) -> None:
    """Roles come from the kept person: a deactivation saved in another process (here: a
    bulk update and the number raised, as `cache.changed` does there) takes effect at the
    official's next update."""
    official, phone = await _official(sandbox, "lin-xiuying", 9301)
    await phone.send("/help")
    await phone.expect("您已登记为工作人员")
    await Official.filter(id=official.id).update(active=False)
    await Version.filter(name=cache.DIRECTORY).update(number=F("number") + 1)
    await phone.send("/help")
    reply = await phone.expect("/start")
    assert "您已登记为工作人员" not in (reply.get("text") or "")
