"""The photometric rain model's own physics: streaks blend towards the drops' own light
(brighter over dark ground, darker over a sky brighter than that light), and are pixels
wide up to the canvas. What it shares with the other separately written model is pinned
in test_rain_models.py."""

import numpy as np

from rainbench.synth.photometric import CANVAS_ROWS, render_photometric


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_streaks_brighten_dark_ground_and_darken_a_brighter_sky():
    """The alpha blend's signature, which additive and screen rain never show: a drop
    shows its surroundings' light, so over a sky brighter than that it is darker."""
    clean = np.full((300, 400, 3), 10, dtype=np.uint8)
    clean[:30] = 255  # a thin band of bright sky over a dark scene
    darker = brighter = 0
    for seed in range(4):
        rainy, _ = render_photometric(clean, "streak", seed)
        change = luminance(rainy) - luminance(clean)
        darker += int((change[:30] < -8).sum())
        brighter += int((change[60:] > 8).sum())
    assert darker > 0
    assert brighter > 100 * 4


def test_streaks_are_pixels_wide_up_to_the_canvas_and_scale_with_the_image_beyond():
    """A streak is 1–3 px wide up to CANVAS_ROWS (as a drop's image is on a sensor) and
    as long as a share of the height, so the light rain adds per pixel falls as 1/height;
    above the canvas its look is the image's: a 2400-row render adds what a 1200-row
    one does."""

    def added(rows: int) -> float:
        clean = np.full((rows, rows * 4 // 3, 3), 30, dtype=np.uint8)
        rainy = [render_photometric(clean, "streak", seed)[0] for seed in (1, 2)]
        return float(np.mean([(luminance(image) - luminance(clean)).mean() for image in rainy]))

    small, canvas, large = added(240), added(CANVAS_ROWS), added(2 * CANVAS_ROWS)
    assert 3 < small / canvas < 8  # 1200 / 240 = 5
    assert 0.8 < large / canvas < 1.25
