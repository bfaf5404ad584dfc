"""`--workers N`: one command, several processes on one port, run as an operator runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from test_cli import STARTED_WITHIN, _environment, finished, villagebot

from bench.processes import free_port as _free_port
from bot import workers
from bot.config import load_settings

TOKEN = "123456:TEST-TOKEN"
SERVING = "back office on "


def children(pid: int) -> set[int]:
    """The live (not zombie) processes whose parent is `pid`, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        state, parent = stat.rpartition(")")[2].split()[:2]
        if int(parent) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def listening_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
            return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def holds(pid: int, inode: str) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    return any(os.readlink(fd) == f"socket:[{inode}]" for fd in fds.iterdir())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
async def start_workers(database_url: str, tmp_path: Path) -> AsyncIterator:  # type: ignore[type-arg]
    """Starts `villagebot web --workers N` on a free port; a parent that outlives a failed
    test is killed with its workers."""
    started: list[asyncio.subprocess.Process] = []

    async def start(count: int) -> tuple[asyncio.subprocess.Process, int]:
        port = _free_port()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "web", "--workers", str(count),
            env=_environment(database_url, {"WEB_LISTEN": f"127.0.0.1:{port}"}), cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        started.append(process)
        await serving(process, count)
        return process, port

    yield start
    for process in started:
        if process.returncode is None:
            for child in children(process.pid):
                os.kill(child, signal.SIGKILL)
            process.kill()
            await process.wait()


async def serving(process: asyncio.subprocess.Process, count: int) -> None:
    """Wait until `count` more workers say they serve."""
    assert process.stdout is not None
    for _ in range(count):
        line = await asyncio.wait_for(process.stdout.readline(), timeout=STARTED_WITHIN)
        assert line.decode().startswith(SERVING), line


async def answered(port: int, times: int = 6) -> list[int]:
    """The statuses of `times` requests, each on a connection of its own."""
    statuses = []
    for _ in range(times):
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as browser,
            browser.get(
                f"http://127.0.0.1:{port}/signin", timeout=aiohttp.ClientTimeout(total=20)
            ) as response,
        ):
            statuses.append(response.status)
    return statuses


async def test_two_workers_answer_on_one_port_and_stop_together(start_workers) -> None:  # type: ignore[no-untyped-def]
    parent, port = await start_workers(2)
    pids = children(parent.pid)
    assert len(pids) == 2, pids
    inode = listening_inode(port)
    assert all(holds(pid, inode) for pid in pids)  # one socket, bound once, in both
    # Each answers alone while the other cannot: both serve the port.
    for paused in sorted(pids):
        os.kill(paused, signal.SIGSTOP)
        try:
            assert await answered(port) == [200] * 6, f"with {paused} paused"
        finally:
            os.kill(paused, signal.SIGCONT)

    parent.send_signal(signal.SIGTERM)
    code, stderr = await finished(parent)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
    assert "SIGTERM: stopping 2 workers" in stderr
    assert not any(alive(pid) for pid in pids), "a worker outlived its parent"


async def test_a_killed_worker_is_replaced(start_workers) -> None:  # type: ignore[no-untyped-def]
    parent, port = await start_workers(2)
    first = children(parent.pid)
    killed = min(first)
    os.kill(killed, signal.SIGKILL)
    await serving(parent, 1)  # the new one
    now = children(parent.pid)
    assert len(now) == 2 and killed not in now and first - {killed} < now, (first, now)
    replacement = (now - first).pop()
    assert holds(replacement, listening_inode(port))
    assert await answered(port) == [200] * 6

    parent.send_signal(signal.SIGINT)
    code, stderr = await finished(parent)
    assert code == 0, stderr
    assert f"(pid {killed}) ended by itself (killed by SIGKILL); starting it again" in stderr
    assert "SIGINT: stopping 2 workers" in stderr
    assert not any(alive(pid) for pid in now)


def test_a_worker_that_keeps_ending_stops_them_all(tmp_path: Path) -> None:
    """A worker ending at once, again and again, is not restarted for ever: the command ends
    with the reason. (A stand-in for the command's work: one that ends at once.)"""
    script = textwrap.dedent("""
        import logging, signal, sys
        from bot import workers
        from bot.config import load_settings

        logging.basicConfig(level=logging.INFO)
        settings = load_settings(web_listen="127.0.0.1:0", instance="here")
        sys.exit(workers.serve(
            2, settings, workers.listen(settings.web_listen),
            # Worker 1 ends at once; worker 2 waits to be stopped.
            work=lambda mine, listening: 3 if mine.instance == "here-1" else (
                signal.sigwait({signal.SIGTERM}) and 0
            ),
            first=lambda: 0,
        ))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=STARTED_WITHIN,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "villagebot: worker 1 ended 5 times within 30 s (last: exit code 3): stopping all"
    )
    assert result.stderr.count("worker 1 started") == 5
    assert "starting it again in 4.0 s" in result.stderr  # 0.5, 1, 2, 4: backing off


def test_run_with_several_workers_needs_webhook_mode(database_url: str, tmp_path: Path) -> None:
    result = villagebot(
        "run", "--workers", "2", database_url=database_url, cwd=tmp_path, BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL="http://127.0.0.1:1", WEB_LISTEN="127.0.0.1:0",
    )
    assert result.returncode == 2
    assert result.stderr == (
        "villagebot: --workers 2 needs webhook mode (WEBHOOK_URL): Telegram allows one "
        "getUpdates consumer per bot\n"
    )


@pytest.mark.parametrize("count", ["0", "65", "two", "-1"])
def test_an_invalid_number_of_workers_is_refused(
    database_url: str, tmp_path: Path, count: str
) -> None:
    result = villagebot("web", f"--workers={count}", database_url=database_url, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "villagebot web: error: argument --workers: must be a whole number from 1 to 64"
    )


def test_web_workers_need_web_listen(database_url: str, tmp_path: Path) -> None:
    result = villagebot("web", "--workers", "3", database_url=database_url, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "villagebot: --workers 3 needs WEB_LISTEN: each worker serves it "
        "(the back office, and in webhook mode Telegram's updates)\n"
    )


def test_run_with_several_workers_is_accepted_in_webhook_mode() -> None:
    """What webhook mode brings (a WEBHOOK_URL setting) is all `run --workers N` waits for."""
    settings = load_settings(bot_token=TOKEN, web_listen="127.0.0.1:0", instance="host")
    webhook = settings.model_copy(update={"webhook_url": "https://bot.example.org/telegram"})
    assert workers.refusal("run", webhook, 4) is None
    assert workers.refusal("run", settings, 4) == (
        "--workers 4 needs webhook mode (WEBHOOK_URL): Telegram allows one getUpdates "
        "consumer per bot"
    )
    assert workers.refusal("web", settings, 4) is None
    long_name = settings.model_copy(update={"instance": "x" * 63})
    assert workers.refusal("web", long_name, 12) == (
        "setting INSTANCE: at most 61 characters with --workers 12"
    )


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_workers_lines_name_it_in_the_chosen_format(tmp_path: Path, log_format: str) -> None:
    script = textwrap.dedent(f"""
        import logging, socket, sys
        from bot import logs, workers
        from bot.config import load_settings
        from bot.logs import handling

        logs.configure("INFO", {log_format!r})
        settings = load_settings(instance="here-2", log_format={log_format!r})

        def work(mine, listening):
            with handling(42):
                logging.getLogger("bot.here").info("serving")
            return 0

        sys.exit(workers._child(workers.Worker(2, settings), socket.socket(), work))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=STARTED_WITHIN,
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    if log_format == "json":
        record = json.loads(line)
        assert (record["worker"], record["update_id"], record["message"]) == (2, 42, "serving")
    else:
        assert line.endswith(" INFO worker 2 bot.here: serving [update=42]"), line
