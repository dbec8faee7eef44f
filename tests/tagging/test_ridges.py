"""The thin-line measurements: polarity, orientation, segments, and their robustness to
exposure, noise and size."""

import math

import numpy as np
import pytest
from scipy import ndimage

from rainbench.tagging.ridges import ridge_features


def _texture(rows: int = 240, cols: int = 320, seed: int = 0) -> np.ndarray:
    """A smooth random scene with no preferred orientation, luma in [0.2, 0.6]."""
    noise = np.random.default_rng(seed).normal(0, 1, (rows, cols))
    smooth = ndimage.gaussian_filter(noise, 8)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (0.2 + 0.4 * smooth).astype(np.float32)


def _streaks(
    luma: np.ndarray, sign: float, count: int = 150, length: int = 14, angle: float = 80
) -> np.ndarray:
    """Thin lines of `length` px at `angle` degrees from horizontal, added (sign +1:
    brighter, like rain) or subtracted, scattered at random."""
    rng = np.random.default_rng(1)
    out = luma.copy()
    dx, dy = math.cos(math.radians(angle)), -math.sin(math.radians(angle))
    for _ in range(count):
        x, y = rng.uniform(0, luma.shape[1]), rng.uniform(0, luma.shape[0])
        for step in range(length):
            col, row = int(x + step * dx), int(y + step * dy)
            if 0 <= row < luma.shape[0] and 0 <= col < luma.shape[1]:
                out[row, col] += sign * 0.15
    return np.clip(out, 0, 1)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return _texture()


def test_bright_lines_read_as_rain_and_dark_ones_do_not(scene):
    clean = ridge_features(scene, 1.0, "thin")
    bright = ridge_features(_streaks(scene, +1), 1.0, "thin")
    dark = ridge_features(_streaks(scene, -1), 1.0, "thin")
    assert bright["thin_polarity"] > clean["thin_polarity"] + 0.5
    assert dark["thin_polarity"] < clean["thin_polarity"] - 0.5
    assert bright["thin_coherence"] > 0.5 > clean["thin_coherence"]
    # The filter gives a line flanks of the other polarity, so this is a small margin.
    assert bright["thin_excess"] > max(clean["thin_excess"], dark["thin_excess"]) + 0.05
    assert bright["thin_segments"] > 10 * max(clean["thin_segments"], 0.1)
    assert 8 <= bright["thin_length"] <= 20  # the lines are 14 px long
    assert bright["thin_spread"] > 0.9 and clean["thin_spread"] < 0.3


def test_a_few_long_lines_are_few_long_segments(scene):
    wires = _streaks(scene, +1, count=4, length=200, angle=90)
    features = ridge_features(wires, 1.0, "thin")
    rain = ridge_features(_streaks(scene, +1), 1.0, "thin")
    assert features["thin_segments"] < rain["thin_segments"] / 10
    assert features["thin_length"] > 5 * rain["thin_length"]


def test_exposure_and_noise_move_the_features_little(scene):
    rain = _streaks(scene, +1)
    base = ridge_features(rain, 1.0, "thin")
    darker = ridge_features(rain * np.float32(0.4), 1.0, "thin")
    noise = np.random.default_rng(2).normal(0, 0.01, rain.shape).astype(np.float32)
    noisy = ridge_features(np.clip(rain + noise, 0, 1), 1.0, "thin")
    for changed in (darker, noisy):
        assert changed["thin_coherence"] == pytest.approx(base["thin_coherence"], abs=0.15)
        assert changed["thin_polarity"] > 0.5
        assert changed["thin_segments"] > base["thin_segments"] / 3


def test_features_are_plain_deterministic_floats(scene):
    first = ridge_features(scene, 1.5, "ridge")
    assert first == ridge_features(scene.copy(), 1.5, "ridge")
    assert all(isinstance(v, float) and math.isfinite(v) for v in first.values())
    flat = ridge_features(np.full((50, 60), 0.5, np.float32), 1.0, "thin")
    assert flat["thin_segments"] == 0 and flat["thin_length"] == 0
