"""How calibration examples are made, fitted and scored."""

from dataclasses import replace

import numpy as np

from rainbench.tagging.features import FEATURE_NAMES
from rainbench.tagging.tagger import CLASSES, RAIN_TYPES
from rainbench.train.tagger import (
    CALIBRATION_IMAGES,
    EVALUATION_IMAGES,
    FLAG_THRESHOLDS,
    HEIGHTS,
    QUALITIES,
    Example,
    Measured,
    cross_validate,
    evaluate,
    examples,
    fit,
    measure,
)


def test_calibration_and_evaluation_share_no_photograph():
    assert not set(CALIBRATION_IMAGES) & set(EVALUATION_IMAGES)


def test_examples_cover_every_class_size_and_quality_evenly():
    made = examples(("a.png",), per_image=len(HEIGHTS) * len(QUALITIES), seed=0)
    for label in CLASSES:
        mine = [e for e in made if e.label == label]
        combos = {(e.height, e.quality) for e in mine}
        assert len(combos) == len(mine) == len(HEIGHTS) * len(QUALITIES)
    assert len({e.seed for e in made}) == len(made)
    assert examples(("a.png",), 3, seed=0) == examples(("a.png",), 3, seed=0)


def test_an_example_is_a_pure_function_of_its_fields():
    example = Example(EVALUATION_IMAGES[0], "storm", seed=5, height=480, quality=75)
    assert measure(example) == measure(example)


def _separable(count: int, seed: int) -> list[Measured]:
    """Fake measurements where each class shifts a different feature."""
    rng = np.random.default_rng(seed)
    made = []
    for index in range(count):
        label = CLASSES[index % len(CLASSES)]
        values = rng.uniform(0.2, 0.3, len(FEATURE_NAMES))
        values[CLASSES.index(label)] += 0.5
        example = Example("x", label, index, 480, 90)
        made.append(Measured(example, dict(zip(FEATURE_NAMES, values.tolist(), strict=True))))
    return made


def test_fit_learns_a_separable_problem_and_evaluate_scores_it():
    tagger = fit(_separable(200, 0), l2=1e-3, calibration={"note": "test"})
    result = evaluate(tagger, _separable(100, 1))
    assert result.macro_f1 == 1.0 and result.clean_flagged == 0 and result.rain_missed == 0
    assert result.confusion.shape == (len(RAIN_TYPES), len(RAIN_TYPES))
    assert result.confusion.trace() == result.confusion.sum() == 80
    assert "| **storm** |" in result.to_markdown()


def _relabelled(measured: Measured) -> Measured:
    """The same measurement claimed to be the next rain type (clean stays clean)."""
    label = measured.example.label
    if label != "clean":
        label = RAIN_TYPES[(RAIN_TYPES.index(label) + 1) % len(RAIN_TYPES)]
    return Measured(Example("x", label, 0, 480, 90), measured.features)


def test_evaluate_counts_confusions():
    tagger = fit(_separable(200, 0), l2=1e-3, calibration={})
    result = evaluate(tagger, [_relabelled(m) for m in _separable(100, 2)])
    assert result.macro_f1 == 0.0
    # True streak examples look like drizzle (shifted feature 1) to the tagger.
    assert result.confusion[RAIN_TYPES.index("streak"), RAIN_TYPES.index("drizzle")] == 20
    assert result.clean_flagged == 0


def test_cross_validation_leaves_each_photograph_out():
    measured = [
        Measured(replace(m.example, image=f"photo{i % 3}"), m.features)
        for i, m in enumerate(_separable(600, 3))
    ]
    folds = cross_validate(measured, l2=1e-3)
    assert folds.macro_f1 == 1.0
    assert folds.flag_threshold == FLAG_THRESHOLDS[0] and folds.clean_flagged == 0
