"""`villagebot` commands run as real processes, as an operator runs them: for the tests and the
benchmarks that start the service itself (`tests/test_production.py`, `bench.duplicates`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

#: Starting imports aiogram, seconds on a busy machine: a hang is what this catches.
STARTED_WITHIN = 90.0
#: The settings of this process's environment a command must not inherit: it gets its own.
OWN_SETTINGS = (
    "WEBHOOK_", "WEB_", "BOT_", "TELEGRAM_", "REDIS_", "DATABASE_", "DIRECTORY_", "SCHEDULER",
    "INSTANCE", "LOG_",
)


def environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without any villagebot setting, plus `settings`."""
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


class Running:
    """A long-running command (`run`), its stderr read all along (a full pipe would stall it)."""

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

    def workers(self) -> dict[int, int]:
        """Each worker's pid, by its number."""
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
