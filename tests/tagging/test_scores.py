"""Scores of rain-type decisions, checked against computations of their own: macro-F1
as scikit-learn gives it over the labelled types, and the calibration error over ten
equal-width bins of the confidence in a few lines of numpy."""

import itertools

import numpy as np
import pytest
from sklearn.metrics import f1_score

from rainbench.tagging.fit import agreement
from rainbench.tagging.scores import calibration_error, f1_scores
from rainbench.tagging.tagger import RAIN_TYPES


def _confusion(truth: np.ndarray, tagged: np.ndarray) -> np.ndarray:
    confusion = np.zeros((len(RAIN_TYPES), len(RAIN_TYPES)), dtype=np.int64)
    np.add.at(confusion, (truth, tagged), 1)
    return confusion


def test_macro_f1_is_scikit_learns_over_the_labelled_types():
    rng = np.random.default_rng(0)
    for _ in range(200):
        truth = rng.integers(0, len(RAIN_TYPES), 40)
        truth[truth == 3] = rng.integers(0, 2)  # fog-like unlabelled: judged where labelled
        tagged = rng.integers(0, len(RAIN_TYPES), 40)
        labelled = sorted(set(truth.tolist()))
        expected = f1_score(truth, tagged, labels=labelled, average="macro", zero_division=0)
        per_type = f1_score(truth, tagged, labels=labelled, average=None, zero_division=0)
        f1, macro_f1 = f1_scores(_confusion(truth, tagged), labelled_only=True)
        assert macro_f1 == round(expected, 4)
        assert f1 == {RAIN_TYPES[i]: round(s, 4) for i, s in zip(labelled, per_type, strict=True)}
        assert agreement(truth, tagged).macro_f1 == round(expected, 4)


def test_macro_f1_is_the_mean_of_the_f1s_as_they_are_not_as_rounded():
    confusion = np.array([[0, 7, 0, 4], [0, 2, 4, 3], [3, 0, 0, 1], [0, 6, 4, 5]])
    truth, tagged = np.nonzero(confusion)
    truth, tagged = (
        np.repeat(truth, confusion[truth, tagged]),
        np.repeat(tagged, confusion[truth, tagged]),
    )
    # F1s 0, 4/29, 0, 10/26: the mean 0.130952… is 0.1310; that of the rounded F1s 0.1309.
    assert f1_score(truth, tagged, average="macro") == pytest.approx(0.1309524, abs=1e-7)
    assert f1_scores(confusion)[1] == 0.131


def test_calibration_error_is_over_ten_equal_width_bins():
    rng = np.random.default_rng(1)
    confidence = np.round(rng.uniform(0.25, 1, 500), 4)
    confidence[:40] = 0.4  # capped: the bin from 0.4
    confidence[40:60] = [0.3, 0.7] * 10  # on an edge: the bin above it
    confidence[60:70] = 1.0  # in the last bin
    right = rng.random(500) < confidence
    expected = 0.0
    for low, high in itertools.pairwise(np.arange(11) / 10):
        inside = (confidence >= low) & ((confidence < high) | (high == 1))
        if inside.any():
            expected += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    assert calibration_error(confidence, right) == round(expected, 4)
