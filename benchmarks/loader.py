"""Crops/s of `RainDataset` on 12 MP JPEG shards, against two bare webdataset pipelines
over the same shards measured in the same run: (a) a full decode for one random 256×256
crop, (b) the same full decode cut into K random crops. Ours runs with a manifest filter
and query (samples.parquet joined onto the shards) at K, and at K = 1 for context.

The data: the ingest benchmark's captures (`benchmarks/ingest.py` writes 2N, the first
N are used), ingested all into train, in 8 MB shards so that webdataset's whole-shard
split gives both workers the same number of captures.

Every method is a fresh `torch.utils.data.DataLoader(batch_size=16, num_workers=2)`;
its time is the wall time from building the dataset (ours: reading and filtering the
manifests) to the last batch, over one full pass. All methods run once untimed first, so
the shards are in the page cache and every code path has run; then R interleaved timed
passes each, best reported. Equal work: every method decodes every full-resolution JPEG
once per pass. Ours cuts each crop where it lies in the stored pixels and turns only
the crop upright by the EXIF orientation; the bare pipelines never turn anything, and
webdataset's `rgb8` handler makes one extra full-size copy (`Image.convert` to the mode
it already has) and a full-size array. Crop counts are checked equal.

With `--store s3` it measures instead, in the same run, RainDataset reading the same
dataset from local files and streaming it from a local S3 endpoint (moto in server mode
on 127.0.0.1, started here; the shards uploaded as they are): members by range requests,
manifests fetched when each pass builds its dataset. Goal: S3 ≥ 0.8× local crops/s.

A measurement, not a test: it exits 0 whatever the figures, and prints PASS or MISS
per goal.

Example:  python benchmarks/loader.py --data /tmp/loaderdata
          python benchmarks/loader.py --data /tmp/loaderdata --k 8 --repeats 3 --json
          python benchmarks/loader.py --data /tmp/loaderdata --store s3
"""

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import PIL
import torch
import webdataset as wds
from bench import cpu_model, log  # benchmarks/ is on sys.path when run as a script
from ingest import generate  # the ingest benchmark's 12 MP JPEG captures
from PIL import features
from torch.utils.data import DataLoader, IterableDataset

from rainbench.data import Filters, RainDataset
from rainbench.ingest.run import IngestOptions, ingest
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset

CROP = 256
BATCH_SIZE = 16
WORKERS = 2
GOAL_OF_ONE_CROP = 4.0  # ours at K = 8 ≥ 4× the crops/s of (a)
GOAL_K = 8  # the K that goal is stated at
GOAL_OF_K_CROPS = 0.9  # ours at K ≥ 0.9× (b) at the same K: filters and joins cost ≤ 10 %
GOAL_OF_STORE = 0.8  # ours streaming from S3 ≥ 0.8× ours reading local files
# webdataset gives each worker whole shards, so equal shards keep its workers equally
# busy: 48 captures of ≈2.6 MB make 12 shards of 4, 24 captures per worker.
SHARD_BYTES = 8_000_000


@dataclass
class Result:
    method: str
    crops_per_image: int
    crops: int = 0
    seconds: list[float] = field(default_factory=list)

    @property
    def crops_per_second(self) -> float:
        return self.crops / min(self.seconds)

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.seconds)

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "crops_per_image": self.crops_per_image,
            "crops": self.crops,
            "seconds": [round(seconds, 3) for seconds in self.seconds],
            "median_seconds": round(self.median_seconds, 3),
            "crops_per_second": round(self.crops_per_second, 2),
        }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--captures", type=int, default=48, help="N (default 48)")
    parser.add_argument("--k", type=int, default=GOAL_K, help=f"crops per image (default {GOAL_K})")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes per method")
    parser.add_argument(
        "--data", type=Path, help="keep the generated captures and dataset here and reuse them"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--store",
        choices=["s3"],
        help="compare local files with streaming from a local S3 endpoint (moto) instead",
    )
    args = parser.parse_args()
    if min(args.captures, args.k, args.repeats) < 1:
        parser.error("--captures, --k and --repeats must be at least 1")
    run = benchmark_store if args.store else benchmark
    if args.data:
        run(args.data, args.captures, args.k, args.repeats, args.json)
    else:
        with tempfile.TemporaryDirectory(prefix="rainbench-bench-") as data:
            run(Path(data), args.captures, args.k, args.repeats, args.json)


def benchmark(data: Path, captures: int, k: int, repeats: int, as_json: bool) -> None:
    # Others' work on the machine skews every ratio; the load before we start shows it.
    load = os.getloadavg()[0]
    root = build_dataset(data, captures)
    samples = train_shards(root)
    shards = list(samples)
    for path in shards:  # into the page cache before anything is timed
        Path(path).read_bytes()
    # What each worker of the bare pipelines decodes; ours splits samples evenly.
    counts = list(samples.values())
    per_worker = [sum(counts[worker::WORKERS]) for worker in range(WORKERS)]
    methods: dict[str, tuple[str, int, Callable[[], IterableDataset]]] = {
        "bare_1": ("(a) webdataset, 1 crop per decode", 1, partial(bare, shards, 1)),
        "bare_k": (f"(b) webdataset, {k} crops per decode", k, partial(bare, shards, k)),
        "ours_k": (f"(c) RainDataset, {k} crops per decode", k, partial(ours, root, k)),
        "ours_1": ("(c) RainDataset, 1 crop per decode", 1, partial(ours, root, 1)),
    }
    results = {key: Result(label, per_image) for key, (label, per_image, _) in methods.items()}
    log(f"{captures} captures in {len(shards)} train shards, {WORKERS} workers, K = {k}")
    if len(set(per_worker)) > 1:
        log(f"  webdataset's workers get unequal work: {' + '.join(map(str, per_worker))} captures")
    for key, (label, _, make) in methods.items():
        results[key].crops, seconds = one_pass(make)
        log(f"  warm-up: {label}: {seconds:.2f} s")
    # Interleaved repeats, so a slow spell of the machine hits every method alike.
    for repeat in range(repeats):
        for key, (label, _, make) in methods.items():
            crops, seconds = one_pass(make)
            if crops != results[key].crops:
                raise RuntimeError(f"{label}: {crops} crops, {results[key].crops} in the warm-up")
            results[key].seconds.append(seconds)
            log(f"  run {repeat + 1}: {label}: {seconds:.2f} s")
    for key in ("bare_1", "ours_1"):
        assert results[key].crops == captures, (key, results[key].crops)
    for key in ("bare_k", "ours_k"):
        assert results[key].crops == captures * k, (key, results[key].crops)
    loads = (load, os.getloadavg()[0])
    report(results, captures, k, per_worker, repeats, loads, as_json)


def benchmark_store(data: Path, captures: int, k: int, repeats: int, as_json: bool) -> None:
    """RainDataset over local files and over the same shards in a local S3 endpoint."""
    load = os.getloadavg()[0]
    root = build_dataset(data, captures)
    with local_s3(data / "store-cache") as bucket:
        import s3fs

        url = f"{bucket}/ds"
        started = time.perf_counter()
        s3fs.S3FileSystem().put(str(root), url.removeprefix("s3://"), recursive=True)
        log(f"uploaded the dataset to {url} in {time.perf_counter() - started:.1f} s")
        methods = {
            "local": (f"RainDataset, local files, K = {k}", partial(ours, root, k)),
            "s3": (f"RainDataset, streaming from S3, K = {k}", partial(ours, url, k)),
        }
        results = {key: Result(label, k) for key, (label, _) in methods.items()}
        for key, (label, make) in methods.items():
            results[key].crops, seconds = one_pass(make)
            log(f"  warm-up: {label}: {seconds:.2f} s")
        for repeat in range(repeats):
            for key, (label, make) in methods.items():
                crops, seconds = one_pass(make)
                if crops != results[key].crops:
                    raise RuntimeError(f"{label}: {crops} crops, {results[key].crops} before")
                results[key].seconds.append(seconds)
                log(f"  run {repeat + 1}: {label}: {seconds:.2f} s")
    ratio = results["s3"].crops_per_second / results["local"].crops_per_second
    on_medians = results["local"].median_seconds / results["s3"].median_seconds
    verdict = "PASS" if ratio >= GOAL_OF_STORE else "MISS"
    if as_json:
        document = {
            "captures": captures,
            "k": k,
            "workers": WORKERS,
            "repeats": repeats,
            "machine": machine((load, os.getloadavg()[0])),
            "methods": {key: result.to_dict() for key, result in results.items()},
            "ratios": {
                "s3_over_local": round(ratio, 3),
                "s3_over_local_on_medians": round(on_medians, 3),
            },
            "goals": {"s3_over_local": verdict},
        }
        print(json.dumps(document, indent=2))
        return
    print()
    print(
        f"{captures} 12 MP JPEGs; {CROP}×{CROP} crops, K = {k}, batch {BATCH_SIZE}, "
        f"{WORKERS} workers; best of {repeats} full passes (dataset built in each)"
    )
    header = f"{'method':<44} {'crops':>6} {'best s':>7} {'median s':>9} {'crops/s':>8}"
    print(header)
    print("-" * len(header))
    for result in results.values():
        print(
            f"{result.method:<44} {result.crops:>6} {min(result.seconds):>7.2f} "
            f"{result.median_seconds:>9.2f} {result.crops_per_second:>8.1f}"
        )
    print(f"\nS3 / local = {ratio:.3f}×  (goal ≥ {GOAL_OF_STORE})  {verdict}")
    print(f"S3 / local on median times = {on_medians:.3f}×  (context: the noise)")


@contextmanager
def local_s3(cache: Path) -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (its own process), the environment pointing at it
    as a user's would (AWS_ENDPOINT_URL, credentials), and a bucket in it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            RAINBENCH_CACHE=str(cache),
        )
        import s3fs

        s3fs.S3FileSystem().mkdir("rainbench-bench")
        yield "s3://rainbench-bench"
    finally:
        server.terminate()
        server.wait()


# -- the data --------------------------------------------------------------------------


def build_dataset(data: Path, captures: int) -> Path:
    """Ingest the first N captures, all into the train split; reused when a previous
    run with the same N left the dataset there."""
    folder = generate(data, captures, WORKERS)[0]
    root = data / "loader-dataset"
    stamp = data / "loader-dataset.json"
    wanted = {"captures": captures, "shard_bytes": SHARD_BYTES}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return root
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    options = IngestOptions(
        workers=WORKERS,
        shard_bytes=SHARD_BYTES,
        split={"train": 1.0, "val": 0.0, "test": 0.0},
    )
    summary = ingest([folder], root, options)
    if summary.accepted != captures:
        raise RuntimeError(f"ingest accepted {summary.accepted} of {captures} captures")
    log(f"ingested {captures} captures in {time.perf_counter() - started:.0f} s")
    stamp.write_text(json.dumps(wanted))
    return root


def train_shards(root: Path) -> dict[str, int]:
    """The train shards' paths, in order, with the captures each holds."""
    table = manifest.read_manifest(Dataset(root).shards_manifest, manifest.SHARDS).to_pandas()
    table = table[table["split"] == "train"].sort_values("shard")
    if len(table) < WORKERS:  # webdataset gives each worker whole shards
        raise RuntimeError(f"{len(table)} train shards for {WORKERS} workers")
    pairs = zip(table["shard"], table["samples"], strict=True)
    return {str(root / shard): int(count) for shard, count in pairs}


# -- the methods -----------------------------------------------------------------------


def bare(shards: list[str], k: int) -> IterableDataset:
    """A bare webdataset pipeline: shards split across workers by webdataset, every
    JPEG fully decoded to HWC uint8 by its own `rgb8` handler, K random crops of it."""
    return (
        wds.WebDataset(shards, shardshuffle=False, nodesplitter=wds.split_by_node)
        .decode("rgb8")
        .compose(partial(random_crops, k=k))
    )


def random_crops(samples: Iterator[dict], k: int) -> Iterator[dict]:
    for sample in samples:
        picture = sample["jpg"]
        height, width = picture.shape[:2]
        for _ in range(k):
            top, left = random.randrange(height - CROP + 1), random.randrange(width - CROP + 1)
            pixels = np.ascontiguousarray(picture[top : top + CROP, left : left + CROP])
            image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255)
            yield {"image": image, "key": sample["__key__"]}


def ours(root: Path | str, k: int) -> IterableDataset:
    return RainDataset(
        root,
        filters=Filters(split="train", query="width > 0"),
        crop=CROP,
        crops_per_image=k,
    )


def one_pass(make: Callable[[], IterableDataset]) -> tuple[int, float]:
    """Crops of one full pass and its wall time, building the dataset included."""
    started = time.perf_counter()
    loader = DataLoader(make(), batch_size=BATCH_SIZE, num_workers=WORKERS)
    crops = 0
    for batch in loader:
        images = batch["image"]
        if images.dtype != torch.float32 or images.shape[1:] != (3, CROP, CROP):
            raise RuntimeError(f"unexpected batch: {images.dtype} {tuple(images.shape)}")
        crops += len(images)
    return crops, time.perf_counter() - started


# -- reporting -------------------------------------------------------------------------


def machine(loads: tuple[float, float]) -> dict:
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "webdataset": wds.__version__,
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "numpy": np.__version__,
        "load_1min_at_start": round(loads[0], 2),
        "load_1min_at_end": round(loads[1], 2),
    }


def report(
    results: dict[str, Result],
    captures: int,
    k: int,
    per_worker: list[int],
    repeats: int,
    loads: tuple[float, float],
    as_json: bool,
) -> None:
    speed = {key: result.crops_per_second for key, result in results.items()}
    ratios = {
        "ours_k_over_bare_1": speed["ours_k"] / speed["bare_1"],
        "ours_k_over_bare_k": speed["ours_k"] / speed["bare_k"],
        "ours_k_over_bare_k_on_medians": results["bare_k"].median_seconds
        / results["ours_k"].median_seconds,
        "ours_1_over_bare_1": speed["ours_1"] / speed["bare_1"],
        "bare_k_over_bare_1": speed["bare_k"] / speed["bare_1"],
    }
    goals = {"ours_k_over_bare_k": ratios["ours_k_over_bare_k"] >= GOAL_OF_K_CROPS}
    if k == GOAL_K:
        goals["ours_k_over_bare_1"] = ratios["ours_k_over_bare_1"] >= GOAL_OF_ONE_CROP
    verdict = {True: "PASS", False: "MISS"}
    if as_json:
        document = {
            "captures": captures,
            "webdataset_captures_per_worker": per_worker,
            "k": k,
            "crop": CROP,
            "batch_size": BATCH_SIZE,
            "workers": WORKERS,
            "repeats": repeats,
            "machine": machine(loads),
            "methods": {key: result.to_dict() for key, result in results.items()},
            "ratios": {name: round(value, 3) for name, value in ratios.items()},
            "goals": {name: verdict[ok] for name, ok in goals.items()},
        }
        print(json.dumps(document, indent=2))
        return
    print()
    print(", ".join(f"{key}: {value}" for key, value in machine(loads).items()))
    print(
        f"{captures} 12 MP JPEGs; {CROP}×{CROP} crops, batch {BATCH_SIZE}, {WORKERS} workers; "
        f"best of {repeats} full passes (dataset built in each)"
    )
    print(
        "captures per worker: webdataset (whole shards) "
        f"{' + '.join(map(str, per_worker))}, ours (sample i to worker i mod {WORKERS}) "
        f"{' + '.join(str(len(range(w, captures, WORKERS))) for w in range(WORKERS))}"
    )
    print(
        "every method fully decodes every JPEG once per pass; ours turns its crops upright "
        "by the EXIF orientation, the bare pipelines take their crops from a full-size array"
    )
    print()
    header = f"{'method':<40} {'crops':>6} {'best s':>7} {'median s':>9} {'crops/s':>8}"
    print(header)
    print("-" * len(header))
    for result in results.values():
        print(
            f"{result.method:<40} {result.crops:>6} {min(result.seconds):>7.2f} "
            f"{result.median_seconds:>9.2f} {result.crops_per_second:>8.1f}"
        )
    print()
    line = f"ours (K={k}) / (a) = {ratios['ours_k_over_bare_1']:.2f}×"
    if "ours_k_over_bare_1" in goals:
        line += f"  (goal ≥ {GOAL_OF_ONE_CROP})  {verdict[goals['ours_k_over_bare_1']]}"
    else:
        line += f"  (the goal is stated at K = {GOAL_K})"
    print(line)
    print(
        f"ours (K={k}) / (b, K={k}) = {ratios['ours_k_over_bare_k']:.3f}×  "
        f"(goal ≥ {GOAL_OF_K_CROPS})  {verdict[goals['ours_k_over_bare_k']]}"
    )
    print(
        f"ours (K={k}) / (b, K={k}) on median times = "
        f"{ratios['ours_k_over_bare_k_on_medians']:.3f}×  (context: the noise)"
    )
    print(f"ours (K=1) / (a) = {ratios['ours_1_over_bare_1']:.3f}×  (context, no goal)")
    print(f"(b) / (a) = {ratios['bare_k_over_bare_1']:.2f}×  (context: what K crops buy alone)")


if __name__ == "__main__":
    main()
