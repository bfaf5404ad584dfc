"""Policy questions (政策咨询): the township FAQ, how a question finds its entries, and what
becomes of a question the FAQ does not answer.

Matching is a small scorer of our own rather than a library: villagers write Chinese without
spaces, so a question is cut into character bigrams of its Chinese runs and whole words of
its Latin runs, and an entry scores the Dice overlap of those with its question (best of its
languages), plus a fixed bonus when one of its keywords appears in the question. A few
dozen entries per township need nothing faster, and every score can be explained by hand.

A question the FAQ does not answer becomes a case of the township's policy category through
`cases.report`, as a report's Submit does; the official who resolved it can propose the
question and their answer as an entry, which an administrator approves or rejects
(`review`). An approved entry is live at once and is exported with the directory; an import
that does not list it leaves it alone (`from_file` is False) until a file names its code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

from bot import cases
from bot.directory import ANSWER_MAX, QUESTION_MAX
from bot.models import (
    Account,
    Case,
    CaseEvent,
    CaseStatus,
    Category,
    FaqEntry,
    FaqStatus,
    Official,
    Villager,
)

#: Shown at most, best first.
SHOWN = 3
#: Below this an entry is not shown: a shared common bigram is not an answer.
THRESHOLD = 0.3
#: Added when a keyword of the entry appears in the question.
KEYWORD_BONUS = 0.4

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUNS = re.compile(rf"[{_CJK}]+|[^\W_]+")
_CJK_RUN = re.compile(rf"[{_CJK}]+")
#: Words of every question ("how", 怎么): they would make all questions alike.
STOP = frozenset({
    "a", "an", "the", "is", "are", "am", "do", "does", "did", "i", "me", "my", "we", "our",
    "you", "your", "how", "what", "when", "where", "who", "which", "can", "could", "should",
    "to", "of", "for", "in", "on", "at", "and", "or", "it", "be", "get", "please",
    "怎么", "怎樣", "怎样", "如何", "什么", "什麼", "可以", "请问", "請問", "我们", "我們",
    "我的", "需要", "哪里", "哪裡", "是否", "一下", "办理", "辦理",
})


class NoPolicyCategory(Exception):
    """The township's directory names no policy category: a question cannot become a case."""


class ProposalRefused(Exception):
    """The case is not a resolved policy question of this official's."""


class ReviewRefused(Exception):
    """No proposal of this township waits under that id."""


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def grams(text: str) -> frozenset[str]:
    """Character bigrams of Chinese runs (a lone character as itself), words of the rest."""
    out: set[str] = set()
    for run in _RUNS.findall(normalize(text)):
        if _CJK_RUN.fullmatch(run):
            if len(run) == 1:
                out.add(run)
            out.update(run[i:i + 2] for i in range(len(run) - 1))
        else:
            out.add(run)
    return frozenset(out - STOP)


def _dice(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))


def _has_keyword(question: str, words: frozenset[str], keywords: Iterable[str]) -> bool:
    """A Chinese keyword anywhere in the question; a Latin one as a whole word."""
    for keyword in keywords:
        keyword = normalize(keyword).strip()
        if not keyword:
            continue
        if _CJK_RUN.search(keyword):
            if keyword in question:
                return True
        elif keyword in words or (" " in keyword and keyword in question):
            return True
    return False


def score(question: str, entry: FaqEntry) -> float:
    """How well `entry` answers `question`: 0 (not at all) upward."""
    asked = grams(question)
    best = max(
        _dice(asked, grams(text))
        for text in (entry.question, *entry.questions.values())
    )
    words = frozenset(_RUNS.findall(normalize(question)))
    if _has_keyword(normalize(question), words, entry.keywords):
        best += KEYWORD_BONUS
    return best


@dataclass(frozen=True)
class Match:
    entry: FaqEntry
    score: float


async def find(township_id: int, question: str) -> list[Match]:
    """The live entries that answer `question`, best first, at most `SHOWN`."""
    entries = await FaqEntry.filter(
        township_id=township_id, active=True, status=FaqStatus.LIVE
    ).order_by("position", "id")
    scored = [Match(entry, score(question, entry)) for entry in entries]
    kept = [match for match in scored if match.score >= THRESHOLD]
    kept.sort(key=lambda match: -match.score)
    return kept[:SHOWN]


async def helped(township_id: int, entry_ids: Sequence[int]) -> int:
    """The villager said yes: count it on the entries they were shown."""
    return await FaqEntry.filter(township_id=township_id, id__in=list(entry_ids)).update(
        helped=F("helped") + 1
    )


async def policy_category(township_id: int) -> Category | None:
    return await Category.filter(township_id=township_id, policy=True, active=True).first()


async def ask_officials(villager: Villager, question: str, *, key: str) -> cases.Change:
    """The question becomes a case of the policy category, as a report's Submit makes one.

    `key` names the question: asking it twice (a second tap) returns the first case.
    """
    category = await policy_category(villager.township_id)  # type: ignore[attr-defined]
    if category is None:
        raise NoPolicyCategory()
    return await cases.report(villager, category, description=question, report_key=key)


async def is_policy_case(case: Case) -> bool:
    return await Category.filter(id=case.category_id, policy=True).exists()  # type: ignore[attr-defined]


def proposal_code(case: Case) -> str:
    return f"q-{case.number.lower()}"[:32]


async def propose(case_id: int, official: Official) -> FaqEntry:
    """The resolved policy case's question and the official's answer, waiting for review.

    Only the official who resolved it; proposing twice returns the first proposal.
    """
    case = await Case.get_or_none(id=case_id)
    if (
        case is None
        or case.status not in (CaseStatus.RESOLVED, CaseStatus.CLOSED)
        or case.assignee_id != official.id  # type: ignore[attr-defined]
        or not await is_policy_case(case)
    ):
        raise ProposalRefused()
    code = proposal_code(case)
    earlier = await FaqEntry.get_or_none(township_id=case.township_id, code=code)  # type: ignore[attr-defined]
    if earlier is not None:
        return earlier
    resolved = await CaseEvent.filter(
        case_id=case.id, action=cases.Action.RESOLVE
    ).order_by("-id").first()
    if resolved is None or not (resolved.note or "").strip() or not case.description.strip():
        raise ProposalRefused()
    try:
        return await FaqEntry.create(
            township_id=case.township_id,  # type: ignore[attr-defined]
            code=code,
            question=case.description.strip()[:QUESTION_MAX],
            answer=(resolved.note or "").strip()[:ANSWER_MAX],
            keywords=[],
            position=10_000 + case.id,  # after the file's entries, in the order proposed
            status=FaqStatus.PROPOSED,
            from_file=False,
            case_id=case.id,
            proposed_by_id=official.id,
        )
    except IntegrityError:  # the same tap, delivered twice at once
        return await FaqEntry.get(township_id=case.township_id, code=code)  # type: ignore[attr-defined]


async def proposals(township_id: int) -> list[FaqEntry]:
    return await FaqEntry.filter(
        township_id=township_id, status=FaqStatus.PROPOSED, active=True
    ).order_by("id").prefetch_related("case", "proposed_by")


async def review(
    entry_id: int, township_id: int, reviewer: Account, *, approve: bool
) -> FaqEntry:
    """An administrator's decision on a proposal: live at once, or rejected (kept, unseen)."""
    status = FaqStatus.LIVE if approve else FaqStatus.REJECTED
    changed = await FaqEntry.filter(
        id=entry_id, township_id=township_id, status=FaqStatus.PROPOSED, active=True
    ).update(status=status, reviewed_by_id=reviewer.id, reviewed_at=datetime.now(UTC))
    if not changed:
        raise ReviewRefused()
    return await FaqEntry.get(id=entry_id)
