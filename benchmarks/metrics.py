"""Throughput and values of `rainbench.metrics.engine.score` with niqe, piqe, psnr_y and
ssim_y on generated prediction/reference PNG pairs of several resolutions, against a
naive loop that calls pyiqa per image and per metric, in the same run on the same files.
With --noref-only: the engine with niqe and piqe alone against pyiqa's niqe and piqe
called directly, as a user would (each metric created once, then called per image).

A measurement, not a test: it exits 0 whatever the figures, and prints PASS or MISS
per goal.

Example:  python benchmarks/metrics.py --weights-dir /tmp/w3 --data /tmp/rain-pairs
          python benchmarks/metrics.py --weights-dir /tmp/w3 --noref-only --repeats 2
"""

import argparse
import json
import math
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
from bench import cpu_model, log  # benchmarks/ is on sys.path when run as a script
from PIL import Image
from scipy.ndimage import gaussian_filter

from rainbench.demo.captures import render_scene
from rainbench.metrics import MetricError, fullref, weights
from rainbench.metrics.engine import ScoreSettings, pair_folders, score

METRICS = ("niqe", "piqe", "psnr_y", "ssim_y")
# Megapixels and images per resolution: the large ones are few because pyiqa's SSIM,
# in the naive loop, costs 40–60 s per 12 MP image on a 2-core machine.
DEFAULT_COUNTS = "0.5:8,2:4,6:1,12:1"
GOAL_OF_NAIVE = 2.0  # ours ≥ 2× the naive loop's images/s
TOLERANCE = 1e-4  # values equal to this, absolute
NOREF = ("niqe", "piqe")
GOAL_OF_PYIQA = 1.5  # --noref-only: ours ≥ 1.5× pyiqa's own niqe and piqe calls
# Relative. The engine hands pyiqa the same float32 tensor pyiqa makes from the file, but
# its workers run torch on one thread each, and torch splits a large reduction by thread:
# on 12 MP, PIQE moves by one float32 step (1.2e-7 relative) and NIQE by ~1e-13.
NOREF_TOLERANCE = 1e-6
# The prediction: the reference blurred and noised, then rounded back to uint8.
BLUR_SIGMA = 1.0
NOISE_SIGMA = 4.0

# The naive loop's pyiqa metric for each of ours, set as close to our convention as
# pyiqa allows: Y of MATLAB's rgb2ycbcr (not pyiqa's default YIQ), rounded to integers.
# pyiqa's PSNR rounds Y only when data_range ≥ 255; Y is then on the 0..255 scale, as
# ours, although the images it reads stay in 0..1.
PYIQA = {
    "niqe": ("niqe", {}),
    "piqe": ("piqe", {}),
    "psnr_y": ("psnr", {"test_y_channel": True, "color_space": "ycbcr", "data_range": 255}),
    "ssim_y": ("ssim", {"test_y_channel": True, "color_space": "ycbcr"}),
}

# The methods, each run as this script in a fresh process: key → (label, environment).
METHODS = {
    "ours": ("rainbench score engine", {}),
    # torch starts as many threads as there are cores in every worker process.
    "ours_1thread": ("rainbench score engine, OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}),
    "naive": ("naive pyiqa loop (per image, per metric)", {}),
}
NOREF_METHODS = {
    "ours_noref": ("rainbench score engine, niqe + piqe", {}),
    "pyiqa": ("pyiqa niqe + piqe, created once, per image", {}),
}
_VERDICT = {True: "PASS", False: "MISS"}


@dataclass(frozen=True)
class PairSpec:
    name: str  # the stem of both files: pred/NAME.png and ref/NAME.png
    width: int
    height: int
    seed: int

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


@dataclass
class Run:
    seconds: float  # wall time of the whole command, interpreter start-up included
    output: dict  # what the method printed: its own timing and its values


@dataclass
class Result:
    method: str
    images: int
    megapixels: float
    runs: list[Run] = field(default_factory=list)

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda run: run.seconds)

    @property
    def images_per_second(self) -> float:
        return self.images / self.best.seconds

    @property
    def megapixels_per_second(self) -> float:
        return self.megapixels / self.best.seconds

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "images": self.images,
            "megapixels": round(self.megapixels, 2),
            "seconds": [round(run.seconds, 2) for run in self.runs],
            "own_seconds": [round(run.output["seconds"], 2) for run in self.runs],
            "images_per_second": round(self.images_per_second, 4),
            "megapixels_per_second": round(self.megapixels_per_second, 4),
        }


def print_methods(results: dict, extra_header: str, extra: Callable[[object], str]) -> None:
    """One line per method: images, MP, wall and own seconds, images/s, then `extra`."""
    header = f"{'method':<44} {'images':>6} {'MP':>6} {'wall s':>7} {'own s':>7} {'images/s':>9}"
    print(header + extra_header)
    print("-" * (len(header) + len(extra_header)))
    for result in results.values():
        print(
            f"{result.method:<44} {result.images:>6} {result.megapixels:>6.1f} "
            f"{result.best.seconds:>7.1f} {result.best.output['seconds']:>7.1f} "
            f"{result.images_per_second:>9.3f}" + extra(result)
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--counts",
        default=DEFAULT_COUNTS,
        help=f"MP:images per resolution, 4:3 images (default {DEFAULT_COUNTS})",
    )
    parser.add_argument(
        "--workers",
        "-j",
        type=int,
        default=os.cpu_count() or 1,
        help="the engine's processes (default: all cores)",
    )
    parser.add_argument(
        "--weights-dir",
        type=Path,
        help="where niqe_modelparameters.mat is (default: $RAINBENCH_WEIGHTS, else "
        "~/.cache/rainbench/weights)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per method (default 1)")
    parser.add_argument("--data", type=Path, help="keep the generated pairs here and reuse them")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--noref-only",
        action="store_true",
        help="time the engine with niqe and piqe alone against pyiqa's niqe and piqe",
    )
    # Each method runs as this script in a fresh process.
    parser.add_argument(
        "--method", choices=("ours", "naive", *NOREF_METHODS), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    try:
        counts = parse_counts(args.counts)
    except ValueError as error:
        parser.error(f"--counts: {error}")
    if args.workers < 1 or args.repeats < 1:
        parser.error("--workers and --repeats must be at least 1")
    try:
        niqe_file = weights.require("niqe", args.weights_dir)
    except MetricError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    if args.method:
        pred, ref = args.data / "pred", args.data / "ref"
        if args.method == "ours":
            output = ours(pred, ref, niqe_file.parent, args.workers, METRICS)
        elif args.method == "ours_noref":
            output = ours(pred, None, niqe_file.parent, args.workers, NOREF)
        elif args.method == "pyiqa":
            output = pyiqa_noref(pred, niqe_file)
        else:
            output = naive(pred, ref, niqe_file)
        print(json.dumps(output))
        return
    run = benchmark_noref if args.noref_only else benchmark
    if args.data:
        run(args.data, counts, args.workers, niqe_file.parent, args.repeats, args.json)
    else:
        with tempfile.TemporaryDirectory(prefix="rainbench-bench-") as data:
            run(Path(data), counts, args.workers, niqe_file.parent, args.repeats, args.json)


def parse_counts(text: str) -> list[tuple[float, int]]:
    """Parse "0.5:8,12:1" into [(0.5, 8), (12.0, 1)]."""
    counts = []
    for part in text.split(","):
        megapixels, _, images = part.partition(":")
        counts.append((float(megapixels), int(images)))
        if counts[-1][0] <= 0 or counts[-1][1] < 0:
            raise ValueError(f"{part!r} is not MP:images with MP > 0 and images ≥ 0")
    if not any(images for _, images in counts):
        raise ValueError("no images asked for")
    return counts


def benchmark(
    data: Path,
    counts: list[tuple[float, int]],
    workers: int,
    weights_dir: Path,
    repeats: int,
    as_json: bool,
) -> None:
    # Others' work on the machine skews every ratio; the load around the run shows it.
    load = os.getloadavg()[0]
    specs = prepare(data, counts, workers)
    methods = {key: ("naive" if key == "naive" else "ours", *rest) for key, rest in METHODS.items()}
    results = run_methods(data, specs, methods, workers, weights_dir, repeats)
    report(results, specs, counts, workers, load, as_json)


def benchmark_noref(
    data: Path,
    counts: list[tuple[float, int]],
    workers: int,
    weights_dir: Path,
    repeats: int,
    as_json: bool,
) -> None:
    """The engine with niqe and piqe against pyiqa's niqe and piqe, on the predictions."""
    load = os.getloadavg()[0]
    specs = prepare(data, counts, workers)
    methods = {key: (key, *rest) for key, rest in NOREF_METHODS.items()}
    results = run_methods(data, specs, methods, workers, weights_dir, repeats)
    report_noref(results, specs, workers, load, as_json)


def prepare(data: Path, counts: list[tuple[float, int]], workers: int) -> list[PairSpec]:
    specs = generate(data, counts, workers)
    for path in sorted(data.rglob("*.png")):  # every method starts from the page cache
        path.read_bytes()
    megapixels = sum(spec.megapixels for spec in specs)
    log(f"{len(specs)} pairs, {megapixels:.1f} MP: " + _describe(specs))
    return specs


def run_methods(
    data: Path,
    specs: list[PairSpec],
    methods: dict[str, tuple[str, str, dict[str, str]]],
    workers: int,
    weights_dir: Path,
    repeats: int,
) -> dict[str, Result]:
    """Each method (key → hidden --method, label, environment) `repeats` times."""
    megapixels = sum(spec.megapixels for spec in specs)
    script = [sys.executable, str(Path(__file__).resolve()), "--data", str(data)]
    script += ["--weights-dir", str(weights_dir), "-j", str(workers)]
    results = {key: Result(label, len(specs), megapixels) for key, (_, label, _) in methods.items()}
    # Interleaved repeats, so a slow spell of the machine hits every method alike.
    for repeat in range(repeats):
        for key, (method, label, env) in methods.items():
            run = measure([*script, "--method", method], env)
            results[key].runs.append(run)
            log(f"  run {repeat + 1}: {label}: {run.seconds:.1f} s")
    return results


# -- the pairs -------------------------------------------------------------------------


def pair_specs(counts: list[tuple[float, int]]) -> list[PairSpec]:
    """The pairs, 4:3, their resolutions shuffled into name order (a fixed shuffle): the
    engine takes the images in name order, so the large ones are spread among them."""
    sizes = [_size(megapixels) for megapixels, images in counts for _ in range(images)]
    random.Random(0).shuffle(sizes)
    return [PairSpec(f"scene-{i:03d}", w, h, seed=i) for i, (w, h) in enumerate(sizes)]


def _size(megapixels: float) -> tuple[int, int]:
    unit = round(math.sqrt(megapixels * 1e6 / 12))
    return 4 * unit, 3 * unit


def generate(data: Path, counts: list[tuple[float, int]], workers: int) -> list[PairSpec]:
    """Write data/ref/NAME.png (a rendered scene) and data/pred/NAME.png (it blurred and
    noised) for every pair; reused when a previous run asked for the same pairs."""
    specs = pair_specs(counts)
    stamp = data / "pairs.json"
    wanted = {
        "pairs": [asdict(spec) for spec in specs],
        "blur_sigma": BLUR_SIGMA,
        "noise_sigma": NOISE_SIGMA,
    }
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return specs
    for folder in ("pred", "ref"):
        (data / folder).mkdir(parents=True, exist_ok=True)
        for old in (data / folder).glob("*.png"):
            old.unlink()
    started = time.perf_counter()
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(write_pair, [data] * len(specs), specs))
    log(f"generated {len(specs)} pairs in {time.perf_counter() - started:.0f} s")
    stamp.write_text(json.dumps(wanted))
    return specs


def write_pair(data: Path, spec: PairSpec) -> None:
    ref = render_scene(spec.width, spec.height, spec.seed)
    noise = np.random.default_rng(spec.seed).normal(0, NOISE_SIGMA, ref.shape)
    blurred = gaussian_filter(ref.astype(np.float32), sigma=(BLUR_SIGMA, BLUR_SIGMA, 0))
    pred = np.clip(np.rint(blurred + noise), 0, 255).astype(np.uint8)
    Image.fromarray(ref).save(data / "ref" / f"{spec.name}.png")
    Image.fromarray(pred).save(data / "pred" / f"{spec.name}.png")


def _describe(specs: list[PairSpec]) -> str:
    sizes: dict[tuple[int, int], int] = {}
    for spec in specs:
        sizes[spec.width, spec.height] = sizes.get((spec.width, spec.height), 0) + 1
    return ", ".join(f"{n} × {w}×{h}" for (w, h), n in sorted(sizes.items()))


# -- the methods -----------------------------------------------------------------------


def ours(
    pred: Path, ref: Path | None, weights_dir: Path, workers: int, metrics: tuple[str, ...]
) -> dict:
    """The engine as `rainbench score --no-cache` runs it: pool start and the workers'
    imports of torch and pyiqa fall inside the timing."""
    started = time.perf_counter()
    jobs = pair_folders(pred, ref).jobs
    settings = ScoreSettings(metrics, {"weights_dir": str(weights_dir)}, cache=None)
    rows = list(score(jobs, settings, workers))
    seconds = time.perf_counter() - started
    failed = [f"{row['name']}: {row['status']}" for row in rows if row["status"] != "ok"]
    if failed:
        raise RuntimeError("the engine failed on " + "; ".join(failed))
    return {
        "seconds": seconds,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "values": {row["name"]: {metric: row[metric] for metric in metrics} for row in rows},
    }


def pyiqa_noref(pred: Path, niqe_file: Path) -> dict:
    """pyiqa's niqe and piqe as a user calls them: each created once, then called on
    every prediction's path (pyiqa decodes it), one process, torch's default threads."""
    jobs = pair_folders(pred, None).jobs
    started = time.perf_counter()
    import pyiqa

    with redirect_stdout(sys.stderr):  # pyiqa prints while loading
        models = {
            "niqe": pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=str(niqe_file)),
            "piqe": pyiqa.create_metric("piqe", device="cpu"),
        }
    values = {
        job.name: {metric: float(model(str(job.pred))) for metric, model in models.items()}
        for job in jobs
    }
    return {"seconds": time.perf_counter() - started, "values": values}


def naive(pred: Path, ref: Path, niqe_file: Path) -> dict:
    """Each metric built once, then for every image and every metric, pyiqa reads and
    decodes the files itself and scores them; one process, torch's default threads.

    Afterwards, untimed, our own psnr_y and ssim_y on each pair decoded here: the exact
    reference for the engine's values, which pyiqa's options cannot reproduce."""
    jobs = pair_folders(pred, ref).jobs
    started = time.perf_counter()
    import pyiqa
    import torch

    pyiqa_metrics = {}
    for metric, (name, options) in PYIQA.items():
        if metric == "niqe":
            options = {**options, "pretrained_model_path": str(niqe_file)}
        with redirect_stdout(sys.stderr):  # pyiqa prints while loading
            pyiqa_metrics[metric] = pyiqa.create_metric(name, device="cpu", **options)
    steps = {metric: [] for metric in METRICS}
    values: dict[str, dict] = {}
    for job in jobs:
        values[job.name] = {}
        for metric, model in pyiqa_metrics.items():
            begun = time.perf_counter()
            if metric in ("psnr_y", "ssim_y"):
                value = model(str(job.pred), str(job.ref))
            else:
                value = model(str(job.pred))
            values[job.name][metric] = float(value)
            steps[metric].append(time.perf_counter() - begun)
    seconds = time.perf_counter() - started

    own_steps: dict[str, list[float]] = {"decode pair": [], "psnr_y": [], "ssim_y": []}
    own: dict[str, dict] = {}
    sizes = {}
    for job in jobs:
        begun = time.perf_counter()
        pred_rgb, ref_rgb = _read(job.pred), _read(job.ref)
        own_steps["decode pair"].append(time.perf_counter() - begun)
        sizes[job.name] = pred_rgb.shape[1::-1]
        own[job.name] = {}
        for metric, function in (("psnr_y", fullref.psnr_y), ("ssim_y", fullref.ssim_y)):
            begun = time.perf_counter()
            own[job.name][metric] = function(pred_rgb, ref_rgb)
            own_steps[metric].append(time.perf_counter() - begun)
    return {
        "seconds": seconds,
        "torch_threads": torch.get_num_threads(),
        "names": [job.name for job in jobs],
        "sizes": sizes,
        "steps": steps,
        "values": values,
        "own_steps": own_steps,
        "own_values": own,
    }


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def measure(command: list[str], env: dict[str, str]) -> Run:
    started = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return Run(seconds, json.loads(done.stdout))


# -- reporting -------------------------------------------------------------------------


def report_noref(
    results: dict[str, Result], specs: list[PairSpec], workers: int, load: float, as_json: bool
) -> None:
    ours_, pyiqa_ = results["ours_noref"], results["pyiqa"]
    ratio = pyiqa_.best.seconds / ours_.best.seconds
    theirs = pyiqa_.best.output["values"]
    differences = {  # relative
        metric: max(
            _difference(run.output["values"][name][metric], theirs[name][metric])
            / abs(theirs[name][metric])
            for run in ours_.runs
            for name in theirs
        )
        for metric in NOREF
    }
    goals = {
        "ours_over_pyiqa": ratio >= GOAL_OF_PYIQA,
        "values_equal": all(d <= NOREF_TOLERANCE for d in differences.values()),
    }
    info = machine(load)
    if as_json:
        document = {
            "pairs": [asdict(spec) for spec in specs],
            "workers": workers,
            "machine": info,
            "methods": {key: result.to_dict() for key, result in results.items()},
            "max_relative_difference": differences,
            "relative_tolerance": NOREF_TOLERANCE,
            "ratio": round(ratio, 3),
            "goals": {name: _VERDICT[ok] for name, ok in goals.items()},
        }
        print(json.dumps(document, indent=2))
        return
    print()
    print(", ".join(f"{key}: {value}" for key, value in info.items()))
    print(
        f"{len(specs)} predictions ({_describe(specs)}), {workers} engine workers; best of "
        f"{len(ours_.runs)} run(s), wall time of the whole command"
    )
    print()
    print_methods(
        results,
        "   runs (wall s)",
        lambda r: "   " + ", ".join(f"{run.seconds:.1f}" for run in r.runs),
    )
    print()
    for metric, difference in differences.items():
        print(
            f"  |ours {metric} − pyiqa {metric}| / |pyiqa|, max over images, runs: {difference:.2e}"
        )
    print(
        f"values equal (relative tolerance {NOREF_TOLERANCE:g}): " + _VERDICT[goals["values_equal"]]
    )
    print(
        f"ours / pyiqa's niqe + piqe = {ratio:.2f}×  (goal ≥ {GOAL_OF_PYIQA})  "
        f"{_VERDICT[goals['ours_over_pyiqa']]}"
    )


def compare_values(results: dict[str, Result]) -> list[dict]:
    """Max absolute difference per comparison, over every image."""
    ours_values = results["ours"].best.output["values"]
    naive_out = results["naive"].best.output
    one_thread = results["ours_1thread"].best.output["values"]
    rows = [
        ("niqe", "ours niqe − pyiqa niqe", naive_out["values"], True),
        ("piqe", "ours piqe − pyiqa piqe", naive_out["values"], True),
        (
            "psnr_y",
            "ours psnr_y − pyiqa psnr (ycbcr Y, data_range 255)",
            naive_out["values"],
            False,
        ),
        ("ssim_y", "ours ssim_y − pyiqa ssim (ycbcr Y)", naive_out["values"], False),
        ("psnr_y", "ours psnr_y − fullref.psnr_y per image", naive_out["own_values"], True),
        ("ssim_y", "ours ssim_y − fullref.ssim_y per image", naive_out["own_values"], True),
    ]
    rows += [
        (metric, f"ours {metric} − ours with OMP_NUM_THREADS=1", one_thread, True)
        for metric in METRICS
    ]
    lines = []
    for metric, label, other, counts in rows:
        worst = max(_difference(ours_values[name][metric], other[name][metric]) for name in other)
        lines.append(
            {
                "metric": metric,
                "comparison": label,
                "max_abs_difference": worst,
                "within_tolerance": worst <= TOLERANCE,
                # pyiqa's psnr and ssim follow another convention: context, not the goal.
                "counts_for_goal": counts,
            }
        )
    return lines


def _difference(a: float, b: float) -> float:
    if a == b:  # inf == inf for an identical pair
        return 0.0
    return abs(a - b)


def naive_breakdown(naive_out: dict) -> list[dict]:
    """Mean seconds per image of each naive step, per resolution (pyiqa's steps include
    its own decoding of the files; the own steps are the untimed check pass)."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, name in enumerate(naive_out["names"]):
        width, height = naive_out["sizes"][name]
        by_size.setdefault((width, height), []).append(index)
    lines = []
    for (width, height), indices in sorted(by_size.items(), key=lambda item: math.prod(item[0])):
        line = {"size": f"{width}×{height}", "images": len(indices)}
        for label, steps in (("pyiqa", naive_out["steps"]), ("own", naive_out["own_steps"])):
            for step, seconds in steps.items():
                line[f"{label} {step}"] = round(sum(seconds[i] for i in indices) / len(indices), 3)
        lines.append(line)
    return lines


def machine(load: float) -> dict:
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        **{package: version(package) for package in ("numpy", "scipy", "pillow", "torch", "pyiqa")},
        "load_1min_at_start": round(load, 2),
        "load_1min_at_end": round(os.getloadavg()[0], 2),
    }


def report(
    results: dict[str, Result],
    specs: list[PairSpec],
    counts: list[tuple[float, int]],
    workers: int,
    load: float,
    as_json: bool,
) -> None:
    ours_, naive_ = results["ours"], results["naive"]
    naive_out = naive_.best.output
    # The naive loop's niqe and piqe calls alone: what any loop over pyiqa pays for them.
    niqe_piqe = sum(sum(naive_out["steps"][metric]) for metric in ("niqe", "piqe"))
    ratios = {
        "ours_over_naive": ours_.images_per_second / naive_.images_per_second,
        "ours_1thread_over_naive": results["ours_1thread"].images_per_second
        / naive_.images_per_second,
        "ours_over_naive_niqe_piqe_calls": niqe_piqe / ours_.best.seconds,
    }
    values = compare_values(results)
    goals = {
        "ours_over_naive": ratios["ours_over_naive"] >= GOAL_OF_NAIVE,
        "values_equal": all(v["within_tolerance"] for v in values if v["counts_for_goal"]),
    }
    naive_steps = {metric: round(sum(seconds), 2) for metric, seconds in naive_out["steps"].items()}
    breakdown = naive_breakdown(naive_out)
    info = machine(load)
    if as_json:
        document = {
            "counts": [{"megapixels": mp, "images": n} for mp, n in counts],
            "pairs": [asdict(spec) for spec in specs],
            "workers": workers,
            "naive_torch_threads": naive_out["torch_threads"],
            "machine": info,
            "methods": {key: result.to_dict() for key, result in results.items()},
            "naive_seconds_by_metric": naive_steps,
            "naive_seconds_per_image": breakdown,
            "values": values,
            "ratios": {name: round(value, 3) for name, value in ratios.items()},
            "goals": {name: _VERDICT[ok] for name, ok in goals.items()},
        }
        print(json.dumps(document, indent=2))
        return
    print()
    print(", ".join(f"{key}: {value}" for key, value in info.items()))
    print(
        f"{len(specs)} pairs ({_describe(specs)}), {workers} engine workers, naive: one "
        f"process with {naive_out['torch_threads']} torch threads; best of "
        f"{len(ours_.runs)} run(s), wall time of the whole command"
    )
    print()
    print_methods(results, f" {'MP/s':>7}", lambda r: f" {r.megapixels_per_second:>7.3f}")
    print("(own s: the method's own timing, without interpreter start-up and first imports)")
    print()
    print(
        "naive seconds by metric (pyiqa's call, its file decoding included): "
        + ", ".join(f"{metric} {seconds}" for metric, seconds in naive_steps.items())
    )
    print("mean seconds per image (naive pyiqa calls; own: the untimed check pass):")
    for line in breakdown:
        print("  " + ", ".join(f"{key} {value}" for key, value in line.items()))
    print()
    print(f"values, max |difference| over {len(specs)} images (tolerance {TOLERANCE:g}):")
    for line in values:
        note = "" if line["counts_for_goal"] else "  (another convention: context)"
        print(
            f"  {line['comparison']:<52} {line['max_abs_difference']:.3e}  "
            f"{_VERDICT[line['within_tolerance']]}{note}"
        )
    print(f"values equal to {TOLERANCE:g}: {_VERDICT[goals['values_equal']]}")
    print()
    print(
        f"ours / naive = {ratios['ours_over_naive']:.2f}×  (goal ≥ {GOAL_OF_NAIVE})  "
        f"{_VERDICT[goals['ours_over_naive']]}"
    )
    print(f"ours (OMP_NUM_THREADS=1) / naive = {ratios['ours_1thread_over_naive']:.2f}×  (context)")
    print(
        f"ours against the naive loop's niqe and piqe calls alone ({niqe_piqe:.1f} s) = "
        f"{ratios['ours_over_naive_niqe_piqe_calls']:.2f}×  (context)"
    )


if __name__ == "__main__":
    main()
