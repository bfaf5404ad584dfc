"""The back office in a real browser: the system's Chromium driven by Playwright.

`BackOffice` is what an official does with the pages (sign in with the link from the bot, filter
the list, open a case, assign it, switch language, sign out), each a method that acts as a
person would, by the labels and links on the page, and waits for the page it leads to. A test of
a new page adds a method or two here and reads like the others: `await back_office.nav("统计")`
follows the header's link to it, then `text()`, `fonts()` or `page.locator(...)` read it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from web.screenshots import WIDTH, chromium_path

if TYPE_CHECKING:
    from playwright.async_api import Page

    from bot.sandbox import Phone, Sandbox

#: Why the browser tests did not run, and how to make them run: printed by `make test`.
NO_CHROMIUM = (
    "no Chromium to run the browser tests in: `apt-get install chromium fonts-noto-cjk` "
    "(or set VILLAGEBOT_CHROMIUM to a Chromium binary)"
)
NO_PLAYWRIGHT = "the browser tests need Playwright: `pip install -e '.[dev]'`"
#: Full-page screenshots of every browser test, one per test, named after it (gitignored).
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
#: As wide as the README's screenshots: the list's columns fit.
VIEWPORT = {"width": WIDTH, "height": 800}

__all__ = ["ARTIFACTS", "NO_CHROMIUM", "NO_PLAYWRIGHT", "BackOffice", "artifact", "chromium_path"]


def artifact(test_name: str) -> Path:
    """Where the screenshot of `test_name` goes: one file name per test, parameters included."""
    return ARTIFACTS / (re.sub(r"[^\w.\-\[\]]+", "_", test_name) + ".png")


class BackOffice:
    """One official's browser tab on the sandbox's back office."""

    def __init__(self, page: Page, sandbox: Sandbox) -> None:
        self.page = page
        self.sandbox = sandbox

    @property
    def url(self) -> str:
        return self.sandbox.web_url

    async def sign_in(self, handset: Phone) -> None:
        """Send /web to the bot, open the link it answers with, and land on the case list."""
        await handset.send("/web")
        message = await handset.expect("/signin/")
        found = re.search(r"https?://\S+/signin/\S+", message["text"])
        assert found is not None, message["text"]
        self.link = found.group(0)
        await self.page.goto(self.link)
        await self.page.wait_for_url(f"{self.url}/cases")

    async def heading(self) -> str:
        return await self.page.locator("h1").inner_text()

    async def text(self) -> str:
        """The page's visible text, as a reader sees it."""
        return await self.page.locator("body").inner_text()

    async def nav(self, label: str) -> None:
        """Follow a link of the header by its label ("事项", and the pages to come)."""
        async with self.page.expect_navigation():
            await self.page.locator("header").get_by_role("link", name=label, exact=True).click()

    async def listed(self) -> list[str]:
        """The case numbers in the list, top to bottom."""
        return await self.page.locator("table tbody tr td:first-child a").all_inner_texts()

    async def count(self) -> str:
        """The list's count line, e.g. "共 3 件事项"."""
        return await self.page.locator("p.count .total").inner_text()

    async def filter(
        self,
        *,
        status: str | None = None,
        village: str | None = None,
        unit: str | None = None,
        category: str | None = None,
        overdue: bool | None = None,
        text: str | None = None,
    ) -> list[str]:
        """Set the list's filters by their visible labels, press the filter button, and give
        the numbers listed. A filter left as None stays as it is on the page."""
        form = self.page.locator("form.filters")
        chosen = {"status": status, "village": village, "unit": unit, "category": category}
        for name, label in chosen.items():
            if label is not None:
                await form.locator(f"select[name={name}]").select_option(label=label)
        if overdue is not None:
            await form.locator("input[name=overdue]").set_checked(overdue)
        if text is not None:
            await form.locator("input[name=q]").fill(text)
        async with self.page.expect_navigation():
            await form.locator("button[type=submit]").click()
        return await self.listed()

    async def open_case(self, number: str) -> None:
        """Click the case's number in the list."""
        async with self.page.expect_navigation():
            await self.page.get_by_role("link", name=number, exact=True).click()
        assert number in await self.heading()

    async def fact(self, label: str) -> str:
        """A line of the case's facts, by its label ("办理人", "状态" ...)."""
        term = self.page.locator("dl.facts dt", has_text=re.compile(f"^{re.escape(label)}$"))
        return await term.locator("xpath=following-sibling::dd[1]").inner_text()

    async def assign(self, to: str, by: str) -> None:
        """Choose whom and the deadline in the case's Assign form by their labels; submit."""
        form = self.page.locator("form[action$='/assign']")
        await form.locator("select[name=official]").select_option(label=to)
        await form.locator("select[name=hours]").select_option(label=by)
        async with self.page.expect_navigation():
            await form.locator("button[type=submit]").click()

    async def give_task(
        self, *, title: str, description: str, deadline: str, units: Sequence[str] = (),
        committees: bool = False,
    ) -> None:
        """Fill the new task's form as typed and clicked (units by their labels, the deadline
        as the datetime field takes it: 2026-12-05T18:00) and give it."""
        form = self.page.locator("form.task-form")
        await form.locator("input[name=title]").fill(title)
        await form.locator("textarea[name=description]").fill(description)
        await form.locator("input[name=deadline]").fill(deadline)
        if committees:
            await form.get_by_label("全部村两委", exact=True).check()
        for unit in units:
            await form.get_by_label(unit, exact=True).check()
        async with self.page.expect_navigation():
            await form.locator("button[type=submit]").click()

    async def switch_language(self, name: str) -> None:
        """Press a language's name in the header (简体中文, 繁體中文, English)."""
        async with self.page.expect_navigation():
            await self.page.locator("form.languages").get_by_role(
                "button", name=name, exact=True
            ).click()

    async def sign_out(self) -> None:
        async with self.page.expect_navigation():
            await self.page.locator("form[action='/logout'] button").click()

    async def fonts(self, selector: str) -> set[str]:
        """The fonts Chromium drew the first element matching `selector` with: a Chinese
        page must use a CJK font, not fall back to empty boxes."""
        devtools = await self.page.context.new_cdp_session(self.page)
        try:
            await devtools.send("DOM.enable")
            await devtools.send("CSS.enable")
            root = await devtools.send("DOM.getDocument")
            node = await devtools.send(
                "DOM.querySelector", {"nodeId": root["root"]["nodeId"], "selector": selector}
            )
            used = await devtools.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})
        finally:
            await devtools.detach()
        return {font["familyName"] for font in used["fonts"]}

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(path), full_page=True)
