"""Ranking: the runs of each (dataset, split) summarised as one table of models, each
metric a mean with its bootstrap interval (bootstrap.py) over the images a model processed
without error, ranked by the split's primary metric.
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from rainbench.leaderboard.bootstrap import Estimate, estimate, seed_for, units_of
from rainbench.leaderboard.results import KINDS, LeaderboardError, Results, Run
from rainbench.metrics.registry import MetricSpec, list_metrics
from rainbench.metrics.report import overflow_scale
from rainbench.wording import counted

# The contract's metrics in the order tables show them; other metrics follow.
METRIC_ORDER = ("psnr_y", "ssim_y", "psnr", "ssim", "niqe", "brisque", "piqe")
PRIMARY = {"real": "niqe", "real-paired": "psnr_y", "imported": "psnr_y", "synthetic": "psnr_y"}
RAIN_TYPE_ORDER = ("drizzle", "streak", "storm", "fog-like")
UNTAGGED = "untagged"  # real images whose rain type is null


@dataclass(frozen=True, eq=False)
class Row:
    """A model's line in a split's table."""

    run: Run
    rank: int | None  # None when the row is not ranked: see `unranked`
    estimates: dict[str, Estimate]  # per metric, over the images with status ok
    by_rain_type: dict[str, Estimate]  # the primary metric per rain type (real splits)
    s_per_mp: float  # median over ok images; NaN when none
    images_ok: int
    images_failed: int
    # Why the row is not ranked (its model trained on images of the split, its run has
    # not finished, it failed on images, it has no value of the primary metric, …); None
    # when it is ranked.
    unranked: str | None = None
    # Per metric, how many images the row processed without error lack its value (the
    # metric failed on the output) while another run of the split has one for them: its
    # mean leaves out images others' include.
    missing: dict[str, int] = field(default_factory=dict)
    # Why its values cannot be compared with the split's other runs' (an older metric
    # protocol, another version of the split); None when they can.
    stale: str | None = None

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
    images: int  # distinct keys over the runs not stale (all runs, where every one is)

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
        """The best mean of `metric` (of the primary metric on `rain_type`) among the
        ranked rows (all rows where none is ranked)."""
        found = self._best_estimate(metric, rain_type)
        return found.mean if found else None

    def best_standing(self, metric: str, rain_type: str | None = None) -> tuple | None:
        """`standing` of the best mean: a cell is the best of its column when its own
        standing equals it (of two infinite means, only the better is)."""
        found = self._best_estimate(metric, rain_type)
        return standing(found, self.lower_is_better[metric]) if found else None

    def contends(self, row: Row, metric: str | None = None) -> bool:
        """Whether `row`'s mean of `metric` (its speed, without one) may be its column's
        best: a ranked row (any, where none is ranked) whose mean leaves out no image
        another run's includes (its metric failed on the output, perhaps the hardest
        one), which is no fair best."""
        ranked = any(row is other for other in self._ranked())
        return ranked and not (metric and row.missing.get(metric))

    def _best_estimate(self, metric: str, rain_type: str | None) -> Estimate | None:
        found = [
            e
            for row in self.rows
            if (e := (row.by_rain_type if rain_type else row.estimates).get(rain_type or metric))
            and e.present
            and self.contends(row, metric)
        ]
        lower = self.lower_is_better[metric]
        return max(found, key=lambda e: standing(e, lower), default=None)

    def best_speed(self) -> float | None:
        """The fastest median speed among the ranked rows (all rows where none is ranked),
        as for the metrics: a run that failed on its hardest images is not the fastest."""
        return _best([r.s_per_mp for r in self._ranked() if math.isfinite(r.s_per_mp)], True)

    def _ranked(self) -> list[Row]:
        """The rows a column's best is chosen among: the ranked ones, else all."""
        return [row for row in self.rows if row.rank is not None] or list(self.rows)


def leaderboard_tables(results: Results) -> list[SplitTable]:
    """One ranked table per (dataset, split): per dataset by kind (real rain first,
    synthetic last, never mixed), then by name."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in results.runs:
        groups.setdefault((run.dataset, run.split), []).append(run)
    tables = [_split_table(dataset, split, runs) for (dataset, split), runs in groups.items()]
    return sorted(tables, key=lambda t: (t.dataset, KINDS.index(t.kind), t.split))


def _split_table(dataset: str, split: str, runs: list[Run]) -> SplitTable:
    where = f"{dataset}/{split}"
    kinds = {run.kind for run in runs if run.kind}
    if len(kinds) != 1:
        raise LeaderboardError(
            f"{where}: runs disagree on the kind of split ({', '.join(sorted(kinds))})"
            if kinds
            else f"{where}: no run says which kind of split it is ({', '.join(KINDS)})"
        )
    kind = kinds.pop()
    metrics = ordered_metrics({m for run in runs for m in run.metrics})
    lower_is_better = {m: _direction(m, runs, where) for m in metrics}
    primary = _primary(kind, metrics)
    rain_types = _rain_types(runs) if kind == "real" and primary else ()
    sequences = _sequences(runs)
    rows = [_row(run, metrics, primary, rain_types, sequences) for run in runs]
    latest = _latest_split(runs)
    newest = max((_protocol(run) for run in runs if _protocol(run) is not None), default=None)
    scored = {m: {key for run in runs for key in _scored_keys(run, m)} for m in metrics}
    rows = [
        replace(row, missing=_missing(row, scored), stale=_stale(row.run, latest, newest))
        for row in rows
    ]
    rows = [replace(row, unranked=_unranked(row, primary)) for row in rows]
    ranked = _rank(rows, primary, lower_is_better)
    # The split's images as its current runs scored them: those a stale run kept from
    # another version (left since, re-rendered under other keys) are not its.
    current = [row.run for row in rows if not row.stale] or runs
    return SplitTable(
        dataset=dataset,
        split=split,
        kind=kind,
        metrics=metrics,
        lower_is_better=lower_is_better,
        primary=primary,
        rain_types=rain_types,
        rows=ranked,
        images=len({key for run in current for key in run.scores["key"]}),
    )


def ordered_metrics(metrics: set[str]) -> tuple[str, ...]:
    """The contract's metrics in METRIC_ORDER, then any others by name."""
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
    spec = metric_specs().get(metric)
    if spec is None:
        raise LeaderboardError(
            f"{where}: unknown metric {metric!r} and no lower_is_better for it in the JSON"
        )
    return spec.lower_is_better


def metric_specs() -> dict[str, MetricSpec]:
    """The registered metrics by name (their direction, kind and description)."""
    return {spec.name: spec for spec in list_metrics()}


def _primary(kind: str, metrics: tuple[str, ...]) -> str | None:
    if PRIMARY[kind] in metrics:
        return PRIMARY[kind]
    if kind == "real":
        specs = metric_specs()
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


def _sequences(runs: list[Run]) -> dict[str, str]:
    """Each real pair's sequence (`group`) by key, as any run of the split recorded it: a
    pair's sequence is the dataset's, so rows written before eval recorded it (no `group`
    column) are drawn by the sequences the other runs give them."""
    found: dict[str, str] = {}
    for run in runs:
        if "group" in run.scores.columns:
            pairs = zip(run.scores["key"], run.scores["group"], strict=True)
            found.update((key, group) for key, group in pairs if isinstance(group, str) and group)
    return found


def _row(
    run: Run,
    metrics: tuple[str, ...],
    primary: str | None,
    rain_types: tuple[str, ...],
    sequences: dict[str, str],
) -> Row:
    ok = run.scores[run.scores["status"] == "ok"]

    def mean(values: pd.Series, *parts: str) -> Estimate:
        # Nulls are images a metric was not computed on: out of the mean and of n. An
        # infinite PSNR (an output equal to its ground truth) stays in, as a per-image mean
        # over a test set with BasicSR's PSNR keeps it: the mean is infinite, and says so.
        # Frames of one sequence (a real pair's `group`) are drawn together.
        array = values.to_numpy(dtype=np.float64)
        kept = ~np.isnan(array)
        groups = [sequences.get(key) for key in ok.loc[values.index, "key"]] if sequences else None
        # Values whose sum would overflow (1e308 on each image) are estimated at a scale
        # that keeps their mean and interval finite; ordinary ones, at 1, as they are.
        scale = overflow_scale(array[kept])
        found = estimate(
            array[kept] / scale,
            seed_for(run.dataset, run.split, run.model, *parts),
            units=None if groups is None else units_of(np.asarray(groups, dtype=object)[kept]),
        )
        return replace(
            found,
            mean=found.mean * scale,
            low=found.low * scale,
            high=found.high * scale,
            finite_sum=found.finite_sum * scale,
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


def standing(found: Estimate, lower_is_better: bool) -> tuple[float, float]:
    """A mean as an order, the better the larger. An infinite value counts as a cap C
    that grows without bound: means with infinite values order by their share of them,
    then by the finite values' sum over n, as (k·C + Σ finite) / n does for a large C."""
    if math.isinf(found.mean):
        sign = 1 if found.mean > 0 else -1
        key = (sign * found.infinite / found.n, found.finite_sum / found.n)
    else:
        key = (0.0, found.mean)
    return (-key[0], -key[1]) if lower_is_better else key


def _latest_split(runs: list[Run]) -> str | None:
    """The split's sha256 as the most recently finished run recorded it (None when no
    run records one)."""
    recorded = [
        (provenance["finished_at"], provenance["dataset"]["split_sha256"])
        for run in runs
        if (provenance := run.provenance)
        and provenance.get("finished_at")
        and (provenance.get("dataset") or {}).get("split_sha256")
    ]
    return max(recorded)[1] if recorded else None


def _scored_keys(run: Run, primary: str | None) -> set[str]:
    """The images the run has a value of `primary` for."""
    ok = run.scores[run.scores["status"] == "ok"]
    if primary is None or primary not in ok.columns:
        return set()
    return set(ok.loc[ok[primary].notna(), "key"])


def _protocol(run: Run) -> int | None:
    """The metric protocol version a run's values follow; None when it recorded none."""
    found = (run.provenance or {}).get("metric_protocol_version")
    return int(found) if isinstance(found, int | str) and str(found).isdigit() else None


def _missing(row: Row, scored: dict[str, set[str]]) -> dict[str, int]:
    """Row.missing: per metric of the row's run, the images it processed without error
    that lack its value while some run has one (`scored`, per metric); an image no run
    has a value for is no one's loss."""
    ok = set(row.run.scores.loc[row.run.scores["status"] == "ok", "key"])
    found = {
        metric: len((ok - _scored_keys(row.run, metric)) & scored[metric])
        for metric in row.estimates
    }
    return {metric: count for metric, count in found.items() if count}


def _unranked(row: Row, primary: str | None) -> str | None:
    """Why a row is not ranked: a rank compares every method on the same images, all of
    them scored, none of them seen in training, by the same metric protocol on the same
    version of the split (Row.stale); None when it is ranked."""
    if primary is None:
        return "no metric was computed on this split"
    images = counted(row.images_ok + row.images_failed, "image")
    provenance = row.run.provenance or {}
    # eval's count of the split's images that come from the model's training captures.
    trained_on = provenance.get("trained_on") or {}
    if trained_on.get("images"):
        return f"trained on {trained_on['images']} of its {counted(trained_on['of'], 'image')}"
    if not row.run.complete:
        return "its run has not finished"
    if row.images_failed:
        return f"it failed on {row.images_failed} of {images}"
    if primary not in row.run.metrics:
        return f"its run did not compute {primary}, the metric this split is ranked by"
    if row.missing.get(primary):
        return f"{primary} was not computed on {row.missing[primary]} of {images}"
    if not row.estimates[primary].present:
        return f"{primary} was not computed on any of its {images}"
    return row.stale


def _stale(run: Run, latest: str | None, newest: int | None) -> str | None:
    """Row.stale: why the run's values cannot be compared with the split's other runs':
    they follow an older metric protocol than `newest` (the runs' newest), or were scored
    on another version of the split than `latest` (the most recently finished run's)."""
    split = ((run.provenance or {}).get("dataset") or {}).get("split_sha256")
    protocol = _protocol(run)
    if protocol is not None and newest is not None and protocol < newest:
        return (
            f"its values follow metric protocol {protocol}, the newest run's {newest}; run "
            "rainbench eval --rescore-stale for it again"
        )
    if latest and split and split != latest:
        return (
            f"it was scored on another version of the split (split {split[:12]}, the latest "
            f"run's {latest[:12]}); run rainbench eval for it again"
        )
    return None


def _rank(rows: list[Row], primary: str | None, lower_is_better: dict) -> tuple[Row, ...]:
    """Standard competition ranking (1, 1, 3) of the rows that can be ranked: equal means
    share a rank; the others follow, unranked."""

    def score(row: Row) -> tuple[float, float] | None:
        return None if row.unranked else standing(row.estimates[primary], lower_is_better[primary])

    scores = [score(row) for row in rows]
    known = [s for s in scores if s is not None]
    ranked = [
        replace(row, rank=None if mine is None else 1 + sum(s > mine for s in known))
        for row, mine in zip(rows, scores, strict=True)
    ]
    return tuple(sorted(ranked, key=lambda r: (r.rank is None, r.rank or 0, r.model)))


def _best(values: list[float], lower: bool) -> float | None:
    if not values:
        return None
    return min(values) if lower else max(values)
