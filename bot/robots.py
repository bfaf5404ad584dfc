"""Group robots (群机器人) of WeCom, DingTalk and Feishu: what is queued for them, and how it is
posted, signed and paced.

A township's leaders may read their work groups in 企业微信, 钉钉 or 飞书 rather than Telegram.
The directory gives the township, and any unit, robots' webhooks (`Robot`); what goes to a
Telegram group goes to them as well (the digest, the red/grey list, repeat-problem warnings,
supervision's overdue notices), through the same outbox: `post` writes `Delivery` rows of kind
ROBOT in the caller's transaction, under the same exactly-once key plus `:robot:<id>`, and the
`Courier` sends them with a `RobotSender` instead of the Bot API. So a robot's message has the
outbox's guarantees: written with the change, sent once, retried with backoff, given up after
`RobotPolicy.max_attempts` and then reported to the township's administrators.

- Each robot's rows are one "chat" of the outbox (`chat_of`: a number no Telegram chat has), so
  they go out in order, and a robot that fails holds back only itself.
- Each robot is paced by its own windows (WeCom and DingTalk 20 a minute, Feishu 100 a minute
  and 5 a second), apart from Telegram's: robots never use Telegram's budget nor wait for it.
- A rate-limit answer (WeCom 45009, DingTalk 130101, Feishu 11232, or HTTP 429) is not a
  failure: the row waits (`RobotPolicy.limited_wait`; DingTalk shuts a robot for ten minutes)
  and goes again. A refusal (a wrong signature, a keyword or IP rule, a removed robot) gives
  up at once with the app's own words; a network error or a 5xx is retried.
- Messages are markdown where the app renders it (WeCom `markdown`, DingTalk `markdown`, Feishu
  an `interactive` card with a markdown element). Images: only WeCom's robot takes a picture's
  bytes (the digest's chart); DingTalk's and Feishu's custom robots cannot upload one, so they
  get the text alone.
- No personal data: the callers give robots the texts Telegram group chats get without names
  or phone numbers (cases by number, units and villages by name).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout
from tortoise.expressions import Q

from bot import db, delivery, snapshot
from bot.models import Delivery, DeliveryKind, Robot, RobotKind, Township

log = logging.getLogger(__name__)

#: `Delivery.chat_id` of a robot's rows is this minus the robot's id: below any Telegram chat
#: id (at most 52 bits), so each robot is an outbox chat of its own.
ROBOT_CHATS = -(2**62)
REQUEST_TIMEOUT = 15.0
#: What each app allows per robot: (messages, seconds) windows.
LIMITS: dict[RobotKind, tuple[tuple[int, float], ...]] = {
    RobotKind.WECOM: ((20, 60.0),),
    RobotKind.DINGTALK: ((20, 60.0),),
    RobotKind.FEISHU: ((100, 60.0), (5, 1.0)),
}
#: The largest text each app shows in one message, in UTF-8 bytes (WeCom's markdown: 4096;
#: Feishu's whole request: 20 KB).
TEXT_BYTES = {RobotKind.WECOM: 4000, RobotKind.DINGTALK: 18000, RobotKind.FEISHU: 18000}
#: WeCom's image message: a JPG or PNG of at most 2 MB.
IMAGE_BYTES = 2 * 1024 * 1024
#: The answers that mean "too fast, later": not failures.
RATE_LIMITED = {RobotKind.WECOM: {45009}, RobotKind.DINGTALK: {130101},
                RobotKind.FEISHU: {11232}}
#: Answers worth another try: the app's own "system busy".
BUSY = {RobotKind.WECOM: {-1}, RobotKind.DINGTALK: {-1}, RobotKind.FEISHU: {-1}}
APP_NAMES = {RobotKind.WECOM: "WeCom", RobotKind.DINGTALK: "DingTalk", RobotKind.FEISHU: "Feishu"}


def chat_of(robot_id: int) -> int:
    return ROBOT_CHATS - robot_id


def is_robot_chat(chat_id: int) -> bool:
    return chat_id <= ROBOT_CHATS


# ---- queueing -------------------------------------------------------------------------------


async def of_township(township_id: int) -> list[Robot]:
    """The township's own robots (its leaders' groups), in the file's order."""
    snap = snapshot.current()
    if snap is not None and township_id in snap.townships:
        return list(snap.township_robots.get(township_id, ()))
    return list(await Robot.filter(
        township_id=township_id, unit_id=None, active=True
    ).order_by("position", "id"))


async def of_unit(unit_id: int) -> list[Robot]:
    snap = snapshot.current()
    if snap is not None and unit_id in snap.units:
        return list(snap.robots.get(unit_id, ()))
    return list(await Robot.filter(unit_id=unit_id, active=True).order_by("position", "id"))


async def townships_told() -> list[Township]:
    """The active townships with a digest channel or a group robot of their own: those the
    digest and the red/grey list go to."""
    with_robots = await Robot.filter(active=True, unit_id=None).values_list(
        "township_id", flat=True
    )
    return list(await Township.filter(
        Q(digest_chat_id__isnull=False) | Q(id__in=list(set(with_robots))), active=True
    ).order_by("id"))


def robot_key(key: str, robot: Robot) -> str:
    return f"{key}:robot:{robot.id}"


async def queued(key: str) -> bool:
    """Whether anything went out under `key`, to Telegram or to a robot."""
    return await Delivery.filter(key__startswith=f"{key}:robot:").exists()


async def post(
    robots: Sequence[Robot],
    text: str,
    *,
    key: str,
    image: bytes | None = None,
    case_id: int | None = None,
) -> list[Delivery]:
    """Queue `text` (and `image`, where the app takes one) for each robot, once per key.

    Plain text as the Telegram group gets it: each app's sender turns it into its markdown.
    Joins the caller's transaction; returns the text rows queued now.
    """
    rows: list[Delivery] = []
    joined = db.in_callers_transaction()
    for robot in robots:
        if await Delivery.filter(key=robot_key(key, robot)).exists():
            continue
        now = delivery._now()
        common: dict[str, Any] = {
            "chat_id": chat_of(robot.id), "kind": DeliveryKind.ROBOT, "robot_id": robot.id,
            "case_id": case_id, "created_at": now, "not_before": now,
        }
        if image is not None and robot.kind == RobotKind.WECOM and len(image) <= IMAGE_BYTES:
            await Delivery.create(
                payload={"image": base64.b64encode(image).decode("ascii")}, **common
            )
        rows.append(await Delivery.create(
            payload={"text": text}, key=robot_key(key, robot), **common
        ))
    if rows and not joined:
        delivery.wake()
    return rows


# ---- what each app is sent ------------------------------------------------------------------


def markdown(text: str, *, hard_breaks: bool = False) -> str:
    """Our plain lines as markdown: the first line bold, "· " items as a list. DingTalk needs
    two spaces before a newline to break a line (`hard_breaks`)."""
    lines = text.split("\n")
    out = []
    for index, line in enumerate(lines):
        if index == 0 and line:
            line = f"**{line}**"
        elif line.startswith("· "):
            line = f"- {line[2:]}"
        out.append(line)
    return ("  \n" if hard_breaks else "\n").join(out)


def _fit(text: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut at a character, with an ellipsis when cut."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", errors="ignore") + "…"


def title_of(text: str) -> str:
    return text.split("\n", 1)[0][:64] or "villagebot"


def body(kind: RobotKind, payload: dict[str, Any]) -> dict[str, Any]:
    """The JSON each app documents for a markdown text or (WeCom) an image."""
    if "image" in payload:
        data = base64.b64decode(payload["image"])
        return {"msgtype": "image",
                "image": {"base64": payload["image"], "md5": hashlib.md5(data).hexdigest()}}
    text = payload["text"]
    if kind == RobotKind.WECOM:
        return {"msgtype": "markdown",
                "markdown": {"content": _fit(markdown(text), TEXT_BYTES[kind])}}
    if kind == RobotKind.DINGTALK:
        return {"msgtype": "markdown", "markdown": {
            "title": title_of(text),
            "text": _fit(markdown(text, hard_breaks=True), TEXT_BYTES[kind]),
        }}
    first, _, rest = text.partition("\n")
    return {"msg_type": "interactive", "card": {
        "header": {"title": {"tag": "plain_text", "content": first[:100]}},
        "elements": [{"tag": "markdown",
                      "content": _fit(markdown(rest.strip("\n")), TEXT_BYTES[kind])}],
    }}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """加签: HMAC-SHA256 keyed by the secret over "timestamp\\nsecret", base64 (then urlencoded
    in the query)."""
    message = f"{timestamp_ms}\n{secret}".encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def feishu_sign(secret: str, timestamp: int) -> str:
    """签名校验: "timestamp\\nsecret" is the HMAC-SHA256 key, of an empty message, base64."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def signed(robot: Robot, secret: str | None, payload: dict[str, Any],
           now: float | None = None) -> tuple[str, dict[str, Any]]:
    """The address to post to and the JSON, signed as the app asks when there is a secret."""
    now = time.time() if now is None else now
    url, data = robot.url, body(robot.kind, payload)
    if secret and robot.kind == RobotKind.DINGTALK:
        timestamp = int(now * 1000)
        query = urllib.parse.urlencode(
            {"timestamp": timestamp, "sign": dingtalk_sign(secret, timestamp)}
        )
        url += ("&" if "?" in url else "?") + query
    elif secret and robot.kind == RobotKind.FEISHU:
        timestamp = int(now)
        data = {"timestamp": str(timestamp), "sign": feishu_sign(secret, timestamp), **data}
    return url, data


# ---- sending --------------------------------------------------------------------------------


class RobotLimited(Exception):
    """The app said "too fast": the row goes again later, not counted as an attempt."""


class RobotRefused(Exception):
    """The app refused the message for good (signature, keyword, address): give up."""


class RobotFailed(Exception):
    """Not reached, or a 5xx or "busy": try again with backoff."""


@dataclass
class RobotPolicy:
    """How long to wait after a rate-limit answer, per app, and how often to try before
    giving up. DingTalk shuts a robot that went past 20 a minute for ten minutes."""

    limited_wait: dict[RobotKind, float] = field(default_factory=lambda: {
        RobotKind.WECOM: 60.0, RobotKind.DINGTALK: 600.0, RobotKind.FEISHU: 5.0,
    })
    max_attempts: int = 8
    backoff_first: float = 2.0
    backoff_cap: float = 300.0

    def backoff(self, attempts: int) -> float:
        return min(self.backoff_first * 2 ** (attempts - 1), self.backoff_cap)


class RobotSender:
    """Posts ROBOT rows for the courier: one HTTP session, each robot in its own windows."""

    def __init__(self, policy: RobotPolicy | None = None) -> None:
        self.policy = policy or RobotPolicy()
        self._session: ClientSession | None = None
        self._windows: dict[int, list[Any]] = {}
        self._kinds: dict[int, RobotKind] = {}
        #: Rows posted, for the logs and the tests.
        self.sent = 0

    async def kind_of(self, robot_id: int) -> RobotKind:
        """A robot's app, remembered: the courier asks at every look at the outbox."""
        kind = self._kinds.get(robot_id)
        if kind is None:
            robot = await Robot.get_or_none(id=robot_id)
            kind = robot.kind if robot is not None else RobotKind.WECOM
            self._kinds[robot_id] = kind
        return kind

    def _windows_of(self, robot_id: int, kind: RobotKind) -> list[Any]:
        windows = self._windows.get(robot_id)
        if windows is None:
            windows = [delivery._Window(cap, seconds) for cap, seconds in LIMITS[kind]]
            self._windows[robot_id] = windows
        return windows

    def ready_in(self, robot_id: int, kind: RobotKind, now: float) -> float:
        """0 when the robot may post now; else how long until it may."""
        return max(w.ready_in(now, 1) for w in self._windows_of(robot_id, kind))

    def started(self, robot_id: int, kind: RobotKind, now: float) -> None:
        """Counted when the post starts: the app counts it when it arrives."""
        for window in self._windows_of(robot_id, kind):
            window.take(now, 1)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, row: Delivery) -> None:
        robot = await Robot.get_or_none(id=row.robot_id)  # type: ignore[attr-defined]
        if robot is None or not robot.active:
            raise RobotRefused("the robot is no longer in the directory")
        secret = robot.secret
        if robot.secret_env:
            secret = os.environ.get(robot.secret_env)
            if not secret:
                raise RobotRefused(f"environment variable {robot.secret_env} is not set")
        url, data = signed(robot, secret, row.payload)
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=REQUEST_TIMEOUT))
        try:
            async with self._session.post(
                url, data=json.dumps(data, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json; charset=utf-8"},
            ) as response:
                status = response.status
                raw = await response.text()
        except (ClientError, TimeoutError, OSError) as error:
            raise RobotFailed(f"not reached: {error or type(error).__name__}") from None
        self._judge(robot.kind, status, raw)
        self.sent += 1

    @staticmethod
    def _judge(kind: RobotKind, status: int, raw: str) -> None:
        """Each app answers 200 with its own code: 0 is delivered; the rest as documented."""
        if status == 429:
            raise RobotLimited(f"HTTP 429: {raw[:100]}")
        if status >= 500:
            raise RobotFailed(f"HTTP {status}")
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise RobotFailed(f"HTTP {status}: not the app's answer")
        code = answer.get("errcode", answer.get("code", answer.get("StatusCode")))
        words = str(answer.get("errmsg", answer.get("msg", "")))
        if code == 0 and status == 200:
            return
        said = f"{APP_NAMES[kind]} {code}: {words}"
        if code in RATE_LIMITED[kind] or (kind == RobotKind.FEISHU and code == 9499
                                          and "too many" in words.lower()):
            raise RobotLimited(said)
        if code in BUSY[kind]:
            raise RobotFailed(said)
        raise RobotRefused(said)

