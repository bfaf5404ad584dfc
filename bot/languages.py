"""The three languages and how Telegram's language codes map onto them."""

from __future__ import annotations

ZH_HANS = "zh-hans"
ZH_HANT = "zh-hant"
EN = "en"

#: Every language villagebot speaks; the first is the default.
LANGUAGES: tuple[str, ...] = (ZH_HANS, ZH_HANT, EN)

#: Folder names under locales/, as gettext and Babel spell the locales.
LOCALE_DIRS: dict[str, str] = {ZH_HANS: "zh_Hans", ZH_HANT: "zh_Hant", EN: "en"}

_TRADITIONAL_REGIONS = {"tw", "hk", "mo", "hant"}


def normalize_language(code: str | None, fallback: str | None = ZH_HANS) -> str | None:
    """Map a Telegram `language_code` ("zh-TW", "en-US", "zh") onto one of ours."""
    if not code:
        return fallback
    parts = code.strip().lower().replace("_", "-").split("-")
    if parts[0] == "zh":
        return ZH_HANT if _TRADITIONAL_REGIONS.intersection(parts[1:]) else ZH_HANS
    if parts[0] == "en":
        return EN
    return fallback
