"""`python -m web.screenshots`: the README's pictures of the back office and of the demo's phones
page, taken in a real browser on the demo's data, so that they show what the code serves today.

It plays the demo's story quietly (the same as `villagebot demo`, on a fresh SQLite file),
signs the dispatcher in with the link the bot sends on /web, and writes a full-length PNG of
each page to docs/, 1200 pixels wide, reduced to a 256-colour palette to keep the repository
small. Needs the dev extras (Playwright) and a Chromium on the machine: see `chromium_path`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

#: Where the README finds the pictures.
DOCS = Path(__file__).resolve().parent.parent / "docs"
#: The pages' width in the pictures (and in the browser tests).
WIDTH = 1200
#: Each picture and the page it shows; `{story}` is the number of the demo's closed case.
PAGES = {
    "back-office-dashboard.png": "/dashboard",
    "back-office-cases.png": "/cases",
    "back-office-case.png": "/cases/{story}",
}
#: The demo's phones page (bot/phones), the README's first picture.
PHONES = "demo-phones.png"


def chromium_path() -> str | None:
    """VILLAGEBOT_CHROMIUM, else Debian's /usr/bin/chromium, else a `chromium` on PATH.

    Only a Chromium already on the machine: nothing here downloads a browser.
    """
    given = os.environ.get("VILLAGEBOT_CHROMIUM", "").strip()
    if given:
        return given if Path(given).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def shrink(path: Path) -> None:
    """Rewrite the PNG with a 256-colour palette, optimised: a page of text loses nothing seen."""
    from PIL import Image

    with Image.open(path) as picture:
        small = picture.convert("RGB").quantize(colors=256, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


async def take(folder: Path) -> list[Path]:
    """The demo's data in the browser: the case list and the story's case, as PNGs in `folder`."""
    from playwright.async_api import async_playwright

    from bot import demo
    from bot.config import load_settings
    from bot.models import Case, CaseStatus
    from bot.sandbox import Sandbox

    executable = chromium_path()
    if executable is None:
        raise SystemExit("web.screenshots: no Chromium: `apt-get install chromium fonts-noto-cjk` "
                         "(or set VILLAGEBOT_CHROMIUM to a Chromium binary)")
    for noisy in ("aiogram", "tortoise", "bot", "web"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    language = load_settings().default_language
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="villagebot-screenshots-") as data:
        async with Sandbox(
            f"sqlite://{Path(data) / 'demo.sqlite3'}", default_language=language, web=True
        ) as sandbox:
            with contextlib.redirect_stdout(io.StringIO()):  # the story's chats: not wanted here
                su = await demo.story(sandbox)
                await demo.more_reports(sandbox, {})
                link = await demo.sign_in_link(su)
                await demo.join_leader(sandbox)
            phones = await demo.phones_page(sandbox).start()
            story = await Case.filter(status=CaseStatus.CLOSED).order_by("id").first()
            assert story is not None, "the demo's story ends with a closed case"
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=executable)
                try:
                    page = await browser.new_page(viewport={"width": WIDTH, "height": 700})
                    await page.goto(link)
                    await page.wait_for_url(f"{sandbox.web_url}/cases")
                    for name, path in PAGES.items():
                        await page.goto(sandbox.web_url + path.format(story=story.number))
                        await page.screenshot(path=str(folder / name), full_page=True)
                        shrink(folder / name)
                        written.append(folder / name)
                    await page.goto(phones.url)
                    await page.locator(".phone .message").first.wait_for()
                    await page.wait_for_timeout(500)  # the pins' maps drawn
                    await page.screenshot(path=str(folder / PHONES), full_page=True)
                    shrink(folder / PHONES)
                    written.append(folder / PHONES)
                finally:
                    await browser.close()
                    await phones.stop()
    return written


def main(argv: list[str] | None = None) -> int:
    arguments = argparse.ArgumentParser(prog="python -m web.screenshots", description=__doc__)
    arguments.add_argument("--output", type=Path, default=DOCS, help="folder (default: docs/)")
    args = arguments.parse_args(argv)
    for path in asyncio.run(take(args.output)):
        print(f"{path} ({path.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
