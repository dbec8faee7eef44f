"""What the errata of recipes version 2 (docs/synthetic-rain.md) change, measured: how
often a render reaches the drop cap and how far its drops reach, with version 2's drop
count and with Marshall–Palmer's; what the right count would change in a render of the
demo scene; and how the splashes' opacity grows with the image height while the drops'
does not.

    python benchmarks/physical_v2_errata.py                 # 500 seeds, a 640×480 scene
    python benchmarks/physical_v2_errata.py --seeds 50 --size 320 240
"""

import argparse
import contextlib
import math
import sys

import numpy as np
from bench import log  # benchmarks/ is on sys.path when run as a script

from rainbench.demo.captures import render_scene
from rainbench.synth import physical
from rainbench.synth.recipes import RECIPES, V2_RECIPES

HEIGHTS = (240, 480, 1080)  # work heights the splashes are compared at, 4:3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=500, help="drawn parameters per recipe")
    parser.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--renders", type=int, default=2, help="renders per recipe")
    args = parser.parse_args()
    width, height = args.size
    print("## Drops drawn, from each seed's parameters (a 4:3 frame)\n")
    print(
        "| recipe | renders at the cap | drops reach (m) | right count reaches ×, capped "
        "| farthest drop's T, least | scene's T at the top, least |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in V2_RECIPES:
        print(_cap_row(name, args.seeds))
    log(f"rendering {args.renders} seeds of each recipe on a {width}×{height} scene")
    scene = render_scene(width, height, 0)
    print(f"\n## The demo scene ({width}×{height}, no camera chain), version 2 → right count\n")
    print("| recipe | seed | mean α | drops reach (m) | pixels changed |")
    print("|---|---:|---:|---:|---:|")
    for name in V2_RECIPES:
        for seed in range(args.renders):
            print(_render_row(name, seed, scene))
    print("\n## Mean opacity by work height (storm-v2's parameters of seed 0, 5 draws)\n")
    print("| height | splashes | drops |")
    print("|---:|---:|---:|")
    for row in _by_height():
        print(row)
    return 0


def _cap_row(name: str, seeds: int) -> str:
    capped, reach, ratios, drop_t, scene_t = 0, [], [], [], []
    for seed in range(seeds):
        params = _params(name, seed)
        expected, far = _reach(params, right=False)
        capped += expected > physical.MAX_DROPS
        reach.append(far)
        drop_t.append(math.exp(-params["beta"] * far / 1000))  # β per km, depths in m
        scene_t.append(physical._transmission(params, 1080)[0])
        if expected > physical.MAX_DROPS:
            ratios.append(_reach(params, right=True)[1] / far)
    spread = f"{min(ratios):.3f}–{max(ratios):.3f}" if ratios else "—"
    return (
        f"| {name} | {capped / seeds:.3f} | {min(reach):.2f}–{max(reach):.2f} | {spread} "
        f"| {min(drop_t):.3f} | {min(scene_t):.3f} |"
    )


def _params(name: str, seed: int) -> dict:
    """The parameters `render_physical` draws for `seed`."""
    param_seed = np.random.SeedSequence(seed).spawn(3)[0]
    return physical._draw(RECIPES[name], np.random.default_rng(param_seed))


def _reach(params: dict, right: bool) -> tuple[float, float]:
    """The drops a 4:3 frame's frustum holds and the depth the drawn ones reach, with
    version 2's count per m³ or (`right`) Marshall–Palmer truncated at the smallest
    drop, as `physical._streaks` works them out."""
    focal = 2 / math.tan(math.radians(params["field_of_view"]) / 2)
    rate = 4.1 * params["rain_rate"] ** -0.21
    span = params["max_diameter"] - physical.SMALLEST_DROP
    per_m3 = physical.MP_INTERCEPT / rate * -math.expm1(-rate * span)
    if right:
        per_m3 *= math.exp(-rate * physical.SMALLEST_DROP)
    near, far = params["drop_near"], params["drop_far"]
    expected = per_m3 * 4 * 3 / (3 * focal**2) * (far**3 - near**3)
    if expected > physical.MAX_DROPS:
        far = (near**3 + (far**3 - near**3) * physical.MAX_DROPS / expected) ** (1 / 3)
    return expected, far


def _render_row(name: str, seed: int, scene: np.ndarray) -> str:
    v2 = physical.render_physical(scene, RECIPES[name], seed, acquisition=False)
    with _right_count():
        right = physical.render_physical(scene, RECIPES[name], seed, acquisition=False)
    changed = np.mean(v2.rain != right.rain)
    before, after = v2.params, right.params
    return (
        f"| {name} | {seed} | {before['intensity']:.4g} → {after['intensity']:.4g} "
        f"({after['intensity'] / before['intensity'] - 1:+.0%}) | "
        f"{before['drop_far_rendered']} → {after['drop_far_rendered']} | {changed:.2f} |"
    )


@contextlib.contextmanager
def _right_count():
    """`physical._streaks` with Marshall–Palmer's count per m³: its intercept scaled by
    e^−0.1Λ for each render's rain rate, which makes version 2's formula the right one."""
    streaks, intercept = physical._streaks, physical.MP_INTERCEPT

    def right(params, height, width, rng):
        rate = 4.1 * params["rain_rate"] ** -0.21
        physical.MP_INTERCEPT = intercept * math.exp(-rate * physical.SMALLEST_DROP)
        try:
            return streaks(params, height, width, rng)
        finally:
            physical.MP_INTERCEPT = intercept

    physical._streaks = right
    try:
        yield
    finally:
        physical._streaks = streaks


def _by_height() -> list[str]:
    params = _params("storm-v2", 0)
    rows = []
    for height in HEIGHTS:
        width = height * 4 // 3
        splashes = [
            physical._splashes(dict(params), height, width, np.random.default_rng(draw)).mean()
            for draw in range(5)
        ]
        drops = [
            physical._streaks(params, height, width, np.random.default_rng(draw))[0].mean()
            for draw in range(5)
        ]
        rows.append(f"| {height} | {np.mean(splashes):.2e} | {np.mean(drops):.2e} |")
    return rows


if __name__ == "__main__":
    sys.exit(main())
