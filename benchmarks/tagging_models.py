"""How the rain models calibration learns from carry to rain from a model no fit saw.

    python benchmarks/tagging_models.py                       # ≈ 10 min on 2 cores
    python benchmarks/tagging_models.py --features f.jsonl    # keep (or reuse) the examples
    python benchmarks/tagging_models.py --each                # every combination too

Fresh examples (seed 1; calibration uses seed 0) of every rain model, calibration and
check models alike, on every background photograph. Each model's rain is judged by fits
on every combination of k of the other models (k = 1 to all of them) and clean
captures, on backgrounds those fits never saw: the macro-F1 of the rain types, and the
rain flagged when the threshold lets through 5 % of the same fits' clean captures; the
mean and the lowest over the combinations. Fits are the shipped tagger's kind (its
penalty, products and detector). Prints Markdown.
"""

import argparse
import sys
from itertools import combinations

import numpy as np
from bench import add_example_arguments  # benchmarks/ is on sys.path when run as a script

from rainbench.tagging.scores import f1_scores
from rainbench.tagging.tagger import RAIN_TYPES, load_tagger
from rainbench.train.tagger import (
    CHECK_MODELS,
    RAIN_MODELS,
    HeldOut,
    detection,
    held_out_model,
    measured_examples,
    shipped_detector,
)

BUDGET = 0.05  # share of clean captures flagged at which detection is compared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_example_arguments(parser, seed=1)
    parser.add_argument("--each", action="store_true", help="also print every combination")
    args = parser.parse_args()
    settings = load_tagger().calibration
    l2, products, detector = settings["l2"], settings["products"], shipped_detector()
    measured, how = measured_examples(
        args.per_cell, args.seed, args.workers, args.features, check=True
    )
    print(f"{how}, seed {args.seed}\n")
    models = RAIN_MODELS + CHECK_MODELS
    scores = {}
    for judged in models:
        others = tuple(m for m in models if m != judged)
        for k in range(1, len(others) + 1):
            for fitted_on in combinations(others, k):
                held = held_out_model(measured, judged, fitted_on, l2, products, detector)
                scores[judged, fitted_on] = (_macro_f1(held), detection(held)[judged][BUDGET])
    print(
        "| rain model judged | models fitted on | combinations | macro-F1 mean | lowest | "
        f"rain flagged at {BUDGET:.0%} clean flagged, mean | lowest |"
    )
    print("|---|---|---|---|---|---|---|")
    for judged in models:
        for k in range(1, len(models)):
            rows = [v for (j, fitted), v in scores.items() if j == judged and len(fitted) == k]
            f1, found = np.array(rows).T
            print(
                f"| {judged} | {k} | {len(rows)} | {f1.mean():.3f} | {f1.min():.3f} | "
                f"{found.mean():.1%} | {found.min():.1%} |"
            )
    if args.each:
        print("\n| rain model judged | fitted on | macro-F1 | rain flagged |")
        print("|---|---|---|---|")
        for (judged, fitted_on), (f1, found) in scores.items():
            print(f"| {judged} | {', '.join(fitted_on)} | {f1:.3f} | {found:.1%} |")
    return 0


def _macro_f1(held: HeldOut) -> float:
    """Macro-F1 of the held-out rain's types: the most probable of the four, as tagged."""
    labels = [m.example.label for m in held.measured]
    rain = np.array([label != "clean" for label in labels])
    tagged = held.logits[rain][:, 1:].argmax(axis=1)  # CLASSES[0] is clean
    confusion = np.zeros((len(RAIN_TYPES), len(RAIN_TYPES)), dtype=int)
    truth = [RAIN_TYPES.index(label) for label, r in zip(labels, rain, strict=True) if r]
    np.add.at(confusion, (truth, tagged), 1)
    return f1_scores(confusion)[1]


if __name__ == "__main__":
    sys.exit(main())
