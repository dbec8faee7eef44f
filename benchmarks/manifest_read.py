"""What reading a manifest costs, and how far a realistic one stays from the bound on its
decoded size (`rainbench.shards.parquet`: DECODED_RATIO times the file's size).

    python benchmarks/manifest_read.py                       # 100 000 rows, 5 reads each
    python benchmarks/manifest_read.py --rows 1000000 --reads 3

Manifests of N rows are made as an ingest and synth of a lab's campaign would write
them (`write_manifest`): samples.parquet tagged (the tagger's features on every row)
and not, rejects.parquet, synthetic.parquet and shards.parquet; and, as the worst a real
ingest may write, samples and rejects under a 4000-character ingest root. For each it
prints the file's size, what it decodes to (the table's bytes in Arrow) as a multiple of
it, and the time to read it three ways, each the least of --reads interleaved reads:
pyarrow's own `read_table` with the schema (what `read_manifest` did before the bound),
the bounded `shards.parquet.read_table`, and the whole `read_manifest` (the bound, then
the names and values checked), with the bounded read's cost over pyarrow's.
"""

import argparse
import hashlib
import tempfile
import time
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench import log  # benchmarks/ is on sys.path when run as a script

from rainbench.shards import manifest
from rainbench.shards.parquet import DECODED_RATIO, read_table
from rainbench.tagging.features import FEATURE_NAMES, feature_column

RAIN_TYPES = ("drizzle", "storm", "streak", "fog-like")
CAMERAS = (
    ("Canon", "EOS R6", "RF24-105mm F4 L IS USM"),
    ("Apple", "iPhone 14 Pro", None),
    ("FUJIFILM", "X-T4", "XF16-80mmF4 R OIS WR"),
)
ROOT = "/srv/lab/captures/2026"
LONG_ROOT = "/" + "/".join(["a-rather-long-folder-name"] * 160)  # 4001 characters


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=5, help="reads of each file, each way")
    args = parser.parse_args()
    made = {
        "samples.parquet, tagged": (samples(args.rows, tagged=True), manifest.SAMPLES),
        "samples.parquet, untagged": (samples(args.rows, tagged=False), manifest.SAMPLES),
        "samples.parquet, 4000-character root": (
            samples(args.rows, tagged=False, root=LONG_ROOT),
            manifest.SAMPLES,
        ),
        "rejects.parquet": (rejects(args.rows), manifest.REJECTS),
        "rejects.parquet, 4000-character root": (rejects(args.rows, LONG_ROOT), manifest.REJECTS),
        "synthetic.parquet": (synthetic(args.rows), manifest.SYNTHETIC),
        "shards.parquet": (shards(args.rows), manifest.SHARDS),
    }
    print(f"{args.rows:,} rows; the least of {args.reads} reads each way; bound: "
          f"{DECODED_RATIO} × the file's size (1 GiB at least)")  # fmt: skip
    print("| manifest | file | decoded | pyarrow | bounded | read_manifest | bounded / pyarrow |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for number, (name, (table, schema)) in enumerate(made.items()):
            path = Path(scratch, f"{number}.parquet")
            manifest.write_manifest(path, table)
            log(f"reading {name}")
            ways = {
                "pyarrow": partial(pq.read_table, path, schema=schema),
                "bounded": partial(read_table, path, schema),
                "read_manifest": partial(manifest.read_manifest, path, schema),
            }
            best = dict.fromkeys(ways, float("inf"))
            for _ in range(args.reads):
                for way, read in ways.items():
                    start = time.perf_counter()
                    read()
                    best[way] = min(best[way], time.perf_counter() - start)
            size = path.stat().st_size
            print(
                f"| {name} | {size / 1e6:.2f} MB | {table.nbytes / size:.1f}× | "
                f"{best['pyarrow'] * 1e3:.0f} ms | {best['bounded'] * 1e3:.0f} ms | "
                f"{best['read_manifest'] * 1e3:.0f} ms | "
                f"{best['bounded'] / best['pyarrow']:.2f} |"
            )
    return 0


def _hashes(n: int, salt: str, length: int = 64) -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest()[:length] for i in range(n)]


def _table(columns: dict[str, list], n: int, schema: pa.Schema) -> pa.Table:
    """`columns` as a table of `schema`; a column not given is null on every row."""
    return pa.table(
        {field.name: pa.array(columns.get(field.name, [None] * n), field.type) for field in schema},
        schema=schema,
    )


def samples(n: int, tagged: bool, root: str = ROOT) -> pa.Table:
    rng = np.random.default_rng(0)
    sha = _hashes(n, "capture")
    split = rng.choice(["train", "val", "test"], n, p=[0.8, 0.1, 0.1]).tolist()
    layer = rng.choice(["rainy", "clean"], n, p=[0.6, 0.4]).tolist()
    camera = rng.integers(0, len(CAMERAS), n)
    seconds = np.sort(rng.integers(0, 3 * 365 * 86400, n))
    rain = [
        str(kind) if tagged and part == "rainy" else None
        for kind, part in zip(rng.choice(RAIN_TYPES, n), layer, strict=True)
    ]
    columns = {
        "key": [s[:24] for s in sha],
        "sha256": sha,
        "shard": [f"shards/{s}/{s}-{i // 1000:06d}.tar" for i, s in enumerate(split)],
        "split": split,
        "layer": layer,
        "rain_type": rain,
        "rain_type_source": ["auto" if r else None for r in rain],
        "rain_type_confidence": [
            float(c) if r else None for c, r in zip(rng.random(n), rain, strict=True)
        ],
        "width": [6000] * n,
        "height": [4000] * n,
        "format": ["jpeg"] * n,
        "bytes": rng.integers(2_000_000, 12_000_000, n).tolist(),
        "source_path": [
            f"{CAMERAS[c][1]}/DCIM/{100 + i // 9999}/IMG_{i % 9999:04d}.JPG"
            for i, c in enumerate(camera)
        ],
        "captured_at": [datetime(2024, 1, 1) + timedelta(seconds=int(s)) for s in seconds],
        "camera_make": [CAMERAS[c][0] for c in camera],
        "camera_model": [CAMERAS[c][1] for c in camera],
        "members": [["jpg", "json"]] * n,
        "mode": ["RGB"] * n,
        "kind": ["still"] * n,
        "orientation": rng.choice([1, 6, 8], n).tolist(),
        "lens_model": [CAMERAS[c][2] for c in camera],
        "exposure_time": rng.choice([1 / 60, 1 / 250, 1 / 1000], n).tolist(),
        "f_number": rng.choice([1.8, 2.8, 4.0, 5.6], n).tolist(),
        "iso": rng.choice([100, 400, 1600, 6400], n).tolist(),
        "focal_length_mm": rng.choice([6.86, 24.0, 50.0, 105.0], n).tolist(),
        "phash": _hashes(n, "phash", 16),
        "tag_caveats": [[] if clear else ["grey"] for clear in rng.random(n) < 0.9],
        "source_root": [root] * n,
        "source_size": rng.integers(2_000_000, 12_000_000, n).tolist(),
        "source_mtime_ns": (1_700_000_000 * 10**9 + seconds * 10**9).tolist(),
        "source_inode": (1_000_000 + np.arange(n)).tolist(),
        "source_sha256": sha,
        "ingest_run": [f"20260501T120000Z-{i // 50_000:06x}" for i in range(n)],
    }
    if tagged:
        columns |= {
            "rain_type_auto": rain,
            "tagger_version": ["5"] * n,
            "features_version": ["2"] * n,
        }
        columns |= {feature_column(name): rng.random(n).tolist() for name in FEATURE_NAMES}
    return _table(columns, n, manifest.SAMPLES)


def rejects(n: int, root: str = ROOT) -> pa.Table:
    rng = np.random.default_rng(1)
    reasons = (
        ("corrupt", "pixel data does not decode: broken data stream when reading image file"),
        ("not-an-image", "not an image: no known signature"),
        ("truncated", "truncated: the file ends inside the picture data"),
    )
    chosen = rng.integers(0, len(reasons), n)
    columns = {
        "source_path": [
            f"cam{i % 7}/DCIM/{100 + i // 9999}/IMG_{i % 9999:04d}.JPG" for i in range(n)
        ],
        "reason": [reasons[r][0] for r in chosen],
        "message": [reasons[r][1] for r in chosen],
        "source_root": [root] * n,
        "source_size": rng.integers(0, 10_000_000, n).tolist(),
        "source_mtime_ns": (1_700_000_000 * 10**9 + rng.integers(0, 10**17, n)).tolist(),
        "source_inode": (1_000_000 + np.arange(n)).tolist(),
        "ingest_run": ["20260501T120000Z-00000a"] * n,
    }
    return _table(columns, n, manifest.REJECTS)


def synthetic(n: int) -> pa.Table:
    rng = np.random.default_rng(2)
    recipe = [RAIN_TYPES[r] for r in rng.integers(0, len(RAIN_TYPES), n)]
    sources = _hashes(n, "capture", 24)
    columns = {
        "key": _hashes(n, "pair", 24),
        "split": [f"syn-{r}" for r in recipe],
        "recipe": recipe,
        "recipe_version": ["1"] * n,
        "shard": [
            f"shards/synthetic/syn-{r}/syn-{r}-{i // 500:06d}.tar" for i, r in enumerate(recipe)
        ],
        "source_key": [sources[i // 4] for i in range(n)],
        "seed": rng.integers(0, 2**62, n).tolist(),
        "job": [f"{r}@1:{sources[i // 4]}:0:0:{i % 4}" for i, r in enumerate(recipe)],
        "width": [800] * n,
        "height": [533] * n,
        "members": [["rain.png", "gt.png", "json"]] * n,
        "rain_sha256": _hashes(n, "rain"),
        "gt_sha256": _hashes(n, "gt"),
        "intensity": rng.random(n).tolist(),
        "compositing": ["additive"] * n,
        "run": ["20260501T120000Z-00000a"] * n,
    }
    return _table(columns, n, manifest.SYNTHETIC)


def shards(n: int) -> pa.Table:
    """A shard per 100 captures, at least one."""
    count = max(1, n // 100)
    rng = np.random.default_rng(3)
    columns = {
        "shard": [f"shards/train/train-{i:06d}.tar" for i in range(count)],
        "split": ["train"] * count,
        "samples": rng.integers(100, 200, count).tolist(),
        "bytes": rng.integers(900_000_000, 1_000_000_000, count).tolist(),
        "sha256": _hashes(count, "shard"),
        "ingest_run": ["20260501T120000Z-00000a"] * count,
    }
    return _table(columns, count, manifest.SHARDS)


if __name__ == "__main__":
    raise SystemExit(main())
