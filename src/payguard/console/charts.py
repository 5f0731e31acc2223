"""Server-side chart geometry. The template draws it as inline SVG: no script, no assets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
