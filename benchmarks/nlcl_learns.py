"""Evidence that NLCL learns: a short training run on streak rain, then psnr_y of its
background generator on held-out synthetic pairs against the identity's (the rainy
input's own psnr_y). On a GPU use the full recipe; on a CPU a budget of minutes.

    python benchmarks/nlcl_learns.py --minutes 18                 # CPU: small crops
    python benchmarks/nlcl_learns.py --device cuda --steps 20000 --crop 256

The dataset (built once under --work) is made from scikit-image's sample photographs:
clean captures of ten photographs and rainy captures with streak rain rendered on six
others, split train/test by content key. Training sees the train split only; the
held-out pairs are syn-streak rendered on the clean captures of the test split. Prints
and writes a JSON with the numbers and the command.
"""

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from rainbench.ingest import IngestOptions, ingest
from rainbench.leaderboard.eval import EvalSettings, evaluate
from rainbench.leaderboard.sources import DerainerSource
from rainbench.models.registry import create_derainer
from rainbench.synth.build import SynthOptions, synthesize
from rainbench.synth.render import derive_seed, render
from rainbench.tagging.calibration import sample_photo
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.trainer import train

CLEAN = ("astronaut.png", "coffee.png", "rocket.jpg", "camera.png", "brick.png", "grass.png",
         "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "text.png")  # fmt: skip
RAINY = ("chelsea.png", "motorcycle_left.png", "coins.png", "moon.png", "gravel.png",
         "clock_motion.png")  # fmt: skip
WIDTH = 384  # px: small captures, so a CPU trains on many of them


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nlcl-learns"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--minutes", type=float, help="stop after this wall time (CPU budget)")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--amp", default="off")
    parser.add_argument("--out", type=Path, default=Path("nlcl-learns.json"))
    args = parser.parse_args()

    dataset = build(args.work)
    steps = args.steps
    if args.minutes:
        steps = _steps_in(args.minutes, dataset, args)
    run = args.work / f"run-{args.device.replace(':', '')}-{args.crop}-{steps}"
    config = NLCLConfig(
        steps=steps, crop=args.crop, batch=args.batch, amp=args.amp, workers=1,
        checkpoint_every=max(1, steps // 4), log_every=50, decay_steps=steps // 4,
    )  # fmt: skip
    started = time.perf_counter()
    train(dataset, run, config, args.device, progress=True)
    seconds = time.perf_counter() - started
    scores = {}
    for name, checkpoint in (("identity", None), ("nlcl", run / "nlcl.pt")):
        derainer = create_derainer(name, checkpoint=checkpoint, device=args.device)
        source = DerainerSource(derainer, args.device, None, 32)
        settings = EvalSettings(metrics=("psnr_y", "ssim_y"), device=args.device)
        evaluate(source, dataset, "syn-streak", args.work / "results", settings)
        table = _table(args.work / "results" / name / "reference" / "syn-streak.parquet")
        scores[name] = {m: round(float(table[m].mean()), 3) for m in ("psnr_y", "ssim_y")}
    result = {
        "command": " ".join(["python", "benchmarks/nlcl_learns.py", *sys.argv[1:]]),
        "device": args.device,
        "steps": steps,
        "crop": args.crop,
        "train_seconds": round(seconds, 1),
        "held_out_pairs": len(table),
        "scores": scores,
        "psnr_y_gain": round(scores["nlcl"]["psnr_y"] - scores["identity"]["psnr_y"], 3),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def build(work: Path) -> Path:
    """Clean and rainy captures, split train/test by content key; the held-out pairs are
    syn-streak rendered on the clean captures that landed in the test split."""
    dataset = work / "reference"
    if dataset.exists():
        return dataset
    for name in CLEAN:
        _write(work / "raw" / "clean" / _jpg(name), _photo(name))
    for name in RAINY:
        rainy = render(_photo(name), "streak", derive_seed(name, "streak", 0)).rain
        _write(work / "raw" / "rainy" / _jpg(name), rainy)
    split = {"train": 0.6, "val": 0.0, "test": 0.4}
    clean = IngestOptions(layer="clean", split=split, workers=2, name="reference")
    ingest([work / "raw" / "clean"], dataset, clean)
    ingest([work / "raw" / "rainy"], dataset, IngestOptions(split=split, workers=2))
    synthesize(dataset, SynthOptions(recipes=("streak",), source_split="test", workers=2))
    return dataset


def _steps_in(minutes: float, dataset: Path, args) -> int:
    """How many steps fit in `minutes`, from a timed 20-step run."""
    probe = args.work / f"probe-{args.crop}"
    config = NLCLConfig(steps=20, crop=args.crop, batch=args.batch, workers=1,
                        checkpoint_every=1000, log_every=1000)  # fmt: skip
    started = time.perf_counter()
    train(dataset, probe, config, args.device)
    per_step = (time.perf_counter() - started) / 20
    return max(20, int(minutes * 60 / per_step))


def _photo(name: str) -> np.ndarray:
    image = Image.open(sample_photo(name)).convert("RGB")
    height = round(image.height * WIDTH / image.width)
    return np.asarray(image.resize((WIDTH, height), Image.Resampling.LANCZOS))


def _jpg(name: str) -> str:
    return Path(name).stem + ".jpg"


def _write(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95)
    path.write_bytes(buffer.getvalue())


def _table(path: Path):
    import pandas as pd

    return pd.read_parquet(path)


if __name__ == "__main__":
    sys.exit(main())
