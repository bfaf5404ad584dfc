"""What the process counts for Prometheus: updates, Bot API calls, the outbox, cases, ticks.

The counters live in prometheus_client's default registry, one per process: the dispatcher's
`Observe` middleware, the bot session's `CountCalls` middleware and the scheduler's Supervisor
move them as things happen. The outbox and the cases are read from the database when scraped
(`refresh`), a few cheap COUNT queries, so every process on one database reports the same.
No label ever carries a person: labels are update kinds, Bot API methods, error kinds and case
statuses, all from short fixed lists.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import TelegramObject, Update
from prometheus_client import Counter, Gauge, Histogram
from tortoise.functions import Count, Min

from bot import logs
from bot.models import Case, CaseStatus, Delivery

UPDATES = Counter(
    "villagebot_updates", "Telegram updates handled, by kind (message, callback_query, ...).",
    ["type"],
)
UPDATE_ERRORS = Counter(
    "villagebot_update_errors", "Telegram updates whose handling raised, by kind.", ["type"]
)
UPDATE_SECONDS = Histogram(
    "villagebot_update_seconds", "Time to handle one Telegram update, by kind.", ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
API_CALLS = Counter(
    "villagebot_bot_api_calls", "Calls to the Bot API, by method (retries count again).",
    ["method"],
)
API_ERRORS = Counter(
    "villagebot_bot_api_errors",
    "Bot API calls that failed, by method and kind: network, 5xx, 429, 403, 400, other.",
    ["method", "kind"],
)
API_RETRY_AFTER = Counter(
    "villagebot_bot_api_retry_after_seconds",
    "Seconds Telegram asked to wait in its 429 answers, summed.",
)
SCHEDULER_TICKS = Counter("villagebot_scheduler_ticks", "Scheduler ticks completed.")
SCHEDULER_LAST_TICK = Gauge(
    "villagebot_scheduler_last_tick_timestamp_seconds",
    "When this process's scheduler last completed a tick (Unix time).",
)
OUTBOX_PENDING = Gauge(
    "villagebot_outbox_pending",
    "Outbox rows due and not yet sent nor failed (all processes on this database).",
)
OUTBOX_OLDEST = Gauge(
    "villagebot_outbox_oldest_pending_seconds",
    "How long the outbox row due the longest has waited (0 when none is waiting).",
)
CASES = Gauge("villagebot_cases", "Cases on this database, by status.", ["status"])

#: Update kinds and methods are aiogram's names; anything else is counted as this.
OTHER = "other"


def update_type(update: Update) -> str:
    try:
        return update.event_type
    except Exception:  # a kind newer than this aiogram
        return OTHER


class Observe(BaseMiddleware):
    """Counts and times each update, and puts its id on every log line written meanwhile.

    Registered first among the dispatcher's own outer middlewares, so the time includes the
    duplicate check and the person's lookup.
    """

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        kind = update_type(event)
        started = time.perf_counter()
        try:
            with logs.handling(event.update_id):
                return await handler(event, data)
        except Exception:
            UPDATE_ERRORS.labels(kind).inc()
            raise
        finally:
            UPDATES.labels(kind).inc()
            UPDATE_SECONDS.labels(kind).observe(time.perf_counter() - started)


def error_kind(error: Exception) -> str:
    """The failure of a Bot API call as one of a few kinds (the first that fits)."""
    if isinstance(error, TelegramRetryAfter):
        return "429"
    if isinstance(error, TelegramForbiddenError):
        return "403"
    if isinstance(error, TelegramServerError):
        return "5xx"
    if isinstance(error, TelegramNetworkError):
        return "network"
    if isinstance(error, TelegramBadRequest):
        return "400"
    return OTHER


class CountCalls(BaseRequestMiddleware):
    """Counts every request the bot makes, and its failures by kind.

    Register it last on the session (innermost): each try that `DirectReplies` makes again is
    a call of its own, as Telegram sees it.
    """

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        API_CALLS.labels(name).inc()
        try:
            return await make_request(bot, method)
        except TelegramAPIError as error:
            API_ERRORS.labels(name, error_kind(error)).inc()
            if isinstance(error, TelegramRetryAfter):
                API_RETRY_AFTER.inc(error.retry_after)
            raise
        except Exception:
            API_ERRORS.labels(name, "network").inc()  # the connection, not Telegram's answer
            raise


def ticked() -> None:
    """A scheduler tick completed."""
    SCHEDULER_TICKS.inc()
    SCHEDULER_LAST_TICK.set(time.time())


async def outbox_waiting(now: datetime | None = None) -> tuple[int, float]:
    """How many outbox rows are due and unfinished, and how long the longest-due has waited."""
    now = now or datetime.now(UTC)
    due = Delivery.filter(sent_at__isnull=True, failed_at__isnull=True, not_before__lte=now)
    row = await due.annotate(rows=Count("id"), oldest=Min("not_before")).first().values(
        "rows", "oldest"
    )
    rows = int(row["rows"] or 0) if row else 0
    oldest = row["oldest"] if row else None
    if not rows or oldest is None:
        return rows, 0.0
    if isinstance(oldest, str):  # SQLite hands an aggregate back as text
        oldest = datetime.fromisoformat(oldest)
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return rows, max(0.0, (now - oldest).total_seconds())


async def refresh() -> None:
    """Read the outbox and the cases into their gauges: at each scrape."""
    rows, oldest = await outbox_waiting()
    OUTBOX_PENDING.set(rows)
    OUTBOX_OLDEST.set(oldest)
    counted = {
        row["status"]: row["cases"]
        for row in await Case.annotate(cases=Count("id")).group_by("status").values(
            "status", "cases"
        )
    }
    for status in CaseStatus:
        CASES.labels(status.value).set(counted.get(status.value, 0))
