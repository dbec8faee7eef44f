"""The filters against direct definitions: box means over the part of each window
inside the image, He et al.'s guided filter formulas, and the windowed minimum."""

import numpy as np
import pytest
from scipy.ndimage import minimum_filter

from rainbench.models.filters import guided_filter, luma
from rainbench.windows import box_mean, min_filter


def direct_box_mean(image: np.ndarray, radius: int) -> np.ndarray:
    height, width = image.shape[:2]
    out = np.empty(image.shape)
    for y in range(height):
        for x in range(width):
            window = image[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
            out[y, x] = window.mean(axis=(0, 1))
    return out


def direct_guided_filter(guide, source, radius, eps):
    """He et al.'s algorithm 1 in float64 over direct box means."""
    guide, source = guide.astype(np.float64), source.astype(np.float64)
    if guide.ndim < source.ndim:
        guide = guide[..., None]

    def mean(x):
        return direct_box_mean(
            np.broadcast_to(x, np.broadcast_shapes(x.shape, source.shape)), radius
        )

    mean_guide, mean_source = mean(guide), mean(source)
    a = (mean(guide * source) - mean_guide * mean_source) / (
        mean(guide * guide) - mean_guide**2 + eps
    )
    b = mean_source - a * mean_guide
    return mean(a) * guide + mean(b)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(5).random((13, 17, 3), dtype=np.float32)


@pytest.mark.parametrize("radius", [0, 1, 2, 6, 20])
def test_box_mean_is_the_mean_over_the_window_inside_the_image(image, radius):
    expected = direct_box_mean(image, radius)
    assert np.allclose(box_mean(image, radius), expected, atol=1e-6)
    assert np.allclose(box_mean(image[..., 0], radius), expected[..., 0], atol=1e-6)
    in_place = image.copy()
    assert box_mean(in_place, radius, out=in_place) is in_place
    assert np.allclose(in_place, expected, atol=1e-6)


@pytest.mark.parametrize("radius", [1, 3])
def test_guided_filter_follows_he_et_al(image, radius):
    self_guided = guided_filter(image, image, radius, 0.02)
    assert self_guided.dtype == np.float32
    assert np.allclose(self_guided, direct_guided_filter(image, image, radius, 0.02), atol=1e-5)
    grey = luma(image)
    steered = guided_filter(grey, image, radius, 0.01)
    assert np.allclose(steered, direct_guided_filter(grey, image, radius, 0.01), atol=1e-5)


def test_guided_filter_keeps_strong_edges_and_smooths_weak_detail():
    step = np.zeros((20, 40), np.float32)
    step[:, 20:] = 1
    ripple = 0.05 * (np.indices((20, 40)).sum(axis=0) % 2).astype(np.float32)
    out = guided_filter(step + ripple, step + ripple, 3, 0.01)
    assert np.abs(out - (step + ripple.mean())).max() < 0.05  # the unit step stays sharp
    assert out[:, :17].std() < 0.2 * ripple[:, :17].std()  # the ripple is gone


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 15, 16, 40])
def test_min_filter_is_the_minimum_over_the_window_inside_the_image(image, size):
    plane = image[..., 1]
    expected = minimum_filter(plane, size=size, mode="constant", cval=np.inf)
    assert np.array_equal(min_filter(plane, size), expected)


def test_luma_is_rec601():
    rgb = np.array([[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]]], np.float32)
    assert np.allclose(luma(rgb), [[0.299, 0.587, 0.114, 1.0]])
