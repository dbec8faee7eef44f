"""The screen-blend rain model's own physics: it only brightens in the rain-only types,
and keeps its look when the image grows. What it shares with the other separately
written model is pinned in test_rain_models.py."""

import numpy as np
import pytest

from rainbench.synth.screen import render_screen


def scene(rows: int, cols: int) -> np.ndarray:
    """A graded RGB scene with a little of everything between black and white."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    image = np.stack([50 + 90 * y / rows, 80 + 60 * np.sin(6 * x / cols), 140 - 60 * y / rows], -1)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("rain_type", ["drizzle", "streak"])
def test_screen_blend_never_darkens_in_the_rain_only_types(rain_type):
    clean = scene(160, 200)
    clean[:20] = 255  # saturated sky: the screen blend must hold it, not wrap it
    clean[-20:] = 0
    for seed in range(5):
        rainy, _ = render_screen(clean, rain_type, seed)
        assert (rainy >= clean).all()
        assert (rainy > clean).any()


def test_rain_covers_alike_at_any_height():
    def covered(rows: int) -> float:
        clean = np.full((rows, rows * 4 // 3, 3), 80, dtype=np.uint8)
        rainy = [render_screen(clean, "streak", seed)[0] for seed in (1, 2)]
        return float(np.mean([(image > clean + 8).any(-1).mean() for image in rainy]))

    small, large = covered(240), covered(1200)
    assert small > 0
    assert 0.6 < large / small < 1.6
