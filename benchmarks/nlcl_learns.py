"""Evidence that NLCL learns: a short training run on streak rain, then psnr_y of its
background generator on held-out synthetic pairs against the identity's (the rainy
input's own psnr_y), with the same measure every --validate-every steps on the way.

    python benchmarks/nlcl_learns.py --minutes 18 --crop 64 --blocks 4    # CPU budget
    python benchmarks/nlcl_learns.py --device cuda --steps 20000 --crop 256 --held-out photos

The data (built once under --work) come from scikit-image's sample photographs, in the
standard unpaired setting: the training captures as clean captures and, with streak
rain rendered on them (3 renders each; `--recipe storm`, `multi-streak` or
`heavy-streak` for those recipes' rain), as rainy captures, cropped independently. The
held-out pairs are that recipe's rain rendered on captures in a dataset of their own
that training never reads: two quarters of each of five colour photographs, whose
other two quarters train (`--held-out regions`; with `--colour-only`, they alone train,
without the grey and other photographs), or 2×2 tiles of four photographs that training
never sees at all (`--held-out photos`). Prints and writes a JSON with the numbers, the
validation curve and the command (--out, default WORK/nlcl-learns.json), and beside it a
JPEG contact sheet of four held-out pairs (rainy | B̂ | clean).
"""

import argparse
import io
import json
import os
import shutil
import sys
import time
from dataclasses import replace
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from rainbench import __version__
from rainbench.data import RainDataset
from rainbench.ingest import IngestOptions, ingest
from rainbench.leaderboard.eval import EvalSettings, evaluate
from rainbench.leaderboard.sources import DerainerSource
from rainbench.metrics.report import cpu_model, versions
from rainbench.models.base import to_pixels
from rainbench.models.registry import create_derainer
from rainbench.synth.build import SynthOptions, synthesize
from rainbench.synth.render import derive_seed, render
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.trainer import train
from rainbench.train.tagger import sample_photo

# The standard unpaired setting: training captures as clean captures and, with streak
# rain rendered on them, as rainy captures, cropped independently so no crop has its
# pair. Held-out pairs are syn-streak on captures that training never reads, either
# (--held-out photos) tiles of four other photographs, or (--held-out regions, the
# default) two of the four quarters of each colour photograph, whose other two quarters
# train: most of the other photographs are grey, and a generator that sees no saturated
# colour in training learns none.
GREY_AND_OTHER = ("coins.png", "gravel.png", "clock_motion.png", "ihc.png", "cell.png",
                  "camera.png", "brick.png", "grass.png", "text.png", "page.png", "retina.jpg",
                  "hubble_deep_field.jpg")  # fmt: skip
# (Not motorcycle_right.png: a stereo view of motorcycle_left, so its quarters would show
# the held-out quarters' scene.)
COLOUR = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
HELD_OUT_PHOTOS = ("coffee.png", "chelsea.png", "motorcycle_left.png", "astronaut.png")
RENDERS = 3  # rain renders per training capture
WIDTH = 384  # px: the whole photographs' width; quarters keep their native resolution
HELD_OUT_NAME = "nlcl-held-out"  # the held-out dataset's name, under which results go
SHEET_HEIGHT = 192  # px: each picture's height on the contact sheet


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nlcl-learns"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, help="as many steps as fit in this (CPU budget)")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--amp", default="off")
    parser.add_argument(
        "--sparsity",
        type=float,
        default=NLCLConfig.sparsity,
        help="the weight of the sparsity term mean|O − B̂| (the paper's: 0.1)",
    )
    parser.add_argument("--validate-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0, help="the training run's seed")
    parser.add_argument("--held-out", choices=("regions", "photos"), default="regions")
    parser.add_argument(
        "--colour-only",
        action="store_true",
        help="with --held-out regions: train on the colour photographs' quarters alone",
    )
    parser.add_argument(
        "--recipe",
        choices=("streak", "storm", "multi-streak", "heavy-streak"),
        default="streak",
        help="the rain rendered on the training captures and the held-out pairs",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the JSON (default: WORK/nlcl-learns.json); the contact sheet goes beside it (.jpg)",
    )
    args = parser.parse_args(argv)
    if args.colour_only and args.held_out != "regions":
        parser.error("--colour-only goes with --held-out regions")
    args.out = args.out or args.work / "nlcl-learns.json"
    return args


def main() -> int:
    args = arguments()
    train_set, held_out = build(args.work, args.held_out, args.recipe, args.colour_only)
    split = f"syn-{args.recipe}"
    config = NLCLConfig(
        crop=args.crop, batch=args.batch, channels=args.channels, blocks=args.blocks,
        sparsity=args.sparsity, seed=args.seed,
        # The paper's location-contrast layers, as far as a smaller generator has them.
        nce_layers=tuple(layer for layer in (0, 2, 4, 8, 12) if layer <= args.blocks + 1),
        amp=args.amp, workers=1, log_every=50, validate_every=args.validate_every,
        val_split=split, val_dataset=str(held_out), val_images=1000,
    )  # fmt: skip
    steps = _steps_in(args.minutes, train_set, config, args) if args.minutes else args.steps
    config = replace(config, steps=steps, checkpoint_every=steps, decay_steps=steps // 4)
    weights = "" if args.sparsity == NLCLConfig.sparsity else f"-sparsity{args.sparsity:g}"
    seed = f"-seed{args.seed}" if args.seed else ""
    device = args.device.replace(":", "")
    run = train_set.parent / f"run-{device}-{args.crop}-{args.blocks}-{steps}{weights}{seed}"
    started = time.perf_counter()
    report = train(train_set, run, config, args.device, progress=True)
    seconds = time.perf_counter() - started
    scores, derainers = {}, {}
    results = results_folder(run)
    for name, checkpoint in (("identity", None), ("nlcl", run / "nlcl.pt")):
        derainers[name] = create_derainer(name, checkpoint=checkpoint, device=args.device)
        source = DerainerSource(derainers[name], args.device, None, 32)
        settings = EvalSettings(metrics=("psnr_y", "ssim_y"), device=args.device)
        evaluate(source, held_out, split, results, settings)
        table = pd.read_parquet(results / name / HELD_OUT_NAME / f"{split}.parquet")
        scores[name] = {m: round(float(table[m].mean()), 3) for m in ("psnr_y", "ssim_y")}
    result = {
        "command": " ".join(["python", "benchmarks/nlcl_learns.py", *sys.argv[1:]]),
        "device": args.device,
        # What the seconds and the numbers depend on: the same seed gives the same curve
        # with these versions; the seconds follow the machine.
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "threads": torch.get_num_threads(),
        },
        "versions": {"rainbench": __version__, **versions()},
        "config": config.to_json(),
        "train_seconds": round(seconds, 1),  # this invocation's only, when it resumed
        "resumed_from": report.resumed_from,
        "held_out_pairs": len(table),
        "scores": scores,
        "psnr_y_gain": round(scores["nlcl"]["psnr_y"] - scores["identity"]["psnr_y"], 3),
        "validation": validation_curve(run),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    contact_sheet(derainers["nlcl"], held_out, split, args.out.with_suffix(".jpg"))
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))
    return 0


def results_folder(run: Path) -> Path:
    """Where the held-out scores go: beside the run, not in it, since the trainer refuses
    a run folder holding anything else, and the same command run again resumes there."""
    return run.with_name(f"{run.name}-results")


def validation_curve(run: Path) -> list[dict]:
    """The held-out figures the trainer logged every --validate-every steps: none when
    the run was shorter than that, whose scores above still stand."""
    logged = run / "validation.csv"
    return pd.read_csv(logged).round(3).to_dict(orient="records") if logged.exists() else []


def contact_sheet(derainer, held_out: Path, split: str, path: Path, rows: int = 4) -> None:
    """The first `rows` held-out pairs as rows of rainy | B̂ | clean."""
    pairs = RainDataset(held_out, mode="paired", paired_split=split, crop=None, shuffle=False)
    write_sheet(
        [(pair["rain"], derainer.derain(pair["rain"][None])[0], pair["gt"])
         for pair in islice(pairs, rows)],
        path,
    )  # fmt: skip


def write_sheet(rows, path: Path, height: int = SHEET_HEIGHT) -> None:
    """A JPEG of rows of 3×H×W pictures in [0, 1] side by side, each `height` px high,
    white where a row is narrower than the widest."""
    lines = [np.concatenate([_resized(image, height) for image in row], axis=1) for row in rows]
    width = max(line.shape[1] for line in lines)
    padded = [np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)), constant_values=255)
              for line in lines]  # fmt: skip
    Image.fromarray(np.concatenate(padded)).save(path, quality=90)


def _resized(image, height: int) -> np.ndarray:
    pixels = to_pixels(image)
    width = round(pixels.shape[1] * height / pixels.shape[0])
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.LANCZOS))


def build(
    work: Path, held_out_by: str, recipe: str, colour_only: bool = False
) -> tuple[Path, Path]:
    """Two datasets: `train` (clean captures, and rainy ones with `recipe`'s rain) and
    `held-out` (syn-`recipe` pairs on captures that training never reads). With
    `colour_only`, training reads the colour photographs' quarters alone."""
    name = held_out_by + ("-colour" if colour_only else "")
    work = work / name if recipe == "streak" else work / f"{name}-{recipe}"
    train, held_out = work / "train", work / "held-out"
    raw = work / "raw"
    if train.exists() and held_out.exists():
        return train, held_out
    if held_out_by == "photos":
        training = {Path(n).stem: _photo(n, WIDTH) for n in GREY_AND_OTHER + COLOUR
                    if n not in HELD_OUT_PHOTOS}  # fmt: skip
        testing = {f"{Path(n).stem}-{i}": q for n in HELD_OUT_PHOTOS
                   for i, q in enumerate(_quarters(_photo(n, 2 * WIDTH)))}  # fmt: skip
    else:
        grey = () if colour_only else GREY_AND_OTHER
        training = {Path(n).stem: _photo(n, WIDTH) for n in grey}
        testing = {}
        for number, name in enumerate(COLOUR):
            quarters = _quarters(_photo(name))
            held = (0, 3) if number % 2 == 0 else (1, 2)  # a diagonal pair of quarters
            for index, quarter in enumerate(quarters):
                chosen = testing if index in held else training
                chosen[f"{Path(name).stem}-{index}"] = quarter
    for stem, pixels in training.items():
        _write(raw / "clean" / f"{stem}.jpg", pixels)
        for index in range(RENDERS):
            rainy = render(pixels, recipe, derive_seed(stem, recipe, index)).rain
            _write(raw / "rainy" / f"{stem}-{index}.jpg", rainy)
    for stem, pixels in testing.items():
        _write(raw / "held-out" / f"{stem}.jpg", pixels)
    everything = {"train": 1.0, "val": 0.0, "test": 0.0}
    options = IngestOptions(layer="clean", split=everything, workers=2, name="nlcl-train")
    ingest([raw / "clean"], train, options)
    ingest([raw / "rainy"], train, IngestOptions(split=everything, workers=2))
    everything = {"train": 0.0, "val": 0.0, "test": 1.0}
    options = IngestOptions(layer="clean", split=everything, workers=2, name=HELD_OUT_NAME)
    ingest([raw / "held-out"], held_out, options)
    synthesize(held_out, SynthOptions(recipes=(recipe,), source_split="test", workers=2))
    return train, held_out


def _quarters(photo: np.ndarray) -> list[np.ndarray]:
    rows, cols = photo.shape[0] // 2, photo.shape[1] // 2
    return [photo[r * rows : (r + 1) * rows, c * cols : (c + 1) * cols]
            for r in range(2) for c in range(2)]  # fmt: skip


def _steps_in(minutes: float, dataset: Path, config: NLCLConfig, args) -> int:
    """How many steps fit in `minutes`, from a timed 20-step run (validation aside)."""
    probe = args.work / f"probe-{args.crop}-{args.blocks}"
    shutil.rmtree(probe, ignore_errors=True)
    short = replace(config, steps=20, checkpoint_every=1000, validate_every=0)
    started = time.perf_counter()
    train(dataset, probe, short, args.device)
    return max(20, int(minutes * 60 / ((time.perf_counter() - started) / 20)))


def _photo(name: str, width: int | None = None) -> np.ndarray:
    """The photograph in RGB, at `width` (None: as shipped)."""
    image = Image.open(sample_photo(name)).convert("RGB")
    if width is None:
        return np.asarray(image)
    height = round(image.height * width / image.width)
    return np.asarray(image.resize((width, height), Image.Resampling.LANCZOS))


def _write(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue())


if __name__ == "__main__":
    sys.exit(main())
