"""What measuring the rain-type features adds to ingest, per capture, against the
validating decode ingest does anyway (measured in the same run, one process).

    python benchmarks/tagging_features.py --data /tmp/benchdata   # captures of benchmarks/ingest.py
    python benchmarks/tagging_features.py                         # makes 12 captures of its own

Prints the mean time of the decode (ingest's reduced-scale validating decode) and of
`compute_features` on its preview, best of 3 passes, and their ratio.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import cpu_model  # benchmarks/ is on sys.path when run as a script

from rainbench.capture.decode import decode_capture
from rainbench.capture.formats import FORMATS
from rainbench.demo.captures import sample_specs, write_capture
from rainbench.tagging.measure import compute_features


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a folder of JPEG captures (searched deeply)")
    parser.add_argument("--count", type=int, default=48, help="captures to time, at most")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.data or _make_captures(Path(scratch))
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
        blobs = [p.read_bytes() for p in files[: args.count]]
    if not blobs:
        print(f"no JPEG captures under {folder}", file=sys.stderr)
        return 1
    decode = _best(lambda: [decode_capture(b, FORMATS["jpeg"]) for b in blobs])
    previews = [decode_capture(b, FORMATS["jpeg"]).preview for b in blobs]
    measure = _best(lambda: [compute_features(p) for p in previews])
    size = previews[0].size
    print(f"cpu: {cpu_model()}; {len(blobs)} captures, previews {size[0]}×{size[1]}")
    print(f"validating decode: {decode / len(blobs) * 1e3:.1f} ms per capture")
    print(f"rain-type features: {measure / len(blobs) * 1e3:.1f} ms per capture")
    print(f"features / decode = {measure / decode:.2f}")
    return 0


def _best(run, passes: int = 3) -> float:
    times = []
    for _ in range(passes):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def _make_captures(root: Path) -> Path:
    for spec in sample_specs(12, seed=0, size=(4000, 3000)):
        if spec.fmt == "jpeg":
            write_capture(root, spec)
    return root


if __name__ == "__main__":
    sys.exit(main())
