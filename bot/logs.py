"""The process's log: text or JSON lines, each with what is being worked on, never a phone number.

Two context variables say what a line is about: the Telegram update being handled (set by the
dispatcher's `Observe` middleware, bot/metrics.py) and the case being acted on (set by
`bot.cases` where a case is made or moved). `Context` copies them onto every record, so any
library's line written meanwhile carries them too. `Redact` blanks phone-number-like digit runs
in the message, its arguments and the traceback, whoever logs them: a villager's number must
not end up in a log collector.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

#: The Telegram update this task is handling, if any.
update_id: ContextVar[int | None] = ContextVar("update_id", default=None)
#: The number of the case this task acts on, if any (e.g. "DEMO-2026-0001").
case_number: ContextVar[str | None] = ContextVar("case_number", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
REDACTED = "[phone]"

#: +86 numbers in any spacing, other international numbers, mainland mobiles (11 digits from
#: 13x to 19x) and landlines written with their area code (0571-87654321). Digit runs that are
#: parts of longer runs (a supergroup's chat id, a timestamp) are left alone.
_PHONE = re.compile(
    r"""
    \+86[\s-]?\d(?:[\s-]?\d){6,11}
    | \+\d{1,3}[\s-]?\d(?:[\s-]?\d){5,13}
    | (?<![\d.])1[3-9]\d(?:[\s-]?\d){8}(?![\d.])
    | (?<![\d.])0\d{2,3}-\d{7,8}(?![\d.])
    """,
    re.VERBOSE,
)


def redact(text: str) -> str:
    """`text` with every phone-number-like run replaced by `REDACTED`."""
    return _PHONE.sub(REDACTED, text)


@contextlib.contextmanager
def handling(update: int) -> Iterator[None]:
    """While an update is handled: its id on every line, and no case from an earlier one.

    Handled, the task's context is as before. Failed, the two stay set: aiogram's error
    handlers run outside the dispatcher's middlewares, and their lines name the update and
    the case too (the next update sets both afresh).
    """
    update_token = update_id.set(update)
    case_token = case_number.set(None)
    yield
    case_number.reset(case_token)
    update_id.reset(update_token)


def acting_on(number: str) -> None:
    """From here on in this task (the rest of the update or tick), lines name this case."""
    case_number.set(number)


class Context(logging.Filter):
    """Copies the update id and the case number onto the record (None when there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.update_id = update_id.get()
        record.case = case_number.get()
        parts = [
            f"{name}={value}"
            for name, value in (("update", record.update_id), ("case", record.case))
            if value is not None
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return True


class Redact(logging.Filter):
    """Blanks phone numbers in the formatted message and the traceback of every record."""

    _tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class _JsonLines(JsonFormatter):
    """python-json-logger formats the traceback itself, from the exception: redacted here."""

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "json":
        return _JsonLines(
            JSON_FIELDS,
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
            # The text format's suffix stays out; update_id and case are fields of their own.
            reserved_attrs=[*RESERVED_ATTRS, "taskName", "context"],
        )
    return logging.Formatter(TEXT_FORMAT)


def handler(log_format: LogFormat, stream: object = None) -> logging.Handler:
    """A stream handler (stderr by default) with the context, the redaction and the format."""
    made = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    made.addFilter(Context())
    made.addFilter(Redact())
    made.setFormatter(formatter(log_format))
    return made


def configure(level: str, log_format: LogFormat) -> None:
    """The root logger of a `villagebot` command: one handler, replacing any earlier one."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(log_format))
    root.setLevel(level)
