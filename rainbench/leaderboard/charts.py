"""The page's two SVG charts, drawn here so that the page needs no script: a bar chart of
the primary metric with its intervals (per model, or per rain type), and quality against
seconds per megapixel. Each takes plain values and returns one <svg> element.
"""

import math
from dataclasses import dataclass
from html import escape
from typing import NamedTuple

from rainbench.leaderboard.bootstrap import Estimate
from rainbench.leaderboard.cells import format_value

CHART_WIDTH, CHART_HEIGHT = 580, 340
CHAR_WIDTH = 6.6  # average width of a 12 px sans-serif character, to place labels


@dataclass(frozen=True)
class Series:
    """One model's bars: its name, colour and an estimate per group (None where it has none)."""

    name: str
    color: str
    values: tuple[Estimate | None, ...]  # one per group


class Point(NamedTuple):
    """One model in the scatter chart."""

    name: str
    color: str
    speed: float  # seconds per megapixel, > 0
    found: Estimate


def _low(found: Estimate) -> float:
    """The interval's low end, or the mean where there is no interval (one sequence)."""
    return found.low if math.isfinite(found.low) else found.mean


def _high(found: Estimate) -> float:
    return found.high if math.isfinite(found.high) else found.mean


def bar_chart(groups: tuple[str, ...], series: list[Series], label: str, decimals: int) -> str:
    """Bars of each series per group with their intervals; `label` names the value axis."""
    values = [v for s in series for v in s.values if v is not None and v.present]
    if not values:  # an axis around 0 would read as scores near 0
        return _nothing(
            CHART_HEIGHT, f"bar chart of {label}", "no model has a finite value to draw"
        )
    left, right = 64, CHART_WIDTH - 12
    single = len(groups) == 1  # one bar per model
    # Models are named under their bars where every name fits, else in a legend.
    named = single and all(
        len(s.name) * CHAR_WIDTH <= (right - left) / len(series) - 8 for s in series
    )
    legend, legend_height = ([], 0) if named else _legend(series)
    height = CHART_HEIGHT + legend_height
    top, bottom = 14 + legend_height, height - (30 if single else 44)
    lows = [min(_low(v), v.mean) for v in values]
    highs = [max(_high(v), v.mean) for v in values]
    ticks = _ticks(min([0.0, *lows]), max([0.0, *highs]))
    lo, hi = ticks[0], ticks[-1]

    def y(value: float) -> float:
        return bottom - (value - lo) / (hi - lo) * (bottom - top)

    parts = [_svg_open(height, f"bar chart of {label}"), *legend]
    parts += _y_axis(ticks, y, left, right, top, bottom, label)
    bars = []  # (left edge, width, series, estimate, group)
    if single:
        slot = (right - left) / len(series)
        width = min(64.0, slot * 0.6)
        for s, one in enumerate(series):
            x = left + s * slot + (slot - width) / 2
            bars.append((x, width, one, one.values[0], groups[0]))
            if named:
                parts.append(
                    f'<text x="{x + width / 2:.1f}" y="{bottom + 17:.1f}" font-size="12" '
                    f'text-anchor="middle" fill="#1f2328">{escape(one.name)}</text>'
                )
    else:
        slot = (right - left) / len(groups)
        width = min(44.0, slot * 0.8 / len(series))
        for g, group in enumerate(groups):
            start = left + g * slot + (slot - width * len(series)) / 2
            bars += [
                (start + s * width, width, one, one.values[g], group)
                for s, one in enumerate(series)
            ]
            n = max((s.values[g].n for s in series if s.values[g] is not None), default=0)
            center = left + (g + 0.5) * slot
            parts.append(
                f'<text x="{center:.1f}" y="{bottom + 17:.1f}" font-size="12" '
                f'text-anchor="middle" fill="#1f2328">{escape(group)}</text>'
                f'<text x="{center:.1f}" y="{bottom + 32:.1f}" font-size="11" '
                f'text-anchor="middle" fill="#59636e">n = {n}</text>'
            )
    base = y(0 if lo <= 0 <= hi else lo)
    for x, width, one, found, group in bars:
        if found is None or not found.present:
            continue
        top_y = y(found.mean)
        tip = (
            f"{one.name}, {group}: {format_value(found.mean, decimals)} "
            f"[{format_value(found.low, decimals)}, {format_value(found.high, decimals)}], "
            f"n = {found.n}"
        )
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{min(base, top_y):.1f}" width="{width - 2:.1f}" '
            f'height="{abs(top_y - base):.1f}" fill="{one.color}"><title>{escape(tip)}</title>'
            "</rect>"
        )
        mid, low, high = x + width / 2, y(_low(found)), y(_high(found))
        cap = min(5.0, width / 4)
        parts.append(
            f'<path d="M{mid:.1f} {low:.1f}V{high:.1f}M{mid - cap:.1f} {low:.1f}'
            f'H{mid + cap:.1f}M{mid - cap:.1f} {high:.1f}H{mid + cap:.1f}" '
            'stroke="#24292f" stroke-width="1.2" fill="none"/>'
        )
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#8c959f"/>')
    parts.append("</svg>")
    return "".join(parts)


def _legend(series: list[Series]) -> tuple[list[str], int]:
    """Swatches with names in rows across the top; returns the parts and their height."""
    parts, x, line = [], 64.0, 0
    for one in series:
        width = 18 + len(one.name) * CHAR_WIDTH + 14
        if x + width > CHART_WIDTH - 12 and x > 64:
            x, line = 64.0, line + 1
        y = 12 + line * 18
        parts.append(
            f'<rect x="{x:.1f}" y="{y}" width="11" height="11" rx="2" fill="{one.color}"/>'
            f'<text x="{x + 16:.1f}" y="{y + 10}" font-size="12" fill="#1f2328">'
            f"{escape(one.name)}</text>"
        )
        x += width
    return parts, 18 * (line + 1) + 8


def scatter_chart(points: list[Point], label: str, decimals: int) -> str:
    """Each point's mean (with its interval) against its speed, on a log axis where the
    speeds span ten times or more."""
    height = CHART_HEIGHT
    left, right, top, bottom = 64, CHART_WIDTH - 20, 16, height - 46
    if not points:
        return _nothing(
            height,
            f"{label} against seconds per megapixel",
            "no model has both a score and a timing",
        )
    parts = [_svg_open(height, f"{label} against seconds per megapixel")]
    speeds = [p.speed for p in points]
    log = min(speeds) > 0 and max(speeds) / min(speeds) >= 10
    x_ticks = _log_ticks(min(speeds), max(speeds)) if log else _ticks(0.0, max(speeds) * 1.05)
    x_lo, x_hi = x_ticks[0], x_ticks[-1]
    if log and x_hi == x_lo:
        x_hi = x_lo * 10

    def x(value: float) -> float:
        if log:
            share = (math.log10(value) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo))
        else:
            share = (value - x_lo) / (x_hi - x_lo)
        return left + 10 + share * (right - left - 20)

    lows = [_low(p.found) for p in points]
    highs = [_high(p.found) for p in points]
    pad = (max(highs) - min(lows)) * 0.08 or abs(max(highs)) * 0.05 or 1.0
    y_ticks = _ticks(min(lows) - pad, max(highs) + pad)
    y_lo, y_hi = y_ticks[0], y_ticks[-1]

    def y(value: float) -> float:
        return bottom - (value - y_lo) / (y_hi - y_lo) * (bottom - top)

    parts += _y_axis(y_ticks, y, left, right, top, bottom, label)
    for tick in x_ticks:
        px = x(tick)
        parts.append(
            f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{bottom}" stroke="#eef0f3"/>'
            f'<text x="{px:.1f}" y="{bottom + 16}" font-size="11" text-anchor="middle" '
            f'fill="#59636e">{_tick_label(tick)}</text>'
        )
    axis = "seconds per megapixel" + (" (log scale)" if log else "")
    parts.append(
        f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#8c959f"/>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#8c959f"/>'
        f'<text x="{(left + right) / 2:.1f}" y="{height - 8}" font-size="12" '
        f'text-anchor="middle" fill="#1f2328">{escape(axis)}</text>'
    )
    located = [
        (name, color, x(speed), y(found.mean), speed, found) for name, color, speed, found in points
    ]
    # Points first, so that no label covers one.
    placed = [(px - 7, py - 7, px + 7, py + 7) for _, _, px, py, _, _ in located]
    labels = []
    for name, color, px, py, speed, found in located:
        tip = (
            f"{name}: {format_value(found.mean, decimals)} "
            f"[{format_value(found.low, decimals)}, {format_value(found.high, decimals)}], "
            f"{speed:.3g} s/MP"
        )
        parts.append(
            f'<path d="M{px:.1f} {y(_low(found)):.1f}V{y(_high(found)):.1f}" stroke="{color}" '
            'stroke-width="2" opacity="0.6"/>'
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="6" fill="{color}" stroke="#fff" '
            f'stroke-width="1.5"><title>{escape(tip)}</title></circle>'
        )
        labels.append(_point_label(name, px, py, (left, top, right, bottom), placed))
    parts += labels
    parts.append("</svg>")
    return "".join(parts)


def _point_label(name: str, px: float, py: float, frame: tuple, placed: list) -> str:
    """The name beside its point: right of it if it fits, else left, else a line lower or
    higher, the first place that overlaps no point or label already placed."""
    left, top, right, bottom = frame
    width = len(name) * CHAR_WIDTH
    candidates = [
        (x0, py + 4 + dy)
        for dy in (0, 14, -14, 28, -28, 42, -42)
        for x0 in (px + 10, px - 10 - width)
        if left + 2 <= x0 and x0 + width <= right and top + 11 <= py + 4 + dy <= bottom
    ]
    x0, y0 = next(
        (
            (cx, cy)
            for cx, cy in candidates
            if not any(_overlap((cx, cy - 11, cx + width, cy + 2), box) for box in placed)
        ),
        candidates[0] if candidates else (max(left + 2, px - width / 2), py - 10),
    )
    placed.append((x0, y0 - 11, x0 + width, y0 + 2))
    leader = ""
    if abs(y0 - (py + 4)) > 1:  # moved off its point's line: draw a line back to the point
        edge = x0 if x0 > px else x0 + width
        leader = (
            f'<line x1="{px:.1f}" y1="{py:.1f}" x2="{edge:.1f}" y2="{y0 - 4:.1f}" '
            'stroke="#8c959f" stroke-width="0.8"/>'
        )
    return leader + (
        f'<text x="{x0:.1f}" y="{y0:.1f}" font-size="12" fill="#1f2328" '
        f'paint-order="stroke" stroke="#fff" stroke-width="3">{escape(name)}</text>'
    )


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _nothing(height: int, label: str, why: str) -> str:
    """A chart with nothing to draw: `why` in its middle."""
    return (
        f'{_svg_open(height, label)}<text x="{CHART_WIDTH / 2}" y="{height / 2}" '
        f'text-anchor="middle" font-size="13" fill="#59636e">{escape(why)}</text></svg>'
    )


def _svg_open(height: int, label: str) -> str:
    return f'<svg viewBox="0 0 {CHART_WIDTH} {height}" role="img" aria-label="{escape(label)}">'


def _y_axis(
    ticks: list[float], y, left: float, right: float, top: float, bottom: float, label: str
) -> list[str]:
    parts = []
    for tick in ticks:
        py = y(tick)
        stroke = "#8c959f" if tick == 0 else "#e6e9ed"
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{py:.1f}" y2="{py:.1f}" stroke="{stroke}"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{py + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#59636e">{_tick_label(tick)}</text>'
        )
    middle = (top + bottom) / 2
    parts.append(
        f'<text transform="translate(16 {middle:.1f}) rotate(-90)" font-size="12" '
        f'text-anchor="middle" fill="#1f2328">{escape(label)}</text>'
    )
    return parts


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    return [start + i * step for i in range(round((stop - start) / step) + 1)]


def _log_ticks(lo: float, hi: float) -> list[float]:
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    steps = (1, 2, 5) if len(decades) <= 3 else (1,)
    ticks = [m * 10.0**d for d in decades for m in steps]
    below = max((t for t in ticks if t <= lo), default=ticks[0])
    above = min((t for t in ticks if t >= hi), default=ticks[-1])
    return [t for t in ticks if below <= t <= above]


def _tick_label(value: float) -> str:
    return f"{round(value, 10):g}"
