"""The catalogs speak the product's glossary: one concept, one word, in every message.

A villager must tell from one word whether they still have to do something, so each case status
has exactly one word, and every message that shows a status uses it. Words the glossary turned
down (案件 sounds like a court, 接单 is officials' jargon, 已归档 next to 已办结 ...) appear in
no message, and the Traditional Chinese catalog uses Taiwan and Hong Kong words, not mainland
ones. A new message that needs a term the glossary lacks should add it there and here first.
"""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po
from conftest import make_villager

from bot import cases
from bot.cases import Change
from bot.handlers.lists import STATUS_NAMES
from bot.i18n import DOMAIN, LOCALES_PATH, catalogs
from bot.languages import EN, LANGUAGES, LOCALE_DIRS, ZH_HANS, ZH_HANT
from bot.models import CaseStatus, Category, Official
from bot.notices import _scene, status_line

#: Words no message may contain, with the glossary's word to use instead.
BANNED: dict[str, dict[str, str]] = {
    ZH_HANS: {
        "案件": "事项", "工单": "事项", "接单": "受理", "处理中": "办理中", "提级": "上报",
        "指派专人": "指派", "办理完成": "办结", "已办理": "已办结", "待评价": "已办结，待您确认",
        "归档": "已结案", "关闭": "已结案", "重新打开": "重办", "重新办理": "重办",
        "凭证": "现场照片和说明", "证据": "现场照片和说明", "完工照片": "处理后的现场照片",
        "超时": "逾期", "逾时": "逾期", "评分": "评价", "上一级": "上级单位",
        "点击": "点", "选择": "点",
    },
    ZH_HANT: {
        "案件": "事項", "工單": "事項", "接單": "受理", "處理中": "辦理中", "提級": "上報",
        "指派專人": "指派", "辦理完成": "辦結", "已辦理": "已辦結", "待評價": "已辦結，待您確認",
        "歸檔": "已結案", "關閉": "已結案", "重新打開": "重辦", "重新辦理": "重辦",
        "憑證": "現場照片和說明", "證據": "現場照片和說明", "完工照片": "處理後的現場照片",
        "超時": "逾期", "逾時": "逾期", "評分": "評價", "上一級": "上級單位",
        "點擊": "點選", "選擇": "點選",
        # Mainland words a Taiwan or Hong Kong reader would not write.
        "發送": "傳送", "私聊": "私訊", "添加": "新增", "命令": "指令", "聯繫": "聯絡",
        "列表": "清單", "語音留言": "語音訊息", "打開": "開啟", "鄉裡": "鄉鎮", "信息": "訊息",
    },
    EN: {
        "ticket": "case", "work order": "case", "taken": "accepted", "took": "accepted",
        "archived": "closed",
    },
}

#: The one word for each status, as the lists and the timeline show it.
STATUS_WORDS: dict[str, dict[CaseStatus, str]] = {
    ZH_HANS: {
        CaseStatus.NEW: "待受理",
        CaseStatus.ACCEPTED: "办理中",
        CaseStatus.RESOLVED: "已办结，待您确认",
        CaseStatus.CLOSED: "已结案",
    },
    ZH_HANT: {
        CaseStatus.NEW: "待受理",
        CaseStatus.ACCEPTED: "辦理中",
        CaseStatus.RESOLVED: "已辦結，待您確認",
        CaseStatus.CLOSED: "已結案",
    },
    EN: {
        CaseStatus.NEW: "waiting to be accepted",
        CaseStatus.ACCEPTED: "being handled",
        CaseStatus.RESOLVED: "resolved, waiting for your confirmation",
        CaseStatus.CLOSED: "closed",
    },
}

#: The same word inside a sentence: it may name who is to act (待{unit}受理, 待村民确认 on an
#: official's card), and a count of closed cases says 结案 (结案 3 件).
STATUS_IN_TEXT: dict[str, dict[CaseStatus, str]] = {
    ZH_HANS: {
        CaseStatus.NEW: r"待(\{unit\})?受理",
        CaseStatus.ACCEPTED: r"办理中",
        CaseStatus.RESOLVED: r"已办结，待(您|村民)确认",
        CaseStatus.CLOSED: r"结案",
    },
    ZH_HANT: {
        CaseStatus.NEW: r"待(\{unit\})?受理",
        CaseStatus.ACCEPTED: r"辦理中",
        CaseStatus.RESOLVED: r"已辦結，待(您|村民)確認",
        CaseStatus.CLOSED: r"結案",
    },
    EN: {
        CaseStatus.NEW: r"(?i)waiting to be accepted",
        CaseStatus.ACCEPTED: r"(?i)being handled",
        CaseStatus.RESOLVED: r"(?i)resolved\b.*waiting for (your|the villager's) confirmation",
        CaseStatus.CLOSED: r"(?i)\bclosed\b",
    },
}

#: A message id that says a case is in a status must, in every language, say it with its word.
SHOWS_STATUS: dict[CaseStatus, str] = {
    CaseStatus.NEW: r"(?i)waiting to be accepted",
    CaseStatus.ACCEPTED: r"(?i)being handled",
    CaseStatus.RESOLVED: r"(?i)waiting for (your|the villager's) confirmation",
    CaseStatus.CLOSED: r"(?i)\bclosed\b",
}

#: Figures count cases received (新收); 收到 and 受理 (that is "accepted") are other words.
FIGURES = re.compile(r"(?i)\breceived\b|cases per day")
NOT_FIGURES = {"Voice message received."}
RECEIVED = "新收"


def _catalog(language: str) -> dict[str, str]:
    path = LOCALES_PATH / LOCALE_DIRS[language] / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po_file:
        return {m.id: m.string for m in read_po(po_file) if m.id}  # type: ignore[misc]


def _contains(text: str, word: str, language: str) -> bool:
    if language == EN:
        return re.search(rf"(?i)\b{re.escape(word)}\b", text) is not None
    return word in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_message_uses_a_word_the_glossary_turned_down(language: str) -> None:
    found = [
        f"{translation!r} has {word!r} (use {instead!r})"
        for translation in _catalog(language).values()
        for word, instead in BANNED[language].items()
        if _contains(translation, word, language)
    ]
    assert not found, "\n".join(found)


#: 上报 is escalation only (the glossary): a message may say it only when it speaks of sending
#: a case up. A villager's report is 反映.
ESCALATION = {ZH_HANS: "上报", ZH_HANT: "上報"}
ABOUT_ESCALATION = re.compile(r"(?i)escalat|higher unit|unit above")


@pytest.mark.parametrize("language", [ZH_HANS, ZH_HANT])
def test_escalation_is_the_only_thing_called_shangbao(language: str) -> None:
    """A villager reading 上报 must know their report went up a level, not that they made it."""
    found = [
        f"{message!r}: {translation!r}"
        for message, translation in _catalog(language).items()
        if ESCALATION[language] in translation and not ABOUT_ESCALATION.search(message)
    ]
    assert not found, "\n".join(found)
    # And it is used: the escalation button says it.
    assert ESCALATION[language] in _catalog(language)["⬆️ Escalate"]


def test_each_status_has_one_word() -> None:
    for language in LANGUAGES:
        words = STATUS_WORDS[language]
        assert len(set(words.values())) == len(CaseStatus), language
        shown = {status: catalogs().text(STATUS_NAMES[status], language) for status in CaseStatus}
        assert shown == words, language


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_message_that_shows_a_status_uses_its_word(language: str) -> None:
    catalog = _catalog(language)
    wrong = [
        f"{status.value}: {translation!r} lacks {STATUS_IN_TEXT[language][status]!r}"
        for message, translation in catalog.items()
        for status, english in SHOWS_STATUS.items()
        if re.search(english, message)
        and not re.search(STATUS_IN_TEXT[language][status], translation)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("language", [ZH_HANS, ZH_HANT])
def test_figures_count_cases_received(language: str) -> None:
    catalog = _catalog(language)
    figures = [m for m in catalog if FIGURES.search(m) and m not in NOT_FIGURES]
    assert len(figures) >= 3
    wrong = [catalog[m] for m in figures if RECEIVED not in catalog[m]]
    assert not wrong, wrong


async def _lines(change: Change) -> dict[str, str]:
    """The status line under the case's card, in every language, its unit as `{unit}`."""
    scene = await _scene(change)
    return {
        language: status_line(scene, language).replace(
            scene.unit.display_name(language), "{unit}"
        )
        for language in LANGUAGES
    }


def _says(lines: dict[str, str], status: CaseStatus) -> None:
    for language, line in lines.items():
        assert re.search(STATUS_IN_TEXT[language][status], line), (status, language, line)
        for other in (s for s in CaseStatus if s != status):
            assert not re.search(STATUS_IN_TEXT[language][other], line), (status, language, line)


async def test_every_copy_of_a_card_shows_the_status_word(township: None) -> None:
    villager = await make_villager()
    lin = await Official.get(code="lin-xiuying")
    reported = await cases.report(
        villager, await Category.get(code="litter"), description="村口垃圾桶满了", photos=[]
    )
    case = reported.case
    new = await _lines(reported)
    _says(new, CaseStatus.NEW)
    assert new[ZH_HANS] == "➡️ 待{unit}受理"
    other = await cases.report(
        villager, await Category.get(code="litter"), description="河边有垃圾", photos=[]
    )
    moved = await _lines(await cases.decline(other.case.id, lin, "需要村里协调"))
    _says(moved, CaseStatus.NEW)
    assert moved[ZH_HANS] == "➡️ 已转交{unit}，待受理"
    _says(await _lines(await cases.accept(case.id, lin)), CaseStatus.ACCEPTED)
    _says(await _lines(await cases.resolve(case.id, lin, "已清运", ["P1"])), CaseStatus.RESOLVED)
    _says(await _lines(await cases.rate(case.id, villager, 4)), CaseStatus.CLOSED)
