"""The deployment files (Dockerfile, docker-compose.yml, .env.example, the systemd unit) agree
with the code: they name only settings that exist, copy what the program reads, run it as
nobody in particular, and the README's backup and restore work on PostgreSQL.

What needs Docker, systemd-analyze or PostgreSQL runs where they are, and says so when not.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml
from aiohttp import web

from bot.config import Settings
from bot.i18n import LOCALES_PATH
from bot.sandbox import EXAMPLE_DIRECTORY

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
UNIT = ROOT / "deploy" / "villagebot.service"

SETTINGS = {name.upper() for name in Settings.model_fields}
#: Variables of docker-compose.yml that are not villagebot's settings: the database's password.
COMPOSE_ONLY = {"POSTGRES_PASSWORD"}
#: `${NAME}`, `${NAME:?message}`, `${NAME:-default}` in the compose file.
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)")
#: `NAME=value` and `# NAME=value` lines of .env.example.
ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def env_example() -> list[tuple[bool, str, str]]:
    """(commented, name, value) of every assignment in .env.example."""
    found = []
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ASSIGNMENT.match(line)
        if match:
            found.append((match.group(1) is not None, match.group(2), match.group(3)))
    return found


#: What an operator's .env gives the variables the files require.
SAMPLES = {
    "BOT_TOKEN": "123456789:ABCDEFGHIJ",
    "WEBHOOK_URL": "https://bot.example.org/telegram",
    "WEBHOOK_SECRET": "secret0",
    "WEB_URL": "https://bot.example.org",
    "POSTGRES_PASSWORD": "secret0",
}


def substituted(value: str) -> str:
    """A compose value with its variables filled in as an operator's .env would."""
    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)[^}]*\}", lambda match: SAMPLES[match.group(1)], value)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


# --- docker-compose.yml ---------------------------------------------------------------------


def test_the_compose_file_has_postgres_redis_a_migration_and_the_bot_in_order() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "bot"}
    assert re.fullmatch(r"postgres:\d+", services["postgres"]["image"])
    assert re.fullmatch(r"redis:\d+\.\d+", services["redis"]["image"])
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["postgres"]["volumes"], "the database outlives its container"
    assert "--appendonly" in services["redis"]["command"]

    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["healthcheck"] == {"disable": True}

    bot = services["bot"]
    assert bot["command"] == ["run", "--workers", "2"]
    assert bot["depends_on"] == {
        "migrate": {"condition": "service_completed_successfully"},
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert bot["env_file"] == ".env"
    assert bot["ports"] == ["127.0.0.1:8080:8080"]


def test_the_bots_environment_names_only_settings_and_they_validate() -> None:
    services = compose()["services"]
    for name in ("bot", "migrate"):
        environment = services[name]["environment"]
        assert set(environment) <= SETTINGS, name
    environment = services["bot"]["environment"]
    assert environment["WEB_LISTEN"] == "0.0.0.0:8080"
    assert environment["WEBHOOK_URL"].startswith("${WEBHOOK_URL:?")
    known = {
        name.lower(): substituted(value)
        for name, value in environment.items()
        if name in SETTINGS
    }
    settings = Settings(_env_file=None, **known)  # type: ignore[call-arg]
    assert urlsplit(settings.database_url).hostname == "postgres"
    assert settings.database_url.startswith("postgres://villagebot:secret0@")
    assert urlsplit(settings.redis_url or "").hostname == "redis"


# --- .env.example ---------------------------------------------------------------------------


def test_env_example_lists_every_setting_and_every_compose_variable_once() -> None:
    names = [name for _, name, _ in env_example()]
    assert len(names) == len(set(names)), "a variable listed twice"
    used_by_compose = set(VARIABLE.findall(COMPOSE.read_text(encoding="utf-8")))
    assert used_by_compose <= set(names)
    assert set(names) == SETTINGS | COMPOSE_ONLY


def test_env_example_requires_the_secrets_and_shows_valid_values_for_the_rest() -> None:
    assignments = env_example()
    required = {name for commented, name, _ in assignments if not commented}
    assert required == set(SAMPLES)
    assert all(value == "" for commented, _, value in assignments if not commented), (
        "no secret in the example"
    )
    for commented, name, value in assignments:
        if commented and value and name in SETTINGS and name != "DIRECTORY_FILE":
            Settings(_env_file=None, **{name.lower(): value})  # type: ignore[call-arg]


# --- Dockerfile -----------------------------------------------------------------------------


def test_the_image_copies_what_the_program_reads_and_runs_as_a_user() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", instructions[0][1])
    copied = {
        source
        for keyword, arguments in instructions
        if keyword == "COPY"
        for source in arguments.split()[:-1]
    }
    beside_the_code = {
        LOCALES_PATH.relative_to(ROOT).parts[0],
        EXAMPLE_DIRECTORY.relative_to(ROOT).parts[0],
    }
    assert {"bot", "scheduler", "web", "pyproject.toml", "README.md"} | beside_the_code <= copied
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    }
    assert not copied & ignored
    assert {".env", ".venv", "data", ".git"} <= ignored, "no secret or local data in the context"
    assert (ROOT / "bot" / "migrations" / "0001_initial.py").is_file()

    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    assert "[dev]" not in runs and "--editable ." in runs
    assert ("EXPOSE", "8080") in instructions
    assert ("ENTRYPOINT", '["villagebot"]') in instructions
    assert ("CMD", '["run"]') in instructions


def healthcheck_command() -> list[str]:
    (arguments,) = [arguments for keyword, arguments in dockerfile_instructions()
                    if keyword == "HEALTHCHECK"]
    command = yaml.safe_load(arguments.split(" CMD ", 1)[1])
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


@pytest.fixture
async def health_server() -> AsyncIterator[dict[str, Any]]:
    """A server answering /healthz with the status the test sets."""
    state: dict[str, Any] = {"status": 200, "asked": 0}

    async def healthz(_request: web.Request) -> web.Response:
        state["asked"] += 1
        return web.Response(status=state["status"], text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state["port"] = runner.addresses[0][1]
    yield state
    await runner.cleanup()


async def run_healthcheck(web_listen: str) -> int:
    process = await asyncio.create_subprocess_exec(
        *healthcheck_command(), env={**os.environ, "WEB_LISTEN": web_listen},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), 20)


async def test_the_images_healthcheck_asks_healthz_on_web_listens_port(
    health_server: dict[str, Any],
) -> None:
    listen = f"0.0.0.0:{health_server['port']}"
    assert await run_healthcheck(listen) == 0
    assert health_server["asked"] == 1
    health_server["status"] = 503
    assert await run_healthcheck(listen) != 0
    assert health_server["asked"] == 2


async def test_the_healthcheck_fails_when_nothing_answers(unused_tcp_port: int) -> None:
    assert await run_healthcheck(f"0.0.0.0:{unused_tcp_port}") != 0


# --- the systemd unit -----------------------------------------------------------------------


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_the_unit_runs_villagebot_as_its_user_with_its_settings_hardened() -> None:
    parsed = unit()
    assert set(parsed.sections()) == {"Unit", "Service", "Install"}
    service = parsed["Service"]
    assert service["User"] == "villagebot"
    assert service["EnvironmentFile"] == "/etc/villagebot/villagebot.env"
    assert re.fullmatch(r"/\S+/bin/villagebot run", service["ExecStart"])
    assert service["ExecStartPre"].endswith("/bin/villagebot migrate")
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["WorkingDirectory"] in service["ReadWritePaths"].split()
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit is checked as text only")
    # verify wants the programs to exist: this checkout's villagebot stands in for /opt's.
    installed = Path(sys.executable).with_name("villagebot")
    text = UNIT.read_text(encoding="utf-8").replace(
        "/opt/villagebot/.venv/bin/villagebot", str(installed)
    )
    copy = tmp_path / "villagebot.service"
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", "an unknown or malformed line is only warned about"


# --- Docker, where there is one ---------------------------------------------------------------


def docker_or_skip(*probe: str) -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed here")
    answer = subprocess.run([docker, *probe], capture_output=True, text=True, timeout=60)
    if answer.returncode != 0:
        reason = (answer.stderr.strip().splitlines() or ["no answer"])[0][:200]
        pytest.skip(f"`docker {' '.join(probe)}` fails here: {reason}")
    return docker


def test_docker_compose_validates_the_file(tmp_path: Path) -> None:
    docker = docker_or_skip("compose", "version")
    shutil.copy(COMPOSE, tmp_path / COMPOSE.name)
    (tmp_path / ".env").write_text(
        "".join(
            f"{name}={SAMPLES[name]}\n" for commented, name, _ in env_example() if not commented
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [docker, "compose", "-f", str(tmp_path / COMPOSE.name), "config", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_the_image_builds() -> None:
    docker = docker_or_skip("info")
    tag = f"villagebot-test:{uuid.uuid4().hex[:8]}"
    try:
        build = subprocess.run([docker, "build", "-t", tag, str(ROOT)],
                               capture_output=True, text=True, timeout=1800)
        assert build.returncode == 0, build.stderr[-3000:]
        user = subprocess.run([docker, "run", "--rm", "--entrypoint", "id", tag, "-u"],
                              capture_output=True, text=True, timeout=120)
        assert user.stdout.strip() not in ("", "0")
        migrated = subprocess.run(
            [docker, "run", "--rm", "-e", "DATABASE_URL=sqlite://data/test.sqlite3", tag,
             "migrate"], capture_output=True, text=True, timeout=300,
        )
        assert migrated.returncode == 0, migrated.stderr
        assert "applied models.0001_initial" in migrated.stdout
    finally:
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True, timeout=120)


# --- backing up and restoring, as the README says --------------------------------------------

POSTGRES_URL = os.environ.get("VILLAGEBOT_TEST_DATABASE_URL", "")


def villagebot(*args: str, database_url: str, cwd: Path) -> str:
    env = {name: value for name, value in os.environ.items() if name.upper() not in SETTINGS}
    env["DATABASE_URL"] = database_url
    result = subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def postgres_admin(statement: str) -> None:
    import asyncpg

    parts = urlsplit(POSTGRES_URL)
    connection = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def test_a_dump_restored_into_an_empty_database_and_migrated_is_the_same(
    tmp_path: Path,
) -> None:
    if not POSTGRES_URL:
        pytest.skip("needs PostgreSQL: set VILLAGEBOT_TEST_DATABASE_URL (as .ci/run does)")
    pg_dump, pg_restore = shutil.which("pg_dump"), shutil.which("pg_restore")
    if pg_dump is None or pg_restore is None:
        pytest.skip("pg_dump and pg_restore are not installed here")
    suffix = uuid.uuid4().hex[:8]
    names = {"kept": f"villagebot_backup_{suffix}", "restored": f"villagebot_restore_{suffix}"}
    urls = {
        role: urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
        for role, name in names.items()
    }
    for name in names.values():
        asyncio.run(postgres_admin(f'CREATE DATABASE "{name}"'))
    try:
        first = villagebot("migrate", database_url=urls["kept"], cwd=tmp_path)
        assert "applied models.0001_initial" in first
        villagebot("directory", "import", str(EXAMPLE_DIRECTORY),
                   database_url=urls["kept"], cwd=tmp_path)
        before = villagebot("directory", "export", database_url=urls["kept"], cwd=tmp_path)

        dump = tmp_path / "villagebot.dump"
        subprocess.run([pg_dump, "-Fc", "-d", urls["kept"], "-f", str(dump)],
                       check=True, timeout=300)
        subprocess.run([pg_restore, "--no-owner", "-d", urls["restored"], str(dump)],
                       check=True, timeout=300)

        migrated = villagebot("migrate", database_url=urls["restored"], cwd=tmp_path)
        assert migrated.strip() == "the schema is up to date"
        after = villagebot("directory", "export", database_url=urls["restored"], cwd=tmp_path)
        assert after == before
        assert "code: BL" in after
    finally:
        for name in names.values():
            asyncio.run(postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
