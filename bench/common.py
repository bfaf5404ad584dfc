"""What every benchmark needs: a fresh database, the machine's description, figures, and the
statements tortoise sends.

A benchmark takes `--database sqlite` (a temporary file, the default) or `--database postgres`
(a fresh database on `BENCH_POSTGRES_URL`, default the local server), and drops it afterwards.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import secrets
import statistics
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
#: MESSAGES_PER_SECOND for the emulator with its limits off: the bot never holds a reply back,
#: so a benchmark measures the bot, not Telegram's 30 a second (`bench.delivery` measures that).
UNPACED = 100_000


#: Loggers that would print every retry and refusal a benchmark provokes on purpose.
NOISY = ("aiogram", "bot", "tortoise", "scheduler")


def quiet() -> None:
    logging.basicConfig(level=logging.WARNING)
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)


def arguments(description: str) -> argparse.ArgumentParser:
    """The options every benchmark shares; add your own to the parser it returns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--database", choices=("sqlite", "postgres"), default="sqlite",
        help="sqlite: a temporary file; postgres: a fresh database on BENCH_POSTGRES_URL",
    )
    return parser


@asynccontextmanager
async def fresh_database(kind: str) -> AsyncIterator[str]:
    """A database URL nobody else uses, removed on exit."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="villagebot-bench-") as folder:
            yield f"sqlite://{Path(folder) / 'bench.sqlite3'}"
        return
    import asyncpg

    name = f"villagebot_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(POSTGRES_URL)
        try:
            yield urlunsplit(parts._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def machine() -> str:
    """One line naming the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}"
    )


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which `share` of the values fall (nearest rank)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, so the figures paste into the README as printed."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |",
             "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


class QueryLog(logging.Handler):
    """The statements tortoise sends, with their parameters, while attached."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, list[Any]]] = []
        self.logger = logging.getLogger("tortoise.db_client")

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "%s: %s" and isinstance(record.args, tuple) and len(record.args) == 2:
            sql, values = record.args
            self.statements.append((str(sql), list(values or [])))

    def __enter__(self) -> QueryLog:
        self.level, self.propagate = self.logger.level, self.logger.propagate
        self.logger.addHandler(self)
        self.logger.setLevel(logging.DEBUG)
        self.logger.propagate = False
        return self

    def __exit__(self, *_: object) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)
        self.logger.propagate = self.propagate
