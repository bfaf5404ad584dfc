"""`villagebot demo`, the README's run command, plays the whole case loop to the end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_plays_the_case_loop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith(("_URL", "TOKEN"))}
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    steps = [
        "\n李明: [📝 我要反映问题]",
        "✅ 已提交。您的事项编号：BL-",
        "\n林秀英: [✅ 受理]",
        "\n林秀英: [photo]",
        "问题解决了吗？",
        "已结案，评价 5 星",
        "The demo is over.",
    ]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions, dict(zip(steps, positions, strict=True))
    assert positions == sorted(positions)
    assert "Traceback" not in result.stderr
