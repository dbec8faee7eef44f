"""How calibration examples are made, fitted, held out and scored."""

import numpy as np
import pytest

import rainbench.train.tagger as tagger_module
from rainbench.tagging.features import FEATURE_NAMES
from rainbench.tagging.tagger import CLASSES, RAIN_TYPES, UNLIKE
from rainbench.train.tagger import (
    BACKGROUNDS,
    HEIGHTS,
    QUALITIES,
    RAIN_MODELS,
    Example,
    Measured,
    background_photo,
    evaluate,
    examples,
    fit,
    fit_temperature,
    leave_one_background_out,
    leave_one_model_out,
    measure,
    measured_examples,
    probabilities,
    robustness,
)


def test_every_background_is_there_and_readable():
    for name in BACKGROUNDS:
        assert background_photo(name).is_file(), name


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


@pytest.mark.parametrize("model", RAIN_MODELS)
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


def test_measured_examples_are_kept_and_reused_only_when_the_same(tmp_path, monkeypatch):
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
    assert len(calls) == 2
