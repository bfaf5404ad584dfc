"""The digest's picture of the week: cases received and resolved each day, as a PNG.

matplotlib draws it without a screen (the Agg canvas, no pyplot state, safe in a thread).
Its own fonts have no Chinese, so the labels use Noto Sans CJK SC from the `mplfonts`
package, which also covers Traditional characters and Latin.

matplotlib (and numpy under it) is imported when the first chart is drawn, not with the bot:
it is about 40 MiB of a process that draws one picture a week.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.font_manager import FontProperties

_MPLFONTS = find_spec("mplfonts")
assert _MPLFONTS is not None and _MPLFONTS.origin is not None, "mplfonts is a dependency"
FONT_FILE = Path(_MPLFONTS.origin).parent / "fonts" / "NotoSansCJKsc-Regular.otf"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ChartText:
    """The chart's words, already in the reader's language."""

    title: str
    received: str
    resolved: str


@lru_cache(maxsize=1)
def _font() -> FontProperties:
    from matplotlib.font_manager import FontProperties

    return FontProperties(fname=FONT_FILE)


def week_chart(days: list[tuple[date, int, int]], words: ChartText) -> bytes:
    """Bars per day (received, resolved); returns the PNG's bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    font = _font()
    figure = Figure(figsize=(8, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(days)))
    width = 0.38
    received = [count for _, count, _ in days]
    resolved = [count for _, _, count in days]
    axes.bar([p - width / 2 for p in positions], received, width, label=words.received,
             color="#3b7dd8")
    axes.bar([p + width / 2 for p in positions], resolved, width, label=words.resolved,
             color="#3aa76d")
    axes.set_xticks(positions, [day.strftime("%m-%d") for day, _, _ in days])
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_ylim(bottom=0, top=max([1, *received, *resolved]) * 1.2)
    axes.set_title(words.title, fontproperties=font, fontsize=14)
    axes.legend(prop=font, loc="upper left", frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
