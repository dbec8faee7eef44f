"""What one window of `rainbench pairs` costs: CPU seconds and peak resident memory of
`rainbench.pairs.estimate.estimate_window` on 31 frames of a given size, on one core.

    OMP_NUM_THREADS=1 python benchmarks/pairs_cost.py 1920 1080
    OMP_NUM_THREADS=1 python benchmarks/pairs_cost.py 3840 2160 --method lowrank

The frames are cheap stand-ins (the demo's procedural scene crossed by bright columns):
they cost what real ones do to estimate, not to render. The peak includes the script's
own copy of the frames (printed), which a video's reader does not hold.
"""

import argparse
import resource
import time

import numpy as np

from rainbench.demo.captures import render_scene
from rainbench.pairs.estimate import (
    METHODS,
    ArrayFrames,
    EstimateOptions,
    estimate_window,
    plan_windows,
)

FRAMES = 31


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("width", type=int)
    parser.add_argument("height", type=int)
    parser.add_argument("--method", choices=METHODS, default="percentile")
    args = parser.parse_args()
    still = render_scene(args.width, args.height, 3)
    rng = np.random.default_rng(0)
    frames = np.stack([still] * FRAMES)
    for frame in frames:  # rain-like bright columns, new in every frame
        frame[:, rng.integers(0, args.width, 200)] = 255
    options = EstimateOptions(method=args.method)
    window = plan_windows(FRAMES, options)[0]
    cpu, wall = time.process_time(), time.perf_counter()
    estimates = estimate_window(ArrayFrames(frames), window, (), options)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.width}×{args.height} {args.method}, {FRAMES} frames, {len(estimates)} targets: "
        f"{cpu:.1f} s CPU, {wall:.1f} s wall, peak {peak_mb:.0f} MB resident "
        f"(of which the script's frames: {frames.nbytes / 1e6:.0f} MB)"
    )


if __name__ == "__main__":
    main()
