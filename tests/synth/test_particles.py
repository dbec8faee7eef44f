"""The particle-camera rain model's own physics: rain adds the light around it, so at
night it shows where lamps light it; the veil thickens towards the top rows, read as
farther away. What it shares with the other separately written
models is pinned in test_rain_models.py."""

import numpy as np

from rainbench.synth.particles import render_particles


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_at_night_rain_shows_where_a_lamp_lights_it():
    clean = np.full((300, 400, 3), 4, dtype=np.uint8)
    clean[140:160, 20:40] = 255  # a lamp at the left edge of a dark street
    near = far = 0.0
    for seed in range(3):
        rainy, _ = render_particles(clean, "streak", seed)
        added = np.clip(luminance(rainy) - luminance(clean), 0, None)
        added[140:160, 20:40] = 0
        near += float(added[:, :100].sum())
        far += float(added[:, 300:].sum())
    assert near > 5 * far


def test_the_veil_thickens_with_the_distance_of_the_rows():
    """Koschmieder's law by row: the top of the frame is far, the bottom near, so under
    the same sky the upper ground goes greyer than the lower."""
    clean = np.full((300, 400, 3), 30, dtype=np.uint8)
    clean[:60] = 220  # sky
    rainy, params = render_particles(clean, "fog-like", 0)
    upper = luminance(rainy)[70:100].mean() - 30
    lower = luminance(rainy)[270:].mean() - 30
    assert params["veil"] > 0
    assert upper > 2 * lower > 0
