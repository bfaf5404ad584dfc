"""`run --workers N` and `web --workers N`: one command, N processes on one port.

The parent prepares what every worker shares, then forks and only supervises:

- It imports the application (aiogram alone is some 200,000 objects: the whole Bot API as
  pydantic models), reads the catalogs, binds WEB_LISTEN once and freezes the garbage
  collector, all before the first fork. The workers then share those pages copy-on-write
  instead of each building its own, and the collector never writes to them (`bench.workers`
  measures it). It opens neither the database nor an event loop: each worker makes its own,
  as a connection or a loop does not survive a fork.
- Every worker is the ordinary command (its own database connections, courier, scheduler and
  web server) serving the inherited socket; the kernel hands each connection to whichever
  worker accepts it first. In webhook mode that web server is what receives Telegram's POSTs.
  Worker n runs as INSTANCE `<instance>-<n>`, so each courier owns its own outbox leases, and
  a worker restarted under the same name takes back at once what it had claimed.
- SIGTERM or SIGINT is passed on to every worker, which stops as the single process does;
  the parent ends when they all have. A worker that ends by itself is started again after a
  short pause; one that does so `DEATHS` times within `WITHIN` seconds stops them all.

Supervision and digests are safe in any number of processes (each due item is claimed in the
database), so every worker runs the scheduler.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.config import Settings, web_address
from bot.logs import TEXT_FORMAT

log = logging.getLogger(__name__)

MOST = 64
#: A worker that ends this many times within WITHIN seconds is failing at start: give up.
DEATHS = 5
WITHIN = 30.0
#: The pause before a worker is started again, doubled at each recent death, at most LONGEST.
PAUSE = 0.5
LONGEST = 5.0
#: What the parent listens for; blocked, and read with sigtimedwait, so no handler runs.
SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
STOPS = {signal.SIGTERM, signal.SIGINT}
#: The lease owner's column is 64 characters.
INSTANCE_LENGTH = 64

#: A worker: its settings and the inherited listening socket in, its exit code out.
Work = Callable[[Settings, socket.socket], int]


def count(text: str) -> int:
    """--workers' argument: a whole number from 1 to MOST."""
    if not text.isdigit() or not 1 <= int(text) <= MOST:
        raise ValueError(f"must be a whole number from 1 to {MOST}")
    return int(text)


def refusal(command: str, settings: Settings, workers: int) -> str | None:
    """Why `command --workers N` cannot run with these settings, in one line; None if it can."""
    if command == "run":
        if not settings.bot_token:
            return "setting BOT_TOKEN: required to run the bot (try `villagebot demo`)"
        # Read so, the setting may be missing altogether: webhook mode is its own change.
        if not getattr(settings, "webhook_url", None):
            return (
                f"--workers {workers} needs webhook mode (WEBHOOK_URL): Telegram allows one "
                "getUpdates consumer per bot"
            )
    if not settings.web_listen:
        return (
            f"--workers {workers} needs WEB_LISTEN: each worker serves it "
            "(the back office, and in webhook mode Telegram's updates)"
        )
    longest = INSTANCE_LENGTH - len(f"-{workers}")
    if len(settings.instance) > longest:
        return f"setting INSTANCE: at most {longest} characters with --workers {workers}"
    return None


def listen(web_listen: str) -> socket.socket:
    """WEB_LISTEN bound and listening once, for every worker; OSError if it cannot be."""
    host, port = web_address(web_listen)
    family, kind, protocol, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listening = socket.socket(family, kind, protocol)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
        listening.listen(1024)
    except BaseException:
        listening.close()
        raise
    listening.set_inheritable(True)
    return listening


def prepare() -> None:
    """Load now what every worker would load, so that they share it: the application's
    modules with aiogram, and the catalogs. Then freeze it, collected first: the frozen
    garbage would never be freed, in any worker."""
    import bot.app  # noqa: F401  (the whole application, and aiogram with it)
    from bot.i18n import catalogs

    catalogs()
    gc.collect()
    gc.freeze()


@dataclass
class Worker:
    number: int
    settings: Settings
    pid: int = 0
    #: When it ended by itself lately (monotonic seconds), and when to start it again.
    deaths: list[float] = field(default_factory=list)
    due: float | None = None


def serve(
    workers: int, settings: Settings, listening: socket.socket, work: Work,
    first: Callable[[], int],
) -> int:
    """Fork `workers` workers doing `work` on `listening` (WEB_LISTEN's, from `listen`), and
    supervise them until stopped. Returns the command's exit code: 0 when they all stopped
    cleanly when asked.

    `first` runs before them, in a child of its own as the parent opens no database: what
    every worker would do at start, at once with the others (the schema's migrations, the
    directory's import), done once; the workers then start without DIRECTORY_FILE."""
    host, port = listening.getsockname()[:2]
    # WEB_LISTEN may say port 0: the workers say the port they all share.
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    settings = settings.model_copy(update={"web_listen": shown, "directory_file": None})
    prepare()
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    code = _once(first)
    if code != 0:
        return code
    team = {
        n: Worker(n, settings.model_copy(update={"instance": f"{settings.instance}-{n}"}))
        for n in range(1, workers + 1)
    }
    for worker in team.values():
        _start(worker, listening, work)
    code = _supervise(team, listening, work)
    listening.close()
    return code


def _once(first: Callable[[], int]) -> int:
    """`first` in a child process, with SIGTERM and SIGINT held (a migration is not cut
    short): its exit code, or 1 when a stop was asked meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = first()
        except BaseException:
            log.exception("preparing the database failed")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    stopped = False
    while True:
        received = signal.sigtimedwait(SIGNALS, 1.0)
        stopped = stopped or (received is not None and received.si_signo in STOPS)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    if stopped:
        print("villagebot: stopped before the workers started", file=sys.stderr)
        return 1
    return 1 if os.WIFSIGNALED(status) else os.waitstatus_to_exitcode(status)


def _start(worker: Worker, listening: socket.socket, work: Work) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os._exit(_child(worker, listening, work))
    worker.pid, worker.due = pid, None
    log.info("worker %d started (pid %d, INSTANCE %s)", worker.number, pid,
             worker.settings.instance)


def _child(worker: Worker, listening: socket.socket, work: Work) -> int:
    """A worker, from the fork to its exit code; never returns into the parent's code."""
    code = 1
    try:
        # SIGTERM and SIGINT stay blocked until the worker's loop handles them: one that came
        # early waits for it instead of ending the start half-way.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for handler in logging.getLogger().handlers:
            handler.addFilter(_Numbered(worker.number))  # a field of its own in JSON lines
            if worker.settings.log_format == "text":
                handler.setFormatter(logging.Formatter(TEXT_FORMAT.replace(
                    "%(name)s", f"worker {worker.number} %(name)s"
                )))
        code = work(worker.settings, listening)
    except BaseException:
        log.exception("worker %d failed", worker.number)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


class _Numbered(logging.Filter):
    """Names the worker on each of its log records."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.number
        return True


def _supervise(team: dict[int, Worker], listening: socket.socket, work: Work) -> int:
    stopping: signal.Signals | None = None
    failed: str | None = None
    unclean = False
    # Until every worker has ended and none is waiting to be started again.
    while any(worker.pid or worker.due is not None for worker in team.values()):
        now = time.monotonic()
        dues = [w.due for w in team.values() if w.due is not None and stopping is None]
        wait = max(0.0, min(dues) - now) if dues else 1.0
        received = signal.sigtimedwait(SIGNALS, wait)
        if received is not None and received.si_signo in STOPS and stopping is None:
            stopping = signal.Signals(received.si_signo)
            log.info("%s: stopping %d workers", stopping.name, len(team))
            _tell(team, stopping)
        for worker, status in _reaped(team):
            ended = _how(status)
            if stopping is not None:
                unclean = unclean or status != 0
                if status != 0:
                    log.warning("worker %d (pid %d) stopped: %s", worker.number,
                                worker.pid, ended)
                worker.pid = 0
                continue
            now = time.monotonic()
            worker.deaths = [t for t in worker.deaths if now - t < WITHIN] + [now]
            if len(worker.deaths) >= DEATHS:
                failed = (
                    f"worker {worker.number} ended {DEATHS} times within {WITHIN:.0f} s "
                    f"(last: {ended}): stopping all"
                )
                log.error("%s", failed)
                worker.pid = 0
                stopping = signal.SIGTERM
                _tell(team, stopping)
                continue
            pause = min(PAUSE * 2 ** (len(worker.deaths) - 1), LONGEST)
            log.warning("worker %d (pid %d) ended by itself (%s); starting it again in %.1f s",
                        worker.number, worker.pid, ended, pause)
            worker.pid, worker.due = 0, now + pause
        if stopping is None:
            for worker in team.values():
                if worker.due is not None and worker.due <= time.monotonic():
                    _start(worker, listening, work)
    if failed is not None:
        print(f"villagebot: {failed}", file=sys.stderr)
        return 1
    return 1 if unclean else 0


def _tell(team: dict[int, Worker], stop: signal.Signals) -> None:
    for worker in team.values():
        worker.due = None
        if worker.pid:
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile: reaped next
                os.kill(worker.pid, stop)


def _reaped(team: dict[int, Worker]) -> list[tuple[Worker, int]]:
    """The workers that ended since last asked, with their wait status."""
    by_pid = {worker.pid: worker for worker in team.values() if worker.pid}
    ended = []
    while by_pid:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid in by_pid:
            ended.append((by_pid.pop(pid), status))
    return ended


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
