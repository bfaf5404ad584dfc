"""A4 pages to print: a village's poster and the invitation sheet, each as PDF and PNG.

One matplotlib figure per page is saved twice, as a PDF page and as a PNG, so what is printed
and what is shown on a phone are the same drawing. The QR codes come from `segno` and are
drawn as vector squares (sharp at any print size), the text in Noto Sans CJK SC from
`mplfonts`, the font the digest's chart uses (`scheduler.chart.FONT_FILE`): it covers
Simplified and Traditional characters and Latin. matplotlib's PDF backend embeds that OTF
(CFF) font as a Type 3 subset of the glyphs used, so the PDF needs no font on the printing
machine and its text can still be searched and copied.

The words arrive already in the page's language; nothing here asks the database. matplotlib is
imported when the first page is drawn, as for the chart. Drawing takes a fraction of a second a
page: callers in the event loop run it in a thread.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import segno

from scheduler.chart import FONT_FILE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.lines import Line2D

#: ISO 216 A4 in inches, portrait: 210 × 297 mm, 595.28 × 841.89 PDF points.
A4 = (210 / 25.4, 297 / 25.4)
#: The PNG's resolution: 1240 × 1753 pixels, enough for a printer and for a phone's camera.
PNG_DPI = 150
#: Invitation cards on one sheet: 3 across, 4 down.
SHEET_COLUMNS, SHEET_ROWS = 3, 4
PER_SHEET = SHEET_COLUMNS * SHEET_ROWS


@dataclass(frozen=True)
class Printed:
    """A document: the PDF (every page) and one PNG per page."""

    pdf: bytes
    pngs: list[bytes]


@dataclass(frozen=True)
class PosterText:
    """A village poster's words, in the township's language."""

    heading: str  # the township
    village: str
    lines: tuple[str, str]  # what the bot is for, in two lines
    scan: str  # what to do with the code


@dataclass(frozen=True)
class Card:
    """One official's square on the invitation sheet."""

    name: str
    unit: str
    link: str
    note: str  # single use, and until when


@lru_cache(maxsize=1)
def _font() -> FontProperties:
    from matplotlib.font_manager import FontProperties

    return FontProperties(fname=FONT_FILE)


def qr_modules(data: str) -> tuple[int, list[tuple[int, int]]]:
    """`data`'s QR code (error correction M): its size in modules, and its dark modules as
    (column, row) from the top left."""
    matrix = segno.make(data, error="m", micro=False).matrix
    dark = [(x, y) for y, row in enumerate(matrix) for x, on in enumerate(row) if on]
    return len(matrix), dark


def _draw_qr(axes: Axes, data: str) -> None:
    """The code as one path of squares, with the quiet zone of 4 modules it needs."""
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path

    size, dark = qr_modules(data)
    vertices: list[tuple[float, float]] = []
    kinds: list[int] = []
    for x, y in dark:
        top = size - y
        vertices += [(x, top), (x + 1, top), (x + 1, top - 1), (x, top - 1), (x, top)]
        kinds += [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY]
    axes.add_patch(PathPatch(
        Path(vertices, kinds), facecolor="black", edgecolor="none", antialiased=False
    ))
    axes.set_xlim(-4, size + 4)
    axes.set_ylim(-4, size + 4)
    axes.set_aspect("equal")
    axes.set_axis_off()


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def wrap(text: str, columns: int) -> list[str]:
    """Lines of at most `columns` (a Chinese character counts two): CJK text has no spaces
    to break at, so this breaks between characters, and between words in Latin text."""
    lines: list[str] = []
    line = ""
    for word in _pieces(text):
        if line and _width(line + word) > columns:
            lines.append(line.rstrip())
            line = word.lstrip()
        else:
            line += word
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _pieces(text: str) -> Iterator[str]:
    """Each wide character alone; Latin words with the space before them."""
    word = ""
    for character in text:
        if _width(character) == 2:
            if word:
                yield word
                word = ""
            yield character
        elif character == " " and word.strip():
            yield word
            word = " "
        else:
            word += character
    if word:
        yield word


def _page() -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=A4, dpi=PNG_DPI)
    FigureCanvasAgg(figure)
    return figure


def _saved(figures: Sequence[Figure], title: str) -> Printed:
    from matplotlib.backends.backend_pdf import PdfPages

    pdf = io.BytesIO()
    with PdfPages(pdf, metadata={"Title": title, "Creator": "villagebot"}) as pages:
        for figure in figures:
            pages.savefig(figure)
    pngs = []
    for figure in figures:
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=PNG_DPI)
        pngs.append(png.getvalue())
    return Printed(pdf=pdf.getvalue(), pngs=pngs)


def poster(words: PosterText, link: str) -> Printed:
    """One A4 page: township, village, two lines, the QR code of `link`, and the link."""
    font = _font()
    figure = _page()
    figure.text(0.5, 0.93, words.heading, fontproperties=font, fontsize=22, ha="center",
                va="center", color="#444444")
    village = wrap(words.village, 16)
    figure.text(0.5, 0.84, "\n".join(village), fontproperties=font,
                fontsize=60 if len(village) == 1 else 40, ha="center", va="center")
    for number, line in enumerate(words.lines):
        figure.text(0.5, 0.735 - number * 0.045, "\n".join(wrap(line, 44)), fontproperties=font,
                    fontsize=22, ha="center", va="center")
    side = 0.62  # of the page's width
    height = side * A4[0] / A4[1]
    axes = figure.add_axes((0.5 - side / 2, 0.17, side, height))
    _draw_qr(axes, link)
    figure.text(0.5, 0.135, "\n".join(wrap(words.scan, 44)), fontproperties=font, fontsize=20,
                ha="center", va="center")
    figure.text(0.5, 0.08, link, fontproperties=font, fontsize=14, ha="center", va="center",
                color="#444444")
    return _saved([figure], words.village)


def _rule(xs: tuple[float, float], ys: tuple[float, float]) -> Line2D:
    from matplotlib.lines import Line2D

    return Line2D(xs, ys, color="#bbbbbb", linewidth=0.5, linestyle=(0, (4, 4)))


def sheet(title: str, cards: Sequence[Card]) -> Printed:
    """A4 pages of `PER_SHEET` cards each: name, unit, QR code of the link, the note."""
    font = _font()
    figures = []
    pages = [cards[i:i + PER_SHEET] for i in range(0, len(cards), PER_SHEET)] or [[]]
    for number, page in enumerate(pages, start=1):
        figure = _page()
        heading = title if len(pages) == 1 else f"{title} ({number}/{len(pages)})"
        figure.text(0.5, 0.965, heading, fontproperties=font, fontsize=16, ha="center",
                    va="center")
        cell_width, cell_height = 1 / SHEET_COLUMNS, 0.93 / SHEET_ROWS
        for index, card in enumerate(page):
            column, row = index % SHEET_COLUMNS, index // SHEET_COLUMNS
            left = column * cell_width
            top = 0.94 - row * cell_height
            centre = left + cell_width / 2
            figure.text(centre, top - 0.016, wrap(card.name, 22)[0], fontproperties=font,
                        fontsize=13, ha="center", va="center")
            figure.text(centre, top - 0.038, "\n".join(wrap(card.unit, 36)[:2]),
                        fontproperties=font, fontsize=8, ha="center", va="center",
                        color="#444444")
            side = cell_width * 0.6
            qr_height = side * A4[0] / A4[1]
            axes = figure.add_axes((centre - side / 2, top - 0.058 - qr_height, side, qr_height))
            _draw_qr(axes, card.link)
            figure.text(centre, top - 0.066 - qr_height, card.note, fontproperties=font,
                        fontsize=7, ha="center", va="center", color="#444444")
        # Light lines to cut along, so each official takes their own square away.
        for column in range(1, SHEET_COLUMNS):
            figure.add_artist(_rule((column / SHEET_COLUMNS,) * 2, (0.01, 0.94)))
        for row in range(1, SHEET_ROWS):
            y = 0.94 - row * cell_height
            figure.add_artist(_rule((0.02, 0.98), (y, y)))
        figures.append(figure)
    return _saved(figures, title)
