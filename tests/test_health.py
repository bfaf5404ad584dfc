"""/healthz, /readyz and /metrics on the running bot's server, over real HTTP.

The counters are the process's (prometheus_client's default registry), shared by every test
in a worker: the tests read how much they moved, never their absolute values.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import backoffice
import pytest
from conftest import TEST_REDIS_URL
from prometheus_client.parser import text_string_to_metric_families

from bench.processes import free_port as _free_port
from bot import db
from bot.config import load_settings
from bot.models import CaseStatus, Delivery, DeliveryKind
from bot.sandbox import Sandbox
from scheduler.policy import Policy
from scheduler.service import Supervisor
from web.server import WebServer

TOKEN = "s3cret-metrics-token-0123456789"


@pytest.fixture
async def served(database_url: str) -> AsyncIterator[Sandbox]:
    """The sandbox with its server, /metrics opened with `TOKEN`, the scheduler running."""
    running = await backoffice.start(
        database_url, metrics_token=TOKEN, scheduler=True, sweep_seconds=5
    )
    yield running
    await running.stop()


async def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def _ready(sandbox: Sandbox) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{sandbox.web_url}/readyz") as response,
    ):
        return response.status, await response.json()


async def _scrape(sandbox: Sandbox) -> dict[tuple[str, frozenset], float]:
    status, kind, text = await _get(
        f"{sandbox.web_url}/metrics", {"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200, text
    assert kind.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(scraped: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def test_healthz_and_readyz_answer_on_a_running_bot(served: Sandbox) -> None:
    status, _, text = await _get(f"{served.web_url}/healthz")
    assert (status, text) == (200, "ok")
    status, body = await _ready(served)
    assert status == 200, body
    assert body["ready"] is True and body["failing"] == []
    assert set(body["checks"]) >= {"database", "outbox", "scheduler"}
    assert ("redis" in body["checks"]) == bool(TEST_REDIS_URL)
    assert all(check["ok"] for check in body["checks"].values())
    # Public: no session, no sign-in page, and the back office's own pages still want one.
    status, _, _ = await _get(f"{served.web_url}/cases")
    assert status == 401


async def test_readyz_names_the_outbox_when_a_row_waits_too_long(served: Sandbox) -> None:
    long_ago = datetime.now(UTC) - timedelta(seconds=served.settings.ready_outbox_seconds + 60)
    # Claimed by a process that hung: the courier here leaves it alone until the lease ends.
    await Delivery.create(
        chat_id=424242, kind=DeliveryKind.TEXT, payload={"text": "stuck"}, created_at=long_ago,
        not_before=long_ago, lease_until=datetime.now(UTC) + timedelta(hours=1),
        lease_owner="a-hung-process",
    )
    status, body = await _ready(served)
    assert status == 503
    assert body["failing"] == ["outbox"]
    assert "limit 300s" in body["checks"]["outbox"]["detail"]
    assert body["checks"]["database"]["ok"]
    scraped = await _scrape(served)
    assert _value(scraped, "villagebot_outbox_pending") >= 1
    assert _value(scraped, "villagebot_outbox_oldest_pending_seconds") >= 360


async def test_readyz_names_the_database_when_it_is_gone(served: Sandbox) -> None:
    await db.stop()
    try:
        status, body = await _ready(served)
        status_alive, _, _ = await _get(f"{served.web_url}/healthz")
    finally:
        await db.start(served.settings.database_url, migrate=False)
    assert status == 503
    assert "database" in body["failing"]
    assert not body["checks"]["database"]["ok"]
    assert status_alive == 200  # alive all the same: nothing to restart for
    status, body = await _ready(served)
    assert status == 200, body


def test_a_scheduler_that_missed_three_sweeps_is_stalled() -> None:
    supervisor = Supervisor(Policy.from_settings(load_settings()), every_seconds=5)
    assert supervisor.stalled() is None  # not started: nothing to say
    supervisor.last_tick_at = time.monotonic() - 14
    assert supervisor.stalled() is None
    supervisor.last_tick_at = time.monotonic() - 16
    stalled = supervisor.stalled()
    assert stalled is not None and stalled >= 16


async def test_metrics_are_not_served_without_the_token(database_url: str) -> None:
    closed = await backoffice.start(database_url)  # no METRICS_TOKEN
    try:
        status, _, _ = await _get(f"{closed.web_url}/metrics")
        assert status == 404
        status, _, _ = await _get(
            f"{closed.web_url}/metrics", {"Authorization": "Bearer anything-at-all-here"}
        )
        assert status == 404
    finally:
        await closed.stop()


async def test_metrics_refuse_a_wrong_token(served: Sandbox) -> None:
    for headers in (
        None,
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        status, _, text = await _get(f"{served.web_url}/metrics", headers)
        assert status == 404, headers
        assert "villagebot_" not in text


async def test_metrics_count_a_conversation_its_429_the_outbox_and_the_cases(
    served: Sandbox,
) -> None:
    # The scheduler catches up at once after start: its first tick is counted within seconds.
    for _ in range(100):
        before = await _scrape(served)
        if _value(before, "villagebot_scheduler_ticks_total") >= 1:
            break
        await asyncio.sleep(0.05)
    assert _value(before, "villagebot_scheduler_ticks_total") >= 1
    villager, handset = await backoffice.villager(served, 1001)
    # Telegram refuses the next reply once with 429: the reply is sent again, and counted.
    served.emulator.fail_next("sendMessage", status=429, retry_after=1)
    await handset.send("/help")
    await handset.expect("/report")
    case = await backoffice.report(villager, "村口垃圾桶满了", "litter")
    after = await _scrape(served)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("villagebot_updates_total", type="message") >= 2
    assert moved("villagebot_update_seconds_count", type="message") >= 2
    assert moved("villagebot_bot_api_calls_total", method="sendMessage") >= 3
    assert moved("villagebot_bot_api_errors_total", method="sendMessage", kind="429") == 1
    assert moved("villagebot_bot_api_retry_after_seconds_total") == 1
    assert _value(after, "villagebot_cases", status=CaseStatus.NEW.value) >= 1
    assert _value(after, "villagebot_cases", status=CaseStatus.CLOSED.value) == 0
    assert ("villagebot_outbox_pending", frozenset()) in after
    # No person in any label: no chat id, no name, no phone number, no case number.
    labels = " ".join(f"{key}={value}" for _, keys in after for key, value in keys)
    for personal in ("1001", villager.name, "13800000001", case.number):
        assert personal not in labels


async def test_readyz_names_redis_when_it_does_not_answer(database: str) -> None:
    """The back office served alone (`villagebot web`) with REDIS_URL at a closed port."""
    closed_port = _free_port()
    settings = load_settings(
        database_url=database, web_listen="127.0.0.1:0",
        redis_url=f"redis://127.0.0.1:{closed_port}/0",
    )
    server = await WebServer.start(settings)
    try:
        status, _, text = await _get(f"http://127.0.0.1:{server.port}/readyz")
    finally:
        await server.stop()
    body = json.loads(text)
    assert status == 503
    assert body["failing"] == ["redis"]
    assert "scheduler" not in body["checks"]  # this process runs none
    assert body["checks"]["database"]["ok"] and body["checks"]["outbox"]["ok"]
