"""How good the ground truth of real pairs estimated from time is, measured: synthetic
tripod rain videos with a known background (`rainbench.synth.video`: a still, a little
shake, a person crossing, one recipe's rain new every frame, H.264), estimated by
`rainbench.pairs.estimate` and scored against the truth with psnr_y and ssim_y over
the pixels the estimate trusts (confidence ≥ 128). Then the ranking: the built-in
derainers that need no checkpoint, scored against the estimated ground truth and
against the true one; Kendall's τ between the two orders, per recipe. Where a recipe
veils the scene (storm, fog-like), the estimate is also scored against the truth as
that veil shows it (blurred and veiled, without drops): what time can recover. Per
video, the lowest and the median rainy sample of the median pixel against that truth
say how much cleaner than the estimate the samples get.

A measurement, not a test: it exits 0 whatever the figures, and prints PASS or MISS
per goal (≥ 35 dB on drizzle and streak and ≥ 30 dB on storm, worst condition).

Example:  python benchmarks/pairs_quality.py --out /tmp/pairs-quality.json
          python benchmarks/pairs_quality.py --quick
          python benchmarks/pairs_quality.py --floor   # also the codec's own floor
          python benchmarks/pairs_quality.py --method lowrank --recipes streak \
              --conditions 360p-crf18 360p-crf28
"""

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
from bench import cpu_model, log  # benchmarks/ is on sys.path when run as a script
from scipy.stats import kendalltau

from rainbench.demo.captures import render_scene
from rainbench.demo.photos import framed_photo
from rainbench.metrics.fullref import matlab_y, psnr_y, ssim_y
from rainbench.models.base import to_pixels
from rainbench.models.registry import create_derainer, list_derainers
from rainbench.pairs.estimate import (
    METHODS,
    RAIN_FREE,
    ArrayFrames,
    EstimateOptions,
    estimate_pairs,
)
from rainbench.synth.video import RainVideo, decode_video, encode_h264, render_rain_video

RECIPES = ("drizzle", "streak", "storm", "fog-like")
VEILED = ("storm", "fog-like")  # recipes whose veil and blur are in every rainy frame
GOALS = {"drizzle": 35.0, "streak": 35.0, "storm": 30.0}
TRUSTED = 128  # confidence ≥ this: the pixels a pair's metrics count
# A condition's means over its pairs; `psnr_y_veiled` against the truth as the rain's
# veil shows it (the truth itself where the recipe has no veil), for pairs estimated
# from rainy frames only: a rain-free frame's ground truth has no veil to keep.
KEYS = (
    "psnr_y",
    "ssim_y",
    "coverage",
    "gt_psnr_estimate",
    "rainy_psnr_y",
    "psnr_y_veiled",
    "bias_y_veiled",
)


@dataclass(frozen=True)
class Condition:
    name: str
    still: str  # a scikit-image sample photograph, or "street" (the demo's procedural scene)
    width: int
    height: int
    crf: int
    night: bool
    seed: int
    frames: int = 31
    rain_free_lead: int = 0
    tuned: bool = False  # the condition the estimator's constants were tuned on


CONDITIONS = (
    Condition("360p-crf18", "motorcycle_left.png", 640, 360, 18, False, 1, tuned=True),
    Condition("360p-crf28", "rocket.jpg", 640, 360, 28, False, 2),
    Condition("360p-crf23-night", "street", 640, 360, 23, True, 3),
    Condition("720p-crf18", "street", 1280, 720, 18, False, 4),
    Condition("720p-crf28-night", "coffee.png", 1280, 720, 28, True, 5),
    # Rain stops: the first 9 frames are dry, and the pairs take their ground truth.
    Condition("360p-crf18-dry-lead", "chelsea.png", 640, 360, 18, False, 6, 40, 9),
)
QUICK = (Condition("180p-crf18", "street", 320, 180, 18, False, 1, 15),)


def still_of(condition: Condition) -> np.ndarray:
    if condition.still == "street":
        return render_scene(condition.width, condition.height, condition.seed)
    aspect = condition.width / condition.height
    return np.asarray(framed_photo(condition.still, condition.width, aspect=aspect))


def bias_y(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """The mean of `pred` − `ref` in levels of psnr_y's Y (16..235) over `mask`."""
    difference = matlab_y(pred).astype(np.float64) - matlab_y(ref)
    return float(difference[mask].mean())


def derain(derainer, frame: np.ndarray) -> np.ndarray:
    import torch

    batch = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    return to_pixels(derainer.derain(batch)[0])


def measure(
    condition: Condition, recipe: str, derainers: dict, floor: bool, options: EstimateOptions
) -> dict:
    """One video: per target, the estimate's scores against the truth and each
    derainer's psnr_y against the estimate and against the truth."""
    started = time.perf_counter()
    still = still_of(condition)
    video, data = coded_video(condition, still, recipe, condition.rain_free_lead)
    frames = ArrayFrames(decode_video(data))
    rendered = time.perf_counter()
    envelope = lower_envelope(video, frames.frames)
    estimates = list(estimate_pairs(frames, options))
    estimated = time.perf_counter()
    targets = []
    for estimate in estimates:
        if estimate.skipped is not None:
            targets.append({"index": estimate.index, "skipped": estimate.skipped})
            continue
        truth = video.backgrounds[estimate.index]
        # what time can recover from rainy frames: a rain-free frame's truth has no veil
        veiled = None if estimate.method == RAIN_FREE else video.veiled[estimate.index]
        trusted = estimate.confidence >= TRUSTED
        rainy = frames.frames[estimate.index]
        row = {
            "index": estimate.index,
            "method": estimate.method,
            "coverage": float(trusted.mean()),
            "psnr_y": psnr_y(estimate.gt, truth, trusted),
            "ssim_y": ssim_y(estimate.gt, truth, trusted),
            "psnr_y_all": psnr_y(estimate.gt, truth),
            "psnr_y_veiled": math.nan if veiled is None else psnr_y(estimate.gt, veiled, trusted),
            "bias_y_veiled": math.nan if veiled is None else bias_y(estimate.gt, veiled, trusted),
            "gt_psnr_estimate": estimate.gt_psnr_estimate,
            "rainy_psnr_y": psnr_y(rainy, truth, trusted),
            "object_leak": int(np.count_nonzero(trusted & video.objects[estimate.index])),
            "moving": estimate.moving,
            "derainers": {},
        }
        for name, derainer in derainers.items():
            output = derain(derainer, rainy)
            row["derainers"][name] = {
                "vs_estimate": psnr_y(output, estimate.gt, trusted),
                "vs_truth": psnr_y(output, truth, trusted),
                "vs_veiled": math.nan if veiled is None else psnr_y(output, veiled, trusted),
            }
        targets.append(row)
    result = {
        "condition": condition.name,
        "recipe": recipe,
        "h264_bytes": len(data),
        "render_s": round(rendered - started, 2),
        "estimate_s": round(estimated - rendered, 2),
        **envelope,
        "targets": targets,
    }
    if floor:
        result["codec_floor_psnr_y"] = codec_floor(condition, still, recipe, options)
    return result


def lower_envelope(video: RainVideo, decoded: list[np.ndarray]) -> dict:
    """How far above the truth under the veil each pixel's rainy samples lie, in levels
    of psnr_y's Y, at the median pixel (the moving object left out): the lowest sample,
    the best any temporal statistic that only knows "rain adds light" can start from,
    and the median one. Drizzle's rain is sparse, so its rows show where the noise and
    the codec alone put the lowest sample."""
    rainy = [i for i in range(len(decoded)) if i not in video.rain_free]
    if not rainy:
        return {"lowest_excess_y": math.nan, "median_excess_y": math.nan}
    excess = np.stack(
        [
            np.where(
                video.objects[i],
                np.nan,
                matlab_y(decoded[i]).astype(np.float32) - matlab_y(video.veiled[i]),
            )
            for i in rainy
        ]
    )
    seen = ~np.isnan(excess).all(axis=0)  # pixels the object covered in every frame: none
    lowest = np.nanmin(excess[:, seen], axis=0)
    typical = np.nanmedian(excess[:, seen], axis=0)
    return {
        "lowest_excess_y": float(np.median(lowest)),
        "median_excess_y": float(np.median(typical)),
    }


def coded_video(
    condition: Condition, still: np.ndarray, recipe: str, rain_free_lead: int
) -> tuple[RainVideo, bytes]:
    """The condition's video of `recipe` over `still` (its first `rain_free_lead` frames
    dry), and its H.264 encoding at the condition's CRF."""
    video = render_rain_video(
        still,
        recipe,
        condition.frames,
        condition.seed,
        night=condition.night,
        rain_free_lead=rain_free_lead,
    )
    return video, encode_h264(video.frames, crf=condition.crf)


def codec_floor(
    condition: Condition, still: np.ndarray, recipe: str, options: EstimateOptions
) -> float:
    """The same video with no rain at all through the same codec and estimator: what
    the codec alone leaves of the background."""
    video, data = coded_video(condition, still, recipe, rain_free_lead=condition.frames)
    frames = ArrayFrames(decode_video(data))
    scores = [
        psnr_y(e.gt, video.backgrounds[e.index], e.confidence >= TRUSTED)
        for e in estimate_pairs(frames, replace(options, prefer_rain_free=False))
        if e.skipped is None
    ]
    return float(np.mean(scores))


def summarise(results: list[dict], names: list[str]) -> dict:
    """Per recipe: each condition's mean scores, the worst condition, and the derainers'
    orders against the estimate and against the truth."""
    summary = {}
    for recipe in dict.fromkeys(r["recipe"] for r in results):
        rows = []
        scores = {name: {"vs_estimate": [], "vs_truth": []} for name in names}
        # the same over the pairs from rainy frames, against the truth under the veil
        under_veil = {name: {"vs_estimate": [], "vs_veiled": []} for name in names}
        for result in (r for r in results if r["recipe"] == recipe):
            paired = [t for t in result["targets"] if "psnr_y" in t]
            row = {"condition": result["condition"], "pairs": len(paired)}
            row["skipped"] = len(result["targets"]) - len(paired)
            for key in KEYS:
                values = [t[key] for t in paired if not math.isnan(t[key])]
                row[key] = float(np.mean(values)) if values else math.nan
            row["min_psnr_y"] = min((t["psnr_y"] for t in paired), default=math.nan)
            veiled = [t["psnr_y_veiled"] for t in paired if not math.isnan(t["psnr_y_veiled"])]
            row["min_psnr_y_veiled"] = min(veiled, default=math.nan)
            row["object_leak"] = sum(t["object_leak"] for t in paired)
            row["lowest_excess_y"] = result["lowest_excess_y"]
            row["median_excess_y"] = result["median_excess_y"]
            if "codec_floor_psnr_y" in result:
                row["codec_floor_psnr_y"] = result["codec_floor_psnr_y"]
            row["kendall_tau"] = order_agreement(paired, names)
            rows.append(row)
            for target in paired:
                for name in names:
                    for side in ("vs_estimate", "vs_truth"):
                        scores[name][side].append(target["derainers"][name][side])
                    if not math.isnan(target["psnr_y_veiled"]):
                        for side in ("vs_estimate", "vs_veiled"):
                            under_veil[name][side].append(target["derainers"][name][side])
        means = {
            name: {side: float(np.mean(v)) for side, v in sides.items()}
            for name, sides in scores.items()
        }
        by_estimate = sorted(names, key=lambda n: -means[n]["vs_estimate"])
        by_truth = sorted(names, key=lambda n: -means[n]["vs_truth"])
        tau = kendalltau(
            [means[n]["vs_estimate"] for n in names], [means[n]["vs_truth"] for n in names]
        ).statistic
        veiled_means = {
            name: {side: float(np.mean(v)) if v else math.nan for side, v in sides.items()}
            for name, sides in under_veil.items()
        }
        tau_veiled = kendalltau(
            [veiled_means[n]["vs_estimate"] for n in names],
            [veiled_means[n]["vs_veiled"] for n in names],
        ).statistic
        worst = min(rows, key=lambda r: r["psnr_y"])
        veiled = min(
            (r for r in rows if not math.isnan(r["psnr_y_veiled"])),
            key=lambda r: r["psnr_y_veiled"],
            default={"condition": None, "psnr_y_veiled": math.nan},
        )
        summary[recipe] = {
            "conditions": rows,
            "worst": {"condition": worst["condition"], "psnr_y": worst["psnr_y"]},
            "worst_veiled": {"condition": veiled["condition"], "psnr_y": veiled["psnr_y_veiled"]},
            "derainers": means,
            "order_vs_estimate": by_estimate,
            "order_vs_truth": by_truth,
            "kendall_tau": float(tau),
            "ranking_matches": by_estimate == by_truth,
            "derainers_under_veil": veiled_means,
            "kendall_tau_veiled": float(tau_veiled),
        }
    return summary


def order_agreement(targets: list[dict], names: list[str]) -> float:
    """Kendall's τ between the derainers' mean psnr_y against the estimate and against
    the truth over `targets`."""
    if not targets:
        return math.nan
    sides = [
        [float(np.mean([t["derainers"][n][side] for t in targets])) for n in names]
        for side in ("vs_estimate", "vs_truth")
    ]
    return float(kendalltau(*sides).statistic)


def print_tables(summary: dict, conditions: tuple[Condition, ...]) -> None:
    tuned = [c.name for c in conditions if c.tuned]
    print(f"\nEstimated background against the truth (confidence ≥ {TRUSTED}); tuned on {tuned}")
    floor = any("codec_floor_psnr_y" in r for s in summary.values() for r in s["conditions"])
    header = (
        "| recipe | condition | pairs | psnr_y | min | ssim_y | coverage | predicted | rainy | τ |"
    )
    print(header + (" codec floor |" if floor else ""))
    print("|---" * (10 + floor) + "|")
    for recipe, entry in summary.items():
        for row in entry["conditions"]:
            line = (
                f"| {recipe} | {row['condition']} | {row['pairs']} | {row['psnr_y']:.2f} | "
                f"{row['min_psnr_y']:.2f} | {row['ssim_y']:.4f} | {row['coverage']:.3f} | "
                f"{row['gt_psnr_estimate']:.2f} | {row['rainy_psnr_y']:.2f} | "
                f"{row['kendall_tau']:.2f} |"
            )
            print(line + (f" {row.get('codec_floor_psnr_y', math.nan):.2f} |" if floor else ""))
    print("\n| recipe | worst condition | worst psnr_y | goal | |")
    print("|---|---|---|---|---|")
    for recipe, entry in summary.items():
        worst = entry["worst"]
        print(worst_row(recipe, worst))
    print("\nDerainers' mean psnr_y against the estimated and the true background")
    print("| recipe | " + " | ".join(next(iter(summary.values()))["derainers"]) + " | τ | match |")
    print("|---" * (len(next(iter(summary.values()))["derainers"]) + 3) + "|")
    for recipe, entry in summary.items():
        cells = " | ".join(
            f"{m['vs_estimate']:.2f} / {m['vs_truth']:.2f}" for m in entry["derainers"].values()
        )
        print(
            f"| {recipe} | {cells} | {entry['kendall_tau']:.2f} | "
            f"{'yes' if entry['ranking_matches'] else 'NO'} |"
        )


def worst_row(recipe: str, worst: dict) -> str:
    """A recipe's worst condition as a Markdown row, with its goal and verdict."""
    goal = GOALS.get(recipe)
    judged = (
        "— |  |"
        if goal is None
        else f"≥ {goal:.0f} | {'PASS' if worst['psnr_y'] >= goal else 'MISS'} |"
    )
    return f"| {recipe} | {worst['condition']} | {worst['psnr_y']:.2f} | {judged}"


def print_under_veil(summary: dict) -> None:
    """The veiled recipes' estimates from rainy frames against the truth under the veil
    and blur (only the drops removed), and the derainers' orders against it."""
    veiled = {r: e for r, e in summary.items() if r in VEILED}
    if not veiled:
        return
    print("\nThe estimate from rainy frames against the truth under the rain's veil and blur")
    print("| recipe | condition | psnr_y | min | mean Y error | against the clear truth |")
    print("|---|---|---|---|---|---|")
    for recipe, entry in veiled.items():
        for row in (r for r in entry["conditions"] if not math.isnan(r["psnr_y_veiled"])):
            print(
                f"| {recipe} | {row['condition']} | {row['psnr_y_veiled']:.2f} | "
                f"{row['min_psnr_y_veiled']:.2f} | {row['bias_y_veiled']:+.2f} | "
                f"{row['psnr_y']:.2f} |"
            )
    print("\n| recipe | worst condition | worst psnr_y under the veil | goal | |")
    print("|---|---|---|---|---|")
    for recipe, entry in veiled.items():
        worst = entry["worst_veiled"]
        print(worst_row(recipe, worst))
    print("\nRainy samples above the truth under the veil, levels of Y at the median pixel")
    print("| recipe | condition | lowest sample | median sample | the estimate's mean error |")
    print("|---|---|---|---|---|")
    for recipe, entry in summary.items():
        for row in entry["conditions"]:
            error = row["bias_y_veiled"]
            print(
                f"| {recipe} | {row['condition']} | {row['lowest_excess_y']:+.1f} | "
                f"{row['median_excess_y']:+.1f} | "
                + ("— |" if math.isnan(error) else f"{error:+.2f} |")
            )
    names = list(next(iter(veiled.values()))["derainers_under_veil"])
    print("\nDerainers' mean psnr_y against the estimate and the truth under the veil")
    print("| recipe | " + " | ".join(names) + " | τ |")
    print("|---" * (len(names) + 2) + "|")
    for recipe, entry in veiled.items():
        means = entry["derainers_under_veil"]
        cells = " | ".join(
            f"{means[n]['vs_estimate']:.2f} / {means[n]['vs_veiled']:.2f}" for n in names
        )
        print(f"| {recipe} | {cells} | {entry['kendall_tau_veiled']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small condition, two recipes")
    parser.add_argument("--floor", action="store_true", help="also the codec floor per video")
    parser.add_argument("--recipes", nargs="*", default=None, help=f"default: {RECIPES}")
    parser.add_argument("--conditions", nargs="*", default=None, help="only these, by name")
    parser.add_argument("--method", default="percentile", choices=METHODS)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    conditions = QUICK if args.quick else CONDITIONS
    if args.conditions:
        conditions = tuple(c for c in conditions if c.name in args.conditions)
    recipes = args.recipes or (RECIPES[:2] if args.quick else RECIPES)
    names = [spec.name for spec in list_derainers() if not spec.needs_checkpoint]
    derainers = {name: create_derainer(name) for name in names}
    options = EstimateOptions(method=args.method)
    started = time.perf_counter()
    results = []
    for condition in conditions:
        for recipe in recipes:
            results.append(measure(condition, recipe, derainers, args.floor, options))
            log(
                f"{condition.name} {recipe}: estimate {results[-1]['estimate_s']} s, "
                f"{time.perf_counter() - started:.0f} s in all"
            )
    summary = summarise(results, names)
    print_tables(summary, conditions)
    print_under_veil(summary)
    report = {
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        "machine": {"cpu": cpu_model(), "python": platform.python_version()},
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "seconds": round(time.perf_counter() - started, 1),
        "options": asdict(options),
        "conditions": [asdict(c) for c in conditions],
        "summary": summary,
        "results": results,
    }
    print(f"\n{report['seconds']} s")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
