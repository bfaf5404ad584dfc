"""Policy questions (政策咨询): the FAQ answers, or the question becomes a case the officials
answer; the official's one tap proposes the answer, an administrator approves it on /faq, and
the next villager's similar question finds it. Through the emulator and the back office."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from backoffice import official
from conftest import TEST_REDIS_URL

from bot import faq
from bot.directory import (
    DirectoryError,
    dump_yaml,
    export_directory,
    import_file,
    load_directory,
)
from bot.emulator import buttons, said
from bot.models import (
    Account,
    Case,
    CaseStatus,
    FaqEntry,
    FaqStatus,
    Grid,
    Official,
    Unit,
    Villager,
)
from bot.sandbox import EXAMPLE_DIRECTORY, Phone, Sandbox

COMMITTEE_GROUP = -1001000000101  # 正达村两委
LI, ANNA, WANG = 1001, 1002, 1003
LIN, ADMIN = 9101, 9001


@pytest.fixture
async def office(database_url: str) -> AsyncIterator[Sandbox]:
    """The sandbox with its back office served on a free port."""
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    async with Sandbox(database_url, redis_url=TEST_REDIS_URL or None, web=True) as running:
        yield running


async def _villager(
    sandbox: Sandbox, telegram_id: int, name: str, language: str = "zh-hans"
) -> tuple[Villager, Phone]:
    """A registered villager of Zhengda grid 1, with the main menu on screen."""
    account = await Account.create(id=telegram_id, first_name=name, language=language)
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    villager = await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name=name, phone="+8613800000001",
    )
    phone = sandbox.phone(telegram_id, name, language=language)
    await phone.send("/start")
    await phone.expect(name)
    return villager, phone


async def _ask(phone: Phone, question: str) -> dict:
    await phone.press("💬 政策咨询")
    await phone.expect("您想了解什么？")
    await phone.send(question)
    return await phone.expect("")


async def _answered_by_lin(sandbox: Sandbox, li: Phone, lin: Phone, answer: str) -> Case:
    """The question's case, accepted in the committee's group and resolved by Lin."""
    group = sandbox.emulator.group(COMMITTEE_GROUP, "正达村两委")
    confirmation = await li.expect("已提交。您的事项编号：BL-")
    case = await Case.get().prefetch_related("category", "unit")
    assert case.number in confirmation["text"]
    card = await sandbox.emulator.wait_for(group.chat_id, case.number)
    await lin.user.tap(card, "✅ 受理", chat=group.chat_id)
    await li.expect("已由林秀英")
    await lin.tap("✔️ 办结")
    await lin.expect("请至少发送一张处理后的现场照片")
    await lin.user.send_photo()
    await lin.expect("照片：1 张")
    await lin.send(answer)
    return case


async def test_a_question_answered_from_the_faq_in_chinese_and_in_english(
    sandbox: Sandbox,
) -> None:
    _, li = await _villager(sandbox, LI, "李明")
    assert "💬 政策咨询" in sandbox.emulator.reply_keyboard(LI)
    answer = await _ask(li, "我想问一下低保要怎么申请")  # no spaces, not the entry's words
    assert "带户口本和身份证到村委会填写申请表" in answer["text"]
    assert "这解答了您的问题吗？" in answer["text"]
    assert "种粮补贴" not in answer["text"], "only entries above the threshold"
    assert buttons(answer) == ["👍 解答了，谢谢", "👎 没有，问工作人员"]
    await li.tap("👍 解答了，谢谢")
    await li.expect("很高兴能帮到您")
    assert (await FaqEntry.get(code="dibao-apply")).helped == 1

    _, anna = await _villager(sandbox, ANNA, "Anna", "en")
    await anna.send("/ask")
    await anna.expect("What would you like to know?")
    await anna.send("When must I pay for medical insurance each year?")
    answer = await anna.expect("Did this answer your question?")
    assert "From September to December" in answer["text"]
    await anna.tap("👍 Yes, thank you")
    await anna.expect("Glad it helped.")
    assert (await FaqEntry.get(code="medical-insurance")).helped == 1
    assert not await Case.exists()


async def test_no_makes_a_policy_case_and_the_officials_answer_reaches_the_villager(
    sandbox: Sandbox,
) -> None:
    _, li = await _villager(sandbox, LI, "李明")
    lin = await official(sandbox, "lin-xiuying", LIN)
    await _ask(li, "低保申请下来以后每个月什么时候发？")
    await li.tap("👎 没有，问工作人员")
    case = await _answered_by_lin(sandbox, li, lin, "每月10日前打到社保卡")
    assert case.category.code == "policy-other"
    assert case.unit.code == "zhengda-committee"
    assert case.description == "低保申请下来以后每个月什么时候发？"
    verdict = await li.expect("问题解决了吗？")
    assert "每月10日前打到社保卡" in said(verdict)
    resolved = await lin.expect("已办结")
    assert buttons(resolved) == ["📚 加入常见问题"]
    assert (await Case.get(id=case.id)).status == CaseStatus.RESOLVED
    assert await Case.all().count() == 1


async def test_no_match_offers_the_officials_and_cancel_sends_nothing(sandbox: Sandbox) -> None:
    _, li = await _villager(sandbox, LI, "李明")
    offer = await _ask(li, "拖拉机年检去哪里办")
    assert "还没有这方面的解答" in offer["text"]
    assert buttons(offer) == ["📨 发给工作人员", "✖️ 取消"]
    await li.tap("✖️ 取消")
    await li.expect("没有发送任何内容")
    assert not await Case.exists()

    await _ask(li, "拖拉机年检去哪里办")
    await li.tap("📨 发给工作人员")
    await li.expect("已提交。您的事项编号：BL-")
    case = await Case.get().prefetch_related("category")
    assert case.category.policy and case.description == "拖拉机年检去哪里办"


async def test_the_report_button_while_asking_starts_a_report(sandbox: Sandbox) -> None:
    _, li = await _villager(sandbox, LI, "李明")
    await li.press("💬 政策咨询")
    await li.expect("您想了解什么？")
    await li.press("📝 我要反映问题")
    await li.expect("您要反映哪方面的问题？请点一个类别。")
    assert not await Case.exists()


async def test_the_policy_category_is_not_offered_in_the_report_flow(sandbox: Sandbox) -> None:
    _, li = await _villager(sandbox, LI, "李明")
    await li.press("📝 我要反映问题")
    await li.tap("政策咨询")
    offered = await li.expect("政策咨询：具体是哪一类？")
    assert "社保医保咨询" in buttons(offered) and "其他政策咨询" not in buttons(offered)


def _browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _signed_in(handset: Phone) -> aiohttp.ClientSession:
    await handset.send("/web")
    message = await handset.expect("/signin/")
    found = re.search(r"https?://\S+/signin/\S+", message["text"])
    assert found is not None
    browser = _browser()
    async with browser.get(found.group(0)) as response:
        assert response.status == 200
    return browser


async def _page(browser: aiohttp.ClientSession, url: str, status: int = 200) -> str:
    async with browser.get(url) as response:
        text = await response.text()
        assert response.status == status, text
        return text


async def test_the_one_tap_proposal_is_approved_on_the_faq_page_and_answers_the_next_villager(
    office: Sandbox, tmp_path: Path,
) -> None:
    _, li = await _villager(office, LI, "李明")
    lin = await official(office, "lin-xiuying", LIN)
    admin = await official(office, "admin", ADMIN)
    await _ask(li, "宅基地建房审批要多久")
    await li.tap("📨 发给工作人员")
    case = await _answered_by_lin(office, li, lin, "材料齐全的话乡里20个工作日内批复")
    query = await lin.tap("📚 加入常见问题")
    told = await office.emulator.wait_answer(query)
    assert told["text"] == "已建议加入常见问题，管理员会在后台审核。"
    proposal = await FaqEntry.get(case_id=case.id)
    assert (proposal.status, proposal.question, proposal.answer, proposal.from_file) == (
        FaqStatus.PROPOSED, "宅基地建房审批要多久", "材料齐全的话乡里20个工作日内批复", False
    )
    # Not live yet: the next villager is offered the officials.
    _, wang = await _villager(office, WANG, "王芳")
    offer = await _ask(wang, "建房审批需要多久")
    assert "还没有这方面的解答" in offer["text"]
    await wang.tap("✖️ 取消")

    # An official who is no administrator is told there is no such page.
    lin_browser = await _signed_in(lin)
    async with lin_browser:
        await _page(lin_browser, f"{office.web_url}/faq", 404)
        assert 'href="/faq"' not in await _page(lin_browser, f"{office.web_url}/cases")

    browser = await _signed_in(admin)
    async with browser:
        page = await _page(browser, f"{office.web_url}/faq")
        assert "宅基地建房审批要多久" in page and case.number in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        review = f"{office.web_url}/faq/{proposal.id}"
        async with browser.post(
            review, data={"csrf": csrf.group(1), "decision": "approve"}
        ) as response:
            assert response.status == 200
            assert "从现在起" in await response.text()
        async with browser.post(
            review, data={"csrf": csrf.group(1), "decision": "reject"}
        ) as response:
            assert response.status == 409, "reviewed once"
        assert (await FaqEntry.get(id=proposal.id)).status == FaqStatus.LIVE

    answer = await _ask(wang, "建房审批需要多久")
    assert "材料齐全的话乡里20个工作日内批复" in answer["text"]

    # In the directory export; an import of a file without it leaves it live.
    exported = await export_directory("BL")
    assert proposal.code in [entry["code"] for entry in exported["faq"]]
    await import_file(EXAMPLE_DIRECTORY)
    assert (await FaqEntry.get(id=proposal.id)).active
    # Once a file lists it, the file owns it: the example file without it deactivates it.
    (tmp_path / "with.yaml").write_text(dump_yaml(exported), encoding="utf-8")
    await import_file(tmp_path / "with.yaml")
    await import_file(EXAMPLE_DIRECTORY)
    assert not (await FaqEntry.get(id=proposal.id)).active


async def test_only_the_resolving_official_proposes_and_only_policy_cases(
    sandbox: Sandbox,
) -> None:
    _, li = await _villager(sandbox, LI, "李明")
    lin = await official(sandbox, "lin-xiuying", LIN)
    zheng = await Official.get(code="zheng-guohua")
    await _ask(li, "拖拉机年检去哪里办")
    await li.tap("📨 发给工作人员")
    case = await _answered_by_lin(sandbox, li, lin, "到县农机站办理")
    await lin.expect("已办结")
    with pytest.raises(faq.ProposalRefused):
        await faq.propose(case.id, zheng)
    assert not await FaqEntry.filter(case_id=case.id).exists()
    assert (await Unit.get(code="zhengda-committee")).id == case.unit_id  # type: ignore[attr-defined]


BAD_FAQ = """
faq:
  - code: dibao-apply
    question: "  "
    answer: 带户口本
    questions: {fr: "Comment demander le dibao"}
  - code: dibao-apply
    question: 医保什么时候交？
  - code: x
    question: 种粮补贴怎么领？
    answer: 打到社保卡
    keywords: [补贴, 42]
"""


def test_a_bad_faq_entry_is_reported_with_its_place() -> None:
    text = EXAMPLE_DIRECTORY.read_text(encoding="utf-8")
    text = text[: text.index("\nfaq:")] + BAD_FAQ
    with pytest.raises(DirectoryError) as raised:
        load_directory(text)
    found = {(p.place("en"), p.text("en")) for p in raised.value.placed}
    assert ("faq[0].question", "must not be empty") in found
    assert any(place == "faq[0].questions" and "unknown language 'fr'" in said
               for place, said in found)
    assert ("faq[1].answer", "missing") in found
    assert ("faq[1].code", "'dibao-apply' also used by faq[0]") in found
    assert ("faq[2].keywords[1]", "must be text") in found
    chinese = {p.text("zh-hans") for p in raised.value.placed}
    assert "不能为空" in chinese


def test_two_policy_categories_are_refused() -> None:
    text = EXAMPLE_DIRECTORY.read_text(encoding="utf-8").replace(
        "        resolve_hours: 48\n", "        resolve_hours: 48\n        policy: true\n", 1
    )
    with pytest.raises(DirectoryError) as raised:
        load_directory(text)
    assert any(
        p.place("en").endswith(".policy") and "only one policy category" in p.text("en")
        for p in raised.value.placed
    )


def test_the_scorer_matches_chinese_without_spaces_and_keywords() -> None:
    entry = FaqEntry(
        question="种粮补贴怎么领？", questions={"en": "How do I get the grain-growing subsidy?"},
        answer="", answers={}, keywords=["种粮补贴", "grain subsidy"],
    )
    assert faq.score("请问种粮补贴去哪领", entry) >= faq.THRESHOLD
    assert faq.score("where is my grain subsidy", entry) >= faq.THRESHOLD
    assert faq.score("拖拉机年检去哪里办", entry) < faq.THRESHOLD
    assert faq.score("how do I", entry) == 0
