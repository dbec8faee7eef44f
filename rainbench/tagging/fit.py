"""Fitting the tagger to a lab's own labels. The shipped model's form and standardisation
stay; the rows of weights of the rain types with enough labels are refitted on manually
labelled captures with an L2 penalty on their distance from the shipped weights, the
penalty's strength chosen by cross-validation (the other types keep their rows).
Agreement is always measured on captures held out of the fit, and captures of one scene
(a burst, a video, near-duplicates) are held out together.
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
    base: Tagger,
    features: np.ndarray,
    labels: list[str],
    keys: list[str],
    scenes: list[str] | None = None,
) -> LabelFit:
    """Refit `base` on feature rows (FEATURE_NAMES columns) labelled with rain types.
    `keys` name the rows; the folds follow their order, so the same labels give the
    same fit whatever order they come in. Rows of one of `scenes` (None: each row its
    own) always share a fold: frames of one scene are so alike that a fold holding one
    while the fit saw another would show agreement the fit would not reach on a new scene."""
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
    groups = _scene_numbers(
        [keys[i] for i in order] if scenes is None else [scenes[i] for i in order]
    )
    if groups.max() < 1:
        raise TooFewLabels(
            "fitting needs labels from at least 2 scenes to cross-validate; all of these "
            "are of one (a burst, a video or near-duplicates of one capture)"
        )
    # Only types with enough labels are refitted: a type without them would be learnt
    # as "never" (nothing labelled it), so it keeps its shipped row; its few labelled
    # captures still count in the agreement.
    types = tuple(RAIN_TYPES.index(name) for name in enough)
    folds = stratified_folds(y, FOLDS, groups)
    in_use = _folds_in_use(folds)
    predicted = np.empty_like(y)
    for fold in in_use:
        train = folds != fold
        chosen = choose_penalty(base, x[train], y[train], groups[train], types)
        theta = refit(base, x[train], y[train], chosen, types)
        predicted[~train] = _rain_logits(theta, x[~train]).argmax(axis=1)
    penalty = choose_penalty(base, x, y, groups, types)
    theta = refit(base, x, y, penalty, types)
    fitted = replace(
        base,
        weights=np.vstack([base.weights[:1], theta[:, :-1]]),
        bias=np.concatenate([base.bias[:1], theta[:, -1]]),
    )
    shipped = _rain_logits(_rain_theta(base), x).argmax(axis=1)
    # Folds that held rows: fewer than FOLDS when the labels come from fewer scenes.
    return LabelFit(
        fitted, penalty, counts, agreement(y, predicted), agreement(y, shipped), len(in_use)
    )


def stratified_folds(y: np.ndarray, k: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Each row's fold, so that every fold holds about a k-th of each type. Without
    `groups`, rows are dealt out in turn, type by type. With them (a number per row),
    a group's rows share a fold: groups are dealt type by type (a group counts as its
    most frequent type), the largest first, each to the fold that holds the fewest rows
    of that type (then the fewest rows, then the first); singleton groups are dealt
    exactly as rows are."""
    if groups is None:
        groups = np.arange(len(y))
    sizes = np.bincount(groups)
    kinds = np.array(
        [np.bincount(y[groups == g], minlength=len(RAIN_TYPES)).argmax() for g in range(len(sizes))]
    )
    by_type = np.zeros((k, len(RAIN_TYPES)), dtype=np.int64)
    folds = np.empty(len(y), dtype=np.int64)
    for label in range(len(RAIN_TYPES)):
        for group in sorted(np.flatnonzero(kinds == label), key=lambda g: -sizes[g]):
            fold = min(range(k), key=lambda f: (by_type[f, label], by_type[f].sum()))
            members = groups == group
            folds[members] = fold
            np.add.at(by_type[fold], y[members], 1)
    return folds


def choose_penalty(
    base: Tagger,
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    types: tuple[int, ...] | None = None,
) -> float | None:
    """The λ of PENALTIES whose fits agree best with held-out folds (macro-F1 over the
    folds' pooled decisions), or None when the shipped weights do at least as well or
    the rows are of one group, so nothing can be held out; a tie goes to the stronger
    penalty, nearer the shipped tagger."""
    groups = np.arange(len(y)) if groups is None else _scene_numbers(list(groups))
    if groups.max() < 1:
        return None
    folds = stratified_folds(y, FOLDS, groups)
    best, chosen = agreement(y, _rain_logits(_rain_theta(base), x).argmax(axis=1)).macro_f1, None
    for penalty in sorted(PENALTIES, reverse=True):
        predicted = np.empty_like(y)
        for fold in _folds_in_use(folds):
            train = folds != fold
            theta = refit(base, x[train], y[train], penalty, types)
            predicted[~train] = _rain_logits(theta, x[~train]).argmax(axis=1)
        score = agreement(y, predicted).macro_f1
        if score > best:
            best, chosen = score, penalty
    return chosen


def _scene_numbers(scenes: list) -> np.ndarray:
    """Each row's scene as a number from 0, in order of first appearance."""
    numbers: dict = {}
    return np.array([numbers.setdefault(scene, len(numbers)) for scene in scenes], dtype=np.int64)


def _folds_in_use(folds: np.ndarray) -> list[int]:
    """The folds that hold rows: with fewer scenes than folds, some hold none."""
    return sorted(set(folds.tolist()))


def refit(
    base: Tagger,
    x: np.ndarray,
    y: np.ndarray,
    penalty: float | None,
    types: tuple[int, ...] | None = None,
) -> np.ndarray:
    """The rain-type rows of weights and (last column) biases fitted to rows `x` of the
    design matrix labelled `y` (RAIN_TYPES indices), near `base`'s (unchanged for
    penalty None). The likelihood is of the type given rain, the decision a tag makes;
    the clean row stays as shipped. Only the rows of `types` (None: all) that label some
    of `x` are fitted, on the captures labelled with them, by the likelihood of the type
    given that it is one of them; the other rows stay as shipped."""
    anchor = _rain_theta(base)
    wanted = set(range(len(RAIN_TYPES)) if types is None else types)
    active = np.array(sorted(wanted & set(y.tolist())))
    if penalty is None or len(active) < 2:  # one type: nothing to decide between
        return anchor
    rows = np.isin(y, active)
    x, y = x[rows], np.searchsorted(active, y[rows])
    # The penalised change lies in the span of the labelled rows, so fit it in their
    # coordinates: as exact, and far fewer unknowns than expanded features.
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    keep = s > 1e-9 * s[0]
    onehot = np.eye(len(active))[y]
    change = softmax_regression(
        u[:, keep] * s[keep], onehot, penalty / len(x), offset=_rain_logits(anchor, x)[:, active]
    )
    theta = anchor.copy()
    theta[active] += np.hstack([change[:, :-1] @ vt[keep], change[:, -1:]])
    return theta


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
