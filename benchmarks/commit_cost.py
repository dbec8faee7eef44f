"""What one commit of an ingest's write phase costs as the dataset grows: publishing a
finished shard rewrites samples.parquet and shards.parquet whole (read, add the shard's
rows, sort, write) and dataset.json's counts, so its cost grows with the dataset, not
with the shard. An ingest commits every 5 s, less often once a commit takes more than
0.5 s (`rainbench.ingest.run._COMMIT_BUDGET`), so that commits take at most a tenth of
the write phase.

    python benchmarks/commit_cost.py                          # 20 000, 80 000, 320 000
    python benchmarks/commit_cost.py --rows 1000000 --commits 1

For each N: a dataset whose manifests hold N tagged captures as a lab's campaign would
(`benchmarks/manifest_read.py`'s), then the ingest's own commit (`_Run._commit`) of one
more shard of one capture, the least of --commits tries, the manifests put back before
each.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench import log  # benchmarks/ is on sys.path when run as a script
from manifest_read import samples, shards

from rainbench.ingest.plan import Plan
from rainbench.ingest.run import _Run
from rainbench.ingest.split import DEFAULT_FRACTIONS
from rainbench.ingest.write import UnitResult
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, initial_info

# As an ingest's settings hold them (those a commit reads): the dataset's fixed settings.
_SETTINGS = {
    "run_id": "20260501T120000Z-00000b",
    "name": "campaign",
    "split": DEFAULT_FRACTIONS,
    "keep_gps": False,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 80_000, 320_000])
    parser.add_argument("--commits", type=int, default=3, help="tries at each N")
    args = parser.parse_args()
    print("| captures in the dataset | samples.parquet | one commit | per 1000 captures |")
    print("|---:|---:|---:|---:|")
    for rows in sorted(args.rows):
        with tempfile.TemporaryDirectory() as scratch:
            seconds, size = _least_commit(Path(scratch), rows, args.commits)
        per_thousand = seconds / rows * 1e6  # ms
        print(f"| {rows:,} | {size / 1e6:.1f} MB | {seconds:.2f} s | {per_thousand:.1f} ms |")
    return 0


def _least_commit(scratch: Path, rows: int, tries: int) -> tuple[float, int]:
    log(f"making manifests of {rows} captures")
    table = samples(rows + 1, tagged=True)
    new = table.slice(rows).to_pylist()[0] | {"shard": "shards/test/test-999999.tar"}
    dataset = Dataset(scratch / "ds")
    manifest.write_manifest(dataset.samples_manifest, table.slice(0, rows))
    manifest.write_manifest(dataset.shards_manifest, shards(rows))
    dataset.write_info(initial_info("campaign", {}))
    kept = scratch / "kept"
    shutil.copytree(dataset.root, kept)
    run = _Run(dataset, _SETTINGS, pool=None, progress=False)
    plan = Plan(rows=[new])
    result = UnitResult(new["shard"], "0" * 64, new["bytes"], samples=1)
    best = float("inf")
    for _ in range(tries):
        shutil.rmtree(dataset.root)
        shutil.copytree(kept, dataset.root)
        start = time.perf_counter()
        run._commit(plan, [result])
        best = min(best, time.perf_counter() - start)
    return best, dataset.samples_manifest.stat().st_size


if __name__ == "__main__":
    raise SystemExit(main())
