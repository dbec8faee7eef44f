"""What ingest's write phase adds per capture: the CPU milliseconds of each step a write
worker takes for a still (re-read and GPS strip, the sha256 check against the scan's,
the tar member with the shard stream's hash) and of the whole step as `write_unit` takes
it, beside the floor's own sha256 and reduced decode, one process, best of --passes.

    python benchmarks/write_steps.py /tmp/rain-captures/first

The folder is one that benchmarks/ingest.py generated (`--data DIR` keeps them: DIR/first
holds N 12 MP JPEGs). The members go into a shard in a temporary folder, as a write
worker's go into its shard. CPU time of this thread (`time.thread_time`), so other
sessions' load moves it little.
"""

import argparse
import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ingest import _validate  # the floor's own work, as benchmarks/ingest.py measures it

from rainbench.capture.probe import stored_capture
from rainbench.capture.source import open_capture
from rainbench.ingest.scan import walk_inputs
from rainbench.ingest.write import _add_capture
from rainbench.shards.tar import ShardWriter

FLOOR = "floor (sha256 + reduced decode)"
WHOLE = "write (all, as write_unit)"


def one_pass(folder: Path, shard: Path) -> dict[str, float]:
    """Each step's mean CPU ms per capture over the files under `folder`."""
    spent: dict[str, list[float]] = {}

    def timed(name: str, step: Callable, *args):
        started = time.thread_time()
        result = step(*args)
        spent.setdefault(name, []).append((time.thread_time() - started) * 1000)
        return result

    sources, _ = walk_inputs([folder])
    with ShardWriter(shard) as writer:
        for number, source in enumerate(sources):
            data = open_capture(source).read_all()
            timed(FLOOR, _validate, data)
            found = timed("write: re-read + GPS strip", _stored, source)
            sha256 = timed("write: sha256 check", _sha256, found.stored)
            timed("write: tar member + stream hash", writer.add, f"a{number}.jpg", found.stored)
            row = {
                "source_root": source.root,
                "source_path": source.path,
                "source_size": source.size,
                "key": f"b{number}",
                "members": ["jpg", "json"],
                "format": found.format.name,
                "sha256": sha256,
            }
            timed(WHOLE, _add_capture, writer, row, False)
    return {name: sum(values) / len(values) for name, values in spent.items()}


def _stored(source):
    with open_capture(source) as capture:
        return stored_capture(capture, source, False)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="a folder of captures")
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.passes):
            for name, ms in one_pass(args.folder, Path(scratch) / "shard.tar").items():
                best[name] = min(best.get(name, float("inf")), ms)
    for name, ms in best.items():
        print(f"{name:<34} {ms:8.2f} ms")
    print(f"write (all) / floor: {best[WHOLE] / best[FLOOR]:.2f}")


if __name__ == "__main__":
    main()
