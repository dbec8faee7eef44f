"""What the ingest driver (the `rainbench ingest` process itself, not its workers) holds
in memory per capture: its peak resident memory after ingesting N small generated
captures, for several N, and the growth per capture between them. Per-capture records
(the journal's probes, the plan's rows, the manifests) do not depend on pixel count, so
small captures measure the same growth at little cost.

    python benchmarks/driver_memory.py                        # N = 1000, 2000, 4000
    python benchmarks/driver_memory.py --counts 2000 16000 -j 2
    python benchmarks/driver_memory.py --existing 0 100000 400000   # into a large dataset

Each ingest runs in a fresh interpreter that calls the CLI in-process and reads its own
`VmHWM` (the kernel's peak resident set; Linux) when it ends: forkserver workers are
separate processes and not counted. Captures are `sample_specs(N, size=(64, 48))`:
every kind of still ingest reads, orientations, EXIF and GPS included.

With --existing, the same --batch of new captures goes into datasets whose manifests
already list N captures each (a lab's campaign as `benchmarks/manifest_read.py` makes
it, tagged; an ingest reads no shard of the captures it already holds), and the growth
is per capture already there: what adding to a large dataset costs the driver.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import log  # benchmarks/ is on sys.path when run as a script
from manifest_read import samples, shards

from rainbench.demo.captures import sample_specs, write_capture
from rainbench.shards import manifest
from rainbench.shards.dataset import Dataset, initial_info

# Run in a fresh interpreter: the CLI's ingest, then this process's own peak, in kB.
_DRIVER = (
    "import sys\n"
    "from rainbench.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:], prog_name='rainbench')\n"
    "except SystemExit as end:\n"
    "    if end.code:\n"
    "        raise\n"
    "status = open('/proc/self/status').read().split('VmHWM:')[1]\n"
    "print(status.split()[0], file=sys.stderr)\n"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument(
        "--existing",
        type=int,
        nargs="+",
        help="ingest --batch captures into datasets already holding these many, instead",
    )
    parser.add_argument("--batch", type=int, default=200, help="new captures, with --existing")
    parser.add_argument("-j", "--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.existing:
            _into_existing(Path(scratch), sorted(set(args.existing)), args.batch, args.workers)
        else:
            _fresh(Path(scratch), sorted(set(args.counts)), args.workers)
    return 0


def _fresh(scratch: Path, counts: list[int], workers: int) -> None:
    print("| captures | driver peak | growth per capture since the row above |")
    print("|---:|---:|---:|")
    raw = scratch / "raw"
    log(f"writing {counts[-1]} captures")
    specs = sample_specs(counts[-1], seed=0, size=(64, 48))
    written = [write_capture(raw, spec) for spec in specs]
    before = None
    for count in counts:
        folder = scratch / f"raw-{count}"
        for path in written[:count]:  # the first `count`, linked, not copied
            link = folder / path.relative_to(raw)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.hardlink_to(path)
        log(f"ingesting {count} captures")
        peak = _driver_peak_mb(folder, scratch / f"ds-{count}", workers)
        print(f"| {count} | {peak:.0f} MB | {_growth(before, count, peak)} |")
        before = (count, peak)


def _into_existing(scratch: Path, counts: list[int], batch: int, workers: int) -> None:
    print(
        f"| captures already in the dataset | driver peak, {batch} new "
        "| growth per capture already there |"
    )
    print("|---:|---:|---:|")
    raw = scratch / "raw"
    for spec in sample_specs(batch, seed=1, size=(64, 48)):
        write_capture(raw, spec)
    before = None
    for count in counts:
        dataset = Dataset(scratch / f"ds-{count}")
        if count:
            log(f"making manifests of {count} captures")
            manifest.write_manifest(dataset.samples_manifest, samples(count, tagged=True))
            manifest.write_manifest(dataset.shards_manifest, shards(count))
            options = {"split": {"train": 0.8, "val": 0.1, "test": 0.1}, "keep_gps": False}
            dataset.write_info(initial_info("campaign", options))
        log(f"ingesting {batch} captures into {count}")
        peak = _driver_peak_mb(raw, dataset.root, workers)
        print(f"| {count:,} | {peak:.0f} MB | {_growth(before, count, peak)} |")
        before = (count, peak)


def _growth(before: tuple[int, float] | None, count: int, peak: float) -> str:
    return "" if before is None else f"{(peak - before[1]) * 1e3 / (count - before[0]):.1f} kB"


def _driver_peak_mb(raw: Path, ds: Path, workers: int) -> float:
    command = ["ingest", str(raw), "--out", str(ds), "-j", str(workers), "--no-progress"]
    found = subprocess.run(
        [sys.executable, "-c", _DRIVER, *command],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return int(found.stderr.split()[-1]) / 1e3


if __name__ == "__main__":
    sys.exit(main())
