"""Every message the code shows exists, complete, in all three catalogs."""

from __future__ import annotations

import re
import string

import pytest
from babel.messages.pofile import read_po

from bot.i18n import DOMAIN, LOCALES_PATH, catalogs, source_messages
from bot.languages import EN, LANGUAGES, LOCALE_DIRS, ZH_HANS, ZH_HANT, normalize_language

SOURCE = source_messages()


def _catalog(language: str) -> dict[str, tuple[str, bool]]:
    path = LOCALES_PATH / LOCALE_DIRS[language] / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po_file:
        catalog = read_po(po_file)
    return {m.id: (m.string, m.fuzzy) for m in catalog if m.id}  # type: ignore[misc]


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_the_code_uses_messages() -> None:
    assert len(SOURCE) > 50


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_is_translated(language: str) -> None:
    catalog = _catalog(language)
    missing = [m for m in SOURCE if m not in catalog or not catalog[m][0] or catalog[m][1]]
    assert not missing, f"{language} lacks translations for: {missing}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_message_is_left_over(language: str) -> None:
    stale = sorted(set(_catalog(language)) - set(SOURCE))
    assert not stale, f"{language} has messages no code uses (run python -m bot.i18n): {stale}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_their_placeholders(language: str) -> None:
    wrong = [
        message
        for message, (translation, _) in _catalog(language).items()
        if translation and _fields(translation) != _fields(message)
    ]
    assert not wrong, f"{language} changes placeholders in: {wrong}"


def test_chinese_catalogs_are_chinese() -> None:
    han = re.compile(r"[\u4e00-\u9fff]")
    for language in (ZH_HANS, ZH_HANT):
        untranslated = [
            m for m, (t, _) in _catalog(language).items() if han.search(m) is None and t == m
            and any(c.isalpha() for c in re.sub(r"\{\w+\}", "", m).replace("/", "").split(":")[-1])
        ]
        assert not untranslated, f"{language} copies English for: {untranslated}"


def test_rendering_outside_an_update_uses_the_recipients_language() -> None:
    texts = {lang: catalogs().text("Village: {name}", lang, name="X") for lang in LANGUAGES}
    assert texts[EN] == "Village: X"
    assert texts[ZH_HANS] == "村：X"
    assert len(set(texts.values())) >= 2


@pytest.mark.parametrize(
    ("code", "expected"),
    [("zh-hans", ZH_HANS), ("zh", ZH_HANS), ("zh-CN", ZH_HANS), ("zh-TW", ZH_HANT),
     ("zh-hk", ZH_HANT), ("zh-hant", ZH_HANT), ("en-US", EN), ("ru", ZH_HANS), (None, ZH_HANS)],
)
def test_telegram_language_codes_map_onto_ours(code: str | None, expected: str) -> None:
    assert normalize_language(code) == expected
