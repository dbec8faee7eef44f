"""How calibration examples are made, fitted, held out and scored."""

import numpy as np
import pytest

import rainbench.train.tagger as tagger_module
from rainbench import __version__
from rainbench.tagging.features import FEATURE_NAMES
from rainbench.tagging.tagger import CLASSES, RAIN_TYPES, UNLIKE, load_tagger
from rainbench.train.tagger import (
    BACKGROUNDS,
    CHECK_MODELS,
    EXAMPLE_LIBRARIES,
    HEIGHTS,
    POOLED_BACKGROUNDS,
    QUALITIES,
    RAIN_MODELS,
    CalibrationError,
    Example,
    HeldOut,
    Measured,
    background_photo,
    calibration_examples,
    detection,
    evaluate,
    examples,
    fit,
    fit_scale,
    fit_temperature,
    held_out_model,
    leave_one_background_out,
    leave_one_model_out,
    measure,
    measured_examples,
    probabilities,
    rescaled,
    robustness,
)
from rainbench.versions import installed_versions


def test_every_background_is_there_and_readable():
    for name in BACKGROUNDS:
        assert background_photo(name).is_file(), name


def test_a_missing_package_of_photographs_is_named_with_the_fix(monkeypatch):
    def missing(package):
        raise ModuleNotFoundError(package)

    monkeypatch.setattr(tagger_module.resources, "files", missing)
    with pytest.raises(CalibrationError, match=r"scikit-learn: pip install .*rainbench\[demo\]"):
        background_photo("temple")


def test_examples_cover_every_cell_and_condition():
    made = examples(("astronaut", "coffee"), per_cell=20, seed=0)
    for background in ("astronaut", "coffee"):
        for label in RAIN_TYPES:
            for model in RAIN_MODELS:
                mine = [
                    e
                    for e in made
                    if (e.background, e.label, e.model) == (background, label, model)
                ]
                assert len(mine) == 20
        cleans = [e for e in made if e.background == background and e.label == "clean"]
        assert len(cleans) == 20 * len(RAIN_MODELS) and {e.model for e in cleans} == {None}
    assert {e.height for e in made} == set(HEIGHTS)
    assert {e.quality for e in made} == set(QUALITIES)
    assert 0.15 < np.mean([e.night for e in made]) < 0.35
    assert len({e.seed for e in made}) == len(made)
    assert examples(("astronaut",), 2, seed=0) == examples(("astronaut",), 2, seed=0)


def test_check_examples_are_rain_only_and_leave_the_calibration_examples_as_they_were():
    made = examples(("astronaut",), per_cell=3, seed=0, models=CHECK_MODELS, clean=False)
    assert len(made) == 3 * len(RAIN_TYPES) * len(CHECK_MODELS)
    assert {e.model for e in made} == set(CHECK_MODELS)
    calibration = examples(("astronaut",), per_cell=3, seed=0)
    assert not {e.seed for e in made} & {e.seed for e in calibration}


@pytest.mark.parametrize("model", RAIN_MODELS + CHECK_MODELS)
def test_an_example_is_a_pure_function_of_its_fields(model):
    example = Example("coffee", "streak", model, seed=5, height=320, quality=70, night=True)
    first = measure(example)
    assert first == measure(example)
    assert first.height == 320 and set(first.features) == set(FEATURE_NAMES)


def _separable(count: int, seed: int, backgrounds=("a", "b", "c")) -> list[Measured]:
    """Fake measurements where each class shifts a different input feature."""
    rng = np.random.default_rng(seed)
    made = []
    for index in range(count):
        label = CLASSES[index % len(CLASSES)]
        model = None if label == "clean" else RAIN_MODELS[index // 5 % len(RAIN_MODELS)]
        values = rng.uniform(0.2, 0.3, len(FEATURE_NAMES))
        values[FEATURE_NAMES.index("thin_coherence") + CLASSES.index(label)] += 0.5
        background = backgrounds[index // 15 % len(backgrounds)]
        example = Example(background, label, model, index, 480, 90, False)
        made.append(Measured(example, dict(zip(FEATURE_NAMES, values.tolist(), strict=True)), 480))
    return made


def test_fit_learns_a_separable_problem():
    tagger = fit(_separable(300, 0), l2=1e-3, products=False, calibration={"note": "test"})
    test = _separable(150, 1)
    features = np.array([[m.features[n] for n in FEATURE_NAMES] for m in test])
    result = evaluate(test, tagger.probabilities(features), tagger.distance(features), tagger)
    assert result.macro_f1 == 1.0 and result.clean_flagged == 0 and result.flag_recall == 1
    assert result.confusion.trace() == result.confusion.sum() == 120
    assert "| **storm** |" in result.to_markdown()


def test_held_out_fits_never_see_what_they_judge():
    measured = _separable(450, 0)
    lobo = leave_one_background_out(measured, 1e-3, False)
    assert sorted(set(lobo.group)) == ["a", "b", "c"]
    assert all(m.example.background == g for m, g in zip(lobo.measured, lobo.group, strict=True))
    lomo = leave_one_model_out(measured, 1e-3, False)
    assert set(lomo.group) == set(RAIN_MODELS)
    for m, group in zip(lomo.measured, lomo.group, strict=True):
        assert m.example.model in (group, None)  # its own model's rain, or clean


def _with_check_rain(measured: list[Measured], seed: int) -> list[Measured]:
    """`measured` plus check-model rain shifted as _separable shifts each type."""
    rng = np.random.default_rng(seed)
    extra = []
    for index in range(120):
        label = RAIN_TYPES[index % len(RAIN_TYPES)]
        values = rng.uniform(0.2, 0.3, len(FEATURE_NAMES))
        values[FEATURE_NAMES.index("thin_coherence") + CLASSES.index(label)] += 0.5
        background = ("a", "b", "c")[index // 4 % 3]
        example = Example(background, label, CHECK_MODELS[0], 10_000 + index, 480, 90, False)
        extra.append(Measured(example, dict(zip(FEATURE_NAMES, values.tolist(), strict=True)), 480))
    return measured + extra


def test_check_models_are_judged_by_fits_on_every_calibration_model_and_never_fitted():
    measured = _with_check_rain(_separable(450, 0), 1)
    assert calibration_examples(measured) == measured[:450]
    lomo = leave_one_model_out(measured, 1e-3, False)
    assert list(dict.fromkeys(lomo.group)) == [*RAIN_MODELS, *CHECK_MODELS]
    checked = [m for m, g in zip(lomo.measured, lomo.group, strict=True) if g in CHECK_MODELS]
    assert {m.example.model for m in checked} == {CHECK_MODELS[0], None}
    # A fit that learnt from the check rain would judge it from its own examples; poison
    # the check rain's features and the calibration fits must not move.
    poisoned = [
        Measured(m.example, dict.fromkeys(FEATURE_NAMES, 9.0), 480)
        if m.example.model in CHECK_MODELS
        else m
        for m in measured
    ]
    again = leave_one_model_out(poisoned, 1e-3, False)
    calibration_rows = [g in RAIN_MODELS for g in lomo.group]
    assert np.array_equal(lomo.logits[calibration_rows], again.logits[calibration_rows])
    judged = robustness(measured, fit(measured[:450], 1e-3, False, {}), 1e-3, False)
    assert set(judged.by_model) == {*RAIN_MODELS, *CHECK_MODELS}
    assert judged.by_model[CHECK_MODELS[0]].macro_f1 == 1.0
    by_type = {f"{name}, every model held out" for name in RAIN_TYPES}
    assert set(judged.detection) == {*RAIN_MODELS, *CHECK_MODELS, POOLED_BACKGROUNDS, *by_type}
    assert f"| {CHECK_MODELS[0]} |" in "\n".join(judged.detection_table())
    assert set(judged.by_background) == {"a", "b", "c"}
    assert any(CHECK_MODELS[0] in line and "no fit" in line for line in judged.model_table())


def test_a_model_held_out_is_judged_by_fits_on_the_models_named_alone():
    measured = _with_check_rain(_separable(450, 0), 1)
    held = held_out_model(measured, CHECK_MODELS[0], RAIN_MODELS[:1], 1e-3, False)
    assert {m.example.model for m in held.measured} == {CHECK_MODELS[0], None}
    assert set(held.group) == {CHECK_MODELS[0]}

    def poisoned(models: tuple[str, ...]) -> list[Measured]:
        return [
            Measured(m.example, dict.fromkeys(FEATURE_NAMES, 9.0), 480)
            if m.example.model in models
            else m
            for m in measured
        ]

    # Rain of the models not named never reaches a fit ...
    again = held_out_model(poisoned(RAIN_MODELS[1:]), CHECK_MODELS[0], RAIN_MODELS[:1], 1e-3, False)
    assert np.array_equal(held.logits, again.logits)
    # ... while a check model named is fitted on like any other.
    judged = held_out_model(measured, RAIN_MODELS[0], CHECK_MODELS, 1e-3, False)
    moved = held_out_model(poisoned(CHECK_MODELS), RAIN_MODELS[0], CHECK_MODELS, 1e-3, False)
    assert not np.array_equal(judged.logits, moved.logits)


def test_unfitted_backgrounds_are_judged_and_never_fitted():
    measured = _separable(450, 0)
    # Poison background c's features: fits that never learn from c must not move.
    poisoned = [
        Measured(m.example, dict.fromkeys(FEATURE_NAMES, 9.0), 480)
        if m.example.background == "c"
        else m
        for m in measured
    ]
    for held_out in (leave_one_background_out, leave_one_model_out):
        first = held_out(measured, 1e-3, False, unfitted=frozenset({"c"}))
        again = held_out(poisoned, 1e-3, False, unfitted=frozenset({"c"}))
        fitted = np.array([m.example.background != "c" for m in first.measured])
        assert {m.example.background for m in first.measured} == {"a", "b", "c"}  # c is judged
        assert np.array_equal(first.logits[fitted], again.logits[fitted])
        # ... while fits that may learn from c do move.
        moved = held_out(poisoned, 1e-3, False)
        assert not np.array_equal(held_out(measured, 1e-3, False).logits, moved.logits)
    judged = robustness(measured, fit(measured, 1e-3, False, {}), 1e-3, False, frozenset({"c"}))
    assert set(judged.by_background) == {"a", "b", "c"}


def test_detection_counts_rain_above_the_level_a_share_of_clean_exceeds():
    clean = [Measured(Example("a", "clean", None, i, 480, 90, False), {}, 480) for i in range(20)]
    rain = [Measured(Example("a", "streak", "v1", i, 480, 90, False), {}, 480) for i in range(10)]
    # P(rain) 0.00 … 0.95 on the clean captures; 0.50 … 0.95 on the rainy ones.
    scores = np.concatenate([np.arange(20) / 20, 0.5 + np.arange(10) / 20])
    held = HeldOut(clean + rain, np.zeros((30, 5)), np.zeros(30), ["v1"] * 30, scores)
    found = detection(held)["v1"]
    # 5 % of clean lies above 0.9025 (one rainy capture beyond), 10 % above 0.855 (two).
    assert found == {0.05: 0.1, 0.1: 0.2}
    assert detection(held, pooled="all") == {"all": found}
    assert detection(held, by_type=True)["streak, every model held out"] == found


def test_the_detectors_scaling_recovers_a_known_one_read_as_even_odds():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, 20_000)
    truth = rng.uniform(size=z.size) < 1 / (1 + np.exp(-(2.0 * z + 0.5)))
    scale, shift = fit_scale(1 / (1 + np.exp(-z)), truth)
    prior = np.log(truth.sum() / (~truth).sum())
    assert abs(scale - 2.0) < 0.1
    assert abs(shift - (0.5 - prior)) < 0.1
    assert np.allclose(rescaled(np.array([0.5]), (scale, shift)), 1 / (1 + np.exp(-shift)))


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 4000)
    true_logits = rng.normal(0, 1, (4000, 4))
    true_logits[np.arange(4000), labels] += 1.5
    drawn = np.array([rng.choice(4, p=p) for p in probabilities(true_logits, 1.0)])
    # The same logits three times too sharp are fitted back to T ≈ 3.
    assert 2.5 < fit_temperature(3 * true_logits, drawn) < 3.5


def test_robustness_reports_every_model_condition_and_background():
    measured = _separable(450, 0)
    tagger = fit(measured, 1e-3, False, {})
    judged = robustness(measured, tagger, 1e-3, False)
    assert set(judged.by_model) == set(RAIN_MODELS)
    assert set(judged.by_background) == {"a", "b", "c"}
    assert judged.pooled.macro_f1 == 1.0
    summary = judged.summary()
    assert summary["worst_model_macro_f1"] == min(r.macro_f1 for r in judged.by_model.values())
    assert "| v1 |" in "\n".join(judged.model_table())
    assert any(line.startswith("| light: night |") for line in judged.condition_table())


def test_tag_eval_without_a_dataset_records_what_made_its_examples(monkeypatch):
    # Rendering and measuring the examples takes minutes: separable ones stand in.
    monkeypatch.setattr(
        tagger_module, "measured_examples", lambda *args, **kwargs: (_separable(450, 0), "")
    )
    judged = tagger_module.evaluate_held_out(per_cell=2, seed=7, workers=1)
    assert judged.examples == {
        "per_cell": 2,
        "seed": 7,
        "tagger": load_tagger().version,
        "rainbench": __version__,
        "versions": installed_versions(EXAMPLE_LIBRARIES),
    }
    assert {"numpy", "scipy", "pillow", "scikit-image"} <= judged.examples["versions"].keys()


def test_unlike_calibration_caps_the_confidence():
    tagger = fit(_separable(300, 0), l2=1e-3, products=False, calibration={})
    features = dict.fromkeys(FEATURE_NAMES, 0.25)
    shifted = FEATURE_NAMES.index("thin_coherence") + CLASSES.index("streak")
    features[FEATURE_NAMES[shifted]] = 0.75  # as _separable makes a streak
    near = tagger.tag(features, "rainy", 480)
    assert near.rain_type == "streak" and UNLIKE not in near.caveats
    features["ridge_clutter"] = 50.0  # nothing like any example
    far = tagger.tag(features, "rainy", 480)
    assert UNLIKE in far.caveats and far.confidence <= 0.4


def test_measured_examples_are_kept_and_those_kept_reused(tmp_path, monkeypatch):
    calls = []

    def fake_measure_all(todo, workers):
        calls.append(len(todo))
        return [Measured(e, dict.fromkeys(FEATURE_NAMES, 0.5), e.height) for e in todo]

    monkeypatch.setattr(tagger_module, "measure_all", fake_measure_all)
    cache = tmp_path / "m.jsonl"
    first, how = measured_examples(1, 0, 1, cache)
    assert "measured" in how and cache.exists()
    again, how = measured_examples(1, 0, 1, cache)
    assert again == first and "read from" in how and len(calls) == 1
    measured_examples(1, 1, 1, cache)  # another seed: other examples, measured anew
    assert calls == [calls[0], calls[0]]
    assert measured_examples(1, 0, 1, cache)[0] == first and len(calls) == 2  # kept too
    # The same seed with the check models' rain: only that is measured, the rest read.
    both, how = measured_examples(1, 1, 1, cache, check=True)
    assert len(calls) == 3 and calls[2] == len(both) - calls[0] and "read from" in how
    assert {m.example.model for m in both[calls[0] :]} == set(CHECK_MODELS)
    plain, _ = measured_examples(1, 1, 1, cache)  # a part of what is kept: nothing measured
    assert plain == both[: calls[0]] and len(calls) == 3
