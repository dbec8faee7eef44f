"""Does fitting the tagger to a lab's labels help (`rainbench tag DS --fit`)? A constructed
lab whose streaks the shipped tagger calls drizzle, and one whose labels agree with it.

    python benchmarks/tagger_fit.py            # ≈ 30 s on 2 cores

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

A lab's captures come in scenes: a burst, a video, the same view again. Captures of one
scene look alike, so a fit judged on one capture of a scene it learnt another from
agrees better than it will on a new scene. `--fit` holds a scene's captures out
together; the second table shows why, on a "scenes" lab whose every scene of SCENE_SIZE
captures shares an offset from its type's centre: cross-validated agreement with scenes
held out together, and with captures held out one by one, against agreement on fresh
scenes. With --rendered the same comparison runs on rendered rain of the model no
calibration uses (tagging_robustness.py's examples; a background photograph is a scene):
fits on half of the photographs, judged on the other half.

    python benchmarks/tagger_fit.py --rendered --features f.jsonl   # ≈ 10 min to render
"""

import argparse
import sys

import numpy as np
from bench import add_example_arguments  # benchmarks/ is on sys.path when run as a script

from rainbench.tagging.features import FEATURE_NAMES
from rainbench.tagging.fit import LabelFit, agreement, fit_to_labels
from rainbench.tagging.tagger import RAIN_TYPES, Tagger, load_tagger
from rainbench.train.tagger import BACKGROUNDS, CHECK_MODELS, measured_examples

SPREAD = 0.5  # each cluster's standard deviation, in standardised inputs
FAINTER = 0.7  # how far the lab's streaks sit from the shipped streak centre to drizzle's
HELD_OUT = 600  # fresh captures per type that judge the fits
LABS = ("fainter streaks", "agreeing")
# Label sheets that name only some types: what the fit does to the types they leave out.
SUBSETS = (("streak", "storm"), ("drizzle", "streak", "storm"))
SCENE_SIZE = 5  # captures per scene in the "scenes" lab
SCENE_SPREAD = 1.0  # how far a scene sits from its type's centre, its captures together


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


def run_subset(labelled: tuple[str, ...], per_type: int, seed: int) -> dict:
    """Fit on the fainter-streaks lab's labels of `labelled` types only; each type's recall
    on fresh captures of every type, fitted and shipped."""
    tagger = load_tagger()
    found = centres(tagger)
    rows, labels = lab(tagger, found, "fainter streaks", per_type, seed)
    keep = [i for i, label in enumerate(labels) if label in labelled]
    keys = [f"{i:05d}" for i in keep]
    fit = fit_to_labels(tagger, rows[keep], [labels[i] for i in keep], keys)
    fresh, truth = lab(tagger, found, "fainter streaks", HELD_OUT, seed + 10_000)
    truth = np.array(truth)

    def recall(model: Tagger) -> dict[str, float]:
        calls = np.array(RAIN_TYPES)[rain_probabilities(model, fresh).argmax(axis=1)]
        return {name: float(np.mean(calls[truth == name] == name)) for name in RAIN_TYPES}

    return {"fitted": recall(fit.tagger), "shipped": recall(tagger)}


def scene_lab(
    tagger: Tagger, found: dict[str, np.ndarray], per_type: int, seed: int
) -> tuple[np.ndarray, list[str], list[str]]:
    """`per_type` labelled feature rows of each type, in scenes of SCENE_SIZE captures
    that share an offset from the shipped tagger's centre of their type; and each row's
    scene."""
    rng = np.random.default_rng(seed)
    rows, labels, scenes = [], [], []
    for name, centre in found.items():
        for first in range(0, per_type, SCENE_SIZE):
            size = min(SCENE_SIZE, per_type - first)
            where = centre + SCENE_SPREAD * rng.standard_normal(len(centre))
            noise = SPREAD * rng.standard_normal((size, len(centre)))
            rows.append(feature_rows(tagger, where + noise))
            labels += [name] * size
            scenes += [f"{seed}-{name}-{first}"] * size
    return np.vstack(rows), labels, scenes


def run_scenes(per_type: int, seed: int) -> dict:
    """Fit on the scenes lab's labels with scenes held out together and with captures
    held out one by one; judge both on fresh scenes."""
    tagger = load_tagger()
    found = centres(tagger)
    rows, labels, scenes = scene_lab(tagger, found, per_type, seed)
    fresh, truth, _ = scene_lab(tagger, found, HELD_OUT, seed + 10_000)
    return compare_folds(tagger, rows, labels, scenes, fresh, truth)


def compare_folds(
    tagger: Tagger,
    rows: np.ndarray,
    labels: list[str],
    scenes: list[str],
    fresh: np.ndarray,
    truth: list[str],
) -> dict:
    """Macro-F1 of fits on the labelled `rows`, cross-validated with each scene's rows
    held out together and one by one, and of both fits and the shipped tagger on the
    `fresh` rows."""
    keys = [f"{i:05d}" for i in range(len(rows))]
    together = fit_to_labels(tagger, rows, labels, keys, scenes)
    apart = fit_to_labels(tagger, rows, labels, keys)
    y = np.array([RAIN_TYPES.index(label) for label in truth])

    def judged(fitted: Tagger) -> float:
        return agreement(y, rain_probabilities(fitted, fresh).argmax(axis=1)).macro_f1

    return {
        "cv_together": together.fitted.macro_f1,
        "cv_apart": apart.fitted.macro_f1,
        "cv_shipped": together.shipped.macro_f1,
        "held_out_together": judged(together.tagger),
        "held_out_apart": judged(apart.tagger),
        "held_out_shipped": judged(tagger),
    }


def rendered_rain(args: argparse.Namespace) -> list:
    """tagging_robustness.py's measured examples of the model no calibration uses."""
    measured, how = measured_examples(
        args.per_cell, args.seed, args.workers, args.features, check=True
    )
    print(f"{how}, seed {args.seed}", file=sys.stderr)
    return [m for m in measured if m.example.model == CHECK_MODELS[0]]


def rendered(rain: list, per_type: int, splits: int) -> list[dict]:
    """compare_folds on rendered rain: in each split, labels from half of the background
    photographs, judged on all of the rain on the others."""
    features = np.array([[m.features[name] for name in FEATURE_NAMES] for m in rain])
    kinds = np.array([m.example.label for m in rain])
    backgrounds = np.array([m.example.background for m in rain])
    results = []
    for split in range(splits):
        rng = np.random.default_rng(split)
        labelled = np.isin(
            backgrounds, rng.permutation(sorted(BACKGROUNDS))[: len(BACKGROUNDS) // 2]
        )
        picked = np.concatenate(
            [
                rng.permutation(np.flatnonzero(labelled & (kinds == name)))[:per_type]
                for name in RAIN_TYPES
            ]
        )
        results.append(
            compare_folds(
                load_tagger(),
                features[picked],
                list(kinds[picked]),
                list(backgrounds[picked]),
                features[~labelled],
                list(kinds[~labelled]),
            )
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-type", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--seeds", type=int, default=5, help="labelled sets drawn per size")
    parser.add_argument(
        "--rendered",
        action="store_true",
        help="also compare the folds on rendered rain of the model no calibration uses",
    )
    add_example_arguments(parser, seed=1)
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
    print(f"\n## A lab of scenes ({SCENE_SIZE} captures each)\n")
    _print_folds([(n, [run_scenes(n, seed) for seed in range(args.seeds)]) for n in args.per_type])
    print(f"\nmean (lowest) over {args.seeds} labelled sets per row; held out: fresh scenes")
    print("\n## Labels of some types only (fainter streaks, 20 labels per labelled type)\n")
    print("| labelled types | " + " | ".join(f"{name} recall" for name in RAIN_TYPES) + " |")
    print("|---" * (len(RAIN_TYPES) + 1) + "|")
    for labelled in SUBSETS:
        runs = [run_subset(labelled, 20, seed) for seed in range(args.seeds)]
        for column in ("fitted", "shipped"):
            cells = [_spread([r[column][name] for r in runs]) for name in RAIN_TYPES]
            print(f"| {', '.join(labelled)}: {column} | " + " | ".join(cells) + " |")
    print(f"\nmean (lowest) over {args.seeds} labelled sets; recall on {HELD_OUT} fresh per type")
    if args.rendered:
        splits = args.seeds
        print("\n## Rendered rain no calibration uses, a background photograph a scene\n")
        rain = rendered_rain(args)
        fewest = _fewest_per_type(rain)
        _print_folds([(n, rendered(rain, n, splits)) for n in args.per_type if n <= fewest])
        print(
            f"\nmean (lowest) over {splits} halvings of the photographs; held out: the "
            "model's rain on the other half"
        )
        if max(args.per_type) > fewest:
            print(f"half of the photographs hold {fewest} of some type: no larger rows")
    return 0


def _fewest_per_type(rain: list) -> int:
    """The fewest examples of one type that a half of the photographs holds."""
    per_background = min(
        sum(m.example.label == name and m.example.background == background for m in rain)
        for name in RAIN_TYPES
        for background in BACKGROUNDS
    )
    return per_background * (len(BACKGROUNDS) // 2)


def _print_folds(rows: list[tuple[int, list[dict]]]) -> None:
    print(
        "| labels per type | CV fitted, scenes held out together | CV fitted, captures "
        "held out one by one | CV shipped | held-out fitted (scenes together) "
        "| held-out fitted (one by one) | held-out shipped |"
    )
    print("|---|---|---|---|---|---|---|")
    columns = (
        "cv_together",
        "cv_apart",
        "cv_shipped",
        "held_out_together",
        "held_out_apart",
        "held_out_shipped",
    )
    for per_type, runs in rows:
        cells = [_spread([r[column] for r in runs]) for column in columns]
        print(f"| {per_type} | " + " | ".join(cells) + " |")


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.2f} ({min(values):.2f})"


if __name__ == "__main__":
    sys.exit(main())
