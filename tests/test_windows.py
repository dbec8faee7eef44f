"""Window filters: the edges-repeated box sum, and the minimum, which is the same under
either border rule (so the tagger's dark channel and the derainers' share it)."""

import numpy as np
import pytest

from rainbench.windows import box_sum, min_filter


def _edge_windows(values: np.ndarray, size: int) -> np.ndarray:
    """Every pixel's size×size window with edges repeated: H×W×size×size."""
    half = size // 2
    padded = np.pad(values, ((half, size - 1 - half), (half, size - 1 - half)), "edge")
    return np.lib.stride_tricks.sliding_window_view(padded, (size, size))


@pytest.mark.parametrize("size", [1, 2, 5, 9])
def test_box_sum_repeats_the_edges(size):
    values = np.random.default_rng(size).random((23, 31), dtype=np.float32)
    expected = _edge_windows(values, size).sum(axis=(2, 3), dtype=np.float64)
    np.testing.assert_allclose(box_sum(values, size), expected, rtol=1e-5)


@pytest.mark.parametrize("size", [2, 5, 9, 16])
def test_the_minimum_is_the_same_with_edges_repeated(size):
    # Few distinct values, so ties and equal minima are everywhere.
    values = np.random.default_rng(size).integers(0, 4, (23, 31)).astype(np.float32)
    expected = _edge_windows(values, size).min(axis=(2, 3))
    assert np.array_equal(min_filter(values, size), expected)
    assert min_filter(values, size).dtype == np.float32
