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
    """A mean over `n` values and its bootstrap interval; NaNs when `n` is 0."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def present(self) -> bool:
        return self.n > 0


def seed_for(*parts: str) -> int:
    """A 64-bit seed that depends only on `parts`."""
    return seed_from(*parts, bits=64, separator="\x1f")


def estimate(
    values: np.ndarray, seed: int, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> Estimate:
    """The mean of `values` with its percentile-bootstrap interval at `confidence`."""
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
    low, high = np.quantile(means, [tail, 1 - tail])
    return Estimate(float(values.mean()), float(low), float(high), n)
