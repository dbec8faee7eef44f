"""Fitting the tagger to a lab's own labels. The shipped model's form and standardisation
stay; its four rain-type rows of weights are refitted on manually labelled captures with
an L2 penalty on their distance from the shipped weights, the penalty's strength chosen
by cross-validation. Agreement is always measured on captures held out of the fit.
"""

from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize

from rainbench.errors import RainbenchError
from rainbench.tagging.scores import f1_scores
from rainbench.tagging.tagger import RAIN_TYPES, Tagger

FOLDS = 5  # stratified folds, for the reported agreement and for choosing the penalty
MIN_PER_TYPE = FOLDS  # labels a type needs to be held out in every fold
MIN_TYPES = 2  # types with MIN_PER_TYPE labels, so there is a decision to learn
HELPS_FROM = 20  # labels per type from which docs/tagging.md shows fitting helps
# λ in Σ cross-entropy + λ/2·|W − W_shipped|²: the penalty does not grow with the labels,
# so the more labels, the further the fit may move from the shipped weights.
PENALTIES = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


class TooFewLabels(RainbenchError):
    """Not enough manual labels to fit and cross-validate; the message says how many."""


@dataclass(frozen=True)
class Agreement:
    """Rain-type decisions against the labels: over the types that have labels."""

    macro_f1: float
    accuracy: float
    f1: dict[str, float]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class LabelFit:
    tagger: Tagger  # the shipped tagger with its rain-type weights refitted
    penalty: float | None  # λ chosen by cross-validation; None: the shipped weights kept
    counts: dict[str, int]  # labels per rain type
    fitted: Agreement  # of fits that never saw the captures they judged (nested folds)
    shipped: Agreement  # of the shipped tagger, on the same captures
    folds: int


def fit_to_labels(
    base: Tagger, features: np.ndarray, labels: list[str], keys: list[str]
) -> LabelFit:
    """Refit `base` on feature rows (FEATURE_NAMES columns) labelled with rain types.
    `keys` name the rows; the folds follow their order, so the same labels give the
    same fit whatever order they come in."""
    counts = {name: labels.count(name) for name in RAIN_TYPES}
    enough = [name for name in RAIN_TYPES if counts[name] >= MIN_PER_TYPE]
    if len(enough) < MIN_TYPES:
        have = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise TooFewLabels(
            f"fitting needs at least {MIN_PER_TYPE} manual labels of each of "
            f"{MIN_TYPES} or more rain types (have {have}); it helps from about "
            f"{HELPS_FROM} per type"
        )
    # The temperature folded into the weights: the refit's likelihood is of its own logits.
    base = replace(
        base,
        weights=base.weights / base.temperature,
        bias=base.bias / base.temperature,
        temperature=1.0,
    )
    order = sorted(range(len(keys)), key=lambda index: keys[index])
    x = base.design(np.asarray(features, dtype=np.float64)[order])
    y = np.array([RAIN_TYPES.index(labels[index]) for index in order])
    folds = stratified_folds(y, FOLDS)
    predicted = np.empty_like(y)
    for fold in range(FOLDS):
        train = folds != fold
        theta = refit(base, x[train], y[train], choose_penalty(base, x[train], y[train]))
        predicted[~train] = _rain_logits(theta, x[~train]).argmax(axis=1)
    penalty = choose_penalty(base, x, y)
    theta = refit(base, x, y, penalty)
    fitted = replace(
        base,
        weights=np.vstack([base.weights[:1], theta[:, :-1]]),
        bias=np.concatenate([base.bias[:1], theta[:, -1]]),
    )
    shipped = _rain_logits(_rain_theta(base), x).argmax(axis=1)
    return LabelFit(fitted, penalty, counts, agreement(y, predicted), agreement(y, shipped), FOLDS)


def stratified_folds(y: np.ndarray, k: int) -> np.ndarray:
    """Each row's fold: rows dealt out in turn, type by type, so every fold holds about
    a k-th of each type."""
    folds = np.empty(len(y), dtype=np.int64)
    dealt = 0
    for label in range(len(RAIN_TYPES)):
        rows = np.flatnonzero(y == label)
        folds[rows] = (dealt + np.arange(len(rows))) % k
        dealt += len(rows)
    return folds


def choose_penalty(base: Tagger, x: np.ndarray, y: np.ndarray) -> float | None:
    """The λ of PENALTIES whose fits agree best with held-out folds (macro-F1 over the
    folds' pooled decisions), or None when the shipped weights do at least as well; a
    tie goes to the stronger penalty, nearer the shipped tagger."""
    folds = stratified_folds(y, FOLDS)
    best, chosen = agreement(y, _rain_logits(_rain_theta(base), x).argmax(axis=1)).macro_f1, None
    for penalty in sorted(PENALTIES, reverse=True):
        predicted = np.empty_like(y)
        for fold in range(FOLDS):
            train = folds != fold
            theta = refit(base, x[train], y[train], penalty)
            predicted[~train] = _rain_logits(theta, x[~train]).argmax(axis=1)
        score = agreement(y, predicted).macro_f1
        if score > best:
            best, chosen = score, penalty
    return chosen


def refit(base: Tagger, x: np.ndarray, y: np.ndarray, penalty: float | None) -> np.ndarray:
    """The rain-type rows of weights and (last column) biases fitted to rows `x` of the
    design matrix labelled `y` (RAIN_TYPES indices), near `base`'s (unchanged for
    penalty None). The likelihood is of the type given rain, the decision a tag makes;
    the clean row stays as shipped."""
    anchor = _rain_theta(base)
    if penalty is None:
        return anchor
    # The penalised change lies in the span of the labelled rows, so fit it in their
    # coordinates: as exact, and far fewer unknowns than expanded features.
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    keep = s > 1e-9 * s[0]
    onehot = np.eye(len(RAIN_TYPES))[y]
    change = softmax_regression(
        u[:, keep] * s[keep], onehot, penalty / len(x), offset=_rain_logits(anchor, x)
    )
    return anchor + np.hstack([change[:, :-1] @ vt[keep], change[:, -1:]])


def agreement(truth: np.ndarray, predicted: np.ndarray) -> Agreement:
    confusion = np.zeros((len(RAIN_TYPES), len(RAIN_TYPES)), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    f1, macro_f1 = f1_scores(confusion, labelled_only=True)
    return Agreement(
        macro_f1=macro_f1,
        accuracy=round(float(np.mean(truth == predicted)), 4),
        f1=f1,
    )


def softmax_regression(
    x: np.ndarray, onehot: np.ndarray, l2: float, offset: np.ndarray | None = None
) -> np.ndarray:
    """Weights and (last column) biases minimising the mean cross-entropy of the logits
    `offset` + x·weightsᵀ + biases, + l2/2·|weights|², by Newton's method from zeros."""
    shape = (onehot.shape[1], x.shape[1] + 1)
    offset = np.zeros(onehot.shape) if offset is None else offset
    x1 = np.hstack([x, np.ones((len(x), 1))])
    mask = np.ones(shape)
    mask[:, -1] = 0  # the biases are not penalised

    def probabilities(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits = offset + x1 @ flat.reshape(shape).T
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return np.exp(log_p), log_p

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(shape)
        p, log_p = probabilities(flat)
        grad = (p - onehot).T @ x1 / len(x) + l2 * mask * theta
        penalty = 0.5 * l2 * float(((mask * theta) ** 2).sum())
        return -float((onehot * log_p).sum()) / len(x) + penalty, grad.ravel()

    def hessp(flat: np.ndarray, direction: np.ndarray) -> np.ndarray:
        p, _ = probabilities(flat)
        change = x1 @ direction.reshape(shape).T
        weighted = p * (change - (p * change).sum(axis=1, keepdims=True))
        return (weighted.T @ x1 / len(x) + l2 * mask * direction.reshape(shape)).ravel()

    solution = optimize.minimize(
        loss, np.zeros(np.prod(shape)), jac=True, hessp=hessp, method="Newton-CG"
    )
    return solution.x.reshape(shape)


def _rain_theta(tagger: Tagger) -> np.ndarray:
    return np.hstack([tagger.weights[1:], tagger.bias[1:, None]])


def _rain_logits(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return x @ theta[:, :-1].T + theta[:, -1]
