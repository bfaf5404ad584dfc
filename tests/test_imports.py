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
