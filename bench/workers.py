"""The memory of `villagebot web --workers 4` against one process: does forking share it?

`python -m bench.workers [--workers 4] [--requests 200]`

Starts the real command twice, each on a fresh SQLite database in a temporary folder and a free
port: once with `--workers 1` (one process, no fork) and once with `--workers N` (a parent and N
forked workers). Once every worker says it serves, each command answers `--requests` requests
for the sign-in page on connections of their own, so that every worker has served some; after a
second to settle, the memory of the command's whole process tree is read: the sum of each
process's PSS (proportional set size, /proc/<pid>/smaps_rollup), in which a page shared by k
processes counts 1/k in each, so the sum is what the tree costs the machine. RSS, which counts
a shared page in full in every process, is printed beside it for comparison.

The target (issue 14): N=4 workers under twice one process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.common import arguments, machine, table
from bench.processes import free_port

STARTED_WITHIN = 120.0
SETTLE = 1.0


@dataclass
class Memory:
    processes: int
    pss_kib: int
    rss_kib: int



def tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rpartition(")")[2].split()[1]
                )
            except OSError:
                continue
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def rollup(pid: int) -> tuple[int, int]:
    """PSS and RSS of one process, KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        values[name] = int(rest.split()[0])
    return values["Pss"], values["Rss"]


async def measure(workers: int, requests: int) -> Memory:
    with tempfile.TemporaryDirectory(prefix="villagebot-bench-") as folder:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEB_", "DATABASE_"))}
        env.update(
            DATABASE_URL=f"sqlite://{folder}/bench.sqlite3", WEB_LISTEN=f"127.0.0.1:{port}",
            WEB_FILES=f"{folder}/files", LOG_LEVEL="WARNING", BOT_TOKEN="",
        )
        command = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "web", "--workers", str(workers),
            env=env, cwd=folder, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert command.stdout is not None
            for _ in range(workers):
                line = await asyncio.wait_for(command.stdout.readline(), STARTED_WITHIN)
                assert line.startswith(b"back office on "), line + await command.stdout.read()
            for _ in range(requests):
                async with (
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(force_close=True)
                    ) as browser,
                    browser.get(f"http://127.0.0.1:{port}/signin") as response,
                ):
                    assert response.status == 200, response.status
            await asyncio.sleep(SETTLE)
            pids = tree(command.pid)
            figures = [rollup(pid) for pid in pids]
        finally:
            command.send_signal(signal.SIGTERM)
            await asyncio.wait_for(command.wait(), STARTED_WITHIN)
        return Memory(
            len(pids), sum(pss for pss, _ in figures), sum(rss for _, rss in figures)
        )


async def main() -> None:
    parser = arguments(__doc__ or "")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    one = await measure(1, args.requests)
    several = await measure(args.workers, args.requests)
    print(machine())
    print(table(
        f"Memory of `villagebot web`, {args.requests} requests served, MiB",
        ["", "--workers 1", f"--workers {args.workers}"],
        [
            ["processes", one.processes, several.processes],
            ["PSS, summed", f"{one.pss_kib / 1024:.1f}", f"{several.pss_kib / 1024:.1f}"],
            ["RSS, summed", f"{one.rss_kib / 1024:.1f}", f"{several.rss_kib / 1024:.1f}"],
        ],
    ))
    ratio = several.pss_kib / one.pss_kib
    print(f"\n{args.workers} workers / 1 process (PSS): {ratio:.2f}x "
          f"({'under' if ratio < 2 else 'NOT under'} the target 2x)")


if __name__ == "__main__":
    asyncio.run(main())
