"""Scores of rain-type decisions against the truth, the same wherever they are judged:
per-type F1 and macro-F1 from a confusion matrix, and the expected calibration error
of the confidences."""

import numpy as np

from rainbench.tagging.tagger import RAIN_TYPES

CONFIDENCE_BINS = 10


def f1_scores(confusion: np.ndarray, labelled_only: bool = False) -> tuple[dict[str, float], float]:
    """Per-type F1 and their mean (macro-F1) from a confusion matrix (rows: truth, in
    RAIN_TYPES order); with `labelled_only`, over the types that have a true row."""
    f1 = {}
    for index, name in enumerate(RAIN_TYPES):
        tagged, true = confusion[:, index].sum(), confusion[index].sum()
        if labelled_only and not true:
            continue
        hit = confusion[index, index]
        f1[name] = round(float(2 * hit / (tagged + true)) if tagged + true else 0.0, 4)
    return f1, round(float(np.mean(list(f1.values()))), 4) if f1 else 0.0


def calibration_error(confidence: np.ndarray, right: np.ndarray) -> float:
    """Expected calibration error: Σ over equal-width confidence bins of
    |accuracy − mean confidence| × the bin's share of the decisions."""
    bins = np.minimum((confidence * CONFIDENCE_BINS).astype(int), CONFIDENCE_BINS - 1)
    error = 0.0
    for b in range(CONFIDENCE_BINS):
        inside = bins == b
        if inside.any():
            error += abs(float(right[inside].mean() - confidence[inside].mean())) * inside.mean()
    return round(error, 4)
