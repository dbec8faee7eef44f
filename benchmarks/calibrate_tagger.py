"""Fit the rain-type tagger and write its parameter file, rainbench/tagging/tagger-v1.json.

    python benchmarks/calibrate_tagger.py            # ≈ 5 min on 2 cores
    rainbench tag-eval                               # judge it on unseen photographs

Synthetic rain of each type is rendered on scikit-image's calibration photographs at
several sizes, exposures and JPEG qualities (rainbench.train.tagger), measured
through ingest's own decode, and a logistic regression is fitted to the features.
The file records every setting, the features' checksum and the fit's own accuracy.
"""

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np

from rainbench.tagging.tagger import PARAMS_FILE
from rainbench.train.tagger import (
    CALIBRATION_IMAGES,
    HEIGHTS,
    QUALITIES,
    cross_validate,
    evaluate,
    examples,
    feature_matrix,
    fit,
    measure_all,
)

DEFAULT_OUT = Path(__file__).parent.parent / "rainbench" / "tagging" / PARAMS_FILE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--per-image", type=int, default=24, help="examples per class and photo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--l2", type=float, default=1e-2, help="L2 penalty on the weights")
    parser.add_argument("-j", "--workers", type=int, default=2)
    args = parser.parse_args()

    todo = examples(CALIBRATION_IMAGES, args.per_image, args.seed)
    started = time.perf_counter()
    measured = list(measure_all(todo, args.workers))
    print(f"measured {len(measured)} examples in {time.perf_counter() - started:.0f} s")
    digest = hashlib.sha256(np.ascontiguousarray(feature_matrix(measured)).tobytes()).hexdigest()
    calibration = {
        "script": "benchmarks/calibrate_tagger.py",
        "command": " ".join(["python", "benchmarks/calibrate_tagger.py", *sys.argv[1:]]),
        "images": list(CALIBRATION_IMAGES),
        "per_image": args.per_image,
        "seed": args.seed,
        "l2": args.l2,
        "heights": list(HEIGHTS),
        "jpeg_qualities": list(QUALITIES),
        "examples": len(measured),
        "features_sha256": digest,
        "versions": {name: metadata.version(name) for name in ("numpy", "scipy", "pillow")}
        | {"scikit-image": metadata.version("scikit-image")},
    }
    folds = cross_validate(measured, args.l2)
    tagger = replace(fit(measured, args.l2, calibration), flag_threshold=folds.flag_threshold)
    training = evaluate(tagger, measured)
    calibration |= {
        "training_macro_f1": training.macro_f1,
        "leave_one_photo_out_macro_f1": folds.macro_f1,
        "leave_one_photo_out_clean_flagged": folds.clean_flagged,
    }
    args.out.write_text(json.dumps(tagger.to_json(), indent=1) + "\n", encoding="utf-8")
    print(
        f"macro-F1: training {training.macro_f1:.3f}, leave-one-photo-out {folds.macro_f1:.3f}; "
        f"flag threshold {folds.flag_threshold} flags {folds.clean_flagged:.1%} of clean "
        f"photos left out; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
