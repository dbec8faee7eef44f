"""Feature measurement: what each feature responds to, and any picture measures."""

import numpy as np
import pytest
from PIL import Image

from rainbench.synth.render import render
from rainbench.tagging.features import FEATURE_NAMES, WORK_HEIGHT
from rainbench.tagging.measure import compute_features, working_image


def _scene(width: int = 600, height: int = 400, seed: int = 0) -> np.ndarray:
    """A smooth, blotchy scene with no orientation of its own."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(40, 200, (6, 9, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def test_every_feature_is_a_finite_number():
    features = compute_features(Image.fromarray(_scene()))
    assert list(features) == list(FEATURE_NAMES)
    assert all(np.isfinite(v) for v in features.values())


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (3, 900), (5000, 40), (64, 48)])
@pytest.mark.parametrize("mode", ["RGB", "L", "I;16", "RGBA", "CMYK"])
def test_any_size_and_mode_measures(size, mode):
    image = Image.fromarray(_scene(*size)).convert(mode)
    features = compute_features(image)
    assert all(np.isfinite(v) for v in features.values())


def test_a_flat_picture_has_no_streaks():
    features = compute_features(Image.new("RGB", (400, 300), (90, 100, 110)))
    assert features["streak_density"] == 0 and features["hf_level"] < 1e-6
    assert features["contrast"] < 1e-6


def test_the_working_image_has_a_fixed_height():
    for size in [(4000, 3000), (300, 200), (1000, 3000)]:
        assert working_image(Image.new("RGB", size)).shape[0] == WORK_HEIGHT


def test_streaks_raise_the_streak_features_and_give_their_angle():
    clean = _scene()
    rainy = render(clean, "streak", seed=1, intensity=0.06).rain
    before, after = (
        compute_features(Image.fromarray(clean)),
        compute_features(Image.fromarray(rainy)),
    )
    for name in (
        "hf_share",
        "streak_energy",
        "streak_coherence",
        "streak_length",
        "streak_agreement",
    ):
        assert after[name] > before[name] + 0.1, name
    assert 75 <= after["streak_angle"] <= 105  # the recipe draws 80–100°


def test_slanted_streaks_report_their_slant():
    clean = _scene()
    rainy = render(clean, "streak", seed=1, intensity=0.06).rain
    mirrored = compute_features(Image.fromarray(rainy[:, ::-1].copy()))
    angle = compute_features(Image.fromarray(rainy))["streak_angle"]
    assert mirrored["streak_angle"] == pytest.approx(180 - angle, abs=2)


def test_a_veil_lifts_the_dark_channel_and_lowers_transmission():
    clean = _scene()
    foggy = render(clean, "fog-like", seed=2).rain
    before, after = (
        compute_features(Image.fromarray(clean)),
        compute_features(Image.fromarray(foggy)),
    )
    assert after["dark_channel"] > before["dark_channel"] + 0.1
    assert after["transmission"] < before["transmission"] - 0.1
    assert after["contrast"] < before["contrast"]
    assert after["veil_gradient"] > before["veil_gradient"]  # thicker far away, at the top


def test_measuring_is_deterministic():
    image = Image.fromarray(render(_scene(), "storm", seed=3).rain)
    assert compute_features(image) == compute_features(image.copy())
