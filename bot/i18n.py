"""Catalogs, and rendering in a recipient's language outside an update.

The `.po` files under `locales/` are the only source: they are compiled in memory at start
with Babel, so nobody has to remember a compile step and a stale `.mo` can never be served.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from bot.languages import LANGUAGES, LOCALE_DIRS, ZH_HANS

LOCALES_PATH = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"

__all__ = ["DOMAIN", "LOCALES_PATH", "N_", "Catalogs", "_", "catalogs", "every_language"]

#: The language `_()` renders in: the person's of the update, or a recipient's (`speaking`).
_speaking: ContextVar[str | None] = ContextVar("speaking", default=None)


class Catalogs:
    """The messages in each of our languages, fed from the `.po` files.

    Our own rather than aiogram's I18n, whose import is the whole of aiogram: the commands
    that never talk to Telegram (a directory import, an export) start in a second."""

    def __init__(self, path: Path = LOCALES_PATH, default_locale: str = ZH_HANS) -> None:
        self.path = path
        self.default_locale = default_locale
        self.locales = self.find_locales()

    def find_locales(self) -> dict[str, gettext.GNUTranslations]:
        translations: dict[str, gettext.GNUTranslations] = {}
        for language in LANGUAGES:
            po_path = self.path / LOCALE_DIRS[language] / "LC_MESSAGES" / f"{DOMAIN}.po"
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file, locale=LOCALE_DIRS[language], domain=DOMAIN)
            buffer = io.BytesIO()
            write_mo(buffer, catalog, use_fuzzy=False)
            buffer.seek(0)
            translations[language] = gettext.GNUTranslations(buffer)
        return translations

    def gettext(self, message: str, locale: str | None = None) -> str:
        """`message` in `locale`; by default in the language spoken now."""
        translator = self.locales.get(locale or _speaking.get() or self.default_locale)
        return translator.gettext(message) if translator is not None else message

    def text(self, message: str, language: str, **values: object) -> str:
        """One message in one language, outside any update (scheduler, delivery, CLI)."""
        rendered = self.gettext(message, locale=language)
        return rendered.format(**values) if values else rendered

    @contextmanager
    def speaking(self, language: str) -> Iterator[None]:
        """Make `_()` render in `language` for the code inside the block."""
        token = _speaking.set(language)
        try:
            yield
        finally:
            _speaking.reset(token)


def _(message: str) -> str:
    """`message` in the language spoken now (`Catalogs.speaking`)."""
    return catalogs().gettext(message)


def N_(message: str) -> str:
    """Mark a message for the catalogs where it is translated later (menu labels)."""
    return message


_catalogs: Catalogs | None = None


def catalogs() -> Catalogs:
    """The process's catalogs, compiled on first use."""
    global _catalogs
    if _catalogs is None:
        _catalogs = Catalogs()
    return _catalogs


def every_language(message: str) -> frozenset[str]:
    """A message in all languages: a reply-keyboard press arrives as its label's text."""
    return frozenset(catalogs().gettext(message, locale=language) for language in LANGUAGES)


KEYWORDS = {"_": None, "N_": None}
SOURCE_FOLDERS = ("bot", "scheduler", "web")
#: How each kind of source file is read: the back office's templates call `_()` as code does.
METHOD_MAP = [("**.py", "python"), ("**/templates/**.html", "jinja2.ext:babel_extract")]


def source_messages() -> dict[str, list[tuple[str, int]]]:
    """Every message id the code passes through the catalogs, with where it stands."""
    from babel.messages.extract import extract_from_dir

    root = LOCALES_PATH.parent
    found: dict[str, list[tuple[str, int]]] = {}
    for folder in SOURCE_FOLDERS:
        for filename, line, message, _comments, _context in extract_from_dir(
            root / folder, method_map=METHOD_MAP, keywords=KEYWORDS
        ):
            if isinstance(message, tuple):
                message = message[0]
            found.setdefault(message, []).append((f"{folder}/{filename}", line))
    return found


def update_catalogs() -> None:
    """Bring every `.po` in line with the code: new ids added untranslated, gone ids dropped."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import write_po

    template = Catalog(domain=DOMAIN, project="villagebot")
    for message, locations in sorted(source_messages().items()):
        template.add(message, locations=locations)
    for language in LANGUAGES:
        path = LOCALES_PATH / LOCALE_DIRS[language] / "LC_MESSAGES" / f"{DOMAIN}.po"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with path.open("rb") as po_file:
                catalog = read_po(po_file, locale=LOCALE_DIRS[language], domain=DOMAIN)
        else:
            catalog = Catalog(locale=LOCALE_DIRS[language], domain=DOMAIN, project="villagebot")
        # The header's date stays as it was, so a run that changes no message changes no file.
        template.creation_date = catalog.creation_date
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        with path.open("wb") as po_file:
            # No source locations: an entry changes only when its words do, so a change to the
            # code does not touch every catalog, and two changes merge cleanly.
            write_po(
                po_file, catalog, width=100, omit_header=False, sort_output=True,
                no_location=True,
            )


if __name__ == "__main__":
    update_catalogs()
