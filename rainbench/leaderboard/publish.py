"""Publishing the leaderboard: read the results directory the evaluation harness writes
(<model>/<dataset>/<split>.parquet with a .json of provenance beside it), summarise each
split as a table of models ranked by its primary metric, and render it as Markdown, CSV
or LaTeX here, or as one self-contained HTML page (`html.py`).
"""

import csv
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rainbench.leaderboard.bootstrap import CONFIDENCE, RESAMPLES, Estimate, estimate, seed_for
from rainbench.metrics import list_metrics
from rainbench.shards.dataset import DatasetError

FORMATS = ("md", "csv", "latex", "html")
REFERENCE = "_reference"  # the results directory's folder of input and ground-truth crops
KINDS = ("real", "synthetic")
STATUSES = ("ok", "failed")
BASE_COLUMNS = (
    "key",
    "split",
    "kind",
    "rain_type",
    "width",
    "height",
    "status",
    "error",
    "seconds",
    "s_per_mp",
    "peak_mem_mb",
)
REQUIRED_COLUMNS = ("key", "kind", "rain_type", "status", "s_per_mp")
# The contract's metrics in the order tables show them; other metrics follow.
METRIC_ORDER = ("psnr_y", "ssim_y", "psnr", "ssim", "niqe", "brisque", "piqe")
METRIC_LABELS = {
    "psnr_y": "PSNR-Y",
    "ssim_y": "SSIM-Y",
    "psnr": "PSNR-RGB",
    "ssim": "SSIM-RGB",
    "niqe": "NIQE",
    "brisque": "BRISQUE",
    "piqe": "PIQE",
}
PRIMARY = {"synthetic": "psnr_y", "real": "niqe"}
RAIN_TYPE_ORDER = ("drizzle", "streak", "storm", "fog-like")
UNTAGGED = "untagged"  # real images whose rain type is null
# Provenance keys whose types the renderers rely on.
_PROVENANCE_TYPES = {
    "model": dict,
    "checkpoint": (dict, type(None)),
    "dataset": dict,
    "kind": str,
    "metrics": list,
    "unavailable_metrics": dict,
    "lower_is_better": dict,
    "tile": (dict, type(None)),
    "hardware": dict,
    "versions": dict,
    "finished_at": (str, type(None)),
    "images": dict,
    "crops": dict,
}


class LeaderboardError(DatasetError):
    """The results cannot be published as they are; the message is one line naming the file."""


@dataclass(frozen=True, eq=False)
class Run:
    """One model's results on one split: its per-image scores and provenance."""

    model: str
    dataset: str
    split: str
    path: Path  # the Parquet; absent while a run has written only its JSON
    scores: pd.DataFrame
    metrics: tuple[str, ...]
    provenance: dict | None
    kind: str | None

    @property
    def complete(self) -> bool:
        return (
            self.path.is_file()
            and self.provenance is not None
            and self.provenance.get("finished_at") is not None
        )

    @property
    def version(self) -> str | None:
        version = ((self.provenance or {}).get("model") or {}).get("version")
        return None if version is None else str(version)

    @property
    def crops(self) -> Path:
        return self.path.with_suffix(".crops")


@dataclass(frozen=True)
class Results:
    root: Path
    runs: tuple[Run, ...]

    def reference_crops(self, dataset: str, split: str) -> Path:
        return self.root / REFERENCE / dataset / f"{split}.crops"


@dataclass(frozen=True, eq=False)
class Row:
    """A model's line in a split's table."""

    run: Run
    rank: int | None  # None when the model has no value for the primary metric
    estimates: dict[str, Estimate]  # per metric, over the images with status ok
    by_rain_type: dict[str, Estimate]  # the primary metric per rain type (real splits)
    s_per_mp: float  # median over ok images; NaN when none
    images_ok: int
    images_failed: int

    @property
    def model(self) -> str:
        return self.run.model


@dataclass(frozen=True, eq=False)
class SplitTable:
    dataset: str
    split: str
    kind: str
    metrics: tuple[str, ...]
    lower_is_better: dict[str, bool]
    primary: str | None
    rain_types: tuple[str, ...]  # empty on synthetic splits
    rows: tuple[Row, ...]  # by rank
    images: int  # distinct keys over all runs

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.split}"

    @property
    def protocol_versions(self) -> tuple[str, ...]:
        found = {
            str(row.run.provenance["metric_protocol_version"])
            for row in self.rows
            if row.run.provenance and row.run.provenance.get("metric_protocol_version")
        }
        return tuple(sorted(found))

    def best(self, metric: str, rain_type: str | None = None) -> float | None:
        """The best mean of `metric` (of the primary metric on `rain_type`) in the table."""
        means = [
            (row.by_rain_type if rain_type else row.estimates).get(rain_type or metric)
            for row in self.rows
        ]
        return _best([e.mean for e in means if e and e.present], self.lower_is_better[metric])

    def best_speed(self) -> float | None:
        return _best([row.s_per_mp for row in self.rows if math.isfinite(row.s_per_mp)], True)

    def decimals(self, metric: str) -> int:
        """The decimals every value of the `metric` column is shown with."""
        means = [row.estimates[metric].mean for row in self.rows if metric in row.estimates]
        return decimals_for([m for m in means if math.isfinite(m)])


def load_results(results_dir: Path) -> Results:
    """Every run under `results_dir` (<model>/<dataset>/<split>.parquet + .json)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise LeaderboardError(f"{root}: no such results directory")
    stems = sorted(
        {
            path.parent / path.stem
            for path in root.glob("*/*/*")
            if path.suffix in (".parquet", ".json")
            and path.is_file()
            and path.parts[-3] != REFERENCE
            and not any(part.startswith(".") for part in path.relative_to(root).parts)
        }
    )
    if not stems:
        raise LeaderboardError(f"{root}: no results (expected <model>/<dataset>/<split>.parquet)")
    return Results(root, tuple(_load_run(stem) for stem in stems))


def _load_run(stem: Path) -> Run:
    parquet, sidecar = stem.parent / f"{stem.name}.parquet", stem.parent / f"{stem.name}.json"
    provenance = _read_provenance(sidecar) if sidecar.is_file() else None
    listed = None if provenance is None else provenance.get("metrics")
    if parquet.is_file():
        scores, metrics = _read_scores(parquet, listed, sidecar.name)
    else:
        metrics = tuple(listed or ())
        scores = pd.DataFrame({c: pd.Series(dtype=object) for c in (*BASE_COLUMNS, *metrics)})
    kinds = set(scores["kind"].dropna())
    if provenance and "kind" in provenance:
        kinds.add(provenance["kind"])
    if not kinds <= set(KINDS) or len(kinds) > 1:
        raise LeaderboardError(f"{parquet}: kind must be one of real, synthetic; found {kinds}")
    return Run(
        model=stem.parent.parent.name,
        dataset=stem.parent.name,
        split=stem.name,
        path=parquet,
        scores=scores,
        metrics=metrics,
        provenance=provenance,
        kind=next(iter(kinds), None),
    )


def _read_provenance(path: Path) -> dict:
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise LeaderboardError(f"{path}: not UTF-8 text ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise LeaderboardError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno})"
        ) from error
    if not isinstance(provenance, dict):
        raise LeaderboardError(f"{path}: expected a JSON object, got {type(provenance).__name__}")
    for key, kind in _PROVENANCE_TYPES.items():
        if key in provenance and not isinstance(provenance[key], kind):
            raise LeaderboardError(f"{path}: {key!r} has the wrong type")
    for metric, lower in provenance.get("lower_is_better", {}).items():
        if not isinstance(lower, bool):
            raise LeaderboardError(f"{path}: lower_is_better[{metric!r}] must be true or false")
    if not all(isinstance(m, str) for m in provenance.get("metrics", [])):
        raise LeaderboardError(f"{path}: 'metrics' must list metric names")
    return provenance


def _read_scores(
    path: Path, listed: list[str] | None, sidecar: str
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise LeaderboardError(
            f"{path}: not a readable Parquet file ({_one_line(error)})"
        ) from error
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise LeaderboardError(f"{path}: missing column(s) {', '.join(missing)}")
    if listed is None:
        metrics = tuple(
            c for c in table.column_names if c not in BASE_COLUMNS and _numeric(table.schema, c)
        )
    else:
        absent = [m for m in listed if m not in table.column_names]
        if absent:
            raise LeaderboardError(f"{path}: no column for {', '.join(absent)} listed in {sidecar}")
        metrics = tuple(listed)
    for column in (*metrics, "s_per_mp"):
        if not _numeric(table.schema, column):
            raise LeaderboardError(f"{path}: column {column!r} is not numeric")
    scores = table.to_pandas()
    if not scores["status"].isin(STATUSES).all():
        found = sorted(set(scores["status"].astype(str)) - set(STATUSES))
        raise LeaderboardError(f"{path}: status must be ok or failed, found {', '.join(found)}")
    for column in (*metrics, "s_per_mp"):
        scores[column] = scores[column].astype("float64")
    return scores, metrics


def _numeric(schema: pa.Schema, column: str) -> bool:
    kind = schema.field(column).type
    return pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def leaderboard_tables(results: Results) -> list[SplitTable]:
    """One ranked table per (dataset, split): per dataset, real splits first, then by name."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in results.runs:
        groups.setdefault((run.dataset, run.split), []).append(run)
    tables = [_split_table(dataset, split, runs) for (dataset, split), runs in groups.items()]
    return sorted(tables, key=lambda t: (t.dataset, t.kind != "real", t.split))


def _split_table(dataset: str, split: str, runs: list[Run]) -> SplitTable:
    where = f"{dataset}/{split}"
    kinds = {run.kind for run in runs if run.kind}
    if len(kinds) != 1:
        raise LeaderboardError(
            f"{where}: runs disagree on real or synthetic ({sorted(kinds)})"
            if kinds
            else f"{where}: no run says whether the split is real or synthetic"
        )
    kind = kinds.pop()
    metrics = _ordered({m for run in runs for m in run.metrics})
    lower_is_better = {m: _direction(m, runs, where) for m in metrics}
    primary = _primary(kind, metrics)
    rain_types = _rain_types(runs) if kind == "real" and primary else ()
    rows = [_row(run, metrics, primary, rain_types) for run in runs]
    ranked = _rank(rows, primary, lower_is_better)
    return SplitTable(
        dataset=dataset,
        split=split,
        kind=kind,
        metrics=metrics,
        lower_is_better=lower_is_better,
        primary=primary,
        rain_types=rain_types,
        rows=ranked,
        images=len({key for run in runs for key in run.scores["key"]}),
    )


def _ordered(metrics: set[str]) -> tuple[str, ...]:
    known = [m for m in METRIC_ORDER if m in metrics]
    return (*known, *sorted(metrics - set(known)))


def _direction(metric: str, runs: list[Run], where: str) -> bool:
    stated = {
        run.provenance["lower_is_better"][metric]
        for run in runs
        if run.provenance and metric in run.provenance.get("lower_is_better", {})
    }
    if len(stated) > 1:
        raise LeaderboardError(f"{where}: runs disagree whether lower {metric} is better")
    if stated:
        return stated.pop()
    spec = _registered().get(metric)
    if spec is None:
        raise LeaderboardError(
            f"{where}: unknown metric {metric!r} and no lower_is_better for it in the JSON"
        )
    return spec.lower_is_better


def _registered() -> dict:
    return {spec.name: spec for spec in list_metrics()}


def _primary(kind: str, metrics: tuple[str, ...]) -> str | None:
    if PRIMARY[kind] in metrics:
        return PRIMARY[kind]
    if kind == "real":
        specs = _registered()
        no_reference = [m for m in metrics if m not in specs or not specs[m].full_reference]
        if no_reference:
            return no_reference[0]
    return metrics[0] if metrics else None


def _rain_types(runs: list[Run]) -> tuple[str, ...]:
    found = {
        UNTAGGED if pd.isna(t) else str(t)
        for run in runs
        for t in run.scores.loc[run.scores["status"] == "ok", "rain_type"]
    }
    known = [t for t in RAIN_TYPE_ORDER if t in found]
    others = sorted(found - {*known, UNTAGGED})
    return (*known, *others, *([UNTAGGED] if UNTAGGED in found else []))


def _row(run: Run, metrics: tuple[str, ...], primary: str | None, rain_types) -> Row:
    ok = run.scores[run.scores["status"] == "ok"]

    def mean(values: pd.Series, *parts: str) -> Estimate:
        # Nulls are images a metric was not computed on; an infinite PSNR (output equal to
        # the ground truth) would swallow the mean, so both stay out of it and out of n.
        array = values.to_numpy(dtype=np.float64)
        return estimate(
            array[np.isfinite(array)], seed_for(run.dataset, run.split, run.model, *parts)
        )

    estimates = {m: mean(ok[m], m) for m in metrics if m in run.metrics}
    by_rain_type = {}
    if primary in run.metrics:
        types = ok["rain_type"].astype(object).where(ok["rain_type"].notna(), UNTAGGED)
        by_rain_type = {t: mean(ok.loc[types == t, primary], primary, t) for t in rain_types}
    speeds = ok["s_per_mp"].to_numpy(dtype=np.float64)
    speeds = speeds[np.isfinite(speeds)]
    return Row(
        run=run,
        rank=None,
        estimates=estimates,
        by_rain_type=by_rain_type,
        s_per_mp=float(np.median(speeds)) if speeds.size else math.nan,
        images_ok=len(ok),
        images_failed=int((run.scores["status"] == "failed").sum()),
    )


def _rank(rows: list[Row], primary: str | None, lower_is_better: dict) -> tuple[Row, ...]:
    """Standard competition ranking (1, 1, 3): equal means share a rank."""

    def score(row: Row) -> float | None:
        found = row.estimates.get(primary) if primary else None
        if found is None or not found.present:
            return None
        return found.mean if lower_is_better[primary] else -found.mean

    scores = [score(row) for row in rows]
    known = [s for s in scores if s is not None]
    ranked = [
        replace(row, rank=None if mine is None else 1 + sum(s < mine for s in known))
        for row, mine in zip(rows, scores, strict=True)
    ]
    return tuple(sorted(ranked, key=lambda r: (r.rank is None, r.rank or 0, r.model)))


def _best(values: list[float], lower: bool) -> float | None:
    if not values:
        return None
    return min(values) if lower else max(values)


def decimals_for(values: Iterable[float]) -> int:
    """Decimals that show four significant digits of the largest value (at least one)."""
    largest = max((abs(v) for v in values), default=0.0)
    if largest < 1:
        return 4
    return max(1, 4 - len(str(int(largest))))


def format_value(value: float | None, decimals: int) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{decimals}f}"


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.upper())


def arrow(lower_is_better: bool) -> str:
    return "↓" if lower_is_better else "↑"


def short_sha(digest: object) -> str:
    return str(digest)[:12] if digest else "—"


def hardware_text(provenance: dict | None) -> str:
    hardware = (provenance or {}).get("hardware") or {}
    parts = [
        hardware.get("gpu"),
        hardware.get("cpu"),
        f"{hardware['cores']} cores" if hardware.get("cores") else None,
    ]
    device = (provenance or {}).get("device")
    text = ", ".join(str(p) for p in parts if p)
    return f"{text} ({device})" if device and text else text or str(device or "—")


def primary_label(table: SplitTable) -> str:
    """The primary metric's name with its direction, e.g. 'NIQE ↓'."""
    if table.primary is None:
        return "—"
    return f"{metric_label(table.primary)} {arrow(table.lower_is_better[table.primary])}"


def speed_decimals(table: SplitTable) -> int:
    return decimals_for(r.s_per_mp for r in table.rows if math.isfinite(r.s_per_mp))


def images_text(row: Row) -> str:
    if row.images_failed:
        return f"{row.images_ok} ok, {row.images_failed} failed"
    return str(row.images_ok)


def conventions(table: SplitTable) -> str:
    """One line: the metrics' protocol, directions and how the means were computed."""
    versions = table.protocol_versions
    protocol = (
        f"metric protocol v{versions[0]}"
        if len(versions) == 1
        else f"metric protocols {', '.join(versions)} differ between runs: not comparable"
        if versions
        else "metric protocol not recorded"
    )
    directions = ", ".join(
        f"{metric_label(m)} {arrow(table.lower_is_better[m])}" for m in table.metrics
    )
    return (
        f"{protocol}; {directions} (↑ higher is better, ↓ lower is better); "
        f"means over the images each model processed without error, with "
        f"{CONFIDENCE:.0%} percentile-bootstrap intervals ({RESAMPLES} resamples)"
    )


def metric_glossary(tables: list[SplitTable]) -> list[tuple[str, bool, str]]:
    """(metric, lower is better, description) for every metric the tables show."""
    specs = _registered()
    directions = {m: t.lower_is_better[m] for t in tables for m in t.metrics}
    return [
        (m, directions[m], specs[m].description if m in specs else "")
        for m in _ordered(set(directions))
    ]


def failures_text(table: SplitTable) -> str | None:
    failed = [
        f"{row.model} {row.images_failed} of {row.images_ok + row.images_failed}"
        for row in table.rows
        if row.images_failed
    ]
    return f"Failed images (excluded from the means): {'; '.join(failed)}." if failed else None


def unavailable_text(tables: list[SplitTable]) -> str | None:
    """The metrics some run could not compute where it ran, each once with why and the
    fix (as eval recorded them); None when every metric was computed."""
    reasons: dict[str, str] = {}
    for table in tables:
        for row in table.rows:
            provenance = row.run.provenance or {}
            for metric, why in (provenance.get("unavailable_metrics") or {}).items():
                reasons.setdefault(metric, why)
    return f"Not computed: {'; '.join(reasons.values())}." if reasons else None


def render_markdown(results: Results) -> str:
    tables = leaderboard_tables(results)
    lines = [
        f"# rainbench leaderboard: {_md(results.root.name)}",
        "",
        "Each cell is a mean with its 95% bootstrap interval in brackets; **bold** is the "
        "best in its column. Rows are ranked by the split's primary metric.",
        "",
        "Metrics:",
        "",
        *(
            _glossary_line(m, lower, description)
            for m, lower, description in metric_glossary(tables)
        ),
    ]
    unavailable = unavailable_text(tables)
    if unavailable:
        lines += ["", _md(unavailable)]
    for table in tables:
        lines += ["", *_markdown_table(table)]
    return "\n".join(lines) + "\n"


def _glossary_line(metric: str, lower_is_better: bool, description: str) -> str:
    line = f"- {_md(metric_label(metric))} {arrow(lower_is_better)} ({_md_code(metric)})"
    return f"{line}: {_md(description)}" if description else line


def _markdown_table(table: SplitTable) -> list[str]:
    kind = "real rain" if table.kind == "real" else "synthetic rain"
    lines = [f"## {_md(table.title)} ({kind}, {table.images} images)", ""]
    if table.primary:
        lines += [f"Ranked by {_md(primary_label(table))}.", ""]
    header = ["rank", "model"]
    header += [
        f"{_md(metric_label(m))} {arrow(table.lower_is_better[m])} (95% CI)" for m in table.metrics
    ]
    header += [_md(f"{t}: {primary_label(table)}") for t in table.rain_types]
    header += ["s/MP", "images"]
    lines += ["| " + " | ".join(header) + " |"]
    lines += ["|" + "|".join(["---:", "---", *["---:"] * (len(header) - 2)]) + "|"]
    for row in table.rows:
        cells = [str(row.rank or "—"), _md(_model_text(row))]
        for metric in table.metrics:
            found = row.estimates.get(metric)
            if found is None or not found.present:
                cells.append("—")
                continue
            d = table.decimals(metric)
            mean = format_value(found.mean, d)
            if found.mean == table.best(metric):
                mean = f"**{mean}**"
            cells.append(f"{mean} [{format_value(found.low, d)}, {format_value(found.high, d)}]")
        for rain_type in table.rain_types:
            found = row.by_rain_type.get(rain_type)
            if found is None or not found.present:
                cells.append("—")
                continue
            mean = format_value(found.mean, table.decimals(table.primary))
            if found.mean == table.best(table.primary, rain_type):
                mean = f"**{mean}**"
            cells.append(f"{mean} (n={found.n})")
        cells += [format_value(row.s_per_mp, speed_decimals(table)), images_text(row)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Conventions: {_md(conventions(table))}."]
    failures = failures_text(table)
    if failures:
        lines += ["", _md(failures)]
    lines += ["", "Provenance:", ""]
    lines += [f"- {_md(_provenance_text(row))}" for row in table.rows]
    return lines


def _model_text(row: Row) -> str:
    text = row.model + (f" {row.run.version}" if row.run.version else "")
    return text if row.run.complete else f"{text} (incomplete)"


def _provenance_text(row: Row) -> str:
    provenance = row.run.provenance or {}
    checkpoint = (provenance.get("checkpoint") or {}).get("sha256")
    dataset = provenance.get("dataset") or {}
    parts = [
        f"{row.model} {row.run.version or ''}".rstrip() + ":",
        f"checkpoint {short_sha(checkpoint)},",
        f"manifest {short_sha(dataset.get('manifest_sha256'))},",
        f"hardware {hardware_text(provenance)},",
        f"finished {provenance.get('finished_at') or 'no (incomplete)'}",
    ]
    if not row.run.path.is_file():
        parts.append("— no Parquet yet")
    elif not provenance:
        parts.append("— no JSON provenance")
    return " ".join(parts)


# Markdown that a name must not start: inline markup is escaped wherever it stands, and
# what would open a block (a list, a heading) where the name starts a line.
_MD_ESCAPED = frozenset("\\`*[]|~$")
_MD_HTML = {"<": "&lt;", ">": "&gt;"}
_MD_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_MD_BLOCK_START = re.compile(r"^(\s*)([-+#=]|\d+(?=[.)]))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _md(text: str) -> str:
    """`text` as Markdown that renders as the same plain text, in a table cell or a
    list item: no HTML, link, emphasis, code or math, and no line break or `|` to end
    the cell. `&` and intra-word `_` stay as they are where they cannot be markup."""
    text = _CONTROL.sub(" ", text)
    out = []
    for index, char in enumerate(text):
        if char in _MD_ESCAPED:
            out.append("\\" + char)
        elif char in _MD_HTML:
            out.append(_MD_HTML[char])
        elif char == "&" and _MD_ENTITY.match(text, index):
            out.append("&amp;")
        elif char == "_" and not _between_word_characters(text, index):
            out.append("\\_")
        else:
            out.append(char)
    escaped = "".join(out)
    block = _MD_BLOCK_START.match(escaped)
    if block is None:
        return escaped
    lead, marker = block.groups()
    if marker.isdigit():  # "1." or "1)" would start a numbered list
        end = block.end()
        return f"{escaped[:end]}\\{escaped[end:]}"
    return f"{lead}\\{escaped[len(lead) :]}"


def _between_word_characters(text: str, index: int) -> bool:
    """Whether text[index] has a letter or digit on both sides: an `_` there is no
    emphasis in CommonMark."""
    return 0 < index < len(text) - 1 and text[index - 1].isalnum() and text[index + 1].isalnum()


def _md_code(text: str) -> str:
    """`text` as a Markdown code span, fenced by more backticks than it holds in a row."""
    text = _CONTROL.sub(" ", text)
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", text)), default=0))
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


CSV_COLUMNS = (
    "dataset",
    "split",
    "kind",
    "model",
    "model_version",
    "complete",
    "rank",
    "metric",
    "lower_is_better",
    "primary",
    "rain_type",
    "mean",
    "low",
    "high",
    "n",
    "images_ok",
    "images_failed",
    "s_per_mp",
    "metric_protocol_version",
)


def render_csv(results: Results) -> str:
    """Tidy: one line per (dataset, split, model, metric), rain_type 'all', plus one per
    rain type for the primary metric of real splits."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for table in leaderboard_tables(results):
        for row in table.rows:
            cells = [(m, "all", row.estimates.get(m)) for m in table.metrics]
            cells += [(table.primary, t, e) for t, e in row.by_rain_type.items()]
            for metric, rain_type, found in cells:
                found = found or Estimate(math.nan, math.nan, math.nan, 0)
                writer.writerow(
                    [
                        _csv_text(table.dataset),
                        _csv_text(table.split),
                        table.kind,
                        _csv_text(row.model),
                        _csv_text(row.run.version or ""),
                        str(row.run.complete).lower(),
                        row.rank or "",
                        _csv_text(metric),
                        str(table.lower_is_better[metric]).lower(),
                        str(metric == table.primary).lower(),
                        _csv_text(rain_type),
                        _csv_float(found.mean),
                        _csv_float(found.low),
                        _csv_float(found.high),
                        found.n,
                        row.images_ok,
                        row.images_failed,
                        _csv_float(row.s_per_mp),
                        _csv_text((row.run.provenance or {}).get("metric_protocol_version", "")),
                    ]
                )
    return buffer.getvalue()


def _csv_float(value: float) -> str:
    return repr(value) if math.isfinite(value) else ""


# A spreadsheet runs a cell starting with one of these as a formula (OWASP, "CSV
# injection"); a plain number such as -1.5 it reads as a number, so that stays.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _csv_text(value: object) -> str:
    """A name as a CSV cell no spreadsheet runs: one that would start a formula gets a
    leading single quote, shown as text."""
    text = str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def render_latex(results: Results) -> str:
    """One booktabs table per split (needs \\usepackage{booktabs}); best values in bold."""
    blocks = ["% rainbench leaderboard; needs \\usepackage{booktabs}"]
    blocks += [_latex_table(table) for table in leaderboard_tables(results)]
    return "\n\n".join(blocks) + "\n"


def _latex_table(table: SplitTable) -> str:
    kind = "real rain" if table.kind == "real" else "synthetic rain"
    ranked = f", ranked by {metric_label(table.primary)}" if table.primary else ""
    caption = (
        f"{_tex(table.title)} ({kind}, {table.images} images{_tex(ranked)}): mean and "
        f"95\\% bootstrap interval over the images each model processed; best in bold."
    )
    columns = "rl" + "c" * len(table.metrics) + "r" * len(table.rain_types) + "rr"
    header = ["Rank", "Model"]
    header += [
        f"{_tex(metric_label(m))} {_tex_arrow(table.lower_is_better[m])}" for m in table.metrics
    ]
    header += [_tex(t) for t in table.rain_types]
    header += ["s/MP", "Images"]
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{tab:{_label(table)}}}",
        f"\\begin{{tabular}}{{{columns}}}",
        "\\toprule",
    ]
    if table.rain_types:
        first = 3 + len(table.metrics)
        lines += [
            " & " * (first - 1)
            + f"\\multicolumn{{{len(table.rain_types)}}}{{c}}{{{_tex(metric_label(table.primary))} "
            + f"{_tex_arrow(table.lower_is_better[table.primary])} by rain type}} & & \\\\",
            f"\\cmidrule(lr){{{first}-{first + len(table.rain_types) - 1}}}",
        ]
    lines.append(" & ".join(header) + " \\\\")
    lines.append("\\midrule")
    for row in table.rows:
        cells = [str(row.rank or "--"), _tex(_model_text(row))]
        for metric in table.metrics:
            found = row.estimates.get(metric)
            if found is None or not found.present:
                cells.append("--")
                continue
            d = table.decimals(metric)
            mean = format_value(found.mean, d)
            if found.mean == table.best(metric):
                mean = f"\\textbf{{{mean}}}"
            cells.append(f"{mean} [{format_value(found.low, d)}, {format_value(found.high, d)}]")
        for rain_type in table.rain_types:
            found = row.by_rain_type.get(rain_type)
            if found is None or not found.present:
                cells.append("--")
                continue
            mean = format_value(found.mean, table.decimals(table.primary))
            if found.mean == table.best(table.primary, rain_type):
                mean = f"\\textbf{{{mean}}}"
            cells.append(mean)
        cells += [
            format_value(row.s_per_mp, speed_decimals(table)).replace("—", "--"),
            f"{row.images_ok}" + (f" (+{row.images_failed} failed)" if row.images_failed else ""),
        ]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines)


_TEX_ESCAPES = {
    "\\": "\\textbackslash{}",
    "&": "\\&",
    "%": "\\%",
    "$": "\\$",
    "#": "\\#",
    "_": "\\_",
    "{": "\\{",
    "}": "\\}",
    "~": "\\textasciitilde{}",
    "^": "\\textasciicircum{}",
}


def _tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in text)


def _tex_arrow(lower_is_better: bool) -> str:
    return "$\\downarrow$" if lower_is_better else "$\\uparrow$"


def _label(table: SplitTable) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", table.title).strip("-").lower()


def render_leaderboard(results_dir: Path, fmt: str) -> str:
    """The leaderboard of `results_dir` as text in `fmt` (one of FORMATS)."""
    # html.py builds on this module's tables, so it is imported when asked for.
    from rainbench.leaderboard.html import render_html

    renderers = {
        "md": render_markdown,
        "csv": render_csv,
        "latex": render_latex,
        "html": render_html,
    }
    if fmt not in renderers:
        raise LeaderboardError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return renderers[fmt](load_results(results_dir))


def write_leaderboard(results_dir: Path, fmt: str, out: Path) -> Path:
    """Write the leaderboard of `results_dir` to `out` in `fmt`; returns `out`."""
    text = render_leaderboard(results_dir, fmt)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(text, encoding="utf-8", newline="\n")
    partial.replace(out)
    return out
