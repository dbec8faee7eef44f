"""Fit the rain-type tagger and write its parameter file, rainbench/tagging/tagger-v5.json.

    python benchmarks/calibrate_tagger.py                 # ≈ 6 min on 2 cores
    python benchmarks/tagging_robustness.py               # judge it on fresh examples
    python benchmarks/calibrate_tagger.py --no-detector --out /tmp/no-detector.json
                                                          # P(rain) from the softmax, as tagger 2

Taggers 2 to 4 were fitted by this script as it stood when they were shipped: 2 and 3
on the twelve photographs before scikit-learn's two, 2 to 4 on three rain models, before
the photometric one joined them (their files record the command, the backgrounds and
the rain models); `git log rainbench/tagging/tagger-v4.json` finds that code.

Rain of each type from four separately written rain models is rendered on every
freely licensed photograph at hand (rainbench.train.tagger), at many sizes, exposures,
camera chains and JPEG qualities, by day and at night, measured through ingest's own
decode, and a logistic regression is fitted to the features, with (since version 3) a
detector of rain against clean on the cues rain alone gives. The confidence's
temperature, the looks_rainy threshold and the unlike-calibration limit are settled on
leave-one-background-out decisions, never on examples a fit saw. The file records every
setting, the features' checksum, the versions, and the held-out figures.
"""

import argparse
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
from bench import add_example_arguments  # benchmarks/ is on sys.path when run as a script

from rainbench.tagging.tagger import PARAMS_FILE
from rainbench.train.tagger import (
    BACKGROUNDS,
    HEIGHTS,
    NIGHT_SHARE,
    QUALITIES,
    RAIN_MODELS,
    feature_matrix,
    fit,
    measured_examples,
    robustness,
    settled_tagger,
)

DEFAULT_OUT = Path(__file__).parent.parent / "rainbench" / "tagging" / PARAMS_FILE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_example_arguments(parser, seed=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--l2", type=float, default=0.03, help="L2 penalty on the weights")
    parser.add_argument(
        "--products", action="store_true", help="also feed the features' pairwise products"
    )
    parser.add_argument(
        "--detector",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fit a detector of its own for P(rain) (tagger version 3) [default: on]",
    )
    args = parser.parse_args()

    measured, how = measured_examples(args.per_cell, args.seed, args.workers, args.features)
    print(how)
    digest = hashlib.sha256(np.ascontiguousarray(feature_matrix(measured)).tobytes()).hexdigest()
    calibration = {
        "script": "benchmarks/calibrate_tagger.py",
        # The settings that make the file (--features only keeps the examples).
        "command": " ".join(
            ["python", "benchmarks/calibrate_tagger.py", "--per-cell", str(args.per_cell)]
            + ["--seed", str(args.seed), "--l2", str(args.l2)]
            + ["--products"] * args.products
            + ["--no-detector"] * (not args.detector)
        ),
        "backgrounds": BACKGROUNDS,
        "rain_models": list(RAIN_MODELS),
        "per_cell": args.per_cell,
        "seed": args.seed,
        "l2": args.l2,
        "products": args.products,
        **({"detector": True} if args.detector else {}),
        "heights": list(HEIGHTS),
        "jpeg_qualities": list(QUALITIES),
        "night_share": NIGHT_SHARE,
        "examples": len(measured),
        "features_sha256": digest,
        "versions": {
            name: metadata.version(name)
            for name in ("numpy", "scipy", "pillow", "scikit-image", "matplotlib", "scikit-learn")
        },
    }
    tagger = fit(measured, args.l2, args.products, calibration, args.detector)
    judged = robustness(measured, tagger, args.l2, args.products)
    tagger = settled_tagger(tagger, judged.settled)
    tagger.calibration["held_out"] = judged.summary()
    args.out.write_text(json.dumps(tagger.to_json(), indent=1) + "\n", encoding="utf-8")
    summary = judged.summary()
    lobo = summary["leave_one_background_out"]
    print(
        f"held out: macro-F1 {lobo['macro_f1']:.3f} leaving each background out "
        f"(worst {lobo['worst_macro_f1']:.3f}, {lobo['worst_background']}); "
        f"worst rain model left out {summary['worst_model']} "
        f"{summary['worst_model_macro_f1']:.3f}; temperature {judged.settled.temperature}, "
        f"flag threshold {judged.settled.flag_threshold} (rain flagged "
        f"{lobo['rain_flagged']:.1%}, clean {lobo['clean_flagged']:.1%}); wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
