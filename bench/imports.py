"""What importing the bot costs in memory, library by library and then our own modules.

`python -m bench.imports`: a fresh interpreter imports, in this order, each library the bot
process loads and then the packages of ours that `bot.app` pulls in, printing the resident
memory (VmRSS) each adds. Each is measured in the order given, so a module counts only what
the ones before it did not load already. Also lists which of the modules kept out of the
serving process's import path (the emulator, the test sandbox, matplotlib, openpyxl) were
loaded after all: the answer should be none.
"""

from __future__ import annotations

import importlib
import subprocess
import sys

from bench.common import machine, table

#: (what, modules to import): libraries first, as the bot process loads them, then ours.
STEPS: list[tuple[str, list[str]]] = [
    ("Python itself, asyncio", ["asyncio"]),
    ("aiogram (its pydantic models of the whole Bot API)", ["aiogram", "aiogram.methods"]),
    ("aiohttp (server and client)", ["aiohttp", "aiohttp.web"]),
    ("tortoise-orm", ["tortoise", "tortoise.contrib.postgres.functions"]),
    ("pydantic-settings", ["pydantic_settings"]),
    ("jinja2, aiohttp-jinja2", ["jinja2", "aiohttp_jinja2"]),
    ("cryptography (the back office's encrypted session cookie)",
     ["cryptography.fernet", "aiohttp_session.cookie_storage"]),
    ("PyYAML", ["yaml"]),
    ("APScheduler", ["apscheduler.schedulers.asyncio"]),
    ("prometheus-client", ["prometheus_client"]),
    ("ours: models, config, catalogs", ["bot.models", "bot.config", "bot.i18n"]),
    ("ours: the directory's schema and import", ["bot.directory"]),
    ("ours: cases, scope, routing, notices, outbox, robots",
     ["bot.cases", "bot.scope", "bot.notices", "bot.delivery", "bot.robots"]),
    ("ours: the scheduler", ["scheduler.service"]),
    ("ours: the back office and APIs", ["web.server"]),
    ("ours: the handlers and flows, the app", ["bot.app", "bot.cli"]),
]
#: Never loaded by a serving process until used (a chart, a spreadsheet, the demo).
KEPT_OUT = ["bot.emulator", "bot.robot_emulator", "bot.sandbox", "bot.demo", "matplotlib",
            "openpyxl", "pypdf"]


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure() -> None:
    """Run in a fresh interpreter: one line per step, then the modules kept out."""
    before = _rss_mib()
    print(f"start\t{before:.1f}")
    for what, modules in STEPS:
        for module in modules:
            importlib.import_module(module)
        now = _rss_mib()
        print(f"{what}\t{now - before:.1f}")
        before = now
    print(f"total\t{before:.1f}")
    print("loaded\t" + ",".join(m for m in KEPT_OUT if m in sys.modules))


def main() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from bench.imports import measure; measure()"],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    rows = dict(line.split("\t", 1) for line in out)
    print(machine())
    print(table(
        "Memory of importing the bot (VmRSS, MiB)",
        ["what", "MiB added"],
        [["the interpreter at start", rows["start"]]]
        + [[what, rows[what]] for what, _ in STEPS]
        + [["**all, as `villagebot run` starts**", rows["total"]]],
    ))
    loaded = rows["loaded"]
    print(f"\nkept out of the import path, loaded anyway: {loaded or 'none'}")


if __name__ == "__main__":
    main()
