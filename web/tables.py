"""Tables the back office offers as files: CSV and XLSX, one place for both formats.

CSV is UTF-8 with a byte order mark, without which Excel reads Chinese as mojibake; XLSX is
written by openpyxl in write-only mode (it streams rows, so a long case list stays small in
memory). Several tables go in one file: sheets in XLSX, blocks under their title in CSV.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import quote

from aiohttp import web

Cell = str | int | float | date | datetime | None
FORMATS = ("csv", "xlsx")
_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_NOT_IN_SHEET_NAMES = re.compile(r"[\[\]:*?/\\]")
#: A cell starting with these is a formula to Excel and LibreOffice: written as text instead.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


def _text(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _inert(value: Cell) -> Cell:
    """A villager's text never runs as a formula in the reader's spreadsheet."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def as_csv(tables: Sequence[Table]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for n, table in enumerate(tables):
        if len(tables) > 1:
            if n:
                writer.writerow([])
            writer.writerow([table.title])
        writer.writerow(table.header)
        for row in table.rows:
            writer.writerow([_text(_inert(cell)) for cell in row])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def _sheet_name(title: str, taken: set[str]) -> str:
    name = _NOT_IN_SHEET_NAMES.sub(" ", title).strip()[:31] or "Sheet"
    base, n = name, 2
    while name in taken:
        suffix = f" ({n})"
        name, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(name)
    return name


def as_xlsx(tables: Sequence[Table]) -> bytes:
    from openpyxl import Workbook  # only the export needs it

    book = Workbook(write_only=True)
    taken: set[str] = set()
    for table in tables:
        sheet = book.create_sheet(_sheet_name(table.title, taken))
        sheet.append(table.header)
        for row in table.rows:
            sheet.append([
                cell.replace(tzinfo=None) if isinstance(cell, datetime) else _inert(cell)
                for cell in row
            ])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def download(tables: Sequence[Table], fmt: str, filename: str) -> web.Response:
    """The tables as an attachment named `filename.<fmt>`; `fmt` is one of FORMATS."""
    body = as_xlsx(tables) if fmt == "xlsx" else as_csv(tables)
    name = f"{filename}.{fmt}"
    ascii_name = name.encode("ascii", "replace").decode().replace("?", "_")
    return web.Response(body=body, headers={
        "Content-Type": _MEDIA[fmt],
        "Content-Disposition": (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
        ),
    })
