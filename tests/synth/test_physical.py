"""The physically based rain model (recipes version 2): deterministic, leaving version
1 untouched, and behaving as the physics says: longer exposures streak longer, night
rain shows where it is lit, storms and fog veil the scene, and the camera chain treats
the rainy image and its ground truth alike."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from rainbench.demo.captures import render_scene
from rainbench.synth.acquisition import Acquisition, acquire
from rainbench.synth.physical import render_physical
from rainbench.synth.recipes import RECIPES, V2_RECIPES
from rainbench.synth.render import render

# sha256 of (rain, streaks, transmission) of render(render_scene(320, 240, 1), recipe, 11),
# taken before version 2 was added: version 1 must keep rendering these pixels.
V1_DIGESTS = {
    "drizzle": "0d57c384dba99e5d9f371fa92b609dd0b7c61f88e80161873959dceb6f11e846",
    "streak": "7070bb4dfe8119e56590c949236c4425fe95d48f8a2391bcf9a00d595dc4a595",
    "storm": "59ff02f63a92f7228b9ec415700b6accbfc01c8e417c1d6b3e1838f3c71fcb1c",
    "fog-like": "853b25cc21d3093ffbde3d7b3e9641d75f842786216d8be4ea51356166e2e8f4",
    "multi-streak": "4e73d66797288f8e1f18e238c0d65ce0cb42266ce9e80c0b2bc1e7b8545516c1",
    "heavy-streak": "bc538cfd89dc8bbbcd76720713c62a13d7e7148abf66a81605b56e953fe15402",
}


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return render_scene(320, 240, 1)


def digest(*arrays: np.ndarray | None) -> str:
    hasher = hashlib.sha256()
    for array in arrays:
        hasher.update(b"none" if array is None else array.tobytes())
    return hasher.hexdigest()


def test_version_1_renders_the_same_pixels(clean):
    found = {recipe: RECIPES[recipe].version for recipe in V1_DIGESTS}
    assert set(found.values()) == {"1"}
    for recipe, expected in V1_DIGESTS.items():
        rendered = render(clean, recipe, 11)
        assert rendered.ground_truth is None
        assert digest(rendered.rain, rendered.streaks, rendered.transmission) == expected, recipe


@pytest.mark.parametrize("recipe", V2_RECIPES)
def test_same_seed_same_bytes(clean, recipe):
    first, second = render(clean, recipe, 4), render(clean, recipe, 4)
    arrays = ("rain", "streaks", "transmission", "ground_truth")
    assert digest(*(getattr(first, a) for a in arrays)) == digest(
        *(getattr(second, a) for a in arrays)
    )
    assert first.params == second.params
    assert digest(render(clean, recipe, 5).rain) != digest(first.rain)


@pytest.mark.parametrize("recipe", V2_RECIPES)
def test_parameters_recorded_within_the_recipe_ranges(clean, recipe):
    spec = RECIPES[recipe]
    assert spec.version == "2" and spec.rain_type in recipe
    for seed in range(10):
        params = render_physical(clean, spec, seed, acquisition=False).params
        assert params["recipe"] == recipe and params["version"] == "2"
        for name, (low, high) in spec.ranges().items():
            assert low * (1 - 1e-3) <= params[name] <= high * (1 + 1e-3), (name, params[name])
        assert "acquisition" not in params
        json.dumps(params)


def test_render_dispatches_version_2(clean):
    assert digest(render(clean, "storm-v2", 3).rain) == digest(
        render_physical(clean, RECIPES["storm-v2"], 3).rain
    )
    with pytest.raises(ValueError):
        render(clean, "storm-v2", 3, intensity=0.1)


def test_longer_exposure_longer_streaks():
    still = dataclasses.replace(RECIPES["streak-v2"], wind=0.0, wind_jitter=(0.0, 0.0))
    image = np.full((240, 320, 3), 40, np.uint8)
    lengths, shares = [], []
    for exposure in (1 / 500, 1 / 30):
        recipe = dataclasses.replace(still, exposure=(exposure, exposure))
        rendered = render_physical(image, recipe, 2, acquisition=False)
        lengths.append(rendered.params["streak_length"])
        # Vertical streaks: how alike are pixels 6 rows apart, against 6 columns apart.
        layer = rendered.streaks.astype(float) - rendered.streaks.mean()
        vertical = (layer[6:] * layer[:-6]).mean()
        horizontal = (layer[:, 6:] * layer[:, :-6]).mean()
        shares.append(vertical / max(abs(horizontal), 1e-9))
    assert lengths[1] > 5 * lengths[0]
    assert shares[1] > shares[0]


def test_night_rain_shows_near_the_lights():
    night = np.full((240, 320, 3), 8, np.uint8)
    night[40:46, 60:66] = 255  # a lamp, where the model puts a light
    recipe = dataclasses.replace(RECIPES["streak-v2"], scene_far=(10.0, 10.0))
    rendered = render_physical(night, recipe, 1, night=True, acquisition=False)
    assert rendered.params["night"] and rendered.params["lights"]
    added = rendered.rain.astype(float).mean(2) - night.astype(float).mean(2)
    near = added[20:80, 20:110]
    far = added[20:80, 230:320]
    assert near.mean() > 2 * far.mean()
    assert render_physical(night, recipe, 1, acquisition=False).params["night"]


def test_storm_and_fog_veil_the_scene_more_than_drizzle(clean):
    def contrast(recipe: str) -> float:
        values = []
        for seed in range(3):
            rendered = render_physical(clean, RECIPES[recipe], seed, acquisition=False)
            values.append(rendered.rain[:120].std() / clean[:120].std())
        return float(np.mean(values))

    drizzle = contrast("drizzle-v2")
    assert drizzle > 0.9
    assert contrast("storm-v2") < drizzle - 0.1
    assert contrast("fog-like-v2") < drizzle - 0.1


@pytest.mark.parametrize("recipe", V2_RECIPES)
def test_splashes_only_in_storms(clean, recipe):
    params = render_physical(clean, RECIPES[recipe], 0, acquisition=False).params
    if recipe == "storm-v2":
        assert params["splash_count"] > 0
    else:
        assert "splash_count" not in params


@pytest.mark.parametrize("seed", range(4))
def test_camera_chain_applied_to_rain_and_ground_truth_alike(clean, seed):
    recipe = RECIPES["streak-v2"]
    rendered = render_physical(clean, recipe, seed)
    chain = Acquisition(**rendered.params["acquisition"])
    noise_seed = rendered.params["acquisition_seed"]
    bare = render_physical(clean, recipe, seed, acquisition=False)
    assert bare.ground_truth is None and bare.rain.shape == clean.shape
    assert np.array_equal(rendered.ground_truth, acquire(clean, chain, noise_seed))
    assert np.array_equal(rendered.rain, acquire(bare.rain, chain, noise_seed))
    shape = rendered.rain.shape
    assert rendered.ground_truth.shape == shape
    assert rendered.streaks.shape == rendered.transmission.shape == shape[:2]


def test_any_size_renders():
    for size in ((1, 1), (3, 2), (1200, 3), (3, 1200)):
        image = np.full((*size, 3), 60, np.uint8)
        for recipe in V2_RECIPES:
            rendered = render_physical(image, RECIPES[recipe], 0, acquisition=False)
            assert rendered.rain.shape == image.shape
