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

import hashlib
import tempfile
from pathlib import Path

from ingest import _validate  # the floor's own work, as benchmarks/ingest.py measures it
from ingest_steps import StepTimes, arguments, best_of

from rainbench.capture.probe import stored_capture
from rainbench.capture.source import open_capture
from rainbench.ingest.scan import walk_inputs
from rainbench.ingest.write import _add_capture
from rainbench.shards.tar import ShardWriter

FLOOR = "floor (sha256 + reduced decode)"
WHOLE = "write (all, as write_unit)"


def one_pass(folder: Path, shard: Path) -> dict[str, float]:
    """Each step's mean CPU ms per capture over the files under `folder`."""
    timed = StepTimes()
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
    return timed.means()


def _stored(source):
    with open_capture(source) as capture:
        return stored_capture(capture, source, False)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    args = arguments(__doc__)
    with tempfile.TemporaryDirectory() as scratch:
        best = best_of(args.passes, lambda: one_pass(args.folder, Path(scratch) / "shard.tar"))
    print(f"write (all) / floor: {best[WHOLE] / best[FLOOR]:.2f}")


if __name__ == "__main__":
    main()
