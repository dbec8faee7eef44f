"""The public NLCL trainer and ours side by side (issue 23): the same rainy and clean
pictures, crop size, step count, loss weights and constant learning rate; each code's
loss terms over the first and the last 10 % of the steps, the held-out psnr_y of each
final background generator (and of the identity), and the wall time.

    PYTHONPATH=/tmp/nlcl-ref-deps OMP_NUM_THREADS=1 python benchmarks/nlcl_side_by_side.py \\
        --release /tmp/nlcl-ref --steps 2000 --crop 128 --seeds 0 1 [--device cuda]

The data are benchmarks/nlcl_learns.py's (`--held-out regions`, `--recipe`): its
training captures ingested as a rainbench dataset, the very same JPEG files copied as
the release's trainA (rainy) and trainB (clean), and its held-out syn-`recipe` pairs.
The release has no licence, so none of its code is here: its own train.py runs from
where it was unpacked (it needs `dominate`; `RAINBENCH_NLCL_REFERENCE_PYTHON` picks
another interpreter), seeded by a two-line wrapper, as it has no seed option.

One run of each code at a time, side by side on two cores, one thread each (the public
sampler's memory grows to many GB a step on the CPU, so two of its runs never overlap).
The release counts epochs of max(rainy, clean) pictures; it is stopped right after it
saves its checkpoint at step `--steps`. A measurement: exits 0 whatever the figures.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from gpu import ITERATION_LINE, NEVER, REFERENCE, REFERENCE_PYTHON  # benchmarks/ on sys.path
from nlcl_learns import HELD_OUT_NAME, build

from rainbench import __version__
from rainbench.files import file_sha256
from rainbench.leaderboard.eval import EvalSettings, evaluate
from rainbench.leaderboard.sources import DerainerSource
from rainbench.metrics.report import cpu_model, versions
from rainbench.models.nlcl.published import import_published, save_generator_checkpoint
from rainbench.models.registry import create_derainer
from rainbench.train.nlcl.config import NLCLConfig

# Seeds Python's, NumPy's and torch's generators, then runs the release's train.py as
# its own command line would (it has no seed option; its loader runs in-process).
SEEDED = (
    "import random, runpy, sys; import numpy, torch; seed = int(sys.argv.pop(1)); "
    "random.seed(seed); numpy.random.seed(seed); torch.manual_seed(seed); "
    "sys.argv.pop(0); sys.path.insert(0, sys.argv[0].rpartition('/')[0] or '.'); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
SAVED_LINE = re.compile(r"^saving the latest model \(epoch \d+, total_iters (\d+)\)")
DATASET_LINE = re.compile(r"^The number of training images = (\d+)")
LOSS_PAIR = re.compile(r"(\w+): (-?\d+(?:\.\d+)?)")
# Our losses.csv columns and the release's printed losses for the same terms. Ours are
# unweighted, the release's weighted (× lambda): the table gives both weighted.
# The release prints D_real and D_fake; ours logs their mean, as its loss_D is.
TERMS = {
    "adversarial": "G_GAN",
    "discriminator": ("D_real", "D_fake"),
    "consistency": "MSE",
    "sparsity": "L1",
    "layer_contrast": "DisNCE",
    "location_contrast": None,  # computed by the release, not printed
}
WEIGHTED = ("adversarial", "consistency", "sparsity", "layer_contrast", "location_contrast")
WINDOW = 0.1  # the first and last 10 % of the steps


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", type=Path, default=os.environ.get(REFERENCE),
                        help=f"the unpacked public release (default: ${REFERENCE})")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path("/tmp/nlcl-side-by-side"))
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--public-seeds", type=int, nargs="+",
                        help="seeds of the release's runs (default: --seeds)")  # fmt: skip
    parser.add_argument("--log-every", type=int, default=10, help="both codes' loss lines")
    parser.add_argument("--recipe", default="heavy-streak", help="nlcl_learns.py's --recipe")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where both codes train (scoring stays on the CPU)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="the JSON (default: WORK/nlcl-side-by-side.json)")
    args = parser.parse_args(argv)
    if not args.release or not (args.release / "train.py").is_file():
        parser.error(f"--release (or ${REFERENCE}) must name the unpacked public release")
    if args.steps % args.log_every:
        parser.error("--steps must be a multiple of --log-every")
    args.out = args.out or args.work / "nlcl-side-by-side.json"
    return args


def main() -> int:
    args = arguments()
    train_set, held_out = build(args.work, "regions", args.recipe)
    public_data = public_folders(train_set.parent)
    runs = args.work / f"runs-{args.crop}-{args.steps}"
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:  # the release's runs in turn, ours beside them
        theirs = pool.submit(lambda: [
            train_public(args.release, public_data, runs / f"public-seed{seed}", args, seed)
            for seed in args.public_seeds or args.seeds])  # fmt: skip
        ours = pool.submit(
            lambda: [
                train_ours(train_set, runs / f"ours-seed{seed}", args, seed) for seed in args.seeds
            ]
        )
        rows = ours.result() + theirs.result()
    split = f"syn-{args.recipe}"
    identity = score(None, held_out, split, runs / "identity")
    for row in rows:
        row["psnr_y"] = score(Path(row["checkpoint"]), held_out, split, Path(row["folder"]))
    document = {
        "command": " ".join(["python", "benchmarks/nlcl_side_by_side.py", *sys.argv[1:]]),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "versions": {"rainbench": __version__, **versions()},
        "release": str(args.release),
        "settings": settings(args, len(list((public_data / "trainA").iterdir()))),
        "held_out_pairs": identity["pairs"],
        "identity_psnr_y": identity["psnr_y"],
        "total_seconds": round(time.perf_counter() - started, 1),
        "runs": [{k: v for k, v in row.items() if k != "curve"} for row in rows],
        "curves": {f"{row['code']}-seed{row['seed']}": row["curve"] for row in rows},
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(table(document))
    print(f"JSON: {args.out}")
    return 0


def public_folders(work: Path) -> Path:
    """The release's trainA (rainy) and trainB (clean): the very files ingested."""
    root = work / "public"
    for source, domain in (("rainy", "trainA"), ("clean", "trainB")):
        shutil.rmtree(root / domain, ignore_errors=True)
        shutil.copytree(work / "raw" / source, root / domain)
    return root


def settings(args, rainy: int) -> dict:
    """What each code ran with, side by side: the mapping of its options."""
    return {
        "steps": args.steps,
        "crop": args.crop,
        "batch": 1,
        "seeds_ours": args.seeds,
        "seeds_public": args.public_seeds or args.seeds,
        "log_every": args.log_every,
        "device": args.device,
        "threads": "1 per run, one run of each code at a time",
        "ours": f"rainbench train nlcl --steps {args.steps} --crop {args.crop} --batch 1 "
        f"--decay-steps 0 --workers 0 --threads 1 --seed S --log-every {args.log_every} "
        f"--device {args.device} "
        f"(every weight, lr 2e-4, betas 0.5/0.999: the defaults)",
        "public": f"train.py --model NLCL --dataset_mode unaligned --crop_size {args.crop} "
        f"--batch_size 1 --n_epochs {-(-args.steps // rainy)} --n_epochs_decay 0 "
        f"--gpu_ids {_gpu_ids(args.device)} --num_threads 0 --print_freq {args.log_every}, "
        f"stopped after its checkpoint at step {args.steps} (--save_latest_freq "
        f"{args.steps}); Python, NumPy "
        "and torch seeded with S (every lambda, lr, betas: its defaults)",
        "paper_weights": {term: getattr(NLCLConfig, term) for term in TERMS if term in WEIGHTED},
        "learning_rate": "2e-4, constant: ours --decay-steps 0; the release's linear "
        "policy with --n_epochs_decay 0 keeps it constant until after its last epoch",
        "known_differences": [
            "ours: the deepest discriminator level in the layer contrast, every head "
            "stepped once (the release: 4 levels, image and location heads never "
            "stepped, rain heads twice); docs/nlcl.md, 'Proven equal to the public code'",
            "the release maps sampled positions as for 256 px crops (floor(p*h/256))",
            "the release's loader visits its rainy pictures in a shuffled order with a "
            "random clean one, ours in a shuffled order with clean ones of its own",
        ],
    }


def train_ours(dataset: Path, run: Path, args, seed: int) -> dict:
    shutil.rmtree(run, ignore_errors=True)
    command = [sys.executable, "-m", "rainbench", "train", "nlcl", str(dataset),
               "--out", str(run), "--steps", str(args.steps), "--crop", str(args.crop),
               "--batch", "1", "--decay-steps", "0", "--workers", "0", "--threads", "1",
               "--seed", str(seed), "--log-every", str(args.log_every),
               "--checkpoint-every", str(args.steps), "--device", args.device,
               "--no-progress"]  # fmt: skip
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode:
        lines = finished.stderr.strip().splitlines() or [f"exit status {finished.returncode}"]
        raise RuntimeError(f"rainbench train nlcl failed: {lines[-1]}")
    seconds = time.perf_counter() - started
    losses = pd.read_csv(run / "losses.csv")
    curve = {"step": losses["step"].tolist()}
    for term in TERMS:
        weight = getattr(NLCLConfig, term) if term in WEIGHTED else 1.0
        curve[term] = (losses[term] * weight).round(4).tolist()
    return row("ours", seed, run, run / "nlcl.pt", seconds, curve)


def train_public(release: Path, data: Path, run: Path, args, seed: int) -> dict:
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    rainy = len(list((data / "trainA").iterdir()))
    clean = len(list((data / "trainB").iterdir()))
    options = {
        "dataroot": data,
        "model": "NLCL",
        "dataset_mode": "unaligned",
        "name": "side-by-side",
        "checkpoints_dir": run,
        "gpu_ids": _gpu_ids(args.device),
        "crop_size": args.crop,
        "batch_size": 1,
        "n_epochs": -(-args.steps // max(rainy, clean)),
        "n_epochs_decay": 0,  # constant lr until after the last epoch
        "num_threads": 0,  # the loader in-process, so the seed covers its crops
        "print_freq": args.log_every,
        "display_id": 0,
        "display_freq": NEVER,
        "save_latest_freq": args.steps,
        "save_epoch_freq": NEVER,
    }
    python = os.environ.get(REFERENCE_PYTHON) or sys.executable
    command = [python, "-u", "-c", SEEDED, str(seed), str(release / "train.py"), "--no_html"]
    command += [arg for key, value in options.items() for arg in (f"--{key}", str(value))]
    started = time.perf_counter()
    curve = run_public(command, run, args.steps)
    seconds = time.perf_counter() - started
    checkpoint = run / "side-by-side" / "latest_net_Back.pth"
    imported = run / "nlcl-imported.pt"  # as `rainbench nlcl import-checkpoint` does
    save_generator_checkpoint(import_published(checkpoint), imported, file_sha256(checkpoint))
    return row("public", seed, run, imported, seconds, curve)


def _gpu_ids(device: str) -> int:
    """The release's --gpu_ids for our --device: -1 is its CPU."""
    return 0 if device == "cuda" else -1


def run_public(command: list[str], cwd: Path, steps: int) -> dict[str, list[float]]:
    """Run the release's train.py, parse its loss lines into a curve by global step,
    and stop it once it has saved its checkpoint at `steps` (it prints its run's name
    after the "saving" line, then saves; the line after that comes after the save).
    RuntimeError with its last lines when it fails."""
    curve: dict[str, list[float]] = {"step": [], **{term: [] for term in TERMS}}
    per_epoch, saved, after_save = None, False, 0
    tail: deque[str] = deque(maxlen=20)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        for line in process.stdout:
            tail.append(line.rstrip())
            if saved:
                after_save += 1
                if after_save == 2:
                    process.terminate()
                    break
                continue
            if match := DATASET_LINE.match(line):
                per_epoch = int(match[1])
            elif match := ITERATION_LINE.match(line):
                epoch = int(re.match(r"^\(epoch: (\d+)", line)[1])
                values = dict(LOSS_PAIR.findall(line.partition(")")[2]))
                curve["step"].append((epoch - 1) * per_epoch + int(match[1]))
                for term, names in TERMS.items():
                    if names is None:
                        curve[term].append(None)
                    elif isinstance(names, tuple):
                        curve[term].append(float(np.mean([float(values[n]) for n in names])))
                    else:
                        curve[term].append(float(values[names]))
            elif (match := SAVED_LINE.match(line)) and int(match[1]) == steps:
                saved = True
        process.wait()
    if not saved:
        raise RuntimeError(f"the release stopped before step {steps}: " + "\n".join(tail))
    return curve


def row(code: str, seed: int, folder: Path, checkpoint: Path, seconds: float, curve) -> dict:
    """One run's summary: each term's mean over the first and last 10 % of its steps."""
    steps = np.array(curve["step"])
    last = steps.max()
    # As each run ends (the JSON comes only at the end): a run cut short still says how far it got.
    print(f"{code} seed {seed}: {last} steps in {seconds:.0f} s", file=sys.stderr, flush=True)
    first_window = steps <= WINDOW * last
    last_window = steps > (1 - WINDOW) * last
    means = {}
    for term in TERMS:
        values = np.array([np.nan if v is None else v for v in curve[term]], dtype=float)
        means[term] = [_mean(values[first_window]), _mean(values[last_window])]
    return {
        "code": code,
        "seed": seed,
        "folder": str(folder),
        "checkpoint": str(checkpoint),
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / last, 2),
        "first_last_10pct": means,
        "curve": curve,
    }


def _mean(values: np.ndarray) -> float | None:
    return None if np.isnan(values).all() else round(float(np.nanmean(values)), 3)


def score(checkpoint: Path | None, held_out: Path, split: str, folder: Path) -> dict:
    """Mean psnr_y over the held-out pairs, whole images, as `rainbench eval` scores."""
    name = "identity" if checkpoint is None else "nlcl"
    derainer = create_derainer(name, checkpoint=checkpoint, device="cpu")
    results = folder / "results"
    shutil.rmtree(results, ignore_errors=True)
    evaluate(DerainerSource(derainer, "cpu", None, 32), held_out, split, results,
             EvalSettings(metrics=("psnr_y",), device="cpu"))  # fmt: skip
    # The derainer names its results folder (an imported checkpoint: nlcl-published).
    (scores,) = results.glob(f"*/{HELD_OUT_NAME}/{split}.parquet")
    table = pd.read_parquet(scores)
    return {"psnr_y": round(float(table["psnr_y"].mean()), 3), "pairs": len(table)}


def table(document: dict) -> str:
    """One line per code and seed: each term's first → last 10 % mean, psnr_y, time."""
    settings = document["settings"]
    lines = [
        f"{settings['steps']} steps at {settings['crop']} px, batch 1; loss terms weighted, "
        f"mean over the first → last 10 % of steps (logged every {settings['log_every']}); "
        f"held-out psnr_y on {document['held_out_pairs']} pairs "
        f"(identity {document['identity_psnr_y']:.2f} dB)",
        "code    seed " + " ".join(f"{t[:13]:>15}" for t in TERMS) + "  psnr_y  s/step",
    ]
    for run in document["runs"]:
        cells = []
        for term in TERMS:
            first, last = run["first_last_10pct"][term]
            cells.append("—" if first is None else f"{first:.3f}→{last:.3f}")
        lines.append(
            f"{run['code']:<7} {run['seed']:>4} "
            + " ".join(f"{c:>15}" for c in cells)
            + f"  {run['psnr_y']['psnr_y']:6.2f}  {run['seconds_per_step']:6.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
