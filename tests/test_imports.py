"""What a serving process never needs stays off its import path (`bench.imports`)."""

from __future__ import annotations

import subprocess
import sys

from bench.imports import KEPT_OUT


def test_the_bot_process_imports_no_emulator_sandbox_demo_or_chart_library() -> None:
    probe = (
        "import sys, bot.app, bot.cli, web.server, scheduler.service; "
        f"print(','.join(m for m in {KEPT_OUT!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert loaded == "", f"imported at start: {loaded}"


def test_the_commands_that_never_talk_to_telegram_import_no_aiogram() -> None:
    """`directory import|export`, `apikey` and `invite` start in a second, not after aiogram's
    whole Bot API is built."""
    probe = (
        "import sys, bot.cli, bot.db, bot.directory, bot.apikeys, bot.invitations, bot.i18n; "
        "from bot.i18n import catalogs; catalogs().text('Category: {name}', 'en', name='x'); "
        "print(','.join(m for m in sys.modules "
        "if m == 'bot.cases' or m.split('.')[0] == 'aiogram'))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert loaded == "", f"imported: {loaded}"
