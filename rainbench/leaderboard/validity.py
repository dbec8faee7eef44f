"""Whether a no-reference metric can be trusted to rank derainers: on every paired split
(one with ground truth), how far each no-reference metric agrees with psnr_y and ssim_y,
across methods and across images, with bootstrap intervals, and the pairs of methods it
ranks against both of them. The renderers show it under the no-reference columns.
"""

import math
from dataclasses import dataclass

import numpy as np

from rainbench.leaderboard.bootstrap import (
    CONFIDENCE,
    RESAMPLES,
    Estimate,
    draw_counts,
    seed_for,
    units_of,
)
from rainbench.leaderboard.cells import format_value, metric_label
from rainbench.leaderboard.ranking import SplitTable, leaderboard_tables, metric_specs
from rainbench.leaderboard.results import Results, Run
from rainbench.wording import counted

REFERENCES = ("psnr_y", "ssim_y")  # what a no-reference metric is checked against
DEFAULT_SEED = 0
UNITS = {"psnr_y": " dB", "psnr": " dB"}
# Weights per block of resamples (methods × images × resamples): bounds the memory.
_BLOCK_VALUES = 1 << 22


@dataclass(frozen=True)
class Correlation:
    """A rank correlation over `n` items (methods or images) with its percentile-bootstrap
    interval; NaN where it is undefined (every value tied)."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return {
            "value": _json_float(self.value),
            "low": _json_float(self.low),
            "high": _json_float(self.high),
            "n": self.n,
        }


@dataclass(frozen=True)
class Agreement:
    """How far a no-reference metric orders outputs as `reference` does: +1 when it always
    calls better what the reference calls better, −1 when always the opposite."""

    reference: str
    across_methods: Correlation  # Kendall τ-b of the methods' means; NaN below 2 methods
    across_images: Correlation  # Spearman ρ over every (method, image); n = images

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "across_methods": self.across_methods.to_dict(),
            "across_images": self.across_images.to_dict(),
        }


@dataclass(frozen=True)
class Discordance:
    """The no-reference metric ranks `above` over `below`, yet `below` beats `above` on
    every reference by more than the bootstrap noise (its lead's interval excludes 0)."""

    metric: str
    above: str
    below: str
    advantages: dict[str, Estimate]  # per reference: below's lead, positive = better

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "above": self.above,
            "below": self.below,
            "advantages": {
                reference: {
                    "mean": found.mean,
                    "low": found.low,
                    "high": found.high,
                    "n": found.n,
                }
                for reference, found in self.advantages.items()
            },
            "text": discordance_text(self),
        }


@dataclass(frozen=True)
class MetricValidity:
    """One no-reference metric on one paired split, over the images every method compared
    scored (status ok, every value finite)."""

    metric: str
    lower_is_better: bool
    models: tuple[str, ...]  # the complete runs with the metric and every reference
    images: int
    agreements: tuple[Agreement, ...]  # one per reference
    discordances: tuple[Discordance, ...]

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "lower_is_better": self.lower_is_better,
            "models": list(self.models),
            "images": self.images,
            "agreements": [a.to_dict() for a in self.agreements],
            "discordances": [d.to_dict() for d in self.discordances],
        }


@dataclass(frozen=True)
class SplitValidity:
    dataset: str
    split: str
    kind: str
    references: tuple[str, ...]
    metrics: tuple[MetricValidity, ...]
    left_out: tuple[str, ...]  # models whose run is incomplete
    seed: int
    resamples: int
    # A sentence per no-reference metric that no image could measure, saying why.
    unmeasured: tuple[str, ...] = ()
    # Models left out as their values are not comparable with the other runs' (Row.stale:
    # an older metric protocol, another version of the split), as the table says.
    stale: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return f"{self.dataset} / {self.split}"

    @property
    def discordances(self) -> tuple[Discordance, ...]:
        return tuple(d for m in self.metrics for d in m.discordances)

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "kind": self.kind,
            "references": list(self.references),
            "metrics": [m.to_dict() for m in self.metrics],
            "left_out": list(self.left_out),
            "stale": list(self.stale),
            "unmeasured": list(self.unmeasured),
            "seed": self.seed,
            "resamples": self.resamples,
            "confidence": CONFIDENCE,
        }


def results_validity(
    results: Results, seed: int = DEFAULT_SEED, resamples: int = RESAMPLES
) -> list[SplitValidity]:
    """The validity of every paired split of `results` that has a no-reference metric and
    psnr_y or ssim_y, in the leaderboard's order."""
    return list(validity_by_split(leaderboard_tables(results), seed, resamples).values())


def split_validity(
    table: SplitTable, seed: int = DEFAULT_SEED, resamples: int = RESAMPLES
) -> SplitValidity | None:
    """How far each registered no-reference metric of a paired split agrees with its
    references; None on a real split, or where there is nothing to compare."""
    if table.kind == "real":
        return None
    specs = metric_specs()
    references = tuple(r for r in REFERENCES if r in table.metrics)
    no_reference = [m for m in table.metrics if m in specs and not specs[m].full_reference]
    if not references or not no_reference:
        return None
    runs = [row.run for row in table.rows if row.run.complete and not row.stale]
    measured, unmeasured = [], []
    for metric in no_reference:
        found = _metric_validity(table, runs, metric, references, seed, resamples)
        if found is not None:
            measured.append(found)
        elif why := _unmeasured(runs, metric, references):
            unmeasured.append(why)
    if not measured and not unmeasured:
        return None
    return SplitValidity(
        dataset=table.dataset,
        split=table.split,
        kind=table.kind,
        references=references,
        metrics=tuple(measured),
        left_out=tuple(row.model for row in table.rows if not row.run.complete),
        seed=seed,
        resamples=resamples,
        unmeasured=tuple(unmeasured),
        stale=tuple(row.model for row in table.rows if row.run.complete and row.stale),
    )


def _with_columns(runs: list[Run], columns: tuple[str, ...]) -> list[Run]:
    """The runs that computed every one of `columns`."""
    return [run for run in runs if all(c in run.metrics for c in columns)]


def _unmeasured(runs: list[Run], metric: str, references: tuple[str, ...]) -> str | None:
    """Why `metric` could not be measured where runs computed it with the references: no
    image has a finite value of each from every method (an infinite PSNR of one method's
    every output drops every image); None where no run computed them together."""
    columns = (metric, *references)
    runs = _with_columns(runs, columns)
    if not runs:
        return None
    infinite = []
    for run in runs:
        ok = run.scores[run.scores["status"] == "ok"]
        for column in columns:
            count = int(np.isinf(ok[column].to_numpy(dtype=np.float64)).sum())
            if count:
                infinite.append(
                    f"{run.model}'s {metric_label(column)} is infinite on {count} of "
                    f"{counted(len(ok), 'image')}"
                )
    labels = [metric_label(c) for c in columns]
    names = f"{', '.join(labels[:-1])} and {labels[-1]}"
    why = f" ({'; '.join(infinite)})" if infinite else ""
    return (
        f"{metric_label(metric)} is not measured: no image has a finite {names} from every "
        f"method{why}."
    )


def _metric_validity(
    table: SplitTable,
    runs: list[Run],
    metric: str,
    references: tuple[str, ...],
    seed: int,
    resamples: int,
) -> MetricValidity | None:
    columns = (metric, *references)
    runs = _with_columns(runs, columns)
    found = _common_images(runs, columns)
    if found is None:
        return None
    values, units = found
    # Every metric oriented so that higher is better: agreement is then a positive sign.
    values *= np.array([-1.0 if table.lower_is_better[c] else 1.0 for c in columns])[:, None, None]
    models, images = tuple(run.model for run in runs), values.shape[2]
    means, taus, rhos = _bootstrap(
        values,
        seed_for("validity", str(seed), table.dataset, table.split, metric),
        resamples,
        units,
    )
    once = np.ones((1, images))  # every image once: the estimates themselves
    agreements = tuple(
        Agreement(
            reference,
            Correlation(
                float(_kendall_rows(values[0].mean(axis=1)[None], values[r].mean(axis=1)[None])[0])
                if len(models) > 1
                else math.nan,
                *_interval(taus[:, r - 1]),
                len(models),
            ),
            Correlation(
                float(_weighted_spearman(values[0], values[r], once)[0]),
                *_interval(rhos[:, r - 1]),
                images,
            ),
        )
        for r, reference in enumerate(references, start=1)
    )
    return MetricValidity(
        metric=metric,
        lower_is_better=table.lower_is_better[metric],
        models=models,
        images=images,
        agreements=agreements,
        discordances=_discordances(metric, models, references, values, means),
    )


def _common_images(
    runs: list[Run], columns: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """columns × runs × images: the images every run scored with a finite value of every
    column, by key, with the units the bootstrap draws them in (units_of: the frames of
    one sequence together); None when there are none. A row without a key is no image
    another run's row can be matched with."""
    frames, groups = [], {}
    for run in runs:
        scores = run.scores
        ok = scores[(scores["status"] == "ok") & scores["key"].notna()].set_index("key")
        if "group" in ok.columns:
            groups.update(ok["group"].dropna().to_dict())
        ok = ok[list(columns)]
        frames.append(ok[np.isfinite(ok.to_numpy(dtype=np.float64)).all(axis=1)])
    if not frames:
        return None
    keys = sorted(set.intersection(*(set(frame.index) for frame in frames)))
    if not keys:
        return None
    stacked = np.stack([frame.loc[keys].to_numpy(dtype=np.float64) for frame in frames])
    units = units_of([groups.get(key) for key in keys])
    return np.ascontiguousarray(stacked.transpose(2, 0, 1)), units


def _bootstrap(
    values: np.ndarray, seed: int, resamples: int, units: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample images with replacement (or whole `units`: a sequence's frames), the same
    images for every method and column: each column's per-method means (resamples ×
    columns × methods), and each reference's Kendall τ across methods and Spearman ρ
    across images (resamples × references). A resample is how many times it draws each
    image, so nothing is copied or re-sorted."""
    columns, methods, images = values.shape
    # One image, or one sequence: no interval, no discordance (resamples of one image
    # are all that image, and every lead would look certain).
    if images == 1 or (units is not None and not units.any()):
        nan = np.full((resamples, columns - 1), np.nan)
        return np.full((resamples, columns, methods), np.nan), nan, nan.copy()
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_VALUES // (methods * images))
    means, taus, rhos = [], [], []
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        counts = draw_counts(rng, size, images, units)
        drawn = counts.sum(axis=1)[:, None, None]  # images in each resample
        block_means = np.einsum("ri,cmi->rcm", counts, values) / drawn
        means.append(block_means)
        taus.append(
            np.stack(
                [_kendall_rows(block_means[:, 0], block_means[:, c]) for c in range(1, columns)],
                axis=1,
            )
        )
        weights = _pooled_weights(counts, methods)
        ranks = [_weighted_ranks(values[c].ravel(), weights) for c in range(columns)]
        rhos.append(
            np.stack(
                [_weighted_pearson(ranks[0], ranks[c], weights) for c in range(1, columns)],
                axis=1,
            )
        )
    return np.concatenate(means), np.concatenate(taus), np.concatenate(rhos)


def _kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of each row of `x` with the same row of `y` (rows × items)."""
    first, second = np.triu_indices(x.shape[1], 1)
    dx = np.sign(x[:, first] - x[:, second])
    dy = np.sign(y[:, first] - y[:, second])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (dx * dy).sum(axis=1) / np.sqrt(
            np.count_nonzero(dx, axis=1) * np.count_nonzero(dy, axis=1)
        )


def _weighted_spearman(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Spearman's ρ of x with y (methods × images) pooled over every (method, image),
    each image taken as many times as a row of `counts` (resamples × images) says: what
    scipy's spearmanr gives on the values repeated that often, ties sharing the mean rank."""
    weights = _pooled_weights(counts, x.shape[0])
    return _weighted_pearson(
        _weighted_ranks(x.ravel(), weights), _weighted_ranks(y.ravel(), weights), weights
    )


def _pooled_weights(counts: np.ndarray, methods: int) -> np.ndarray:
    """Each image's count for every method, in the order of a methods × images ravel."""
    return np.tile(counts.astype(np.int32), methods)


def _weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The correlation of each row of `x` with the same row of `y`, each item counted as
    often as `weights` says."""
    total = weights.sum(axis=1, keepdims=True)
    x = x - (weights * x).sum(axis=1, keepdims=True) / total
    y = y - (weights * y).sum(axis=1, keepdims=True) / total
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * x * y).sum(axis=1) / np.sqrt(
            (weights * x * x).sum(axis=1) * (weights * y * y).sum(axis=1)
        )


def _weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The mean rank of each value in the multiset that holds it weights[r] times, per
    row r: the weight of the smaller values plus the middle of its own group of ties."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]  # where each group of ties starts
    group = np.empty(values.size, dtype=np.intp)
    group[order] = np.cumsum(first) - 1
    tied = np.add.reduceat(weights[:, order], np.flatnonzero(first), axis=1)
    before = np.cumsum(tied, axis=1) - tied
    return (before + (tied + 1) / 2)[:, group]


def _interval(samples: np.ndarray) -> tuple[float, float]:
    """The percentile interval of the defined resamples (a resample of all-tied values has
    no correlation)."""
    samples = samples[np.isfinite(samples)]
    if not samples.size:
        return math.nan, math.nan
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(samples, [tail, 1 - tail])
    return float(low), float(high)


def _discordances(
    metric: str,
    models: tuple[str, ...],
    references: tuple[str, ...],
    values: np.ndarray,
    means: np.ndarray,
) -> tuple[Discordance, ...]:
    found = []
    averages = values.mean(axis=2)  # columns × methods, oriented
    for a, above in enumerate(models):
        for b, below in enumerate(models):
            if not averages[0, a] > averages[0, b]:
                continue
            advantages = {
                reference: Estimate(
                    float(averages[r, b] - averages[r, a]),
                    *_interval(means[:, r, b] - means[:, r, a]),
                    values.shape[2],
                )
                for r, reference in enumerate(references, start=1)
            }
            if all(lead.low > 0 for lead in advantages.values()):
                found.append(Discordance(metric, above, below, advantages))
    return tuple(found)


def discordance_text(found: Discordance) -> str:
    """One line, e.g. '⚠ PIQE ranks nlcl above identity, which beats it by 3.7 dB PSNR-Y
    [2.9, 4.6] and 0.077 SSIM-Y [0.050, 0.10]'."""
    leads = " and ".join(
        f"{_lead(lead.mean, lead.mean)}{UNITS.get(reference, '')} {metric_label(reference)} "
        f"[{_lead(lead.low, lead.mean)}, {_lead(lead.high, lead.mean)}]"
        for reference, lead in found.advantages.items()
    )
    return (
        f"⚠ {metric_label(found.metric)} ranks {found.above} above {found.below}, "
        f"which beats it by {leads}"
    )


def _lead(value: float, scale: float) -> str:
    """`value` to two significant digits of `scale`."""
    rounded = abs(float(f"{scale:.2g}"))  # 0.0999… is shown as 0.10, not 0.100
    decimals = max(0, 1 - math.floor(math.log10(rounded))) if rounded else 2
    return format_value(value, decimals)


def correlation_text(found: Correlation) -> tuple[str, str, str]:
    """(value, low, high) as shown: '0.67', '-0.33', '1.00'; dashes where undefined."""
    return tuple(format_value(v, 2) for v in (found.value, found.low, found.high))


def correlation_sign(found: Correlation) -> str | None:
    """'agree' or 'disagree' where the whole interval lies on one side of 0."""
    if found.low > 0:
        return "agree"
    if found.high < 0:
        return "disagree"
    return None


def validity_note(seed: int = DEFAULT_SEED, resamples: int = RESAMPLES) -> str:
    """What the agreement rows under a paired split's table mean, and how they were
    computed; the same for every split."""
    references = " and ".join(metric_label(r) for r in REFERENCES)
    return (
        "Can a no-reference metric be trusted here? On splits with ground truth, the rows "
        f"under the table measure how far each no-reference metric agrees with {references}: "
        "+1 when it calls better what they call better, −1 when the opposite. τ is Kendall's "
        "τ between the methods' means (n methods), ρ is Spearman's ρ over every (method, "
        "image) pair (n images), both on the images every method scored, with "
        f"{CONFIDENCE:.0%} percentile-bootstrap intervals that resample those images (a "
        "real pair's frames with their whole sequence), the same for every method "
        f"({resamples} resamples, seed {seed}). ⚠ marks a metric that "
        f"ranks a method above one that beats it on {references} by more than that noise; "
        "each such pair is listed under its table."
    )


def validity_caveats(validity: SplitValidity) -> list[str]:
    """What to keep in mind reading one split's agreement rows."""
    caveats = []
    if any(len(m.models) == 2 for m in validity.metrics):
        caveats.append("With 2 methods τ can only be +1 or −1.")
    if any(len(m.models) == 1 for m in validity.metrics):
        caveats.append("With 1 method there is no τ.")
    if validity.left_out:
        caveats.append(f"Left out of τ and ρ as incomplete: {', '.join(validity.left_out)}.")
    if validity.stale:
        caveats.append(
            "Left out of τ and ρ as not comparable with the other runs (an older metric "
            f"protocol or another version of the split): {', '.join(validity.stale)}."
        )
    return [*caveats, *validity.unmeasured]


@dataclass(frozen=True)
class AgreementRow:
    """A line under a split's table: one statistic against one reference, with a cell
    under each no-reference column (None under the others)."""

    symbol: str  # τ or ρ
    reference: str
    across: str  # methods or images
    cells: tuple[Correlation | None, ...]  # one per table.metrics

    @property
    def label(self) -> str:
        return f"{self.symbol} with {metric_label(self.reference)} across {self.across}"


def agreement_rows(table: SplitTable, validity: SplitValidity) -> list[AgreementRow]:
    """τ against each reference, then ρ against each: the rows under `table`'s columns;
    none where no metric was measured."""
    by_metric = {m.metric: m for m in validity.metrics}
    if not by_metric:
        return []
    return [
        AgreementRow(
            symbol,
            reference,
            across,
            tuple(
                getattr(by_metric[m].agreements[r], f"across_{across}") if m in by_metric else None
                for m in table.metrics
            ),
        )
        for symbol, across in (("τ", "methods"), ("ρ", "images"))
        for r, reference in enumerate(validity.references)
    ]


def flagged(validity: SplitValidity | None) -> set[str]:
    """The no-reference metrics that rank some method against the references."""
    return {d.metric for d in validity.discordances} if validity else set()


def real_split_note(table: SplitTable, validities: list[SplitValidity]) -> str | None:
    """On a real split, where its no-reference metrics were checked: the paired splits of
    the same dataset (the same cameras and resolution)."""
    if table.kind != "real":
        return None
    checked = [
        v
        for v in validities
        if v.dataset == table.dataset and any(m.metric in table.metrics for m in v.metrics)
    ]
    if not checked:
        return None
    metrics = [m for m in table.metrics if m in {x.metric for v in checked for x in v.metrics}]
    wrong = sum(d.metric in metrics for v in checked for d in v.discordances)
    labels = [metric_label(m) for m in metrics]
    names = " and ".join(filter(None, (", ".join(labels[:-1]), labels[-1])))
    text = (
        f"No ground truth here: how far {names} agree{'s' * (len(metrics) == 1)} with the "
        f"full-reference metrics is measured on {table.dataset}'s paired splits "
        f"({', '.join(v.split for v in checked)})"
    )
    if wrong:
        text += f", where they rank {counted(wrong, 'pair')} of methods against them"
    return text + "."


def validity_by_split(
    tables: list[SplitTable], seed: int = DEFAULT_SEED, resamples: int = RESAMPLES
) -> dict[tuple[str, str], SplitValidity]:
    """The validity of each table that has one, by (dataset, split)."""
    found = {(t.dataset, t.split): split_validity(t, seed, resamples) for t in tables}
    return {key: v for key, v in found.items() if v is not None}


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None
