"""NLCL, CCLGAN and each negative selection under one CPU budget: the same small streak
data, crops, seed and steps, then psnr_y on held-out pairs against the identity's.

    python benchmarks/train_budget.py --work /tmp/budget --steps 300
    python benchmarks/train_budget.py --work /tmp/budget --steps 1200 --methods nlcl \\
        --negatives cut

The data are built once under --work, by code: 30 demo scenes at 96×64, the streak
recipe rendered on 12 of them (the rainy captures), 12 others as clean captures (both in
the train split), and streak pairs of the last 6 in a dataset of their own that training
never reads (`--val-dataset`), scored whole. The networks are small (NLCL 16 channels,
4 blocks; CCLGAN 16 channels, 3 blocks) and CCLGAN's VGG16 has random weights, as no
pretrained file is here. Prints one line per run and writes --out (JSON, default
WORK/train-budget.json): every validation row of every run (with the identity's
psnr_y), the seconds and the command.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from rainbench.data import RainDataset
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.synth.build import SynthOptions, synthesize
from rainbench.train.cclgan.config import CCLGANConfig
from rainbench.train.cclgan.trainer import train as train_cclgan
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.trainer import train as train_nlcl

SIZE = (96, 64)
HELD_SPLIT = "syn-streak"


def build(work: Path) -> tuple[Path, Path]:
    """The training dataset and the held-out one, built once under `work`."""
    ds, held = work / "ds", work / "held-ds"
    if (held / "manifests" / "synthetic.parquet").exists():
        return ds, held
    shutil.rmtree(work, ignore_errors=True)
    specs = sample_specs(30, seed=21, size=SIZE)
    for folder, chosen in (("src", specs[:12]), ("clean", specs[12:24]), ("held", specs[24:])):
        for spec in chosen:
            write_capture(work / folder, spec)
    source = work / "src-ds"
    ingest([work / "src"], source, IngestOptions(layer="clean", workers=1, split={"test": 1.0}))
    synthesize(source, SynthOptions(recipes=("streak",), source_split="test", workers=1))
    rainy = work / "rainy"
    rainy.mkdir()
    pairs = RainDataset(source, mode="paired", paired_split=HELD_SPLIT, crop=None, shuffle=False)
    for index, sample in enumerate(pairs):
        pixels = (sample["rain"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(rainy / f"rain{index:02d}.png")
    train_split = {"train": 1.0}
    ingest([rainy], ds, IngestOptions(layer="rainy", workers=1, split=train_split))
    ingest([work / "clean"], ds, IngestOptions(layer="clean", workers=1, split=train_split))
    ingest([work / "held"], held, IngestOptions(layer="clean", workers=1, split={"test": 1.0}))
    synthesize(held, SynthOptions(recipes=("streak",), source_split="test", workers=1, seed=5))
    return ds, held


def run(method: str, negatives: str, steps: int, ds: Path, held: Path, work: Path) -> dict:
    common = dict(
        steps=steps,
        crop=48,
        workers=0,
        log_every=10,
        checkpoint_every=steps,
        validate_every=max(1, min(300, steps // 2)),
        val_split=HELD_SPLIT,
        val_dataset=str(held),
        val_images=6,
        nce_negatives=negatives,
        prototypes=8,
        prototype_memory=1024,
        seed=0,
    )
    out = work / "runs" / f"{method}-{negatives}-{steps}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    if method == "cclgan":
        config = CCLGANConfig(
            channels=16, blocks=3, nce_locations=64, random_encoder=True, **common
        )
        train_cclgan(ds, out, config, threads=1)
    else:
        config = NLCLConfig(
            channels=16,
            blocks=4,
            window=24,
            patch=8,
            positives=8,
            negatives=32,
            nce_layers=(0, 2, 4),
            nce_locations=64,
            **common,
        )
        train_nlcl(ds, out, config, threads=1)
    validation = pd.read_csv(out / "validation.csv").to_dict("records")
    return {
        "method": method,
        "negatives": negatives,
        "steps": steps,
        "seconds": round(time.perf_counter() - started, 1),
        "validation": validation,
    }


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="where the data and runs go")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--methods", nargs="+", default=["cclgan", "nlcl"])
    parser.add_argument("--negatives", nargs="+", default=["cut", "domain", "hcsc"])
    parser.add_argument("--out", type=Path, help="the JSON (default: WORK/train-budget.json)")
    args = parser.parse_args(argv)
    args.out = args.out or args.work / "train-budget.json"
    return args


def main() -> None:
    args = arguments()
    ds, held = build(args.work)
    runs = []
    for method in args.methods:
        for negatives in args.negatives:
            result = run(method, negatives, args.steps, ds, held, args.work)
            scores = ", ".join(
                f"{row['step']}: {row['psnr_y']:.2f}"
                for row in result["validation"]
                if "psnr_y" in row
            )
            identity = result["validation"][-1]["psnr_y_identity"]
            print(
                f"{method} {negatives}: psnr_y {scores}; identity {identity:.2f} "
                f"({result['seconds']} s)",
                flush=True,
            )
            runs.append(result)
    args.out.write_text(json.dumps({"runs": runs, "command": sys.argv}, indent=2) + "\n")
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
