"""Loading: the results directory the evaluation harness writes
(<model>/<dataset>/<split>.parquet with a .json of provenance beside it) read into one
`Run` per file pair, each checked where it is read so that a bad file is a one-line error.
Several directories (a lab's and a contributor's) merge into one set of results.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rainbench.errors import RainbenchError

REFERENCE = "_reference"  # the results directory's folder of input and ground-truth crops
# Real rain without ground truth, then the kinds of paired split (DESIGN.md), in the
# order the leaderboard shows them: real rain with estimated ground truth first.
KINDS = ("real", "real-paired", "imported", "synthetic")
STATUSES = ("ok", "failed")
BASE_COLUMNS = (
    "key",
    "image_sha256",
    "split",
    "kind",
    "rain_type",
    "width",
    "height",
    "status",
    "error",
    "seconds",
    "s_per_mp",
    "peak_mem_mb",
)
REQUIRED_COLUMNS = ("key", "kind", "rain_type", "status", "s_per_mp")
# Provenance keys whose types the renderers rely on.
_PROVENANCE_TYPES = {
    "model": dict,
    "checkpoint": (dict, type(None)),
    "dataset": dict,
    "kind": str,
    "metrics": list,
    "unavailable_metrics": dict,
    "lower_is_better": dict,
    "tile": (dict, type(None)),
    "hardware": dict,
    "versions": dict,
    "finished_at": (str, type(None)),
    "images": dict,
    "crops": dict,
}


class LeaderboardError(RainbenchError):
    """The results cannot be published as they are; the message is one line naming the file."""


@dataclass(frozen=True, eq=False)
class Run:
    """One model's results on one split: its per-image scores and provenance."""

    model: str
    dataset: str
    split: str
    path: Path  # the Parquet; absent while a run has written only its JSON
    scores: pd.DataFrame
    metrics: tuple[str, ...]
    provenance: dict | None
    kind: str | None

    @property
    def complete(self) -> bool:
        return (
            self.path.is_file()
            and self.provenance is not None
            and self.provenance.get("finished_at") is not None
        )

    @property
    def version(self) -> str | None:
        version = ((self.provenance or {}).get("model") or {}).get("version")
        return None if version is None else str(version)

    @property
    def crops(self) -> Path:
        return self.path.with_suffix(".crops")


@dataclass(frozen=True)
class Results:
    root: Path  # the first directory read; its name titles the pages
    runs: tuple[Run, ...]
    roots: tuple[Path, ...] = ()  # every directory read, when several were merged

    def reference_crops(self, dataset: str, split: str) -> Path:
        """The input and ground-truth crops of a split: in the first directory that has
        them."""
        found = [root / REFERENCE / dataset / f"{split}.crops" for root in (*self.roots, self.root)]
        return next((path for path in found if path.is_dir()), found[-1])


def load_results(results_dirs: Path | Sequence[Path]) -> Results:
    """Every run under `results_dirs` (each <model>/<dataset>/<split>.parquet + .json):
    one directory, or several merged, where a model's results on one split may be in
    only one of them."""
    if isinstance(results_dirs, str | Path):
        return _load_one(Path(results_dirs))
    loaded = [_load_one(Path(path)) for path in dict.fromkeys(results_dirs)]
    if not loaded:
        raise LeaderboardError("no results directory given")
    seen: dict[tuple[str, str, str], Path] = {}
    for results in loaded:
        for run in results.runs:
            where = seen.setdefault((run.model, run.dataset, run.split), results.root)
            if where != results.root:
                raise LeaderboardError(
                    f"{run.model}/{run.dataset}/{run.split} is in both {where} and "
                    f"{results.root}: keep one of them"
                )
    runs = sorted(
        (run for results in loaded for run in results.runs),
        key=lambda run: (run.model, run.dataset, run.split),
    )
    return Results(loaded[0].root, tuple(runs), tuple(results.root for results in loaded))


def _load_one(root: Path) -> Results:
    if not root.is_dir():
        raise LeaderboardError(f"{root}: no such results directory")
    stems = sorted(
        {
            path.parent / path.stem
            for path in root.glob("*/*/*")
            if path.suffix in (".parquet", ".json")
            and path.is_file()
            and path.parts[-3] != REFERENCE
            and not any(part.startswith(".") for part in path.relative_to(root).parts)
        }
    )
    if not stems:
        raise LeaderboardError(f"{root}: no results (expected <model>/<dataset>/<split>.parquet)")
    return Results(root, tuple(_load_run(stem) for stem in stems))


def _load_run(stem: Path) -> Run:
    parquet, sidecar = stem.parent / f"{stem.name}.parquet", stem.parent / f"{stem.name}.json"
    provenance = _read_provenance(sidecar) if sidecar.is_file() else None
    listed = None if provenance is None else provenance.get("metrics")
    if parquet.is_file():
        scores, metrics = _read_scores(parquet, listed, sidecar.name)
    else:
        metrics = tuple(listed or ())
        scores = pd.DataFrame({c: pd.Series(dtype=object) for c in (*BASE_COLUMNS, *metrics)})
    kinds = set(scores["kind"].dropna())
    if provenance and "kind" in provenance:
        kinds.add(provenance["kind"])
    if not kinds <= set(KINDS) or len(kinds) > 1:
        raise LeaderboardError(f"{parquet}: kind must be one of {', '.join(KINDS)}; found {kinds}")
    return Run(
        model=stem.parent.parent.name,
        dataset=stem.parent.name,
        split=stem.name,
        path=parquet,
        scores=scores,
        metrics=metrics,
        provenance=provenance,
        kind=next(iter(kinds), None),
    )


def _read_provenance(path: Path) -> dict:
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise LeaderboardError(f"{path}: not UTF-8 text ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise LeaderboardError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno})"
        ) from error
    if not isinstance(provenance, dict):
        raise LeaderboardError(f"{path}: expected a JSON object, got {type(provenance).__name__}")
    for key, kind in _PROVENANCE_TYPES.items():
        if key in provenance and not isinstance(provenance[key], kind):
            raise LeaderboardError(f"{path}: {key!r} has the wrong type")
    for metric, lower in provenance.get("lower_is_better", {}).items():
        if not isinstance(lower, bool):
            raise LeaderboardError(f"{path}: lower_is_better[{metric!r}] must be true or false")
    if not all(isinstance(m, str) for m in provenance.get("metrics", [])):
        raise LeaderboardError(f"{path}: 'metrics' must list metric names")
    return provenance


def _read_scores(
    path: Path, listed: list[str] | None, sidecar: str
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as error:
        raise LeaderboardError(
            f"{path}: not a readable Parquet file ({_one_line(error)})"
        ) from error
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise LeaderboardError(f"{path}: missing column(s) {', '.join(missing)}")
    if listed is None:
        metrics = tuple(
            c for c in table.column_names if c not in BASE_COLUMNS and _numeric(table.schema, c)
        )
    else:
        absent = [m for m in listed if m not in table.column_names]
        if absent:
            raise LeaderboardError(f"{path}: no column for {', '.join(absent)} listed in {sidecar}")
        metrics = tuple(listed)
    for column in (*metrics, "s_per_mp"):
        if not _numeric(table.schema, column):
            raise LeaderboardError(f"{path}: column {column!r} is not numeric")
    scores = table.to_pandas()
    if not scores["status"].isin(STATUSES).all():
        found = sorted(set(scores["status"].astype(str)) - set(STATUSES))
        raise LeaderboardError(f"{path}: status must be ok or failed, found {', '.join(found)}")
    for column in (*metrics, "s_per_mp"):
        scores[column] = scores[column].astype("float64")
    return scores, metrics


def _numeric(schema: pa.Schema, column: str) -> bool:
    kind = schema.field(column).type
    return pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
