"""Fitting the tagger to a lab's labels: it learns a systematic disagreement from about
20 labels per type, stays with the shipped tagger when the labels agree with it, holds
a scene's captures out together, and refuses too few labels. The labs are
benchmarks/tagger_fit.py's, whose tables docs/tagging.md shows."""

import numpy as np
import pytest

from rainbench.tagging.fit import (
    MIN_PER_TYPE,
    PENALTIES,
    TooFewLabels,
    fit_to_labels,
    refit,
    stratified_folds,
)
from rainbench.tagging.tagger import RAIN_TYPES, load_tagger


@pytest.fixture(scope="module")
def labs(load_benchmark):
    return load_benchmark("tagger_fit")


def test_twenty_labels_per_type_teach_it_a_labs_fainter_streaks(labs):
    result = labs.run("fainter streaks", per_type=20, seed=0)
    # The shipped tagger calls most of this lab's streaks drizzle.
    assert result["cv_shipped"] < 0.72 and result["held_out_shipped"] < 0.72
    assert result["cv_fitted"] >= result["cv_shipped"] + 0.08
    assert result["held_out_fitted"] >= result["held_out_shipped"] + 0.08


def test_labels_that_agree_keep_it_near_the_shipped_tagger(labs):
    result = labs.run("agreeing", per_type=20, seed=0)
    assert result["cv_fitted"] >= result["cv_shipped"] - 0.02
    assert result["agrees_with_shipped"] >= 0.98
    # Even the weakest penalty of the grid keeps it close: the penalty does its work.
    tagger = load_tagger()
    rows, labels = labs.lab(tagger, labs.centres(tagger), "agreeing", 20, seed=1)
    fresh, _ = labs.lab(tagger, labs.centres(tagger), "agreeing", 300, seed=2)
    y = np.array([RAIN_TYPES.index(label) for label in labels])
    theta = refit(tagger, tagger.design(rows), y, min(PENALTIES))
    calls = (tagger.design(fresh) @ theta[:, :-1].T + theta[:, -1]).argmax(axis=1)
    assert np.mean(calls == labs.rain_probabilities(tagger, fresh).argmax(axis=1)) >= 0.9


def test_the_same_labels_give_the_same_tagger_in_any_order(labs):
    tagger = load_tagger()
    rows, labels = labs.lab(tagger, labs.centres(tagger), "fainter streaks", 8, seed=3)
    keys = [f"k{i:03d}" for i in range(len(rows))]
    first = fit_to_labels(tagger, rows, labels, keys)
    order = np.random.default_rng(0).permutation(len(rows))
    again = fit_to_labels(tagger, rows[order], [labels[i] for i in order], [keys[i] for i in order])
    assert np.array_equal(first.tagger.weights, again.tagger.weights)
    assert first.fitted == again.fitted and first.penalty == again.penalty
    # Only the rain types are refitted; the clean row (and so the flag) is shipped, with
    # the temperature folded into the weights.
    assert first.tagger.temperature == 1.0
    assert np.array_equal(first.tagger.weights[0], tagger.weights[0] / tagger.temperature)
    assert first.tagger.bias[0] == tagger.bias[0] / tagger.temperature


def test_a_type_without_enough_labels_keeps_its_shipped_row_and_is_still_called(labs):
    tagger = load_tagger()
    rows, labels = labs.lab(tagger, labs.centres(tagger), "fainter streaks", 12, seed=6)
    # A lab that labels only streak and storm, and one drizzle capture.
    kept = [i for i, label in enumerate(labels) if label in ("streak", "storm")]
    kept.append(labels.index("drizzle"))
    fit = fit_to_labels(tagger, rows[kept], [labels[i] for i in kept], [f"k{i}" for i in kept])
    assert fit.penalty is not None, "the lab's streaks differ: the fit moves"
    for name in ("drizzle", "fog-like"):  # as shipped, with the temperature folded in
        row = 1 + RAIN_TYPES.index(name)
        assert np.array_equal(fit.tagger.weights[row], tagger.weights[row] / tagger.temperature)
    fresh, truth = labs.lab(tagger, labs.centres(tagger), "fainter streaks", 100, seed=7)
    calls = [RAIN_TYPES[i] for i in labs.rain_probabilities(fit.tagger, fresh).argmax(axis=1)]
    shipped = [RAIN_TYPES[i] for i in labs.rain_probabilities(tagger, fresh).argmax(axis=1)]
    for name in ("drizzle", "fog-like"):
        right = [c == t for c, t in zip(calls, truth, strict=True) if t == name]
        before = [c == t for c, t in zip(shipped, truth, strict=True) if t == name]
        assert np.mean(right) >= np.mean(before) - 0.2 and np.mean(right) > 0.5, name


def test_too_few_labels_are_refused_saying_how_many_are_needed(labs):
    tagger = load_tagger()
    rows, labels = labs.lab(tagger, labs.centres(tagger), "fainter streaks", 4, seed=4)
    with pytest.raises(TooFewLabels) as refused:
        fit_to_labels(tagger, rows, labels, [str(i) for i in range(len(rows))])
    message = str(refused.value)
    assert f"at least {MIN_PER_TYPE} manual labels" in message
    assert "drizzle 4, streak 4, storm 4, fog-like 4" in message and "\n" not in message


def test_captures_of_one_scene_share_a_fold_and_the_folds_stay_stratified():
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 10, 40)
    scenes = np.repeat(np.arange(40), sizes)
    y = np.repeat(rng.integers(0, len(RAIN_TYPES), 40), sizes)  # a scene is of one type
    folds = stratified_folds(y, 5, scenes)
    for scene in range(40):
        assert len(set(folds[scenes == scene])) == 1
    for label in range(len(RAIN_TYPES)):
        per_fold = np.bincount(folds[y == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= sizes.max()
    # A capture its own scene: rows dealt out in turn, type by type, as before scenes.
    y = rng.integers(0, len(RAIN_TYPES), 200)
    dealt = np.empty_like(y)
    start = 0
    for label in range(len(RAIN_TYPES)):
        rows = np.flatnonzero(y == label)
        dealt[rows] = (start + np.arange(len(rows))) % 5
        start += len(rows)
    assert np.array_equal(stratified_folds(y, 5), dealt)
    assert np.array_equal(stratified_folds(y, 5, np.arange(200)), dealt)


def test_holding_scenes_out_together_keeps_the_agreement_from_overstating_the_fit(labs):
    runs = [labs.run_scenes(per_type=20, seed=seed) for seed in range(5)]

    def mean(column: str) -> float:
        return float(np.mean([run[column] for run in runs]))

    # Judged one by one, a fit meets scenes it learnt and claims more than it gives.
    assert mean("cv_apart") >= mean("held_out_apart") + 0.05
    # Judged a scene at a time, the claim is no higher than agreement on new scenes.
    assert mean("cv_together") <= mean("held_out_together") + 0.02


def test_labels_of_one_scene_are_refused(labs):
    tagger = load_tagger()
    rows, labels = labs.lab(tagger, labs.centres(tagger), "fainter streaks", 8, seed=3)
    keys = [str(i) for i in range(len(rows))]
    with pytest.raises(TooFewLabels, match="at least 2 scenes"):
        fit_to_labels(tagger, rows, labels, keys, ["burst"] * len(rows))


def test_labels_of_fewer_scenes_than_folds_are_held_out_in_as_many_folds(labs):
    tagger = load_tagger()
    rows, labels = labs.lab(tagger, labs.centres(tagger), "fainter streaks", 8, seed=3)
    keys = [str(i) for i in range(len(rows))]
    scenes = ["burst-a", "burst-b"] * (len(rows) // 2)
    assert fit_to_labels(tagger, rows, labels, keys, scenes).folds == 2
    assert fit_to_labels(tagger, rows, labels, keys).folds == 5
