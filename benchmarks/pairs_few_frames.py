"""Real pairs from few frames: is a pair's score still what it would be against the truth?

    OMP_NUM_THREADS=1 python benchmarks/pairs_few_frames.py          # ≈ 20 s on 2 cores

Tripod rain videos of 3 to 31 frames (`rainbench.synth.video.render_rain_video` over
the demo's procedural street scene, 320×180, shaken within ±1.5 px, no moving object,
raw frames: no codec), paired by `rainbench.pairs.estimate` with its defaults. Per frame
count: the pairs made, the share of each pair's pixels that are scored (confidence ≥
128), the predicted and the true psnr_y of the estimated background, and the psnr_y of
the rainy frame itself (what a derainer that does nothing scores) against the estimate
and against the truth over the same scored pixels, and against the truth over every
pixel. Where the scored pixels' figures drift from the last column, the pairs reward or
punish a derainer for something other than removing rain: the scored pixels are not a
fair sample of the frame.
"""

import argparse

import numpy as np

from rainbench.demo.captures import render_scene
from rainbench.pairs.estimate import CONFIDENT, ArrayFrames, EstimateOptions, estimate_pairs

COUNTS = (3, 4, 5, 6, 10, 31)
_Y = np.array([65.481, 128.553, 24.966]) / 255  # MATLAB rgb2ycbcr's Y, as psnr_y


def psnr_y(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """psnr_y of two uint8 RGB images over the pixels `where`."""
    difference = a.astype(np.float64) @ _Y - b.astype(np.float64) @ _Y
    return float(10 * np.log10(255.0**2 / max(np.mean(difference[where] ** 2), 1e-10)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=["drizzle", "streak"])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # Imported here: rendering needs the synth module's scipy, which --help does not.
    from rainbench.synth.video import render_rain_video

    still = render_scene(320, 180, 3)
    print(
        "| recipe | frames | pairs | scored share | predicted | gt vs truth "
        "| rainy vs gt | rainy vs truth | rainy vs truth, every pixel |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for recipe in args.recipes:
        for count in COUNTS:
            video = render_rain_video(still, recipe, count, seed=args.seed, moving_object=False)
            rows = []
            for estimate in estimate_pairs(ArrayFrames(video.frames), EstimateOptions()):
                if estimate.skipped is not None:
                    continue
                scored = estimate.confidence >= CONFIDENT
                truth, rainy = video.backgrounds[estimate.index], video.frames[estimate.index]
                rows.append(
                    (
                        float(scored.mean()),
                        estimate.gt_psnr_estimate,
                        psnr_y(estimate.gt, truth, scored),
                        psnr_y(rainy, estimate.gt, scored),
                        psnr_y(rainy, truth, scored),
                        psnr_y(rainy, truth, np.ones_like(scored)),
                    )
                )
            cells = (
                [f"{v:.2f}" if i == 0 else f"{v:.1f}" for i, v in enumerate(np.mean(rows, 0))]
                if rows
                else ["—"] * 6
            )
            print(f"| {recipe} | {count} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
