"""How long one render of each synthetic-rain recipe takes, on one generated scene of
the size asked for, best of several passes, in this process (pin it to one core with
`taskset -c 0` to measure one core).

    taskset -c 0 python benchmarks/render_speed.py                       # version 1, 4000×3000
    taskset -c 0 python benchmarks/render_speed.py --size 1600 1200
    taskset -c 0 python benchmarks/render_speed.py --version 2           # with the camera chain
    taskset -c 0 python benchmarks/render_speed.py --version 2 --no-camera-chain
"""

import argparse
import sys
import time

from bench import log  # benchmarks/ is on sys.path when run as a script

from rainbench.demo.captures import render_scene
from rainbench.synth.physical import render_physical
from rainbench.synth.recipes import RECIPES
from rainbench.synth.render import render


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=[4000, 3000], metavar=("W", "H"))
    parser.add_argument("--version", choices=["1", "2"], default="1", help="recipes' version")
    parser.add_argument(
        "--no-camera-chain",
        action="store_true",
        help="version 2: render without the camera chain (tone, scale, noise, JPEG)",
    )
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    if args.no_camera_chain and args.version != "2":
        parser.error("--no-camera-chain is for --version 2: version 1 has no camera chain")
    width, height = args.size
    log(f"rendering a {width}×{height} scene")
    clean = render_scene(width, height, 0)
    chain = (
        ""
        if args.version == "1"
        else (", no camera chain" if args.no_camera_chain else ", camera chain")
    )
    print(f"version {args.version} recipes, {width}×{height}{chain}, best of {args.passes}:")
    for name, recipe in RECIPES.items():
        if recipe.version != args.version:
            continue
        times = []
        for _ in range(args.passes):
            start = time.perf_counter()
            if args.no_camera_chain:
                render_physical(clean, recipe, 0, acquisition=False)
            else:
                render(clean, name, 0)
            times.append(time.perf_counter() - start)
        print(f"  {name:14} {min(times):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
