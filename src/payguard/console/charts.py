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


def _count_grid(peak: int, top: float, bottom: float) -> tuple[int, list[GridLine]]:
    """The top of a count scale (four nice steps at least ``peak``) and its five grid lines."""
    step = nice_step(peak / 4) if peak else 1
    plot_height = bottom - top
    grid = [
        GridLine(y=round(bottom - plot_height * tick / 4, 1), label=str(step * tick))
        for tick in range(5)
    ]
    return step * 4, grid


def _slot_labels(
    texts: list[str], left: float, slot: float, y: float, every: int
) -> list[AxisLabel]:
    """Labels under every ``every``-th slot (and the last), centred in their slot."""
    return [
        AxisLabel(x=round(left + index * slot + slot / 2, 1), y=y, text=text)
        for index, text in enumerate(texts)
        if index % every == 0 or index == len(texts) - 1
    ]


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
    scale_top, grid = _count_grid(peak, top, bottom)
    plot_height = bottom - top
    slot = (right - left) / max(len(hours), 1)
    bar_width = slot * 0.72
    bars: list[Bar] = []
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
    x_labels = _slot_labels(
        [f"{hour:%H}:00" for hour in hours], left, slot, bottom + 16, label_every
    )
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
    scale_top, grid = _count_grid(peak, top, bottom)
    plot_height = bottom - top
    slot = (right - left) / max(len(days), 1)
    bar_width = slot * 0.72
    segments: list[Segment] = []
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
    x_labels = _slot_labels([f"{day:%m-%d}" for day in days], left, slot, bottom + 16, label_every)
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


# ---------------------------------------------------------------- timelines by lane


@dataclass(frozen=True)
class TimelineLane:
    name: str  # the CSS class of its colour too: "alert", "action", ...
    y: float  # the lane's centre line
    count: int


@dataclass(frozen=True)
class TimelineDot:
    x: float
    y: float
    lane: str
    label: str  # the tooltip: "09:15:02 UTC · status: reported → confirmed"


@dataclass(frozen=True)
class TimeTick:
    x: float
    text: str


@dataclass(frozen=True)
class TimelineChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    lanes: list[TimelineLane]
    dots: list[TimelineDot]
    ticks: list[TimeTick]
    description: str


# Tick spacings in seconds, from a second to a week: the first that gives at most ~7 ticks.
_TIME_STEPS: tuple[int, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
_TIME_STEPS += (7200, 10800, 21600, 43200, 86400, 172800, 604800)


def _time_step(span_s: float, max_ticks: int = 7) -> int:
    for step in _TIME_STEPS:
        if span_s / step <= max_ticks:
            return step
    return int(span_s / max_ticks) + 1


def _tick_text(moment: datetime, step: int, span_days: bool) -> str:
    if step >= 86400:
        return f"{moment:%m-%d}"
    text = f"{moment:%H:%M:%S}" if step < 60 else f"{moment:%H:%M}"
    return (
        f"{moment:%m-%d} {text}" if span_days and moment.hour == 0 and moment.minute == 0 else text
    )


@dataclass(frozen=True)
class _TimeAxis:
    """A time axis from ``left`` to ``right`` over ``moments``, padded at both ends."""

    left: float
    right: float
    start: datetime | None  # the earliest moment
    end: datetime | None  # the latest
    axis_start: float  # epoch seconds at ``left``
    axis_span: float  # seconds from ``left`` to ``right``

    @classmethod
    def over(cls, moments: list[datetime], left: float, right: float, min_pad: float) -> _TimeAxis:
        start = min(moments) if moments else None
        end = max(moments) if moments else None
        span = (end - start).total_seconds() if start and end else 0.0
        pad = max(span * 0.04, min_pad)  # a little room left and right
        axis_start = start.timestamp() - pad if start else 0.0
        return cls(left, right, start, end, axis_start, span + 2 * pad)

    def x_of(self, moment: datetime) -> float:
        offset = moment.timestamp() - self.axis_start
        return round(self.left + (self.right - self.left) * offset / self.axis_span, 1)

    def ticks(self) -> list[TimeTick]:
        """Ticks at round moments (:func:`_time_step`), none on an empty axis."""
        ticks: list[TimeTick] = []
        if self.start is None:
            return ticks
        step = _time_step(self.axis_span)
        first = (int(self.axis_start) // step + 1) * step
        span_days = self.start.date() != (self.end or self.start).date()
        moment_s = float(first)
        while moment_s <= self.axis_start + self.axis_span:
            moment = datetime.fromtimestamp(moment_s, tz=self.start.tzinfo)
            ticks.append(TimeTick(x=self.x_of(moment), text=_tick_text(moment, step, span_days)))
            moment_s += step
        return ticks


def timeline_chart(
    points: list[tuple[datetime, str, str]],
    lanes: list[str],
    *,
    width: int = 720,
    lane_height: int = 34,
    label_width: int = 96,
    what: str = "events",
) -> TimelineChart:
    """Events on one time axis, one row per lane (top first).

    ``points`` are (at, lane, text); a lane not in ``lanes`` goes to the last lane. Dots
    closer than a few pixels in one lane are nudged up and down so each stays visible
    (an automated drill moves in milliseconds)."""
    left, right, top = float(label_width), float(width - 16), 8.0
    bottom = top + lane_height * max(len(lanes), 1)
    rows = {name: index for index, name in enumerate(lanes)}
    last_row = max(len(lanes) - 1, 0)
    # a little room left and right; one second at least
    axis = _TimeAxis.over([at for at, _, _ in points], left, right, min_pad=1.0)
    start, end, x_of = axis.start, axis.end, axis.x_of
    dots: list[TimelineDot] = []
    counts = dict.fromkeys(lanes, 0)
    last_x: dict[int, tuple[float, int]] = {}  # row -> (x of the cluster, dots in it)
    for at, lane, text in sorted(points, key=lambda point: point[0]):
        row = rows.get(lane, last_row)
        name = lanes[row] if lanes else lane
        counts[name] = counts.get(name, 0) + 1
        x = x_of(at)
        centre = top + lane_height * row + lane_height / 2
        cluster_x, in_cluster = last_x.get(row, (-100.0, 0))
        if x - cluster_x < 6:
            in_cluster += 1
            # 0, +1, -1, +2, -2 ... times 4 px, kept inside the lane
            offset = ((in_cluster + 1) // 2) * 4.0 * (1 if in_cluster % 2 else -1)
            limit = lane_height / 2 - 5
            offset = max(-limit, min(limit, offset))
        else:
            cluster_x, in_cluster, offset = x, 0, 0.0
        last_x[row] = (cluster_x, in_cluster)
        dots.append(
            TimelineDot(
                x=x,
                y=round(centre + offset, 1),
                lane=name,
                label=f"{at:%Y-%m-%d %H:%M:%S} UTC · {name}: {text}",
            )
        )
    ticks = axis.ticks()
    lane_rows = [
        TimelineLane(
            name=name, y=round(top + lane_height * index + lane_height / 2, 1), count=counts[name]
        )
        for index, name in enumerate(lanes)
    ]
    parts = ", ".join(f"{counts[name]} {name}" for name in lanes if counts[name])
    description = (
        f"{len(points)} {what}"
        + (
            f" from {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC"
            if start and end
            else ""
        )
        + (f": {parts}" if parts else "")
    )
    return TimelineChart(
        width=width,
        height=int(bottom + 24),
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        lanes=lane_rows,
        dots=dots,
        ticks=ticks,
        description=description,
    )


# ---------------------------------------------------------------- score trends


@dataclass(frozen=True)
class TrendPoint:
    x: float
    y: float
    good: bool  # drawn filled (passed) or hollow (failed)
    label: str  # the tooltip: "2026-12-01 09:15 UTC · phishing_ato: 92 (passed)"


@dataclass(frozen=True)
class TrendSeries:
    name: str
    css: str  # "s0" ... "s7": the series colour
    path: str  # the polyline's points: "x,y x,y ..."
    points: list[TrendPoint]
    last: float  # the newest value


@dataclass(frozen=True)
class TrendChart:
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    series: list[TrendSeries]
    grid: list[GridLine]
    ticks: list[TimeTick]
    description: str


def trend_chart(
    series: dict[str, list[tuple[datetime, float, bool]]],
    *,
    y_max: float = 100.0,
    width: int = 720,
    height: int = 240,
    what: str = "scores",
) -> TrendChart:
    """One line per series of (at, value, good) over a shared time axis, values 0..y_max."""
    left, right, top, bottom = 44.0, float(width - 16), 12.0, float(height - 26)
    moments = [at for values in series.values() for at, _, _ in values]
    axis = _TimeAxis.over(moments, left, right, min_pad=60.0)
    start, end, x_of = axis.start, axis.end, axis.x_of

    def y_of(value: float) -> float:
        share = min(max(value / y_max, 0.0), 1.0) if y_max else 0.0
        return round(bottom - (bottom - top) * share, 1)

    drawn: list[TrendSeries] = []
    for index, (name, values) in enumerate(series.items()):
        ordered = sorted(values, key=lambda value: value[0])
        points = [
            TrendPoint(
                x=x_of(at),
                y=y_of(value),
                good=good,
                label=f"{at:%Y-%m-%d %H:%M} UTC · {name}: {value:g}"
                + (" (passed)" if good else " (failed)"),
            )
            for at, value, good in ordered
        ]
        drawn.append(
            TrendSeries(
                name=name,
                css=f"s{index % 8}",
                path=" ".join(f"{point.x},{point.y}" for point in points),
                points=points,
                last=ordered[-1][1] if ordered else 0.0,
            )
        )
    grid = [GridLine(y=y_of(y_max * tick / 4), label=f"{y_max * tick / 4:g}") for tick in range(5)]
    ticks = axis.ticks()
    count = len(moments)
    description = f"{count} {what} of {len(series)} series" + (
        f" from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC" if start and end else ""
    )
    return TrendChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        series=drawn,
        grid=grid,
        ticks=ticks,
        description=description,
    )


# ---------------------------------------------------------------- values against thresholds


@dataclass(frozen=True)
class ThresholdItem:
    name: str
    value: float | None  # None: no data in the period
    threshold: float
    target: float
    state: str  # pass | fail | no_data: the CSS class of the bar
    value_text: str
    threshold_text: str
    target_text: str


@dataclass(frozen=True)
class ThresholdRow:
    name: str
    state: str
    y: float
    height: float
    bar_width: float
    threshold_x: float
    target_x: float
    value_text: str
    value_x: float
    text_y: float
    label: str  # the tooltip: "Payment failure rate: 0.40% (threshold 1.00%, target 0.10%)"


@dataclass(frozen=True)
class ThresholdChart:
    width: int
    height: int
    label_right: float
    plot_left: float
    plot_right: float
    top: float
    bottom: float
    rows: list[ThresholdRow]
    description: str


def threshold_chart(
    items: list[ThresholdItem],
    *,
    width: int = 720,
    row_height: int = 30,
    label_width: int = 230,
) -> ThresholdChart:
    """One horizontal bar per item on its own scale (units differ: ratios, counts, ms),
    with the threshold (the pass line) and the target marked on the same row.

    Each row's scale runs from 0 to 1.25 x the largest of value, threshold and target, so
    the markers and the bar are comparable within the row, never across rows."""
    label_right = float(label_width)
    plot_left, plot_right = label_right + 10, float(width) - 90
    top = 8.0
    rows: list[ThresholdRow] = []
    for index, item in enumerate(items):
        largest = max(abs(item.value or 0.0), abs(item.threshold), abs(item.target)) * 1.25
        largest = largest or 1.0

        def x_of(value: float, scale: float = largest) -> float:
            return round(plot_left + (plot_right - plot_left) * min(abs(value) / scale, 1.0), 1)

        y = top + index * row_height
        bar_end = x_of(item.value) if item.value is not None else plot_left
        shown = item.value_text if item.value is not None else "no data"
        rows.append(
            ThresholdRow(
                name=item.name,
                state=item.state,
                y=round(y + row_height * 0.2, 1),
                height=round(row_height * 0.6, 1),
                # a zero still shows its colour (a passing zero count is news too)
                bar_width=round(max(bar_end - plot_left, 3.0), 1)
                if item.value is not None
                else 0.0,
                threshold_x=x_of(item.threshold),
                target_x=x_of(item.target),
                value_text=shown,
                value_x=round(bar_end + 6, 1),
                text_y=round(y + row_height / 2 + 4, 1),
                label=(
                    f"{item.name}: {shown} (threshold {item.threshold_text}, "
                    f"target {item.target_text}) · {item.state.replace('_', ' ')}"
                ),
            )
        )
    bottom = top + len(items) * row_height
    states = [item.state for item in items]
    description = (
        f"{len(items)} indicators against their thresholds: {states.count('pass')} pass, "
        f"{states.count('fail')} fail, {states.count('no_data')} without data"
    )
    return ThresholdChart(
        width=width,
        height=int(bottom + 8),
        label_right=label_right,
        plot_left=plot_left,
        plot_right=plot_right,
        top=top,
        bottom=bottom,
        rows=rows,
        description=description,
    )
