"""The leaderboard as one self-contained HTML page: the shared cells (cells.py) as styled
tables, on paired splits with each no-reference metric's agreement with the full-reference
ones (validity.py) in rows under its column, SVG charts (charts.py), and a strip of crops
comparing each model's output with the rainy input (and the ground truth), embedded as
data URIs. Nothing is fetched: no script, font or image from outside. The page's frame
and style are package data (page.html, page.css); its icon is empty so that a browser
asks for no favicon.ico.
"""

import base64
import json
import math
import warnings
from collections import Counter
from functools import cache
from html import escape
from importlib.resources import files
from pathlib import Path
from string import Template

from PIL import Image

from rainbench import __version__
from rainbench.leaderboard.bootstrap import CONFIDENCE, RESAMPLES, Estimate
from rainbench.leaderboard.cells import (
    VERSION_NOTE,
    RowCells,
    ValueCell,
    arrow,
    conventions,
    failures_text,
    format_value,
    ground_truth_text,
    hardware_text,
    images_text,
    imported_weights,
    infinite_text,
    kind_label,
    metric_decimals,
    metric_glossary,
    metric_label,
    missing_text,
    primary_label,
    short_sha,
    table_cells,
    unavailable_text,
    unique_names,
    unranked_text,
)
from rainbench.leaderboard.charts import Point, Series, bar_chart, scatter_chart
from rainbench.leaderboard.eval import CROP_SIDE
from rainbench.leaderboard.ranking import Row, SplitTable, leaderboard_tables
from rainbench.leaderboard.results import Results
from rainbench.leaderboard.validity import (
    AgreementRow,
    SplitValidity,
    agreement_rows,
    correlation_sign,
    correlation_text,
    discordance_text,
    flagged,
    real_split_note,
    validity_by_split,
    validity_caveats,
    validity_note,
)
from rainbench.wording import counted

STRIP_KEYS = 6  # crop rows shown per split
# A crop's PNG at most CROP_SIDE square is under 0.6 MB even stored uncompressed as 16-bit
# RGBA; eval's are 8-bit RGB and compressed.
_CROP_BYTES = 1 << 20
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


def render_html(results: Results) -> str:
    tables = leaderboard_tables(results)
    models = sorted({run.model for run in results.runs})
    colors = {model: PALETTE[i % len(PALETTE)] for i, model in enumerate(models)}
    validities = validity_by_split(tables)
    anchors = unique_names([_anchor(t) for t in tables])
    body = [
        "<header>",
        "<h1>rainbench leaderboard</h1>",
        f'<p class="lead">{escape(_intro(results, tables, models))}</p>',
        "</header>",
        _how_to_read(tables, bool(validities)),
        "<nav><ol>",
        *(
            f'<li><a href="#{anchor}">{escape(t.title)}</a></li>'
            for t, anchor in zip(tables, anchors, strict=True)
        ),
        "</ol></nav>",
        *(
            _section(table, anchor, results, colors, validities)
            for table, anchor in zip(tables, anchors, strict=True)
        ),
        f"<footer>Made by rainbench {escape(__version__)} from {len(results.runs)} result "
        f"files in {' and '.join(f'<code>{escape(name)}</code>' for name in results.names)}."
        "</footer>",
    ]
    title = escape(" + ".join(results.names))
    return _page().substitute(title=title, css=_style(), body="\n".join(body))


@cache
def _page() -> Template:
    return Template(
        files("rainbench.leaderboard").joinpath("page.html").read_text(encoding="utf-8")
    )


@cache
def _style() -> str:
    return files("rainbench.leaderboard").joinpath("page.css").read_text(encoding="utf-8")


def _intro(results: Results, tables: list[SplitTable], models: list[str]) -> str:
    datasets = sorted({t.dataset for t in tables})
    counts = Counter(t.kind for t in tables)
    kinds = [
        f"{counted(counts[kind], noun)} {what}"
        for kind, noun, what in (
            ("real", "real-rain split", "without ground truth, scored with no-reference metrics"),
            ("real-paired", "real-rain split", "with ground truth estimated from video"),
            ("imported", "public paired set", "with the ground truth of its rendered rain"),
            ("synthetic", "synthetic split", "with known ground truth"),
        )
        if counts[kind]
    ]
    listed = f"{', '.join(kinds[:-1])} and {kinds[-1]}" if len(kinds) > 1 else "".join(kinds)
    return (
        f"{counted(len(models), 'derainer')} ({', '.join(models)}) on "
        f"{counted(len(tables), 'split')} of {', '.join(datasets)}: {listed}."
    )


def _how_to_read(tables: list[SplitTable], validity: bool) -> str:
    primaries = sorted({(t.kind, primary_label(t)) for t in tables if t.primary})
    ranking = "; ".join(f"{label} on {kind} splits" for kind, label in primaries)
    items = [
        "Each number is the mean over the images a model processed without error; the small "
        f"range below it is its {CONFIDENCE:.0%} bootstrap interval (percentile method, "
        f"{RESAMPLES} resamples). Models whose intervals overlap may not really differ.",
        "↑ higher is better, ↓ lower is better. The best value of each column is "
        "highlighted in green.",
        f"Rank follows the primary metric ({ranking}); equal means share a rank.",
        VERSION_NOTE,
        "s/MP is the median time the derainer took per megapixel, on the hardware listed "
        "under each split's provenance. Failed images are counted, never averaged.",
        "No-reference scores depend on resolution: compare models within a split, not "
        "across splits.",
    ]
    if validity:
        items.append(validity_note())
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


def _section(
    table: SplitTable,
    anchor: str,
    results: Results,
    colors: dict[str, str],
    validities: dict[tuple[str, str], SplitValidity],
) -> str:
    validity = validities.get((table.dataset, table.split))
    meta = [counted(table.images, "image"), f"ranked by {primary_label(table)}"]
    meta += [f"metric protocol v{v}" for v in table.protocol_versions]
    parts = [
        f'<section class="split" id="{anchor}">',
        f'<h2>{escape(table.title)}<span class="kind {table.kind}">{kind_label(table)}</span></h2>',
        f'<p class="meta">{escape(" · ".join(meta))}</p>',
        f'<div class="table-wrap">{_table(table, colors, validity)}</div>',
        f'<p class="note">{escape(conventions(table))}.</p>',
    ]
    if validity:
        parts += _validity_notes(validity)
    real_note = real_split_note(table, list(validities.values()))
    if real_note:
        parts.append(f'<p class="note">{escape(real_note)}</p>')
    truth = ground_truth_text(table)
    if truth:
        parts.append(f'<p class="note">{escape(truth)}</p>')
    if len(table.protocol_versions) > 1:
        parts.append(
            '<p class="warn">These runs used different metric protocols; their numbers are '
            "not comparable.</p>"
        )
    for text in (
        unranked_text(table),
        failures_text(table),
        missing_text(table),
        infinite_text(table),
    ):
        parts += [f'<p class="warn">{escape(text)}</p>'] if text else []
    if table.primary:
        parts += ['<div class="charts">', _bars(table, colors), _scatter(table, colors), "</div>"]
    parts += [_strip(table, results, colors), _provenance(table), "</section>"]
    return "\n".join(parts)


def _table(table: SplitTable, colors: dict[str, str], validity: SplitValidity | None) -> str:
    head = ['<th class="rank">Rank</th>', '<th class="model">Model</th>']
    warned = flagged(validity)
    for metric in table.metrics:
        primary = ' class="primary"' if metric == table.primary else ""
        flag = (
            '<span class="flag" title="ranks a method above one that beats it on the '
            'full-reference metrics: see the warnings under the table">⚠</span>'
            if metric in warned
            else ""
        )
        head.append(
            f"<th{primary}>{escape(metric_label(metric))} {arrow(table.lower_is_better[metric])}"
            f"{flag}</th>"
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
    body = [_table_row(cells, colors) for cells in table_cells(table)]
    foot = ""
    if validity and (found := agreement_rows(table, validity)):
        extra = len(table.rain_types) + 2
        rows = "".join(_agreement_row(row, extra) for row in found)
        foot = f'<tfoot class="agreement">{rows}</tfoot>'
    return (
        f"<table><thead>{group}<tr>{''.join(head)}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody>{foot}</table>"
    )


def _agreement_row(row: AgreementRow, extra: int) -> str:
    """One statistic under each no-reference column, tinted where its interval lies wholly
    on one side of 0; `extra` empty cells end the row."""
    cells = [f'<th colspan="2" class="model">{escape(row.label)}</th>']
    for found in row.cells:
        if found is None:
            cells.append("<td></td>")
            continue
        value, low, high = correlation_text(found)
        sign = correlation_sign(found)
        tint = f' class="{sign}"' if sign else ""
        detail = f"n = {found.n}"
        if math.isfinite(found.value):
            detail = f"{low} – {high}, {detail}"
        cells.append(
            f'<td{tint}><span class="mean">{value}</span>'
            f'<span class="ci">{escape(detail)}</span></td>'
        )
    cells += ["<td></td>"] * extra
    return f"<tr>{''.join(cells)}</tr>"


def _validity_notes(validity: SplitValidity) -> list[str]:
    caveats = validity_caveats(validity)
    parts = [f'<p class="note">{escape(" ".join(caveats))}</p>'] if caveats else []
    warnings = [f"<li>{escape(discordance_text(d))}.</li>" for d in validity.discordances]
    if warnings:
        parts.append(f'<ul class="discordant">{"".join(warnings)}</ul>')
    return parts


def _table_row(cells: RowCells, colors: dict[str, str]) -> str:
    row = cells.row
    first = " first" if row.rank == 1 else ""
    version = f'<span class="version">{escape(row.run.version)}</span>' if row.run.version else ""
    badge = (
        ""
        if row.run.complete
        else '<span class="badge" title="the run has not finished or lacks its JSON">'
        "incomplete</span>"
    )
    if imported_weights(row.run):
        badge += (
            '<span class="badge" title="weights imported from a published release, '
            'not trained here">imported weights</span>'
        )
    parts = [
        f'<td class="rank{first}">{row.rank or "—"}</td>',
        f'<td class="model"><span class="swatch" style="background:{colors[row.model]}"></span>'
        f"<strong>{escape(row.model)}</strong>{version}{badge}</td>",
        *(_value_cell(cell, f"{cell.low} – {cell.high}") for cell in cells.metrics),
        *(_value_cell(cell, f"n = {cell.n}") for cell in cells.rain_types),
    ]
    fastest = ' class="best"' if cells.fastest else ""
    parts.append(f'<td{fastest}><span class="mean">{cells.speed}</span></td>')
    failed = (
        f'<span class="ci failed">{row.images_failed} failed</span>' if row.images_failed else ""
    )
    parts.append(f'<td><span class="mean">{row.images_ok}</span>{failed}</td>')
    return f"<tr>{''.join(parts)}</tr>"


def _value_cell(cell: ValueCell, detail: str) -> str:
    if not cell.present:
        return '<td><span class="mean">—</span></td>'
    best_class = ' class="best"' if cell.best else ""
    return (
        f'<td{best_class}><span class="mean">{cell.mean}</span>'
        f'<span class="ci">{escape(detail)}</span></td>'
    )


def _bars(table: SplitTable, colors: dict[str, str]) -> str:
    primary = table.primary
    groups = ("all images", *table.rain_types) if table.rain_types else ("all images",)
    found = [
        (row, (row.estimates.get(primary), *(row.by_rain_type.get(t) for t in table.rain_types)))
        for row in table.rows
    ]
    series = [
        Series(row.model, colors[row.model], tuple(e if _drawable(e) else None for e in values))
        for row, values in found
    ]
    what = "by rain type" if table.rain_types else "per model"
    caption = (
        f"{primary_label(table)} {what}, bars with their {CONFIDENCE:.0%} intervals "
        f"({'lower' if table.lower_is_better[primary] else 'higher'} is better)."
    )
    if any(e is not None and e.present and not _drawable(e) for _, v in found for e in v):
        caption += " An infinite mean has no bar."
    svg = bar_chart(groups, series, primary_label(table), metric_decimals(table, primary))
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _drawable(found: Estimate | None) -> bool:
    """Whether a chart can draw the estimate: present, with a finite mean (and so a finite
    interval)."""
    return found is not None and found.present and math.isfinite(found.mean)


def _scatter(table: SplitTable, colors: dict[str, str]) -> str:
    primary = table.primary
    points = [
        Point(row.model, colors[row.model], row.s_per_mp, row.estimates[primary])
        for row in table.rows
        if _drawable(row.estimates.get(primary))
        and math.isfinite(row.s_per_mp)
        and row.s_per_mp > 0
    ]
    corner = "top" if not table.lower_is_better[primary] else "bottom"
    caption = (
        f"Quality against speed: {primary_label(table)} (with {CONFIDENCE:.0%} intervals) "
        f"and median seconds per megapixel; the {corner}-left corner is best."
    )
    svg = scatter_chart(points, primary_label(table), metric_decimals(table, primary))
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _strip(table: SplitTable, results: Results, colors: dict[str, str]) -> str:
    reference = results.reference_crops(table.dataset, table.split)
    keys = sorted(
        {p.name.removesuffix(".input.png") for p in _crops(reference, "*.input.png", results)}
        | {p.stem for row in table.rows for p in _crops(row.run.crops, "*.png", results)}
    )[:STRIP_KEYS]
    if not keys:
        return ""
    has_input = any(_held(reference / f"{k}.input.png", results) for k in keys)
    has_gt = table.kind != "real" and any(_held(reference / f"{k}.gt.png", results) for k in keys)
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
            cells.append(
                _crop(reference / f"{key}.input.png", results, f"{key}: rainy input", "rainy")
            )
        for row in table.rows:
            score = _score(table, row, key)
            cells.append(_crop(row.run.crops / f"{key}.png", results, f"{key}: {row.model}", score))
        if has_gt:
            cells.append(
                _crop(reference / f"{key}.gt.png", results, f"{key}: ground truth", "clean")
            )
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
    value = format_value(float(found[table.primary].iloc[0]), metric_decimals(table, table.primary))
    return f"{metric_label(table.primary)} {value}"


def _crops(folder: Path, pattern: str, results: Results) -> list[Path]:
    """The crops in `folder` whose names match `pattern`, those the results hold alone: a
    folder linked to elsewhere would show the names of files there."""
    return [path for path in folder.glob(pattern) if _held(path, results)]


def _held(path: Path, results: Results) -> bool:
    return results.holds(path) and path.is_file()


def _crop(path: Path, results: Results, alt: str, caption: str) -> str:
    size = _crop_size(path, results)
    if size is None:
        return (
            f'<figure><div class="missing">no crop</div>'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    width, height = size
    return (
        f'<figure><img src="data:image/png;base64,{data}" width="{width}" height="{height}" '
        f'alt="{escape(alt)}"><figcaption>{escape(caption)}</figcaption></figure>'
    )


def _crop_size(path: Path, results: Results) -> tuple[int, int] | None:
    """The size of the PNG crop at `path` from its header alone; None where there is no
    PNG, one the results do not hold (a link, or one out of them: the page would publish
    whatever it leads to), or one larger than eval writes: a results folder may hold
    anything, and the page embeds the file whole for a browser to decode."""
    try:
        if not _held(path, results) or path.stat().st_size > _CROP_BYTES:  # a FIFO would block
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path, formats=("PNG",)) as image:
                size = image.size
    # ValueError: a text or colour-profile chunk that inflates past Pillow's limit.
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return size if max(size) <= CROP_SIDE else None


def _code_text(model: dict) -> str | None:
    """Which derainer made the outputs and where its code came from, as eval records it:
    the registered name, then the package, its version and the plug-in's entry point or
    the built-in's module (`median from h3derain 0.1 (h3derain:median_spec)`)."""
    source = model.get("source")
    if not isinstance(source, dict):  # an external command, outputs made elsewhere
        return None
    package = " ".join(str(source[k]) for k in ("package", "version") if source.get(k))
    where = source.get("entry_point") or source.get("module")
    text = f"{model.get('registered')} from {package}" if model.get("registered") else package
    return f"{text} ({where})" if where else text


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
            ("code", _code_text(model)),
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
                "split sha256",
                short_sha(dataset["split_sha256"]) if dataset.get("split_sha256") else None,
            ),
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
