"""How the ground truth of real pairs fares when the camera's exposure changes from
frame to frame, measured on the synthetic tripod videos of `pairs_quality.py`.

    OMP_NUM_THREADS=1 python benchmarks/pairs_exposure.py      # ≈ 7 min on 2 cores

Each video of `pairs_quality.py`'s tuning condition (360p, CRF 18, 31 frames) and of its
`dry-lead` one (40 frames, the first 9 dry) is rendered again with every frame, rain and
noise included, scaled by a gain of its own before H.264: constant (none), a slow drift
(auto-exposure as clouds pass: 0.97 to 1.03 over the video), flicker (mains-powered light
at 25 or 30 fps: a random gain within ±3 % per frame), or a step between the dry frames
and the rain (−5 % or +5 %: the dry frames shot under other light). The truth of each
frame is the still under that frame's gain. Per recipe and exposure: the mean psnr_y of
the estimated ground truth against it over the pixels the estimate trusts (confidence ≥
128), its worst pair, the mean `gt_psnr_estimate`, and the pairs' methods. A
measurement, not a test: it exits 0 whatever the figures.
"""

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict

import numpy as np
from bench import cpu_model, log  # benchmarks/ is on sys.path when run as a script
from pairs_quality import CONDITIONS, TRUSTED, Condition, still_of

from rainbench.metrics.fullref import psnr_y
from rainbench.pairs.build import VERSION as PAIRS_VERSION
from rainbench.pairs.estimate import ArrayFrames, EstimateOptions, estimate_pairs
from rainbench.synth.video import decode_video, encode_h264, render_rain_video

RECIPES = ("drizzle", "streak", "storm")
STEADY = next(c for c in CONDITIONS if c.name == "360p-crf18")
DRY_LEAD = next(c for c in CONDITIONS if c.name == "360p-crf18-dry-lead")
DRIFT = 0.03  # the gain goes from 1 − DRIFT to 1 + DRIFT over the video
FLICKER = 0.03  # each frame's gain is 1 + a uniform draw within ±FLICKER
STEP = 0.05  # the rainy frames' gain against the dry frames', either way


def gains(name: str, condition: Condition, rng: np.random.Generator) -> np.ndarray:
    """Each frame's exposure gain under the change `name`."""
    count, dry = condition.frames, condition.rain_free_lead
    if name == "drift":
        return np.linspace(1 - DRIFT, 1 + DRIFT, count)
    if name == "flicker":
        return 1 + rng.uniform(-FLICKER, FLICKER, count)
    if name in ("step-down", "step-up"):
        rainy = 1 - STEP if name == "step-down" else 1 + STEP
        return np.where(np.arange(count) < dry, 1.0, rainy)
    return np.ones(count)


CHANGES: dict[Condition, tuple[str, ...]] = {
    STEADY: ("constant", "drift", "flicker"),
    DRY_LEAD: ("constant", "step-down", "step-up"),
}


def exposed(image: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(np.rint(image.astype(np.float32) * np.float32(gain)), 0, 255).astype(np.uint8)


def measure(condition: Condition, recipe: str, change: str, options: EstimateOptions) -> dict:
    """One video: its pairs' psnr_y against the truth under each frame's own exposure."""
    still = still_of(condition)
    video = render_rain_video(
        still,
        recipe,
        condition.frames,
        condition.seed,
        night=condition.night,
        rain_free_lead=condition.rain_free_lead,
    )
    scale = gains(change, condition, np.random.default_rng(condition.seed))
    shown = [exposed(frame, g) for frame, g in zip(video.frames, scale, strict=True)]
    frames = ArrayFrames(decode_video(encode_h264(shown, crf=condition.crf)))
    pairs = []
    for estimate in estimate_pairs(frames, options):
        if estimate.skipped is not None:
            continue
        truth = exposed(video.backgrounds[estimate.index], scale[estimate.index])
        trusted = estimate.confidence >= TRUSTED
        pairs.append(
            {
                "index": estimate.index,
                "method": estimate.method,
                "psnr_y": psnr_y(estimate.gt, truth, trusted),
                "gt_psnr_estimate": estimate.gt_psnr_estimate,
            }
        )
    return {"condition": condition.name, "recipe": recipe, "exposure": change, "pairs": pairs}


def row(result: dict) -> str:
    pairs = result["pairs"]
    video = f"| {result['recipe']} | {result['condition']} | {result['exposure']}"
    if not pairs:
        return f"{video} | 0 | — | — | — | — |"

    def mean(key: str) -> float:
        return float(np.mean([p[key] for p in pairs]))

    methods = ", ".join(sorted({p["method"] for p in pairs}))
    return (
        f"{video} | {len(pairs)} | {mean('psnr_y'):.2f} | "
        f"{min(p['psnr_y'] for p in pairs):.2f} | {mean('gt_psnr_estimate'):.2f} | {methods} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), help=f"default: {RECIPES}")
    parser.add_argument(
        "--exposures",
        nargs="*",
        default=None,
        help="only these changes: constant, drift, flicker, step-down, step-up",
    )
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    options = EstimateOptions()
    started = time.perf_counter()
    results = []
    print("| recipe | video | exposure | pairs | psnr_y | min | predicted | method |")
    print("|---|---|---|---|---|---|---|---|")
    for condition, changes in CHANGES.items():
        for recipe in args.recipes:
            for change in changes:
                if args.exposures is not None and change not in args.exposures:
                    continue
                results.append(measure(condition, recipe, change, options))
                print(row(results[-1]), flush=True)
                log(f"{condition.name} {recipe} {change}: {time.perf_counter() - started:.0f} s")
    print(f"\n{time.perf_counter() - started:.0f} s")
    if args.out:
        report = {
            "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
            "machine": {"cpu": cpu_model(), "python": platform.python_version()},
            "threads": os.environ.get("OMP_NUM_THREADS"),
            "pairs_version": PAIRS_VERSION,
            "options": asdict(options),
            "results": results,
        }
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
