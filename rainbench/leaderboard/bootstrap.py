"""Means with 95% percentile-bootstrap intervals for the leaderboard. The seed comes from
what is estimated (dataset, split, model, metric), so a table renders to the same bytes
every time and two cells never share their resamples.
"""

import math
from dataclasses import dataclass

import numpy as np

from rainbench.seeds import seed_from

RESAMPLES = 2000
CONFIDENCE = 0.95
# Indices drawn per block of resamples: keeps memory bounded on splits of many images.
_BLOCK_INDICES = 1 << 22


@dataclass(frozen=True)
class Estimate:
    """A mean over `n` values and its bootstrap interval; NaNs when `n` is 0. `infinite`
    of the values are infinite (a PSNR of an output equal to its ground truth): the mean is
    then infinite too."""

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


def estimate(
    values: np.ndarray, seed: int, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> Estimate:
    """The mean of `values` with its percentile-bootstrap interval at `confidence`.
    Infinite values stay in: every resample that draws one has an infinite mean."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_INDICES // n)
    means = np.concatenate(
        [
            values[rng.integers(0, n, size=(min(block, resamples - start), n))].mean(axis=1)
            for start in range(0, resamples, block)
        ]
    )
    tail = (1 - confidence) / 2
    infinite = int(np.isinf(values).sum())
    # Interpolating towards an infinite resample mean gives NaN or infinity: with one,
    # the interval's ends are resample means themselves.
    method = "inverted_cdf" if infinite else "linear"
    low, high = np.quantile(means, [tail, 1 - tail], method=method)
    finite_sum = float(values[np.isfinite(values)].sum())
    return Estimate(float(values.mean()), float(low), float(high), n, infinite, finite_sum)
