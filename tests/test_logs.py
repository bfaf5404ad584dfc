"""The log as JSON lines: each names the update and the case it was written for, and no line
carries a phone number, whoever wrote it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import cases, delivery, logs
from bot.config import SettingsError, load_settings
from bot.models import Account, Category, Grid, Official, Villager
from bot.sandbox import Sandbox


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every record of the process as the `json` format writes it, from INFO up."""
    stream = io.StringIO()
    handler = logs.handler("json", stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_parse_and_phone_numbers_come_out_redacted(captured: io.StringIO) -> None:
    log = logging.getLogger("villagebot.test")
    log.warning("villager called from %s", "+86 138 0013 8000")
    log.info("mobile 13912345678, landline 0571-87654321, intl +44 20 7946 0958")
    try:
        raise ValueError("bad phone 15800001111")
    except ValueError:
        log.exception("failed for %s", "+8613800000001")
    log.info("chat -1001000000101, update 123456789, at 1764600000.25, case DEMO-2026-0001")
    first, second, third, fourth = _lines(captured)
    assert first["message"] == "villager called from [phone]"
    assert first["level"] == "WARNING" and first["logger"] == "villagebot.test"
    assert first["update_id"] is None and first["case"] is None and "time" in first
    assert second["message"] == "mobile [phone], landline [phone], intl [phone]"
    assert third["message"] == "failed for [phone]"
    assert "ValueError: bad phone [phone]" in third["exc_info"]
    # Ids, times and case numbers are not phone numbers.
    assert fourth["message"] == (
        "chat -1001000000101, update 123456789, at 1764600000.25, case DEMO-2026-0001"
    )
    for digits in ("13800138000", "13912345678", "87654321", "15800001111", "13800000001"):
        assert digits not in captured.getvalue().replace(" ", "")


def test_the_context_is_set_while_handling_and_gone_after() -> None:
    with logs.handling(77):
        logs.acting_on("DEMO-2026-0009")
        assert (logs.update_id.get(), logs.case_number.get()) == (77, "DEMO-2026-0009")
        with logs.handling(78):
            assert logs.case_number.get() is None  # a case of the update before is not this one's
    assert (logs.update_id.get(), logs.case_number.get()) == (None, None)


def test_the_text_format_names_the_update_and_case_too() -> None:
    stream = io.StringIO()
    log = logging.getLogger("villagebot.test.text")
    handler = logs.handler("text", stream)
    log.addHandler(handler)
    try:
        with logs.handling(5):
            logs.acting_on("DEMO-2026-0002")
            log.warning("refused for 13800138000")
        log.warning("outside")
    finally:
        log.removeHandler(handler)
    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith("refused for [phone] [update=5 case=DEMO-2026-0002]")
    assert outside.endswith("villagebot.test.text: outside")


def test_log_format_is_text_or_json() -> None:
    assert load_settings(log_format="JSON").log_format == "json"
    assert load_settings().log_format == "text"
    with pytest.raises(SettingsError, match="setting LOG_FORMAT: must be text or json"):
        load_settings(log_format="yaml")


async def test_a_refused_tap_is_logged_with_its_update_and_case(
    sandbox: Sandbox, captured: io.StringIO
) -> None:
    account = await Account.create(id=1001, first_name="李明", language="zh-hans")
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    villager = await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name="李明", phone="+8613800000001",
    )
    handset = sandbox.phone(1001, "李明")
    await handset.send("/help")
    await handset.expect("/report")
    official = await Official.get(code="lin-xiuying")
    official.account = await Account.create(id=9101, first_name=official.name, language="zh-hans")
    await official.save()
    change = await cases.report(
        villager, await Category.get(code="litter"), description="村口垃圾桶满了"
    )
    delivery.wake()
    case = change.case
    # The villager taps "solved" on a case nobody has resolved: refused, and logged.
    query = await handset.user.tap_data(handset.last(), f"c1:{case.id}:solved")
    await sandbox.emulator.wait_answer(query)
    lines = _lines(captured)
    refused = [line for line in lines if "refused" in line["message"] and line["case"]]
    assert refused, lines
    assert refused[0]["case"] == case.number
    assert isinstance(refused[0]["update_id"], int) and refused[0]["update_id"] > 0
    # The courier's lines are its own: no update, no case of someone's tap leaks into them.
    # (It sends the card in its own time, which the tap's answer need not have waited for.)
    for _ in range(200):
        courier = [
            line for line in _lines(captured) if line["message"].startswith("courier: delivery")
        ]
        if courier:
            break
        await asyncio.sleep(0.05)
    assert courier and all(line["update_id"] is None for line in courier)
    everything = captured.getvalue()
    assert "13800000001" not in everything and villager.name not in everything
    assert official.name not in everything


async def test_a_failed_step_is_logged_with_its_update_id(
    sandbox: Sandbox, captured: io.StringIO
) -> None:
    """The error handler's line names the update that failed, as a field and in its text, with
    the traceback: the one place an operator can start from."""
    handset = sandbox.phone(1001, "李明")
    sandbox.emulator.fail_next("sendMessage", status=400, description="Bad Request: broken")
    await handset.send("/start")
    await handset.expect("抱歉")
    update = sandbox.emulator.last_update_id
    failed = [
        line for line in _lines(captured)
        if line["level"] == "ERROR" and line["logger"] == "bot.handlers.errors"
    ]
    assert len(failed) == 1, failed
    assert failed[0]["update_id"] == update
    assert failed[0]["message"].startswith(f"update {update} failed")
    assert "TelegramBadRequest" in failed[0]["exc_info"]


def test_villagebot_writes_json_lines_when_asked(tmp_path: Path) -> None:
    """The command itself: with LOG_FORMAT=json what it logs is one JSON object a line."""
    environment = {
        **os.environ, "LOG_FORMAT": "json", "DATABASE_URL": f"sqlite://{tmp_path}/v.sqlite3",
        "WEB_LISTEN": "127.0.0.1:0", "WEB_FILES": str(tmp_path / "files"),
    }
    environment.pop("BOT_TOKEN", None)  # `web` says so in the log, then serves
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "web"], env=environment, cwd=tmp_path,
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    record = json.loads(first)
    assert record["level"] == "WARNING" and record["logger"] in ("bot.cli", "__main__")
    assert record["message"].startswith("BOT_TOKEN is not set")
    assert {"time", "update_id", "case"} <= set(record)
