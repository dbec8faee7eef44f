"""How the shipped tagger's kind of fit holds on rain and scenes it never saw.

    python benchmarks/tagging_robustness.py                    # ≈ 10 min on 2 cores
    python benchmarks/tagging_robustness.py --features f.jsonl # keep (or reuse) the examples

Fresh examples (seed 1; calibration used seed 0) from every rain model on every
background photograph are measured as ingest measures, then judged only by fits that
never saw them: leave-one-rain-model-out (the fit also never saw the judged
backgrounds) and leave-one-background-out. The check models' rain (CHECK_MODELS, which
no calibration uses) is judged by fits on every calibration model, as the shipped
tagger would meet it. Prints Markdown: the held-out table per rain model, the share of
rain flagged at fixed shares of clean captures flagged, macro-F1 per acquisition
condition for each held-out model, the worst backgrounds, and each feature's separation
of rain from clean per condition. The settings (penalty, products, detector) are the
shipped file's unless given.
"""

import argparse
import sys

import numpy as np
from bench import add_example_arguments  # benchmarks/ is on sys.path when run as a script

from rainbench.tagging.features import FEATURE_NAMES
from rainbench.tagging.tagger import load_tagger
from rainbench.train.tagger import (
    BACKGROUNDS,
    calibration_examples,
    condition_masks,
    feature_matrix,
    fit,
    measured_examples,
    robustness,
    shipped_detector,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_example_arguments(parser, seed=1)
    parser.add_argument("--l2", type=float, help="the fits' penalty [default: the shipped one's]")
    parser.add_argument(
        "--products", action="store_true", help="also feed the pairwise products to the fits"
    )
    parser.add_argument(
        "--detector",
        action=argparse.BooleanOptionalAction,
        help="fits with a detector of their own for P(rain) [default: as the shipped tagger]",
    )
    parser.add_argument(
        "--unfitted",
        nargs="+",
        default=[],
        metavar="BACKGROUND",
        help="photographs whose examples are judged but never fitted on (to judge what "
        "adding them to calibration changes, on the same examples)",
    )
    args = parser.parse_args()
    unknown = set(args.unfitted) - set(BACKGROUNDS)
    if unknown:
        parser.error(f"unknown backgrounds {sorted(unknown)}; known: {', '.join(BACKGROUNDS)}")
    unfitted = frozenset(args.unfitted)
    settings = load_tagger().calibration
    l2 = settings["l2"] if args.l2 is None else args.l2
    products = settings["products"] or args.products

    measured, how = measured_examples(
        args.per_cell, args.seed, args.workers, args.features, check=True
    )
    print(f"{how}, seed {args.seed}" + (f"; never fitted on {args.unfitted}" if unfitted else ""))
    print()
    detector = shipped_detector() if args.detector is None else args.detector
    fitted = [m for m in calibration_examples(measured) if m.example.background not in unfitted]
    tagger = fit(fitted, l2, products, {}, detector)
    judged = robustness(measured, tagger, l2, products, unfitted)

    print("## Leave one rain model out\n")
    print("\n".join(judged.model_table()))
    print("\n## Detection at fixed shares of clean captures flagged\n")
    print("\n".join(judged.detection_table()))
    print("\n## Macro-F1 per acquisition condition (each rain model held out)\n")
    print("\n".join(judged.condition_table()))
    print("\n## Leave one background out\n")
    print("\n".join(judged.background_table()))
    print("\n## Each feature: rain against clean\n")
    print(_separation(measured))
    return 0


def _separation(measured) -> str:
    """AUC of each feature for rain against clean (0.5: no separation, 1 or 0: full),
    overall and per condition, with the medians of rain and clean."""
    x = feature_matrix(measured)
    rain = np.array([m.example.label != "clean" for m in measured])
    conditions = condition_masks(measured)
    head = "| feature | median rain | median clean | AUC all | " + " | ".join(conditions) + " |"
    lines = [head, "|---" * (4 + len(conditions)) + "|"]
    for column, name in enumerate(FEATURE_NAMES):
        values = x[:, column]
        aucs = [_auc(values[rain & mask], values[~rain & mask]) for mask in conditions.values()]
        lines.append(
            f"| {name} | {np.median(values[rain]):.4g} | {np.median(values[~rain]):.4g} | "
            f"{_auc(values[rain], values[~rain]):.2f} | "
            + " | ".join(f"{a:.2f}" for a in aucs)
            + " |"
        )
    return "\n".join(lines)


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a rain value exceeds a clean one), ties counted half (Mann–Whitney)."""
    if not len(positive) or not len(negative):
        return float("nan")
    both = np.concatenate([positive, negative])
    order = np.argsort(both, kind="stable")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    for value in np.unique(both):  # ties share their mean rank
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    return float(
        (ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2)
        / (len(positive) * len(negative))
    )


if __name__ == "__main__":
    sys.exit(main())
