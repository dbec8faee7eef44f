"""The leaderboard as one self-contained HTML page: styled tables, SVG charts drawn here,
and a strip of crops comparing each model's output with the rainy input (and the ground
truth), embedded as data URIs. Nothing is fetched: no script, font or image from outside.
"""

import base64
import json
import math
from dataclasses import dataclass
from html import escape

from PIL import Image, UnidentifiedImageError

from rainbench import __version__
from rainbench.leaderboard.bootstrap import CONFIDENCE, RESAMPLES, Estimate
from rainbench.leaderboard.publish import (
    Results,
    Row,
    SplitTable,
    arrow,
    conventions,
    failures_text,
    format_value,
    hardware_text,
    images_text,
    leaderboard_tables,
    metric_glossary,
    metric_label,
    primary_label,
    short_sha,
    speed_decimals,
    unavailable_text,
)

STRIP_KEYS = 6  # crop rows shown per split
# Tableau 10: distinct, readable on white, and fine for the common colour-vision deficiencies.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
CHART_WIDTH, CHART_HEIGHT = 580, 340
CHAR_WIDTH = 6.6  # average width of a 12 px sans-serif character, to place labels

CSS = """
:root { --text: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
  --best: #dafbe1; --best-text: #116329; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--text); background: #fff; line-height: 1.5;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 32px 24px 48px; }
h1 { font-size: 30px; margin: 0 0 8px; }
h2 { font-size: 22px; margin: 0 0 4px; }
h3 { font-size: 16px; margin: 28px 0 10px; }
p { margin: 0 0 10px; }
.lead { font-size: 17px; color: var(--muted); max-width: 70em; }
.howto { background: var(--soft); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 20px; margin: 20px 0; }
.howto h2 { font-size: 16px; margin-bottom: 6px; }
.howto ul { margin: 0; padding-left: 20px; }
.howto li { margin: 3px 0; }
.howto dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px;
  margin: 10px 0 0; font-size: 14px; }
.howto dt { font-weight: 600; }
.howto dd { margin: 0; color: var(--muted); }
nav ol { display: flex; flex-wrap: wrap; gap: 8px; list-style: none; padding: 0;
  margin: 0 0 8px; }
nav a { display: inline-block; padding: 4px 12px; border: 1px solid var(--line);
  border-radius: 999px; color: var(--accent); text-decoration: none; font-size: 14px; }
section.split { border-top: 2px solid var(--line); margin-top: 36px; padding-top: 24px; }
.kind { display: inline-block; font-size: 12px; font-weight: 600; vertical-align: middle;
  padding: 2px 8px; border-radius: 999px; margin-left: 8px; letter-spacing: .02em; }
.kind.real { background: #ddf4ff; color: #0550ae; }
.kind.synthetic { background: #fbefff; color: #6639ba; }
.meta { color: var(--muted); font-size: 14px; }
.table-wrap { overflow-x: auto; margin: 14px 0 8px; border: 1px solid var(--line);
  border-radius: 8px; }
table { border-collapse: collapse; width: 100%; font-size: 14px;
  font-variant-numeric: tabular-nums; }
th, td { padding: 7px 8px; border-bottom: 1px solid var(--line); text-align: right;
  vertical-align: top; white-space: nowrap; }
thead th { background: var(--soft); font-weight: 600; vertical-align: bottom; }
thead tr.group th { text-align: center; font-size: 12px; color: var(--muted);
  font-weight: 600; border-bottom: 1px solid var(--line); }
tbody tr:last-child td { border-bottom: 0; }
tbody tr:hover td { background: #fafbfc; }
th.model, td.model { text-align: left; }
td.model { white-space: normal; min-width: 9em; max-width: 15em; }
th.primary { color: var(--accent); }
td.rank { font-weight: 700; font-size: 16px; color: var(--muted); width: 3em; }
td.rank.first { color: var(--text); }
.mean { display: block; font-weight: 500; }
.ci { display: block; font-size: 11.5px; color: var(--muted); }
.ci.failed { color: #9a6700; font-weight: 600; }
td.best { background: var(--best); }
td.best .mean { color: var(--best-text); font-weight: 700; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 7px; vertical-align: baseline; }
.version { color: var(--muted); font-size: 12px; margin-left: 4px; }
.badge { display: inline-block; margin-left: 6px; padding: 0 6px; border-radius: 4px;
  font-size: 11px; font-weight: 600; background: #fff8c5; color: #7d4e00;
  border: 1px solid #eed888; }
.note { font-size: 13px; color: var(--muted); }
.warn { font-size: 13px; color: #9a6700; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 20px; margin: 18px 0 4px; }
figure { margin: 0; }
.charts figure { border: 1px solid var(--line); border-radius: 8px; padding: 10px 10px 8px; }
.charts svg { width: 100%; height: auto; display: block; }
.charts figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
.strip-wrap { overflow-x: auto; }
.strip { display: grid; grid-template-columns: 110px repeat(var(--cols), minmax(100px, 1fr));
  gap: 8px 10px; align-items: start; }
.strip .head { align-self: end; font-size: 13px; font-weight: 600; text-align: center;
  padding-bottom: 2px;
  border-bottom: 2px solid var(--line); }
.strip .head.blank { border-bottom: 0; }
.strip .head .swatch { margin-right: 5px; }
.strip .key { font-size: 12px; color: var(--muted); overflow: hidden;
  text-overflow: ellipsis; padding-top: 4px; }
.strip .key code { color: var(--text); font-size: 12px; word-break: break-all; }
.strip figure img { width: 100%; height: auto; display: block; border-radius: 4px;
  background: var(--soft); }
.strip figcaption { font-size: 12px; color: var(--muted); text-align: center;
  margin-top: 3px; font-variant-numeric: tabular-nums; }
.strip .missing { aspect-ratio: 1; display: flex; align-items: center;
  justify-content: center; background: var(--soft); border: 1px dashed var(--line);
  border-radius: 4px; color: var(--muted); font-size: 12px; }
details { margin-top: 22px; border: 1px solid var(--line); border-radius: 8px;
  padding: 8px 14px; }
summary { cursor: pointer; font-weight: 600; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr));
  gap: 12px; margin: 12px 0 6px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.card h4 { margin: 0 0 6px; font-size: 14px; }
.card dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0;
  font-size: 12.5px; }
.card dt { color: var(--muted); }
.card dd { margin: 0; overflow-wrap: anywhere; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12px; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
"""


def render_html(results: Results) -> str:
    tables = leaderboard_tables(results)
    models = sorted({run.model for run in results.runs})
    colors = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(models)}
    body = [
        "<header>",
        "<h1>rainbench leaderboard</h1>",
        f'<p class="lead">{escape(_intro(results, tables, models))}</p>',
        "</header>",
        _how_to_read(tables),
        "<nav><ol>",
        *(f'<li><a href="#{_anchor(t)}">{escape(t.title)}</a></li>' for t in tables),
        "</ol></nav>",
        *(_section(table, results, colors) for table in tables),
        f"<footer>Made by rainbench {escape(__version__)} from {len(results.runs)} result "
        f"files in <code>{escape(results.root.name)}</code>.</footer>",
    ]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            # An empty icon, so that the browser asks for no favicon.ico.
            '<link rel="icon" href="data:,">',
            f"<title>rainbench leaderboard: {escape(results.root.name)}</title>",
            f"<style>{CSS}</style>",
            "</head>",
            "<body>",
            "<main>",
            *body,
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )


def _intro(results: Results, tables: list[SplitTable], models: list[str]) -> str:
    datasets = sorted({t.dataset for t in tables})
    real = sum(t.kind == "real" for t in tables)
    synthetic = len(tables) - real
    kinds = [
        f"{_count(real, 'real-rain split')} without ground truth, scored with no-reference metrics"
        if real
        else "",
        f"{_count(synthetic, 'synthetic split')} with known ground truth" if synthetic else "",
    ]
    return (
        f"{_count(len(models), 'derainer')} ({', '.join(models)}) on "
        f"{_count(len(tables), 'split')} of {', '.join(datasets)}: "
        f"{' and '.join(k for k in kinds if k)}."
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _how_to_read(tables: list[SplitTable]) -> str:
    primaries = sorted({(t.kind, primary_label(t)) for t in tables if t.primary})
    ranking = "; ".join(f"{label} on {kind} splits" for kind, label in primaries)
    items = [
        "Each number is the mean over the images a model processed without error; the small "
        f"range below it is its {CONFIDENCE:.0%} bootstrap interval (percentile method, "
        f"{RESAMPLES} resamples). Models whose intervals overlap may not really differ.",
        "↑ higher is better, ↓ lower is better. The best value of each column is "
        "highlighted in green.",
        f"Rank follows the primary metric ({ranking}); equal means share a rank.",
        "s/MP is the median time the derainer took per megapixel, on the hardware listed "
        "under each split's provenance. Failed images are counted, never averaged.",
        "No-reference scores depend on resolution: compare models within a split, not "
        "across splits.",
    ]
    metrics = "".join(
        f"<dt>{escape(metric_label(m))} {arrow(lower)}</dt>"
        f"<dd><code>{escape(m)}</code> {escape(description)}</dd>"
        for m, lower, description in metric_glossary(tables)
    )
    unavailable = unavailable_text(tables)
    if unavailable:
        items.append(unavailable)
    return (
        '<section class="howto"><h2>How to read this page</h2><ul>'
        + "".join(f"<li>{escape(item)}</li>" for item in items)
        + f"</ul><dl>{metrics}</dl></section>"
    )


def _anchor(table: SplitTable) -> str:
    return "".join(c if c.isalnum() else "-" for c in f"{table.dataset}--{table.split}")


def _section(table: SplitTable, results: Results, colors: dict[str, str]) -> str:
    kind = "real rain" if table.kind == "real" else "synthetic rain"
    meta = [f"{table.images} images", f"ranked by {primary_label(table)}"]
    meta += [f"metric protocol v{v}" for v in table.protocol_versions]
    parts = [
        f'<section class="split" id="{_anchor(table)}">',
        f'<h2>{escape(table.title)}<span class="kind {table.kind}">{kind}</span></h2>',
        f'<p class="meta">{escape(" · ".join(meta))}</p>',
        f'<div class="table-wrap">{_table(table, colors)}</div>',
        f'<p class="note">{escape(conventions(table))}.</p>',
    ]
    if len(table.protocol_versions) > 1:
        parts.append(
            '<p class="warn">These runs used different metric protocols; their numbers are '
            "not comparable.</p>"
        )
    failures = failures_text(table)
    if failures:
        parts.append(f'<p class="warn">{escape(failures)}</p>')
    if table.primary:
        parts += ['<div class="charts">', _bars(table, colors), _scatter(table, colors), "</div>"]
    parts += [_strip(table, results, colors), _provenance(table), "</section>"]
    return "\n".join(parts)


def _table(table: SplitTable, colors: dict[str, str]) -> str:
    head = ['<th class="rank">Rank</th>', '<th class="model">Model</th>']
    for metric in table.metrics:
        primary = ' class="primary"' if metric == table.primary else ""
        head.append(
            f"<th{primary}>{escape(metric_label(metric))} {arrow(table.lower_is_better[metric])}"
            "</th>"
        )
    head += [f"<th>{escape(t)}</th>" for t in table.rain_types]
    head += ["<th>s/MP</th>", "<th>Images ok</th>"]
    group = ""
    if table.rain_types:
        group = (
            '<tr class="group"><th colspan="2"></th>'
            f'<th colspan="{len(table.metrics)}">All images (mean, {CONFIDENCE:.0%} interval)</th>'
            f'<th colspan="{len(table.rain_types)}">{escape(primary_label(table))} by rain type '
            '(mean, images)</th><th colspan="2"></th></tr>'
        )
    body = [_table_row(table, row, colors) for row in table.rows]
    return (
        f"<table><thead>{group}<tr>{''.join(head)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _table_row(table: SplitTable, row: Row, colors: dict[str, str]) -> str:
    first = " first" if row.rank == 1 else ""
    version = f'<span class="version">{escape(row.run.version)}</span>' if row.run.version else ""
    badge = (
        ""
        if row.run.complete
        else '<span class="badge" title="the run has not finished or lacks its JSON">'
        "incomplete</span>"
    )
    cells = [
        f'<td class="rank{first}">{row.rank or "—"}</td>',
        f'<td class="model"><span class="swatch" style="background:{colors[row.model]}"></span>'
        f"<strong>{escape(row.model)}</strong>{version}{badge}</td>",
    ]
    for metric in table.metrics:
        found = row.estimates.get(metric)
        d = table.decimals(metric)
        cells.append(
            _value_cell(
                found,
                d,
                table.best(metric),
                f"{format_value(found.low, d)} – {format_value(found.high, d)}" if found else "",
            )
        )
    for rain_type in table.rain_types:
        found = row.by_rain_type.get(rain_type)
        cells.append(
            _value_cell(
                found,
                table.decimals(table.primary),
                table.best(table.primary, rain_type),
                f"n = {found.n}" if found else "",
            )
        )
    speed = format_value(row.s_per_mp, speed_decimals(table))
    best_speed = ' class="best"' if row.s_per_mp == table.best_speed() else ""
    cells.append(f'<td{best_speed}><span class="mean">{speed}</span></td>')
    failed = (
        f'<span class="ci failed">{row.images_failed} failed</span>' if row.images_failed else ""
    )
    cells.append(f'<td><span class="mean">{row.images_ok}</span>{failed}</td>')
    return f"<tr>{''.join(cells)}</tr>"


def _value_cell(found: Estimate | None, decimals: int, best: float | None, detail: str) -> str:
    if found is None or not found.present:
        return '<td><span class="mean">—</span></td>'
    best_class = ' class="best"' if found.mean == best else ""
    return (
        f'<td{best_class}><span class="mean">{format_value(found.mean, decimals)}</span>'
        f'<span class="ci">{escape(detail)}</span></td>'
    )


@dataclass(frozen=True)
class _Series:
    name: str
    color: str
    values: tuple[Estimate | None, ...]  # one per group


def _bars(table: SplitTable, colors: dict[str, str]) -> str:
    primary = table.primary
    groups = ("all images", *table.rain_types) if table.rain_types else ("all images",)
    series = [
        _Series(
            row.model,
            colors[row.model],
            (row.estimates.get(primary), *(row.by_rain_type.get(t) for t in table.rain_types)),
        )
        for row in table.rows
    ]
    what = "by rain type" if table.rain_types else "per model"
    caption = (
        f"{primary_label(table)} {what}, bars with their {CONFIDENCE:.0%} intervals "
        f"({'lower' if table.lower_is_better[primary] else 'higher'} is better)."
    )
    svg = _bar_chart(groups, series, primary_label(table), table.decimals(primary))
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _scatter(table: SplitTable, colors: dict[str, str]) -> str:
    primary = table.primary
    points = [
        (row.model, colors[row.model], row.s_per_mp, row.estimates[primary])
        for row in table.rows
        if primary in row.estimates
        and row.estimates[primary].present
        and math.isfinite(row.s_per_mp)
        and row.s_per_mp > 0
    ]
    corner = "top" if not table.lower_is_better[primary] else "bottom"
    caption = (
        f"Quality against speed: {primary_label(table)} (with {CONFIDENCE:.0%} intervals) "
        f"and median seconds per megapixel; the {corner}-left corner is best."
    )
    svg = _scatter_chart(points, primary_label(table), table.decimals(primary))
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


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


def _bar_chart(groups: tuple[str, ...], series: list[_Series], label: str, decimals: int) -> str:
    left, right = 64, CHART_WIDTH - 12
    single = len(groups) == 1  # one bar per model
    # Models are named under their bars where every name fits, else in a legend.
    named = single and all(
        len(s.name) * CHAR_WIDTH <= (right - left) / len(series) - 8 for s in series
    )
    legend, legend_height = ([], 0) if named else _legend(series)
    height = CHART_HEIGHT + legend_height
    top, bottom = 14 + legend_height, height - (30 if single else 44)
    values = [v for s in series for v in s.values if v is not None and v.present]
    lows = [min(v.low, v.mean) for v in values]
    highs = [max(v.high, v.mean) for v in values]
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
        mid, low, high = x + width / 2, y(found.low), y(found.high)
        cap = min(5.0, width / 4)
        parts.append(
            f'<path d="M{mid:.1f} {low:.1f}V{high:.1f}M{mid - cap:.1f} {low:.1f}'
            f'H{mid + cap:.1f}M{mid - cap:.1f} {high:.1f}H{mid + cap:.1f}" '
            'stroke="#24292f" stroke-width="1.2" fill="none"/>'
        )
    parts.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{bottom}" stroke="#8c959f"/>')
    parts.append("</svg>")
    return "".join(parts)


def _legend(series: list[_Series]) -> tuple[list[str], int]:
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


def _scatter_chart(
    points: list[tuple[str, str, float, Estimate]], label: str, decimals: int
) -> str:
    height = CHART_HEIGHT
    left, right, top, bottom = 64, CHART_WIDTH - 20, 16, height - 46
    parts = [_svg_open(height, f"{label} against seconds per megapixel")]
    if not points:
        parts.append(
            f'<text x="{CHART_WIDTH / 2}" y="{height / 2}" text-anchor="middle" font-size="13" '
            'fill="#59636e">no model has both a score and a timing</text></svg>'
        )
        return "".join(parts)
    speeds = [p[2] for p in points]
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

    lows = [p[3].low for p in points]
    highs = [p[3].high for p in points]
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
            f'<path d="M{px:.1f} {y(found.low):.1f}V{y(found.high):.1f}" stroke="{color}" '
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


def _strip(table: SplitTable, results: Results, colors: dict[str, str]) -> str:
    reference = results.reference_crops(table.dataset, table.split)
    keys = sorted(
        {p.name.removesuffix(".input.png") for p in reference.glob("*.input.png")}
        | {p.stem for row in table.rows for p in row.run.crops.glob("*.png")}
    )[:STRIP_KEYS]
    if not keys:
        return ""
    has_input = any((reference / f"{k}.input.png").is_file() for k in keys)
    has_gt = table.kind == "synthetic" and any((reference / f"{k}.gt.png").is_file() for k in keys)
    heads = ['<div class="head blank"></div>']
    if has_input:
        heads.append('<div class="head">rainy input</div>')
    heads += [
        f'<div class="head"><span class="swatch" style="background:{colors[row.model]}"></span>'
        f"{escape(row.model)}</div>"
        for row in table.rows
    ]
    if has_gt:
        heads.append('<div class="head">ground truth</div>')
    cells = []
    for key in keys:
        cells.append(
            f'<div class="key" title="{escape(key)}"><code>{escape(key)}</code>'
            f"{escape(_crop_place(table, key))}</div>"
        )
        if has_input:
            cells.append(_crop(reference / f"{key}.input.png", f"{key}: rainy input", "rainy"))
        for row in table.rows:
            cells.append(
                _crop(row.run.crops / f"{key}.png", f"{key}: {row.model}", _score(table, row, key))
            )
        if has_gt:
            cells.append(_crop(reference / f"{key}.gt.png", f"{key}: ground truth", "clean"))
    columns = len(heads) - 1
    return (
        "<h3>Visual comparison</h3>"
        f'<p class="note">The same crop of the split\'s first '
        f"{'image' if len(keys) == 1 else f'{len(keys)} images'}, models in rank order; the "
        "value under each crop is that image's "
        f"{escape(primary_label(table))}."
        "</p>"
        f'<div class="strip-wrap"><div class="strip" style="--cols: {columns}">'
        + "".join(heads)
        + "".join(cells)
        + "</div></div>"
    )


def _crop_place(table: SplitTable, key: str) -> str:
    for row in table.rows:
        place = ((row.run.provenance or {}).get("crops") or {}).get(key)
        if isinstance(place, list) and len(place) == 3:
            left, top, size = place
            return f" at ({left}, {top}), {size} px"
    return ""


def _score(table: SplitTable, row: Row, key: str) -> str:
    scores = row.run.scores
    found = scores[scores["key"] == key]
    if found.empty:
        return "not run"
    if found["status"].iloc[0] != "ok":
        return "failed"
    if table.primary not in found.columns:
        return ""
    value = float(found[table.primary].iloc[0])
    return f"{metric_label(table.primary)} {format_value(value, table.decimals(table.primary))}"


def _crop(path, alt: str, caption: str) -> str:
    try:
        with Image.open(path) as image:
            width, height = image.size
            png = image.format == "PNG"
    except (OSError, UnidentifiedImageError):
        png = False
    if not png:
        return (
            f'<figure><div class="missing">no crop</div>'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
        f'alt="{escape(alt)}"><figcaption>{escape(caption)}</figcaption></figure>'
    )


def _provenance(table: SplitTable) -> str:
    cards = []
    for row in table.rows:
        provenance = row.run.provenance or {}
        model = provenance.get("model") or {}
        checkpoint = provenance.get("checkpoint") or {}
        dataset = provenance.get("dataset") or {}
        tile = provenance.get("tile")
        versions = provenance.get("versions") or {}
        unavailable = provenance.get("unavailable_metrics") or {}
        state = "complete"
        if not row.run.path.is_file():
            state = "incomplete: no Parquet yet"
        elif not row.run.provenance:
            state = "incomplete: no JSON provenance"
        elif not row.run.complete:
            state = "incomplete: not finished"
        fields = [
            ("state", state),
            ("version", model.get("version")),
            ("description", model.get("description")),
            (
                "options",
                json.dumps(model["options"], sort_keys=True) if model.get("options") else None,
            ),
            (
                "checkpoint",
                f"{checkpoint.get('path', '')} sha256 {short_sha(checkpoint.get('sha256'))}"
                if checkpoint
                else "none",
            ),
            (
                "dataset",
                " ".join(str(p) for p in (dataset.get("name"), dataset.get("manifest")) if p)
                or None,
            ),
            ("manifest sha256", short_sha(dataset.get("manifest_sha256"))),
            (
                "tiles",
                f"{tile.get('size')} px, overlap {tile.get('overlap')}" if tile else "whole images",
            ),
            ("hardware", hardware_text(provenance)),
            ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) or None),
            ("started", provenance.get("started_at")),
            ("finished", provenance.get("finished_at")),
            ("images", images_text(row)),
            ("not computed", "; ".join(f"{k}: {v}" for k, v in unavailable.items()) or None),
        ]
        rows = "".join(
            f"<dt>{escape(name)}</dt><dd>{escape(str(value))}</dd>"
            for name, value in fields
            if value is not None
        )
        cards.append(f'<div class="card"><h4>{escape(row.model)}</h4><dl>{rows}</dl></div>')
    return (
        "<details><summary>Provenance: models, checkpoints, data, hardware</summary>"
        f'<div class="cards">{"".join(cards)}</div></details>'
    )
