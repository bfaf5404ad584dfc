"""`villagebot demo`, the README's run command: it plays the whole case loop to the end, then
serves the back office on the story's data until Ctrl-C; `--story` plays the story alone."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from bench.processes import free_port
from bot.demo import LEADER


def _environment(**extra: str) -> dict[str, str]:
    """This environment without the settings that would point the demo elsewhere."""
    kept = {k: v for k, v in os.environ.items() if not k.upper().endswith(("_URL", "TOKEN"))}
    kept.pop("WEB_LISTEN", None)
    return {**kept, **extra}


def test_the_demo_plays_the_case_loop(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo", "--story"],
        env=_environment(), cwd=tmp_path, capture_output=True, text=True, timeout=240,
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
    assert "/signin/" not in out  # the story alone serves no back office



async def test_the_demo_serves_phones_and_back_office_within_30_seconds_and_its_link_signs_in(
    tmp_path: Path,
) -> None:
    port = free_port()
    started = time.monotonic()
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "demo",
        env=_environment(WEB_LISTEN=f"127.0.0.1:{port}"), cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert demo.stdout is not None and demo.stderr is not None
    errors = asyncio.ensure_future(demo.stderr.read())
    lines: list[str] = []

    async def until_the_link() -> str:
        assert demo.stdout is not None
        while line := (await demo.stdout.readline()).decode():
            lines.append(line)
            if "Sign in as" in line:
                return line
        raise AssertionError("the demo ended before printing a sign-in link")

    try:
        shown = await asyncio.wait_for(until_the_link(), timeout=240)
    except BaseException:
        demo.kill()
        await demo.wait()
        raise AssertionError("".join(lines)[-3000:] + (await errors).decode()[-3000:]) from None
    took = time.monotonic() - started
    out = "".join(lines)
    phones = re.search(r"The phones are open: (http://\S+)", out)
    assert phones is not None, out[-2000:]
    assert f"The back office is open: http://127.0.0.1:{port}" in out
    assert took < 30, f"both addresses after {took:.1f} s"
    link = re.search(r"http://\S+/signin/\S+", shown)
    assert link is not None and link.group(0).startswith(f"http://127.0.0.1:{port}/signin/")
    story = re.search(r"您的事项编号：(BL-\d{4}-\d+)", out)
    assert story is not None
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(link.group(0)) as response:
                page = await response.text()
                assert response.status == 200 and response.url.path == "/cases", page
            # the story's case, three more, and the township task's three
            assert "苏进侨" in page and "共 7 件事项" in page
            assert f'href="/cases/{story.group(1)}"' in page
            async with browser.get(f"http://127.0.0.1:{port}/cases/{story.group(1)}") as response:
                case = await response.text()
                assert response.status == 200 and "已结案" in case and "林秀英" in case
            async with browser.get(link.group(0)) as response:  # single use
                assert response.status == 403
            async with browser.get(phones.group(1)) as response:
                assert response.status == 200 and "static/phones.js" in await response.text()
            async with browser.get(f"{phones.group(1)}/chats/{LEADER}") as response:
                leader = await response.json()  # the committee's leader joined, on his phone
            assert "欢迎您，郑国华" in leader["messages"][1]["text"]
    finally:
        demo.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(demo.wait(), timeout=60)
    rest = (await demo.stdout.read()).decode()
    stderr = (await errors).decode()
    assert code == 0, rest + stderr[-3000:]
    assert "The demo is stopped." in rest
    assert "Traceback" not in stderr
