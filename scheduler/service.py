"""The scheduler in a running bot: one APScheduler job that asks the database what is due.

APScheduler only keeps time; it holds no job that matters. Each tick reads the clock and runs
every kind of work that may be due at that moment: the case sweep (reminders, escalations,
auto-close), repeat-problem warnings, weekly digests and the monthly red/grey list. The first
tick runs at start, so what fell due while the bot was down is caught up at once (digests and
lists within `CATCH_UP_HOURS`; cases always). The clock is a function, so tests move time by
hand and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot import metrics
from scheduler import digest, ranking, repeats
from scheduler.policy import Policy
from scheduler.supervision import SweepReport, sweep

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class TickReport:
    sweep: SweepReport
    repeats: int
    digests: int
    rankings: int


class Supervisor:
    """Runs `tick` every `every_seconds`; one per process, any number per database."""

    def __init__(self, policy: Policy, *, every_seconds: int = 60, clock: Clock = wall_clock):
        self.policy = policy
        self.every_seconds = every_seconds
        self.clock = clock
        self._scheduler: AsyncIOScheduler | None = None
        self._lock = asyncio.Lock()
        #: What the latest tick did (None before the first): for the log and a health check.
        self.last_tick: TickReport | None = None
        #: `time.monotonic()` when the latest tick completed, or when started before the first:
        #: `/readyz` says the scheduler is stuck when this falls behind (`stalled`).
        self.last_tick_at: float | None = None

    async def tick(self) -> TickReport:
        """Everything due at the clock's now; safe to run again at the same moment."""
        async with self._lock:
            now = self.clock()
            report = TickReport(
                sweep=await sweep(now, self.policy),
                repeats=await self._guarded("repeat warnings", repeats.warn(now, self.policy)),
                digests=await self._guarded("digests", digest.due(now, self.policy)),
                rankings=await self._guarded("red/grey lists", ranking.due(now, self.policy)),
            )
            self.last_tick = report
            self.last_tick_at = time.monotonic()
        metrics.ticked()
        return report

    def stalled(self, intervals: int = 3) -> float | None:
        """Seconds since the latest tick when more than `intervals` sweeps were missed (a
        tick that hangs or keeps failing), else None."""
        if self.last_tick_at is None:
            return None
        since = time.monotonic() - self.last_tick_at
        return since if since > intervals * self.every_seconds else None

    @staticmethod
    async def _guarded(what: str, work: object) -> int:
        """One kind of work failing (a bad row, a lost connection) leaves the others running."""
        try:
            return await work  # type: ignore[misc]
        except Exception:
            log.exception("scheduler: %s failed", what)
            return 0

    async def _job(self) -> None:
        try:
            await self.tick()
        except Exception:
            log.exception("scheduler: the sweep failed")

    async def start(self) -> None:
        if self._scheduler is not None:
            return
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._scheduler.add_job(
            self._job,
            IntervalTrigger(seconds=self.every_seconds),
            id="supervise",
            next_run_time=datetime.now(UTC),  # catch up at once
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._scheduler.start()
        self.last_tick_at = self.last_tick_at or time.monotonic()
        log.info("scheduler started: every %ss", self.every_seconds)

    async def stop(self) -> None:
        if self._scheduler is None:
            return
        scheduler, self._scheduler = self._scheduler, None
        scheduler.pause()
        # A tick in progress finishes first: shut down under it, APScheduler would cancel it.
        async with self._lock:
            scheduler.shutdown(wait=False)
