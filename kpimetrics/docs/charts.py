"""The geometry of a KPI's SVG chart: values, the target line, the tolerance band, status points.

Python computes coordinates; `templates/chart.svg.j2` draws them (and escapes every text).
Each period is a band of equal width; the target is drawn as a step over each band, because
a target holds for the whole period. A forecast (kpi_forecast) adds the bands up to its horizon's period and
a dotted line from the last complete value to the forecast there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..calendar import STEP, py_add_periods
from ..display import format_value
from ..status import course, look
from .data import Point, Projection, Series

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 14, 34
MAX_X_LABELS = 6


@dataclass(frozen=True)
class Frame:
    """A chart's drawing box. The SVG scales to its box's width, and its text with it: a phone gets a narrower
    box (the `narrow` variant) so that its text, larger in the box's units, stays about 12 px on the screen."""

    variant: str
    width: int
    height: int
    font: int  # px in the SVG's units; style.css.j2 sets the same size per variant
    max_x_labels: int

    def left(self, labels: list[str]) -> float:
        """Room for the longest y-axis label (digits are about 0.6 em wide) and the gap before the plot."""
        widest = max((len(t) for t in labels), default=0)
        return max(LEFT if self.variant == "wide" else 40, widest * self.font * 0.6 + 14)


WIDE = Frame("wide", WIDTH, HEIGHT, 11, MAX_X_LABELS)
NARROW = Frame("narrow", 340, 230, 13, 3)  # at 390 px CSS width the box is about 310 px: 13 * 310/340 = 11.9 px
FRAMES = (WIDE, NARROW)


@dataclass(frozen=True)
class ChartPoint:
    x: float
    y: float
    r: float
    point: Point
    has_value: bool
    title: str

    @property
    def status(self) -> str:
        return self.point.status

    @property
    def marker(self) -> str:
        """Its shape: dot, triangle, cross or hollow (status.StatusLook.marker)."""
        return look(self.point.status).marker


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class ChangeMark:
    """A definition change (data.DefinitionChange), drawn as a vertical rule at the start of its period."""

    x: float
    period_start: object
    definition_hash: str
    title: str


@dataclass(frozen=True)
class Chart:
    grain: str
    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    points: list[ChartPoint]
    value_path: str
    target_path: str
    band_path: str
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    summary: str
    projection_path: str = ""  # dotted: from the last complete value to the forecast at the horizon
    projection_point: ChartPoint | None = None
    projection: Projection | None = None
    changes: list[ChangeMark] = ()
    variant: str = "wide"


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About `count` round tick values covering low..high."""
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(low / step) * step
    n = math.ceil(round((high - first) / step, 9))
    return [round(first + i * step, 12) for i in range(n + 1)]


def period_label(p: Point, grain: str) -> str:
    return date_label(p.period_start, grain)


def date_label(start, grain: str) -> str:
    """A period of `grain` starting on `start`, as the chart names it."""
    if grain == "month":
        return start.strftime("%b %Y")
    if grain == "year":
        return str(start.year)
    return start.isoformat()


def periods_between(start, end, grain: str) -> int:
    """Periods of `grain` from one period boundary to another (negative when `end` comes first)."""
    unit, k = STEP[grain]
    if unit == "DAY":
        return (end - start).days // k
    return ((end.year - start.year) * 12 + end.month - start.month) // k


def _runs(indices: list[int]) -> list[list[int]]:
    """Consecutive runs of indices: a line breaks where a period has no value or no target."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _f(v: float) -> str:
    return f"{v:.1f}"


def build_chart(series: Series, unit: str | None, label: str, frame: Frame = WIDE, currency: str | None = None
                ) -> Chart:
    """The chart of a series; its tooltips carry the currency, its axis does not (the caption names it)."""
    pts = series.points
    proj = series.projection
    last = next((i for i in range(len(pts) - 1, -1, -1) if pts[i].is_complete and pts[i].value is not None), None)
    # the horizon's period: its band after the series' last one (or among them, where the data reaches it)
    ahead = len(pts) - 1 + periods_between(pts[-1].period_end, proj.horizon_end, series.grain) if proj and pts else None
    if ahead is None or last is None or ahead <= last:
        proj = None
    n = max(len(pts), ahead + 1 if proj else 1)
    # the axis spans the values there are: a period with no value stretches nothing (to 0 or elsewhere)
    known = [v for p in pts for v in (p.value, p.target, p.threshold) if v is not None]
    if proj:
        known += [v for v in (proj.forecast, proj.target) if v is not None]
    ticks = nice_ticks(min(known, default=0.0), max(known, default=1.0))
    low, high = ticks[0], ticks[-1]
    tick_labels = [format_value(t, unit) for t in ticks]
    left, right, top, bottom = frame.left(tick_labels), frame.width - RIGHT, TOP, frame.height - BOTTOM
    band = (right - left) / n

    def x(i: int) -> float:
        return left + (i + 0.5) * band

    def y(v: float) -> float:
        return bottom - (v - low) / (high - low) * (bottom - top)

    r = max(1.8, min(5.0, band / 3))
    # a period with no value has no mark at all (its line breaks there): only its tooltip area, at the axis
    points = [
        ChartPoint(x(i), y(p.value) if p.value is not None else bottom, r, p, p.value is not None,
                   _title(p, series.grain, unit, currency))
        for i, p in enumerate(pts)
    ]
    valued = _runs([i for i, p in enumerate(pts) if p.value is not None])
    value_path = " ".join(
        "M" + " L".join(f"{_f(x(i))} {_f(y(pts[i].value))}" for i in run) for run in valued if len(run) > 1)
    targeted = _runs([i for i, p in enumerate(pts) if p.target is not None])
    target_path = " ".join(
        f"M{_f(x(run[0]) - band / 2)} {_f(y(pts[run[0]].target))}"
        + "".join(f" V{_f(y(pts[i].target))} H{_f(x(i) + band / 2)}" for i in run)
        for run in targeted)
    band_path = " ".join(
        f"M{_f(x(i) - band / 2)} {_f(y(p.target))} H{_f(x(i) + band / 2)} V{_f(y(p.threshold))} "
        f"H{_f(x(i) - band / 2)} Z"
        for i, p in enumerate(pts) if p.target is not None and p.threshold is not None and p.threshold != p.target)
    every = max(1, math.ceil(len(pts) / frame.max_x_labels))
    x_ticks = [Tick(x(i), period_label(p, series.grain)) for i, p in enumerate(pts)
               if (len(pts) - 1 - i) % every == 0]
    y_ticks = [Tick(y(t), text) for t, text in zip(ticks, tick_labels)]
    index = {p.period_start: i for i, p in enumerate(pts)}
    changes = [ChangeMark(x(index[c.period_start]) - band / 2, c.period_start, c.definition_hash,
                          _change_title(c, series.grain))
               for c in series.changes if c.period_start in index]
    summary = (f"{label}, {series.grain}ly values of {len(pts)} periods"
               + (f" from {pts[0].period_start} to {pts[-1].period_start}" if pts else "")
               + "".join(f"; {m.title}" for m in changes))
    projection_path, projection_point = "", None
    if proj:
        title = _projection_title(proj, series.grain, unit, currency)
        summary += f"; {title}"
        projection_path = f"M{_f(x(last))} {_f(y(pts[last].value))} L{_f(x(ahead))} {_f(y(proj.forecast))}"
        if proj.target is not None:  # the target there, as the target line draws a period's
            target_path += f" M{_f(x(ahead) - band / 2)} {_f(y(proj.target))} H{_f(x(ahead) + band / 2)}"
        horizon = Point(py_add_periods(proj.horizon_end, -1, series.grain), proj.horizon_end, proj.forecast, proj.target,
                        None, proj.status, False)
        projection_point = ChartPoint(x(ahead), y(proj.forecast), r, horizon, True, title)
    return Chart(series.grain, frame.width, frame.height, left, right, top, bottom, points, value_path, target_path,
                 band_path, y_ticks, x_ticks, summary, projection_path, projection_point, proj, changes, frame.variant)


def _change_title(c, grain: str) -> str:
    when = f" on {c.seen_at:%Y-%m-%d}" if c.seen_at else ""
    run = f" (run {c.run_id})" if c.run_id is not None else ""
    return (f"definition changed{when}{run}, shown at {date_label(c.period_start, grain)}: a change in the formula, "
            f"not in the business; every period is recomputed with the new definition")


def _projection_title(proj: Projection, grain: str, unit: str | None, currency: str | None = None) -> str:
    start = py_add_periods(proj.horizon_end, -1, grain)
    target = f" against target {format_value(proj.target, unit, currency)}" if proj.target is not None else ""
    said = course(proj.status) or look(proj.status).text
    return (f"forecast for {date_label(start, grain)}{' (the deadline)' if proj.horizon == 'deadline' else ''}: "
            f"{format_value(proj.forecast, unit, currency)}{target} — {said}")


def _title(p: Point, grain: str, unit: str | None, currency: str | None = None) -> str:
    target = f" against target {format_value(p.target, unit, currency)}" if p.target is not None else ""
    partial = " (period not complete)" if not p.is_complete else ""
    return f"{period_label(p, grain)}: {format_value(p.value, unit, currency)}{target} — {look(p.status).text}{partial}"


def data_number(v: float | None) -> str:
    """A number for a data-* attribute: full precision, '' for none."""
    return "" if v is None else repr(float(v))


def spark_path(series: Series | None, width: int = 96, height: int = 24, last: int = 12) -> tuple[str, list]:
    """A small line of the last `last` complete values for the index, and its last point."""
    if series is None:
        return "", []
    values = [p.value for p in series.points if p.is_complete][-last:]
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return "", []
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)
    coords = [(i * step, height - 2 - (v - low) / span * (height - 4)) for i, v in enumerate(values) if v is not None]
    path = "M" + " L".join(f"{_f(a)} {_f(b)}" for a, b in coords)
    return path, list(coords[-1])
