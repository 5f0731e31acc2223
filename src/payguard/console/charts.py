"""Server-side chart geometry. The template draws it as inline SVG: no script, no assets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str  # the tooltip: "14:00–15:00 UTC: 12 payments"


@dataclass(frozen=True)
class AxisLabel:
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class GridLine:
    y: float
    label: str


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    bars: list[Bar]
    x_labels: list[AxisLabel]
    grid: list[GridLine]
    total: int
    peak: int
    description: str


def nice_step(raw: float) -> int:
    """The smallest of 1, 2, 5 × 10^k that is at least ``raw`` (and at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= raw:
                return step * factor
        step *= 10


def hourly_bar_chart(
    hours: list[datetime],
    counts: dict[datetime, int],
    *,
    width: int = 720,
    height: int = 220,
    label_every: int = 3,
) -> BarChart:
    """Bars of ``counts`` for each hour in ``hours`` (oldest first)."""
    left, right, top, bottom = 44.0, float(width - 8), 12.0, float(height - 26)
    values = [counts.get(hour, 0) for hour in hours]
    peak = max(values, default=0)
    step = nice_step(peak / 4) if peak else 1
    scale_top = step * 4
    plot_height = bottom - top
    slot = (right - left) / max(len(hours), 1)
    bar_width = slot * 0.72
    bars: list[Bar] = []
    x_labels: list[AxisLabel] = []
    for index, (hour, value) in enumerate(zip(hours, values, strict=True)):
        bar_height = plot_height * value / scale_top
        x = left + index * slot + (slot - bar_width) / 2
        noun = "payment" if value == 1 else "payments"
        bars.append(
            Bar(
                x=round(x, 1),
                y=round(bottom - bar_height, 1),
                width=round(bar_width, 1),
                height=round(bar_height, 1),
                count=value,
                label=f"{hour:%H}:00–{(hour.hour + 1) % 24:02d}:00 UTC: {value} {noun}",
            )
        )
        if index % label_every == 0 or index == len(hours) - 1:
            x_labels.append(
                AxisLabel(
                    x=round(left + index * slot + slot / 2, 1), y=bottom + 16, text=f"{hour:%H}:00"
                )
            )
    grid = [
        GridLine(y=round(bottom - plot_height * tick / 4, 1), label=str(step * tick))
        for tick in range(5)
    ]
    total = sum(values)
    first = hours[0] if hours else None
    description = (
        f"{total} payments in the last {len(hours)} hours"
        + (f" since {first:%Y-%m-%d %H:00} UTC" if first else "")
        + f"; busiest hour {peak}"
    )
    return BarChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        bars=bars,
        x_labels=x_labels,
        grid=grid,
        total=total,
        peak=peak,
        description=description,
    )


# ---------------------------------------------------------------- stacked daily bars


@dataclass(frozen=True)
class Segment:
    x: float
    y: float
    width: float
    height: float
    series: str  # the CSS class of its colour: "allow", "block", ...
    count: int
    label: str  # the tooltip: "2025-01-31: 12 block"


@dataclass(frozen=True)
class StackedBarChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    segments: list[Segment]
    x_labels: list[AxisLabel]
    grid: list[GridLine]
    series: list[str]
    series_totals: dict[str, int]
    total: int
    peak: int
    description: str


def daily_stacked_chart(
    days: list[date],
    counts: dict[tuple[date, str], int],
    series: list[str],
    *,
    noun: str = "decisions",
    width: int = 720,
    height: int = 220,
    label_every: int = 2,
) -> StackedBarChart:
    """One bar per day of ``days`` (oldest first), stacked by ``series`` (bottom first)."""
    left, right, top, bottom = 44.0, float(width - 8), 12.0, float(height - 26)
    day_totals = [sum(counts.get((day, name), 0) for name in series) for day in days]
    peak = max(day_totals, default=0)
    step = nice_step(peak / 4) if peak else 1
    scale_top = step * 4
    plot_height = bottom - top
    slot = (right - left) / max(len(days), 1)
    bar_width = slot * 0.72
    segments: list[Segment] = []
    x_labels: list[AxisLabel] = []
    for index, day in enumerate(days):
        x = round(left + index * slot + (slot - bar_width) / 2, 1)
        base = bottom
        for name in series:
            value = counts.get((day, name), 0)
            if value:
                segment_height = plot_height * value / scale_top
                base -= segment_height
                segments.append(
                    Segment(
                        x=x,
                        y=round(base, 1),
                        width=round(bar_width, 1),
                        height=round(segment_height, 1),
                        series=name,
                        count=value,
                        label=f"{day:%Y-%m-%d}: {value} {name}",
                    )
                )
        if index % label_every == 0 or index == len(days) - 1:
            x_labels.append(
                AxisLabel(
                    x=round(left + index * slot + slot / 2, 1), y=bottom + 16, text=f"{day:%m-%d}"
                )
            )
    grid = [
        GridLine(y=round(bottom - plot_height * tick / 4, 1), label=str(step * tick))
        for tick in range(5)
    ]
    series_totals = {name: sum(counts.get((day, name), 0) for day in days) for name in series}
    total = sum(day_totals)
    parts = ", ".join(f"{series_totals[name]} {name}" for name in series)
    description = (
        f"{total} {noun} in the {len(days)} days"
        + (f" from {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}" if days else "")
        + (f": {parts}" if series else "")
    )
    return StackedBarChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        segments=segments,
        x_labels=x_labels,
        grid=grid,
        series=list(series),
        series_totals=series_totals,
        total=total,
        peak=peak,
        description=description,
    )


# ---------------------------------------------------------------- signed horizontal bars


@dataclass(frozen=True)
class SignedBar:
    x: float
    y: float
    width: float
    height: float
    positive: bool
    name: str  # drawn left of the plot: "amount = 77700"
    value_text: str  # drawn at the bar's end: "+0.812"
    value_x: float
    value_anchor: str  # "start" right of a positive bar, "end" left of a negative one
    text_y: float


@dataclass(frozen=True)
class SignedBarChart:
    width: int
    height: int
    label_right: float
    zero_x: float
    top: float
    bottom: float
    bars: list[SignedBar]
    description: str


def signed_bar_chart(
    items: list[tuple[str, float]],
    *,
    width: int = 720,
    row_height: int = 28,
    label_width: int = 250,
    what: str = "values",
    positive_means: str = "positive",
    negative_means: str = "negative",
) -> SignedBarChart:
    """Horizontal bars from a zero line: positive to the right, negative to the left.

    ``items`` are (name, value) pairs in the order to draw, top first."""
    label_right = float(label_width)
    margin = 56.0  # room for the value text beyond the longest bar
    plot_left, plot_right = label_right + 8 + margin, float(width) - margin
    zero_x = round((plot_left + plot_right) / 2, 1)
    half = (plot_right - plot_left) / 2
    largest = max((abs(value) for _, value in items), default=0.0) or 1.0
    top = 8.0
    bars: list[SignedBar] = []
    for index, (name, value) in enumerate(items):
        length = half * abs(value) / largest
        y = top + index * row_height
        positive = value >= 0
        end = zero_x + length if positive else zero_x - length
        bars.append(
            SignedBar(
                x=round(zero_x if positive else end, 1),
                y=round(y + row_height * 0.18, 1),
                width=round(length, 1),
                height=round(row_height * 0.64, 1),
                positive=positive,
                name=name,
                value_text=f"{value:+.3f}",
                value_x=round(end + 5 if positive else end - 5, 1),
                value_anchor="start" if positive else "end",
                text_y=round(y + row_height / 2 + 4, 1),
            )
        )
    bottom = top + len(items) * row_height
    toward = sum(1 for _, value in items if value > 0)
    description = (
        f"{len(items)} {what}: {toward} {positive_means}, {len(items) - toward} {negative_means}"
    )
    return SignedBarChart(
        width=width,
        height=int(bottom + 8),
        label_right=label_right,
        zero_x=zero_x,
        top=top,
        bottom=bottom,
        bars=bars,
        description=description,
    )
