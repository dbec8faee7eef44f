"""Scores of rain-type decisions against the truth, the same wherever they are judged:
the decisions themselves as ingest makes them, per-type F1 and macro-F1 from a
confusion matrix, and the expected calibration error of the confidences."""

from dataclasses import dataclass

import numpy as np

from rainbench.tagging.tagger import RAIN_TYPES, Tagger

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
        f1[name] = float(2 * hit / (tagged + true)) if tagged + true else 0.0
    # The mean of the F1s as they are, not as rounded: that mean rounded is macro-F1 to 4
    # places, which the mean of rounded F1s is not always (0.1309 for 0.130952…).
    macro_f1 = round(float(np.mean(list(f1.values()))), 4) if f1 else 0.0
    return {name: round(score, 4) for name, score in f1.items()}, macro_f1


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


@dataclass(frozen=True)
class Decisions:
    """A tagger's decisions on captures whose truth is known."""

    confusion: np.ndarray  # rain-labelled captures: rows truth, columns tagged
    confidence: np.ndarray  # of each rain-labelled capture's tag
    right: np.ndarray  # whether that tag is its labelled type
    rain_flags: np.ndarray  # rain-labelled: P(rain) reaches the flag threshold
    clean_flags: np.ndarray  # clean-labelled: the same
    unlike: np.ndarray  # every capture: unlike the calibration examples


def decide_all(
    tagger: Tagger,
    probabilities: np.ndarray,
    distance: np.ndarray,
    features: list[dict[str, float]],
    truths: list[str | None],
    heights: list[int],
) -> Decisions:
    """`tagger`'s decisions, as ingest makes them, for captures with class
    `probabilities`, calibration `distance`, `features` and `heights`, against their
    `truths` (a rain type, or None for clean)."""
    limit = tagger.ood["limit"] if tagger.ood else np.inf
    confusion = np.zeros((len(RAIN_TYPES), len(RAIN_TYPES)), dtype=np.int64)
    confidence, right, rain_flags, clean_flags = [], [], [], []
    for p, d, named, truth, height in zip(
        probabilities, distance, features, truths, heights, strict=True
    ):
        flagged = 1 - p[0] >= tagger.flag_threshold
        if truth is None:
            clean_flags.append(flagged)
            continue
        rain_flags.append(flagged)
        tag = tagger.decide(p, named, "rainy", height, bool(d > limit))
        confusion[RAIN_TYPES.index(truth), RAIN_TYPES.index(tag.rain_type)] += 1
        confidence.append(tag.confidence)
        right.append(tag.rain_type == truth)
    return Decisions(
        confusion,
        np.array(confidence, dtype=float),
        np.array(right, dtype=bool),
        np.array(rain_flags, dtype=bool),
        np.array(clean_flags, dtype=bool),
        np.asarray(distance) > limit,
    )
