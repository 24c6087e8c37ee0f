"""Levey-Jennings charts drawn by matplotlib (server-side, no pyplot state): SVG for pages, PNG
for the PDF report. Pure: plain data in, bytes out.

The chart has the target mean, the +-1, 2 and 3 SD lines (Levey S, Jennings ER. Am J Clin
Pathol 1950;20:1059; with the limits of Westgard's multirule), accepted points joined in time
order, rejected points as red crosses, and the rule that fired written beside each flagged point.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import matplotlib
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.figure import Figure

# A `Figure` made directly (never pyplot) draws with the Agg or SVG canvas that `savefig` picks
# for the format, holds no global state and needs no display.
OSLO = ZoneInfo("Europe/Oslo")  # dates on the axis as the lab reads them


@dataclass(frozen=True, slots=True, kw_only=True)
class ChartPoint:
    at: datetime
    value: float
    rejected: bool
    label: str = ""  # the rule(s) that fired on this point, shown beside it


@dataclass(frozen=True, slots=True, kw_only=True)
class LeveyJennings:
    title: str
    unit: str
    mean: float | None
    sd: float | None
    points: tuple[ChartPoint, ...]


def _num(at: datetime) -> float:
    return float(mdates.date2num(at))  # type: ignore[no-untyped-call]


def _x(points: list[ChartPoint]) -> list[float]:
    return [_num(p.at) for p in points]


# The target lines from -3 to +3 SD: (multiple of the SD, line style, colour).
_SD_LINES = tuple(
    (k, style, colour)
    for k, style, colour in (
        (-3, "-", "#c00000"),
        (-2, "--", "#d08000"),
        (-1, ":", "#999999"),
        (0, "-", "#2060a0"),
        (1, ":", "#999999"),
        (2, "--", "#d08000"),
        (3, "-", "#c00000"),
    )
)


def _sd_name(k: int) -> str:
    return "x̄" if k == 0 else f"{k:+d}s"


def _figure(chart: LeveyJennings, *, width: float, height: float) -> Figure:
    """The drawing. What it costs goes mostly to the axes' ticks and texts, so it keeps them
    few: the target lines are one collection, their names are the y-axis tick labels (no
    separate annotations), the title sits at a fixed place (no layout pass), margins are fixed
    (a layout engine doubles the drawing time)."""
    figure = Figure(figsize=(width, height), dpi=100)
    figure.subplots_adjust(left=1.0 / width, right=1 - 0.15 / width, top=0.88, bottom=0.12)
    axes = figure.add_subplot()
    axes.set_title(chart.title, fontsize=10, loc="left", y=1.0, pad=4)
    axes.set_ylabel(chart.unit, fontsize=9)
    axes.tick_params(labelsize=8)
    if chart.mean is not None and chart.sd:
        levels = [chart.mean + k * chart.sd for k, _, _ in _SD_LINES]
        axes.hlines(
            levels,
            0,
            1,
            transform=axes.get_yaxis_transform(),
            colors=[colour for _, _, colour in _SD_LINES],
            # one style per line (a LineCollection takes a list; the stubs say one style)
            linestyles=[style for _, style, _ in _SD_LINES],  # type: ignore[arg-type]
            linewidths=[1.2 if k == 0 else 0.9 for k, _, _ in _SD_LINES],
        )
        axes.yaxis.set_major_locator(ticker.FixedLocator(levels))
        axes.yaxis.set_major_formatter(
            ticker.FixedFormatter(
                [
                    f"{_sd_name(k)}  {level:.4g}"
                    for (k, _, _), level in zip(_SD_LINES, levels, strict=True)
                ]
            )
        )
        axes.set_ylim(chart.mean - 4 * chart.sd, chart.mean + 4 * chart.sd)
    accepted = [p for p in chart.points if not p.rejected]
    rejected = [p for p in chart.points if p.rejected]
    if accepted:
        axes.plot(
            _x(accepted),
            [p.value for p in accepted],
            marker="o",
            markersize=3.5,
            linewidth=0.8,
            color="#2060a0",
            label="accepted",
        )
    if rejected:
        axes.plot(
            _x(rejected),
            [p.value for p in rejected],
            linestyle="none",
            marker="x",
            markersize=7,
            markeredgewidth=2,
            color="#c00000",
            label="rejected",
        )
    for point in chart.points:
        if point.label:
            axes.annotate(
                point.label,
                (_num(point.at), point.value),
                xytext=(4, 6),
                textcoords="offset points",
                fontsize=7,
                color="#c00000" if point.rejected else "#d08000",
            )
    if chart.mean is not None and chart.sd and chart.points:  # keep far outliers on the chart
        low = min(p.value for p in chart.points)
        high = max(p.value for p in chart.points)
        axes.set_ylim(
            min(low - 0.5 * chart.sd, chart.mean - 4 * chart.sd),
            max(high + 1.0 * chart.sd, chart.mean + 4 * chart.sd),
        )
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%d.%m", tz=OSLO))  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=6, tz=OSLO))  # type: ignore[no-untyped-call]
    if not chart.points:
        axes.text(0.5, 0.5, "no control results", transform=axes.transAxes, ha="center")
    elif rejected:
        axes.legend(fontsize=7, loc="upper left")
    return figure


@lru_cache(maxsize=512)
def levey_jennings_svg(chart: LeveyJennings, *, width: float = 9.0, height: float = 3.2) -> str:
    """The chart as an SVG document whose text stays text (readable, searchable). The same
    chart data draws the same chart, so a drawn chart is kept until a new run changes it."""
    figure = _figure(chart, width=width, height=height)
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "lj"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # no XML prolog: it goes inline in a page


def levey_jennings_image(chart: LeveyJennings) -> str:
    """The SVG chart as a `data:` URL for an `<img>` on a page.

    matplotlib writes every colour, line and font as a `style` attribute. Put inline into a page,
    those attributes are refused by the page's Content-Security-Policy (`style-src 'self'`, no
    inline styles), and Chromium then draws the chart as a black box with bare markers. An SVG
    shown as an image is a document of its own, drawn with its styles and no scripts, and the
    policy allows `data:` images; the page names the chart in the image's `alt`.
    """
    encoded = base64.b64encode(levey_jennings_svg(chart).encode("utf-8")).decode("ascii")
    return f"data:image/svg+xml;base64,{encoded}"


def levey_jennings_png(
    chart: LeveyJennings, *, width: float = 7.0, height: float = 2.6, dpi: int = 150
) -> bytes:
    figure = _figure(chart, width=width, height=height)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()
