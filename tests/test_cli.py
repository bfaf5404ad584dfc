"""The villagebot command, run as an operator would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.sandbox import EXAMPLE_DIRECTORY

SETTINGS = {"BOT_TOKEN", "TELEGRAM_API_URL", "DATABASE_URL", "REDIS_URL", "DIRECTORY_FILE"}


def villagebot(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTINGS}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def run(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return villagebot(*args, database_url=database_url, cwd=tmp_path)

    return call


def test_import_export_round_trip(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = run("directory", "import", str(EXAMPLE_DIRECTORY))
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    again = run("directory", "import", str(EXAMPLE_DIRECTORY))
    assert again.returncode == 0 and "no changes" in again.stdout
    exported = run("directory", "export", "-o", str(tmp_path / "out.yaml"))
    assert exported.returncode == 0, exported.stderr
    data = yaml.safe_load((tmp_path / "out.yaml").read_text(encoding="utf-8"))
    original = yaml.safe_load(EXAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    assert data["township"]["code"] == "BL"
    assert [v["code"] for v in data["villages"]] == [v["code"] for v in original["villages"]]
    assert len(data["officials"]) == len(original["officials"])
    back = run("directory", "import", str(tmp_path / "out.yaml"))
    assert back.returncode == 0 and "no changes" in back.stdout


def test_an_invalid_file_is_explained_and_changes_nothing(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("directory", "import", str(EXAMPLE_DIRECTORY)).returncode == 0
    broken = yaml.safe_load(EXAMPLE_DIRECTORY.read_text(encoding="utf-8"))
    del broken["villages"][2]["grids"][0]["name"]
    broken["units"][3]["supervisor"] = "foo"
    broken["township"]["name"] = "Renamed"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
    result = run("directory", "import", str(path))
    assert result.returncode == 1
    assert "nothing was changed" in result.stderr
    assert "villages[2].grids[0].name: missing" in result.stderr
    assert "units[3].supervisor: unknown unit 'foo'" in result.stderr
    assert "Traceback" not in result.stderr
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
