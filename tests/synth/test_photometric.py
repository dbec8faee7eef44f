"""The photometric rain model: deterministic, leaves its input alone, blends streaks
towards the drops' own light (brighter over dark ground, darker over a sky brighter
than that light), draws them along the wind, mists storm and fog-like, and keeps its
look when the image grows."""

import json

import numpy as np
import pytest

from rainbench.synth.photometric import CANVAS_ROWS, RAIN_TYPES, render_photometric


def scene(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A graded, checkered, slightly noisy RGB scene: contrast to lose."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    image = np.stack([50 + 90 * y / rows, 80 + 60 * np.sin(6 * x / cols), 140 - 60 * y / rows], -1)
    image += 50 * ((y // max(rows // 6, 1) + x // max(cols // 6, 1)) % 2)[:, :, None]
    image += np.random.default_rng(seed).normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("rain_type", RAIN_TYPES)
def test_deterministic_for_a_seed(rain_type):
    clean = scene(90, 120)
    first, params = render_photometric(clean, rain_type, 7)
    again, params_again = render_photometric(clean, rain_type, 7)
    other, _ = render_photometric(clean, rain_type, 8)
    assert np.array_equal(first, again)
    assert params == params_again
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("rain_type", RAIN_TYPES)
@pytest.mark.parametrize("shape", [(97, 143, 3), (700, 90, 3), (5, 4, 3)])
def test_keeps_shape_and_dtype_and_leaves_the_input_alone(rain_type, shape):
    clean = scene(*shape[:2])
    before = clean.copy()
    rainy, params = render_photometric(clean, rain_type, 3)
    assert rainy.shape == shape
    assert rainy.dtype == np.uint8
    assert np.array_equal(clean, before)
    assert json.loads(json.dumps(params))["rain_type"] == rain_type


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


def correlation_at(layer: np.ndarray, dy: int, dx: int) -> float:
    """Correlation of the layer with itself shifted by (dy, dx); the shift wraps, which a
    lag of a few pixels barely feels."""
    shifted = np.roll(layer, (dy, dx), axis=(0, 1))
    return float(np.corrcoef(layer.ravel(), shifted.ravel())[0, 1])


@pytest.mark.parametrize("seed", range(4))
def test_streaks_lie_along_the_drawn_wind(seed):
    clean = np.full((300, 300, 3), 40, dtype=np.uint8)
    rainy, params = render_photometric(clean, "streak", seed)
    layer = luminance(rainy) - luminance(clean)
    angle = np.radians(params["angle_deg"])
    lag = 4
    along = correlation_at(layer, round(lag * np.cos(angle)), round(lag * np.sin(angle)))
    across = correlation_at(layer, round(-lag * np.sin(angle)), round(lag * np.cos(angle)))
    assert along > 0.3
    assert abs(across) < 0.1


def scene_contrast(image: np.ndarray) -> float:
    """The spread of the checker tiles' median luminances: the scene's contrast, which
    streaks over a fraction of each tile barely move."""
    tiles = luminance(image)[:180, :240].reshape(6, 30, 6, 40)
    return float(np.median(tiles, axis=(1, 3)).std())


def test_storm_and_fog_like_lose_more_contrast_than_drizzle():
    clean = scene(180, 240)

    def contrast_kept(rain_type: str) -> float:
        kept = [scene_contrast(render_photometric(clean, rain_type, s)[0]) for s in range(4)]
        return float(np.mean(kept)) / scene_contrast(clean)

    drizzle = contrast_kept("drizzle")
    assert drizzle > 0.9
    assert contrast_kept("storm") < drizzle - 0.2
    assert contrast_kept("fog-like") < drizzle - 0.3


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


def test_unknown_rain_type_names_the_known_ones():
    with pytest.raises(ValueError) as raised:
        render_photometric(scene(20, 20), "hail", 0)
    assert all(name in str(raised.value) for name in RAIN_TYPES)


def test_refuses_images_that_are_not_uint8_rgb():
    with pytest.raises(ValueError):
        render_photometric(np.zeros((20, 20), dtype=np.uint8), "drizzle", 0)
    with pytest.raises(ValueError):
        render_photometric(np.zeros((20, 20, 3), dtype=np.float32), "drizzle", 0)
