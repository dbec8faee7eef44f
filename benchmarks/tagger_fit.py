"""Does fitting the tagger to a lab's labels help (`rainbench tag DS --fit`)? A constructed
lab whose streaks the shipped tagger calls drizzle, and one whose labels agree with it.

    python benchmarks/tagger_fit.py            # ≈ 10 s on 2 cores

Feature rows are drawn in the shipped tagger's own standardised inputs: a cluster per
rain type around the mean of candidates it calls that type with confidence > 0.8. In
the "fainter streaks" lab, real streaks are fainter than rendered ones, so their cluster
sits 70 % of the way from the shipped tagger's streak centre towards its drizzle centre,
where it calls most of them drizzle. In the "agreeing" lab every label is the shipped
tagger's own call. Each lab labels N captures per type; the table gives the fitted
tagger's cross-validated macro-F1 (nested folds, as `--fit` prints it) beside the
shipped tagger's on the same captures, and both on 600 fresh captures per type that
no fit saw. Constructed rows, not photographs: this shows the fit learns a lab's
systematic disagreement and leaves an agreeing lab alone, not how well it tags rain.
"""

import argparse
import sys

import numpy as np

from rainbench.tagging.features import FEATURE_NAMES
from rainbench.tagging.fit import LabelFit, agreement, fit_to_labels
from rainbench.tagging.tagger import RAIN_TYPES, Tagger, load_tagger

SPREAD = 0.5  # each cluster's standard deviation, in standardised inputs
FAINTER = 0.7  # how far the lab's streaks sit from the shipped streak centre to drizzle's
HELD_OUT = 600  # fresh captures per type that judge the fits
LABS = ("fainter streaks", "agreeing")


def centres(tagger: Tagger, seed: int = 0) -> dict[str, np.ndarray]:
    """Where the shipped tagger's confident calls of each type lie, standardised."""
    z = np.random.default_rng(seed).standard_normal((20000, len(tagger.inputs)))
    rain = rain_probabilities(tagger, feature_rows(tagger, z))
    confident = rain.max(axis=1) > 0.8
    return {
        name: z[confident & (rain.argmax(axis=1) == index)].mean(axis=0)
        for index, name in enumerate(RAIN_TYPES)
    }


def feature_rows(tagger: Tagger, z: np.ndarray) -> np.ndarray:
    """Feature rows (FEATURE_NAMES columns) whose standardised inputs are `z`."""
    rows = np.zeros((len(z), len(FEATURE_NAMES)))
    rows[:, FEATURE_NAMES.index("streak_angle")] = 90.0
    values = z * tagger.scale + tagger.mean
    for column, (name, kind, offset) in enumerate(
        zip(tagger.inputs, tagger.transforms, tagger.offsets, strict=True)
    ):
        raw = np.exp(values[:, column]) - offset if kind == "log" else values[:, column]
        rows[:, FEATURE_NAMES.index(name)] = raw
    return rows


def rain_probabilities(tagger: Tagger, rows: np.ndarray) -> np.ndarray:
    p = tagger.probabilities(rows)[:, 1:]
    return p / p.sum(axis=1, keepdims=True)


def lab(
    tagger: Tagger, found: dict[str, np.ndarray], name: str, per_type: int, seed: int
) -> tuple[np.ndarray, list[str]]:
    """`per_type` labelled feature rows of each type from the lab `name`."""
    rng = np.random.default_rng(seed)
    where = dict(found)
    if name == "fainter streaks":
        where["streak"] = found["streak"] + FAINTER * (found["drizzle"] - found["streak"])
    rows = np.vstack(
        [
            feature_rows(tagger, centre + SPREAD * rng.standard_normal((per_type, len(centre))))
            for centre in where.values()
        ]
    )
    if name == "agreeing":
        labels = [RAIN_TYPES[i] for i in rain_probabilities(tagger, rows).argmax(axis=1)]
    else:
        labels = [kind for kind in where for _ in range(per_type)]
    return rows, labels


def run(name: str, per_type: int, seed: int) -> dict:
    """Fit on one lab's labels; judge by cross-validation and on fresh captures."""
    tagger = load_tagger()
    found = centres(tagger)
    rows, labels = lab(tagger, found, name, per_type, seed)
    fit: LabelFit = fit_to_labels(tagger, rows, labels, [f"{i:05d}" for i in range(len(rows))])
    fresh, truth = lab(tagger, found, name, HELD_OUT, seed + 10_000)
    y = np.array([RAIN_TYPES.index(label) for label in truth])
    refit_calls = rain_probabilities(fit.tagger, fresh).argmax(axis=1)
    shipped_calls = rain_probabilities(tagger, fresh).argmax(axis=1)
    return {
        "lab": name,
        "per_type": per_type,
        "seed": seed,
        "penalty": fit.penalty,
        "cv_fitted": fit.fitted.macro_f1,
        "cv_shipped": fit.shipped.macro_f1,
        "held_out_fitted": agreement(y, refit_calls).macro_f1,
        "held_out_shipped": agreement(y, shipped_calls).macro_f1,
        "agrees_with_shipped": round(float(np.mean(refit_calls == shipped_calls)), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-type", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--seeds", type=int, default=5, help="labelled sets drawn per size")
    args = parser.parse_args()
    print(
        "| lab | labels per type | CV macro-F1 fitted | CV shipped | held-out fitted "
        "| held-out shipped | fitted agrees with shipped |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in LABS:
        for per_type in args.per_type:
            runs = [run(name, per_type, seed) for seed in range(args.seeds)]
            cells = [
                _spread([r[column] for r in runs])
                for column in (
                    "cv_fitted",
                    "cv_shipped",
                    "held_out_fitted",
                    "held_out_shipped",
                    "agrees_with_shipped",
                )
            ]
            print(f"| {name} | {per_type} | " + " | ".join(cells) + " |")
    print(f"\nmean (lowest) over {args.seeds} labelled sets per row")
    return 0


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ({min(values):.2f})"


if __name__ == "__main__":
    sys.exit(main())
