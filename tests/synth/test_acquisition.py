"""The camera acquisition chain: deterministic, sized by its scale, the identity when
neutral, and each step doing what it says."""

import json

import numpy as np
import pytest

from rainbench.demo.captures import render_scene
from rainbench.synth.acquisition import Acquisition, acquire, draw_acquisition

NEUTRAL = Acquisition(scale=1.0, quality=None, noise=0.0, sharpen=0.0, gamma=1.0, contrast=0.0)
BUSY = Acquisition(scale=0.5, quality=60, noise=0.02, sharpen=1.0, gamma=1.2, contrast=0.2)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return render_scene(320, 240, 2)


def test_same_arguments_same_pixels(scene):
    assert np.array_equal(acquire(scene, BUSY, 7), acquire(scene, BUSY, 7))
    assert not np.array_equal(acquire(scene, BUSY, 7), acquire(scene, BUSY, 8))


@pytest.mark.parametrize(
    ("scale", "size"), [(1.0, (240, 320)), (0.5, (120, 160)), (0.25, (60, 80))]
)
def test_scale_sets_the_size(scene, scale, size):
    out = acquire(scene, Acquisition(scale, None, 0.0, 0.0, 1.0, 0.0), 0)
    assert out.shape == (*size, 3) and out.dtype == np.uint8


def test_neutral_chain_is_the_identity(scene):
    out = acquire(scene, NEUTRAL, 3)
    assert np.array_equal(out, scene) and out is not scene


def test_jpeg_round_trip_is_applied(scene):
    out = acquire(scene, Acquisition(1.0, 40, 0.0, 0.0, 1.0, 0.0), 0)
    error = np.abs(out.astype(int) - scene).mean()
    assert 0.2 < error < 8


@pytest.mark.parametrize("level", [0, 128])
def test_noise_spread_as_asked(level):
    flat = np.full((200, 200, 3), level, np.uint8)
    out = acquire(flat, Acquisition(1.0, None, 0.02, 0.0, 1.0, 0.0), 1)
    expected = 0.02 * np.sqrt(1 + level / 255) * 255
    measured = out.astype(float) - level
    if level == 0:  # clipped at black: half a Gaussian, whose RMS is its σ
        measured = measured[measured > 0]
        assert np.sqrt(np.mean(measured**2)) == pytest.approx(expected, rel=0.1)
    else:
        assert measured.std() == pytest.approx(expected, rel=0.1)


def test_tone_curve_and_sharpening_change_the_image(scene):
    darker = acquire(scene, Acquisition(1.0, None, 0.0, 0.0, 1.25, 0.0), 0)
    assert darker.mean() < scene.mean()
    sharper = acquire(scene, Acquisition(1.0, None, 0.0, 1.5, 1.0, 0.0), 0)
    assert (
        np.abs(np.diff(sharper.astype(int), axis=1)).mean()
        > np.abs(np.diff(scene.astype(int), axis=1)).mean()
    )


def test_drawn_chains_within_their_ranges():
    rng = np.random.default_rng(0)
    drawn = [draw_acquisition(rng) for _ in range(300)]
    for a in drawn:
        assert 0.25 <= a.scale <= 1 and 0 <= a.noise <= 0.03 and 0 <= a.sharpen <= 1.5
        assert 0.8 <= a.gamma <= 1.25 and 0 <= a.contrast <= 0.3
        assert a.quality is None or 40 <= a.quality <= 95
        json.dumps(a.to_dict())
    assert 0.3 < np.mean([a.scale == 1 for a in drawn]) < 0.7
    assert any(a.quality is None for a in drawn)


def test_steps_run_in_the_documented_order(scene):
    """Tone curve, down-scale, noise, sharpening, JPEG: noise before the JPEG round trip
    (as a sensor's is), at the output size."""
    steps = [
        Acquisition(1.0, None, 0.0, 0.0, BUSY.gamma, BUSY.contrast),
        Acquisition(BUSY.scale, None, 0.0, 0.0, 1.0, 0.0),
        Acquisition(1.0, None, BUSY.noise, 0.0, 1.0, 0.0),
        Acquisition(1.0, None, 0.0, BUSY.sharpen, 1.0, 0.0),
        Acquisition(1.0, BUSY.quality, 0.0, 0.0, 1.0, 0.0),
    ]

    def in_order(order: list[int]) -> np.ndarray:
        out = scene
        for index in order:
            out = acquire(out, steps[index], 7)
        return out

    assert np.array_equal(acquire(scene, BUSY, 7), in_order([0, 1, 2, 3, 4]))
    assert not np.array_equal(acquire(scene, BUSY, 7), in_order([0, 1, 3, 4, 2]))
