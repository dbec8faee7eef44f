"""What every format shows, built once: a table's rows as cells (each value at its column's
decimals, marked where it is the column's best) and the texts around a table (labels,
conventions, glossary, failures, provenance). A renderer only adds its own markup.
"""

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from rainbench.leaderboard.bootstrap import CONFIDENCE, RESAMPLES, Estimate
from rainbench.leaderboard.ranking import (
    Row,
    SplitTable,
    metric_specs,
    ordered_metrics,
    standing,
)
from rainbench.leaderboard.results import Run
from rainbench.shards.manifest import REAL_PAIR
from rainbench.wording import counted

# A control character (C0, DEL, C1) in a name is no text to show: every format makes it a
# space. Printed to a terminal, an escape sequence in a name would restyle or rewrite it;
# TeX refuses some and reads others as markup (a form feed is an \outer \par).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The recipe of a pair whose ground truth is its sequence's rain-free frames (`pairs`).
_RAIN_FREE = f"{REAL_PAIR}rain-free"

METRIC_LABELS = {
    "psnr_y": "PSNR-Y",
    "ssim_y": "SSIM-Y",
    "psnr": "PSNR-RGB",
    "ssim": "SSIM-RGB",
    "niqe": "NIQE",
    "brisque": "BRISQUE",
    "piqe": "PIQE",
}


INFINITY = "∞"


@dataclass(frozen=True)
class ValueCell:
    """One estimate in a table: a metric over all images, or the primary metric over one
    rain type."""

    metric: str
    rain_type: str | None  # None: over all images
    estimate: Estimate | None  # None where the run has no value for it at all
    decimals: int
    best: bool  # the best mean of its column

    @property
    def present(self) -> bool:
        return self.estimate is not None and self.estimate.present

    @property
    def n(self) -> int:
        return self.estimate.n if self.estimate else 0

    @property
    def mean(self) -> str:
        return format_value(self.estimate.mean if self.estimate else None, self.decimals)

    @property
    def low(self) -> str:
        return format_value(self.estimate.low if self.estimate else None, self.decimals)

    @property
    def high(self) -> str:
        return format_value(self.estimate.high if self.estimate else None, self.decimals)


@dataclass(frozen=True)
class RowCells:
    """A model's line in a split's table, as cells in the table's column order."""

    row: Row
    metrics: tuple[ValueCell, ...]  # one per table.metrics
    rain_types: tuple[ValueCell, ...]  # the primary metric, one per table.rain_types
    speed: str  # the median seconds per megapixel at the column's decimals
    fastest: bool

    @property
    def model(self) -> str:
        """The model with its version, flagged where its weights were imported from a
        published release and where its run is incomplete."""
        run = self.row.run
        text = run.model + (f" {run.version}" if run.version else "")
        if imported_weights(run):
            text += " (imported weights)"
        return text if run.complete else f"{text} (incomplete)"


# What the number after a model's name is, in the notes on how to read a page.
VERSION_NOTE = (
    "The number after a model's name is its derainer's version (guided 1: the derainer "
    "guided at version 1), which the derainer raises whenever its output for the same input "
    "could change."
)


def imported_weights(run: Run) -> bool:
    """Whether the run's derainer used weights imported from a published release
    (`rainbench nlcl import-checkpoint`) rather than trained here."""
    model = (run.provenance or {}).get("model") or {}
    return bool((model.get("options") or {}).get("imported_from"))


def table_cells(table: SplitTable) -> list[RowCells]:
    """The cells of every row of `table`, in rank order."""
    decimals = {m: metric_decimals(table, m) for m in table.metrics}
    best = {m: table.best_standing(m) for m in table.metrics}
    best_by_type = {t: table.best_standing(table.primary, t) for t in table.rain_types}
    fastest, speed = table.best_speed(), speed_decimals(table)
    return [
        RowCells(
            row,
            metrics=tuple(
                _value_cell(table, row, m, None, row.estimates.get(m), decimals[m], best[m])
                for m in table.metrics
            ),
            rain_types=tuple(
                _value_cell(
                    table,
                    row,
                    table.primary,
                    t,
                    row.by_rain_type.get(t),
                    decimals[table.primary],
                    best_by_type[t],
                )
                for t in table.rain_types
            ),
            speed=format_value(row.s_per_mp, speed),
            fastest=row.s_per_mp == fastest and table.contends(row),
        )
        for row in table.rows
    ]


def _value_cell(
    table: SplitTable,
    row: Row,
    metric: str,
    rain_type: str | None,
    found: Estimate | None,
    decimals: int,
    best: tuple[float, float] | None,
) -> ValueCell:
    present = found is not None and found.present
    mine = standing(found, table.lower_is_better[metric]) if present else None
    # An unranked row's mean equal to the best is not marked: the best is the ranked rows'.
    marked = present and mine == best and table.contends(row, metric)
    return ValueCell(metric, rain_type, found, decimals, marked)


def decimals_for(values: Iterable[float]) -> int:
    """Decimals that show four significant digits of the largest value (at least one)."""
    largest = max((abs(v) for v in values), default=0.0)
    if largest <= 1:  # SSIM's 1.0 keeps the column at 4 decimals
        return 4
    return max(1, 4 - len(str(int(largest))))


def metric_decimals(table: SplitTable, metric: str) -> int:
    """The decimals every value of the `metric` column is shown with."""
    means = [row.estimates[metric].mean for row in table.rows if metric in row.estimates]
    return decimals_for([m for m in means if math.isfinite(m)])


def speed_decimals(table: SplitTable) -> int:
    return decimals_for(r.s_per_mp for r in table.rows if math.isfinite(r.s_per_mp))


def format_value(value: float | None, decimals: int) -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return INFINITY if value > 0 else f"−{INFINITY}"
    return f"{value:.{decimals}f}"


def unique_names(names: list[str]) -> list[str]:
    """`names` (tables' anchors or labels, made from their titles) unique in one page: a
    name taken by an earlier one gets -2, -3, … in order, where titles differ only in
    what a name leaves out (rain_x and rain-x), so that each link finds its own table."""
    unique: list[str] = []
    for name in names:
        found, count = name, 1
        while found in unique:
            count += 1
            found = f"{name}-{count}"
        unique.append(found)
    return unique


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric.upper())


def arrow(lower_is_better: bool) -> str:
    return "↓" if lower_is_better else "↑"


def primary_label(table: SplitTable) -> str:
    """The primary metric's name with its direction, e.g. 'NIQE ↓'."""
    if table.primary is None:
        return "—"
    return f"{metric_label(table.primary)} {arrow(table.lower_is_better[table.primary])}"


KIND_LABELS = {
    "real": "real rain",
    "real-paired": "real rain, ground truth estimated from video",
    "imported": "public paired set",
    "synthetic": "synthetic rain",
}


def kind_label(table: SplitTable) -> str:
    return KIND_LABELS[table.kind]


def ground_truth_text(table: SplitTable) -> str | None:
    """On a real-paired split: how its ground truth was made and how good it is said
    to be, from the provenance `rainbench eval` recorded (None on other splits, or when
    no run recorded it)."""
    if table.kind != "real-paired":
        return None
    found = [
        row.run.provenance["ground_truth"]
        for row in table.rows
        if row.run.provenance and isinstance(row.run.provenance.get("ground_truth"), dict)
    ]
    if not found:
        return None
    truth = found[0]
    methods = ", ".join(f"{name} ({count})" for name, count in truth.get("methods", {}).items())
    text = f"Ground truth by {methods}"
    if "gt_psnr_estimate_median" in truth:
        text += (
            f", {_made_from(set(truth.get('methods', {})), truth['window_frames_max'])}: "
            f"the estimate's own spread puts it at a median {truth['gt_psnr_estimate_median']:.1f}"
            f" dB psnr_y from the true background; mean confidence "
            f"{truth['confidence_mean']:.2f}, {100 * truth['moving_mean']:.1f}% of a frame "
            f"masked as moving on average; full-reference metrics score only the pixels of "
            f"confidence ≥ {truth['confident_from']:.2f}. A veil or mist in every frame stays "
            "in such a ground truth and that figure cannot see it; how far such estimates are "
            "from the truth, measured on synthetic videos: docs/pairs.md"
        )
    return text + "."


def _made_from(methods: set[str], frames: int) -> str:
    """Where `rainbench pairs` took a split's ground truths from: rainy frames over time,
    or the rain-free frames a sequence has before or after the rain (`pairs:rain-free`,
    whose window is those frames)."""
    if methods == {_RAIN_FREE}:
        return f"taken from rain-free frames of the same sequences, up to {frames} of them"
    text = f"estimated from time over windows of up to {frames} frames"
    return text + (
        ", or from rain-free frames where a sequence has them" if _RAIN_FREE in methods else ""
    )


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
    drawn = (
        "; the frames of a sequence drawn together: no interval from one sequence alone"
        if table.kind == "real-paired"
        else ""
    )
    return (
        f"{protocol}; {directions} (↑ higher is better, ↓ lower is better); "
        f"means over the images each model processed without error, with "
        f"{CONFIDENCE:.0%} percentile-bootstrap intervals ({RESAMPLES} resamples{drawn})"
    )


def metric_glossary(tables: list[SplitTable]) -> list[tuple[str, bool, str]]:
    """(metric, lower is better, description) for every metric the tables show."""
    specs = metric_specs()
    directions = {m: t.lower_is_better[m] for t in tables for m in t.metrics}
    return [
        (m, directions[m], specs[m].description if m in specs else "")
        for m in ordered_metrics(set(directions))
    ]


def failures_text(table: SplitTable) -> str | None:
    failed = [
        f"{row.model} {row.images_failed} of {row.images_ok + row.images_failed}"
        for row in table.rows
        if row.images_failed
    ]
    return f"Failed images (excluded from the means): {'; '.join(failed)}." if failed else None


def unranked_text(table: SplitTable) -> str | None:
    """Which rows are not ranked and why; None when every row is ranked."""
    found = [f"{row.model} ({row.unranked})" for row in table.rows if row.unranked]
    if not found:
        return None
    return (
        "Not ranked, as a rank compares methods on every image of the split and on none "
        f"they trained on: {'; '.join(found)}."
    )


def missing_text(table: SplitTable) -> str | None:
    """Which models lack which metric's value on images they processed (the metric failed
    on the output), on how many; None when every value is there."""
    found = [
        f"{row.model}: {metric_label(m)} on {row.images_ok - e.n} of "
        f"{counted(row.images_ok, 'image')}"
        for row in table.rows
        for m in table.metrics
        if (e := row.estimates.get(m)) is not None and e.n < row.images_ok
    ]
    if not found:
        return None
    return (
        f"Values missing where a metric failed on an output: {'; '.join(found)}. Each mean "
        "is over the images with a value; one that leaves out an image another model has "
        "a value for is not marked best."
    )


def infinite_text(table: SplitTable) -> str | None:
    """Which models have infinite values in which metric, on how many images; None when
    no value is infinite."""
    found = [
        f"{row.model}: {metric_label(m)} on {e.infinite} of {e.n}"
        for row in table.rows
        for m in table.metrics
        if (e := row.estimates.get(m)) is not None and e.infinite
    ]
    if not found:
        return None
    return (
        "Infinite values (PSNR where an output equals its ground truth; PSNR-Y also where "
        "only their Y planes are equal): "
        f"{'; '.join(found)}. They stay in the means, which are then infinite ({INFINITY}), "
        "as a mean of BasicSR's per-image PSNR over a test set is; of two infinite means, "
        "the one with the larger share of infinite values ranks first, then the larger sum "
        "of the others."
    )


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
