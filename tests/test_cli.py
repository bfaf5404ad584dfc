"""The villagebot command, run as an operator would run it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import yaml

from bench.processes import free_port
from bot.emulator import BotAPIEmulator
from bot.sandbox import EXAMPLE_DIRECTORY

SETTINGS = {
    "BOT_TOKEN", "TELEGRAM_API_URL", "DATABASE_URL", "REDIS_URL", "DIRECTORY_FILE", "TIMEZONE",
    "LOG_LEVEL", "WEB_LISTEN", "WEB_URL", "WEB_SECRET",
}
#: Starting the command imports aiogram, seconds on a busy machine: a hang is what this catches.
STARTED_WITHIN = 90.0


def _environment(database_url: str, settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS}
    env["DATABASE_URL"] = database_url
    env["WEB_LISTEN"] = ""  # no back office unless a test asks: tests run side by side
    env.update(settings)
    return env


def villagebot(
    *args: str, database_url: str, cwd: Path, **settings: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=_environment(database_url, settings), cwd=cwd, capture_output=True, text=True,
        timeout=STARTED_WITHIN,
    )


@pytest.fixture
async def start_villagebot(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Starts the command beside this test's event loop (and the emulator on it); one that
    outlives a failed test is killed."""
    started: list[asyncio.subprocess.Process] = []

    async def start(*args: str, **settings: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", *args,
            env=_environment(database_url, settings), cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def finished(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """Its exit code and what it wrote on stderr, once it has ended by itself."""
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=STARTED_WITHIN)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


@pytest.fixture
def run(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    def call(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return villagebot(*args, database_url=database_url, cwd=tmp_path, **settings)

    return call


def test_import_export_round_trip(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = run("directory", "import", str(EXAMPLE_DIRECTORY), DEFAULT_LANGUAGE="en")
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    again = run("directory", "import", str(EXAMPLE_DIRECTORY))
    assert again.returncode == 0 and again.stdout == "名录 BL：没有变化\n"
    exported = run("directory", "export", "-o", str(tmp_path / "out.yaml"))
    assert exported.returncode == 0, exported.stderr
    data = yaml.safe_load((tmp_path / "out.yaml").read_text(encoding="utf-8"))
    original = yaml.safe_load(EXAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    assert data["township"]["code"] == "BL"
    assert [v["code"] for v in data["villages"]] == [v["code"] for v in original["villages"]]
    assert len(data["officials"]) == len(original["officials"])
    back = run("directory", "import", str(tmp_path / "out.yaml"))
    assert back.returncode == 0 and back.stdout == "名录 BL：没有变化\n"


def test_an_invalid_file_is_explained_and_changes_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("directory", "import", str(EXAMPLE_DIRECTORY)).returncode == 0
    broken = yaml.safe_load(EXAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    del broken["villages"][2]["grids"][0]["name"]
    broken["units"][3]["supervisor"] = "foo"
    broken["township"]["name"] = "Renamed"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
    result = run("directory", "import", str(path), DEFAULT_LANGUAGE="en")
    assert result.returncode == 1
    assert "nothing was changed" in result.stderr
    assert "villages[2].grids[0].name: missing" in result.stderr
    assert "units[3].supervisor: unknown unit 'foo'" in result.stderr
    assert "Traceback" not in result.stderr
    chinese = run("directory", "import", str(path))  # DEFAULT_LANGUAGE: zh-hans
    assert chinese.returncode == 1
    assert "units[3].supervisor: 没有代码为 'foo' 的单位" in chinese.stderr.splitlines()
    exported = run("directory", "export")
    assert "name: 坂里乡" in exported.stdout and "Renamed" not in exported.stdout


def test_invite_prints_a_link(run) -> None:  # type: ignore[no-untyped-def]
    assert run("directory", "import", str(EXAMPLE_DIRECTORY)).returncode == 0
    result = run("invite", "su-jinqiao", "--bot-username", "banli_bot")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("https://t.me/banli_bot?start=inv-")
    assert "single use" in result.stderr
    missing = run("invite", "nobody", "--bot-username", "banli_bot")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "villagebot: no active official with the code nobody"


def test_migrate_reports_what_it_did(run) -> None:  # type: ignore[no-untyped-def]
    result = run("migrate")
    assert result.returncode == 0, result.stderr
    assert "applied models.0001_initial" in result.stdout or "up to date" in result.stdout
    assert "up to date" in run("migrate").stdout


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = villagebot(
        "migrate", database_url="postgres://postgres@127.0.0.1:1/none", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "villagebot: setting DATABASE_URL: cannot use the database:"
    )
    assert "Traceback" not in result.stderr


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "not.sqlite3").write_text("a shopping list", encoding="utf-8")
    result = villagebot("migrate", database_url=f"sqlite://{tmp_path}/not.sqlite3", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "villagebot: setting DATABASE_URL: cannot use the database: file is not a database"
    )


# ---- `villagebot run`: a start that cannot succeed says why and ends --------------------------

TOKEN = "123456:TEST-TOKEN"


async def test_a_refused_token_is_one_line(start_villagebot) -> None:  # type: ignore[no-untyped-def]
    async with BotAPIEmulator(token=TOKEN) as telegram:
        url = telegram.base_url
        bot = await start_villagebot(
            "run", BOT_TOKEN="123456:WRONG-TOKEN", TELEGRAM_API_URL=url,
        )
        code, stderr = await finished(bot)
    assert code == 1
    assert stderr == (
        f"villagebot: setting BOT_TOKEN: {url} refused it (401 Unauthorized); "
        "copy the token again from @BotFather\n"
    )


@pytest.mark.parametrize("answer", ["<html><body>Not Found</body></html>", '{"status": "up"}'],
                         ids=["web page", "other JSON"])
async def test_a_server_that_is_not_a_bot_api_is_one_line(  # type: ignore[no-untyped-def]
    start_villagebot, answer: str
) -> None:
    """TELEGRAM_API_URL reaches something that is not a Bot API server (a web site, another
    service): waiting will not help, so the start says so on one line and exits."""
    from aiohttp import web

    async def anything(request: web.Request) -> web.Response:
        return web.Response(status=404, text=answer)

    application = web.Application()
    application.router.add_route("*", "/{path:.*}", anything)
    runner = web.AppRunner(application)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    try:
        bot = await start_villagebot("run", BOT_TOKEN=TOKEN, TELEGRAM_API_URL=url)
        code, stderr = await finished(bot)
    finally:
        await runner.cleanup()
    assert code == 1
    assert stderr == (
        f"villagebot: setting TELEGRAM_API_URL: {url} answered, but not as a Bot API server "
        "does; is it the right address?\n"
    )


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_telegram_out_of_reach_is_waited_for_until_stopped(
    start_villagebot, stop: signal.Signals  # type: ignore[no-untyped-def]
) -> None:
    bot = await start_villagebot("run", BOT_TOKEN=TOKEN, TELEGRAM_API_URL="http://127.0.0.1:1")
    assert bot.stderr is not None
    attempts = []
    for wait in ("1 s", "2 s"):
        line = await asyncio.wait_for(bot.stderr.readline(), timeout=STARTED_WITHIN)
        attempts.append(line.decode())
        assert "WARNING bot.startup: cannot reach Telegram at http://127.0.0.1:1: " in line.decode()
        assert line.decode().endswith(f"; trying again in {wait}\n")
    asked = time.monotonic()
    bot.send_signal(stop)
    code, rest = await finished(bot)
    assert time.monotonic() - asked < 10
    assert code == 1
    assert rest == "villagebot: stopped before the bot started\n", attempts


async def test_sigterm_stops_a_running_bot_cleanly(start_villagebot) -> None:  # type: ignore[no-untyped-def]
    async with BotAPIEmulator(token=TOKEN) as telegram:
        bot = await start_villagebot("run", BOT_TOKEN=TOKEN, TELEGRAM_API_URL=telegram.base_url)
        assert bot.stderr is not None
        seen = []
        while not seen or "Run polling for bot @villagebot" not in seen[-1]:
            line = await asyncio.wait_for(bot.stderr.readline(), timeout=STARTED_WITHIN)
            assert line, seen
            seen.append(line.decode())
        bot.send_signal(signal.SIGTERM)
        code, rest = await finished(bot)
    assert code == 0, rest
    assert "Traceback" not in rest and "ERROR" not in rest, rest


@pytest.mark.parametrize(
    ("content", "problems"),
    [
        ("township: [\n", [
            "line 2: not valid YAML: expected the node content, but found '<stream end>'"
        ]),
        (
            "township: {code: bl, name: 坂里乡}\nvillages: [{code: A}]\n",
            [
                "township.code: must be 1-8 capital letters",
                "villages[0].code: must be 1-32 characters of a-z, 0-9, '_' and '-'",
                "villages[0].name: missing",
            ],
        ),
    ],
    ids=["not YAML", "not a directory"],
)
def test_an_invalid_directory_file_stops_the_start(
    run, tmp_path: Path, content: str, problems: list[str]  # type: ignore[no-untyped-def]
) -> None:
    path = tmp_path / "directory.yaml"
    path.write_text(content, encoding="utf-8")
    result = run("run", BOT_TOKEN=TOKEN, TELEGRAM_API_URL="http://127.0.0.1:1",
                 DIRECTORY_FILE=str(path))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"villagebot: setting DIRECTORY_FILE: {path} is not valid; nothing was changed:"
    )
    assert lines[1:] == problems


def test_a_missing_directory_file_is_one_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("run", BOT_TOKEN=TOKEN, DIRECTORY_FILE=str(tmp_path / "nowhere.yaml"))
    assert result.returncode == 2
    assert result.stderr == (
        f"villagebot: setting DIRECTORY_FILE: file {tmp_path / 'nowhere.yaml'} does not exist\n"
    )


def test_run_with_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = villagebot(
        "run", database_url="postgres://postgres@127.0.0.1:1/none", cwd=tmp_path,
        BOT_TOKEN=TOKEN, TELEGRAM_API_URL="http://127.0.0.1:1",
    )
    assert result.returncode == 2
    assert result.stderr.startswith(
        "villagebot: setting DATABASE_URL: cannot use the database:"
    )
    assert len(result.stderr.splitlines()) == 1


# ---- TIMEZONE, township time ------------------------------------------------------------------


def _directory_without_a_zone(tmp_path: Path) -> Path:
    data = yaml.safe_load(EXAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    del data["township"]["timezone"]
    path = tmp_path / "no-zone.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_a_township_that_names_no_zone_keeps_township_time_in_timezone(  # type: ignore[no-untyped-def]
    run, tmp_path: Path
) -> None:
    imported = run("directory", "import", str(_directory_without_a_zone(tmp_path)),
                   TIMEZONE="Europe/Berlin")
    assert imported.returncode == 0, imported.stderr
    exported = run("directory", "export", TIMEZONE="Asia/Shanghai")
    assert yaml.safe_load(exported.stdout)["township"]["timezone"] == "Europe/Berlin"

    invited = run("invite", "su-jinqiao", "--bot-username", "banli_bot")
    assert invited.returncode == 0, invited.stderr
    expires = re.search(r"expires (\S+ \S+) Europe/Berlin \(UTC\+0[12]:00\)$", invited.stderr)
    assert expires, invited.stderr
    berlin = datetime.now(UTC).astimezone(ZoneInfo("Europe/Berlin")) + timedelta(days=7)
    shown = datetime.strptime(expires[1], "%Y-%m-%d %H:%M")
    assert abs(shown - berlin.replace(tzinfo=None)) < timedelta(minutes=5)

    # A file that names its zone keeps it, whatever TIMEZONE says.
    again = run("directory", "import", str(EXAMPLE_DIRECTORY), TIMEZONE="Europe/Berlin")
    assert again.returncode == 0, again.stderr
    exported = run("directory", "export")
    assert yaml.safe_load(exported.stdout)["township"]["timezone"] == "Asia/Shanghai"
    invited = run("invite", "su-jinqiao", "--bot-username", "banli_bot")
    assert re.search(r"expires \S+ \S+ Asia/Shanghai \(UTC\+08:00\)$", invited.stderr)


# ---- digest and ranking -------------------------------------------------------------------------


def test_a_dry_run_writes_a_chart_only_when_asked(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("directory", "import", str(EXAMPLE_DIRECTORY)).returncode == 0
    shown = run("digest", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert "chart" not in shown.stdout
    assert list(tmp_path.glob("*.png")) == []
    charted = run("digest", "--dry-run", "--chart", "week.png")
    assert charted.returncode == 0, charted.stderr
    assert (tmp_path / "week.png").read_bytes().startswith(b"\x89PNG")


def test_a_chart_without_dry_run_is_refused(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("directory", "import", str(EXAMPLE_DIRECTORY)).returncode == 0
    refused = run("digest", "--chart", "week.png")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        "villagebot: error: --chart works with --dry-run only (without it the digest is queued)"
    )
    assert not (tmp_path / "week.png").exists()
    assert "queued for chat" in run("digest").stdout  # not "already queued"


@pytest.mark.parametrize("command", ["digest", "ranking"])
def test_the_township_must_be_named_among_several_or_imported_first(  # type: ignore[no-untyped-def]
    run, tmp_path: Path, command: str
) -> None:
    none = run(command, "--dry-run")
    assert none.returncode == 2
    assert none.stderr == (
        "villagebot: no township yet: import a directory first "
        "(villagebot directory import FILE)\n"
    )
    assert run("directory", "import", str(EXAMPLE_DIRECTORY)).returncode == 0
    second = yaml.safe_load(EXAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    second["township"]["code"] = "XY"
    (tmp_path / "xy.yaml").write_text(yaml.safe_dump(second, allow_unicode=True), "utf-8")
    assert run("directory", "import", str(tmp_path / "xy.yaml")).returncode == 0
    several = run(command, "--dry-run")
    assert several.returncode == 2
    assert several.stderr == (
        "villagebot: several townships (BL, XY): add --township with one of them\n"
    )
    assert run(command, "--dry-run", "--township", "XY").returncode == 0



async def test_web_serves_the_back_office_alone_until_stopped(start_villagebot) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    office = await start_villagebot("web", WEB_LISTEN=f"127.0.0.1:{port}")
    assert office.stdout is not None
    line = await asyncio.wait_for(office.stdout.readline(), timeout=STARTED_WITHIN)
    assert line.decode().startswith(f"back office on 127.0.0.1:{port}"), line
    async with (
        aiohttp.ClientSession() as browser,
        browser.get(f"http://127.0.0.1:{port}/cases") as response,
    ):
        assert response.status == 401
        assert "/web" in await response.text()
    office.send_signal(signal.SIGTERM)
    code, rest = await finished(office)
    assert code == 0 and "Traceback" not in rest, rest


async def test_run_says_in_one_line_when_the_back_office_cannot_listen(
    start_villagebot,  # type: ignore[no-untyped-def]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        async with BotAPIEmulator(token=TOKEN) as telegram:
            bot = await start_villagebot(
                "run", BOT_TOKEN=TOKEN, TELEGRAM_API_URL=telegram.base_url, WEB_LISTEN=listen
            )
            code, rest = await finished(bot)
    assert code == 1
    assert rest.splitlines()[-1].startswith(
        f"villagebot: setting WEB_LISTEN: cannot serve the back office on {listen}: "
    ), rest
    assert "Traceback" not in rest
