"""Charts drawn headless (matplotlib's Agg canvas, no pyplot state) into PNG files.

Same data, same bytes: no timestamps in the PNG metadata and no randomness in the layout.
Chart text may be Chinese only when a CJK font is installed for matplotlib
(:func:`cjk_font`); callers pick their labels with :func:`label`, and the document around
the chart stays in its own language either way.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")  # headless, before anything imports a GUI backend

import matplotlib.dates as mdates
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 144
_PALETTE = ["#C0392B", "#2E86C1", "#D68910", "#239B56", "#7D3C98", "#5D6D7E", "#117A65"]
_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "AR PL UMing CN",
)


@dataclass(frozen=True)
class TimelinePoint:
    at: datetime
    lane: str  # attack / detect / contain / recover / notify / ...
    label: str


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The name of an installed font that draws Chinese, or None."""
    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def label(zh: str, en: str, language: str = "zh-CN") -> str:
    """``zh`` when the chart is for a Chinese document and a CJK font can draw it."""
    return zh if language == "zh-CN" and cjk_font() is not None else en


@contextmanager
def _figure(width: float, height: float, out: Path) -> Iterator[Figure]:
    rc: dict[Any, Any] = {"font.size": 9, "axes.titlesize": 11, "svg.hashsalt": "payguard"}
    font = cjk_font()
    if font is not None:
        rc["font.sans-serif"] = [font, "DejaVu Sans"]
        rc["font.family"] = "sans-serif"
    with matplotlib.rc_context(rc), warnings.catch_warnings():
        # Without a CJK font, Chinese glyphs come out as boxes; the warning adds nothing.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from")
        figure = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(figure)
        yield figure
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})


def _num(moment: datetime) -> float:
    return float(mdates.date2num(moment))  # type: ignore[no-untyped-call]


def _no_data(axes: Axes, title: str) -> None:
    axes.set_title(title)
    axes.text(
        0.5,
        0.5,
        "no data",
        ha="center",
        va="center",
        color="#7F8C8D",
        transform=axes.transAxes,
        fontsize=12,
    )
    axes.set_xticks([])
    axes.set_yticks([])


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def timeline_chart(
    points: list[TimelinePoint],
    out: Path,
    title: str,
    *,
    lanes: list[str] | None = None,
    tz: str | None = None,
) -> Path:
    """One row per lane, a marker per point, its label beside it; x is the time of day."""
    zone = ZoneInfo(tz) if tz else None
    order = list(lanes or [])
    for point in sorted(points, key=lambda p: p.at):
        if point.lane not in order:
            order.append(point.lane)
    height = 1.6 + 0.75 * max(len(order), 1)
    with _figure(10, height, out) as figure:
        axes = figure.add_subplot(1, 1, 1)
        if not points:
            _no_data(axes, title)
            figure.tight_layout()
            return out
        stamps = [p.at.astimezone(zone) if zone else p.at for p in points]
        first, last = min(stamps), max(stamps)
        span = last - first
        pad = max(span * 0.08, timedelta(seconds=30))
        axes.set_xlim(_num(first - pad), _num(last + pad * 3))
        for index in range(len(order)):
            axes.axhline(index, color="#D5DBDB", linewidth=0.8, zorder=0)
        ordered = sorted(zip(stamps, points, strict=True), key=lambda item: item[0])
        for count, (stamp, point) in enumerate(ordered):
            row = order.index(point.lane)
            colour = _PALETTE[row % len(_PALETTE)]
            x = _num(stamp)
            axes.plot([x], [row], marker="o", markersize=6, color=colour, zorder=3)
            # Alternate above / below so neighbouring labels do not sit on each other.
            offset = 0.22 if count % 2 == 0 else -0.3
            axes.annotate(
                _short(point.label),
                (x, row),
                xytext=(x, row + offset),
                fontsize=7,
                color="#1F2933",
                ha="left",
                va="center",
            )
        axes.set_yticks(range(len(order)), order)
        axes.set_ylim(-0.7, len(order) - 0.3)
        axes.invert_yaxis()
        tzinfo = zone or first.tzinfo
        fmt = "%H:%M:%S" if span <= timedelta(hours=2) else "%m-%d %H:%M"
        formatter = mdates.DateFormatter(fmt, tz=tzinfo)  # type: ignore[no-untyped-call]
        locator = mdates.AutoDateLocator(tz=tzinfo, maxticks=8)  # type: ignore[no-untyped-call]
        axes.xaxis.set_major_formatter(formatter)
        axes.xaxis.set_major_locator(locator)
        axes.set_title(title)
        axes.grid(axis="x", color="#EAECEE", linewidth=0.6)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
        figure.tight_layout()
    return out


def line_chart(
    series: dict[str, list[tuple[str, float]]],
    out: Path,
    title: str,
    y_label: str,
    *,
    threshold: float | None = None,
) -> Path:
    """One line per series over shared category labels (periods, run numbers)."""
    categories: list[str] = []
    for points in series.values():
        for x, _ in points:
            if x not in categories:
                categories.append(x)
    with _figure(8, 4, out) as figure:
        axes = figure.add_subplot(1, 1, 1)
        if not categories:
            _no_data(axes, title)
            figure.tight_layout()
            return out
        for index, (name, points) in enumerate(series.items()):
            xs = [categories.index(x) for x, _ in points]
            axes.plot(
                xs,
                [float(v) for _, v in points],
                marker="o",
                markersize=4,
                linewidth=1.6,
                color=_PALETTE[index % len(_PALETTE)],
                label=name,
            )
        if threshold is not None:
            axes.axhline(
                threshold, color="#7F8C8D", linestyle="--", linewidth=1, label=f"{threshold:g}"
            )
        axes.set_xticks(
            range(len(categories)),
            [_short(c, 16) for c in categories],
            rotation=30 if len(categories) > 6 else 0,
            ha="right" if len(categories) > 6 else "center",
        )
        axes.set_ylabel(y_label)
        axes.set_title(title)
        axes.grid(color="#EAECEE", linewidth=0.6)
        if len(series) > 1 or threshold is not None:
            axes.legend(fontsize=8, frameon=False)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
        figure.tight_layout()
    return out


def bar_chart(
    values: list[tuple[str, float]],
    out: Path,
    title: str,
    y_label: str,
    threshold: float | None = None,
    *,
    higher_is_better: bool | None = None,
) -> Path:
    """Bars with their values; a dashed threshold line, and pass / fail colours when the
    direction of good is given."""
    with _figure(8, 4, out) as figure:
        axes = figure.add_subplot(1, 1, 1)
        if not values:
            _no_data(axes, title)
            figure.tight_layout()
            return out
        numbers = [float(v) for _, v in values]
        colours = []
        for number in numbers:
            if threshold is None or higher_is_better is None:
                colours.append(_PALETTE[1])
            else:
                good = number >= threshold if higher_is_better else number <= threshold
                colours.append("#239B56" if good else "#C0392B")
        positions = list(range(len(values)))
        axes.bar(positions, numbers, color=colours, width=0.6)
        for x, number in zip(positions, numbers, strict=True):
            axes.annotate(
                f"{number:.4g}",
                (x, number),
                ha="center",
                va="bottom",
                fontsize=7,
                xytext=(0, 2),
                textcoords="offset points",
            )
        if threshold is not None:
            axes.axhline(threshold, color="#7F8C8D", linestyle="--", linewidth=1)
        many = len(values) > 5
        axes.set_xticks(
            positions,
            [_short(name, 18) for name, _ in values],
            rotation=30 if many else 0,
            ha="right" if many else "center",
        )
        axes.set_ylabel(y_label)
        axes.set_title(title)
        axes.grid(axis="y", color="#EAECEE", linewidth=0.6)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
        figure.tight_layout()
    return out
