"""The Parquet manifests: their schemas (the contract in DESIGN.md, documented in
docs/dataset-format.md), reading them, and replacing them atomically.

Reading is where names from a dataset are checked: keys, split names, shard paths,
formats and member extensions must match the documented patterns, or the manifest is
refused as a whole (a one-line `DatasetError`) before any reader builds a path from it.
So is a row without a value the format requires, or with a time no Python datetime
holds: readers compute with them unchecked; and, before it is decoded, a file that would
decode to far more than its size (`shards.parquet.read_table`).
"""

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rainbench.capture.formats import FORMATS
from rainbench.capture.probe import KEY_HEX
from rainbench.errors import first_line
from rainbench.files import file_sha256, regular_file, replacing
from rainbench.shards.dataset import DatasetError
from rainbench.shards.layout import STORED_SPLIT
from rainbench.shards.parquet import TooLarge, read_table
from rainbench.store import shown
from rainbench.tagging.features import FEATURE_NAMES, feature_column
from rainbench.tagging.tagger import LAYERS, RAIN_TYPES

_TS = pa.timestamp("us")

SAMPLES = pa.schema(
    [
        ("key", pa.string()),
        ("sha256", pa.string()),
        ("shard", pa.string()),
        ("split", pa.string()),
        ("layer", pa.string()),
        ("rain_type", pa.string()),
        ("rain_type_source", pa.string()),
        ("rain_type_confidence", pa.float64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("format", pa.string()),
        ("bytes", pa.int64()),
        ("source_path", pa.string()),
        ("captured_at", _TS),
        ("camera_make", pa.string()),
        ("camera_model", pa.string()),
        # Beyond the contract's minimum:
        ("members", pa.list_(pa.string())),  # tar member extensions, e.g. [jpg, json]
        ("mode", pa.string()),
        ("kind", pa.string()),  # still or video (null in datasets from before videos: still)
        ("codec", pa.string()),  # videos: FFmpeg's decoder name (h264, hevc, …)
        ("frame_rate", pa.float64()),  # videos: frames per second
        ("duration_s", pa.float64()),
        ("frames", pa.int64()),  # videos: frames, addressed 0 … frames-1
        ("rotation", pa.int64()),  # videos: clockwise degrees that make frames upright
        ("sequence", pa.string()),  # key of the video, or of a burst's first still
        ("sequence_index", pa.int64()),  # a still's position in its burst
        ("orientation", pa.int64()),
        ("lens_model", pa.string()),
        ("exposure_time", pa.float64()),
        ("f_number", pa.float64()),
        ("iso", pa.int64()),
        ("focal_length_mm", pa.float64()),
        ("gps_lat", pa.float64()),  # null unless ingested with --keep-gps
        ("gps_lon", pa.float64()),
        ("gps_alt", pa.float64()),
        ("phash", pa.string()),  # 64-bit pHash of the upright picture, hex
        ("near_dup_of", pa.string()),  # key of the earlier capture it nearly duplicates
        ("near_dup_distance", pa.int64()),  # pHash bits between them
        ("rain_type_auto", pa.string()),  # the tagger's pick, also where a label overrides it
        ("rain_type_note", pa.string()),  # the label sheet's note
        ("looks_rainy", pa.bool_()),  # clean captures: the tagger sees rain
        ("tag_caveats", pa.list_(pa.string())),  # what the tagger judges less well
        ("tagger_version", pa.string()),
        ("features_version", pa.string()),
        *((feature_column(name), pa.float64()) for name in FEATURE_NAMES),
        ("source_root", pa.string()),
        ("source_size", pa.int64()),
        ("source_mtime_ns", pa.int64()),
        ("source_inode", pa.int64()),  # 0: none known (an object in a store)
        ("source_sha256", pa.string()),  # of the file as found (before GPS removal)
        ("ingest_run", pa.string()),
    ]
)

SHARDS = pa.schema(
    [
        ("shard", pa.string()),
        ("split", pa.string()),
        ("samples", pa.int64()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("ingest_run", pa.string()),
    ]
)

SYNTHETIC = pa.schema(
    [
        ("key", pa.string()),
        ("split", pa.string()),  # e.g. syn-streak, or the name given to an imported set
        ("recipe", pa.string()),  # a rain recipe, or import:<layout> for an imported set
        ("recipe_version", pa.string()),
        ("shard", pa.string()),
        ("source_key", pa.string()),  # the clean capture rendered on (synthetic pairs)
        ("seed", pa.int64()),  # the derived seed of this render (synthetic pairs)
        ("job", pa.string()),  # what made the pair; the key is derived from it
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("members", pa.list_(pa.string())),  # e.g. [rain.png, gt.png, streaks.png, json]
        ("rain_sha256", pa.string()),  # of the <key>.rain.png member
        ("gt_sha256", pa.string()),  # of the <key>.gt.png member
        ("intensity", pa.float64()),  # target mean rain intensity E[R] (synthetic pairs)
        ("compositing", pa.string()),
        ("group", pa.string()),  # an imported set's subset (DID-MDN heavy/medium/light, …)
        ("source_rain", pa.string()),  # an imported pair's files, relative to the set's root
        ("source_gt", pa.string()),
        # Real pairs estimated from a sequence (`rainbench pairs`):
        ("frame_index", pa.int64()),  # the rainy frame's index within its sequence
        ("window_start", pa.int64()),  # the frames the ground truth was estimated from
        ("window_end", pa.int64()),
        ("confidence_mean", pa.float64()),  # mean of the pair's confidence map, in [0, 1]
        ("moving_fraction", pa.float64()),  # share of the frame masked as moving
        ("gt_psnr_estimate", pa.float64()),  # the estimate's own noise, as psnr_y in dB
        ("run", pa.string()),
    ]
)

REJECTS = pa.schema(
    [
        ("source_path", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("duplicate_of", pa.string()),  # key of the stored capture, for reason "duplicate"
        ("source_root", pa.string()),
        ("source_size", pa.int64()),
        ("source_mtime_ns", pa.int64()),
        ("source_inode", pa.int64()),
        ("ingest_run", pa.string()),
    ]
)


# The names readers build paths and member names from. A capture's key is the first
# KEY_HEX hex digits of its stored bytes' sha256, a pair's those of its split and job
# (synth.splits.PairJob); splits are train/val/test, syn-<recipe> or an imported set's
# name; shards are Dataset.shard_name / synthetic_shard_name.
KEY = f"[0-9a-f]{{{KEY_HEX}}}"
# A new split's name, as the commands that name one check it before anything is written:
# at most SPLIT_MAX characters, so that its shards' file names (<split>-NNNNNN.tar and
# their temporaries, .<12 hex>.tmp more) stay far below the 255 bytes a file system allows.
SPLIT_MAX = 100
SPLIT = f"[a-z0-9][a-z0-9_-]{{0,{SPLIT_MAX - 1}}}"
# A stored split's name (STORED_SPLIT) at most this long: more than a new one may have, so
# that a dataset from before that cap still reads, and short enough that every file named
# from it (the longest: a shard's temporary, <split>-NNNNNN.tar.<12 hex>.tmp, 28 more;
# eval's .<split>.parquet.tmp) stays below the 255 bytes a file system allows.
STORED_SPLIT_MAX = 200
# The capture splits (ingest.split's) and the names no paired split has, which synth,
# pairs and import-paired refuse: a paired split of a capture split's name would hide
# that split from a reader that looks one up by name (eval --split test), and
# shards/synthetic/ is the paired splits' folder.
CAPTURE_SPLITS = ("train", "val", "test")
RESERVED_PAIRED = (*CAPTURE_SPLITS, "synthetic")
# What `eval --split` takes for every split: a split of that name could never be scored
# alone, so pairs and import-paired refuse it as a new split's name.
EVERY_SPLIT = "all"
SHARD = rf"shards/(synthetic/)?{STORED_SPLIT}/{STORED_SPLIT}-[0-9]{{6,}}\.tar"
FORMAT = "|".join(FORMATS)
MEMBER = r"[a-z0-9]+(\.[a-z0-9]+)*"  # a member's extension: jpg, preview.jpg, rain.png

# column → (pattern, what it is, whether null is allowed); checked in every manifest
# that has the column.
NAMES = {
    "key": (KEY, "key", False),
    "split": (STORED_SPLIT, "split name", False),
    "shard": (SHARD, "shard path", False),
    "source_key": (KEY, "key", True),
    "near_dup_of": (KEY, "key", True),
    "sequence": (KEY, "key", True),
    "duplicate_of": (KEY, "key", True),
    "format": (FORMAT, "format", False),
    "members": (MEMBER, "member extension", False),
}


# What a label column of samples.parquet may hold, null aside (docs/dataset-format.md):
# tag, tag-eval and --fit index the four types by them, readers pick layers by them.
LABELS = {
    "layer": LAYERS,
    "rain_type": RAIN_TYPES,
    "rain_type_auto": RAIN_TYPES,
    "rain_type_source": ("auto", "manual"),
}

# The prefix of a real pair's recipe, `pairs:<method>` (synth.importers.ESTIMATED).
REAL_PAIR = "pairs:"

# What a row must hold beyond its names (the columns docs/dataset-format.md gives
# without "null"), by manifest (each with a key column, which names the row in a
# message): (columns, which rows need them in words, those rows or None for every row).
# Readers compute with these unchecked; columns added later, which older datasets
# lack, are not asked for.
_Rows = Callable[[pa.Table], pa.ChunkedArray] | None
_REQUIRED: dict[pa.Schema, tuple[tuple[tuple[str, ...], str, _Rows], ...]] = {
    SAMPLES: (
        (("sha256",), "every row", None),
        (("layer",), "every row", None),
        (("width", "height"), "every row", None),
        (("bytes",), "every row", None),
        (("frames",), "a video's row", lambda table: pc.equal(table["kind"], "video")),
    ),
    SYNTHETIC: (
        (("recipe",), "every row", None),
        (("job",), "every row", None),
        (("width", "height"), "every row", None),
        (("rain_sha256",), "every row", None),
        (("gt_sha256",), "every row", None),
        (
            ("frame_index", "window_start", "window_end"),
            f"a real pair's row (recipe {REAL_PAIR}…)",
            lambda table: pc.starts_with(table["recipe"], REAL_PAIR),
        ),
    ),
}
# The instants a Python datetime holds (years 1 to 9999), as a timestamp[us] stores them.
_TIMES = (
    pa.scalar(datetime.min, _TS).cast(pa.int64()).as_py(),
    pa.scalar(datetime.max, _TS).cast(pa.int64()).as_py(),
)


def read_manifest(path: Path, schema: pa.Schema, check_values: bool = True) -> pa.Table:
    """The manifest at `path`, or an empty table of `schema` when there is none yet.

    A file that is no Parquet, would decode to more than its size allows
    (`shards.parquet.read_table`), lacks a column that names rows, or holds a name that
    does not match its pattern (`NAMES`) is refused with a one-line `DatasetError`; so,
    unless `check_values` is off (verify, which reports them row by row), is one with a
    row that breaks `row_faults`.
    """
    if not path.exists():
        return schema.empty_table()
    where = shown(path)  # a store's manifest by its URL, not by the local copy's path
    try:
        present = set(pq.read_schema(regular_file(path)).names)
        table = read_table(path, schema)
    except TooLarge as error:
        raise DatasetError(
            f"{where}: refused: {error}; the manifest is damaged or was not written by "
            "rainbench (see docs/dataset-format.md)"
        ) from None
    except (pa.ArrowException, OSError, ValueError) as error:
        raise DatasetError(
            f"{where}: not a readable Parquet manifest ({first_line(error)})"
        ) from None
    if not present & set(schema.names):
        raise DatasetError(f"{where}: not a rainbench manifest: none of its columns are known")
    for column, (pattern, what, nullable) in NAMES.items():
        if column not in schema.names:
            continue
        if not nullable and column not in present:
            raise DatasetError(f"{where}: not a rainbench manifest: it has no {column} column")
        _check_names(where, table[column], column, pattern, what, nullable)
    if "split" in schema.names:
        _check_splits(where, table["split"], schema)
    if check_values and (found := next(_faults(table, schema), None)):
        fault, rows = found
        count = pc.sum(rows).as_py()
        first = table["key"][pc.index(rows, True).as_py()].as_py()
        raise DatasetError(
            f"{where}: {count} {'row has' if count == 1 else 'rows have'} {fault} (the first: "
            f"{first}); the manifest is damaged or was not written by rainbench "
            "(see docs/dataset-format.md)"
        )
    return table


# How often a manifest read for a report may have been replaced as it was read: an ingest
# replaces one a few times at most.
_HASHED_READS = 5


def read_hashed(path: Path, schema: pa.Schema, reader: str) -> tuple[pa.Table, str | None]:
    """The manifest at `path` (`read_manifest`) and the sha256 of the very file read (None
    where there is none), for a report that names its input. A writer may replace the
    file (atomically) while it is read, so it is hashed before and after, and read again
    until both agree; `reader` names the command in the one-line refusal after
    `_HASHED_READS` tries."""
    for _ in range(_HASHED_READS):
        before = _sha256(path)
        table = read_manifest(path, schema)
        after = _sha256(path)
        if after == before:
            return table, after
    raise DatasetError(
        f"{shown(path)}: replaced {_HASHED_READS} times while {reader} read it; run "
        f"{reader} again when the command writing the dataset has finished"
    )


def _sha256(path: Path) -> str | None:
    """The manifest's sha256, None when there is none; a FIFO or a device in its place is
    refused unopened, as `read_manifest` refuses it: hashing it would wait, or never end."""
    if not path.exists():
        return None
    try:
        return file_sha256(regular_file(path))
    except OSError as error:
        raise DatasetError(
            f"{shown(path)}: not a readable Parquet manifest ({first_line(error)})"
        ) from None


def row_faults(table: pa.Table, schema: pa.Schema) -> dict[int, list[str]]:
    """Row index → what is wrong in it: no value where the format requires one
    (`_REQUIRED`), or a timestamp beyond what a Python datetime holds (to_pylist would
    raise on it). Rows without faults are absent."""
    found: dict[int, list[str]] = {}
    for fault, rows in _faults(table, schema):
        for index in pc.indices_nonzero(rows).to_pylist():
            found.setdefault(index, []).append(fault)
    return found


def _faults(table: pa.Table, schema: pa.Schema) -> Iterator[tuple[str, pa.Array]]:
    """(what is wrong, a mask of the rows it is wrong in) for each fault some row has."""
    for columns, scope, which in _REQUIRED.get(schema, ()):
        rows = pc.is_null(table[columns[0]])
        for column in columns[1:]:
            rows = pc.or_(rows, pc.is_null(table[column]))
        if which is not None:
            rows = pc.and_(rows, pc.fill_null(which(table), False))
        if pc.any(rows, min_count=0).as_py():
            yield f"no {' or '.join(columns)}, which {scope} must have", rows.combine_chunks()
    if schema == SAMPLES:
        yield from _label_faults(table)
    if schema == SYNTHETIC:
        yield from _pair_faults(table)
    for field in schema:
        if pa.types.is_timestamp(field.type):
            stamps = table[field.name].cast(pa.int64())
            beyond = pc.or_(pc.less(stamps, _TIMES[0]), pc.greater(stamps, _TIMES[1]))
            beyond = pc.fill_null(beyond, False)
            if pc.any(beyond, min_count=0).as_py():
                yield f"a {field.name} outside the years 1 to 9999", beyond.combine_chunks()


def _label_faults(table: pa.Table) -> Iterator[tuple[str, pa.Array]]:
    """A label that is none of what its column may hold (`LABELS`)."""
    for column, allowed in LABELS.items():
        values = table[column]
        known = pc.is_in(values, value_set=pa.array(allowed))
        rows = pc.and_(pc.is_valid(values), pc.invert(known))
        if pc.any(rows, min_count=0).as_py():
            yield f"a {column} none of {', '.join(allowed)}", rows.combine_chunks()


def _pair_faults(table: pa.Table) -> Iterator[tuple[str, pa.Array]]:
    """A real pair's frames out of order (eval sizes its window from them), and a
    confidence_mean no confidence map has (eval averages them). The frame may lie
    outside its window: a rain-free pair's window is the dry frames it was estimated
    from, before or after the rain."""
    start, end, frame = table["window_start"], table["window_end"], table["frame_index"]
    disorder = pc.or_(pc.or_(pc.less(start, 0), pc.less(end, start)), pc.less(frame, 0))
    confidence = table["confidence_mean"]
    # NaN is outside too: no comparison holds for it.
    outside = pc.invert(pc.and_(pc.greater_equal(confidence, 0), pc.less_equal(confidence, 1)))
    for fault, rows in (
        ("its frames out of order (0 ≤ window_start ≤ window_end, 0 ≤ frame_index)", disorder),
        ("a confidence_mean outside [0, 1]", outside),
    ):
        rows = pc.fill_null(rows, False)
        if pc.any(rows, min_count=0).as_py():
            yield fault, rows.combine_chunks()


def _check_names(
    where: str, values: pa.ChunkedArray, column: str, pattern: str, what: str, nullable: bool
) -> None:
    if pa.types.is_list(values.type):
        lengths = pc.fill_null(pc.list_value_length(values), 0)
        if not pc.all(pc.greater(lengths, 0), min_count=0).as_py():
            raise DatasetError(f"{where}: a row has no {column}; the manifest is damaged")
        values, nullable = pc.list_flatten(values), False
    matches = pc.fill_null(pc.match_substring_regex(values, f"^({pattern})$"), nullable)
    if not pc.all(matches, min_count=0).as_py():
        bad = values[pc.index(matches, False).as_py()].as_py()
        value = "null" if bad is None else repr(bad[:80])
        raise DatasetError(
            f"{where}: {column} {value} is not a valid {what}; the manifest is damaged "
            "or was not written by rainbench (see docs/dataset-format.md)"
        )


def _check_splits(where: str, splits: pa.ChunkedArray, schema: pa.Schema) -> None:
    """Refuse a split name longer than STORED_SPLIT_MAX, or in synthetic.parquet one that
    no paired split has (RESERVED_PAIRED); the pattern is checked already."""
    names = pc.unique(splits).to_pylist()
    long = next((name for name in names if len(name) > STORED_SPLIT_MAX), None)
    if long is not None:
        raise DatasetError(
            f"{where}: split {long[:40]!r}… has {len(long)} characters, more than the "
            f"{STORED_SPLIT_MAX} a split's name may have; the manifest is damaged or was not "
            "written by rainbench (see docs/dataset-format.md)"
        )
    reserved = sorted(set(names) & set(RESERVED_PAIRED)) if schema == SYNTHETIC else []
    if reserved:
        raise DatasetError(
            f"{where}: paired split {reserved[0]!r} has a name no paired split may have "
            f"({', '.join(RESERVED_PAIRED)}: the capture splits' and the paired splits' "
            "folder's); the manifest is damaged or was not written by rainbench (see "
            "docs/dataset-format.md)"
        )


def write_manifest(path: Path, table: pa.Table, shared: bool = False) -> None:
    """`table` as Parquet at `path`, replaced atomically (`shared` as for write_atomic).
    Written straight to the file: a copy in memory would cost as much as the file again."""
    with replacing(path, shared) as handle:
        pq.write_table(table, handle, compression="zstd")


def rows_to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)
