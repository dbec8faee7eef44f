"""Where one ingest worker's time goes: the CPU milliseconds per capture of each step of
the probe (read, the floor's own sha256 and reduced decode, sniff and GPS strip, the
validating decode, both hashes, EXIF, pHash, the preview, the rain-type features and
their parts), one process, best of --passes over the same files.

    python benchmarks/ingest_steps.py /tmp/rain-captures/first

The folder is one that benchmarks/ingest.py generated (`--data DIR` keeps them: DIR/first
holds N 12 MP JPEGs). CPU time of this thread (`time.thread_time`), so other sessions'
load moves it little.
"""

import argparse
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from ingest import _validate  # the floor's own work, as benchmarks/ingest.py measures it

from rainbench.capture.decode import decode_capture
from rainbench.capture.exif import read_exif
from rainbench.capture.phash import phash_variants
from rainbench.capture.probe import stored_capture
from rainbench.capture.source import CaptureFile, open_capture
from rainbench.ingest.scan import walk_inputs
from rainbench.tagging import measure
from rainbench.tagging.features import THIN_SIGMA
from rainbench.tagging.ridges import ridge_features


class StepTimes:
    """The CPU milliseconds of named steps, each time one runs, in this thread."""

    def __init__(self) -> None:
        self.spent: dict[str, list[float]] = {}

    def __call__(self, name: str, step: Callable, *args):
        """`step(*args)`, timed under `name`."""
        started = time.thread_time()
        result = step(*args)
        self.spent.setdefault(name, []).append((time.thread_time() - started) * 1000)
        return result

    def means(self) -> dict[str, float]:
        return {name: sum(values) / len(values) for name, values in self.spent.items()}


def best_of(passes: int, one_pass: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Each step's lowest mean over `passes` runs of `one_pass`, printed a line each."""
    best: dict[str, float] = {}
    for _ in range(passes):
        for name, ms in one_pass().items():
            best[name] = min(best.get(name, float("inf")), ms)
    for name, ms in best.items():
        print(f"{name:<34} {ms:8.2f} ms")
    return best


def one_pass(folder: Path) -> dict[str, float]:
    """Each step's mean CPU ms per capture over the files under `folder`."""
    timed = StepTimes()
    sources, _ = walk_inputs([folder])
    for source in sources:
        capture = timed("read", _read, source)
        data = capture.read_all()  # read once, kept
        timed("floor (sha256 + reduced decode)", _validate, data)
        found = timed("sniff + GPS strip", stored_capture, capture, source, False)
        fmt, stored = found.format, found.stored
        capture.close()
        decoded = timed("validating decode", decode_capture, stored, fmt)
        timed("sha256 × 2", _hash_both, data, stored)
        timed("EXIF", read_exif, decoded.exif)
        timed("pHash", phash_variants, decoded.reduced, decoded.orientation)
        preview = timed("upright preview", _preview, decoded)
        timed("features: working image", measure.working_image, preview)
        luma = timed("features: native luma", measure.native_luma, preview)
        timed("features: thin ridge filter", ridge_features, luma, THIN_SIGMA, "thin")
        timed("features (all)", measure.compute_features, preview)
    return timed.means()


def _read(source) -> CaptureFile:
    capture = open_capture(source)
    capture.read_all()
    return capture


def _hash_both(data: bytes, stored: bytes) -> None:
    for blob in (data, stored):
        hashlib.sha256(blob).hexdigest()


def _preview(decoded):
    return decoded.preview


def arguments(description: str) -> argparse.Namespace:
    """The folder of captures and --passes, of a script described by `description`."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="a folder of captures")
    parser.add_argument("--passes", type=int, default=3)
    return parser.parse_args()


def main() -> None:
    args = arguments(__doc__)
    best_of(args.passes, lambda: one_pass(args.folder))


if __name__ == "__main__":
    main()
