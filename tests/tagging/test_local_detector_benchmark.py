"""benchmarks/tagging_local_detector.py: its network judges exactly what the shipped
kind of detector judges, fold by fold, and learns what it is taught."""

from dataclasses import replace

import numpy as np
import pytest

from rainbench.tagging.features import FEATURE_NAMES
from rainbench.tagging.tagger import CLASSES
from rainbench.train.tagger import (
    RAIN_MODELS,
    Example,
    HeldOut,
    Measured,
    leave_one_model_out,
)

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("tagging_local_detector")


def lined_luma(rainy: bool, rng: np.random.Generator) -> np.ndarray:
    """Grey noise, with sparse bright vertical lines a pixel wide where it rains."""
    pixels = rng.normal(90, 4, (48, 64))
    if rainy:
        for column in rng.choice(64, 6, replace=False):
            top = rng.integers(0, 32)
            pixels[top : top + 16, column] += 40
    return np.clip(pixels, 0, 255).astype(np.uint8)


def lined_examples() -> tuple[list[Measured], dict[Example, np.ndarray]]:
    rng = np.random.default_rng(0)
    measured, luma = [], {}
    for index in range(90):
        label = CLASSES[index % len(CLASSES)]
        model = None if label == "clean" else RAIN_MODELS[index // 5 % len(RAIN_MODELS)]
        example = Example("abc"[index // 10 % 3], label, model, index, 48, 90, False)
        values = rng.uniform(0.2, 0.3, len(FEATURE_NAMES)).tolist()
        measured.append(Measured(example, dict(zip(FEATURE_NAMES, values, strict=True)), 48))
        luma[example] = lined_luma(model is not None, rng)
    return measured, luma


def test_it_judges_the_rows_and_folds_the_shipped_kind_judges(bench, monkeypatch):
    monkeypatch.setattr(bench, "STEPS", 2)
    measured, luma = lined_examples()
    shipped = leave_one_model_out(measured, 1e-3, False, detector=True)
    [learned] = bench.network_held_out(measured, luma)
    assert [m.example for m in learned.measured] == [m.example for m in shipped.measured]
    assert learned.group == shipped.group
    assert learned.rain.shape == (len(learned.measured),)


def test_an_ensemble_is_its_first_network_and_others_averaged(bench, monkeypatch):
    monkeypatch.setattr(bench, "STEPS", 2)
    measured, luma = lined_examples()
    [alone] = bench.network_held_out(measured, luma)
    first, ensemble = bench.network_held_out(measured, luma, networks=3)
    np.testing.assert_array_equal(first.rain, alone.rain)  # K=1's results stand
    assert not np.allclose(ensemble.rain, first.rain)
    assert [m.example for m in ensemble.measured] == [m.example for m in first.measured]


def test_the_network_learns_thin_bright_lines_from_noise(bench, monkeypatch):
    monkeypatch.setattr(bench, "STEPS", 60)
    monkeypatch.setattr(bench, "CROP", 32)
    rng = np.random.default_rng(1)
    rainy = np.arange(40) % 2 == 0
    inputs = [bench.network_inputs(lined_luma(r, rng)) for r in rainy]
    net = bench.taught_network(inputs, rainy, seed=0)
    pictures = [bench.network_inputs(lined_luma(r, rng)) for r in (True, False) * 5]
    fresh = [bench.rain_logit(net, inputs) for inputs in pictures]
    assert min(fresh[0::2]) > max(fresh[1::2])


def test_the_light_table_gives_each_detector_day_and_night_rain_apart(bench):
    measured, _ = lined_examples()
    night = [
        replace(m, example=replace(m.example, night=i % 2 == 0)) for i, m in enumerate(measured)
    ]
    clean = np.array([m.example.model is None for m in night])
    lit = np.array([m.example.night for m in night])
    # Clean captures spread over 0.2–0.6, night rain above them all, day rain below.
    rain = np.where(clean, np.linspace(0.2, 0.6, len(night)), np.where(lit, 0.9, 0.1))
    count = len(night)
    groups = ["v1"] * count  # one held-out group, its clean captures among it
    held = HeldOut(night, np.zeros((count, len(CLASSES))), np.zeros(count), groups, rain)
    lines = bench.light_table({"detector": held})
    assert lines[2:] == ["| day rain | 0.0% / 0.0% |", "| night rain | 100.0% / 100.0% |"]


def test_by_light_takes_each_detector_where_it_is_meant_to_judge(bench):
    measured, _ = lined_examples()
    dark = [
        replace(m, features={**m.features, "brightness": 0.05 if i % 2 else 0.5})
        for i, m in enumerate(measured)
    ]
    night = np.array([i % 2 == 1 for i in range(len(dark))])
    clean = np.array([m.example.model is None for m in dark])
    count = len(dark)
    spread = np.linspace(0.2, 0.6, count)

    def held(sees: np.ndarray) -> HeldOut:
        # Rain it sees above every clean capture, the rest of the rain below them all.
        rain = np.where(clean, spread, np.where(sees, 0.9, 0.1))
        return HeldOut(dark, np.zeros((count, len(CLASSES))), np.zeros(count), ["v1"] * count, rain)

    both = bench.by_light(held(~night), held(night))
    flagged = bench.detection(both)["v1"]
    assert flagged == {0.05: 1.0, 0.1: 1.0}
    # Either detector alone finds the rain of one light only.
    assert bench.detection(held(~night))["v1"][0.05] < 0.6
    # A clean capture's rank is the share of its fold's clean captures below it.
    ranks = both.rain[clean]
    assert np.all(np.diff(ranks[np.argsort(spread[clean])]) > 0)
    assert 0 < ranks.min() < ranks.max() < 1


def test_either_flags_what_one_of_the_two_detectors_is_sure_of_without_a_night_test(bench):
    measured, _ = lined_examples()
    count = len(measured)
    halves = np.arange(count) % 2 == 1  # not the light: either needs no test for night
    clean = np.array([m.example.model is None for m in measured])

    def held(sees: np.ndarray, spread: np.ndarray) -> HeldOut:
        rain = np.where(clean, spread, np.where(sees, 0.9, 0.1))
        return HeldOut(
            measured, np.zeros((count, len(CLASSES))), np.zeros(count), ["v1"] * count, rain
        )

    # The two rank the clean captures in opposite orders, so the larger rank lifts them.
    rising, falling = np.linspace(0.2, 0.6, count), np.linspace(0.6, 0.2, count)
    one, other = held(halves, rising), held(~halves, falling)
    both = bench.either(one, other)
    assert bench.detection(both)["v1"] == {0.05: 1.0, 0.1: 1.0}
    assert bench.detection(one)["v1"][0.1] < 0.6
    assert np.all(both.rain == np.maximum(both.rain, bench._clean_ranks(one)))
    assert np.all(both.rain[clean] >= 0.5)  # the larger of two opposite ranks


def test_the_caveat_line_counts_night_found_and_day_taken_for_night(bench):
    measured, _ = lined_examples()
    rows = [
        replace(
            m,
            example=replace(m.example, night=i < 10),
            features={**m.features, "brightness": 0.05 if i < 8 or i == 50 else 0.5},
        )
        for i, m in enumerate(measured)
    ]
    assert bench.caveat_line(rows) == (
        "The night caveat: 8 of 10 captures rendered at night (clean 2 of 2, drizzle 2 of 2, "
        "streak 2 of 2, storm 1 of 2, fog-like 1 of 2), 1 of 80 rendered by day."
    )
