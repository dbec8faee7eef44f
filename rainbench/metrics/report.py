"""Writing a scoring run: the scores as Parquet (one row per image) with a JSON of
provenance beside it, and the per-metric summary the CLI prints.
"""

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rainbench import __version__
from rainbench.files import write_atomic
from rainbench.metrics.engine import Pairing, ScorePlan
from rainbench.metrics.registry import PROTOCOL_VERSION, versions
from rainbench.metrics.weights import loaded_weights
from rainbench.shards.dataset import read_json
from rainbench.shards.manifest import write_manifest

# The columns every scores table starts with; the metrics' follow.
FIRST_COLUMNS = ["name", "pred_sha256", "ref_sha256", "width", "height"]
PROVENANCE_KEY = "rainbench_provenance"  # the table's metadata that holds its provenance


def write_scores(out: Path, rows: list[dict], metrics: tuple[str, ...], provenance: dict) -> Path:
    """`out` (Parquet) and `out` with suffix .json (provenance); returns the JSON's path."""
    columns = [*FIRST_COLUMNS, *metrics, "status"]
    types = {"width": pa.int64(), "height": pa.int64(), **dict.fromkeys(metrics, pa.float64())}
    schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
    table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows], schema)
    # The provenance is in the table too, written with it in one atomic write: the two
    # files are replaced one after the other, and a failure between them (a full disk) or
    # another score finishing into the same --out at once would leave scores beside a
    # provenance not theirs. Each file goes through this process's own temporary, so two
    # such scores leave one's file or the other's, whole, and neither crashes.
    text = json.dumps(provenance, indent=2, default=str) + "\n"
    write_manifest(out, table.replace_schema_metadata({PROVENANCE_KEY: text}), shared=True)
    sidecar = provenance_path(out)
    write_atomic(sidecar, text.encode(), shared=True)
    return sidecar


def provenance_path(out: Path) -> Path:
    return out.with_suffix(".json")


def is_scores(path: Path) -> bool:
    """Whether `path` is a scores table write_scores wrote (one `score --out` may
    replace)."""
    try:
        return pq.read_schema(path).names[: len(FIRST_COLUMNS)] == FIRST_COLUMNS
    except (OSError, pa.ArrowException):
        return False


def is_provenance(path: Path) -> bool:
    """Whether `path` is the provenance JSON write_scores wrote beside its scores."""
    try:
        found = read_json(path, 1 << 24)
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and {"protocol_version", "pred", "metrics"} <= found.keys()


def provenance(
    pred: Path,
    ref: Path | None,
    metrics: tuple[str, ...],
    pairing: Pairing,
    options: dict,
    cache: str | None,
    plan: ScorePlan,
) -> dict:
    return {
        "protocol_version": PROTOCOL_VERSION,
        "metrics": list(metrics),
        # Absolute, as eval's are: a path relative to where score ran means nothing
        # to whoever reads the record elsewhere.
        "pred": os.path.abspath(pred),
        "ref": os.path.abspath(ref) if ref else None,
        "images": len(pairing.jobs),
        "unmatched_pred": pairing.unmatched_pred,
        "unmatched_ref": pairing.unmatched_ref,
        "unsupported_pred": pairing.unsupported_pred,
        "unsupported_ref": pairing.unsupported_ref,
        "outside_pred": pairing.outside_pred,
        "outside_ref": pairing.outside_ref,
        "options": options,
        # Values read from it were computed with the same weights and versions (their
        # identity is part of its key: rainbench.metrics.engine.cache_identities).
        "cache": os.path.abspath(cache) if cache else None,
        # How it ran: the processes, and torch's CPU threads in each, which may change
        # a torch metric's rounding (not part of the cache's key: values are read back
        # whatever the threads that computed them).
        "workers": plan.workers,
        "threads": plan.threads,
        # The readers' pixel cap it ran under: a larger image is a row's error.
        "max_pixels": plan.max_pixels,
        "rainbench_version": __version__,
        "versions": versions(),
        "weights": loaded_weights(metrics, options.get("weights_dir")),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "time": datetime.now(UTC).isoformat(),
    }


def cpu_model() -> str:
    """The CPU's model name, for the provenance of timings."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:  # not Linux
        pass
    return platform.processor() or platform.machine()


def summary(rows: list[dict], metrics: tuple[str, ...]) -> list[dict]:
    """Each metric over the images it scored: its mean as the leaderboard takes it (an
    infinite PSNR, an output identical to its reference, kept: the mean is then
    infinite, as BasicSR's is) and, apart, the mean of the finite values."""
    lines = []
    for metric in metrics:
        values = [row[metric] for row in rows if row.get(metric) is not None]
        finite = [v for v in values if math.isfinite(v)]
        lines.append(
            {
                "metric": metric,
                "mean": _mean(values),
                "finite_mean": _mean(finite),
                "images": len(values),
                "infinite": len(values) - len(finite),
                "failed": len(rows) - len(values),
            }
        )
    return lines


def _mean(values: list[float]) -> float | None:
    """Their sum in order over their count (None when there are none); see
    `overflow_scale` for values whose sum would overflow."""
    if not values:
        return None
    scale = overflow_scale(values)
    return sum(value / scale for value in values) / len(values) * scale


def overflow_scale(values: Sequence[float] | np.ndarray) -> float:
    """The power of two to divide `values` by before they are summed, averaged, or
    interpolated between, and to multiply the result by: 1 for any ordinary values,
    which are then taken as they are; for values so large that n of them would sum to
    infinity (1e308 on each image), one that keeps twice their sum finite. Dividing
    and multiplying by a power of two is exact (but for values near the smallest float,
    which a sum of such large ones cannot feel), so a mean is the one an unbounded float
    would give."""
    values = np.asarray(values, dtype=np.float64)
    largest = np.abs(values[np.isfinite(values)]).max(initial=0.0)
    if largest <= sys.float_info.max / (2 * max(values.size, 1)):
        return 1.0
    return 2.0 ** (2 * values.size).bit_length()
