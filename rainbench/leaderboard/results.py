"""Loading: the results directory the evaluation harness writes
(<model>/<dataset>/<split>.parquet with a .json of provenance beside it) read into one
`Run` per file pair, each checked where it is read so that a bad file is a one-line error.
Several directories (a lab's and a contributor's) merge into one set of results.
"""

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rainbench.errors import RainbenchError
from rainbench.files import leads_inside, regular_file
from rainbench.shards.dataset import lock_holder
from rainbench.shards.parquet import TooLarge, read_table

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
# The provenance values the renderers rely on, by their path of keys ("*": every item
# of a list, every value of an object), each parent before its children; a value that
# is not there is not checked.
_NONE = type(None)
_NUMBER = (int, float)
_PROVENANCE_TYPES: dict[tuple[str, ...], type | tuple[type, ...]] = {
    ("model",): dict,
    ("model", "options"): (dict, _NONE),
    ("checkpoint",): (dict, _NONE),
    ("dataset",): dict,
    ("dataset", "split_sha256"): (str, _NONE),
    ("kind",): str,
    ("metrics",): list,
    ("metrics", "*"): str,
    ("unavailable_metrics",): dict,
    ("unavailable_metrics", "*"): str,
    ("lower_is_better",): dict,
    ("lower_is_better", "*"): bool,
    ("tile",): (dict, _NONE),
    ("hardware",): dict,
    ("versions",): dict,
    ("finished_at",): (str, _NONE),
    ("images",): dict,
    ("images", "ok"): int,
    ("images", "failed"): int,
    ("crops",): dict,
    ("trained_on",): (dict, _NONE),
    ("trained_on", "images"): int,
    ("trained_on", "of"): int,
    ("ground_truth",): dict,
    ("ground_truth", "methods"): dict,
    ("ground_truth", "confident_from"): _NUMBER,
    ("ground_truth", "confidence_mean"): _NUMBER,
    ("ground_truth", "moving_mean"): _NUMBER,
    ("ground_truth", "gt_psnr_estimate_median"): _NUMBER,
    ("ground_truth", "window_frames_max"): _NUMBER,
}
# Keys of an object that eval writes all or none of, as the renderers read them together.
_TOGETHER = {
    "images": ("ok", "failed"),
    "trained_on": ("images", "of"),
    "ground_truth": (
        "confident_from",
        "confidence_mean",
        "moving_mean",
        "gt_psnr_estimate_median",
        "window_frames_max",
    ),
}
_JSON_NAMES = {
    dict: "an object",
    list: "a list",
    str: "a string",
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    _NONE: "null",
}
# eval writes a few kilobytes (what grows is one crop place, some 50 bytes, per kept
# crop); the cap bounds what a hostile file costs to parse, far above any real run's.
_PROVENANCE_BYTES = 8 << 20
_TEXT_COLUMNS = ("key", "kind", "rain_type", "status")  # what rows are grouped by


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
    root: Path  # the first directory read
    runs: tuple[Run, ...]
    roots: tuple[Path, ...] = ()  # every directory read, when several were merged

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the directories read, in the order given: the pages' title."""
        return tuple(root.name for root in self.roots or (self.root,))

    def reference_crops(self, dataset: str, split: str) -> Path:
        """The input and ground-truth crops of a split: in the first directory that has
        them."""
        found = [root / REFERENCE / dataset / f"{split}.crops" for root in (*self.roots, self.root)]
        return next((path for path in found if path.is_dir() and self.holds(path)), found[-1])

    def holds(self, path: Path) -> bool:
        """Whether `path`, a file or folder named by what the results directories hold, is
        no link and lies inside one of them once every link above it is followed: a name
        read from results leads nowhere else (eval writes no links)."""
        return not path.is_symlink() and any(
            leads_inside(path, root) for root in (*self.roots, self.root)
        )


def load_results(results_dirs: Path | Sequence[Path]) -> Results:
    """Every run under `results_dirs` (each <model>/<dataset>/<split>.parquet + .json):
    one directory, or several merged, where a model's results on one split may be in
    only one of them."""
    if isinstance(results_dirs, str | Path):
        return _load_one(Path(results_dirs))
    # One folder named twice (res and /home/me/res, or a link to it) is read once, not
    # refused as holding every run twice.
    folders: dict[Path, Path] = {}
    for path in map(Path, results_dirs):
        folders.setdefault(path.resolve(), path)
    loaded = [_load_one(path) for path in folders.values()]
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
    # A results folder from elsewhere may hold links; eval writes none, and a file read
    # through one would publish what lies outside the folder given.
    for stem in stems:
        for path in (stem.with_name(f"{stem.name}.parquet"), stem.with_name(f"{stem.name}.json")):
            if path.exists() and not leads_inside(path, root):
                raise LeaderboardError(f"{path} leads outside {root}; refused")
    return Results(root, tuple(_load_run(stem) for stem in stems))


def _load_run(stem: Path) -> Run:
    parquet, sidecar = stem.parent / f"{stem.name}.parquet", stem.parent / f"{stem.name}.json"
    provenance = read_provenance(sidecar) if sidecar.is_file() else None
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
    if parquet.is_file() and provenance and provenance.get("finished_at") is not None:
        try:
            _check_counted(parquet, scores, provenance, sidecar.name)
        except LeaderboardError:
            # An eval run again on a finished split (new images, --retry-failed) adds rows
            # before it counts them: not tampering, only not yet finished.
            writer = lock_holder(split_lock(stem.parent, stem.name))
            if writer is None:
                raise
            raise LeaderboardError(
                f"{parquet}: an eval is writing it now ({writer}); make the leaderboard again "
                "once it has finished"
            ) from None
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


def split_lock(folder: Path, split: str) -> Path:
    """The lock an eval holds on `split`'s results in `folder` while it writes them."""
    return folder / f".{split}.lock"


def read_provenance(path: Path) -> dict:
    with path.open("rb") as file:
        data = file.read(_PROVENANCE_BYTES + 1)
    if len(data) > _PROVENANCE_BYTES:
        raise LeaderboardError(
            f"{path}: larger than {_PROVENANCE_BYTES >> 20} MiB, which no evaluation writes"
        )
    try:
        provenance = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise LeaderboardError(f"{path}: not UTF-8 text ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise LeaderboardError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno})"
        ) from error
    except RecursionError as error:
        raise LeaderboardError(f"{path}: not valid JSON (nested too deep)") from error
    if not isinstance(provenance, dict):
        raise LeaderboardError(f"{path}: expected a JSON object, got {type(provenance).__name__}")
    for keys, kind in _PROVENANCE_TYPES.items():
        kinds = _kinds(kind)
        for name, value in _values_at(provenance, keys):
            # true and false are no numbers in JSON, though Python's bool is an int.
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                # A number takes whole ones in: named once.
                names = (_JSON_NAMES[k] for k in kinds if not (k is int and float in kinds))
                raise LeaderboardError(
                    f"{path}: {name} must be {' or '.join(dict.fromkeys(names))}"
                )
    for key, together in _TOGETHER.items():
        found = [k for k in together if k in (provenance.get(key) or {})]
        if found and len(found) < len(together):
            missing = ", ".join(k for k in together if k not in found)
            raise LeaderboardError(f"{path}: {key} has {found[0]} but not {missing}")
    return provenance


def _values_at(
    value: object, keys: tuple[str, ...], name: str = ""
) -> Iterator[tuple[str, object]]:
    """The values at the path `keys` under `value`, each with its path as JSON names it."""
    if not keys:
        yield name, value
        return
    key, rest = keys[0], keys[1:]
    if key == "*":
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for inner, item in items:
            yield from _values_at(item, rest, f"{name}[{json.dumps(inner)}]")
    elif isinstance(value, dict) and key in value:
        yield from _values_at(value[key], rest, f"{name}.{key}" if name else key)


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _read_scores(
    path: Path, listed: list[str] | None, sidecar: str
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    try:
        table = read_table(path)
    except TooLarge as error:
        raise LeaderboardError(
            f"{path}: refused: {error}; no evaluation writes such a file"
        ) from error
    except (pa.ArrowException, OSError, ValueError) as error:
        raise LeaderboardError(
            f"{path}: not a readable Parquet file ({_one_line(error)})"
        ) from error
    metrics = scores_columns(path, table.schema, listed, sidecar)
    scores = table.to_pandas()
    repeated = scores["key"][scores["key"].duplicated()]
    if not repeated.empty:
        first = repeated.iloc[0]
        same = scores["key"].isna() if pd.isna(first) else scores["key"] == first
        raise LeaderboardError(
            f"{path}: key {_shown(first)} has {int(same.sum())} rows; eval writes one per image"
        )
    if not scores["status"].isin(STATUSES).all():
        found = sorted({"null" if pd.isna(s) else str(s) for s in scores["status"]} - set(STATUSES))
        raise LeaderboardError(f"{path}: status must be ok or failed, found {', '.join(found)}")
    for column in (*metrics, "s_per_mp"):
        scores[column] = scores[column].astype("float64")
    return scores, metrics


def check_scores_file(path: Path, listed: list[str], sidecar: str) -> None:
    """Refuse, as the leaderboard would, a scores file whose columns it cannot read
    (`scores_columns`) with `listed` the metrics of its provenance `sidecar`: eval
    resumes only from a file it can publish. Its schema alone is read."""
    try:
        schema = pq.read_schema(regular_file(path))
    except (pa.ArrowException, OSError, ValueError) as error:
        raise LeaderboardError(
            f"{path}: not a readable Parquet file ({_one_line(error)})"
        ) from error
    scores_columns(path, schema, listed, sidecar)


def scores_columns(
    path: Path, schema: pa.Schema, listed: list[str] | None, sidecar: str
) -> tuple[str, ...]:
    """The metric columns of the scores file at `path` of `schema`: those its provenance
    `sidecar` lists (`listed`; None: every numeric column beyond the base ones), refused
    in one line unless each is there and numeric, and so are the columns rows are
    grouped by and timed with."""
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise LeaderboardError(f"{path}: missing column(s) {', '.join(missing)}")
    if listed is None:
        metrics = tuple(c for c in schema.names if c not in BASE_COLUMNS and _numeric(schema, c))
    else:
        absent = [m for m in listed if m not in schema.names]
        if absent:
            raise LeaderboardError(f"{path}: no column for {', '.join(absent)} listed in {sidecar}")
        metrics = tuple(listed)
    for column in (*metrics, "s_per_mp"):
        if not _numeric(schema, column):
            raise LeaderboardError(f"{path}: column {column!r} is not numeric")
    for column in _TEXT_COLUMNS:
        if not _text(schema, column):
            raise LeaderboardError(f"{path}: column {column!r} is not text")
    return metrics


def _check_counted(path: Path, scores: pd.DataFrame, provenance: dict, sidecar: str) -> None:
    """A finished run's rows are the images eval counted in its JSON, one per image of
    the split: a row added after it (an image from elsewhere) or removed would move the
    means of a split it is not of."""
    counted = provenance.get("images") or {}
    if "ok" not in counted:  # checked together: `failed` is there too
        return
    found = {status: int((scores["status"] == status).sum()) for status in STATUSES}
    if found != {status: counted[status] for status in STATUSES}:
        raise LeaderboardError(
            f"{path}: {found['ok']} ok and {found['failed']} failed rows, but {sidecar} "
            f"counts {counted['ok']} and {counted['failed']} images of the split; rows were "
            "added or removed after eval wrote them"
        )


def _shown(value: object) -> str:
    """A value from a results file as a message shows it: quoted, at most 80 characters."""
    text = "null" if pd.isna(value) else repr(str(value))
    return text if len(text) <= 80 else text[:79] + "…"


def _numeric(schema: pa.Schema, column: str) -> bool:
    kind = schema.field(column).type
    return pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_null(kind)


def _text(schema: pa.Schema, column: str) -> bool:
    kind = schema.field(column).type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
