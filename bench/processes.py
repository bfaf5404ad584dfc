"""`villagebot` commands run as real processes, as an operator runs them: for the tests and the
benchmarks that start the service itself (test_production, test_workers, test_race,
test_duplicates, `bench.race`, `bench.duplicates`). Standard library and aiohttp only.

- `environment(settings)`: this process's environment without any villagebot setting of its
  own, with `settings` on top (a developer's `.env` values never leak into the processes).
- `Command`: `villagebot` with an environment, run to its end (`migrate`, `invite` ...).
- `Process`: a started command whose stderr is read all along (a full pipe would stall it),
  `said(...)` to wait for a log line, `stopped()`, `log`; `Running` adds what `--workers`
  logs (each worker's pid, the worker that handled each update).
- Separate instances behind a reverse proxy: `webhook_settings(...)` (one database, one
  webhook address and secret, unpaced sending), `start_instances(n, shared, cwd)` (each on its
  own port and INSTANCE, returned once each receives updates), `stop_instances`, and
  `post_update(session, instance, update)`, as Telegram (or the proxy in front) POSTs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

#: Starting imports aiogram, seconds on a busy machine: a hang is what this catches.
STARTED_WITHIN = 90.0
#: Settings a developer's environment may hold that would change what the processes do.
OWN_SETTINGS = (
    "WEBHOOK_", "WEB_", "BOT_", "TELEGRAM_", "REDIS_", "DATABASE_", "DIRECTORY_", "SCHEDULER",
    "INSTANCE", "LOG_", "MESSAGES_PER_SECOND",
)
#: The log line each instance writes once it serves its webhook route.
RECEIVING = "receiving updates by webhook"


#: Ports for the processes' servers, below Linux's ephemeral range (32768 and up): a port
#: found free there could be taken as the local end of some connection before the process
#: binds it; here only another `free_port` could, one chance in thousands.
FREE_PORTS = range(20000, 32768)


def free_port() -> int:
    """A port of loopback nobody listens on, for a process that will bind it."""
    while True:
        port = secrets.choice(FREE_PORTS)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def environment(settings: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(OWN_SETTINGS)}
    env.update(settings)
    return env


class Command:
    """`villagebot` with the given environment, in the folder `cwd`."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", *args, env=self.env, cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )

    async def __call__(self, *args: str) -> str:
        """Run to the end (an emulator answers it meanwhile, on this loop); its output."""
        process = await self.start(*args)
        out, err = await asyncio.wait_for(process.communicate(), STARTED_WITHIN)
        assert process.returncode == 0, (args, err.decode())
        return out.decode()


class Process:
    """A started command, its stderr read all along."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._more = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.lines.append(line.decode())
            self._more.set()

    async def said(self, wanted: Callable[[list[str]], bool]) -> None:
        deadline = time.monotonic() + STARTED_WITHIN
        while not wanted(self.lines):
            assert not self._reader.done(), "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            self._more.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._more.wait(), 1.0)

    async def stopped(self) -> int:
        await asyncio.wait_for(self.process.wait(), STARTED_WITHIN)
        await self._reader
        assert self.process.returncode is not None
        return self.process.returncode

    @property
    def log(self) -> str:
        return "".join(self.lines)


class Running(Process):
    """`run --workers N`: what its log says of the workers."""

    def workers(self) -> dict[int, int]:
        """Each worker's number, by its pid."""
        started = re.findall(r"worker (\d+) started \(pid (\d+),", self.log)
        return {int(pid): int(number) for number, pid in started}

    def handled(self) -> dict[int, list[int]]:
        """By update id, the workers that handled it (aiogram's line for each update; one
        dropped as a second arrival says "not handled")."""
        found: dict[int, list[int]] = {}
        for number, update in re.findall(
            r"worker (\d+) aiogram\.event: Update id=(\d+) is handled\.", self.log
        ):
            found.setdefault(int(update), []).append(int(number))
        return found


class Instance(Process):
    """One `villagebot run`; `url` is its webhook route on its own port."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, secret: str) -> None:
        super().__init__(process)
        self.url = url
        self.secret = secret


def webhook_settings(
    *, token: str, api_url: str, database_url: str, folder: Path, redis_url: str | None = None
) -> dict[str, str]:
    """What every instance shares: the database (and Redis), one webhook path and secret.
    Sending is unpaced: the emulator, not the bot, would be what holds replies back."""
    settings = {
        "BOT_TOKEN": token,
        "TELEGRAM_API_URL": api_url,
        "DATABASE_URL": database_url,
        "WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/telegram/{secrets.token_urlsafe(12)}",
        "WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "WEB_FILES": str(folder / "files"),
        "MESSAGES_PER_SECOND": "100000",
        "QUIET_HOURS": "off",
    }
    if redis_url:
        settings["REDIS_URL"] = redis_url
    return settings


async def start_instances(count: int, shared: dict[str, str], cwd: Path) -> list[Instance]:
    """`count` instances side by side, each on its own port and INSTANCE, all receiving.

    WEBHOOK_URL is the proxy's address; each instance answers on that path at its own port.
    The first to start sets the webhook; the others find it set."""
    path = urlsplit(shared["WEBHOOK_URL"]).path
    started: list[Instance] = []
    try:
        for number in range(1, count + 1):
            port = free_port()
            env = environment({
                **shared, "WEB_LISTEN": f"127.0.0.1:{port}", "WEB_URL": f"http://127.0.0.1:{port}",
                "INSTANCE": f"instance-{number}",
            })
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "run", env=env, cwd=cwd,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            started.append(
                Instance(process, f"http://127.0.0.1:{port}{path}", shared["WEBHOOK_SECRET"])
            )
        await asyncio.gather(*(
            instance.said(lambda lines: any(RECEIVING in x for x in lines))
            for instance in started
        ))
    except BaseException:
        await stop_instances(started)
        raise
    return started


async def stop_instances(instances: list[Instance]) -> list[int]:
    """SIGTERM to each still running; their exit codes."""
    for instance in instances:
        if instance.process.returncode is None:
            instance.process.send_signal(signal.SIGTERM)
    codes = []
    for instance in instances:
        try:
            codes.append(await instance.stopped())
        except TimeoutError:
            instance.process.kill()
            codes.append(await instance.stopped())
    return codes


async def post_update(session: aiohttp.ClientSession, instance: Instance, update: dict) -> int:
    """The update POSTed to the instance as Telegram does; the status it answered (200 once
    handled)."""
    async with session.post(
        instance.url, data=json.dumps(update).encode(),
        headers={"Content-Type": "application/json",
                 "X-Telegram-Bot-Api-Secret-Token": instance.secret},
    ) as response:
        return response.status
