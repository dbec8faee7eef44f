"""What every separately written rain model does alike (the screen-blend, the
photometric and the particle-camera one): deterministic for a seed, leaves its input
alone, keeps the shape, draws streaks along the wind, takes contrast away in storm and
fog-like, and refuses what it cannot render."""

import json

import numpy as np
import pytest

from rainbench.synth.particles import render_particles
from rainbench.synth.photometric import render_photometric
from rainbench.synth.screen import RAIN_TYPES, render_screen

# Each model, and the grey of a flat scene its streaks show well against: screen rain
# brightens any ground, photometric rain shows the drops' own light, so a darker one, and
# particle rain adds light in linear light, which shows most on dark ground.
MODELS = {
    "screen": (render_screen, 90),
    "photometric": (render_photometric, 40),
    "particles": (render_particles, 40),
}


def scene(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """A graded, checkered, slightly noisy RGB scene: contrast to lose, colour to tint by."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    image = np.stack([50 + 90 * y / rows, 80 + 60 * np.sin(6 * x / cols), 140 - 60 * y / rows], -1)
    image += 50 * ((y // max(rows // 6, 1) + x // max(cols // 6, 1)) % 2)[:, :, None]
    image += np.random.default_rng(seed).normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rain_type", RAIN_TYPES)
def test_deterministic_for_a_seed(model, rain_type):
    render, _ = MODELS[model]
    clean = scene(90, 120)
    first, params = render(clean, rain_type, 7)
    again, params_again = render(clean, rain_type, 7)
    other, _ = render(clean, rain_type, 8)
    assert np.array_equal(first, again)
    assert params == params_again
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rain_type", RAIN_TYPES)
@pytest.mark.parametrize("shape", [(97, 143, 3), (700, 90, 3), (5, 4, 3)])
def test_keeps_shape_and_dtype_and_leaves_the_input_alone(model, rain_type, shape):
    render, _ = MODELS[model]
    clean = scene(*shape[:2])
    before = clean.copy()
    rainy, params = render(clean, rain_type, 3)
    assert rainy.shape == shape
    assert rainy.dtype == np.uint8
    assert np.array_equal(clean, before)
    assert json.loads(json.dumps(params))["rain_type"] == rain_type


def correlation_at(layer: np.ndarray, dy: int, dx: int) -> float:
    """Correlation of the layer with itself shifted by (dy, dx); the shift wraps, which a
    lag of a few pixels barely feels."""
    shifted = np.roll(layer, (dy, dx), axis=(0, 1))
    return float(np.corrcoef(layer.ravel(), shifted.ravel())[0, 1])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("seed", range(4))
def test_streaks_lie_along_the_drawn_wind(model, seed):
    render, ground = MODELS[model]
    clean = np.full((300, 300, 3), ground, dtype=np.uint8)
    rainy, params = render(clean, "streak", seed)
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


@pytest.mark.parametrize("model", MODELS)
def test_storm_and_fog_like_lose_more_contrast_than_drizzle(model):
    render, _ = MODELS[model]
    clean = scene(180, 240)

    def contrast_kept(rain_type: str) -> float:
        kept = [scene_contrast(render(clean, rain_type, s)[0]) for s in range(4)]
        return float(np.mean(kept)) / scene_contrast(clean)

    drizzle = contrast_kept("drizzle")
    assert drizzle > 0.9
    assert contrast_kept("storm") < drizzle - 0.2
    assert contrast_kept("fog-like") < drizzle - 0.3


@pytest.mark.parametrize("model", MODELS)
def test_unknown_rain_type_names_the_known_ones(model):
    render, _ = MODELS[model]
    with pytest.raises(ValueError) as raised:
        render(scene(20, 20), "hail", 0)
    assert all(name in str(raised.value) for name in RAIN_TYPES)


@pytest.mark.parametrize("model", MODELS)
def test_refuses_images_that_are_not_uint8_rgb(model):
    render, _ = MODELS[model]
    with pytest.raises(ValueError):
        render(np.zeros((20, 20), dtype=np.uint8), "drizzle", 0)
    with pytest.raises(ValueError):
        render(np.zeros((20, 20, 3), dtype=np.float32), "drizzle", 0)
