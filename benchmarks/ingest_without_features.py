"""`rainbench ingest` with the rain-type features replaced by constants: what ingest
costs without measuring them, for benchmarks/ingest.py's context row. Not a way to
ingest: the features and tags it stores mean nothing.

    python benchmarks/ingest_without_features.py ingest RAW --out DS [ingest's options]
"""

import sys

import rainbench.ingest.scan as scan
import rainbench.tagging.measure as measure
from rainbench.tagging.features import FEATURE_NAMES


def _unmeasured(preview: object) -> dict[str, float]:
    return dict.fromkeys(FEATURE_NAMES, 0.0)


# At import, not under __main__: ingest's workers run this module again as their
# __mp_main__ before any work, after their fork server imported rainbench.ingest.scan
# with the real function, so both names are replaced.
measure.compute_features = scan.compute_features = _unmeasured

if __name__ == "__main__":
    from rainbench.cli import main

    sys.exit(main())
