"""Webhook mode: Telegram POSTs the updates, the bot answers them on WEB_LISTEN.

The bot is the real one (`Sandbox(webhook=True)`), the emulator delivers as Telegram does,
and what a forger, a broken proxy or Telegram's redelivery could send is POSTed by hand.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiohttp import web
from conftest import TEST_REDIS_URL

from bench.common import QueryLog
from bot.config import SettingsError, load_settings
from bot.emulator import BotAPIEmulator
from bot.models import Account, Case, Grid, Villager
from bot.sandbox import Phone, Sandbox
from web.webhook import MAX_UPDATE_BYTES, SECRET_HEADER

LI = 1001
WANG = 2002
TOKEN = "123456:TEST-TOKEN"
STARTED_WITHIN = 90.0
WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)


@pytest.fixture
async def hooked(database_url: str) -> AsyncIterator[Sandbox]:
    """The real bot in webhook mode, the emulator POSTing every update to it."""
    if TEST_REDIS_URL:
        from redis.asyncio import Redis

        async with Redis.from_url(TEST_REDIS_URL) as redis:
            await redis.flushdb()
    async with Sandbox(database_url, webhook=True, redis_url=TEST_REDIS_URL or None) as running:
        yield running


def _bot(emulator: BotAPIEmulator) -> Bot:
    return Bot(
        emulator.token, session=AiohttpSession(api=TelegramAPIServer.from_base(emulator.base_url))
    )


async def _post(url: str, body: bytes, secret: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    async with aiohttp.ClientSession() as client, client.post(
        url, data=body, headers=headers
    ) as response:
        return response.status


async def _villager(sandbox: Sandbox, telegram_id: int, name: str) -> Phone:
    """A villager of Zhengda grid 1, registered, with the main menu on screen."""
    account = await Account.create(id=telegram_id, first_name=name, language="zh-hans")
    grid = await Grid.get(village__code="zhengda", code="g1").prefetch_related("village")
    await Villager.create(
        account=account, township_id=grid.village.township_id, village=grid.village,  # type: ignore[attr-defined]
        grid=grid, name=name,
    )
    phone = sandbox.phone(telegram_id, name)
    await phone.send("/start")
    await phone.expect(name)
    return phone


# ---- the bot in webhook mode ----------------------------------------------------------------


async def test_a_report_conversation_through_the_webhook(hooked: Sandbox) -> None:
    emulator = hooked.emulator
    assert hooked.app is not None
    async with _bot(emulator) as bot:
        info = await bot.get_webhook_info()
    assert info.url == hooked.settings.webhook_url
    assert info.allowed_updates == sorted(
        hooked.app.dispatcher.resolve_used_update_types()
    )
    li = await _villager(hooked, LI, "李明")
    await li.press("📝 我要反映问题")
    await li.expect("您要反映哪方面的问题？请点一个类别。")
    await li.tap("环境卫生")
    await li.expect("环境卫生：具体是哪一类？")
    await li.tap("卫生清理")
    await li.expect("请描述问题")
    await li.send("村口垃圾桶满了，三天没人清理")
    await li.expect("照片能帮助工作人员了解情况")
    await li.user.send_photo()
    await li.expect("已收到照片 1 张")
    await li.tap("✅ 完成")
    await li.expect("不需要位置？点“跳过”。")
    await li.tap("跳过")
    await li.expect("请核对您的反映内容")
    await li.tap("✅ 提交")
    done = await li.expect("✅ 已提交。您的事项编号：BL-")
    case = await Case.get()
    assert case.number in done["text"]
    assert case.description == "村口垃圾桶满了，三天没人清理" and len(case.photos) == 1
    assert emulator.stats.requests["getUpdates"] == 0, "no polling in webhook mode"
    assert emulator.stats.requests["setWebhook"] == 1
    assert emulator.pending_updates == 0, "every update answered 200 and left the queue"
    # Each tap was answered; one without words in the POST's answer, not by a request.
    wordless = [answer for answer in emulator.callback_answers if answer["text"] is None]
    assert len(emulator.callback_answers) == 5 and len(wordless) == 4
    assert emulator.stats.webhook_replies["answerCallbackQuery"] == 4


async def test_an_update_reads_its_conversation_once(hooked: Sandbox) -> None:
    """Nothing is kept between updates in webhook mode; within one, a read serves twice."""
    li = await _villager(hooked, LI, "李明")
    await li.press("📝 我要反映问题")
    await li.expect("您要反映哪方面的问题？请点一个类别。")
    await li.tap("环境卫生")
    await li.expect("环境卫生：具体是哪一类？")
    with QueryLog() as queries:  # (the row is there now: storing the last step reads nothing)
        await li.tap("卫生清理")
        await li.expect("请描述问题")
    # (The same table keeps the claims on update ids, "handled:…": not the person's.)
    reads = [
        values for sql, values in queries.statements
        if 'FROM "conversation"' in sql and not str(values[0]).startswith("handled:")
    ]
    assert len(reads) == (0 if TEST_REDIS_URL else 1), reads
    await li.send("村口垃圾桶满了")
    await li.expect("照片能帮助工作人员了解情况")  # the next step found what the last stored


async def test_refused_posts_change_nothing_and_the_bot_keeps_serving(hooked: Sandbox) -> None:
    emulator, settings = hooked.emulator, hooked.settings
    url, secret = settings.webhook_url, settings.webhook_secret
    wang = emulator.user(WANG, "王芳")
    update = await wang.text_update("/start")
    body = json.dumps(update).encode()
    assert await _post(url, body, None) == 403, "no secret"
    assert await _post(url, body, "not-the-secret") == 403
    assert await _post(url, body, (secret or "") + "x") == 403
    assert await _post(url, b'{"update_id": 7, "message": {', secret) == 400, "not JSON"
    assert await _post(url, b'{"update_id": "seven"}', secret) == 400, "not an update"
    assert await _post(url, b'{"update_id": 7}', secret) == 400, "an update with no event"
    assert await _post(url, b"[1, 2, 3]", secret) == 400
    big = json.dumps({**update, "padding": "x" * MAX_UPDATE_BYTES}).encode()
    assert await _post(url, big, secret) == 413
    # The exception is for this path only: the back office's forms still want their token.
    assert await _post(url + "/more", body, secret) == 403
    await asyncio.sleep(0.2)
    assert not await Account.exists(id=WANG), "nothing handled"
    assert emulator.bot_messages(WANG) == []

    assert await _post(url, body, secret) == 200
    assert await Account.exists(id=WANG), "handled before the answer"
    await emulator.wait_for(WANG, None)
    li = await _villager(hooked, LI, "李明")  # and the emulator's deliveries go on
    await li.send("/help")
    await li.expect("/report")


async def test_an_update_posted_twice_is_handled_once(hooked: Sandbox) -> None:
    emulator, settings = hooked.emulator, hooked.settings
    url, secret = settings.webhook_url, settings.webhook_secret
    await _villager(hooked, LI, "李明")
    li = emulator.user(LI)
    before = len(emulator.bot_messages(LI))
    first = json.dumps(await li.text_update("/help")).encode()
    assert await _post(url, first, secret) == 200
    seen = emulator.bot_messages(LI)[before - 1]["message_id"]
    await emulator.wait_for(LI, "/report", after=seen)
    answer = len(emulator.bot_messages(LI)) - before
    assert answer >= 1
    assert await _post(url, first, secret) == 200, "a redelivery is answered, and dropped"
    second = json.dumps(await li.text_update("/help")).encode()
    statuses = await asyncio.gather(*(_post(url, second, secret) for _ in range(3)))
    assert statuses == [200, 200, 200]
    await asyncio.sleep(0.3)
    assert len(emulator.bot_messages(LI)) - before == 2 * answer, (
        "each update answered once, however often it arrived"
    )


async def test_a_restart_keeps_the_webhook_and_the_conversation(hooked: Sandbox) -> None:
    li = await _villager(hooked, LI, "李明")
    await li.press("📝 我要反映问题")
    await li.expect("您要反映哪方面的问题？请点一个类别。")
    await hooked.restart_bot()
    assert hooked.emulator.stats.requests["setWebhook"] == 1, "set already: not set again"
    await li.tap("环境卫生")
    await li.expect("环境卫生：具体是哪一类？")


async def test_run_in_polling_mode_refuses_while_a_webhook_is_set(database_url: str) -> None:
    from bot.app import Villagebot
    from bot.startup import CannotStart

    async with BotAPIEmulator() as emulator, _bot(emulator) as bot:
        await bot.set_webhook("https://bot.example.org/telegram", secret_token="s3cret")
        settings = load_settings(
            bot_token=emulator.token, telegram_api_url=emulator.base_url,
            database_url=database_url, web_listen="", scheduler=False,
        )
        with pytest.raises(CannotStart, match=r"a webhook is set \(https://bot.example.org/"):
            await Villagebot.start(settings)


def test_the_settings_say_what_is_wrong() -> None:
    def error(**settings: object) -> str:
        with pytest.raises(SettingsError) as raised:
            load_settings(**settings)
        return str(raised.value)

    assert error(webhook_url="http://bot.example.org/tg", webhook_secret="abc").startswith(
        "setting WEBHOOK_URL: must be an https:// URL"
    )
    assert error(webhook_url="https://bot.example.org/tg") == (
        "setting WEBHOOK_SECRET: required with WEBHOOK_URL, so that only Telegram's POSTs are "
        "handled"
    )
    assert error(webhook_url="https://bot.example.org/tg", webhook_secret="a b").startswith(
        "setting WEBHOOK_SECRET: must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
    )
    assert error(webhook_secret="x" * 257).startswith("setting WEBHOOK_SECRET: must be 1-256")
    assert error(
        webhook_url="https://bot.example.org/tg", webhook_secret="abc", web_listen=""
    ).startswith("setting WEB_LISTEN: empty, but WEBHOOK_URL needs it")
    settings = load_settings(webhook_url="https://bot.example.org/tg/u", webhook_secret="a-B_9")
    assert settings.webhook_path == "/tg/u"


# ---- the emulator behaves as Telegram does ----------------------------------------------------


async def test_the_emulator_refuses_what_telegram_refuses() -> None:
    async with BotAPIEmulator() as emulator, _bot(emulator) as bot:
        with pytest.raises(TelegramBadRequest) as http:
            await bot.set_webhook("http://127.0.0.1:8080/hook")
        assert http.value.message == (
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
        )
        with pytest.raises(TelegramBadRequest) as port:
            await bot.set_webhook("https://bot.example.org:8080/hook")
        assert port.value.message == (
            "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
        )
        for secret in ("has space", "ünï", "x" * 257):
            with pytest.raises(TelegramBadRequest) as bad_secret:
                await bot.set_webhook("https://bot.example.org/hook", secret_token=secret)
            assert bad_secret.value.message == (
                "Bad Request: secret token contains unallowed characters"
            )
        assert (await bot.get_webhook_info()).url == "", "nothing was set"
        assert await bot.set_webhook(
            "https://127.0.0.1:8443/hook", secret_token="x" * 256, max_connections=5
        )
        with pytest.raises(TelegramConflictError) as conflict:
            await bot.get_updates(timeout=0)
        assert conflict.value.message == WEBHOOK_CONFLICT
        info = await bot.get_webhook_info()
        assert (info.url, info.has_custom_certificate, info.max_connections) == (
            "https://127.0.0.1:8443/hook", False, 5
        )
        await emulator.user(LI, "李明").send_text("一")
        assert (await bot.get_webhook_info()).pending_update_count == 1
        assert await bot.delete_webhook(drop_pending_updates=True)
        assert (await bot.get_webhook_info()).pending_update_count == 0
        assert await bot.get_updates(timeout=0) == []


async def _hook(receive: web.RequestHandler) -> tuple[web.AppRunner, str]:  # type: ignore[type-arg]
    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/hook"


async def test_a_refused_delivery_is_kept_retried_and_reported() -> None:
    answer = 403
    seen: list[int] = []

    async def receive(request: web.Request) -> web.Response:
        seen.append((await request.json())["update_id"])
        return web.Response(status=answer)

    runner, url = await _hook(receive)
    try:
        async with BotAPIEmulator(webhook_http=True) as emulator, _bot(emulator) as bot:
            assert await bot.set_webhook(url, secret_token="s3cret")
            await emulator.user(LI, "李明").send_text("一")
            deadline = time.monotonic() + 5
            while len(seen) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert len(seen) >= 2 and len(set(seen)) == 1, "the same update, tried again"
            info = await bot.get_webhook_info()
            assert info.pending_update_count == 1, "kept until answered 2xx"
            assert info.last_error_message == "Wrong response from the webhook: 403 Forbidden"
            assert info.last_error_date is not None
            assert abs(info.last_error_date.timestamp() - time.time()) < 10
            answer = 200
            deadline = time.monotonic() + 5
            while emulator.pending_updates and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert emulator.pending_updates == 0, "delivered, then gone from the queue"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("max_connections", [1, 40])
async def test_deliveries_run_side_by_side_each_sender_in_order(max_connections: int) -> None:
    in_flight: Counter[int] = Counter()
    most: Counter[str] = Counter()
    received: dict[int, list[str]] = {}

    async def receive(request: web.Request) -> web.Response:
        message = (await request.json())["message"]
        sender = message["from"]["id"]
        in_flight[sender] += 1
        most["all"] = max(most["all"], sum(in_flight.values()))
        most["one sender"] = max(most["one sender"], in_flight[sender])
        await asyncio.sleep(0.05)
        received.setdefault(sender, []).append(message["text"])
        in_flight[sender] -= 1
        return web.Response()

    runner, url = await _hook(receive)
    try:
        async with BotAPIEmulator(webhook_http=True) as emulator, _bot(emulator) as bot:
            users = [emulator.user(3000 + n, f"村民{n}") for n in range(4)]
            for round_ in range(3):
                for user in users:
                    await user.send_text(f"第{round_}条")
            assert await bot.set_webhook(url, max_connections=max_connections)
            deadline = time.monotonic() + 10
            while emulator.pending_updates and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert received == {user.id: ["第0条", "第1条", "第2条"] for user in users}
    assert most["one sender"] == 1, "one sender's updates one at a time"
    if max_connections == 1:
        assert most["all"] == 1
    else:
        assert most["all"] == 4, "different senders' updates side by side"


# ---- the command ------------------------------------------------------------------------------


def _environment(database_url: str, **settings: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items()
        if not k.upper().startswith(("WEBHOOK_", "WEB_", "BOT_", "TELEGRAM_", "REDIS_"))
    }
    env.update({"DATABASE_URL": database_url, "WEB_LISTEN": "", **settings})
    return env


async def _villagebot(
    database_url: str, cwd: Path, *args: str, **settings: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, env=_environment(database_url, **settings),
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def _command(
    database_url: str, cwd: Path, *args: str, **settings: str
) -> tuple[int, str, str]:
    process = await _villagebot(database_url, cwd, *args, **settings)
    out, err = await asyncio.wait_for(process.communicate(), STARTED_WITHIN)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_webhook_command_sets_shows_and_deletes(
    database_url: str, tmp_path: Path
) -> None:
    async with BotAPIEmulator(webhook_http=True) as emulator, _bot(emulator) as bot:
        settings = {
            "BOT_TOKEN": emulator.token, "TELEGRAM_API_URL": emulator.base_url,
            "WEBHOOK_URL": "http://127.0.0.1:9/telegram/updates", "WEBHOOK_SECRET": "s3cret",
            "WEB_LISTEN": "127.0.0.1:0",
        }
        code, out, err = await _command(database_url, tmp_path, "webhook", "set", **settings)
        assert code == 0, err
        assert out.startswith("webhook set: http://127.0.0.1:9/telegram/updates (")
        info = await bot.get_webhook_info()
        assert info.url == "http://127.0.0.1:9/telegram/updates"
        assert info.allowed_updates is not None
        assert {"message", "callback_query"} <= set(info.allowed_updates)

        await emulator.user(LI, "李明").send_text("一")  # port 9 answers nothing
        deadline = time.monotonic() + 5
        while (await bot.get_webhook_info()).last_error_message is None:
            assert time.monotonic() < deadline, "no delivery was tried"
            await asyncio.sleep(0.05)
        code, out, err = await _command(database_url, tmp_path, "webhook", "info", **settings)
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0] == "url: http://127.0.0.1:9/telegram/updates"
        assert "pending updates: 1" in lines
        assert "max connections: 40" in lines
        assert any(line.startswith("allowed updates: ") and "message" in line for line in lines)
        [last] = [line for line in lines if line.startswith("last error: ")]
        assert re.match(r"last error: \d{4}-\d\d-\d\d \d\d:\d\d .+: Connection failed", last), last

        code, out, err = await _command(
            database_url, tmp_path, "webhook", "delete", "--drop-pending-updates", **settings
        )
        assert (code, out) == (0, "webhook deleted; pending updates dropped\n"), err
        assert (await bot.get_webhook_info()).url == ""
        code, out, _ = await _command(database_url, tmp_path, "webhook", "info", **settings)
        assert out.splitlines()[:2] == ["url: (none: the bot polls)", "pending updates: 0"]


async def test_the_webhook_command_says_why_telegram_refused(
    database_url: str, tmp_path: Path
) -> None:
    async with BotAPIEmulator() as emulator:  # as Telegram: no plain http
        code, out, err = await _command(
            database_url, tmp_path, "webhook", "set", BOT_TOKEN=emulator.token,
            TELEGRAM_API_URL=emulator.base_url, WEB_LISTEN="127.0.0.1:0",
            WEBHOOK_URL="http://127.0.0.1:9/telegram", WEBHOOK_SECRET="s3cret",
        )
    assert code == 1 and out == ""
    assert err == (
        "villagebot: setting WEBHOOK_URL: cannot set the webhook http://127.0.0.1:9/telegram: "
        "Telegram answered 'Bad Request: bad webhook: An HTTPS URL must be provided for "
        "webhook'\n"
    )


async def test_run_in_polling_mode_with_a_webhook_set_stops_saying_why(
    database_url: str, tmp_path: Path
) -> None:
    async with BotAPIEmulator() as emulator, _bot(emulator) as bot:
        await bot.set_webhook("https://bot.example.org/telegram", secret_token="s3cret")
        code, _, err = await _command(
            database_url, tmp_path, "run", BOT_TOKEN=emulator.token,
            TELEGRAM_API_URL=emulator.base_url,
        )
        assert emulator.stats.requests["getUpdates"] == 0
    assert code == 1
    assert err.splitlines()[-1] == (
        "villagebot: a webhook is set (https://bot.example.org/telegram), so Telegram will not "
        "answer polling: set WEBHOOK_URL and WEBHOOK_SECRET to run in webhook mode, or remove "
        "it with `villagebot webhook delete` to poll"
    )
    assert "Traceback" not in err


async def test_run_in_webhook_mode_sets_the_webhook_answers_and_stops(
    database_url: str, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/telegram/updates"
    async with BotAPIEmulator(webhook_http=True) as emulator:
        bot = await _villagebot(
            database_url, tmp_path, "run", BOT_TOKEN=emulator.token,
            TELEGRAM_API_URL=emulator.base_url, WEB_LISTEN=f"127.0.0.1:{port}",
            WEB_URL=f"http://127.0.0.1:{port}", WEBHOOK_URL=url, WEBHOOK_SECRET="s3cret",
            SCHEDULER="false", DIRECTORY_FILE=str(Path(__file__).parent.parent / "examples"
                                                  / "directory.yaml"),
        )
        try:
            assert bot.stderr is not None
            seen: list[str] = []
            while not seen or "receiving updates by webhook" not in seen[-1]:
                line = await asyncio.wait_for(bot.stderr.readline(), STARTED_WITHIN)
                assert line, seen
                seen.append(line.decode())
            assert f"POST /telegram/updates on 127.0.0.1:{port}" in seen[-1]
            assert emulator.webhook_url == url
            await emulator.user(WANG, "王芳").send_text("/start")
            await emulator.wait_for(WANG, None, timeout=10)
            assert emulator.stats.requests["getUpdates"] == 0
            bot.send_signal(signal.SIGTERM)
            _, rest = await asyncio.wait_for(bot.communicate(), STARTED_WITHIN)
        finally:
            if bot.returncode is None:
                bot.kill()
                await bot.wait()
    assert bot.returncode == 0, rest.decode()
    assert "Traceback" not in rest.decode()
