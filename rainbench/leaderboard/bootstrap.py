"""Means with 95% percentile-bootstrap intervals for the leaderboard. The seed comes from
what is estimated (dataset, split, model, metric), so a table renders to the same bytes
every time and two cells never share their resamples.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rainbench.seeds import seed_from

RESAMPLES = 2000
CONFIDENCE = 0.95
# Indices drawn per block of resamples: keeps memory bounded on splits of many images.
_BLOCK_INDICES = 1 << 22


@dataclass(frozen=True)
class Estimate:
    """A mean over `n` values and its bootstrap interval; NaNs when `n` is 0, and the
    interval NaN when there is one value, or the values are one sequence's frames, which
    say nothing of the spread between sequences. `infinite` of the values are infinite
    (a PSNR of an output equal to its ground truth): the mean is then infinite too."""

    mean: float
    low: float
    high: float
    n: int
    infinite: int = 0
    finite_sum: float = math.nan  # the sum of the finite values, to order infinite means

    @property
    def present(self) -> bool:
        return self.n > 0


def seed_for(*parts: str) -> int:
    """A 64-bit seed that depends only on `parts`."""
    return seed_from(*parts, bits=64, separator="\x1f")


def units_of(groups: Sequence | None) -> np.ndarray | None:
    """The unit of each value the bootstrap draws: values of one group (the frames of one
    video) share one, a value without a group is a unit of its own. None when every unit
    is a single value, where the plain bootstrap of values is the same thing."""
    if groups is None:
        return None
    index: dict[tuple, int] = {}
    units = [
        index.setdefault(("group", g) if isinstance(g, str) and g else ("value", i), len(index))
        for i, g in enumerate(groups)
    ]
    return None if len(index) == len(units) else np.asarray(units)


def draw_counts(
    rng: np.random.Generator, size: int, n: int, units: np.ndarray | None
) -> np.ndarray:
    """size × n: how often each of n values is drawn in each of `size` resamples; with
    `units`, whole units are drawn, as many as there are (a cluster bootstrap)."""
    if units is None:
        picks = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        return np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)
    count = int(units.max()) + 1
    picks = rng.integers(0, count, size=(size, count)) + count * np.arange(size)[:, None]
    drawn = np.bincount(picks.ravel(), minlength=size * count).reshape(size, count)
    return drawn[:, units]


def estimate(
    values: np.ndarray,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    units: np.ndarray | None = None,
) -> Estimate:
    """The mean of `values` with its percentile-bootstrap interval at `confidence`,
    drawing values, or whole `units` (units_of) where values are not independent.
    Infinite values stay in: every resample that draws one has an infinite mean."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    infinite = int(np.isinf(values).sum())
    # Summed in sorted order: the same values in another row order give the same mean to
    # the last bit, so that two methods with the same scores tie.
    ordered = np.sort(values)
    mean = float(ordered.mean())
    finite_sum = float(ordered[np.isfinite(ordered)].sum())
    # One image, or one sequence's frames: no spread to draw from (every resample of one
    # image is that image, an interval of width 0 that claims certainty).
    if n == 1 or (units is not None and not units.any()):
        return Estimate(mean, math.nan, math.nan, n, infinite, finite_sum)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_INDICES // n)
    if units is None:
        means = np.concatenate(
            [
                values[rng.integers(0, n, size=(min(block, resamples - start), n))].mean(axis=1)
                for start in range(0, resamples, block)
            ]
        )
    else:  # each resample's mean over the values its units bring, however many
        means = np.concatenate(
            [
                _weighted_means(draw_counts(rng, min(block, resamples - start), n, units), values)
                for start in range(0, resamples, block)
            ]
        )
    tail = (1 - confidence) / 2
    # Interpolating towards an infinite resample mean gives NaN or infinity: with one,
    # the interval's ends are resample means themselves.
    method = "inverted_cdf" if infinite else "linear"
    low, high = np.quantile(means, [tail, 1 - tail], method=method)
    return Estimate(mean, float(low), float(high), n, infinite, finite_sum)


def _weighted_means(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    # Infinite values only where drawn: 0 × inf would be NaN.
    drawn = np.where(counts > 0, values * np.maximum(counts, 1), 0.0)
    return drawn.sum(axis=1) / counts.sum(axis=1)
