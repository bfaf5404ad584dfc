"""Stand-ins for the group robots' webhooks of WeCom, DingTalk and Feishu, on loopback.

What `bot.emulator` is for the Bot API, this is for `bot.robots`: each hook checks what its
app documents and answers with the app's own codes, so the tests see what a township would.

- WeCom (企业微信) `POST /cgi-bin/webhook/send?key=KEY`: `msgtype` markdown (`markdown.content`,
  at most 4096 bytes), text, or image (`image.base64` of a PNG or JPG of at most 2 MB, and
  `image.md5` of its bytes). 93000 for an unknown key, 45009 past 20 a minute.
- DingTalk (钉钉) `POST /robot/send?access_token=TOKEN&timestamp=MS&sign=SIGN`: with a secret
  (加签) the sign must be base64 HMAC-SHA256 of "timestamp\\nsecret" keyed by the secret and
  the timestamp within an hour, else 310000; `msgtype` markdown (`markdown.title`,
  `markdown.text`) or text. 300001 for an unknown token, 130101 past 20 a minute.
- Feishu (飞书) `POST /open-apis/bot/v2/hook/ID`: with a secret (签名校验) the body's
  `timestamp` (seconds) and `sign` (base64 HMAC-SHA256 keyed by "timestamp\\nsecret", of an
  empty message), within an hour, else 19021; `msg_type` text (`content.text`), post or
  interactive (`card.elements`); a body over 20 KB or of another shape 9499 "Bad Request";
  19001 for an unknown hook, 11232 past 100 a minute or 5 a second.

A wrong shape is answered with a code the app uses for it (the stand-in's own choice where the
app has none), never with 0. Each hook counts what it accepted (`Hook.received`); `busy(n)`
answers the next n posts with the rate-limit code, `broken(n)` with HTTP 500.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.models import RobotKind

PNG = b"\x89PNG\r\n\x1a\n"
JPG = b"\xff\xd8\xff"
HOUR = 3600


@dataclass
class Hook:
    kind: RobotKind
    name: str
    secret: str | None = None
    #: The bodies accepted, in order.
    received: list[dict[str, Any]] = field(default_factory=list)
    #: Every answer given, as (code, message): refusals included.
    answers: list[tuple[int, str]] = field(default_factory=list)
    times: deque[float] = field(default_factory=deque)
    busy_left: int = 0
    broken_left: int = 0

    def busy(self, count: int = 1) -> None:
        self.busy_left = count

    def broken(self, count: int = 1) -> None:
        self.broken_left = count

    def texts(self) -> list[str]:
        """Each accepted message's words (markdown or text), images left out."""
        out = []
        for body in self.received:
            if "markdown" in body:
                out.append(body["markdown"].get("content") or body["markdown"].get("text", ""))
            elif "text" in body:
                out.append(body["text"]["content"])
            elif body.get("msg_type") == "text":
                out.append(body["content"]["text"])
            elif body.get("msg_type") == "interactive":
                card = body["card"]
                title = card.get("header", {}).get("title", {}).get("content", "")
                parts = [e.get("content", "") for e in card.get("elements", [])]
                out.append("\n".join([title, *parts]))
        return out

    def images(self) -> list[bytes]:
        return [base64.b64decode(b["image"]["base64"]) for b in self.received if "image" in b]


#: Per app: (rate-limit code and words, windows of (messages, seconds)).
LIMITS = {
    RobotKind.WECOM: ((45009, "api freq out of limit"), ((20, 60.0),)),
    RobotKind.DINGTALK: ((130101, "send too fast, exceed 20 times per minute"), ((20, 60.0),)),
    RobotKind.FEISHU: ((11232, "frequency limited"), ((100, 60.0), (5, 1.0))),
}


class Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RobotEmulator:
    """One aiohttp server on 127.0.0.1 with every hook added to it."""

    def __init__(self, *, limits: bool = True) -> None:
        self.hooks: dict[tuple[RobotKind, str], Hook] = {}
        self.limits = limits
        self._runner: web.AppRunner | None = None
        self.port = 0
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/cgi-bin/webhook/send", self._wecom)
        app.router.add_post("/robot/send", self._dingtalk)
        app.router.add_post("/open-apis/bot/v2/hook/{name}", self._feishu)
        self._app = app

    async def start(self) -> RobotEmulator:
        self._runner = web.AppRunner(self._app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> RobotEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def add(self, kind: RobotKind, name: str, secret: str | None = None) -> Hook:
        hook = Hook(kind, name, secret)
        self.hooks[kind, name] = hook
        return hook

    def url(self, hook: Hook) -> str:
        base = f"http://127.0.0.1:{self.port}"
        if hook.kind == RobotKind.WECOM:
            return f"{base}/cgi-bin/webhook/send?key={hook.name}"
        if hook.kind == RobotKind.DINGTALK:
            return f"{base}/robot/send?access_token={hook.name}"
        return f"{base}/open-apis/bot/v2/hook/{hook.name}"

    # ---- the three apps --------------------------------------------------------------------

    async def _wecom(self, request: web.Request) -> web.Response:
        return await self._answer(request, RobotKind.WECOM, request.query.get("key", ""),
                                  self._check_wecom)

    async def _dingtalk(self, request: web.Request) -> web.Response:
        return await self._answer(request, RobotKind.DINGTALK,
                                  request.query.get("access_token", ""), self._check_dingtalk)

    async def _feishu(self, request: web.Request) -> web.Response:
        return await self._answer(request, RobotKind.FEISHU, request.match_info["name"],
                                  self._check_feishu)

    async def _answer(self, request: web.Request, kind: RobotKind, name: str,
                      check: Any) -> web.Response:
        hook = self.hooks.get((kind, name))
        raw = await request.read()
        try:
            if hook is None:
                raise Refused(*{
                    RobotKind.WECOM: (93000, "invalid webhook url"),
                    RobotKind.DINGTALK: (300001, "token is not exist"),
                    RobotKind.FEISHU: (19001, "param invalid: incoming webhook access token "
                                              "invalid"),
                }[kind])
            if hook.broken_left:
                hook.broken_left -= 1
                hook.answers.append((500, "broken"))
                return web.Response(status=500, text="Internal Server Error")
            try:
                body = json.loads(raw)
            except ValueError:
                raise self._bad(kind) from None
            if not isinstance(body, dict):
                raise self._bad(kind)
            check(hook, request, body, len(raw))
            self._pace(hook)
        except Refused as refused:
            if hook is not None:
                hook.answers.append((refused.code, refused.message))
            return self._reply(kind, refused.code, refused.message)
        hook.received.append(body)
        hook.answers.append((0, "ok"))
        return self._reply(kind, 0, "ok" if kind != RobotKind.FEISHU else "success")

    @staticmethod
    def _reply(kind: RobotKind, code: int, message: str) -> web.Response:
        if kind == RobotKind.FEISHU:
            return web.json_response({"code": code, "msg": message, "data": {}})
        return web.json_response({"errcode": code, "errmsg": message})

    @staticmethod
    def _bad(kind: RobotKind, detail: str = "") -> Refused:
        if kind == RobotKind.FEISHU:
            return Refused(9499, "Bad Request")
        if kind == RobotKind.WECOM:
            return Refused(40008, f"invalid message type {detail}".strip())
        return Refused(40035, f"缺少参数 json {detail}".strip())

    def _pace(self, hook: Hook) -> None:
        (code, words), windows = LIMITS[hook.kind]
        if hook.busy_left:
            hook.busy_left -= 1
            raise Refused(code, words)
        if not self.limits:
            return
        now = time.monotonic()
        longest = max(seconds for _, seconds in windows)
        while hook.times and now - hook.times[0] >= longest:
            hook.times.popleft()
        for cap, seconds in windows:
            if sum(1 for t in hook.times if now - t < seconds) >= cap:
                raise Refused(code, words)
        hook.times.append(now)

    def _check_wecom(self, hook: Hook, request: web.Request, body: dict, size: int) -> None:
        kind = body.get("msgtype")
        if kind == "markdown":
            content = (body.get("markdown") or {}).get("content")
            if not isinstance(content, str) or not content:
                raise Refused(44004, "empty content")
            if len(content.encode()) > 4096:
                raise Refused(40058, "markdown.content exceed max length 4096")
        elif kind == "text":
            if not isinstance((body.get("text") or {}).get("content"), str):
                raise Refused(44004, "empty content")
        elif kind == "image":
            image = body.get("image") or {}
            try:
                data = base64.b64decode(image.get("base64", ""), validate=True)
            except (binascii.Error, ValueError):
                raise Refused(40009, "invalid image size") from None
            if not data or len(data) > 2 * 1024 * 1024 or not data.startswith((PNG, JPG)):
                raise Refused(40009, "invalid image size")
            if image.get("md5") != hashlib.md5(data).hexdigest():
                raise Refused(301019, "media md5 not match")
        else:
            raise self._bad(RobotKind.WECOM, str(kind))

    def _check_dingtalk(self, hook: Hook, request: web.Request, body: dict, size: int) -> None:
        if hook.secret is not None:
            stamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
            if not stamp.isdigit() or abs(time.time() * 1000 - int(stamp)) > HOUR * 1000:
                raise Refused(310000, "sign not match, timestamp is invalid")
            expected = base64.b64encode(hmac.new(
                hook.secret.encode(), f"{stamp}\n{hook.secret}".encode(), hashlib.sha256
            ).digest()).decode()
            if not hmac.compare_digest(sign, expected):  # aiohttp has urldecoded it
                raise Refused(310000, "sign not match")
        kind = body.get("msgtype")
        if kind == "markdown":
            markdown = body.get("markdown") or {}
            if not all(isinstance(markdown.get(k), str) and markdown[k]
                       for k in ("title", "text")):
                raise self._bad(RobotKind.DINGTALK, "markdown.title/text")
        elif kind == "text":
            if not isinstance((body.get("text") or {}).get("content"), str):
                raise self._bad(RobotKind.DINGTALK, "text.content")
        else:
            raise self._bad(RobotKind.DINGTALK, "msgtype")

    def _check_feishu(self, hook: Hook, request: web.Request, body: dict, size: int) -> None:
        if size > 20 * 1024:
            raise Refused(9499, "Bad Request")
        if hook.secret is not None:
            stamp, sign = str(body.get("timestamp", "")), body.get("sign", "")
            if not stamp.isdigit() or abs(time.time() - int(stamp)) > HOUR:
                raise Refused(19021, "sign match fail or timestamp is not within one hour "
                                     "from current time")
            key = f"{stamp}\n{hook.secret}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            if not isinstance(sign, str) or not hmac.compare_digest(sign, expected):
                raise Refused(19021, "sign match fail or timestamp is not within one hour "
                                     "from current time")
        kind = body.get("msg_type")
        if kind == "text":
            ok = isinstance((body.get("content") or {}).get("text"), str)
        elif kind == "post":
            ok = isinstance((body.get("content") or {}).get("post"), dict)
        elif kind == "interactive":
            card = body.get("card") or {}
            elements = card.get("elements")
            ok = isinstance(elements, list) and all(
                isinstance(e, dict) and isinstance(e.get("tag"), str) for e in elements
            )
        else:
            ok = False
        if not ok:
            raise Refused(9499, "Bad Request")
